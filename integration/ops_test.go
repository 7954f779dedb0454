package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Operations: the ways an administrator installs and runs pkgdirfs
// (mount(8) and fstab, systemd, logrotate, nginx beside a default site,
// make install, the README's quick start without apt-get).

// stateAbs is the state directory as the mount's source shows it.
func stateAbs(t *testing.T, state string) string {
	t.Helper()
	abs, err := filepath.Abs(state)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// findmntSource is the SOURCE of the mount at dir.
func findmntSource(t *testing.T, dir string) string {
	t.Helper()
	return strings.TrimSpace(string(mustRun(t, "", "findmnt", "-n", "-o", "SOURCE", "--mountpoint", dir)))
}

// waitGone waits for the daemon named by a state's pid file to exit.
func waitPIDFileGone(t *testing.T, pid int) {
	t.Helper()
	if pid > 0 && !waitPIDGone(pid, exitTimeout) {
		t.Errorf("daemon pid %d still running %v after its unmount; killing it", pid, exitTimeout)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func readPIDFile(t *testing.T, state string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "pkgdirfs.pid"))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// TestOpsMountHelper mounts through mount(8) the ways users do, in a private
// mount namespace (mount(8) hands helpers a fixed PATH, so the binary must
// be where a system install puts it: a bind mount puts it there, in that
// namespace only): `mount -t fuse.pkgdirfs` (mount.fuse3 runs `pkgdirfs
// STATE MNT -o OPTS`), an fstab line with `mount -T FSTAB`, and `mount -t
// pkgdirfs` (mount(8) runs /sbin/mount.pkgdirfs).
func TestOpsMountHelper(t *testing.T) {
	needBinary(t)
	for _, tool := range []string{"unshare", "findmnt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (util-linux): %v", tool, err)
		}
	}
	if _, err := os.Stat("/sbin/mount.fuse3"); err != nil {
		t.Fatalf("/sbin/mount.fuse3 missing (fuse3 package; make deps installs it): %v", err)
	}
	_, state, fix := importedFixture(t, "xpak-bzip2-multi")
	state = stateAbs(t, state)
	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	sbin := filepath.Join(work, "sbin")
	mnt := filepath.Join(work, "mnt")
	for _, d := range []string{bin, sbin, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binPath, filepath.Join(bin, "pkgdirfs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binPath, filepath.Join(sbin, "mount.pkgdirfs")); err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for _, k := range []string{"type", "fstab", "helper"} {
		logs[k] = filepath.Join(work, k+".log")
	}
	fstab := filepath.Join(work, "fstab")
	if err := os.WriteFile(fstab, []byte(fmt.Sprintf("# test fstab\n%s %s fuse.pkgdirfs allow_other,layouts=multi,legacy,log=%s,nofail,x-systemd.requires=nginx.service 0 0\n",
		state, mnt, logs["fstab"])), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each route: mount, look, unmount, wait for the daemon to exit. The
	// trap detaches a mount left behind by a failed step.
	script := `set -u
MNT=` + shQuote(mnt) + `; STATE=` + shQuote(state) + `
trap 'umount -l "$MNT" 2>/dev/null' EXIT
mount --bind ` + shQuote(bin) + ` /usr/local/bin || exit 90
step() { # NAME: look at the mount, unmount, wait for the daemon
	echo "== $1 source=$(findmnt -n -o SOURCE --mountpoint "$MNT")"
	echo "== $1 fstype=$(findmnt -n -o FSTYPE --mountpoint "$MNT")"
	echo "== $1 options=$(findmnt -n -o OPTIONS --mountpoint "$MNT")"
	echo "== $1 top=$(ls "$MNT" | tr '\n' ' ')"
	echo "== $1 app-misc=$(ls "$MNT/app-misc" | tr '\n' ' ')"
	if touch "$MNT/app-misc/.probe" 2>/dev/null; then echo "== $1 writable=yes"; rm -f "$MNT/app-misc/.probe"; else echo "== $1 writable=no"; fi
	echo "== $1 packages=$(grep -c '^CPV:' "$MNT/Packages")"
	pid=$(cat "$STATE/pkgdirfs.pid")
	umount "$MNT" || { echo "== $1 umount=failed"; umount -l "$MNT"; }
	for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then echo "== $1 daemon=still running"; kill -9 "$pid"; else echo "== $1 daemon=exited"; fi
}
mount -t fuse.pkgdirfs "$STATE" "$MNT" -o allow_other,ro,layouts=multi+flat,log=` + shQuote(logs["type"]) + ` && step type || echo "== type mount=failed: $?"
mount -T ` + shQuote(fstab) + ` "$MNT" && step fstab || echo "== fstab mount=failed: $?"
mount --bind ` + shQuote(sbin) + ` /usr/sbin || exit 91
mount -t pkgdirfs "$STATE" "$MNT" -o log_level=warn,removed_grace=1m,log=` + shQuote(logs["helper"]) + ` && step helper || echo "== helper mount=failed: $?"
`
	r := run(t, "", 3*time.Minute, "unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	out := string(r.Stdout) + string(r.Stderr)
	defer func() {
		for k, l := range logs {
			mi := &mountInfo{Log: l}
			checkDaemonLog(t, mi)
			if t.Failed() {
				t.Logf("daemon log of %s:\n%s", k, readLog(l))
			}
		}
	}()
	if r.Code != 0 {
		t.Fatalf("script in a private mount namespace failed: %s", r)
	}
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "== "); ok {
			name, val, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(val, "=")
			got[name+" "+k] = v
			if strings.Contains(val, "failed") || strings.Contains(val, "still running") {
				t.Errorf("%s: %s", name, val)
			}
		}
	}
	n := strconv.Itoa(len(fix.Blocks))
	want := []struct{ key, sub string }{
		{"type source", state}, {"type fstype", "fuse.pkgdirfs"}, {"type options", "ro,"}, {"type options", "allow_other"},
		{"type writable", "no"}, {"type packages", n}, {"type app-misc", "hello-2.10.tbz2"}, {"type daemon", "exited"},
		{"fstab source", state}, {"fstab fstype", "fuse.pkgdirfs"}, {"fstab options", "rw,"}, {"fstab options", "allow_other"},
		{"fstab writable", "yes"}, {"fstab top", "All"}, {"fstab packages", n}, {"fstab daemon", "exited"},
		{"helper source", state}, {"helper fstype", "fuse.pkgdirfs"}, {"helper packages", n}, {"helper daemon", "exited"},
	}
	for _, w := range want {
		v, ok := got[w.key]
		if !ok {
			t.Errorf("%s: no output (want %q)\n%s", w.key, w.sub, out)
			continue
		}
		if !strings.Contains(v, w.sub) {
			t.Errorf("%s = %q, want it to contain %q", w.key, v, w.sub)
		}
	}
	// layouts=multi+flat shows no All/; layouts=multi,legacy (the list
	// written with commas in fstab) no flat names.
	if strings.Contains(" "+got["type top"], " All ") {
		t.Errorf("-o layouts=multi+flat: All/ is shown: %q", got["type top"])
	}
	if strings.Contains(got["fstab app-misc"], ".tbz2") {
		t.Errorf("fstab layouts=multi,legacy: flat names shown in app-misc: %q", got["fstab app-misc"])
	}
	// log_level=warn: no info lines in that daemon's log.
	if b, _ := os.ReadFile(logs["helper"]); bytes.Contains(b, []byte("level=INFO")) {
		t.Errorf("-o log_level=warn: the log has INFO lines:\n%s", b)
	}
	if b, _ := os.ReadFile(logs["type"]); !bytes.Contains(b, []byte(`msg=mounted`)) {
		t.Errorf("daemon log %s has no `mounted` line:\n%s", logs["type"], b)
	}
	if t.Failed() {
		t.Logf("script output:\n%s", out)
	}
}

// TestOpsHelperOptions: what the helper refuses, without mounting.
func TestOpsHelperOptions(t *testing.T) {
	needBinary(t)
	state := t.TempDir()
	mnt := t.TempDir()
	for _, c := range []struct {
		opts string
		want string
	}{
		{"allow_other,bogus_option", "-o allow_other,bogus_option"},
		{"f", "-o f:"},
		{"state=/x", "-o state=/x:"},
	} {
		r := runCLI(t, state, mnt, "-o", c.opts)
		if r.Code != 2 || !strings.Contains(string(r.Stderr), c.want) {
			t.Errorf("pkgdirfs STATE MNT -o %s: want exit 2 and %q on stderr: %s", c.opts, c.want, r)
		}
		if _, ok := mountedFSType(mnt); ok {
			t.Fatalf("-o %s mounted %s", c.opts, mnt)
		}
	}
	// mount -f (fake) does nothing.
	if r := runCLI(t, state, mnt, "-f", "-o", "allow_other"); r.Code != 0 {
		t.Errorf("helper -f: want exit 0: %s", r)
	}
	if _, ok := mountedFSType(mnt); ok {
		t.Fatalf("helper -f mounted %s", mnt)
	}
}

// TestOpsSignals: SIGHUP reopens the log (logrotate's postrotate) and the
// mount keeps serving; SIGUSR1 and `pkgdirfs status` report the state; the
// mount's source is the state directory.
func TestOpsSignals(t *testing.T) {
	_, state, fix := importedFixture(t, "xpak-bzip2-multi")
	mi := mountFSInfo(t, state, "--allow-other")
	mnt := mi.Dir
	if len(mi.PIDs) != 1 {
		t.Fatalf("want one daemon, found %v", mi.PIDs)
	}
	pid := mi.PIDs[0]
	if src := findmntSource(t, mnt); src != stateAbs(t, state) {
		t.Errorf("mount source (FUSE fsname) = %q, want the state directory %q", src, stateAbs(t, state))
	}
	if out := string(mustRun(t, "", "df", "--output=source", mnt)); !strings.Contains(out, stateAbs(t, state)) {
		t.Errorf("df does not name the state: %q", out)
	}
	// Hold a package open, so the handle count has something to count.
	idx := readIndex(t, mnt)
	path, _ := get(idx.Blocks[0], "PATH")
	held, err := os.Open(filepath.Join(mnt, path))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	rotated := mi.Log + ".1"
	if err := os.Rename(mi.Log, rotated); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readLog(mi.Log), "log reopened") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(readLog(mi.Log), "log reopened") {
		t.Fatalf("no new log %s with `log reopened` 10 s after SIGHUP; the rotated one:\n%s", mi.Log, readLog(rotated))
	}
	if pidGone(pid) {
		t.Fatalf("the daemon died of SIGHUP")
	}
	// Still serving, and what it logs now goes to the new file.
	sums := sha1Paths(t, mnt, []string{path})
	if sums[path] == "" {
		t.Errorf("sha1sum %s after SIGHUP failed", path)
	}
	if got := len(readIndex(t, mnt).Blocks); got != len(fix.Blocks) {
		t.Errorf("after SIGHUP, Packages lists %d entries, want %d", got, len(fix.Blocks))
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var stats string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(readLog(mi.Log), "\n") {
			if strings.Contains(l, "msg=stats") {
				stats = l
			}
		}
		if stats != "" {
			break
		}
	}
	for _, want := range []string{"generation=", fmt.Sprintf("instances=%d ", len(fix.Blocks)), "last_commit=", "rss_kib="} {
		if !strings.Contains(stats+" ", want) {
			t.Errorf("SIGUSR1 stats line lacks %q: %q", want, stats)
		}
	}
	// At least the package held open (a reader that just closed may not
	// have been released yet).
	if !regexp.MustCompile(`open_reading=[1-9]`).MatchString(stats) {
		t.Errorf("SIGUSR1 stats line: want open_reading >= 1 (a package is held open): %q", stats)
	}
	// The rotated file got nothing after the rotation but what was in flight.
	if strings.Contains(readLog(rotated), "msg=stats") {
		t.Errorf("the stats line went to the rotated log")
	}
	checkDaemonLog(t, &mountInfo{Log: rotated})

	r := runCLI(t, "status", "--state", state)
	out := string(r.Stdout)
	for _, want := range []string{
		"state:        " + stateAbs(t, state), fmt.Sprintf("running, pid %d", pid), "mounted at:   " + mnt,
		fmt.Sprintf("instances:    %d ", len(fix.Blocks)), "generation:", "last commit:", "open handles: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, r)
		}
	}
	if r.Code != 0 {
		t.Errorf("status of a mounted state: want exit 0: %s", r)
	}
	if !regexp.MustCompile(`open handles: [1-9]\d* packages being read`).MatchString(out) {
		t.Errorf("status: want at least one package being read (one is held open):\n%s", out)
	}
	held.Close()
	unmountNow(t, mi)
	if r := runCLI(t, "status", "--state", state); r.Code != 3 || !strings.Contains(string(r.Stdout), "not running") {
		t.Errorf("status of an unmounted state: want exit 3 and `not running`: %s", r)
	}
}

