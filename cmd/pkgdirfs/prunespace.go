package main

import (
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/catalog"
)

// What prune reports as freed is what the filesystem released, not the
// sizes of the builds removed: a blob with other hard links (an original
// that import --link took over, an export) keeps its bytes when its name in
// blobs/ goes, and a blob a removal grace holds goes only when it ends.

// blobSpace is what a blob held on disk before the prune.
type blobSpace struct {
	Present bool
	Bytes   int64  // allocated: st_blocks * 512
	Nlink   uint64 // its names, blobs/ included
}

// blobAfter is what became of a blob once the prune was done.
type blobAfter struct {
	Present   bool
	Tombstone bool // a removal grace names it
	InUse     bool // an instance or a tombstone names it
}

// spaceReport is where the bytes of the removed builds' blobs went.
type spaceReport struct {
	Now        int64 // released
	AtGraceEnd int64 // released when the removal grace of their builds ends
	HeldLinks  int64 // kept by other hard links to the blobs' inodes
	Shared     int64 // the blob of a build still there (same bytes)
}

// add accounts for one blob of the removed builds.
func (r *spaceReport) add(b blobSpace, a blobAfter) {
	switch {
	case !b.Present:
		// Missing before the prune: nothing to release (verify reports it).
	case a.Present && a.InUse && !a.Tombstone:
		r.Shared += b.Bytes
	case b.Nlink > 1:
		r.HeldLinks += b.Bytes
	case !a.Present:
		r.Now += b.Bytes
	case a.Tombstone:
		r.AtGraceEnd += b.Bytes
	}
	// Present and named by nothing: a blob that could not be removed
	// (logged); it releases nothing and verify lists it as an orphan.
}

func sizeText(n int64) string { return fmt.Sprintf("%d bytes (%s)", n, bytesText(n)) }

// text is the report's part of prune's summary line.
func (r spaceReport) text(dry bool) string {
	s := "freed " + sizeText(r.Now) + " now"
	if dry {
		// Whether a removal grace will hold them is the mount's to say.
		s = "would free " + sizeText(r.Now)
	}
	if r.AtGraceEnd > 0 {
		s += ", " + sizeText(r.AtGraceEnd) + " when their removal grace ends"
	}
	if r.HeldLinks > 0 {
		s += ", " + sizeText(r.HeldLinks) + " still held by other hard links (imported originals or exports)"
	}
	if r.Shared > 0 {
		s += ", " + sizeText(r.Shared) + " still used by other builds"
	}
	return s
}

// statBlobs takes what each distinct blob of insts holds on disk.
func statBlobs(store *catalog.Store, insts []catalog.Instance) map[string]blobSpace {
	out := make(map[string]blobSpace, len(insts))
	for i := range insts {
		b := insts[i].Blob
		if _, ok := out[b]; ok || b == "" {
			continue
		}
		out[b] = statBlob(store, b)
	}
	return out
}

func statBlob(store *catalog.Store, blob string) blobSpace {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(store.BlobDir(), filepath.FromSlash(blob)), &st); err != nil {
		return blobSpace{}
	}
	return blobSpace{Present: true, Bytes: st.Blocks * 512, Nlink: uint64(st.Nlink)}
}

// removedSpace accounts for the blobs of the removed builds, after the
// prune removed what it could.
func removedSpace(store *catalog.Store, removed []catalog.Instance, before map[string]blobSpace) (spaceReport, error) {
	var r spaceReport
	if len(removed) == 0 {
		return r, nil
	}
	ctx := background()
	tombs, err := store.DB.Tombstones(ctx)
	if err != nil {
		return r, err
	}
	held := make(map[string]bool, len(tombs))
	for i := range tombs {
		held[tombs[i].Blob] = true
	}
	seen := make(map[string]bool, len(removed))
	for i := range removed {
		b := removed[i].Blob
		if b == "" || seen[b] {
			continue
		}
		seen[b] = true
		a := blobAfter{Present: statBlob(store, b).Present, Tombstone: held[b]}
		if a.Present {
			if a.InUse, err = store.DB.BlobInUse(ctx, b); err != nil {
				return r, err
			}
		}
		r.add(before[b], a)
	}
	return r, nil
}

// dryRunSpace is what a prune would release: each blob without other
// links that no kept build shares.
func dryRunSpace(before map[string]blobSpace, shared map[string]bool) spaceReport {
	var r spaceReport
	for b, s := range before {
		r.add(s, blobAfter{Present: shared[b], InUse: shared[b]})
	}
	return r
}

// expireTombstones collects the tombstones whose grace ended, as
// Store.ExpireTombstones does, and returns the bytes that released.
func expireTombstones(store *catalog.Store) (freed int64, err error) {
	const batch = 500
	ctx := background()
	for {
		blobs, err := store.DB.ExpireTombstones(ctx, time.Now(), batch)
		if err != nil {
			return freed, err
		}
		for _, b := range blobs {
			s := statBlob(store, b)
			store.DropBlob(ctx, b)
			if s.Present && s.Nlink == 1 && !statBlob(store, b).Present {
				freed += s.Bytes
			}
		}
		if len(blobs) < batch {
			return freed, nil
		}
	}
}
