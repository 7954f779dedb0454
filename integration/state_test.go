package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStateOneDaemon: a state is mounted by one daemon. A second mount of
// it is refused with one line naming the holder, and uploads in flight
// through the first mount are unharmed by it and by import, index and verify
// run meanwhile (none of them touches the daemon's staging files).
func TestStateOneDaemon(t *testing.T) {
	t.Parallel()
	src, state, _ := importedFixture(t, "xpak-bzip2-multi")
	mi := mountFSInfo(t, state)
	mnt := mi.Dir

	// An upload in flight: half written, not closed.
	pkg, err := os.ReadFile(filepath.Join(src, "app-misc/hello/hello-2.10-1.xpak"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(mnt, "app-misc", "hello-2.10.tbz2.upload")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pkg[:len(pkg)/2]); err != nil {
		t.Fatal(err)
	}

	other, err := os.MkdirTemp("", "pkgdirfs-it-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(other)
	r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", filepath.Join(t.TempDir(), "second.log"), other)
	if r.Code == 0 {
		run(t, "", mountTimeout, "umount", other)
		t.Fatalf("a second mount of a mounted state succeeded: %s", r)
	}
	msg := strings.TrimSpace(string(r.Stderr))
	if !strings.Contains(msg, "mounted at "+mnt) || strings.Count(msg, "\n") > 0 {
		t.Errorf("second mount: want one line naming the mountpoint %s that holds the state, got %q", mnt, msg)
	}
	if _, ok := mountedFSType(other); ok {
		t.Errorf("%s is mounted after a refused mount", other)
	}
	for _, args := range [][]string{{"verify", "--state", state}, {"index", "--state", state}, {"import", "--state", state, src}} {
		if r := runCLI(t, args...); r.Code != 0 {
			t.Errorf("pkgdirfs %s on a mounted state: exit %d: %s", args[0], r.Code, r)
		}
	}
	// The upload finishes: written in full, then renamed into place.
	if _, err := f.Write(pkg[len(pkg)/2:]); err != nil {
		t.Fatalf("writing the rest of the upload after verify/index/import ran: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the upload after verify/index/import ran: %v", err)
	}
	// The same bytes as build 1: committing them adds nothing, but the
	// commit must succeed (the file is ours, not recovered away).
	if err := os.Rename(dst, filepath.Join(mnt, "app-misc", "hello-2.10.tbz2")); err != nil {
		t.Fatalf("rename of the finished upload into place: %v\n%s", err, readLog(mi.Log))
	}
	if b, _ := os.ReadFile(mi.Log); bytes.Contains(b, []byte("recovered")) {
		t.Errorf("a command run on the mounted state recovered the daemon's staging files:\n%s", b)
	}
}

// TestStateRefusals: mount, index and verify never serve or create a state
// that import (or mount --init) did not make, nor mount a catalog that lost
// its packages.
func TestStateRefusals(t *testing.T) {
	t.Parallel()
	needBinary(t)
	mnt, err := os.MkdirTemp("", "pkgdirfs-it-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mnt)
	tmp := t.TempDir()

	refused := func(what, state, want string) {
		t.Helper()
		r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", filepath.Join(tmp, "refused.log"), mnt)
		if r.Code == 0 {
			run(t, "", mountTimeout, "umount", mnt)
			t.Errorf("%s: mount succeeded, want it refused", what)
			return
		}
		if msg := string(r.Stderr); !strings.Contains(msg, want) {
			t.Errorf("%s: mount refused with %q, want a message containing %q", what, msg, want)
		}
		if _, ok := mountedFSType(mnt); ok {
			t.Errorf("%s: %s mounted after a refusal", what, mnt)
		}
	}

	missing := filepath.Join(tmp, "no-such-state")
	refused("nonexistent --state", missing, "not a pkgdirfs state (no such directory)")
	for _, cmd := range []string{"index", "verify"} {
		if r := runCLI(t, cmd, "--state", missing); r.Code == 0 || !strings.Contains(string(r.Stderr), "not a pkgdirfs state") {
			t.Errorf("pkgdirfs %s --state %s: want a refusal naming it, got %s", cmd, missing, r)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused mount/index/verify created %s (%v)", missing, err)
	}

	empty := filepath.Join(tmp, "empty-dir")
	os.Mkdir(empty, 0o755)
	refused("directory without a catalog", empty, "no catalog in it")

	zero := filepath.Join(tmp, "zero")
	os.Mkdir(zero, 0o755)
	os.WriteFile(catalogFile(zero), nil, 0o644)
	refused("0-byte catalog", zero, "its catalog is empty (0 bytes)")

	// A damaged catalog: cut in half, or its header overwritten. The
	// refusal names the file and the way out.
	for _, c := range []struct{ what, want string }{
		{"truncated", "database disk image is malformed"},
		{"overwritten", "file is not a database"},
	} {
		_, st, _ := importedFixture(t, "xpak-bzip2-multi")
		db := catalogFile(st)
		b, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		if c.what == "truncated" {
			b = b[:len(b)/2]
		} else {
			copy(b, bytes.Repeat([]byte{0x5a}, 200))
		}
		if err := os.WriteFile(db, b, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(st)
		refused(c.what+" catalog", st, c.want)
		refused(c.what+" catalog", st, "pkgdirfs import --rebuild --state "+abs)
		if log := readLog(filepath.Join(tmp, "refused.log")); strings.Contains(log, "panic") {
			t.Errorf("%s catalog: the daemon log has a panic:\n%s", c.what, log)
		}
	}

	// A catalog that lists nothing while blobs/ holds packages.
	_, lost, _ := importedFixture(t, "xpak-gzip-flat")
	blank := filepath.Join(tmp, "blank")
	importOK(t, blank, importSummary{}, t.TempDir())
	for _, f := range catalogFiles(lost) {
		os.Remove(f)
	}
	b, err := os.ReadFile(catalogFile(blank))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(catalogFile(lost), b, 0o644)
	refused("empty catalog with blobs", lost, "lists no packages")

	// --init makes a new, empty PKGDIR.
	fresh := filepath.Join(tmp, "fresh")
	r := run(t, "", mountTimeout, binPath, "mount", "--init", "--state", fresh, "--log", filepath.Join(tmp, "fresh.log"), mnt)
	if r.Code != 0 {
		t.Fatalf("mount --init of a new state: %s", r)
	}
	defer func() {
		run(t, "", mountTimeout, "umount", mnt)
		waitMounted(mnt, false, 10*time.Second)
	}()
	if idx, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil || !bytes.Contains(idx, []byte("PACKAGES: 0")) {
		t.Errorf("mount --init: Packages = %q, %v; want an empty index", idx, err)
	}
}

// TestStateRebuild: a lost catalog (deleted, or 0 bytes) is rebuilt from the
// state's blobs with the same index: builds whose metadata carries their
// BUILD_ID get it back, the others (a flat PKGDIR's) the next free ids, as
// their import gave them. Then it mounts; a catalog that lists packages is
// refused.
func TestStateRebuild(t *testing.T) {
	t.Parallel()
	multi := extractFixture(t, "xpak-bzip2-multi")
	flat := extractFixture(t, "gpkg-xz-flat")
	state := t.TempDir()
	importOK(t, state, importSummary{42, 0, 0}, multi, flat)
	index := func() []string {
		t.Helper()
		r := runCLI(t, "index", "--state", state)
		if r.Code != 0 {
			t.Fatalf("pkgdirfs index: %s", r)
		}
		idx, err := parseIndex(r.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range instances(idx) {
			out = append(out, in.Path+" "+in.SHA1)
		}
		return out
	}
	want := strings.Join(index(), "\n")
	for _, lose := range []string{"deleted", "0 bytes"} {
		for _, f := range catalogFiles(state) {
			os.Remove(f)
		}
		if lose == "0 bytes" {
			os.WriteFile(catalogFile(state), nil, 0o644)
		}
		r := runCLI(t, "import", "--rebuild", "--state", state)
		if r.Code != 0 || !strings.Contains(string(r.Stderr), "imported 42, already present 0, invalid 0") {
			t.Fatalf("catalog %s: import --rebuild: want `imported 42`, got %s", lose, r)
		}
		if got := strings.Join(index(), "\n"); got != want {
			t.Errorf("catalog %s, rebuilt: the index's (PATH, SHA1) differ from before:\n%s", lose, firstDiff(strings.Split(want, "\n"), strings.Split(got, "\n"), nil))
		}
	}
	// A damaged catalog: mount says so in one line, naming the file and the
	// way out; rebuilt, the index is the same again.
	for _, f := range catalogFiles(state)[1:] {
		os.Remove(f)
	}
	os.WriteFile(catalogFile(state), bytes.Repeat([]byte("not a database "), 600), 0o644)
	mnt, _ := os.MkdirTemp("", "pkgdirfs-it-mnt-")
	defer os.Remove(mnt)
	r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", filepath.Join(t.TempDir(), "d.log"), mnt)
	if msg := strings.TrimSpace(string(r.Stderr)); r.Code == 0 || strings.Contains(msg, "\n") ||
		!strings.Contains(msg, catalogFile(state)) || !strings.Contains(msg, "import --rebuild") || strings.Contains(msg, "panic") {
		if r.Code == 0 {
			run(t, "", mountTimeout, "umount", mnt)
		}
		t.Errorf("mount of a damaged catalog: want one line naming the file and import --rebuild, got %s", r)
	}
	if r := runCLI(t, "import", "--rebuild", "--state", state); r.Code != 0 || !strings.Contains(string(r.Stderr), "moved the unreadable catalog aside") {
		t.Fatalf("import --rebuild of a damaged catalog: %s", r)
	}
	if got := strings.Join(index(), "\n"); got != want {
		t.Errorf("damaged catalog, rebuilt: the index's (PATH, SHA1) differ from before")
	}
	if r := runCLI(t, "import", "--rebuild", "--state", state); r.Code == 0 || !strings.Contains(string(r.Stderr), "lists 42 packages") {
		t.Errorf("import --rebuild of a catalog that lists packages: want a refusal, got %s", r)
	}
	m := mountFS(t, state)
	if got, err := os.ReadFile(filepath.Join(m, "Packages")); err != nil || !bytes.Contains(got, []byte("PACKAGES: 42")) {
		t.Errorf("mount of the rebuilt state: Packages %q..., %v", clip(got, 200), err)
	}
}

// TestStateEmptyMountOverPackages: a new, empty state mounted over a
// directory holding packages nobody imported is refused, naming the way
// out (it used to mount an empty PKGDIR over them silently); with
// --hide-existing it mounts; after an import the same mount just works.
func TestStateEmptyMountOverPackages(t *testing.T) {
	t.Parallel()
	needBinary(t)
	pkgdir := extractFixture(t, "xpak-gzip-flat")
	state := filepath.Join(t.TempDir(), "state")
	refusedLog := filepath.Join(t.TempDir(), "refused.log")
	r := run(t, "", mountTimeout, binPath, "mount", "--init", "--state", state, "--log", refusedLog, pkgdir)
	if r.Code == 0 {
		run(t, "", toolTimeout, "umount", pkgdir)
		t.Fatalf("an empty state mounted over a PKGDIR of packages: want a refusal, got exit 0: %s", r)
	}
	out := string(r.Stderr)
	for _, want := range []string{"holds package files", "catalog of " + state + " is empty", "pkgdirfs import --state " + state, "--hide-existing"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal should say %q: %s", want, r)
		}
	}
	if _, ok := mountedFSType(pkgdir); ok {
		t.Fatalf("%s is mounted after the refusal", pkgdir)
	}
	// mountOver mounts the state over the PKGDIR itself (which stays, so
	// not through the harness's mount, which removes its mountpoint).
	mountOver := func(what string, opts ...string) (unmount func()) {
		t.Helper()
		mi := &mountInfo{Dir: pkgdir, Log: filepath.Join(t.TempDir(), "daemon.log")}
		args := append([]string{"mount", "--state", state, "--log", mi.Log}, opts...)
		if r := run(t, "", mountTimeout, binPath, append(args, pkgdir)...); r.Code != 0 {
			t.Fatalf("%s: %s", what, r)
		}
		pids := daemonPIDs(pkgdir)
		return func() {
			if r := run(t, "", toolTimeout, "umount", pkgdir); r.Code != 0 {
				t.Errorf("umount %s: %s", pkgdir, r)
			}
			// The daemon writes the index cache into the state as it
			// exits: it must be gone before the state is (TempDir's
			// cleanup once found the state "not empty").
			for _, pid := range pids {
				waitPIDFileGone(t, pid)
			}
			checkDaemonLog(t, mi)
		}
	}
	// Said on purpose: it mounts, empty.
	unmount := mountOver("mount --hide-existing", "--hide-existing")
	if idx := readPackagesFile(t, pkgdir); strings.Contains(string(idx), "CPV:") {
		t.Errorf("the --hide-existing mount lists packages:\n%s", idx)
	}
	unmount()
	// Imported first, the packages are the catalog's: mounted without a word.
	importOK(t, state, importSummary{8, 0, 0}, pkgdir)
	unmount = mountOver("mount after the import")
	if n := strings.Count(string(readPackagesFile(t, pkgdir)), "\nCPV:"); n != 8 {
		t.Errorf("after the import the mount lists %d packages, want 8", n)
	}
	unmount()
}

// makeMount runs `make mount PKGDIR=pkgdir STATE=state BIN=bin` in the
// repository (bin: a binary of its own, which make builds).
func makeMount(t *testing.T, pkgdir, state, bin string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "mount", "PKGDIR="+pkgdir, "STATE="+state, "BIN="+bin)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// unmountMade unmounts a mount made by `make mount` (its daemon runs bin),
// waits for the daemon to exit and checks its log.
func unmountMade(t *testing.T, mnt, state, bin string) {
	t.Helper()
	pids := daemonPIDsOf(bin, mnt)
	if r := run(t, "", toolTimeout, "umount", mnt); r.Code != 0 {
		t.Errorf("umount %s: %s", mnt, r)
	}
	for _, pid := range pids {
		waitPIDFileGone(t, pid)
	}
	checkDaemonLog(t, &mountInfo{Dir: mnt, Log: filepath.Join(state, "pkgdirfs.log")})
}

// statusInstances is the instance count `pkgdirfs status` reports.
func statusInstances(t *testing.T, state string) string {
	t.Helper()
	r := runCLI(t, "status", "--state", state)
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if v, ok := strings.CutPrefix(l, "instances:"); ok {
			return strings.Fields(v)[0]
		}
	}
	t.Fatalf("no instances line in `pkgdirfs status`: %s", r)
	return ""
}

// TestStateDirOfPKGDIRs: `make mount` on a directory holding two PKGDIRs
// (one with its Packages index, one with category directories only) names
// both, says to import one or to mount each separately, and neither imports
// nor mounts anything (it used to say the directory "looks like a category
// directory", import its parent, keep every file as refused and mount an
// empty PKGDIR over them). A mount of an empty state over it is refused
// with the same hint.
func TestStateDirOfPKGDIRs(t *testing.T) {
	t.Parallel()
	needBinary(t)
	top := filepath.Join(t.TempDir(), "bin-pkgs") // a category-like name, which drew the wrong hint
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	amd64, arm64 := filepath.Join(top, "amd64"), filepath.Join(top, "arm64")
	if err := os.Rename(extractFixture(t, "xpak-gzip-flat"), amd64); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(extractFixture(t, "xpak-zstd-multi"), arm64); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(arm64, "Packages")); err != nil { // a PKGDIR by its category directories alone
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	bin := filepath.Join(t.TempDir(), "pkgdirfs")
	out, err := makeMount(t, top, state, bin)
	if _, ok := mountedFSType(top); ok {
		unmountMade(t, top, state, bin)
		t.Errorf("make mount mounted a PKGDIR over the directory of PKGDIRs %s:\n%s", top, out)
	}
	if err == nil {
		t.Errorf("make mount of a directory of PKGDIRs: want a failure, got success:\n%s", out)
	}
	for _, want := range []string{amd64, arm64, "is not a PKGDIR", "Import one of them", "mount each separately"} {
		if !strings.Contains(out, want) {
			t.Errorf("make mount of a directory of PKGDIRs should say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "looks like a category directory") || strings.Contains(out, "invalid: ") {
		t.Errorf("make mount of a directory of PKGDIRs took it for one PKGDIR:\n%s", out)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("make mount of a directory of PKGDIRs made the state %s (%v): nothing should be imported or kept", state, err)
	}

	// A mount of an empty state over it by hand.
	state2 := filepath.Join(t.TempDir(), "state2")
	r := run(t, "", mountTimeout, binPath, "mount", "--init", "--state", state2, "--log", filepath.Join(t.TempDir(), "refused.log"), top)
	if _, ok := mountedFSType(top); ok {
		run(t, "", toolTimeout, "umount", top)
		t.Errorf("an empty state was mounted over the directory of PKGDIRs %s: %s", top, r)
	}
	if r.Code == 0 || !strings.Contains(string(r.Stderr), amd64) || !strings.Contains(string(r.Stderr), arm64) ||
		!strings.Contains(string(r.Stderr), "Import one of them") {
		t.Errorf("mount of an empty state over a directory of PKGDIRs: want a refusal naming %s and %s and saying to import one: %s", amd64, arm64, r)
	}
}

// TestStateReusedForAnotherPKGDIR: a state made by `make mount` for one
// PKGDIR (an invalid file in its quarantine) is not taken for another.
// `make mount` of the other with the same STATE imports nothing and names
// the PKGDIR the state serves (it used to import the second PKGDIR into it
// and show the first one's refused file, and packages, in the second's
// mount); `pkgdirfs mount` over the other is refused unless --other-pkgdir;
// the other PKGDIR under a state of its own shows nothing of the first.
func TestStateReusedForAnotherPKGDIR(t *testing.T) {
	t.Parallel()
	needBinary(t)
	first, second := extractFixture(t, "xpak-gzip-flat"), extractFixture(t, "xpak-zstd-multi")
	broken := filepath.Join("app-misc", "broken-1.0.tbz2")
	if err := os.WriteFile(filepath.Join(first, broken), []byte("not a package"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	bin := filepath.Join(t.TempDir(), "pkgdirfs")
	if out, err := makeMount(t, first, state, bin); err != nil {
		t.Fatalf("make mount of %s: %v\n%s", first, err, out)
	}
	if _, err := os.Stat(filepath.Join(first, ".pkgdirfs", "refused", broken)); err != nil {
		t.Errorf("the invalid file is not in the first mount's quarantine: %v", err)
	}
	if r := runCLI(t, "status", "--state", state); !strings.Contains(string(r.Stdout), "serves:       "+first+"\n") {
		t.Errorf("`pkgdirfs status` of the mounted state should say it serves %s: %s", first, r)
	}
	unmountMade(t, first, state, bin)
	instances := statusInstances(t, state)

	out, err := makeMount(t, second, state, bin)
	if _, ok := mountedFSType(second); ok {
		unmountMade(t, second, state, bin)
		t.Errorf("make mount mounted the state of %s over %s:\n%s", first, second, out)
	}
	if err == nil || !strings.Contains(out, "serves the PKGDIR "+first) || !strings.Contains(out, "nothing imported") {
		t.Errorf("make mount of %s with the state of %s: %v, want a refusal naming %s, nothing imported:\n%s", second, first, err, first, out)
	}
	if got := statusInstances(t, state); got != instances {
		t.Errorf("the refused make mount changed the state: %s instances, had %s", got, instances)
	}

	// By hand: refused, unless asked for.
	refusedLog := filepath.Join(t.TempDir(), "refused.log")
	r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", refusedLog, second)
	if _, ok := mountedFSType(second); ok {
		run(t, "", toolTimeout, "umount", second)
		t.Errorf("pkgdirfs mount put the state of %s over %s: %s", first, second, r)
	}
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "serves the PKGDIR "+first) || !strings.Contains(string(r.Stderr), "--other-pkgdir") {
		t.Errorf("pkgdirfs mount of the state of %s over %s: want a refusal naming %s and --other-pkgdir: %s", first, second, first, r)
	}

	// Its own state: nothing of the first PKGDIR.
	own := filepath.Join(t.TempDir(), "own")
	if out, err := makeMount(t, second, own, bin); err != nil {
		t.Fatalf("make mount of %s with a state of its own: %v\n%s", second, err, out)
	}
	if ents, err := os.ReadDir(filepath.Join(second, ".pkgdirfs", "refused")); err == nil && len(ents) > 0 {
		t.Errorf("%s under its own state shows refused files: %v", second, ents)
	}
	if idx := readPackagesFile(t, second); bytes.Contains(idx, []byte("CPV: app-admin/sudo")) || !bytes.Contains(idx, []byte("CPV: app-arch/zstd")) {
		t.Errorf("%s under its own state: want its own packages only, Packages is:\n%s", second, idx)
	}
	unmountMade(t, second, own, bin)

	// Asked for: the first state serves the second PKGDIR from now on.
	mi := &mountInfo{Dir: second, Log: filepath.Join(t.TempDir(), "other.log")}
	if r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", mi.Log, "--other-pkgdir", second); r.Code != 0 {
		t.Fatalf("mount --other-pkgdir: %s", r)
	}
	mi.PIDs = daemonPIDs(second)
	if _, err := os.Stat(filepath.Join(second, ".pkgdirfs", "refused", broken)); err != nil {
		t.Errorf("mount --other-pkgdir: the state's refused file should show: %v", err)
	}
	if r := runCLI(t, "status", "--state", state); !strings.Contains(string(r.Stdout), "serves:       "+second+"\n") {
		t.Errorf("after mount --other-pkgdir, `pkgdirfs status` should say the state serves %s: %s", second, r)
	}
	if r := run(t, "", toolTimeout, "umount", second); r.Code != 0 {
		t.Errorf("umount %s: %s", second, r)
	}
	for _, pid := range mi.PIDs {
		waitPIDFileGone(t, pid)
	}
	checkDaemonLog(t, mi)
}