// unmountNow unmounts and waits for the daemon, leaving the checks to the
// cleanup mountFSInfo registered.
func unmountNow(t *testing.T, mi *mountInfo) {
	t.Helper()
	// "target is busy" for a moment (seen once among the parallel tests:
	// a path walk through the mount, of any process, holds it while it
	// passes); a mount that stays busy still fails.
	var r cmdResult
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r = run(t, "", toolTimeout, "umount", mi.Dir); r.Code == 0 || !strings.Contains(string(r.Stderr), "target is busy") || time.Now().After(deadline) {
			break
		}
	}
	if r.Code != 0 {
		t.Fatalf("umount: %s", r)
	}
	for _, pid := range mi.PIDs {
		waitPIDFileGone(t, pid)
	}
}

// TestOpsLogLevel: --log-level warn keeps INFO lines out; a bad level is refused.
func TestOpsLogLevel(t *testing.T) {
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	mi := mountFSInfo(t, state, "--log-level", "warn")
	if _, err := os.ReadDir(mi.Dir); err != nil {
		t.Fatal(err)
	}
	unmountNow(t, mi)
	if log := readLog(mi.Log); strings.Contains(log, "level=INFO") {
		t.Errorf("--log-level warn: INFO lines in the log:\n%s", log)
	}
	r := runCLI(t, "mount", "--state", state, "--log-level", "loud", t.TempDir())
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "--log-level") {
		t.Errorf("--log-level loud: want a failure naming --log-level: %s", r)
	}
}

