package catalog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/xpak"
)

// makeXpak builds a small valid xpak package: a plain tar and an XPAK block.
func makeXpak(t *testing.T, cat, pf string, buildTime int64, extra ...xpak.Entry) []byte {
	return pkgtest.Xpak(t, cat, pf, buildTime, extra...)
}

func ingestBytes(t *testing.T, s *Store, name string, b []byte, replaces int64) (*Instance, bool, error) {
	t.Helper()
	staged, err := s.Stage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s.Ingest(context.Background(), &Candidate{Staged: staged, Name: name, MtimeNs: 1e18, Mode: 0o644, Replaces: replaces})
}

func TestIngestIdentity(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	a := makeXpak(t, "app-misc", "foo-1.0", 100)
	in, existed, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", a, 0)
	if err != nil || existed || in.BuildID != 1 {
		t.Fatalf("flat name: id %v existed %v err %v, want a new instance with build id 1", in, existed, err)
	}
	// The same bytes again are the same instance, under any name.
	in2, existed, err := ingestBytes(t, s, "All/foo-1.0.tbz2", a, 0)
	if err != nil || !existed || in2.ID != in.ID {
		t.Fatalf("same bytes: %+v existed %v err %v, want instance %d", in2, existed, err, in.ID)
	}
	// A name carrying a taken id gets the next one; a free one is kept.
	b := makeXpak(t, "app-misc", "foo-1.0", 200)
	if in, _, err := ingestBytes(t, s, "app-misc/foo/foo-1.0-1.xpak", b, 0); err != nil || in.BuildID != 2 {
		t.Fatalf("taken name id: %v %v, want build id 2", in, err)
	}
	c := makeXpak(t, "app-misc", "foo-1.0", 300)
	if in, _, err := ingestBytes(t, s, "app-misc/foo/foo-1.0-7.xpak", c, 0); err != nil || in.BuildID != 7 {
		t.Fatalf("free name id: %v %v, want build id 7", in, err)
	}
	// A placeholder reserves its id; the package renamed onto it takes it.
	if _, err := s.Reserve(ctx, "app-misc", "foo", "foo-1.0", "xpak", 9, 0o644, 0); err != nil {
		t.Fatal(err)
	}
	if in, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 400), 0); err != nil || in.BuildID != 10 {
		t.Fatalf("allocation past a placeholder: %v %v, want 10", in, err)
	}
	if in, _, err := ingestBytes(t, s, "app-misc/foo/foo-1.0-9.xpak", makeXpak(t, "app-misc", "foo-1.0", 500), 0); err != nil || in.BuildID != 9 {
		t.Fatalf("onto the placeholder: %v %v, want 9", in, err)
	}
	// Replacing an instance keeps its id and drops its blob.
	insts, _ := s.DB.Instances(ctx)
	var seven *Instance
	for i := range insts {
		if insts[i].BuildID == 7 {
			seven = &insts[i]
		}
		if insts[i].Placeholder {
			t.Errorf("placeholder %d left behind", insts[i].BuildID)
		}
	}
	// A different build written over it (another BUILD_TIME: rsync of
	// another PKGDIR) is added under the next id; build 7 stays.
	in, _, err = ingestBytes(t, s, "app-misc/foo/foo-1.0-7.xpak", makeXpak(t, "app-misc", "foo-1.0", 301), seven.ID)
	if err != nil || in.BuildID != 11 || in.ID == seven.ID {
		t.Fatalf("another build over 7: %+v %v, want a new instance with build id 11", in, err)
	}
	if _, err := os.Stat(filepath.Join(s.BlobDir(), seven.Blob)); err != nil {
		t.Errorf("blob of build 7 gone after another build was written over it: %v", err)
	}
	// The same build updated (Portage's metadata update keeps BUILD_TIME)
	// takes its place: same id, new bytes, the old blob dropped.
	upd := makeXpak(t, "app-misc", "foo-1.0", 300, xpak.Entry{Key: "KEYWORDS", Value: []byte("amd64\n")})
	in, _, err = ingestBytes(t, s, "app-misc/foo/foo-1.0-7.xpak", upd, seven.ID)
	if err != nil || in.BuildID != 7 || in.ID == seven.ID {
		t.Fatalf("update of build 7: %+v %v, want a new instance with build id 7", in, err)
	}
	if _, err := os.Stat(filepath.Join(s.BlobDir(), seven.Blob)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob of the updated instance still there: %v", err)
	}
	res, err := s.Verify(ctx, true, nil)
	if err != nil || res.Faults != 0 || res.Instances != 6 {
		t.Fatalf("verify: %+v %v, want 6 instances (build ids 1 2 7 9 10 11) and no fault", res, err)
	}
}

func TestIngestRefusals(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := makeXpak(t, "app-misc", "foo-1.0", 100)
	cases := []struct{ name, path string }{
		{"garbage", "app-misc/foo-1.0.tbz2"},
		{"wrong PF", "app-misc/bar-1.0.tbz2"},
		{"wrong category", "dev-libs/foo-1.0.tbz2"},
		{"wrong PN dir", "app-misc/bar/foo-1.0-1.xpak"},
		{"not a package name", "app-misc/foo-1.0.zip"},
		{"xpak under gpkg name", "app-misc/foo-1.0.gpkg.tar"},
	}
	for _, c := range cases {
		b := good
		if c.name == "garbage" {
			b = []byte("not a package at all")
		}
		staged, err := s.Stage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Ingest(context.Background(), &Candidate{Staged: staged, Name: c.path})
		var rerr *RefusedError
		if !errors.As(err, &rerr) || rerr.Reason == "" {
			t.Errorf("%s: err %v, want a refusal with a reason", c.name, err)
		}
		// The bytes stay where they were.
		if got, err := os.ReadFile(staged.File); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: staged bytes not kept: %v", c.name, err)
		}
	}
	if n, _, _, _ := s.DB.Stats(context.Background()); n != 0 {
		t.Errorf("%d instances after refusals, want 0", n)
	}
}

func TestStampBuildID(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.StampBuildID = true
	in, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 100), 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(s.BlobDir(), in.Blob))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	entries, _, err := xpak.ReadXpak(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, e := range entries {
		if e.Key == "BUILD_ID" {
			got = string(e.Value)
		}
	}
	if got != "1" || st.Size() != in.Size {
		t.Errorf("stamped BUILD_ID %q size %d (catalog %d), want \"1\" and equal sizes", got, st.Size(), in.Size)
	}
	if res, err := s.Verify(context.Background(), true, nil); err != nil || res.Faults != 0 {
		t.Errorf("verify after stamping: %+v %v", res, err)
	}
}

// TestCatalogID: a writable open gives the catalog an identity once; it
// stays across opens, and another catalog gets another.
func TestCatalogID(t *testing.T) {
	ctx := context.Background()
	id := func(dir string) int64 {
		t.Helper()
		s, err := OpenStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var id int64
		if err := s.DB.Read(ctx, func(r Reader) error {
			var err error
			id, err = r.CatalogID()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := t.TempDir()
	first := id(a)
	if first == 0 {
		t.Fatal("no catalog id after a writable open")
	}
	if again := id(a); again != first {
		t.Fatalf("catalog id changed from %d to %d", first, again)
	}
	if other := id(t.TempDir()); other == first || other == 0 {
		t.Fatalf("another catalog's id %d (first %d)", other, first)
	}
}
