package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pkgtest"
)

type rig struct {
	t   *testing.T
	s   *catalog.Store
	c   *Committer
	log *pkgtest.SyncBuffer
}

func newRig(t *testing.T) *rig {
	s, err := catalog.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetRemovedGrace(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, s: s, log: &pkgtest.SyncBuffer{}}
	r.c = &Committer{Store: s, Scratch: func(rel string) string { return filepath.Join(s.ScratchDir(), rel) },
		Log: slog.New(slog.NewTextHandler(r.log, nil))}
	return r
}

// stage writes b to a staging file as a client would, hashing while it
// writes, and returns the File to commit at name.
func (r *rig) stage(name string, b []byte, client string) File {
	r.t.Helper()
	f, err := os.CreateTemp(r.s.StagingDir(), "w-")
	if err != nil {
		r.t.Fatal(err)
	}
	h := NewSeqHash()
	for off := 0; off < len(b); off += 4096 {
		chunk := b[off:min(off+4096, len(b))]
		f.WriteAt(chunk, int64(off))
		h.Write(chunk, int64(off))
	}
	f.Close()
	return File{Name: name, Path: f.Name(), Size: int64(len(b)), Mode: 0o644, MtimeNs: 1e18, Hash: h, Client: func() string { return client }}
}

func (r *rig) indexPaths() []string {
	r.t.Helper()
	insts, err := r.s.DB.Instances(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, in := range insts {
		kind := ""
		if in.Placeholder {
			kind = " (reserved)"
		}
		out = append(out, fmt.Sprintf("%s-%d%s", in.CPV, in.BuildID, kind))
	}
	return out
}

func TestCommitOutcomes(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	a, b := pkgtest.Xpak(t, "app-misc", "hello-2.10", 1), pkgtest.Xpak(t, "app-misc", "hello-2.10", 2)

	out, err := r.c.Commit(ctx, r.stage("app-misc/hello/hello-2.10-7.xpak", a, "tar"))
	if err != nil || out.Inst == nil || out.Inst.BuildID != 7 || out.Existed {
		t.Fatalf("a package: %+v, %v", out, err)
	}
	out, err = r.c.Commit(ctx, r.stage("All/hello-2.10.tbz2", a, ""))
	if err != nil || !out.Existed || out.Inst.BuildID != 7 {
		t.Fatalf("the same bytes again: %+v, %v", out, err)
	}

	// Junk at a package name: refused, kept in the quarantine, nothing at
	// the name, the refusal recorded.
	junk := bytes.Repeat([]byte("junk"), 2048)
	f := r.stage("app-misc/hello/hello-2.10-8.xpak", junk, "")
	out, err = r.c.Commit(ctx, f)
	var rerr *catalog.RefusedError
	if !errors.As(err, &rerr) || out.Kept != RefusedDir+"/app-misc/hello/hello-2.10-8.xpak" {
		t.Fatalf("junk: %+v, %v", out, err)
	}
	if got, _ := os.ReadFile(r.c.Scratch(out.Kept)); !bytes.Equal(got, junk) {
		t.Error("the refused bytes are not in the quarantine")
	}
	if _, err := os.Lstat(f.Path); !os.IsNotExist(err) {
		t.Errorf("the staging file stays: %v", err)
	}
	if why, _ := r.s.DB.RefusalReason(ctx, f.Name); why == "" {
		t.Error("no refusal recorded")
	}
	// Refused again at the same name: kept beside, nothing replaced.
	out, err = r.c.Commit(ctx, r.stage(f.Name, junk[:100], ""))
	if !errors.As(err, &rerr) || out.Kept != RefusedDir+"/app-misc/hello/hello-2.10-8.xpak.1" {
		t.Fatalf("junk again: %+v, %v", out, err)
	}
	// A rename's refused bytes are copied: the source stays for the caller.
	rf := r.stage("app-misc/hello/hello-2.10-9.xpak", junk, "")
	rf.Renamed, rf.Hash = true, nil
	if _, err := r.c.Commit(ctx, rf); !errors.As(err, &rerr) {
		t.Fatalf("junk renamed: %v", err)
	}
	if _, err := os.Lstat(rf.Path); err != nil {
		t.Errorf("a rename's source went with the refusal: %v", err)
	}

	// Portage's placeholder: a reservation; at an id that named a build
	// before, EEXIST's error (Portage tries the next id).
	out, err = r.c.Commit(ctx, r.stage("app-misc/hello/hello-2.10-10.xpak", nil, ""))
	if err != nil || !out.Reserved || out.Inst.BuildID != 10 {
		t.Fatalf("placeholder: %+v, %v", out, err)
	}
	if _, err := r.s.Remove(ctx, func() int64 {
		insts, _ := r.s.DB.Instances(ctx)
		return insts[0].ID
	}(), "app-misc/hello/hello-2.10-7.xpak", "rm"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Commit(ctx, r.stage("app-misc/hello/hello-2.10-7.xpak", nil, "")); !errors.Is(err, catalog.ErrBuildIDTaken) {
		t.Fatalf("placeholder at a spent id: %v", err)
	}
	// An empty file at a flat name stays a plain file there.
	out, err = r.c.Commit(ctx, r.stage("app-misc/hello-2.10.tbz2", nil, ""))
	if err != nil || !out.Plain {
		t.Fatalf("empty at a flat name: %+v, %v", out, err)
	}
	if _, err := os.Lstat(r.c.Scratch("app-misc/hello-2.10.tbz2")); err != nil {
		t.Errorf("the plain file: %v", err)
	}

	// Other bytes at the removed build's name, by another command: a new
	// build; the removed one stays removed.
	out, err = r.c.Commit(ctx, r.stage("app-misc/hello/hello-2.10-7.xpak", b, "cp"))
	if err != nil || out.Inst.BuildID == 7 || out.Restored != nil {
		t.Fatalf("other bytes at a removed build's name: %+v, %v", out, err)
	}
	want := []string{"app-misc/hello-2.10-10 (reserved)", fmt.Sprintf("app-misc/hello-2.10-%d", out.Inst.BuildID)}
	if got := r.indexPaths(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("catalog %v, want %v", got, want)
	}
}

// TestCommitRestoresReplaced: a tool that unlinks a name and puts its own
// package there (one process, or parent and child) keeps the build it
// unlinked; two commands of one shell (siblings) do not.
func TestCommitRestoresReplaced(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		remover, writer string
		restored        bool
	}{
		{"100@1 1@1", "100@1 1@1", true},     // tar: one process
		{"200@5 100@1", "201@6 200@5", true}, // rsync: the generator unlinks, its child renames
		{"300@7 1@1", "301@8 1@1", false},    // rm, then cp: siblings
		{"", "", false},
	} {
		r := newRig(t)
		a, b := pkgtest.Xpak(t, "app-misc", "hello-2.10", 1), pkgtest.Xpak(t, "app-misc", "hello-2.10", 2)
		out, err := r.c.Commit(ctx, r.stage("app-misc/hello-2.10.tbz2", a, ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.s.Remove(ctx, out.Inst.ID, "app-misc/hello-2.10.tbz2", c.remover); err != nil {
			t.Fatal(err)
		}
		out, err = r.c.Commit(ctx, r.stage("app-misc/hello-2.10.tbz2", b, c.writer))
		if err != nil {
			t.Fatal(err)
		}
		if (out.Restored != nil) != c.restored {
			t.Errorf("removed by %q, written by %q: restored %+v, want %v", c.remover, c.writer, out.Restored, c.restored)
		}
		n := len(r.indexPaths())
		if c.restored && (n != 2 || out.Restored.BuildID != 1) || !c.restored && n != 1 {
			t.Errorf("removed by %q, written by %q: catalog %v", c.remover, c.writer, r.indexPaths())
		}
	}
}

// TestCommitConcurrent: writers committing at once, at one name and at
// many, lose nothing and never share a build id.
func TestCommitConcurrent(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "app-misc/hello-2.10.tbz2"
			if i%3 == 0 {
				name = fmt.Sprintf("app-misc/hello/hello-2.10-%d.xpak", 100+i)
			}
			_, err := r.c.Commit(ctx, r.stage(name, pkgtest.Xpak(t, "app-misc", "hello-2.10", int64(i+1)), ""))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	paths := r.indexPaths()
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			t.Errorf("build id given twice: %s", p)
		}
		seen[p] = true
	}
	if len(paths) != n {
		t.Errorf("%d builds committed, want %d: %v", len(paths), n, paths)
	}
	res, err := r.s.Verify(ctx, true, nil)
	if err != nil || res.Faults != 0 {
		t.Errorf("verify: %+v, %v", res, err)
	}
	if strings.Contains(r.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", r.log.String())
	}
}