// TestOpsRootSetattr: the root's mode, owner and time are the mount's own:
// changing them is refused with EPERM, not answered 0 with nothing changed;
// setting what it already has (cp -a, rsync -a of a PKGDIR onto the mount)
// succeeds.
func TestOpsRootSetattr(t *testing.T) {
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	mnt := mountFS(t, state)
	var before syscall.Stat_t
	if err := syscall.Stat(mnt, &before); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"chmod", "700", mnt},
		{"chown", "65534", mnt},
		{"chgrp", "65534", mnt},
		{"touch", mnt},
	} {
		r := run(t, "", toolTimeout, c[0], c[1:]...)
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "Operation not permitted") {
			t.Errorf("%s on the mount root: want EPERM (`Operation not permitted`): %s", c[0], r)
		}
	}
	if err := syscall.Chmod(mnt, 0o700); !errors.Is(err, syscall.EPERM) {
		t.Errorf("chmod(root, 0700): want EPERM, got %v", err)
	}
	for _, c := range [][]string{
		{"chmod", fmt.Sprintf("%o", before.Mode&0o7777), mnt},
		{"chown", fmt.Sprintf("%d:%d", before.Uid, before.Gid), mnt},
		{"touch", "-d", "@1234567890", mnt},
	} {
		if r := run(t, "", toolTimeout, c[0], c[1:]...); r.Code != 0 {
			t.Errorf("%s to what the root already has (or explicit times, as cp -a sets): want success: %s", c[0], r)
		}
	}
	var after syscall.Stat_t
	if err := syscall.Stat(mnt, &after); err != nil {
		t.Fatal(err)
	}
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
		t.Errorf("root changed: mode %o→%o owner %d:%d→%d:%d", before.Mode, after.Mode, before.Uid, before.Gid, after.Uid, after.Gid)
	}
}

// notifyListener is systemd's side of sd_notify: a unix datagram socket.
func notifyListener(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return sock, c
}

func readNotify(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message within %v: %v", d, err)
	}
	return string(buf[:n])
}

