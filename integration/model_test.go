package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The removal model end to end, with real tools on a real mount: a removed
// build stays removed (junk at its name is quarantined, never served), its
// removal grace survives kill -9, a build id once served never names other
// bytes, mv moves a build without losing one, refused bytes never sit at a
// package name, and an expired grace frees the blob.
//
// Every operation on the mount runs in a child process (cp, mv, rm,
// sha1sum, ls, find): around a kill -9 the test process holds nothing open
// on the mount.

const (
	mdCPV      = "app-misc/hello-2.10"
	mdHelloDir = "app-misc/hello"
	mdFlat     = "app-misc/hello-2.10.tbz2"
	mdGrace    = "10m"
	// mdWatchdog is the ERROR line a kill -9 makes the watchdog log (as
	// it should); the only one these tests allow.
	mdWatchdog = "the daemon died without unmounting"
)

// mdMulti is the multi-instance path of hello-2.10 build id.
func mdMulti(id int) string { return fmt.Sprintf("%s/hello-2.10-%d.xpak", mdHelloDir, id) }

// mdBuild is one fixture build of hello-2.10 on local disk.
type mdBuild struct {
	Src, SHA1 string
}

// mdHelloBuilds returns the three xz builds and the three zstd builds of
// app-misc/hello-2.10 from the fixtures (six different files of one CPV;
// build n of each carries BUILD_ID n in its metadata).
func mdHelloBuilds(t *testing.T) (xz, zstd []mdBuild) {
	t.Helper()
	get := func(fixture string) []mdBuild {
		dir := extractFixture(t, fixture)
		var out []mdBuild
		for i := 1; i <= 3; i++ {
			rel := mdMulti(i)
			src := filepath.Join(dir, rel)
			sum := sha1Paths(t, dir, []string{rel})[rel]
			if sum == "" {
				t.Fatalf("test premise: fixture %s has no %s", fixture, rel)
			}
			out = append(out, mdBuild{src, sum})
		}
		return out
	}
	xz, zstd = get("xpak-xz-multi"), get("xpak-zstd-multi")
	seen := map[string]string{}
	for _, b := range append(append([]mdBuild{}, xz...), zstd...) {
		if other, dup := seen[b.SHA1]; dup {
			t.Fatalf("test premise: %s and %s have the same bytes", other, b.Src)
		}
		seen[b.SHA1] = b.Src
	}
	return xz, zstd
}

// mdJunk writes n random bytes to a local file and returns its path.
func mdJunk(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "junk.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mdMount mounts a fresh state with the given removal grace.
func mdMount(t *testing.T, grace string) (state string, mi *mountInfo) {
	t.Helper()
	state = t.TempDir()
	mi = mountFSInfo(t, state, "--removed-grace", grace)
	mdOK(t, mi, "mkdir -p "+shQuote(filepath.Join(mi.Dir, mdHelloDir)))
	return state, mi
}

// mdOK runs a shell script that must exit 0.
func mdOK(t *testing.T, mi *mountInfo, script string) cmdResult {
	t.Helper()
	r := shell(t, "", script)
	if r.Code != 0 {
		t.Fatalf("want exit 0: %s\n%s", r, wDaemonLog(mi))
	}
	return r
}

// mdRefused runs a shell script that must fail, with want in its stderr.
func mdRefused(t *testing.T, mi *mountInfo, script, want string) cmdResult {
	t.Helper()
	r := shell(t, "", script)
	if r.Code == 0 {
		t.Errorf("want a failure (exit != 0), got exit 0: %s\n%s", r, wDaemonLog(mi))
	} else if !strings.Contains(string(r.Stderr), want) {
		t.Errorf("want %q in stderr: %s", want, r)
	}
	return r
}

// mdSum is sha1sum of MNT/rel, "" when it cannot be read.
func mdSum(t *testing.T, mnt, rel string) string {
	t.Helper()
	r := run(t, mnt, toolTimeout, "sha1sum", "--", rel)
	if r.Code != 0 {
		return ""
	}
	sum, _, _ := strings.Cut(string(r.Stdout), " ")
	return sum
}

// mdIndex reads MNT/Packages: its instances and how many CPV: and PATH:
// lines it has.
func mdIndex(t *testing.T, mnt string) (insts []instance, cpvLines, pathLines int) {
	t.Helper()
	idx, raw := wReadIndex(t, mnt)
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "CPV: ") {
			cpvLines++
		}
		if strings.HasPrefix(l, "PATH: ") {
			pathLines++
		}
	}
	return instances(idx), cpvLines, pathLines
}

