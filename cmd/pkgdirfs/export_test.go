package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/catalog"
	"pkgdirfs/tree"
)

// exportFixture is a state holding testPkgs (copied, not linked: the
// blobs then have the import's mtime, not the packages').
func exportFixture(t *testing.T) (store *catalog.Store, src string) {
	t.Helper()
	src = t.TempDir()
	writePkgs(t, src, testPkgs)
	store, err := catalog.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	importPkgs(t, store, src, false)
	return store, src
}

func statT(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkExport judges dir against the catalog: every package at its
// multi-instance path with its bytes and mtime (a hard link to its blob
// when linked), nothing else but the marker, and the index the mount's
// renderer gives, with both index files' mtimes its TIMESTAMP.
func checkExport(t *testing.T, store *catalog.Store, dir string, linked bool) {
	t.Helper()
	insts, err := store.DB.Instances(background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{exportMarker: true, "Packages": true, "Packages.gz": true}
	for _, in := range insts {
		rel := tree.FileOf(&in).MultiPath()
		want[rel] = true
		p := filepath.Join(dir, rel)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		blob := filepath.Join(store.BlobDir(), in.Blob)
		if b, _ := os.ReadFile(blob); !bytes.Equal(got, b) {
			t.Errorf("%s: %d bytes differ from its blob's %d", rel, len(got), len(b))
		}
		st, bst := statT(t, p), statT(t, blob)
		if st.Mtim.Nano() != in.MtimeNs {
			t.Errorf("%s: mtime %d ns, want the catalog's %d", rel, st.Mtim.Nano(), in.MtimeNs)
		}
		if same := st.Ino == bst.Ino && st.Dev == bst.Dev; same != linked {
			t.Errorf("%s: same inode as its blob %v, want %v", rel, same, linked)
		}
		if !linked && st.Mode&0o777 != in.Mode {
			t.Errorf("%s: mode %o, want the catalog's %o", rel, st.Mode&0o777, in.Mode)
		}
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, _ := filepath.Rel(dir, p); !want[filepath.ToSlash(rel)] {
				t.Errorf("unexpected file %s in the export", rel)
			}
		}
		return err
	})
	idx, err := renderIndex(store, tree.Layouts{Multi: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Release()
	wantIdx, _ := idx.Bytes()
	got, err := os.ReadFile(filepath.Join(dir, "Packages"))
	if err != nil || !bytes.Equal(got, wantIdx) {
		t.Errorf("Packages (%v) is not what `pkgdirfs index` renders:\n%s\nwant\n%s", err, got, wantIdx)
	}
	gz, err := os.ReadFile(filepath.Join(dir, "Packages.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, got) {
		t.Errorf("Packages.gz does not gunzip to Packages (%v)", err)
	}
	for _, name := range []string{"Packages", "Packages.gz"} {
		if st := statT(t, filepath.Join(dir, name)); st.Mtim.Sec != idx.Timestamp || st.Mtim.Nsec != 0 {
			t.Errorf("%s: mtime %d.%09d, want the TIMESTAMP %d", name, st.Mtim.Sec, st.Mtim.Nsec, idx.Timestamp)
		}
	}
}

// TestExportWritesPKGDIR: a first export hard-links every blob (giving it
// its package's mtime) and writes the index; a second one keeps every file.
func TestExportWritesPKGDIR(t *testing.T) {
	store, _ := exportFixture(t)
	dir := filepath.Join(t.TempDir(), "new", "export") // made with its parents
	res, err := exportState(store, dir, exportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packages != len(testPkgs) || res.Linked != len(testPkgs) || res.Copied+res.Cloned+res.Unchanged != 0 {
		t.Errorf("first export: %s", res.summary())
	}
	checkExport(t, store, dir, true)
	res, err = exportState(store, dir, exportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != len(testPkgs) || len(res.Removed) != 0 {
		t.Errorf("second export of the same catalog: %s", res.summary())
	}
	if s := res.summary(); !strings.HasPrefix(s, "exported 3 packages, ") || !strings.Contains(s, ": linked 0, cloned 0, copied 0, unchanged 3") {
		t.Errorf("summary %q", s)
	}
	checkExport(t, store, dir, true)
}

// TestExportUpdate: an export into an earlier one follows the catalog:
// a removed build's file goes, a new one comes, a changed mtime is given.
func TestExportUpdate(t *testing.T) {
	store, _ := exportFixture(t)
	dir := t.TempDir()
	if _, err := exportState(store, dir, exportOptions{}); err != nil {
		t.Fatal(err)
	}
	insts, _ := store.DB.Instances(background())
	gone := insts[0]
	if _, _, err := store.RemoveBatch(background(), []int64{gone.ID}); err != nil {
		t.Fatal(err)
	}
	store.DropBlob(background(), gone.Blob)
	touched := insts[1]
	if err := store.SetAttrs(background(), touched.ID, touched.Mode, 1_600_000_000_987_654_321); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writePkgs(t, src, []testPkg{{"app-misc/hello/hello-2.11-1.xpak", "app-misc", "hello-2.11", 1_700_001_000, time.Unix(1_700_001_100, 0)}})
	importPkgs(t, store, src, false)
	// An interrupted run's temp file goes too.
	os.WriteFile(filepath.Join(dir, "app-misc", "hello", "x.xpak"+exportTmpSuffix), []byte("x"), 0o644)

	res, err := exportState(store, dir, exportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packages != 3 || res.Linked != 2 || res.Unchanged != 1 || len(res.Removed) != 2 {
		t.Errorf("update: want 3 packages, 2 linked (the new and the touched one), 1 unchanged, 2 stale files removed: %s %v", res.summary(), res.Removed)
	}
	checkExport(t, store, dir, true)
}

// TestExportCopy: --copy shares no inode with the state, also where an
// earlier export hard-linked.
func TestExportCopy(t *testing.T) {
	store, _ := exportFixture(t)
	dir := t.TempDir()
	if _, err := exportState(store, dir, exportOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := exportState(store, dir, exportOptions{NoLink: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Linked != 0 || res.Unchanged != 0 || res.Copied+res.Cloned != len(testPkgs) {
		t.Errorf("--copy over a linked export: %s", res.summary())
	}
	checkExport(t, store, dir, false)
}

// TestExportRefuses: a non-empty directory that is no export, one inside
// the state, and a second export into a directory being written.
func TestExportRefuses(t *testing.T) {
	store, src := exportFixture(t)
	if _, err := exportState(store, src, exportOptions{}); err == nil || !strings.Contains(err.Error(), "not empty and holds no earlier export") {
		t.Errorf("export into a PKGDIR: %v", err)
	}
	if _, err := os.Stat(filepath.Join(src, exportMarker)); err == nil {
		t.Errorf("a refused export left %s behind", exportMarker)
	}
	if err := checkExportTarget(store.Dir, filepath.Join(store.Dir, "out")); err == nil || !strings.Contains(err.Error(), "inside the state directory") {
		t.Errorf("export into the state: %v", err)
	}
	if err := checkExportTarget(store.Dir, filepath.Join(filepath.Dir(store.Dir), "elsewhere")); err != nil {
		t.Errorf("export beside the state: %v", err)
	}
	dir := t.TempDir()
	x, err := openExportDir(dir, store.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer x.close()
	if _, err := exportState(store, dir, exportOptions{}); err == nil || !strings.Contains(err.Error(), "another pkgdirfs export is writing") {
		t.Errorf("export into a directory another export writes: %v", err)
	}
}

// TestExportInterrupted: an update takes the index away before it changes
// anything, so that an interrupted one never looks complete.
func TestExportInterrupted(t *testing.T) {
	store, _ := exportFixture(t)
	dir := t.TempDir()
	if _, err := exportState(store, dir, exportOptions{}); err != nil {
		t.Fatal(err)
	}
	x, err := openExportDir(dir, store.Dir)
	if err != nil {
		t.Fatal(err)
	}
	x.close() // interrupted here
	for _, name := range []string{"Packages", "Packages.gz"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s is there while an update is under way", name)
		}
	}
	if _, err := exportState(store, dir, exportOptions{}); err != nil {
		t.Fatal(err)
	}
	checkExport(t, store, dir, true)
}

func TestResolveWithin(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "real"), 0o755)
	os.Symlink("real", filepath.Join(root, "link"))
	if got, want := resolvePath(filepath.Join(root, "link", "a", "b")), filepath.Join(resolvePath(root), "real", "a", "b"); got != want {
		t.Errorf("resolvePath through a symlink to a path that does not exist yet: %s, want %s", got, want)
	}
	for _, c := range []struct {
		p, root string
		want    bool
	}{
		{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/", "/a", false}, {"/a/..b", "/a", true},
	} {
		if got := within(c.p, c.root); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.p, c.root, got)
		}
	}
}