// TestOpsSystemdNotify runs the daemon as pkgdirfs@.service does (mount -f,
// Type=notify): READY=1 once mounted, STOPPING=1 and a clean unmount on
// SIGTERM; without -f, the parent names the daemon as MAINPID.
func TestOpsSystemdNotify(t *testing.T) {
	needBinary(t)
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	sock, conn := notifyListener(t)
	mnt := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "fg.log")
	cmd := exec.Command(binPath, "mount", "-f", "--state", state, mnt)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	stderr, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if _, ok := mountedFSType(mnt); ok {
			run(t, "", toolTimeout, "umount", "-l", mnt)
		}
		checkDaemonLog(t, &mountInfo{Log: logFile})
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", readLog(logFile))
		}
	}()
	msg := readNotify(t, conn, mountTimeout)
	if !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	if fstype, ok := mountedFSType(mnt); !ok || fstype != "fuse.pkgdirfs" {
		t.Fatalf("READY=1 sent but %s is not mounted (%q)", mnt, fstype)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if msg := readNotify(t, conn, exitTimeout); !strings.Contains(msg, "STOPPING=1") {
		t.Errorf("after SIGTERM: notification %q, want STOPPING=1", msg)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v (want status 0: systemd's Restart=on-failure must not restart a stop)", err)
		}
	case <-time.After(exitTimeout):
		cmd.Process.Kill()
		t.Fatalf("daemon still running %v after SIGTERM", exitTimeout)
	}
	if _, ok := mountedFSType(mnt); ok {
		t.Errorf("%s still mounted after SIGTERM", mnt)
	}

	// Without -f: the process systemd started exits once the daemon child is
	// ready, having named it the main process.
	mnt2 := t.TempDir()
	bgLog := filepath.Join(t.TempDir(), "bg.log")
	bg := exec.Command(binPath, "mount", "--state", state, "--log", bgLog, mnt2)
	bg.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if out, err := bg.CombinedOutput(); err != nil {
		t.Fatalf("mount (daemon) with NOTIFY_SOCKET: %v\n%s", err, out)
	}
	mi := &mountInfo{Dir: mnt2, Log: bgLog, PIDs: daemonPIDs(mnt2)}
	t.Cleanup(func() { unmountAndCheck(t, mi) })
	msg = readNotify(t, conn, 5*time.Second)
	if len(mi.PIDs) != 1 || msg != fmt.Sprintf("MAINPID=%d\nREADY=1", mi.PIDs[0]) {
		t.Errorf("daemonizing mount: notification %q, want MAINPID of the daemon %v and READY=1", msg, mi.PIDs)
	}
}