// mdHello is the instances of hello-2.10 in MNT/Packages by PATH.
func mdHello(t *testing.T, mnt string) map[string]instance {
	t.Helper()
	insts, _, _ := mdIndex(t, mnt)
	res := map[string]instance{}
	for _, in := range insts {
		if in.CPV == mdCPV {
			res[in.Path] = in
		}
	}
	return res
}

func mdDescribe(m map[string]instance) string {
	var l []string
	for _, p := range sortedKeys(m) {
		l = append(l, fmt.Sprintf("%s (BUILD_ID %d, SHA1 %s)", p, m[p].BuildID, m[p].SHA1))
	}
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, ", ")
}

// mdWantListed fails unless Packages lists hello-2.10 at exactly the given
// PATH → SHA1 (with BUILD_ID the PATH's), and each PATH reads with its SHA1.
func mdWantListed(t *testing.T, mi *mountInfo, what string, want map[int]string) {
	t.Helper()
	got := mdHello(t, mi.Dir)
	ok := len(got) == len(want)
	for id, sum := range want {
		in, listed := got[mdMulti(id)]
		if !listed || in.SHA1 != sum || in.BuildID != int64(id) {
			ok = false
		}
	}
	if !ok {
		var w []string
		for id, sum := range want {
			w = append(w, fmt.Sprintf("%s (BUILD_ID %d, SHA1 %s)", mdMulti(id), id, sum))
		}
		t.Errorf("%s: MNT/Packages lists %s: %s\nwant: %s\n%s", what, mdCPV, mdDescribe(got), strings.Join(w, ", "), wDaemonLog(mi))
	}
	for id, sum := range want {
		if got := mdSum(t, mi.Dir, mdMulti(id)); got != sum {
			t.Errorf("%s: sha1sum MNT/%s = %q, want %s", what, mdMulti(id), got, sum)
		}
	}
}

// mdLs is the names `ls -A DIR` lists.
func mdLs(t *testing.T, dir string) []string {
	t.Helper()
	return strings.Fields(string(mustRun(t, "", "ls", "-A", "--", dir)))
}

// mdVerify runs `pkgdirfs verify --state STATE`, which must exit 0.
func mdVerify(t *testing.T, state, what string) string {
	t.Helper()
	r := runCLI(t, "verify", "--state", state)
	if r.Code != 0 {
		t.Errorf("%s: `pkgdirfs verify`: want exit 0: %s", what, r)
	}
	return string(r.Stdout) + string(r.Stderr)
}

// mdHasLinePrefix tells whether out has a line starting with prefix.
func mdHasLinePrefix(out, prefix string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// mdKill9Remount kills the daemon with SIGKILL, waits for its watchdog to
// say so, and runs `pkgdirfs mount` again on the same state and mountpoint
// (as TestCoreMountLifecycle's kill9-restart does); the remount must succeed.
// The cleanup registered by mountFSInfo then unmounts the new daemon.
func mdKill9Remount(t *testing.T, state string, mi *mountInfo, opts ...string) {
	t.Helper()
	mi.AllowErrors = append(mi.AllowErrors, mdWatchdog)
	if len(mi.PIDs) != 1 {
		t.Fatalf("want one daemon process serving %s, found %v", mi.Dir, mi.PIDs)
	}
	said := strings.Count(readLog(mi.Log), mdWatchdog)
	pid := mi.PIDs[0]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	if !waitPIDGone(pid, exitTimeout) {
		t.Fatalf("daemon pid %d still there %v after kill -9", pid, exitTimeout)
	}
	for deadline := time.Now().Add(exitTimeout); strings.Count(readLog(mi.Log), mdWatchdog) <= said; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9, no watchdog line %q in the log within %v:\n%s", mdWatchdog, exitTimeout, readLog(mi.Log))
		}
	}
	args := append(append([]string{"mount", "--state", state, "--log", mi.Log}, opts...), mi.Dir)
	r := run(t, "", mountTimeout, binPath, args...)
	mi.PIDs = daemonPIDs(mi.Dir)
	if r.Code != 0 {
		t.Fatalf("`pkgdirfs mount` of the same state after kill -9: want exit 0: %s\ndaemon log:\n%s", r, readLog(mi.Log))
	}
	if len(mi.PIDs) == 0 {
		t.Fatalf("remounted %s after kill -9 but found no daemon process serving it", mi.Dir)
	}
}

