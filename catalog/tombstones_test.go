package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTombstones: a removal writes a tombstone for the grace the catalog
// keeps; the same bytes coming back restore the build under its own id and
// end its grace; other bytes at its name get a new id (a PATH never names
// two contents); a reservation or a move onto a spent id is refused; the
// grace's end drops the blob, which stays while any tombstone names it.
func TestTombstones(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	a, b := makeXpak(t, "app-misc", "hello-2.10", 100), makeXpak(t, "app-misc", "hello-2.10", 200)
	in, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-7.xpak", a, 0)
	if err != nil || in.BuildID != 7 {
		t.Fatalf("commit: %+v, %v", in, err)
	}
	blob := filepath.Join(s.BlobDir(), in.Blob)
	if _, err := s.Remove(ctx, in.ID, "app-misc/hello-2.10.tbz2", ""); err != nil {
		t.Fatal(err)
	}
	ts, err := s.DB.Tombstones(ctx)
	if err != nil || len(ts) != 1 || ts[0].ID != in.ID || ts[0].Path() != "app-misc/hello/hello-2.10-7.xpak" ||
		ts[0].RemovedAs != "app-misc/hello-2.10.tbz2" || ts[0].UntilNs-ts[0].RemovedNs != int64(time.Hour) {
		t.Fatalf("tombstones %+v, %v", ts, err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("the blob went in the grace: %v", err)
	}
	if empty, _ := s.DB.Empty(ctx); empty {
		t.Error("a catalog holding a tombstone is called empty (a mount would call it lost)")
	}
	if found, err := s.DB.TombstoneRemovedAs(ctx, "app-misc/hello-2.10.tbz2"); err != nil || found.ID != in.ID {
		t.Errorf("by the name removed under: %+v, %v", found, err)
	}

	// Other bytes at its name: a new build, under a new id.
	other, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-7.xpak", b, 0)
	if err != nil || other.BuildID != 8 {
		t.Fatalf("other bytes at a spent name: %+v, %v; want build 8", other, err)
	}
	if ts, _ := s.DB.Tombstones(ctx); len(ts) != 1 {
		t.Errorf("other bytes ended the grace of the removed build: %+v", ts)
	}
	// A reservation (Portage's placeholder) or a move onto the spent id.
	if _, err := s.Reserve(ctx, "app-misc", "hello", "hello-2.10", "xpak", 7, 0o644, 1); !errors.Is(err, ErrBuildIDTaken) {
		t.Errorf("reserving a spent id: %v", err)
	}
	if _, err := s.Move(ctx, other.ID, 7, ""); !errors.Is(err, ErrBuildIDTaken) {
		t.Errorf("moving other bytes onto a spent id: %v", err)
	}

	// The same bytes back, at any name: the build, under its own id.
	back, existed, err := ingestBytes(t, s, "app-misc/hello-2.10.tbz2", a, 0)
	if err != nil || existed || back.BuildID != 7 {
		t.Fatalf("same bytes back: %+v existed %v, %v; want build 7", back, existed, err)
	}
	if ts, _ := s.DB.Tombstones(ctx); len(ts) != 0 {
		t.Errorf("the build is back but its tombstone stays: %+v", ts)
	}

	// A move: the build takes the new id, the old PATH stays for the grace.
	moved, err := s.Move(ctx, back.ID, 9, "app-misc/hello/hello-2.10-7.xpak")
	if err != nil || moved.BuildID != 9 || moved.SHA256 != back.SHA256 {
		t.Fatalf("move: %+v, %v", moved, err)
	}
	if ts, _ := s.DB.Tombstones(ctx); len(ts) != 1 || ts[0].BuildID != 7 {
		t.Errorf("after a move: tombstones %+v, want build 7's", ts)
	}
	if _, err := s.Move(ctx, moved.ID, 8, ""); !errors.Is(err, ErrBuildIDTaken) {
		t.Errorf("moving onto a taken id: %v", err)
	}
	// Moved back: its own bytes may have their id again.
	if m2, err := s.Move(ctx, moved.ID, 7, ""); err != nil || m2.BuildID != 7 {
		t.Fatalf("move back: %+v, %v", m2, err)
	}

	// Remove both; the grace ends: rows and blobs go, the live build's stay.
	live, _ := s.DB.Instances(ctx)
	for _, x := range live {
		if x.BuildID == 7 {
			if _, err := s.Remove(ctx, x.ID, "", ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := s.ExpireTombstones(ctx, time.Now()); err != nil || n != 0 {
		t.Errorf("expired before the grace ended: %d, %v", n, err)
	}
	if n, err := s.ExpireTombstones(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 2 {
		t.Errorf("expired %d, %v; want the 2 tombstones", n, err)
	}
	if _, err := os.Stat(blob); !os.IsNotExist(err) {
		t.Errorf("the blob of an expired removal stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.BlobDir(), other.Blob)); err != nil {
		t.Errorf("the live build's blob went: %v", err)
	}
	res, err := s.Verify(ctx, true, nil)
	if err != nil || res.Faults != 0 {
		t.Errorf("verify: %+v, %v", res, err)
	}
}

// TestRemoveWithoutGrace: with no grace, a removal keeps nothing; the id is
// spent for other bytes all the same.
func TestRemoveWithoutGrace(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a, b := makeXpak(t, "app-misc", "hello-2.10", 100), makeXpak(t, "app-misc", "hello-2.10", 200)
	in, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-3.xpak", a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, in.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.DB.Tombstones(ctx); len(ts) != 0 {
		t.Errorf("tombstones without a grace: %+v", ts)
	}
	if _, err := os.Stat(filepath.Join(s.BlobDir(), in.Blob)); !os.IsNotExist(err) {
		t.Errorf("blob kept without a grace: %v", err)
	}
	if n, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-3.xpak", b, 0); err != nil || n.BuildID != 4 {
		t.Errorf("other bytes at the removed build's name: %+v, %v; want build 4", n, err)
	}
}

// TestOtherWriterLive: a live writer's staging directory is seen by other
// processes on the state (blobs without rows are then its commit in
// progress), a closed one's is not.
func TestOtherWriterLive(t *testing.T) {
	dir := t.TempDir()
	a, err := testStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := testStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.OtherWriterLive() {
		t.Error("a writer seen before any staged")
	}
	a.StagingDir()
	if !b.OtherWriterLive() || a.OtherWriterLive() {
		t.Errorf("after A staged: B sees a writer %v (want true), A sees another %v (want false)", b.OtherWriterLive(), a.OtherWriterLive())
	}
	a.Close()
	if b.OtherWriterLive() {
		t.Error("a closed writer is seen as live")
	}
}

// TestFailedCommitKeepsTombstoneBlob: a commit of a removed build's very
// bytes that fails after its blob was placed gives the writer its bytes
// back and leaves the blob, which the removed build's tombstone still
// names (it used to be renamed away, so the removed build's downloads
// broke for the rest of its grace).
func TestFailedCommitKeepsTombstoneBlob(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	a := makeXpak(t, "app-misc", "hello-2.10", 100)
	in, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-7.xpak", a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, in.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(s.BlobDir(), in.Blob)
	rawExec(t, s.DB, `CREATE TRIGGER refuse_all BEFORE INSERT ON instances BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
	if _, _, err := ingestBytes(t, s, "app-misc/hello/hello-2.10-7.xpak", a, 0); err == nil || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("commit under the trap: %v", err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("the removed build's blob is gone after a failed commit of its bytes: %v", err)
	}
	if ts, err := s.DB.Tombstones(ctx); err != nil || len(ts) != 1 {
		t.Errorf("tombstones after the failed commit: %+v, %v", ts, err)
	}
}