// TestOpsMakeInstall: make install DESTDIR=… PREFIX=… installs the binary,
// the mount helper, the systemd unit, the man pages and the completions;
// the unit passes systemd-analyze verify.
func TestOpsMakeInstall(t *testing.T) {
	needBinary(t)
	dest := t.TempDir()
	r := run(t, repoRoot, cliTimeout, "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr", "INSTALL_DEPS=", "BIN="+binPath)
	if r.Code != 0 {
		t.Fatalf("make install: %s", r)
	}
	want := map[string]os.FileMode{
		"usr/bin/pkgdirfs":                               0o755,
		"usr/share/man/man8/pkgdirfs.8":                  0o644,
		"usr/share/man/man8/mount.pkgdirfs.8":            0o644,
		"usr/lib/systemd/system/pkgdirfs@.service":       0o644,
		"usr/share/bash-completion/completions/pkgdirfs": 0o644,
		"usr/share/zsh/site-functions/_pkgdirfs":         0o644,
		"usr/share/doc/pkgdirfs/pkgdirfs-binhost.conf":   0o644,
		"usr/share/doc/pkgdirfs/binrepos.conf":           0o644,
		"usr/share/doc/pkgdirfs/logrotate.pkgdirfs":      0o644,
	}
	for p, mode := range want {
		st, err := os.Stat(filepath.Join(dest, p))
		if err != nil {
			t.Errorf("make install: %s missing: %v", p, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", p, st.Mode().Perm(), mode)
		}
	}
	if target, err := os.Readlink(filepath.Join(dest, "usr/sbin/mount.pkgdirfs")); err != nil || target != "/usr/bin/pkgdirfs" {
		t.Errorf("usr/sbin/mount.pkgdirfs: want a symlink to /usr/bin/pkgdirfs, got %q, %v", target, err)
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/pkgdirfs@.service"))
	for _, want := range []string{"ExecStart=/usr/bin/pkgdirfs mount -f ", "Type=notify", "Restart=on-failure"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("installed unit lacks %q:\n%s", want, unit)
		}
	}
	if bytes.Contains(unit, []byte("@BINDIR@")) {
		t.Errorf("installed unit still holds @BINDIR@")
	}
	if r := run(t, "", toolTimeout, "bash", "-n", filepath.Join(dest, "usr/share/bash-completion/completions/pkgdirfs")); r.Code != 0 {
		t.Errorf("bash completion does not parse: %s", r)
	}
	if _, err := exec.LookPath("man"); err == nil {
		r := run(t, "", toolTimeout, "man", "--warnings", "-l", filepath.Join(dest, "usr/share/man/man8/pkgdirfs.8"))
		if r.Code != 0 || len(bytes.TrimSpace(r.Stderr)) != 0 || !bytes.Contains(r.Stdout, []byte("SIGHUP")) {
			t.Errorf("man -l pkgdirfs.8: want a clean render mentioning SIGHUP: %s", r)
		}
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: the unit is not verified (apt-get install systemd)")
	}
	// Installed for real under a temp PREFIX, so that the unit's ExecStart
	// and man page exist for the verifier.
	prefix := t.TempDir()
	if r := run(t, repoRoot, cliTimeout, "make", "--no-print-directory", "install", "PREFIX="+prefix, "INSTALL_DEPS=", "BIN="+binPath); r.Code != 0 {
		t.Fatalf("make install PREFIX=%s: %s", prefix, r)
	}
	units := t.TempDir()
	b, err := os.ReadFile(filepath.Join(prefix, "lib/systemd/system/pkgdirfs@.service"))
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(units, "pkgdirfs@var-cache-binpkgs.service")
	if err := os.WriteFile(inst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", inst)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share/man"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", inst, err, out)
	}
}

// TestOpsNginxSite runs contrib/nginx/pkgdirfs-binhost.conf as a site file
// next to the stock default site in an nginx configured like a distribution's
// (http-level gzip on, mime.types, sites-enabled/*): its own port serves the
// binhost whatever the Host header, and the default site keeps its port.
func TestOpsNginxSite(t *testing.T) {
	needNginx(t)
	_, state, fix := importedFixture(t, "xpak-bzip2-multi")
	mnt := mountFS(t, state, "--allow-other")
	site, err := os.ReadFile(filepath.Join(repoRoot, "contrib/nginx/pkgdirfs-binhost.conf"))
	if err != nil {
		t.Fatal(err)
	}
	checkSiteMatchesTemplate(t, string(site))

	var last string
	for attempt := 0; attempt < 3; attempt++ {
		prefix := t.TempDir()
		pa, pb := freePort(t), freePort(t)
		if pa == pb {
			continue
		}
		if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
			t.Fatal(err)
		}
		sites := filepath.Join(prefix, "sites-enabled")
		if err := os.MkdirAll(sites, 0o755); err != nil {
			t.Fatal(err)
		}
		def := "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\troot /var/www/html;\n\tserver_name _;\n\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n}\n"
		if b, err := os.ReadFile("/etc/nginx/sites-available/default"); err == nil {
			def = string(b) // the distribution's own
		}
		def = replaceOnce(t, "default site", def, "listen 80 default_server;", fmt.Sprintf("listen 127.0.0.1:%d default_server;", pa))
		def = replaceOnce(t, "default site", def, "listen [::]:80 default_server;", "")
		s := replaceOnce(t, "site file", string(site), "listen 8080;", fmt.Sprintf("listen 127.0.0.1:%d;", pb))
		s = replaceOnce(t, "site file", s, "listen [::]:8080;", "")
		s = replaceOnce(t, "site file", s, "root /var/cache/binpkgs;", "root "+mnt+";")
		for name, body := range map[string]string{"default": def, "pkgdirfs-binhost": s} {
			if err := os.WriteFile(filepath.Join(sites, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mime := ""
		if _, err := os.Stat("/etc/nginx/mime.types"); err == nil {
			mime = "include /etc/nginx/mime.types;"
		}
		conf := filepath.Join(prefix, "nginx.conf")
		main := fmt.Sprintf(`user %s;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 256; }
http {
	sendfile on;
	tcp_nopush on;
	%[3]s
	default_type application/octet-stream;
	access_log %[2]s/logs/access.log;
	gzip on;
	client_body_temp_path %[2]s/client_body_temp;
	proxy_temp_path %[2]s/proxy_temp;
	fastcgi_temp_path %[2]s/fastcgi_temp;
	uwsgi_temp_path %[2]s/uwsgi_temp;
	scgi_temp_path %[2]s/scgi_temp;
	include %[2]s/sites-enabled/*;
}
`, nginxWorkerUser(), prefix, mime)
		if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := run(t, "", toolTimeout, "nginx", "-t", "-c", conf, "-p", prefix+"/", "-e", filepath.Join(prefix, "logs", "error.log")); r.Code != 0 {
			t.Fatalf("nginx -t with the site file beside the default site: %s", r)
		}
		cmd := exec.Command("nginx", "-c", conf, "-p", prefix+"/", "-e", filepath.Join(prefix, "logs", "error.log"), "-g", "daemon off;")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		srv := &nginxServer{Prefix: prefix, cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); close(srv.done) }()
		up := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !up; time.Sleep(50 * time.Millisecond) {
			select {
			case <-srv.done:
				deadline = time.Time{}
			default:
			}
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pb), 200*time.Millisecond); err == nil {
				c.Close()
				up = true
			}
		}
		if !up {
			srv.stop(t)
			last = fmt.Sprintf("nginx did not come up: %s\n%s", out.String(), readLog(filepath.Join(prefix, "logs", "error.log")))
			if strings.Contains(last, "Address already in use") {
				continue
			}
			t.Fatal(last)
		}
		t.Cleanup(func() { srv.stop(t) })

		binhost := fmt.Sprintf("http://127.0.0.1:%d", pb)
		want, err := os.ReadFile(filepath.Join(mnt, "Packages"))
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{"", "binhost.example.org", "10.1.2.3"} {
			var hdr []string
			if host != "" {
				hdr = []string{"Host", host}
			}
			res := httpDo(t, "GET", binhost+"/Packages", hdr...)
			if res.Status != 200 || !bytes.Equal(res.Body, want) {
				t.Errorf("GET /Packages (Host %q) on the site's port: status %d, %d bytes, want 200 and the mount's %d bytes", host, res.Status, len(res.Body), len(want))
			}
		}
		gz := httpDo(t, "GET", binhost+"/Packages.gz", "Accept-Encoding", "gzip")
		if gz.Status != 200 || gz.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET /Packages.gz: status %d, Content-Encoding %q: want 200 and the file as is (gzip off beats the http-level gzip on)", gz.Status, gz.Header.Get("Content-Encoding"))
		}
		idx := readIndex(t, mnt)
		if len(idx.Blocks) != len(fix.Blocks) {
			t.Errorf("the mount's index lists %d entries, want %d", len(idx.Blocks), len(fix.Blocks))
		}
		path, _ := get(idx.Blocks[0], "PATH")
		size := getInt(idx.Blocks[0], "SIZE")
		if res := httpDo(t, "GET", binhost+"/"+path); res.Status != 200 || int64(len(res.Body)) != size {
			t.Errorf("GET /%s: status %d, %d bytes, want 200 and %d", path, res.Status, len(res.Body), size)
		}
		if res := httpDo(t, "GET", binhost+"/app-misc/nothing-1.0.tbz2"); res.Status != 404 {
			t.Errorf("GET of an absent package: status %d, want 404", res.Status)
		}
		if res := httpDo(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/Packages", pa)); res.Status != 404 {
			t.Errorf("the default site's port serves /Packages (status %d): the sites are not separate", res.Status)
		}
		return
	}
	t.Fatal(last)
}

