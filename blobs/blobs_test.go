package blobs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCommitWalkRemove(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	src := filepath.Join(t.TempDir(), "staged")
	if err := os.WriteFile(src, []byte("bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := Name("ab" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab")
	p := d.Commit(src, name)
	if err := p.Wait(); err != nil || !p.Renamed {
		t.Fatalf("commit: %v (renamed %v)", err, p.Renamed)
	}
	st, err := os.Stat(d.Path(name))
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("the blob: %v, mode %v; want read-only", err, st.Mode())
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Errorf("the staged file stays: %v", err)
	}
	var names []string
	d.Walk(func(n string, size int64) error {
		names = append(names, n)
		if size != 5 {
			t.Errorf("%s: size %d", n, size)
		}
		return nil
	})
	if !slices.Equal(names, []string{name}) {
		t.Errorf("walk: %v", names)
	}
	if err := d.Remove(name); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(name); err != nil {
		t.Errorf("removing a blob gone already: %v", err)
	}
	// A commit of a missing file fails and renames nothing.
	if p := d.Commit(src, name); p.Wait() == nil || p.Renamed {
		t.Error("a commit of nothing succeeded")
	}
}

func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("a"), 0o644)
	os.WriteFile(b, []byte("b"), 0o644)
	if moved, err := RenameNoReplace(a, b); err != nil || moved {
		t.Errorf("onto an existing name: moved %v, %v", moved, err)
	}
	if got, _ := os.ReadFile(b); string(got) != "b" {
		t.Error("the existing file was replaced")
	}
	c := filepath.Join(dir, "c")
	if moved, err := RenameNoReplace(a, c); err != nil || !moved {
		t.Errorf("onto a free name: moved %v, %v", moved, err)
	}
}

// TestStaging: each writer's directory is its own; recovery takes only a
// dead writer's files, and a live one is seen by the others.
func TestStaging(t *testing.T) {
	base := t.TempDir()
	live, dead, other := NewStaging(base, nil), NewStaging(base, nil), NewStaging(base, nil)
	for _, s := range []*Staging{live, dead} {
		if err := os.WriteFile(filepath.Join(s.Dir(), "in-x"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if live.Dir() == dead.Dir() || filepath.Dir(live.Dir()) != base {
		t.Fatalf("staging directories %s and %s", live.Dir(), dead.Dir())
	}
	if !other.OtherWriterLive() {
		t.Error("live writers not seen")
	}
	deadDir := dead.Dir()
	dead.Close() // as if it died: its lock is free, its file stays
	var kept []string
	if err := other.RecoverDead(false, func(p string) error {
		kept = append(kept, p)
		return os.Remove(p)
	}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || filepath.Dir(kept[0]) != deadDir {
		t.Errorf("recovered %v, want only the dead writer's file", kept)
	}
	if _, err := os.Lstat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the dead writer's directory stays: %v", err)
	}
	if files := other.Files(); len(files) != 1 {
		t.Errorf("files being staged: %v, want the live writer's one", files)
	}
	live.Close()
	if other.OtherWriterLive() {
		t.Error("a closed writer is seen as live")
	}
}