// ---------------------------------------------------------------- 1

// TestModelRemovedStaysRemoved: junk written at the name of a removed
// build is refused and quarantined; the build does not come back, the name
// shows nothing, and rm of the quarantined copy clears the refusal.
func TestModelRemovedStaysRemoved(t *testing.T) {
	t.Parallel()
	xz, _ := mdHelloBuilds(t)
	state, mi := mdMount(t, mdGrace)
	mnt := mi.Dir
	name := mdMulti(7)
	dst := filepath.Join(mnt, name)

	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(dst))
	mdWantListed(t, mi, "after cp to "+name, map[int]string{7: xz[0].SHA1})

	mdOK(t, mi, "rm "+shQuote(dst))
	mdWantListed(t, mi, "after rm of "+name, map[int]string{})
	removed := filepath.Join(".pkgdirfs/removed", name)
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Errorf("after rm: sha1sum MNT/%s = %q, want the removed build's %s", removed, got, xz[0].SHA1)
	}

	junk := mdJunk(t, 8192)
	junkSum := sha1Paths(t, "", []string{junk})[junk]
	mdRefused(t, mi, "cp "+shQuote(junk)+" "+shQuote(dst), "Invalid argument")

	mdWantListed(t, mi, "after cp of 8 KiB of junk to "+name, map[int]string{})
	for _, in := range mdHello(t, mnt) {
		if in.BuildID == 7 {
			t.Errorf("after the junk: Packages lists build 7 at %s", in.Path)
		}
	}
	if l := mdLs(t, filepath.Join(mnt, mdHelloDir)); has(l, filepath.Base(name)) {
		t.Errorf("after the junk: `ls -A MNT/%s` lists %s: %v", mdHelloDir, filepath.Base(name), l)
	}
	if r := run(t, mnt, toolTimeout, "stat", "-L", "--", name); r.Code == 0 {
		t.Errorf("after the junk: stat -L MNT/%s succeeds (want ENOENT): %s", name, r)
	}
	if r := run(t, mnt, toolTimeout, "stat", "-L", "--", mdFlat); r.Code == 0 {
		t.Errorf("after the junk: the flat name MNT/%s resolves to something (want nothing: its only build was removed): %s", mdFlat, r)
	}
	refused := filepath.Join(".pkgdirfs/refused", name)
	if r := run(t, "", toolTimeout, "cmp", "--", junk, filepath.Join(mnt, refused)); r.Code != 0 {
		t.Errorf("the junk is not byte-identical at MNT/%s: %s", refused, r)
	}
	if got := mdSum(t, mnt, refused); got != junkSum {
		t.Errorf("sha1sum MNT/%s = %q, want the junk's %s", refused, got, junkSum)
	}
	// The removed build is still the removed build, not the junk.
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Errorf("after the junk: sha1sum MNT/%s = %q, want the removed build's %s", removed, got, xz[0].SHA1)
	}

	prefix := "refused: " + name
	if out := mdVerify(t, state, "with the junk quarantined"); !mdHasLinePrefix(out, prefix) {
		t.Errorf("`pkgdirfs verify` with the junk quarantined: want a line starting with %q, got:\n%s", prefix, out)
	}
	mdOK(t, mi, "rm "+shQuote(filepath.Join(mnt, refused)))
	if r := run(t, mnt, toolTimeout, "stat", "--", refused); r.Code == 0 {
		t.Errorf("after rm MNT/%s, stat still finds it: %s", refused, r)
	}
	if out := mdVerify(t, state, "after rm of the quarantined junk"); strings.Contains(out, prefix) {
		t.Errorf("`pkgdirfs verify` after rm MNT/%s still lists the refusal:\n%s", refused, out)
	}
	mdWantListed(t, mi, "at the end", map[int]string{})
}

// ---------------------------------------------------------------- 2