func replaceOnce(t *testing.T, what, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%s: want exactly one %q, found %d", what, old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// checkSiteMatchesTemplate: the site file's directives are those of the
// server{} block the nginx tests run (nginx.conf.tmpl), but for where it
// listens and what it serves.
func checkSiteMatchesTemplate(t *testing.T, site string) {
	t.Helper()
	tmpl, err := os.ReadFile(nginxTemplate)
	if err != nil {
		t.Fatal(err)
	}
	directives := func(s string) []string {
		s = s[strings.Index(s, "server {"):]
		var out []string
		for _, l := range strings.Split(s, "\n") {
			l = strings.TrimSpace(l)
			if i := strings.Index(l, "#"); i >= 0 && !strings.Contains(l, `"`) {
				l = strings.TrimSpace(l[:i])
			}
			if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "listen ") || strings.HasPrefix(l, "root ") || strings.HasPrefix(l, "server_name ") {
				continue
			}
			out = append(out, l)
		}
		return out
	}
	a, b := directives(string(tmpl)), directives(site)
	// The template closes http{} after server{}.
	if len(a) > 0 && a[len(a)-1] == "}" {
		a = a[:len(a)-1]
	}
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("contrib/nginx/pkgdirfs-binhost.conf drifted from the server{} block of %s:\n%s", nginxTemplate, firstDiff(a, b, nil))
	}
}

// pathWithout makes a directory of symlinks to every program on PATH but
// the hidden ones: a machine without them.
func pathWithout(t *testing.T, hidden ...string) string {
	t.Helper()
	dir := t.TempDir()
	skip := map[string]bool{}
	for _, h := range hidden {
		skip[h] = true
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/bin:/bin") {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if skip[e.Name()] {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, e.Name())); err == nil {
				continue // the first on PATH wins
			}
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	return dir
}

// TestOpsQuickStartWithoutApt runs the README's quick start, `make mount`,
// on a PKGDIR holding an invalid file, with apt-get and dpkg-query (and then
// fuse3's tools too) hidden: it mounts, lists the refused file, and never
// calls apt.
func TestOpsQuickStartWithoutApt(t *testing.T) {
	needBinary(t)
	bin := filepath.Join(t.TempDir(), "pkgdirfs") // make mount builds it (once: then it is up to date)
	for _, c := range []struct {
		name   string
		hidden []string
		want   string
	}{
		{"fuse3-present", nil, ""},
		{"fuse3-absent", []string{"fusermount3", "fusermount", "mount.fuse3", "mount.fuse"}, "emerge --ask sys-fs/fuse:3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkgdir := extractFixture(t, "xpak-gzip-flat")
			if err := os.WriteFile(filepath.Join(pkgdir, "app-misc", "broken-1.0.tbz2"), []byte("not a package"), 0o644); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(t.TempDir(), "state")
			path := pathWithout(t, append([]string{"apt-get", "apt", "dpkg-query", "dpkg"}, c.hidden...)...)
			cmd := exec.Command("make", "--no-print-directory", "mount", "PKGDIR="+pkgdir, "STATE="+state, "BIN="+bin)
			cmd.Dir = repoRoot
			cmd.Env = append(os.Environ(), "PATH="+path)
			out, err := cmd.CombinedOutput()
			mi := &mountInfo{Dir: pkgdir, Log: filepath.Join(state, "pkgdirfs.log")}
			defer func() {
				if _, ok := mountedFSType(pkgdir); ok {
					mi.PIDs = daemonPIDsOf(bin, pkgdir)
					run(t, "", toolTimeout, "umount", pkgdir)
					for _, pid := range mi.PIDs {
						waitPIDFileGone(t, pid)
					}
				}
				checkDaemonLog(t, mi)
			}()
			if err != nil {
				t.Fatalf("make mount with %v hidden: %v\n%s", cmd.Args, err, out)
			}
			for _, bad := range []string{"apt-get", "dpkg-query", "not found", "Error"} {
				if bytes.Contains(out, []byte(bad)) {
					t.Errorf("make mount output mentions %q:\n%s", bad, out)
				}
			}
			if !bytes.Contains(out, []byte("invalid: "+filepath.Join(pkgdir, "app-misc", "broken-1.0.tbz2"))) {
				t.Errorf("make mount does not list the invalid file:\n%s", out)
			}
			if c.want != "" && !bytes.Contains(out, []byte(c.want)) {
				t.Errorf("make mount without fuse3 does not say what to install (%q):\n%s", c.want, out)
			}
			t.Logf("make mount:\n%s", out)
			if fstype, ok := mountedFSType(pkgdir); !ok || fstype != "fuse.pkgdirfs" {
				t.Fatalf("make mount exited 0 but %s is not a pkgdirfs mount (%q):\n%s", pkgdir, fstype, out)
			}
			if _, err := os.Stat(filepath.Join(pkgdir, "Packages")); err != nil {
				t.Errorf("mounted PKGDIR: %v", err)
			}
			// The invalid file is kept in the mount's quarantine with its
			// bytes (never at its package name), out of the index, and
			// verify says why.
			if got, err := os.ReadFile(filepath.Join(pkgdir, ".pkgdirfs/refused", "app-misc", "broken-1.0.tbz2")); err != nil || string(got) != "not a package" {
				t.Errorf("the invalid file in the mount's quarantine: %q, %v", got, err)
			}
			if _, err := os.Lstat(filepath.Join(pkgdir, "app-misc", "broken-1.0.tbz2")); !os.IsNotExist(err) {
				t.Errorf("the invalid file is at its package name in the mount: %v", err)
			}
			if idx, err := os.ReadFile(filepath.Join(pkgdir, "Packages")); err != nil || bytes.Contains(idx, []byte("broken")) {
				t.Errorf("Packages (%v) lists the invalid file or cannot be read", err)
			}
			vout, _ := exec.Command(bin, "verify", "--state", state).CombinedOutput()
			if !bytes.Contains(vout, []byte("app-misc/broken-1.0.tbz2")) {
				t.Errorf("verify does not list the invalid file:\n%s", vout)
			}
		})
	}
}

