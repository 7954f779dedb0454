package integration

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"pkgdirfs/catalog/sqlite"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFaultFullDisk: the state on a small tmpfs. A package larger than the
// free space fails with ENOSPC (what cp reports), leaves nothing visible and
// gives the space back; with the disk full, Packages stays readable (also
// for a generation whose TIMESTAMP was never stored) and a write fails with
// ENOSPC; once space is freed the next write commits without a restart. No
// panic and no ERROR line in the daemon log.
func TestFaultFullDisk(t *testing.T) {
	t.Parallel()
	needBinary(t)
	fsdir := smallTmpfs(t)
	multi := extractFixture(t, "xpak-bzip2-multi")
	flat := extractFixture(t, "xpak-bzip2-flat")
	state := filepath.Join(fsdir, "state")
	importOK(t, state, importSummary{30, 0, 0}, multi)
	mi := mountFSInfo(t, state)
	mnt := mi.Dir

	big := filepath.Join(t.TempDir(), "big-1.0.tbz2")
	b := make([]byte, 40<<20)
	rand.Read(b)
	if err := os.WriteFile(big, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(mnt, "app-misc", "big-1.0.tbz2")
	r := run(t, "", toolTimeout, "cp", big, dst)
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "No space left on device") {
		t.Errorf("cp of 40 MB into a state with 24 MB: want cp to fail with \"No space left on device\", got %s", r)
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Errorf("MNT/app-misc/big-1.0.tbz2 exists after the failed write: half-written bytes are visible")
	}
	if idx, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil || bytes.Contains(idx, []byte("big-1.0")) {
		t.Errorf("Packages after the failed write: err %v, lists big-1.0: %v", err, bytes.Contains(idx, []byte("big-1.0")))
	}

	// A commit (a new generation, not served yet), then a full disk.
	before, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	hellos := bytes.Count(before, []byte("CPV: app-misc/hello-2.10\n"))
	pkg := filepath.Join(flat, "app-misc", "hello-2.10.tbz2")
	if r := run(t, "", toolTimeout, "cp", pkg, filepath.Join(mnt, "app-misc", "hello-2.10.tbz2")); r.Code != 0 {
		t.Fatalf("cp of a small package with space left: %s\n%s", r, readLog(mi.Log))
	}
	filler := filepath.Join(fsdir, "filler")
	run(t, "", toolTimeout, "dd", "if=/dev/zero", "of="+filler, "bs=1M")
	idx, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatalf("read Packages with the state's disk full: %v", err)
	}
	if n := bytes.Count(idx, []byte("CPV: app-misc/hello-2.10\n")); n != hellos+1 {
		t.Errorf("Packages with the disk full lists hello-2.10 %d times, want %d (the build just added too)", n, hellos+1)
	}
	other := filepath.Join(flat, "app-text", "tree-2.1.1.tbz2")
	if r := run(t, "", toolTimeout, "cp", other, filepath.Join(mnt, "app-text", "tree-2.1.1.tbz2")); r.Code == 0 || !strings.Contains(string(r.Stderr), "No space left on device") {
		t.Errorf("cp with the disk full: want \"No space left on device\", got %s", r)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", toolTimeout, "cp", other, filepath.Join(mnt, "app-text", "tree-2.1.1.tbz2")); r.Code != 0 {
		t.Fatalf("cp after space was freed: %s\n%s", r, readLog(mi.Log))
	}
	idx, err = os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil || bytes.Count(idx, []byte("CPV: app-text/tree-2.1.1\n")) != 2 {
		t.Errorf("Packages after space was freed: err %v; want 2 builds of app-text/tree-2.1.1", err)
	}
}