// TestModelGraceSurvivesKill9: a removed build, the only package of its
// state, stays at .pkgdirfs/removed/PATH across kill -9 and a remount
// (which must succeed), and its identical bytes copied back under another
// name bring it back with its own build id.
func TestModelGraceSurvivesKill9(t *testing.T) {
	t.Parallel()
	xz, _ := mdHelloBuilds(t)
	state, mi := mdMount(t, mdGrace)
	mnt := mi.Dir
	name := mdMulti(7)
	removed := filepath.Join(".pkgdirfs/removed", name)

	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(filepath.Join(mnt, name)))
	mdWantListed(t, mi, "after cp to "+name, map[int]string{7: xz[0].SHA1})
	mdOK(t, mi, "rm "+shQuote(filepath.Join(mnt, name)))
	mdWantListed(t, mi, "after rm of "+name, map[int]string{})
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Fatalf("after rm: sha1sum MNT/%s = %q, want the removed build's %s\n%s", removed, got, xz[0].SHA1, wDaemonLog(mi))
	}

	// The state now holds no instance, one removed build and its blob.
	mdKill9Remount(t, state, mi, "--removed-grace", mdGrace)

	insts, cpvs, paths := mdIndex(t, mnt)
	if len(insts) != 0 || cpvs != 0 || paths != 0 {
		t.Errorf("after kill -9 and remount: MNT/Packages lists %d instances (%d CPV:, %d PATH: lines), want none", len(insts), cpvs, paths)
	}
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Errorf("after kill -9 and remount: sha1sum MNT/%s = %q, want the removed build's %s", removed, got, xz[0].SHA1)
	}
	if out := mdVerify(t, state, "after kill -9 and remount"); strings.Contains(out, "orphan") {
		t.Errorf("`pkgdirfs verify` after kill -9 and remount: the removed build's blob (in its grace) is reported as an orphan:\n%s", out)
	}

	// The identical bytes, under another name: the same build, build id 7.
	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(filepath.Join(mnt, mdFlat)))
	mdWantListed(t, mi, "after cp of the removed build's bytes to "+mdFlat, map[int]string{7: xz[0].SHA1})
	if r := run(t, mnt, toolTimeout, "stat", "--", removed); r.Code == 0 {
		t.Errorf("the build came back, but MNT/%s is still there: %s", removed, r)
	}
	if got := mdSum(t, mnt, mdFlat); got != xz[0].SHA1 {
		t.Errorf("sha1sum MNT/%s = %q, want %s", mdFlat, got, xz[0].SHA1)
	}
}

// ---------------------------------------------------------------- 3

// TestModelBuildIDsNeverReused: a removed build's id is spent: neither a
// new build written at the flat name (whose metadata BUILD_ID is that id)
// nor different bytes written at its very name ever get it.
func TestModelBuildIDsNeverReused(t *testing.T) {
	t.Parallel()
	xz, zstd := mdHelloBuilds(t)
	_, mi := mdMount(t, mdGrace)
	mnt := mi.Dir

	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(1))))
	mdOK(t, mi, "cp "+shQuote(xz[1].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(2))))
	mdWantListed(t, mi, "after cp of two builds", map[int]string{1: xz[0].SHA1, 2: xz[1].SHA1})

	mdOK(t, mi, "rm "+shQuote(filepath.Join(mnt, mdMulti(2))))
	mdWantListed(t, mi, "after rm of build 2", map[int]string{1: xz[0].SHA1})

	// zstd's build 2 carries BUILD_ID 2 in its metadata, and 2 is the
	// highest id listed plus one: both would point at the spent id.
	mdOK(t, mi, "cp "+shQuote(zstd[1].Src)+" "+shQuote(filepath.Join(mnt, mdFlat)))
	mdWantListed(t, mi, "after cp of a third build (metadata BUILD_ID 2) to "+mdFlat,
		map[int]string{1: xz[0].SHA1, 3: zstd[1].SHA1})

	// Different bytes at the spent name itself: a new id, never 2.
	mdOK(t, mi, "cp "+shQuote(zstd[0].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(2))))
	mdWantListed(t, mi, "after cp of different bytes to the spent name "+mdMulti(2),
		map[int]string{1: xz[0].SHA1, 3: zstd[1].SHA1, 4: zstd[0].SHA1})

	// Whatever still serves the old PATH serves the old bytes.
	for _, rel := range []string{mdMulti(2), filepath.Join(".pkgdirfs/removed", mdMulti(2))} {
		if got := mdSum(t, mnt, rel); got != "" && got != xz[1].SHA1 {
			t.Errorf("MNT/%s reads with sha1 %s: the PATH of build 2 (SHA1 %s) names other bytes", rel, got, xz[1].SHA1)
		}
	}
	if got := mdSum(t, mnt, filepath.Join(".pkgdirfs/removed", mdMulti(2))); got != xz[1].SHA1 {
		t.Errorf("sha1sum MNT/.pkgdirfs/removed/%s = %q, want the removed build 2's %s", mdMulti(2), got, xz[1].SHA1)
	}
}