// daemonPIDsOf is daemonPIDs for a binary other than the harness's.
func daemonPIDsOf(bin, mnt string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if strings.TrimSuffix(exe, " (deleted)") == bin && len(args) > 1 && args[1] == "mount" && strings.Contains(string(cmdline), mnt) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// TestOpsMessages: usage and errors name the problem and the fix.
func TestOpsMessages(t *testing.T) {
	needBinary(t)
	r := runCLI(t, "--help")
	help := string(r.Stdout)
	if strings.Contains(help, "watchdog") {
		t.Errorf("--help lists the internal watchdog command:\n%s", help)
	}
	for _, want := range []string{"--removed-grace", "--debug", "--log-level", "[-q]", "pkgdirfs status", "fuse.pkgdirfs"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	checks := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"index", "--state", state, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"verify", "--state", state, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"import", "--state", t.TempDir(), "/nonexistent/binpkgs"}, 1, "/nonexistent/binpkgs: no such file or directory"},
		{[]string{"mount", "--state", state, "/nonexistent/mnt"}, 1, "/nonexistent/mnt: no such file or directory"},
	}
	// import pointed one level too high (refused before the state is
	// touched), and one too low.
	src := extractFixture(t, "xpak-bzip2-multi")
	checks = append(checks,
		struct {
			args []string
			code int
			want string
		}{[]string{"import", "--state", t.TempDir(), filepath.Dir(src)}, 2, filepath.Dir(src) + " is not a PKGDIR: it holds the PKGDIRs " + src + ". Import one of them"},
		struct {
			args []string
			code int
			want string
		}{[]string{"import", "--state", t.TempDir(), filepath.Join(src, "app-misc")}, 1, "hint: " + filepath.Join(src, "app-misc") + " is a directory inside the PKGDIR " + src})
	for _, c := range checks {
		r := runCLI(t, c.args...)
		if r.Code != c.code || !strings.Contains(string(r.Stderr), c.want) {
			t.Errorf("want exit %d and %q on stderr: %s", c.code, c.want, r)
		}
	}
}

// TestOpsNonRootMount: a mount by a user that FUSE does not allow says why
// and what to do, not fusermount's exit status.
func TestOpsNonRootMount(t *testing.T) {
	nobody, dir, bin := asNobody(t)
	state := filepath.Join(dir, "state")
	mnt := filepath.Join(dir, "mnt") // root's: nobody may not write to it
	for _, d := range []string{state, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	allowOther := false
	if b, err := os.ReadFile("/etc/fuse.conf"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			allowOther = allowOther || strings.TrimSpace(l) == "user_allow_other"
		}
	}
	cases := [][]string{{"mount", "--init", "--state", state, mnt}}
	wants := []string{"you may not write to " + mnt}
	var dev syscall.Stat_t
	if err := syscall.Stat("/dev/fuse", &dev); err != nil {
		t.Fatal(err)
	}
	if dev.Mode&0o006 != 0o006 {
		// This machine's /dev/fuse admits root only: that is the reason.
		wants[0] = "you may not open /dev/fuse (/usr/bin/fusermount3: failed to open /dev/fuse"
		allowOther = true
	}
	if !allowOther {
		cases = append(cases, []string{"mount", "--init", "--allow-other", "--state", state, mnt})
		wants = append(wants, "user_allow_other in /etc/fuse.conf")
	}
	for i, args := range cases {
		r := run(t, "", mountTimeout, "setpriv", append([]string{"--reuid=" + nobody.Uid, "--regid=" + nobody.Gid, "--clear-groups", bin}, args...)...)
		if _, ok := mountedFSType(mnt); ok {
			run(t, "", toolTimeout, "umount", "-l", mnt)
			t.Fatalf("nobody mounted %s", mnt)
		}
		if r.Code == 0 || !strings.Contains(string(r.Stderr), wants[i]) {
			t.Errorf("mount as nobody: want a failure saying %q: %s\nlog:\n%s", wants[i], r, readLog(filepath.Join(state, "pkgdirfs.log")))
		}
	}
}

