package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cpvMatcher takes the packages of the CPVs listed.
type cpvMatcher []string

func (m cpvMatcher) Scopes() []Scope { return nil }
func (m cpvMatcher) Match(in *Instance) bool {
	for _, c := range m {
		if in.CPV == c {
			return true
		}
	}
	return false
}

// members lists a snapshot's builds as "cpv-buildid:mode", in order, and
// checks each came with its metadata.
func members(t *testing.T, s *Store, name string) string {
	t.Helper()
	var out []string
	err := s.DB.SnapshotMembers(context.Background(), name, func(_ *SnapshotInfo, in *Instance) error {
		if in.Meta["BUILD_TIME"] == "" {
			t.Errorf("snapshot %s: %s build %d without its metadata: %v", name, in.CPV, in.BuildID, in.Meta)
		}
		out = append(out, fmt.Sprintf("%s-%d:%o", in.CPV, in.BuildID, in.Mode))
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	return strings.Join(out, " ")
}

func blobPresent(s *Store, blob string) bool {
	_, err := os.Stat(filepath.Join(s.BlobDir(), blob))
	return err == nil
}

// TestSnapshots: a snapshot keeps exactly what it froze through every way
// the live catalog changes a build (rm, a prune batch, the keep policy, a
// move, chmod), with its metadata; its blobs stay while a snapshot needs
// them and go with the last one; bad names, a taken name and an unknown
// one are one-line errors that change nothing.
func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ing := func(name, cat, pf string, bt int64) *Instance {
		t.Helper()
		in, _, err := ingestBytes(t, s, name, makeXpak(t, cat, pf, bt), 0)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	a := ing("app-misc/foo-1.0.tbz2", "app-misc", "foo-1.0", 100)
	b := ing("app-misc/foo-1.0.tbz2", "app-misc", "foo-1.0", 200)
	c := ing("dev-libs/bar-1.tbz2", "dev-libs", "bar-1", 5)
	if _, err := s.Reserve(ctx, "dev-libs", "bar", "bar-1", "xpak", 5, 0o644, 1); err != nil {
		t.Fatal(err)
	}
	gen0, _ := s.DB.Generation(ctx)

	s1, err := s.DB.CreateSnapshot(ctx, "s1", "", nil)
	if err != nil || s1.Packages != 3 || s1.Generation != gen0 {
		t.Fatalf("create s1: %+v, %v; want 3 packages (no placeholder) of generation %d", s1, err, gen0)
	}
	if g, _ := s.DB.Generation(ctx); g != gen0 {
		t.Errorf("a snapshot moved the generation %d -> %d: the live tree did not change", gen0, g)
	}
	foo, err := s.DB.CreateSnapshot(ctx, "foo.only_1", "app-misc/foo", cpvMatcher{"app-misc/foo-1.0"})
	if err != nil || foo.Packages != 2 || foo.Query != "app-misc/foo" {
		t.Fatalf("create with a query: %+v, %v", foo, err)
	}
	for _, bad := range []string{"", ".hidden", "-x", "a/b", "a b", "ü", strings.Repeat("x", 129)} {
		if _, err := s.DB.CreateSnapshot(ctx, bad, "", nil); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("name %q: %v, want a one-line error", bad, err)
		}
	}
	if _, err := s.DB.CreateSnapshot(ctx, "s1", "", cpvMatcher{}); !errors.Is(err, ErrSnapshotExists) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a taken name: %v", err)
	}
	if list, _ := s.DB.Snapshots(ctx); len(list) != 2 || list[0].Name != "foo.only_1" || list[1].Name != "s1" || list[1].Packages != 3 {
		t.Errorf("after refusals: snapshots %+v", list)
	}
	want1 := fmt.Sprintf("app-misc/foo-1.0-%d:644 app-misc/foo-1.0-%d:644 dev-libs/bar-1-%d:644", a.BuildID, b.BuildID, c.BuildID)
	if got := members(t, s, "s1"); got != want1 {
		t.Fatalf("s1 %s, want %s", got, want1)
	}

	// rm (no removal grace here: only a snapshot keeps the blob).
	if _, err := s.Remove(ctx, a.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	// chmod, then a snapshot of the changed build.
	if err := s.SetAttrs(ctx, b.ID, 0o600, 5); err != nil {
		t.Fatal(err)
	}
	s2, err := s.DB.CreateSnapshot(ctx, "s2", "", nil)
	if err != nil || s2.Packages != 2 {
		t.Fatalf("create s2: %+v, %v", s2, err)
	}
	// chmod again: s1 keeps 644, s2 keeps 600, live is 640.
	if err := s.SetAttrs(ctx, b.ID, 0o640, 6); err != nil {
		t.Fatal(err)
	}
	// A move to another build id.
	moved, err := s.Move(ctx, c.ID, 9, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := members(t, s, "s1"); got != want1 {
		t.Errorf("after rm, chmod and mv: s1 %s, want %s", got, want1)
	}
	want2 := fmt.Sprintf("app-misc/foo-1.0-%d:600 dev-libs/bar-1-%d:644", b.BuildID, c.BuildID)
	if got := members(t, s, "s2"); got != want2 {
		t.Errorf("s2 %s, want %s", got, want2)
	}
	if !blobPresent(s, a.Blob) {
		t.Errorf("the blob of a removed build a snapshot holds was deleted")
	}

	// A prune batch, and the keep policy.
	if _, _, err := s.RemoveBatch(ctx, []int64{moved.ID}); err != nil {
		t.Fatal(err)
	}
	s.SetKeepPolicy(PrunePolicy{Keep: 1})
	d := ing("app-misc/foo-1.0.tbz2", "app-misc", "foo-1.0", 300)
	s.SetKeepPolicy(PrunePolicy{})
	// Instance ids are never reused: a held copy's id names one build.
	for _, old := range []*Instance{a, b, c, moved} {
		if d.ID <= old.ID {
			t.Errorf("a new instance got id %d, not above the removed %d", d.ID, old.ID)
		}
	}
	live, _ := s.DB.Instances(ctx)
	if len(live) != 2 || live[0].ID != d.ID || !live[1].Placeholder {
		t.Fatalf("live after prune and keep policy: %+v, want only the newest foo and the placeholder", live)
	}
	if got := members(t, s, "s1"); got != want1 {
		t.Errorf("after a prune batch and the keep policy: s1 %s, want %s", got, want1)
	}
	if got := members(t, s, "s2"); got != want2 {
		t.Errorf("after a prune batch and the keep policy: s2 %s, want %s", got, want2)
	}
	for _, in := range []*Instance{a, b, c} {
		if !blobPresent(s, in.Blob) {
			t.Errorf("blob of %s build %d gone while snapshots hold it", in.CPV, in.BuildID)
		}
		if used, err := s.DB.BlobInUse(ctx, in.Blob); err != nil || !used {
			t.Errorf("BlobInUse(%s build %d) = %v, %v", in.CPV, in.BuildID, used, err)
		}
	}

	// verify: the blobs only snapshots hold are held, not orphans.
	if res, err := s.Verify(ctx, false, nil); err != nil || res.Faults != 0 {
		t.Errorf("verify: %+v, %v", res, err)
	} else {
		for _, f := range res.Findings {
			if strings.Contains(f.Text, "orphan") {
				t.Errorf("verify: %s", f.Text)
			}
		}
	}

	// Diff: per CPV, what only one side holds.
	diff, err := s.DB.DiffSnapshots(ctx, "s1", "s2")
	if err != nil || len(diff.CPVs) != 1 || diff.CPVs[0].CPV != "app-misc/foo-1.0" ||
		len(diff.CPVs[0].Removed) != 1 || diff.CPVs[0].Removed[0].BuildID != a.BuildID ||
		len(diff.CPVs[0].Added)+len(diff.CPVs[0].Changed) != 0 {
		t.Errorf("diff s1 s2: %+v, %v", diff, err)
	}
	if _, err := s.DB.DiffSnapshots(ctx, "s1", "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("diff with an unknown snapshot: %v", err)
	}

	// Delete: s1 alone held c's and, with foo, a's bytes.
	if err := s.DeleteSnapshot(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting an unknown snapshot: %v", err)
	}
	if err := s.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if !blobPresent(s, a.Blob) || !blobPresent(s, b.Blob) || !blobPresent(s, c.Blob) {
		t.Errorf("deleting s1 dropped blobs other snapshots hold: a %v b %v c %v",
			blobPresent(s, a.Blob), blobPresent(s, b.Blob), blobPresent(s, c.Blob))
	}
	if got := members(t, s, "s2"); got != want2 {
		t.Errorf("after deleting s1: s2 %s, want %s", got, want2)
	}
	if err := s.DeleteSnapshot(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	if blobPresent(s, c.Blob) {
		t.Errorf("a blob no snapshot holds any more stays")
	}
	if err := s.DeleteSnapshot(ctx, "foo.only_1"); err != nil {
		t.Fatal(err)
	}
	if blobPresent(s, a.Blob) || blobPresent(s, b.Blob) || !blobPresent(s, d.Blob) {
		t.Errorf("after the last snapshot: blobs a %v b %v (want gone), live d %v", blobPresent(s, a.Blob), blobPresent(s, b.Blob), blobPresent(s, d.Blob))
	}
	if list, _ := s.DB.Snapshots(ctx); len(list) != 0 {
		t.Errorf("snapshots left: %+v", list)
	}
	if blobs, err := s.DB.heldBlobs(ctx); err != nil || len(blobs) != 0 {
		t.Errorf("held copies left: %v, %v", blobs, err)
	}
}

// TestSnapshotGrace: a held build's blob outlives the snapshot while its
// removal grace lasts, and goes when both are over.
func TestSnapshotGrace(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	in, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 100), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.CreateSnapshot(ctx, "keep", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, in.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	// The grace ends first: the snapshot still holds it.
	if _, err := s.ExpireTombstones(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !blobPresent(s, in.Blob) {
		t.Fatalf("the grace's end dropped a blob a snapshot holds")
	}
	if err := s.DeleteSnapshot(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if blobPresent(s, in.Blob) {
		t.Errorf("the blob stays after its grace and its last snapshot")
	}

	// The snapshot goes first: the tombstone keeps it for its grace.
	in, _, err = ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 200), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.CreateSnapshot(ctx, "keep", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, in.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if !blobPresent(s, in.Blob) {
		t.Fatalf("deleting the snapshot dropped a blob in its removal grace")
	}
	if _, err := s.ExpireTombstones(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if blobPresent(s, in.Blob) {
		t.Errorf("the blob stays after its grace and its snapshot")
	}
}

// TestSnapshotRace: two creates of one name at once: one wins, the other
// hears ErrSnapshotExists.
func TestSnapshotRace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := testStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 100), 0); err != nil {
		t.Fatal(err)
	}
	other, err := testState(t, dir) // another process's connection
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	errs := make(chan error, 2)
	for _, db := range []*DB{s.DB, other} {
		go func() {
			_, err := db.CreateSnapshot(ctx, "race", "", nil)
			errs <- err
		}()
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), ErrSnapshotExists) {
		t.Errorf("two creates of one name: %v and %v; want one to win and one ErrSnapshotExists", e1, e2)
	}
	if list, _ := s.DB.Snapshots(ctx); len(list) != 1 || list[0].Packages != 1 {
		t.Errorf("snapshots %+v", list)
	}
}
