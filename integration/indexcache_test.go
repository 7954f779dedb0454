package integration

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// indexCacheFiles lists the index cache files of a state's blob directory.
func indexCacheFiles(t *testing.T, state string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(state, "blobs", ".index-cache", "index-*.cache"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// servedIndex mounts state, reads Packages and Packages.gz (raw), unmounts,
// and returns them with the daemon's log.
func servedIndex(t *testing.T, state string) (plain, gz []byte, log string) {
	t.Helper()
	mi := mountFSInfo(t, state)
	var err error
	if plain, err = os.ReadFile(filepath.Join(mi.Dir, "Packages")); err != nil {
		t.Fatal(err)
	}
	if gz, err = os.ReadFile(filepath.Join(mi.Dir, "Packages.gz")); err != nil {
		t.Fatal(err)
	}
	unmountNow(t, mi)
	b, _ := os.ReadFile(mi.Log)
	return plain, gz, string(b)
}

func gunzipAll(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameIndex compares what two mounts served. Raw Packages.gz is compared
// too: these catalogs fit one chunk, so the members are the same (in large
// ones chunk boundaries depend on the history of changes).
func sameIndex(t *testing.T, what string, plainA, gzA, plainB, gzB []byte) {
	t.Helper()
	if !bytes.Equal(plainA, plainB) {
		t.Fatalf("%s: Packages differs from a render without the cache\n--- with the cache:\n%s\n--- without:\n%s", what, clip(plainA, 4000), clip(plainB, 4000))
	}
	if !bytes.Equal(gunzipAll(t, gzA), plainB) {
		t.Fatalf("%s: Packages.gz served with the cache does not decompress to Packages", what)
	}
	if !bytes.Equal(gzA, gzB) {
		t.Fatalf("%s: Packages.gz differs from a render without the cache (%d and %d bytes)", what, len(gzA), len(gzB))
	}
}

// packageFiles lists the package files under a PKGDIR, relative.
func packageFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (strings.HasSuffix(p, ".xpak") || strings.HasSuffix(p, ".gpkg.tar")) {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// TestIndexCacheRemount: a mount changed by adds, a removal and a written
// Packages header leaves an index cache at unmount; the next mount serves
// its index from it, byte-identical to a mount that renders (cache
// deleted), also when the catalog moved on while nothing was mounted (the
// changes since the cache are applied). verify takes the cache for no
// orphan blob.
func TestIndexCacheRemount(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "gpkg-zstd-multi")
	other := extractFixture(t, "xpak-zstd-multi")
	mi := mountFSInfo(t, state)
	if _, err := os.ReadFile(filepath.Join(mi.Dir, "Packages")); err != nil {
		t.Fatal(err)
	}
	// Add a package (at its flat name: it takes the next free build id),
	// remove one, change the header.
	b, err := os.ReadFile(filepath.Join(other, "app-misc/hello/hello-2.10-1.xpak"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mi.Dir, "app-misc/hello-2.10.tbz2"), b, 0o644); err != nil {
		t.Fatalf("adding app-misc/hello-2.10.tbz2: %v", err)
	}
	if err := os.Remove(filepath.Join(mi.Dir, "app-admin/sudo/sudo-1.9.15_p5-2.gpkg.tar")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mi.Dir, "Packages"), []byte("ARCH: amd64\nPROFILE: cache-test\nVERSION: 0\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(first, []byte("PROFILE: cache-test")) || bytes.Contains(first, []byte("sudo-1.9.15_p5-2.gpkg.tar")) {
		t.Fatalf("the changes are not in Packages:\n%s", clip(first, 3000))
	}
	unmountNow(t, mi)
	if got := indexCacheFiles(t, state); len(got) != 1 {
		t.Fatalf("index cache files after unmount: %v, want one", got)
	}

	plainA, gzA, logA := servedIndex(t, state)
	if !strings.Contains(logA, "index loaded from its cache") {
		t.Fatalf("the remount did not use the index cache; log:\n%s", logA)
	}
	if !bytes.Equal(plainA, first) {
		t.Fatalf("the remount serves another Packages than the mount before it")
	}
	if err := os.RemoveAll(filepath.Join(state, "blobs", ".index-cache")); err != nil {
		t.Fatal(err)
	}
	plainB, gzB, logB := servedIndex(t, state)
	if strings.Contains(logB, "index loaded from its cache") {
		t.Fatal("the index was loaded from a cache that was deleted")
	}
	sameIndex(t, "remount", plainA, gzA, plainB, gzB)

	// The catalog moves on while nothing is mounted: the cache the last
	// mount left is behind it.
	if len(indexCacheFiles(t, state)) != 1 {
		t.Fatal("the mount that rendered left no index cache")
	}
	// Without its Packages: an imported header would be a header change,
	// for which every entry is rendered again anyway.
	for _, n := range []string{"Packages", "Packages.gz"} {
		if err := os.Remove(filepath.Join(other, n)); err != nil {
			t.Fatal(err)
		}
	}
	if r, sum := importDirs(t, state, other); r.Code != 0 || sum.Imported == 0 {
		t.Fatalf("import into the unmounted state: %s", r)
	}
	plainC, gzC, logC := servedIndex(t, state)
	if !strings.Contains(logC, "index loaded from its cache") || strings.Contains(logC, "changed_since=0 ") {
		t.Fatalf("the mount after an import did not apply the import to the cached index; log:\n%s", logC)
	}
	if err := os.RemoveAll(filepath.Join(state, "blobs", ".index-cache")); err != nil {
		t.Fatal(err)
	}
	plainD, gzD, _ := servedIndex(t, state)
	sameIndex(t, "remount after an import", plainC, gzC, plainD, gzD)
	if bytes.Equal(plainC, plainB) {
		t.Fatal("the import changed nothing in Packages")
	}

	r := runCLI(t, "verify", "--state", state)
	if r.Code != 0 || bytes.Contains(r.Stdout, []byte("orphan")) || bytes.Contains(r.Stdout, []byte(".index-cache")) {
		t.Fatalf("verify with an index cache in the blob directory: %s", r)
	}
}

// TestIndexCacheOtherCatalog: a cache copied from another state's blob
// directory (under this catalog's file name) is not used.
func TestIndexCacheOtherCatalog(t *testing.T) {
	t.Parallel()
	_, stateA, _ := importedFixture(t, "gpkg-zstd-multi")
	_, stateB, _ := importedFixture(t, "xpak-bzip2-multi")
	servedIndex(t, stateA)
	plainB, gzB, _ := servedIndex(t, stateB)
	a, b := indexCacheFiles(t, stateA), indexCacheFiles(t, stateB)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("index caches %v and %v, want one each", a, b)
	}
	if filepath.Base(a[0]) == filepath.Base(b[0]) {
		t.Fatalf("two catalogs' caches have one name: %s", filepath.Base(a[0]))
	}
	data, err := os.ReadFile(a[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	plain, gz, log := servedIndex(t, stateB)
	if strings.Contains(log, "index loaded from its cache") || !strings.Contains(log, "of another catalog") {
		t.Fatalf("another catalog's cache was not refused; log:\n%s", log)
	}
	sameIndex(t, "another catalog's cache", plain, gz, plainB, gzB)
}
