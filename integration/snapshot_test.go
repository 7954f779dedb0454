package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSnapshotFixture (issue 24, snapshots): on a real mount, a snapshot
// keeps every build it froze, with its bytes, through rm through the
// mount and prune; diff shows the removal; delete releases the bytes only
// it held, and verify finds neither faults nor orphans at any point.
func TestSnapshotFixture(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-zstd-multi")
	// No removal grace: only the snapshot keeps a removed build's blob.
	mnt := mountFS(t, state, "--removed-grace", "0")
	idx, _ := wReadIndex(t, mnt)
	all := instances(idx)
	paths := pathsOf(all, func(in instance) string { return in.Path })
	sha256s := digestPaths(t, "sha256sum", mnt, paths)
	sha1s := map[string]string{}
	builds := map[string]int{}
	for _, in := range all {
		sha1s[in.Path] = in.SHA1
		builds[in.CPV]++
	}
	snap := func(args ...string) cmdResult {
		t.Helper()
		return runCLI(t, append([]string{"snapshot", "--state", state}, args...)...)
	}
	oneLineErr := func(what string, r cmdResult, code int) {
		t.Helper()
		if r.Code != code || strings.Count(string(r.Stderr), "\n") != 1 || len(r.Stdout) != 0 {
			t.Errorf("%s: want exit %d and one line on stderr: %s", what, code, r)
		}
	}
	verifyClean := func(when string) {
		t.Helper()
		if r := runCLI(t, "verify", "--state", state); r.Code != 0 || strings.Contains(string(r.Stdout), "orphan") {
			t.Errorf("verify %s: %s", when, r)
		}
	}

	if r := snap("create", "s1"); r.Code != 0 || !strings.Contains(string(r.Stdout), "created snapshot s1: 8 builds") {
		t.Fatalf("snapshot create s1: %s", r)
	}
	oneLineErr("a taken name", snap("create", "s1"), 1)
	oneLineErr("a bad name", snap("create", ".s"), 2)
	oneLineErr("a query that does not parse", snap("create", "s9", "--query", "'app-misc/*"), 2)
	oneLineErr("an unknown snapshot", snap("show", "nope"), 1)

	// rm through the mount: gone from the live tree.
	var victim instance
	for _, in := range all {
		if builds[in.CPV] > 1 && (victim.Path == "" || in.Path < victim.Path) {
			victim = in
		}
	}
	if err := os.Remove(filepath.Join(mnt, victim.Path)); err != nil {
		t.Fatal(err)
	}
	// prune keeps what s1 holds, and says so.
	r := runCLI(t, "prune", "--state", state, "--keep", "1")
	if r.Code != 0 || !strings.Contains(string(r.Stdout), "held by snapshot s1") || !strings.Contains(string(r.Stdout), "removed 0 builds") {
		t.Errorf("prune --keep 1 of builds s1 holds: %s", r)
	}
	idx, _ = wReadIndex(t, mnt)
	live := pathsOf(instances(idx), func(in instance) string { return in.Path })
	if want := slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return p == victim.Path }); !slices.Equal(live, want) {
		t.Errorf("live tree after rm and prune: %v, want %v", live, want)
	}
	if r := snap("create", "s2"); r.Code != 0 {
		t.Fatalf("snapshot create s2: %s", r)
	}

	// s1 still lists every build, its bytes intact in the blob directory.
	r = snap("show", "s1", "--format", "json")
	var rows []struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(r.Stdout, &rows); r.Code != 0 || err != nil {
		t.Fatalf("snapshot show s1: %v: %s", err, r)
	}
	shown := pathsOf(rows, func(x struct {
		Path string `json:"path"`
	}) string {
		return x.Path
	})
	if !slices.Equal(shown, paths) {
		t.Errorf("snapshot show s1 lists %v, want every build %v", shown, paths)
	}
	blob := func(p string) string { s := sha256s[p]; return filepath.Join(state, "blobs", s[:2], s) }
	for _, p := range paths {
		got := digestPaths(t, "sha1sum", "/", []string{strings.TrimPrefix(blob(p), "/")})
		if got[strings.TrimPrefix(blob(p), "/")] != sha1s[p] {
			t.Errorf("%s: the blob s1 holds (%s) has SHA1 %v, want %s", p, blob(p), got, sha1s[p])
		}
	}
	verifyClean("with a build only s1 holds")

	// diff: exactly the build removed.
	r = snap("diff", "s1", "s2")
	if out := string(r.Stdout); r.Code != 0 || !strings.Contains(out, "removed") || !strings.Contains(out, victim.Path) ||
		!strings.Contains(out, "s1 -> s2: 0 added, 1 removed, 0 changed in 1 CPV") {
		t.Errorf("snapshot diff s1 s2: %s", r)
	}

	// delete s1: the removed build's blob goes, the others stay.
	if r := snap("delete", "s1"); r.Code != 0 {
		t.Fatalf("snapshot delete s1: %s", r)
	}
	if _, err := os.Stat(blob(victim.Path)); !os.IsNotExist(err) {
		t.Errorf("the blob only s1 held stays after its deletion: %v", err)
	}
	for _, p := range live {
		if _, err := os.Stat(blob(p)); err != nil {
			t.Errorf("a live build's blob: %v", err)
		}
	}
	verifyClean("after delete")
	if r := snap("list"); r.Code != 0 || strings.Contains(string(r.Stdout), "s1") || !strings.Contains(string(r.Stdout), "s2") {
		t.Errorf("snapshot list: %s", r)
	}
}