// TestFaultCatalogLocked: another process holds the catalog's write lock
// (a long transaction). Reads go on without waiting for it, Packages
// included for a generation whose TIMESTAMP is not stored yet; a write waits
// for the lock and commits once it is released.
func TestFaultCatalogLocked(t *testing.T) {
	t.Parallel()
	flat := extractFixture(t, "xpak-bzip2-flat")
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, "app-misc", "hello-2.10.tbz2"), filepath.Join(mnt, "app-misc", "hello-2.10.tbz2")); r.Code != 0 {
		t.Fatalf("cp before the lock: %s", r)
	}

	release, err := sqlite.HoldWriteLock(state)
	if err != nil {
		t.Fatalf("take the catalog's write lock: %v", err)
	}
	defer release()

	start := time.Now()
	idx, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("read Packages while another process holds the catalog: %v", err)
	}
	if n := bytes.Count(idx, []byte("CPV: app-misc/hello-2.10\n")); n < 2 {
		t.Errorf("Packages read under the lock lists hello-2.10 %d times; it lacks the build just added", n)
	}
	if took > 2*time.Second {
		t.Errorf("reading Packages waited %v for another process's write lock; reads must not wait for writers", took)
	}
	if out := sha1Paths(t, mnt, []string{"app-misc/hello-2.10.tbz2"}); out["app-misc/hello-2.10.tbz2"] == "" {
		t.Errorf("sha1sum through a flat name failed while the catalog is locked")
	}

	// A write waits for the lock: released after 1 s, it commits.
	go func() {
		time.Sleep(time.Second)
		release()
	}()
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, "app-text", "tree-2.1.1.tbz2"), filepath.Join(mnt, "app-text", "tree-2.1.1.tbz2")); r.Code != 0 {
		t.Fatalf("cp while the lock is held for 1 s more: %s\n%s", r, readLog(mi.Log))
	}
}

// TestFaultReadOnlyState: the filesystem under the state turns read-only
// while mounted, as ext4 does after an error with errors=remount-ro
// (triggered through /sys/fs/ext4/DEV/trigger_fs_error). Writes fail with
// EROFS and leave nothing visible; the index, listings and downloads go on
// serving what was committed.
func TestFaultReadOnlyState(t *testing.T) {
	t.Parallel()
	needBinary(t)
	tmp := t.TempDir()
	img, fsdir := filepath.Join(tmp, "state.img"), filepath.Join(tmp, "fs")
	os.Mkdir(fsdir, 0o755)
	if r := run(t, "", toolTimeout, "truncate", "-s", "64M", img); r.Code != 0 {
		t.Fatal(r)
	}
	if r := run(t, "", toolTimeout, "mkfs.ext4", "-q", img); r.Code != 0 {
		t.Skipf("mkfs.ext4: %s", r)
	}
	if r := run(t, "", toolTimeout, "mount", "-o", "loop,errors=remount-ro", img, fsdir); r.Code != 0 {
		t.Skipf("loop mount of an ext4 image: %s", r)
	}
	t.Cleanup(func() { run(t, "", toolTimeout, "umount", "-l", fsdir) })
	dev := ""
	for _, l := range strings.Split(string(mustRun(t, "", "findmnt", "-n", "-o", "SOURCE", fsdir)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			dev = filepath.Base(l)
		}
	}
	trigger := filepath.Join("/sys/fs/ext4", dev, "trigger_fs_error")
	if _, err := os.Stat(trigger); err != nil {
		t.Skipf("no %s: %v", trigger, err)
	}
	state := filepath.Join(fsdir, "state")
	importOK(t, state, importSummary{30, 0, 0}, extractFixture(t, "xpak-bzip2-multi"))
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	before, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := binhostPaths(before)
	if len(pkgs) == 0 {
		t.Fatal("no package in the index")
	}
	sums, errs := sha1Batch(t, mnt, pkgs)
	if len(sums) != len(pkgs) {
		t.Fatalf("sha1sum of the packages before: %s", errs)
	}

	if err := os.WriteFile(trigger, []byte("1"), 0o200); err != nil {
		t.Fatalf("%s: %v", trigger, err)
	}
	// The kernel marks it ro, or emergency_ro (6.x): writes fail with EROFS.
	if err := os.WriteFile(filepath.Join(fsdir, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		st := mustRun(t, "", "findmnt", "-n", "-o", "OPTIONS", fsdir)
		t.Fatalf("%s did not turn read-only (%s): creating a file: %v", fsdir, bytes.TrimSpace(st), err)
	}

	pkg := filepath.Join(t.TempDir(), "rotest-1.0.tbz2")
	if err := os.WriteFile(pkg, pubXpak("app-text", "rotest-1.0", 1800000000, "read-only state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", toolTimeout, "cp", pkg, filepath.Join(mnt, "app-text", "rotest-1.0.tbz2"))
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
		t.Errorf("cp onto a read-only state: want \"Read-only file system\", got %s", r)
	}
	after, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatalf("Packages with the state read-only: %v", err)
	}
	if got := binhostPaths(after); strings.Join(got, " ") != strings.Join(pkgs, " ") {
		t.Errorf("Packages with the state read-only lists %v, want %v", got, pkgs)
	}
	again, errs := sha1Batch(t, mnt, pkgs)
	for _, p := range pkgs {
		if again[p] != sums[p] {
			t.Errorf("%s with the state read-only: sha1 %q, was %q (%s)", p, again[p], sums[p], errs)
		}
	}
	if r := run(t, "", toolTimeout, "ls", "-lR", mnt); r.Code != 0 {
		t.Errorf("ls -lR with the state read-only: %s", r)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "app-text", "rotest-1.0.tbz2")); err == nil || bytes.Contains(after, []byte("rotest")) {
		t.Errorf("the refused write became visible (lstat: %v)", err)
	}
}