// ---------------------------------------------------------------- 4

// TestModelMoveKeepsBuild: mv to a free id of the same CPV moves the build
// (the old PATH kept for the grace); mv onto a name its bytes cannot have
// fails and changes nothing. No mv reduces the entries of Packages.
func TestModelMoveKeepsBuild(t *testing.T) {
	t.Parallel()
	xz, _ := mdHelloBuilds(t)
	nanoDir := extractFixture(t, "xpak-xz-multi")
	const nanoName = "app-editors/nano/nano-7.2-r1-1.xpak"
	nanoSum := sha1Paths(t, nanoDir, []string{nanoName})[nanoName]
	_, mi := mdMount(t, mdGrace)
	mnt := mi.Dir

	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(1)))+" && cp "+
		shQuote(xz[1].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(2)))+" && mkdir -p "+
		shQuote(filepath.Join(mnt, "app-editors/nano"))+" && cp "+shQuote(filepath.Join(nanoDir, nanoName))+" "+
		shQuote(filepath.Join(mnt, nanoName)))
	mdWantListed(t, mi, "after cp of two builds", map[int]string{1: xz[0].SHA1, 2: xz[1].SHA1})
	// Build 3, removed: its id is spent (it named other bytes).
	mdOK(t, mi, "cp "+shQuote(xz[2].Src)+" "+shQuote(filepath.Join(mnt, mdMulti(3)))+" && rm "+shQuote(filepath.Join(mnt, mdMulti(3))))
	mdWantListed(t, mi, "after cp and rm of build 3", map[int]string{1: xz[0].SHA1, 2: xz[1].SHA1})
	_, cpvs0, paths0 := mdIndex(t, mnt)
	if cpvs0 != 3 || paths0 != 3 {
		t.Fatalf("test premise: MNT/Packages has %d CPV: and %d PATH: lines, want 3 each (hello 1, 2 and nano)", cpvs0, paths0)
	}
	entries := func(what string) {
		t.Helper()
		_, cpvs, paths := mdIndex(t, mnt)
		if cpvs < cpvs0 || paths < paths0 {
			t.Errorf("%s: MNT/Packages has %d CPV: and %d PATH: lines, had %d and %d: a mv lost an entry", what, cpvs, paths, cpvs0, paths0)
		}
	}

	from, to := filepath.Join(mnt, mdMulti(1)), filepath.Join(mnt, mdMulti(9))
	mdOK(t, mi, "mv "+shQuote(from)+" "+shQuote(to))
	entries("after mv -1 → -9")
	mdWantListed(t, mi, "after mv "+mdMulti(1)+" "+mdMulti(9), map[int]string{9: xz[0].SHA1, 2: xz[1].SHA1})
	removed := filepath.Join(".pkgdirfs/removed", mdMulti(1))
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Errorf("after mv: sha1sum MNT/%s = %q, want the moved build's %s (its old PATH kept for the grace)", removed, got, xz[0].SHA1)
	}
	if l := mdLs(t, filepath.Join(mnt, mdHelloDir)); has(l, filepath.Base(mdMulti(1))) {
		t.Errorf("after mv: `ls -A MNT/%s` still lists %s: %v", mdHelloDir, filepath.Base(mdMulti(1)), l)
	}

	refusals := []struct{ dst, want string }{
		{filepath.Join(mdHelloDir, "foo.xpak"), "Operation not permitted"}, // not a package name
		{"tmp.bin", "Operation not permitted"},                             // not a package name, another directory
		{"app-editors/nano/nano-7.2-r1-5.xpak", ""},                        // another CPV's multi name (free id)
		{mdMulti(2), ""}, // a taken build id
		{mdMulti(3), ""}, // a spent build id (removed build 3, other bytes)
	}
	for _, rf := range refusals {
		what := "mv " + mdMulti(9) + " " + rf.dst
		r := shell(t, "", "mv "+shQuote(to)+" "+shQuote(filepath.Join(mnt, rf.dst)))
		if r.Code == 0 {
			t.Errorf("%s: want a failure, got exit 0: %s\n%s", what, r, wDaemonLog(mi))
		} else if !strings.Contains(string(r.Stderr), rf.want) {
			t.Errorf("%s: want %q in stderr: %s", what, rf.want, r)
		}
		entries("after " + what)
		mdWantListed(t, mi, "after "+what, map[int]string{9: xz[0].SHA1, 2: xz[1].SHA1})
		switch rf.dst {
		case mdMulti(2):
			// The taken name keeps its own build (mdWantListed read it).
		case mdMulti(3):
			if got := mdSum(t, mnt, filepath.Join(".pkgdirfs/removed", mdMulti(3))); got != xz[2].SHA1 {
				t.Errorf("%s: sha1sum MNT/.pkgdirfs/removed/%s = %q, want the removed build 3's %s", what, mdMulti(3), got, xz[2].SHA1)
			}
			if got := mdSum(t, mnt, rf.dst); got != "" {
				t.Errorf("%s: MNT/%s reads again (sha1 %s) after the refused mv", what, rf.dst, got)
			}
		case "app-editors/nano/nano-7.2-r1-5.xpak":
			if got := mdSum(t, mnt, rf.dst); got != "" {
				t.Errorf("%s: MNT/%s now reads (sha1 %s)", what, rf.dst, got)
			}
		default:
			if r := run(t, mnt, toolTimeout, "stat", "--", rf.dst); r.Code == 0 {
				t.Errorf("%s: MNT/%s exists after the refused mv: %s", what, rf.dst, r)
			}
		}
	}
	if got := mdSum(t, mnt, nanoName); got != nanoSum {
		t.Errorf("sha1sum MNT/%s = %q, want %s", nanoName, got, nanoSum)
	}
}