// TestOpsMakeMountStateInUse: `make mount` with a state already mounted
// elsewhere imports nothing and says why (it used to import the other
// PKGDIR into the live binhost, then fail); again on the PKGDIR it is
// mounted over, it says so and succeeds.
func TestOpsMakeMountStateInUse(t *testing.T) {
	needBinary(t)
	bin := filepath.Join(t.TempDir(), "pkgdirfs")
	state := t.TempDir()
	mi := mountFSInfo(t, state) // an empty binhost, mounted
	other := extractFixture(t, "xpak-gzip-flat")
	makeMount := func(pkgdir string) (string, error) {
		cmd := exec.Command("make", "--no-print-directory", "mount", "PKGDIR="+pkgdir, "STATE="+state, "BIN="+bin)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := makeMount(other)
	if err == nil || !strings.Contains(out, "is in use: mounted at "+mi.Dir) || !strings.Contains(out, "nothing imported") {
		t.Errorf("make mount of another PKGDIR onto a mounted state: %v, want a refusal naming %s:\n%s", err, mi.Dir, out)
	}
	if _, ok := mountedFSType(other); ok {
		run(t, "", toolTimeout, "umount", other)
		t.Errorf("%s was mounted", other)
	}
	if n := strings.Count(string(readPackagesFile(t, mi.Dir)), "\nCPV:"); n != 0 {
		t.Errorf("the live binhost lists %d packages after the refused make mount, want 0 (nothing imported)", n)
	}
	out, err = makeMount(mi.Dir)
	if err != nil || !strings.Contains(out, "already; nothing to do") {
		t.Errorf("make mount of the PKGDIR the state is mounted over: %v, want success saying it is mounted:\n%s", err, out)
	}
}

// TestOpsStatusInMount: status run inside a mount (or given a path in one)
// reports that mount's state, not the default one; --state still wins over
// the working directory.
func TestOpsStatusInMount(t *testing.T) {
	_, state, fix := importedFixture(t, "xpak-gzip-flat")
	_, other, _ := importedFixture(t, "xpak-bzip2-flat")
	mi := mountFSInfo(t, state)
	cpv, _ := get(fix.Blocks[0], "CPV")
	category, _, _ := strings.Cut(cpv, "/")
	sub := filepath.Join(mi.Dir, category)
	// The default and $PKGDIRFS_STATE must not be what status reports.
	status := func(dir string, args ...string) cmdResult {
		t.Helper()
		return run(t, dir, cliTimeout, "env", append([]string{"PKGDIRFS_STATE=" + other, binPath, "status"}, args...)...)
	}
	want := []string{"state:        " + stateAbs(t, state) + "\n", "mounted at:   " + mi.Dir + "\n", "running, pid "}
	for _, c := range []struct {
		name string
		r    cmdResult
	}{
		{"in the mountpoint", status(mi.Dir)},
		{"in a directory of the mount", status(sub)},
		{"given a path in the mount", status("", sub)},
		{"given the mountpoint", status("", mi.Dir)},
		{"given the state", status("", state)},
	} {
		for _, w := range want {
			if c.r.Code != 0 || !strings.Contains(string(c.r.Stdout), w) {
				t.Errorf("status %s: want exit 0 and %q: %s", c.name, w, c.r)
			}
		}
	}
	if r := status(sub, "--state", other); r.Code != 3 || !strings.Contains(string(r.Stdout), "state:        "+stateAbs(t, other)+"\n") {
		t.Errorf("status --state OTHER inside a mount: want OTHER, not mounted (exit 3): %s", r)
	}
	if r := status(t.TempDir()); r.Code != 3 || !strings.Contains(string(r.Stdout), "state:        "+stateAbs(t, other)+"\n") {
		t.Errorf("status outside any mount: want $PKGDIRFS_STATE (exit 3): %s", r)
	}
	if r := status("", t.TempDir()); r.Code != 1 || !strings.Contains(string(r.Stderr), "neither in a pkgdirfs mount nor a pkgdirfs state") {
		t.Errorf("status DIR that is neither: want exit 1 saying so: %s", r)
	}
}

// TestOpsMountInUseKeepsLog: a second mount of a state in use fails with
// its reason on stderr and writes nothing into the running daemon's log,
// whether that log is named (--log) or the default STATE/pkgdirfs.log.
func TestOpsMountInUseKeepsLog(t *testing.T) {
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	mi := mountFSInfo(t, state)
	defLog := filepath.Join(state, "pkgdirfs.log")
	// The running daemon logs on its own meanwhile: what must not be there
	// is a line of the failed mounts.
	foreign := []string{"in use", "mount failed"}
	for _, args := range [][]string{
		{"mount", "--state", state, "--log", mi.Log, t.TempDir()},
		{"mount", "--state", state, t.TempDir()},
	} {
		r := runCLI(t, args...)
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "state is in use: held by pid") {
			t.Errorf("%v: want a failure saying who holds the state: %s", args, r)
		}
		mnt := args[len(args)-1]
		foreign = append(foreign, mnt)
		if _, ok := mountedFSType(mnt); ok {
			run(t, "", toolTimeout, "umount", mnt)
			t.Errorf("%v mounted", args)
		}
	}
	logged, err := os.ReadFile(mi.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(logged), "\n") {
		for _, f := range foreign {
			if strings.Contains(l, f) {
				t.Errorf("a failed mount wrote into the running daemon's log %s: %s", mi.Log, l)
			}
		}
	}
	if b, err := os.ReadFile(defLog); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed mount wrote the state's default log %s (%v):\n%s", defLog, err, b)
	}
}

// TestOpsMakeUninstall: make uninstall after make install (twice, as an
// upgrade does) leaves no file and no directory install created, and keeps
// the directories that were there before, even empty ones.
func TestOpsMakeUninstall(t *testing.T) {
	needBinary(t)
	dest := t.TempDir()
	existing := []string{"usr/bin", "usr/share/man"} // a system's own, empty
	for _, d := range existing {
		if err := os.MkdirAll(filepath.Join(dest, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(target string) {
		t.Helper()
		if r := run(t, repoRoot, cliTimeout, "make", "--no-print-directory", target, "DESTDIR="+dest, "PREFIX=/usr", "INSTALL_DEPS=", "BIN="+binPath); r.Code != 0 {
			t.Fatalf("make %s: %s", target, r)
		}
	}
	mk("install")
	mk("install")
	if _, err := os.Stat(filepath.Join(dest, "usr/share/zsh/site-functions/_pkgdirfs")); err != nil {
		t.Fatalf("make install: %v", err)
	}
	mk("uninstall")
	var left []string
	filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(dest, p); rel != "." {
			left = append(left, rel)
		}
		return nil
	})
	want := []string{"usr", "usr/bin", "usr/share", "usr/share/man"}
	if !slices.Equal(left, want) {
		t.Errorf("after make install and make uninstall, DESTDIR holds %q, want only the directories that were there before, %q", left, want)
	}
}

// asNobody prepares to run the binary as the user nobody: a directory
// nobody can reach (temp dirs are 0700) holding a copy of the binary. It
// returns the user, the directory and the binary's path there.
func asNobody(t *testing.T) (nobody *user.User, dir, bin string) {
	t.Helper()
	needBinary(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	dir, err = os.MkdirTemp("", "pkgdirfs-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin = filepath.Join(dir, "pkgdirfs")
	b, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return nobody, dir, bin
}
