package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"pkgdirfs/internal/pgtest"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts for one command. Everything here works on a few MiB of fixtures,
// so anything slower than this is a hang, not a slow machine.
const (
	cliTimeout   = 120 * time.Second
	toolTimeout  = 60 * time.Second
	mountTimeout = 30 * time.Second
	exitTimeout  = 15 * time.Second
)

var (
	binPath  string // the built pkgdirfs binary
	buildErr error  // why it could not be built (every test then fails with it)
	repoRoot string
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		repoRoot, err = findRepoRoot()
		if err != nil {
			buildErr = err
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "pkgdirfs-it-bin-")
		if err != nil {
			buildErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "pkgdirfs")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", binPath, "./cmd/pkgdirfs")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -o %s ./cmd/pkgdirfs (in %s): %v\n%s", binPath, repoRoot, err, out)
			fmt.Fprintln(os.Stderr, "integration: cannot build pkgdirfs:", buildErr)
		}
		return m.Run()
	}()
	pgtest.StopShared()
	os.Exit(code)
}

// findRepoRoot asks `go env GOMOD`, falling back to walking up to go.mod.
func findRepoRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		gomod := strings.TrimSpace(string(out))
		if gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the integration directory")
		}
		dir = parent
	}
}

// needBinary fails the test when the product could not be built.
func needBinary(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("pkgdirfs binary not available: %v", buildErr)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("integration tests must run as root (FUSE mounts); euid=%d", os.Geteuid())
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse: %v", err)
	}
}

// ---------------------------------------------------------------- fixtures

// fixtureNames are all tarballs the tests rely on (fixtures/README.md).
var (
	multiFixtures = []string{"gpkg-zstd-multi", "xpak-bzip2-multi", "xpak-xz-multi", "xpak-zstd-multi"}
	flatFixtures  = []string{"gpkg-xz-flat", "xpak-bzip2-flat", "xpak-gzip-flat"}
	legacyFixture = "legacy-all"
	allFixtures   = append(append(append([]string{}, multiFixtures...), flatFixtures...), legacyFixture)
)

// fixturesDir is testdata/fixtures at the repository root (the test runs in
// integration/, one level below it), as an absolute path: tar and the binary
// may run in other directories. PKGDIRFS_FIXTURES overrides it.
func fixturesDir() string {
	if d := os.Getenv("PKGDIRFS_FIXTURES"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "testdata", "fixtures")
	}
	return filepath.Join(wd, "..", "testdata", "fixtures")
}

// extractFixture extracts fixtures/NAME.tar with the real tar (which keeps
// the mtimes) into a fresh temp dir and returns the PKGDIR inside it.
func extractFixture(t *testing.T, name string) string {
	t.Helper()
	tarball := filepath.Join(fixturesDir(), name+".tar")
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("fixture %s missing: %v (set PKGDIRFS_FIXTURES to the fixtures directory)", name, err)
	}
	dir := t.TempDir()
	mustRun(t, "", "tar", "-xf", tarball, "-C", dir)
	pkgdir := filepath.Join(dir, name)
	if fi, err := os.Stat(pkgdir); err != nil || !fi.IsDir() {
		t.Fatalf("fixture %s: expected top-level directory %s after extraction: %v", name, name, err)
	}
	return pkgdir
}

// ---------------------------------------------------------------- commands

type cmdResult struct {
	Args   []string
	Stdout []byte
	Stderr []byte
	Code   int
}

func (r cmdResult) String() string {
	return fmt.Sprintf("`%s` exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Code,
		clip(r.Stdout, 4000), clip(r.Stderr, 4000))
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + fmt.Sprintf("\n... (%d more bytes)", len(b)-n)
}

// run runs a command with a timeout in dir (the current dir if ""),
// returning its output and exit code; it fails the test only on a timeout
// or when the command cannot be started.
func run(t *testing.T, dir string, timeout time.Duration, name string, args ...string) cmdResult {
	t.Helper()
	return runEnv(t, dir, timeout, nil, name, args...)
}