// ---------------------------------------------------------------- 5

// TestModelRefusedQuarantined: junk copied to a flat package name fails
// and is kept only in the hidden quarantine, where find does not go.
func TestModelRefusedQuarantined(t *testing.T) {
	t.Parallel()
	_, mi := mdMount(t, mdGrace)
	mnt := mi.Dir
	const name = "app-misc/garbage-1.0.tbz2"
	refused := filepath.Join(".pkgdirfs/refused", name)

	junk := mdJunk(t, 8192)
	mdRefused(t, mi, "cp "+shQuote(junk)+" "+shQuote(filepath.Join(mnt, name)), "Invalid argument")

	if l := mdLs(t, filepath.Join(mnt, "app-misc")); has(l, "garbage-1.0.tbz2") {
		t.Errorf("after the refused cp: `ls -A MNT/app-misc` lists garbage-1.0.tbz2: %v", l)
	}
	if l := mdLs(t, mnt); has(l, ".pkgdirfs") {
		t.Errorf("`ls -A MNT` lists .pkgdirfs (it must not be listed): %v", l)
	}
	if found := nmFind(t, mnt, ".", "-name", "garbage*"); len(found) != 0 {
		t.Errorf("after the refused cp: `find MNT -name 'garbage*'` finds %v, want nothing", found)
	}
	insts, cpvs, _ := mdIndex(t, mnt)
	if len(insts) != 0 || cpvs != 0 {
		t.Errorf("after the refused cp: MNT/Packages lists %d instances, want none", len(insts))
	}
	if r := run(t, "", toolTimeout, "cmp", "--", junk, filepath.Join(mnt, refused)); r.Code != 0 {
		t.Errorf("the junk is not byte-identical at MNT/%s: %s", refused, r)
	}

	// Junk again at the same name: refused, kept, and the first kept as it was.
	junk2 := mdJunk(t, 4096)
	junk2Sum := sha1Paths(t, "", []string{junk2})[junk2]
	mdRefused(t, mi, "cp "+shQuote(junk2)+" "+shQuote(filepath.Join(mnt, name)), "Invalid argument")
	if r := run(t, "", toolTimeout, "cmp", "--", junk, filepath.Join(mnt, refused)); r.Code != 0 {
		t.Errorf("after a second refusal at the same name, MNT/%s no longer holds the first junk: %s", refused, r)
	}
	kept := false
	for _, n := range mdLs(t, filepath.Join(mnt, ".pkgdirfs/refused/app-misc")) {
		if mdSum(t, mnt, filepath.Join(".pkgdirfs/refused/app-misc", n)) == junk2Sum {
			kept = true
		}
	}
	if !kept {
		t.Errorf("the second junk (sha1 %s) is nowhere in MNT/.pkgdirfs/refused/app-misc: %v", junk2Sum, mdLs(t, filepath.Join(mnt, ".pkgdirfs/refused/app-misc")))
	}
	if found := nmFind(t, mnt, ".", "-name", "garbage*"); len(found) != 0 {
		t.Errorf("after the second refused cp: `find MNT -name 'garbage*'` finds %v, want nothing", found)
	}
}

