package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
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

// TestFollowerTakesRecordedTimestamp: a follower that serves a generation
// nobody has recorded a TIMESTAMP for chooses its own (it may not write
// the state); once one is recorded (by the writer's mount, or here by
// `pkgdirfs index`, a second later), the follower serves that one, as new
// inodes: its Packages equals what index wrote, byte for byte, with that
// TIMESTAMP as its mtime.
func TestFollowerTakesRecordedTimestamp(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	follower := mountFSInfo(t, state, "--read-only")
	// A new generation, written by another process that serves nothing.
	flat := extractFixture(t, "xpak-bzip2-flat")
	before, _ := os.ReadFile(filepath.Join(follower.Dir, "Packages"))
	if r := runCLI(t, "import", "--state", state, flat); r.Code != 0 {
		t.Fatal(r)
	}
	if !pollFor(10*time.Second, func() bool {
		idx, err := os.ReadFile(filepath.Join(follower.Dir, "Packages"))
		return err == nil && len(idx) > len(before)
	}) {
		t.Fatal("the follower does not show the import")
	}
	stamp := func(b []byte) string {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "TIMESTAMP: ") {
				return l
			}
		}
		return ""
	}
	own, _ := os.ReadFile(filepath.Join(follower.Dir, "Packages"))
	time.Sleep(2100 * time.Millisecond) // what is recorded is a later second
	r := runCLI(t, "index", "--state", state)
	if r.Code != 0 {
		t.Fatal(r)
	}
	recorded := r.Stdout
	if stamp(own) == stamp(recorded) || stamp(own) == "" {
		t.Fatalf("index recorded %q, the follower chose %q: want a later second", stamp(recorded), stamp(own))
	}
	var got []byte
	if !pollFor(5*time.Second, func() bool {
		got, _ = os.ReadFile(filepath.Join(follower.Dir, "Packages"))
		return bytes.Equal(got, recorded)
	}) {
		t.Fatalf("the follower serves %q after %q was recorded (it chose %q)", stamp(got), stamp(recorded), stamp(own))
	}
	ts, _ := strconv.ParseInt(strings.TrimPrefix(stamp(recorded), "TIMESTAMP: "), 10, 64)
	for _, n := range []string{"Packages", "Packages.gz"} {
		st, err := os.Stat(filepath.Join(follower.Dir, n))
		if err != nil || st.ModTime().Unix() != ts {
			t.Errorf("%s: mtime %v (%v), want the recorded TIMESTAMP %d", n, st.ModTime().Unix(), err, ts)
		}
	}
	if r := runCLI(t, "index", "--state", state, "--gz"); r.Code != 0 {
		t.Fatal(r)
	} else if gz, _ := os.ReadFile(filepath.Join(follower.Dir, "Packages.gz")); !bytes.Equal(gz, r.Stdout) {
		t.Errorf("the follower's Packages.gz differs from what index --gz writes")
	}
}