// binhostPaths is the PATHs of an index's packages, in order.
func binhostPaths(index []byte) []string {
	var out []string
	for _, l := range strings.Split(string(index), "\n") {
		if p, ok := strings.CutPrefix(l, "PATH: "); ok {
			out = append(out, p)
		}
	}
	return out
}

// TestFaultImportFullDisk: `pkgdirfs import` into a state on a small tmpfs
// meets a package larger than the free space. It stops at that file with
// ENOSPC named, keeps what it committed before, leaves nothing staged and
// a catalog verify finds sound; once the file is gone from the source, the
// same import completes.
func TestFaultImportFullDisk(t *testing.T) {
	t.Parallel()
	needBinary(t)
	fsdir := smallTmpfs(t)
	src := extractFixture(t, "xpak-bzip2-multi")
	big := filepath.Join(src, "app-misc", "hello", "hello-2.10-77.xpak")
	b := make([]byte, 40<<20)
	rand.Read(b)
	if err := os.WriteFile(big, b, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(fsdir, "state")
	r := runCLI(t, "import", "--state", state, src)
	m := regexp.MustCompile(`no space left on device \(imported (\d+) before it\)`).FindSubmatch(r.Stderr)
	if r.Code == 0 || m == nil || !strings.Contains(string(r.Stderr), big) {
		t.Fatalf("import of 40 MB into 24 MB: want a failure naming %s, ENOSPC and how many were imported, got %s", big, r)
	}
	before, _ := strconv.Atoi(string(m[1]))
	staged, _ := os.ReadDir(filepath.Join(state, "staging"))
	if len(staged) != 0 {
		t.Errorf("staging after the failed import: %d files", len(staged))
	}
	if v := runCLI(t, "verify", "--state", state); v.Code != 0 || !strings.Contains(string(v.Stdout)+string(v.Stderr), " 0 faults") {
		t.Errorf("verify after the failed import: %s", v)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	importOK(t, state, importSummary{30 - before, before, 0}, src)
}

// smallTmpfs mounts a 24 MB tmpfs for a state until the test ends.
func smallTmpfs(t *testing.T) string {
	t.Helper()
	fsdir := t.TempDir()
	if r := run(t, "", toolTimeout, "mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", fsdir); r.Code != 0 {
		t.Fatalf("mount a 24 MB tmpfs for the state: %s", r)
	}
	t.Cleanup(func() { run(t, "", toolTimeout, "umount", "-l", fsdir) })
	return fsdir
}
