package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pkgtest"
)

// TestListingMadeBeforeChange: a READDIR whose listing was made before
// changes by another process (a removal, and an addition of a name the
// kernel never saw), and answered after their invalidations were sent, must
// not leave the old listing in the kernel's cache (the kernel keeps
// listings: rawFS.OpenDir).
func TestListingMadeBeforeChange(t *testing.T) {
	ids := map[string]int64{}
	mnt, store, logs := mountTest(t, func(s *catalog.Store) {
		for _, pf := range []string{"a-1.0", "b-1.0", "c-1.0"} {
			ids[pf] = commitTest(t, s, "app-misc", pf, 1).ID
		}
	})
	// Changes come from another process: another connection to the catalog.
	other, err := catalog.OpenStore(store.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	store = other
	dir := filepath.Join(mnt, "app-misc")
	names := func() []string {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return n
	}
	for round, pf := range []string{"a-1.0", "b-1.0"} {
		before := names() // the kernel now keeps this listing
		// Another change drops it, so that the next listing is read. (In
		// round 0 it lands while the index is rendered after the mount: the
		// changes that build applies must reach the kernel too.)
		commitTest(t, store, "app-misc", fmt.Sprintf("new%d-1.0", round), 2)
		if !pollFor(5*time.Second, func() bool { return len(names()) > len(before) }) {
			_, err := os.Lstat(filepath.Join(dir, fmt.Sprintf("new%d-1.0.tbz2", round)))
			t.Fatalf("round %d: new%d-1.0 not listed after 5 s (lstat: %v); listing %v\nlog:\n%s", round, round, err, names(), logs)
		}
		// The next listing of app-misc is made, then, before it is
		// answered, pf is removed as prune would and the mount told.
		// Whether the mount has sent the invalidations is seen in All/,
		// which that READDIR does not lock: pf's name there, which the
		// kernel now keeps, must be invalidated.
		late := fmt.Sprintf("late%d-1.0.tbz2", round)
		if _, err := os.Lstat(filepath.Join(mnt, "All", pf+".tbz2")); err != nil {
			t.Fatalf("round %d: lstat All/%s.tbz2 before its removal: %v", round, pf, err)
		}
		sent := func() bool {
			_, errLate := os.Lstat(filepath.Join(mnt, "All", late))
			_, errGone := os.Lstat(filepath.Join(mnt, "All", pf+".tbz2"))
			return errLate == nil && errors.Is(errGone, os.ErrNotExist)
		}
		var armed atomic.Bool
		armed.Store(true)
		hook := func(path string) {
			if path != "app-misc" || !armed.CompareAndSwap(true, false) {
				return
			}
			if _, _, err := store.RemoveBatch(context.Background(), []int64{ids[pf]}); err != nil {
				t.Error(err)
			}
			st, err := store.Stage(bytes.NewReader(testXpak(t, "app-misc", fmt.Sprintf("late%d-1.0", round), 4)))
			if err == nil {
				_, _, err = store.Ingest(context.Background(), &catalog.Candidate{Staged: st, Name: fmt.Sprintf("app-misc/late%d-1.0.tbz2", round), Mode: 0o644})
			}
			if err != nil {
				t.Error(err)
			}
			// The listing is answered only once the poll (50 ms) has
			// applied both changes and sent their invalidations. The
			// lookups run beside this request, which must end even if
			// one of them hangs.
			applied := make(chan bool, 1)
			go func() { applied <- pollFor(5*time.Second, sent) }()
			select {
			case ok := <-applied:
				if !ok {
					t.Errorf("round %d: 5 s after the removal of %s and the addition of %s, All/ does not show them: the mount did not apply them or send their invalidations\nlog:\n%s", round, pf, late, logs)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("round %d: lookups in All/ still blocked 10 s after the removal of %s, while a listing of app-misc was in flight", round, pf)
			}
		}
		listingMade.Store(&hook)
		st2, err := store.Stage(bytes.NewReader(testXpak(t, "app-misc", fmt.Sprintf("more%d-1.0", round), 3)))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.Ingest(context.Background(), &catalog.Candidate{Staged: st2, Name: fmt.Sprintf("app-misc/more%d-1.0.tbz2", round), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the listing made before the removal", func() bool { return slices.Contains(names(), fmt.Sprintf("more%d-1.0.tbz2", round)) })
		listingMade.Store(nil)
		if armed.Load() {
			t.Fatal("no listing of app-misc was made")
		}
		// The kernel settles after the READDIR was answered: the old
		// listing must not stay (kept, it would stay for the hour the
		// kernel keeps listings).
		var n []string
		pollFor(5*time.Second, func() bool {
			n = names()
			return !slices.Contains(n, pf+".tbz2") && slices.Contains(n, late)
		})
		if slices.Contains(n, pf+".tbz2") {
			t.Errorf("round %d: %s was removed, but 5 s later the listing still shows it: %v", round, pf, n)
		}
		if !slices.Contains(n, late) {
			t.Errorf("round %d: late%d-1.0 was added, but 5 s later the listing does not show it: %v", round, round, n)
		}
	}
}

// waitFor polls ok for up to 5 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	if !pollFor(5*time.Second, ok) {
		t.Fatalf("%s: not after 5 s", what)
	}
}

// pollFor is pkgtest.PollFor.
var pollFor = pkgtest.PollFor

// TestListingsKept: a listing is found again by id and path until it is read
// to its end; at most maxListings are kept, none longer than listingTTL.
func TestListingsKept(t *testing.T) {
	ls := newListings()
	list := []fuse.DirEntry{{Name: "a"}, {Name: "b"}}
	first := ls.add("cat", list)
	if ls.get(first.id, "cat") != first {
		t.Fatal("a listing just made is not found")
	}
	if ls.get(first.id, "other") != nil {
		t.Fatal("a listing is found under another directory's path")
	}
	ls.done(first)
	if ls.get(first.id, "cat") != nil {
		t.Fatal("a listing read to its end is still kept")
	}
	var made []*listing
	for i := 0; i < 3*maxListings; i++ {
		made = append(made, ls.add(fmt.Sprintf("d%d", i), list))
	}
	kept := 0
	for i, l := range made {
		if ls.get(l.id, fmt.Sprintf("d%d", i)) != nil {
			kept++
			if i < len(made)-maxListings {
				t.Errorf("listing %d of %d kept; only the last %d should be", i, len(made), maxListings)
			}
		}
	}
	if kept != maxListings {
		t.Errorf("%d listings kept, want %d", kept, maxListings)
	}
	if len(ls.order) > maxListings+1 {
		t.Errorf("the order holds %d listings, want at most %d", len(ls.order), maxListings+1)
	}
	old := ls.add("old", list)
	old.made = time.Now().Add(-2 * listingTTL)
	ls.mu.Lock()
	// Put it first in the order, as the oldest.
	ls.order = append([]*listing{old}, ls.order[:len(ls.order)-1]...)
	ls.mu.Unlock()
	ls.add("new", list)
	if ls.get(old.id, "old") != nil {
		t.Error("a listing older than listingTTL is still kept")
	}
}
