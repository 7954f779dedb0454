package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pkgtest"
)

// testPkg is a package file of a test PKGDIR.
type testPkg struct {
	rel, cat, pf string
	buildTime    int64
	mtime        time.Time
}

var testPkgs = []testPkg{
	{"app-misc/hello/hello-2.10-1.xpak", "app-misc", "hello-2.10", 1_700_000_000, time.Unix(1_700_000_100, 123_456_789)},
	{"app-misc/hello/hello-2.10-2.xpak", "app-misc", "hello-2.10", 1_700_000_200, time.Unix(1_700_000_300, 5)},
	{"dev-libs/foo/foo-1.0-r1-1.xpak", "dev-libs", "foo-1.0-r1", 1_700_000_400, time.Unix(1_700_000_500, 0)},
}

// writePkgs writes pkgs into a new PKGDIR with their mtimes.
func writePkgs(t *testing.T, dir string, pkgs []testPkg) {
	t.Helper()
	for _, p := range pkgs {
		path := filepath.Join(dir, p.rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pkgtest.Xpak(t, p.cat, p.pf, p.buildTime), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, p.mtime, p.mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// importPkgs imports the packages of src into store.
func importPkgs(t *testing.T, store *catalog.Store, src string, link bool) {
	t.Helper()
	files, err := catalog.ScanPKGDIR(src)
	if err != nil {
		t.Fatal(err)
	}
	var res catalog.ImportResult
	if err := store.Import(background(), files, catalog.ImportOptions{Link: link}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Invalid) > 0 || res.Imported+res.Present != len(files) {
		t.Fatalf("import of %s: %+v", src, res)
	}
}
