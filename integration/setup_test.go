package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"pkgdirfs/internal/pkgtest"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------- mounted fixtures

// mountFixture extracts fixture, imports all of it into a fresh state
// (importedFixture: every block of its Packages imported, none already
// present, none invalid) and mounts that state with mountOpts; if the test
// fails, the daemon log (without its routine lines) is logged before the
// unmount.
func mountFixture(t *testing.T, fixture string, mountOpts ...string) (src, state string, mi *mountInfo) {
	t.Helper()
	src, state, _ = importedFixture(t, fixture)
	mi = mountFSInfo(t, state, mountOpts...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", wDaemonLog(mi))
		}
	})
	return src, state, mi
}

// setupMounted is mountFixture, then MNT/Packages as the mount serves it
// right away: parsed, and its bytes.
func setupMounted(t *testing.T, fixture string, mountOpts ...string) (src, state string, mi *mountInfo, idx *pkgIndex, raw []byte) {
	t.Helper()
	src, state, mi = mountFixture(t, fixture, mountOpts...)
	idx, raw = wReadIndex(t, mi.Dir)
	return src, state, mi, idx, raw
}

// ---------------------------------------------------------------- polls

// pollTimeout bounds a wait for something the kernel or the daemon does
// after the call that caused it returned (a RELEASE, an invalidation).
const pollTimeout = 5 * time.Second

// pollFor is pkgtest.PollFor.
var pollFor = pkgtest.PollFor

// heldOpen lists the files of state the daemon of mi holds open for a
// client's handle: blobs (readers), staging files (writers) and scratch
// files. The kernel sends a RELEASE after close() has returned; until the
// daemon has served it, the handle's file stays open in the daemon. (Its
// staging directory's lock file, .owner, is open for as long as it lives.)
func heldOpen(mi *mountInfo, state string) []string {
	if s, err := filepath.EvalSymlinks(state); err == nil {
		state = s // /proc shows resolved paths
	}
	var dirs []string
	for _, d := range []string{"blobs", "staging", "scratch"} {
		dirs = append(dirs, filepath.Join(state, d)+"/")
	}
	var held []string
	for _, pid := range mi.PIDs {
		fds := fmt.Sprintf("/proc/%d/fd", pid)
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			target, err := os.Readlink(filepath.Join(fds, e.Name()))
			if err != nil || filepath.Base(target) == ".owner" {
				continue
			}
			for _, d := range dirs {
				if strings.HasPrefix(target, d) {
					held = append(held, target)
					break
				}
			}
		}
	}
	return held
}

// waitReleased waits until the daemon of mi has served the RELEASE of
// every handle closed so far (heldOpen is empty), failing the test after
// pollTimeout.
func waitReleased(t *testing.T, mi *mountInfo, state, what string) {
	t.Helper()
	var held []string
	if !pollFor(pollTimeout, func() bool { held = heldOpen(mi, state); return len(held) == 0 }) {
		t.Fatalf("%s: %v later the daemon still holds %d files open for closed handles (RELEASE not served): %v",
			what, pollTimeout, len(held), held[:min(len(held), 5)])
	}
}
