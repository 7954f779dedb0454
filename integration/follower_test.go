package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFollowerBesideWriter: `mount --read-only` of a SQLite state another
// daemon serves and writes is a follower (it was refused as "state is in
// use"): it shows the writer's changes within about a second, refuses
// writes with EROFS, and leaves the writer's pid file and log alone.
func TestFollowerBesideWriter(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	writer := mountFSInfo(t, state)
	pid, err := os.ReadFile(filepath.Join(state, "pkgdirfs.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var followers []*mountInfo
	for range 2 {
		followers = append(followers, mountFSInfo(t, state, "--read-only"))
	}
	flat := extractFixture(t, "xpak-bzip2-flat")
	name := "app-misc/hello-2.10.tbz2"
	before, _ := os.ReadFile(filepath.Join(followers[0].Dir, "Packages"))
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, name), filepath.Join(writer.Dir, name)); r.Code != 0 {
		t.Fatal(r)
	}
	committed := time.Now()
	want := bytes.Count(before, []byte("CPV: app-misc/hello-2.10\n")) + 1
	for i, fo := range followers {
		var seen time.Duration
		ok := pollFor(10*time.Second, func() bool {
			// What a walk sees (the kernel's cached listing), not only the index.
			ents, err := os.ReadDir(filepath.Join(fo.Dir, "app-misc", "hello"))
			if err != nil || len(ents) < want {
				return false
			}
			idx, err := os.ReadFile(filepath.Join(fo.Dir, "Packages"))
			if err != nil || bytes.Count(idx, []byte("CPV: app-misc/hello-2.10\n")) != want {
				return false
			}
			seen = time.Since(committed)
			return true
		})
		if !ok {
			t.Fatalf("follower %d: the writer's new build is not listed after 10 s", i)
		}
		t.Logf("follower %d shows the writer's change %v after its commit", i, seen.Round(time.Millisecond))
		if seen > time.Second {
			t.Errorf("follower %d showed the writer's change after %v; want within a second", i, seen)
		}
		if got, want := sha1Paths(t, fo.Dir, []string{name}), sha1Paths(t, writer.Dir, []string{name}); got[name] != want[name] {
			t.Errorf("follower %d serves other bytes at %s", i, name)
		}
		r := run(t, "", toolTimeout, "cp", filepath.Join(flat, "app-text", "tree-2.1.1.tbz2"), filepath.Join(fo.Dir, "app-text", "tree-2.1.1.tbz2"))
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
			t.Errorf("follower %d: a write must fail with EROFS: %s", i, r)
		}
	}
	if b, err := os.ReadFile(filepath.Join(state, "pkgdirfs.pid")); err != nil || !bytes.Equal(b, pid) {
		t.Errorf("the writer's pid file after the followers mounted: %q, %v; want %q", b, err, pid)
	}
	if r := runCLI(t, "status", "--state", state); r.Code != 0 || !strings.Contains(string(r.Stdout), "running") {
		t.Errorf("status with a writer and two followers: %s", r)
	}
}
