package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
)

// TestSpaceReportAdd: a removed blob counts as freed only when its bytes
// are released: not while other links hold its inode, a grace holds it, or
// a build still there has the same bytes.
func TestSpaceReportAdd(t *testing.T) {
	one := blobSpace{Present: true, Bytes: 4096, Nlink: 1}
	two := blobSpace{Present: true, Bytes: 8192, Nlink: 2}
	for _, c := range []struct {
		what   string
		before blobSpace
		after  blobAfter
		want   spaceReport
	}{
		{"removed, its only link", one, blobAfter{}, spaceReport{Now: 4096}},
		{"removed, an imported original keeps it", two, blobAfter{}, spaceReport{HeldLinks: 8192}},
		{"kept by a tombstone", one, blobAfter{Present: true, Tombstone: true, InUse: true}, spaceReport{AtGraceEnd: 4096}},
		{"kept by a tombstone, and linked", two, blobAfter{Present: true, Tombstone: true, InUse: true}, spaceReport{HeldLinks: 8192}},
		{"same bytes as a build still there", one, blobAfter{Present: true, InUse: true}, spaceReport{Shared: 4096}},
		{"missing before", blobSpace{}, blobAfter{}, spaceReport{}},
		{"could not be removed", one, blobAfter{Present: true}, spaceReport{}},
	} {
		var r spaceReport
		r.add(c.before, c.after)
		if r != c.want {
			t.Errorf("%s: %+v, want %+v", c.what, r, c.want)
		}
	}
	r := spaceReport{Now: 0, AtGraceEnd: 2048, HeldLinks: 54067200}
	if got, want := r.text(false), "freed 0 bytes (0 B) now, 2048 bytes (2.0 KiB) when their removal grace ends, 54067200 bytes (51.6 MiB) still held by other hard links (imported originals or exports)"; got != want {
		t.Errorf("text:\n%s\nwant\n%s", got, want)
	}
	if got := (spaceReport{Now: 1024}).text(true); got != "would free 1024 bytes (1.0 KiB)" {
		t.Errorf("dry-run text: %s", got)
	}
}

// TestPruneSpaceLinked: blobs that import --link took over release nothing
// when prune removes them, while copied blobs release what they held; a
// dry run says the same beforehand.
func TestPruneSpaceLinked(t *testing.T) {
	src := t.TempDir()
	writePkgs(t, src, testPkgs)
	for _, link := range []bool{true, false} {
		store, err := catalog.OpenStore(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		importPkgs(t, store, src, link)
		doomed, _, shared, err := selectPrune(store, catalog.PrunePolicy{Keep: 1}, nil)
		if err != nil || len(doomed) != 1 {
			t.Fatalf("link %v: selectPrune: %d builds, %v", link, len(doomed), err)
		}
		before := statBlobs(store, doomed)
		b := before[doomed[0].Blob]
		dry := dryRunSpace(before, shared)
		removed, err := removeInBatches(store, doomed, func(*catalog.Instance) {}, func(*catalog.Instance, []string) {})
		if err != nil {
			t.Fatal(err)
		}
		got, err := removedSpace(store, removed, before)
		if err != nil {
			t.Fatal(err)
		}
		want := spaceReport{Now: b.Bytes}
		if link {
			want = spaceReport{HeldLinks: b.Bytes}
		}
		if b.Bytes == 0 || got != want || dry != want {
			t.Errorf("link %v: prune reports %+v (dry run %+v), want %+v", link, got, dry, want)
		}
		if _, err := os.Stat(filepath.Join(store.BlobDir(), doomed[0].Blob)); !os.IsNotExist(err) {
			t.Errorf("link %v: the removed build's blob is still there: %v", link, err)
		}
	}
}

// TestPruneSpaceGrace: a removal grace holds the blobs; collecting its
// tombstones once it ended releases them.
func TestPruneSpaceGrace(t *testing.T) {
	src := t.TempDir()
	writePkgs(t, src, testPkgs)
	store, err := catalog.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	importPkgs(t, store, src, false)
	if err := store.SetRemovedGrace(background(), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	doomed, _, _, _ := selectPrune(store, catalog.PrunePolicy{Keep: 1}, nil)
	before := statBlobs(store, doomed)
	removed, err := removeInBatches(store, doomed, func(*catalog.Instance) {}, func(*catalog.Instance, []string) {})
	if err != nil || len(removed) != 1 {
		t.Fatal(removed, err)
	}
	got, err := removedSpace(store, removed, before)
	want := before[removed[0].Blob].Bytes
	if err != nil || got != (spaceReport{AtGraceEnd: want}) {
		t.Errorf("removal in its grace: %+v, %v; want %d bytes when the grace ends", got, err, want)
	}
	freed, err := expireTombstones(store)
	if err != nil || freed != want {
		t.Errorf("collecting the ended grace freed %d bytes, %v; want %d", freed, err, want)
	}
	if !strings.Contains(got.text(false), "when their removal grace ends") {
		t.Errorf("text: %s", got.text(false))
	}
}