// ---------------------------------------------------------------- 6

// TestModelGraceExpires: with --removed-grace 2s a removed build is at
// .pkgdirfs/removed/PATH at once and gone a little after 2 s; its blob is
// deleted (verify: no orphan).
func TestModelGraceExpires(t *testing.T) {
	t.Parallel()
	xz, _ := mdHelloBuilds(t)
	state, mi := mdMount(t, "2s")
	mnt := mi.Dir
	name := mdMulti(1)
	removed := filepath.Join(".pkgdirfs/removed", name)

	mdOK(t, mi, "cp "+shQuote(xz[0].Src)+" "+shQuote(filepath.Join(mnt, name)))
	mdWantListed(t, mi, "after cp", map[int]string{1: xz[0].SHA1})
	if files, _ := blobFiles(t, state); files != 1 {
		t.Errorf("after one cp, STATE/blobs holds %d files, want 1", files)
	}

	rmStart := time.Now()
	mdOK(t, mi, "rm "+shQuote(filepath.Join(mnt, name)))
	mdWantListed(t, mi, "after rm", map[int]string{})
	if got := mdSum(t, mnt, removed); got != xz[0].SHA1 {
		t.Errorf("%v after rm: sha1sum MNT/%s = %q, want the removed build's %s", time.Since(rmStart).Round(time.Millisecond), removed, got, xz[0].SHA1)
	}

	// The daemon collects expired tombstones about once a second.
	const limit = 15 * time.Second
	var goneAfter time.Duration
	for deadline := rmStart.Add(limit); ; time.Sleep(100 * time.Millisecond) {
		r := run(t, mnt, toolTimeout, "stat", "--", removed)
		if r.Code != 0 {
			goneAfter = time.Since(rmStart)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MNT/%s still there %v after rm with --removed-grace 2s\n%s", removed, limit, wDaemonLog(mi))
		}
	}
	if goneAfter < time.Second {
		t.Errorf("MNT/%s gone %v after rm, before its 2 s grace", removed, goneAfter)
	}
	t.Logf("the removed build was collected %v after rm (grace 2s)", goneAfter.Round(time.Millisecond))
	// Empty directories may stay under .pkgdirfs/removed; no file may.
	if r := run(t, mnt, toolTimeout, "find", ".pkgdirfs/removed", "-type", "f"); len(strings.TrimSpace(string(r.Stdout))) != 0 {
		t.Errorf("after the grace, MNT/.pkgdirfs/removed still holds files: %s", r)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		files, _ := blobFiles(t, state)
		if files == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the removed build's blob is still in STATE/blobs (%d files) 5 s after .pkgdirfs/removed stopped showing it", files)
			break
		}
	}

	// Unmount (the registered cleanup then finds it unmounted, waits for
	// the daemon and checks its log) and verify the state.
	if r := run(t, "", toolTimeout, "umount", mnt); r.Code != 0 {
		t.Fatalf("umount: %s", r)
	}
	for _, pid := range mi.PIDs {
		if !waitPIDGone(pid, exitTimeout) {
			t.Fatalf("daemon pid %d still running %v after umount", pid, exitTimeout)
		}
	}
	out := mdVerify(t, state, "after the grace, unmounted")
	if strings.Contains(out, "orphan") || strings.Contains(out, "held for removed builds") {
		t.Errorf("`pkgdirfs verify` after the grace: want no orphan and no held blob:\n%s", out)
	}
	if files, _ := blobFiles(t, state); files != 0 {
		t.Errorf("after the grace, STATE/blobs holds %d files, want none", files)
	}
}