// runEnv is run with env (VAR=value) added to the environment.
func runEnv(t *testing.T, dir string, timeout time.Duration, env []string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A daemonizing child that keeps our pipes open must not hang the test.
	cmd.WaitDelay = 3 * time.Second
	err := cmd.Run()
	res := cmdResult{Args: append([]string{name}, args...), Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		t.Fatalf("timeout after %v: %s", timeout, res)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.Is(err, exec.ErrWaitDelay):
		t.Errorf("`%s` exited but left its stdout/stderr open (a daemon still holds the caller's pipes; `$(%s)` in a shell would hang)",
			strings.Join(res.Args, " "), filepath.Base(name))
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("cannot run %s: %v", strings.Join(res.Args, " "), err)
	}
	if cmd.ProcessState != nil {
		res.Code = cmd.ProcessState.ExitCode()
	}
	return res
}

// mustRun runs an external tool and fails the test (with its stderr) unless it exits 0.
func mustRun(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	r := run(t, dir, toolTimeout, name, args...)
	if r.Code != 0 {
		t.Fatalf("tool failed (dir %q): %s", dir, r)
	}
	return r.Stdout
}

// shell runs a bash pipeline with pipefail.
func shell(t *testing.T, dir, script string) cmdResult {
	t.Helper()
	return run(t, dir, toolTimeout, "bash", "-c", "set -o pipefail; "+script)
}

// shQuote quotes s for bash.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runCLI runs the built pkgdirfs binary.
func runCLI(t *testing.T, args ...string) cmdResult {
	t.Helper()
	needBinary(t)
	return run(t, "", cliTimeout, binPath, args...)
}

// importSummary is the `imported N, already present M, invalid K` line.
type importSummary struct{ Imported, Present, Invalid int }

var summaryRE = regexp.MustCompile(`imported (\d+), already present (\d+), invalid (\d+)`)

func parseSummary(t *testing.T, r cmdResult) importSummary {
	t.Helper()
	m := summaryRE.FindAllSubmatch(r.Stderr, -1)
	if len(m) != 1 {
		t.Fatalf("import: want exactly one summary line `imported N, already present M, invalid K` on stderr, found %d: %s", len(m), r)
	}
	a, _ := strconv.Atoi(string(m[0][1]))
	b, _ := strconv.Atoi(string(m[0][2]))
	c, _ := strconv.Atoi(string(m[0][3]))
	return importSummary{a, b, c}
}

// importDirs runs `pkgdirfs import --state STATE SRC...` and returns the result and its summary.
func importDirs(t *testing.T, state string, srcs ...string) (cmdResult, importSummary) {
	t.Helper()
	r := runCLI(t, append([]string{"import", "--state", state}, srcs...)...)
	return r, parseSummary(t, r)
}

// importedFixture imports fixture name into a fresh state: every block of its
// Packages, none already present, none invalid.
func importedFixture(t *testing.T, name string) (src, state string, fix *pkgIndex) {
	t.Helper()
	src = extractFixture(t, name)
	fix = readFixtureIndex(t, src)
	state = t.TempDir()
	importOK(t, state, importSummary{len(fix.Blocks), 0, 0}, src)
	return src, state, fix
}

// importOK imports and requires exit 0 and the exact summary.
func importOK(t *testing.T, state string, want importSummary, srcs ...string) {
	t.Helper()
	r, got := importDirs(t, state, srcs...)
	if r.Code != 0 {
		t.Fatalf("import: want exit 0, got %d: %s", r.Code, r)
	}
	if got != want {
		t.Fatalf("import summary: want `imported %d, already present %d, invalid %d`, got `imported %d, already present %d, invalid %d`\n%s",
			want.Imported, want.Present, want.Invalid, got.Imported, got.Present, got.Invalid, r)
	}
}

// ---------------------------------------------------------------- mounts

type mountInfo struct {
	Dir  string
	Log  string
	PIDs []int // daemon processes serving the mount
	// AllowErrors are substrings of ERROR log lines the test provokes on
	// purpose; any other ERROR line, or a panic, fails the test at unmount.
	AllowErrors []string
}

// checkDaemonLog fails the test on a panic, a Go runtime fatal error
// (concurrent map writes, out of memory) or an ERROR line in the daemon log
// that the test did not provoke.
func checkDaemonLog(t *testing.T, mi *mountInfo) {
	t.Helper()
	b, err := os.ReadFile(mi.Log)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		bad := strings.Contains(line, "panic") || strings.HasPrefix(line, "fatal error:")
		if !bad && strings.Contains(line, "level=ERROR") {
			bad = true
			for _, ok := range mi.AllowErrors {
				if strings.Contains(line, ok) {
					bad = false
				}
			}
		}
		if bad {
			t.Errorf("daemon log %s: unexpected line: %s", mi.Log, clip([]byte(line), 600))
		}
	}
}

// mountFS runs `pkgdirfs mount --state STATE --log LOG OPTS... MNT`, which must
// return with the mount ready; it registers a cleanup that unmounts and checks
// the daemon exited.
func mountFS(t *testing.T, state string, opts ...string) string {
	t.Helper()
	return mountFSInfo(t, state, opts...).Dir
}

func mountFSInfo(t *testing.T, state string, opts ...string) *mountInfo {
	t.Helper()
	return mountFSInfoEnv(t, nil, state, opts...)
}

// mountFSInfoEnv is mountFSInfo with env (VAR=value) in the daemon's environment.
func mountFSInfoEnv(t *testing.T, env []string, state string, opts ...string) *mountInfo {
	t.Helper()
	needBinary(t)
	mnt, err := os.MkdirTemp("", "pkgdirfs-it-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "daemon.log")
	mi := &mountInfo{Dir: mnt, Log: logFile}
	args := append([]string{"mount", "--state", state, "--log", logFile}, opts...)
	if _, err := os.Stat(catalogFile(state)); errors.Is(err, os.ErrNotExist) {
		args = append(args, "--init") // a new, empty PKGDIR
	}
	args = append(args, mnt)
	start := time.Now()
	r := runEnv(t, "", mountTimeout, env, binPath, args...)
	t.Cleanup(func() { unmountAndCheck(t, mi) })
	if r.Code != 0 {
		t.Fatalf("mount: want exit 0, got %d: %s\ndaemon log:\n%s", r.Code, r, readLog(logFile))
	}
	// The mount must be there the moment `pkgdirfs mount` returns.
	if fstype, ok := mountedFSType(mnt); !ok {
		t.Fatalf("`pkgdirfs mount` returned (after %v) but %s is not in /proc/self/mountinfo\n%s\ndaemon log:\n%s",
			time.Since(start), mnt, r, readLog(logFile))
	} else if fstype != "fuse" && !strings.HasPrefix(fstype, "fuse.") {
		t.Fatalf("mount %s has fstype %q, want fuse or fuse.*", mnt, fstype)
	}
	mi.PIDs = daemonPIDs(mnt)
	if len(mi.PIDs) == 0 {
		t.Errorf("mounted %s but found no process of %s with the mountpoint in its command line", mnt, binPath)
	}
	return mi
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return clip(b, 6000)
}

// unmountAndCheck unmounts (umount, retried, then umount -l), checks the
// daemon processes exit, and removes the (empty) mountpoint.
func unmountAndCheck(t *testing.T, mi *mountInfo) {
	t.Helper()
	if _, ok := mountedFSType(mi.Dir); ok {
		var last cmdResult
		unmounted := false
		for i := 0; i < 10; i++ {
			last = run(t, "", toolTimeout, "umount", mi.Dir)
			if last.Code == 0 {
				unmounted = true
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if !unmounted {
			t.Errorf("umount %s failed repeatedly (last: %s); falling back to umount -l", mi.Dir, last)
			run(t, "", toolTimeout, "umount", "-l", mi.Dir)
		}
	}
	for _, pid := range mi.PIDs {
		if !waitPIDGone(pid, exitTimeout) {
			t.Errorf("daemon pid %d still running %v after umount %s; killing it", pid, exitTimeout, mi.Dir)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	checkDaemonLog(t, mi)
	if t.Failed() {
		t.Logf("daemon log %s:\n%s", mi.Log, readLog(mi.Log))
	}
	if _, ok := mountedFSType(mi.Dir); ok {
		t.Errorf("%s is still mounted after cleanup", mi.Dir)
		return
	}
	if err := os.Remove(mi.Dir); err != nil {
		t.Errorf("remove mountpoint %s after unmount: %v", mi.Dir, err)
	}
}

// mountedFSType reports the fstype of the mount at dir, from /proc/self/mountinfo.
func mountedFSType(dir string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found, fstype := false, ""
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				found, fstype = true, fields[i+1] // the last mount on dir wins
				break
			}
		}
	}
	return fstype, found
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// daemonPIDs finds running processes of our binary whose argv names the mountpoint.
func daemonPIDs(mnt string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != binPath {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 || args[1] != "mount" { // not the daemon's watchdog
			continue
		}
		for _, arg := range args {
			if arg == mnt || strings.HasSuffix(arg, "="+mnt) {
				if !pidGone(pid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// pidGone: no such process, or a zombie (exited, waiting to be reaped by its parent).
func pidGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitPIDGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if pidGone(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pidGone(pid)
}

func waitMounted(dir string, want bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		_, ok := mountedFSType(dir)
		if ok == want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- tools

// statInfo is `stat -c '%i %s %Y'` of one path.
type statInfo struct {
	Ino, Size, Mtime int64
}

func (s statInfo) String() string {
	return fmt.Sprintf("ino=%d size=%d mtime=%d", s.Ino, s.Size, s.Mtime)
}

// statPaths runs `stat -L -c '%i %s %Y %n'` on paths (relative to dir) in
// one call, following symlinks (flat and All/ names are symlinks to the
// instance's file); paths stat cannot stat are reported in missing (with
// stat's stderr).
func statPaths(t *testing.T, dir string, paths []string) (map[string]statInfo, []string, string) {
	t.Helper()
	res := map[string]statInfo{}
	var stderr strings.Builder
	for start := 0; start < len(paths); start += 500 {
		chunk := paths[start:min(start+500, len(paths))]
		r := run(t, dir, toolTimeout, "stat", append([]string{"-L", "-c", "%i %s %Y %n", "--"}, chunk...)...)
		stderr.Write(r.Stderr)
		for _, line := range strings.Split(strings.TrimRight(string(r.Stdout), "\n"), "\n") {
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 {
				continue
			}
			ino, _ := strconv.ParseInt(f[0], 10, 64)
			size, _ := strconv.ParseInt(f[1], 10, 64)
			mt, _ := strconv.ParseInt(f[2], 10, 64)
			res[f[3]] = statInfo{ino, size, mt}
		}
	}
	var missing []string
	for _, p := range paths {
		if _, ok := res[p]; !ok {
			missing = append(missing, p)
		}
	}
	return res, missing, stderr.String()
}

// sha1Paths runs sha1sum on paths (relative to dir) in one call.
func sha1Paths(t *testing.T, dir string, paths []string) map[string]string {
	t.Helper()
	res := map[string]string{}
	for start := 0; start < len(paths); start += 500 {
		chunk := paths[start:min(start+500, len(paths))]
		out := mustRun(t, dir, "sha1sum", append([]string{"--"}, chunk...)...)
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			sum, name, ok := strings.Cut(line, "  ")
			if ok {
				res[name] = sum
			}
		}
	}
	return res
}

// digestPaths runs a digest tool (sha1sum, md5sum, sha256sum) on paths
// relative to dir.
func digestPaths(t *testing.T, tool, dir string, paths []string) map[string]string {
	t.Helper()
	res := map[string]string{}
	for start := 0; start < len(paths); start += 500 {
		out := mustRun(t, dir, tool, append([]string{"--"}, paths[start:min(start+500, len(paths))]...)...)
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok {
				res[name] = sum
			}
		}
	}
	return res
}

// statOne returns `stat -c '%i %s %Y'` of one path, failing the test on error.
func statOne(t *testing.T, path string) statInfo {
	t.Helper()
	out := strings.Fields(string(mustRun(t, "", "stat", "-c", "%i %s %Y", "--", path)))
	if len(out) != 3 {
		t.Fatalf("stat %s: unexpected output %q", path, out)
	}
	var v [3]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(out[i], 10, 64)
	}
	return statInfo{v[0], v[1], v[2]}
}
