package integration

// Plumbing for bench_test.go: synthetic packages, import, mount/unmount for
// benchmarks, cache dropping, timing and the one-line reports. Every name here
// starts with "bench" so it cannot collide with the tests' helpers.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

// benchPkg is one synthetic package instance in multi-instance layout.
type benchPkg struct {
	Cat, PN, Ver string
	BuildID      int
	Files        []int64 // sizes of the random files inside the tarball
	Seed         uint64  // seed of the random bytes
}

func (p benchPkg) PF() string { return p.PN + "-" + p.Ver }

// Rel is the multi-instance path $CAT/$PN/$PF-$N.xpak.
func (p benchPkg) Rel() string {
	return filepath.Join(p.Cat, p.PN, fmt.Sprintf("%s-%d.xpak", p.PF(), p.BuildID))
}

// benchWritePackage writes p under root as an uncompressed tar of random
// files followed by an XPAK block and its trailer; it returns the file size.
func benchWritePackage(root string, p benchPkg) (int64, error) {
	path := filepath.Join(root, p.Rel())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cw := &benchCountingWriter{w: f}
	var payload int64
	for _, size := range p.Files {
		payload += size
	}
	bw := bufio.NewWriterSize(cw, int(min(payload+16<<10, 1<<20)))
	tw := tar.NewWriter(bw)
	rng := rand.NewChaCha8(sha256.Sum256([]byte(strconv.FormatUint(p.Seed, 16) + "/" + p.Rel())))
	mtime := time.Unix(1700000000, 0)
	for i, size := range p.Files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     fmt.Sprintf("usr/share/%s/file%d.bin", p.PN, i),
			Mode:     0o644,
			Size:     size,
			ModTime:  mtime,
			Uname:    "root",
			Gname:    "root",
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, err
		}
		if _, err := io.CopyN(tw, rng, size); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	block, err := xpak.EncodeBlock([]xpak.Entry{
		{Key: "CATEGORY", Value: []byte(p.Cat + "\n")},
		{Key: "PF", Value: []byte(p.PF() + "\n")},
		{Key: "SLOT", Value: []byte("0\n")},
		{Key: "BUILD_TIME", Value: []byte(strconv.Itoa(1700000000+p.BuildID) + "\n")},
		{Key: "BUILD_ID", Value: []byte(strconv.Itoa(p.BuildID) + "\n")},
		{Key: "EAPI", Value: []byte("8\n")},
		{Key: "USE", Value: []byte("amd64 elibc_glibc kernel_linux\n")},
		{Key: "KEYWORDS", Value: []byte("amd64\n")},
		{Key: "DESCRIPTION", Value: []byte("synthetic package for pkgdirfs benchmarks\n")},
	})
	if err != nil {
		return 0, err
	}
	if _, err := bw.Write(xpak.AppendTrailer(block)); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return cw.n, f.Close()
}

type benchCountingWriter struct {
	w io.Writer
	n int64
}

func (c *benchCountingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// benchWriteAll writes pkgs under root with a few goroutines and returns the
// total size in bytes.
func benchWriteAll(tb testing.TB, root string, pkgs []benchPkg) int64 {
	tb.Helper()
	return benchWriteParallel(tb, root, len(pkgs), func(i int) (int64, error) { return benchWritePackage(root, pkgs[i]) }, nil)
}

// benchWriteParallel calls write(0..n-1) from a few goroutines, calling
// progress every 20,000 files; it fails tb on the first error and returns
// the sum of what write returned (bytes).
func benchWriteParallel(tb testing.TB, root string, n int, write func(i int) (int64, error), progress func(done int)) int64 {
	tb.Helper()
	var total, next, done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 2*runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				size, err := write(int(i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				total.Add(size)
				if d := done.Add(1); progress != nil && d%20000 == 0 {
					progress(int(d))
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatalf("generate packages under %s: %v", root, firstErr)
	}
	return total.Load()
}

// ---------------------------------------------------------------- processes

func benchNeed(tb testing.TB) {
	tb.Helper()
	if buildErr != nil {
		tb.Fatalf("pkgdirfs binary not available: %v", buildErr)
	}
	if os.Geteuid() != 0 {
		tb.Skipf("benchmarks mount FUSE and drop caches: run as root (euid=%d)", os.Geteuid())
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tb.Skipf("/dev/fuse: %v", err)
	}
}

// benchExec runs a command (bash -c when script is true) with a timeout and
// returns stdout; stderr and the exit status fail the benchmark.
func benchExec(tb testing.TB, dir string, timeout time.Duration, stdin io.Reader, name string, args ...string) []byte {
	tb.Helper()
	return benchExecEnv(tb, dir, timeout, nil, stdin, name, args...)
}

// benchExecEnv is benchExec with env (VAR=value) added to the environment.
func benchExecEnv(tb testing.TB, dir string, timeout time.Duration, env []string, stdin io.Reader, name string, args ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 3 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("timeout after %v: %s %s\nstderr: %s", timeout, name, strings.Join(args, " "), clip(stderr.Bytes(), 4000))
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		tb.Fatalf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, clip(stderr.Bytes(), 4000))
	}
	return stdout.Bytes()
}

// benchShell runs a bash script (set -o pipefail) and returns how long it took.
func benchShell(tb testing.TB, dir, script string) time.Duration {
	tb.Helper()
	start := time.Now()
	benchExec(tb, dir, 5*time.Minute, nil, "bash", "-c", "set -o pipefail; "+script)
	return time.Since(start)
}

// benchImportResult is what `pkgdirfs import` reported and how long it took.
type benchImportResult struct {
	Imported, Present, Invalid int
	Elapsed                    time.Duration
}

// benchImport runs `pkgdirfs import -q --state STATE SRC` and requires every
// package to be imported.
func benchImport(tb testing.TB, state, src string, want int) benchImportResult {
	tb.Helper()
	benchNeed(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "import", "-q", "--state", state, src)
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	res := benchImportResult{Elapsed: time.Since(start)}
	if err != nil {
		tb.Fatalf("pkgdirfs import --state %s %s: %v\n%s", state, src, err, clip(stderr.Bytes(), 4000))
	}
	m := summaryRE.FindSubmatch(stderr.Bytes())
	if m == nil {
		tb.Fatalf("import printed no summary line:\n%s", clip(stderr.Bytes(), 4000))
	}
	res.Imported, _ = strconv.Atoi(string(m[1]))
	res.Present, _ = strconv.Atoi(string(m[2]))
	res.Invalid, _ = strconv.Atoi(string(m[3]))
	if res.Imported != want || res.Invalid != 0 {
		tb.Fatalf("import: want %d imported, 0 invalid; got %q", want, m[0])
	}
	return res
}

// benchMounted is one mount made for a benchmark.
type benchMounted struct {
	Dir  string
	log  string
	pids []int
	once sync.Once
}

// benchMount runs `pkgdirfs mount --state STATE --log LOG OPTS... MNT` (it
// returns with the mount ready). Unmount explicitly with Close; a cleanup
// unmounts too in case the benchmark stopped early.
func benchMount(tb testing.TB, state string, opts ...string) *benchMounted {
	tb.Helper()
	return benchMountEnv(tb, nil, "bench-daemon.log", state, opts...)
}

// benchMountEnv is benchMount with env (VAR=value) in the daemon's
// environment and its log at STATE/LOGNAME (several mounts of one state).
func benchMountEnv(tb testing.TB, env []string, logName, state string, opts ...string) *benchMounted {
	tb.Helper()
	benchNeed(tb)
	mnt, err := os.MkdirTemp("", "pkgdirfs-bench-mnt-")
	if err != nil {
		tb.Fatal(err)
	}
	m := &benchMounted{Dir: mnt, log: filepath.Join(state, logName)}
	args := append([]string{"mount", "--state", state, "--log", m.log}, opts...)
	args = append(args, mnt)
	tb.Cleanup(func() { m.Close(tb) })
	benchExecEnv(tb, "", mountTimeout, env, nil, binPath, args...)
	if fstype, ok := mountedFSType(mnt); !ok || !strings.HasPrefix(fstype, "fuse") {
		tb.Fatalf("`pkgdirfs mount` returned but %s is not a fuse mount (%q)\ndaemon log:\n%s", mnt, fstype, readLog(m.log))
	}
	m.pids = daemonPIDs(mnt)
	return m
}

// Close unmounts (retrying while busy), waits for the daemon to exit and
// removes the mountpoint. It is idempotent.
func (m *benchMounted) Close(tb testing.TB) {
	m.once.Do(func() {
		if _, ok := mountedFSType(m.Dir); ok {
			ok := false
			for i := 0; i < 20 && !ok; i++ {
				ok = exec.Command("umount", m.Dir).Run() == nil
				if !ok {
					time.Sleep(250 * time.Millisecond)
				}
			}
			if !ok {
				tb.Errorf("umount %s kept failing; detaching it lazily", m.Dir)
				_ = exec.Command("umount", "-l", m.Dir).Run()
			}
		}
		for _, pid := range m.pids {
			if !waitPIDGone(pid, exitTimeout) {
				tb.Errorf("daemon pid %d still running after umount %s; killing it", pid, m.Dir)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := os.Remove(m.Dir); err != nil {
			tb.Errorf("remove mountpoint: %v", err)
		}
	})
}

// benchDropCaches syncs and drops the page, dentry and inode caches, so the
// next access reads from the disk (and a FUSE mount gets FORGETs).
func benchDropCaches(tb testing.TB) {
	tb.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		tb.Fatalf("drop caches: %v", err)
	}
}

// ---------------------------------------------------------------- timing and reports

// benchBestPair runs native and mount alternately n times each and returns
// the shortest duration of each: alternating spreads the disturbances of a
// shared machine over both sides.
func benchBestPair(n int, native, mount func() time.Duration) (time.Duration, time.Duration) {
	bn, bm := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for i := 0; i < n; i++ {
		bn = min(bn, native())
		bm = min(bm, mount())
	}
	return bn, bm
}

// benchBestOf runs f n times and returns the shortest duration.
func benchBestOf(n int, f func() time.Duration) time.Duration {
	best := time.Duration(1<<63 - 1)
	for i := 0; i < n; i++ {
		best = min(best, f())
	}
	return best
}

// benchTimed returns how long f took.
func benchTimed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// benchRate formats bytes per duration as GB/s or MB/s (decimal units).
func benchRate(bytes int64, d time.Duration) string {
	r := float64(bytes) / d.Seconds()
	if r >= 1e9 {
		return fmt.Sprintf("%.2f GB/s", r/1e9)
	}
	return fmt.Sprintf("%.1f MB/s", r/1e6)
}

// benchDur formats a duration with three significant digits.
func benchDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	}
}

// benchPrint prints a line so it shows with -bench output (stdout) and in the
// benchmark's log.
func benchPrint(b *testing.B, format string, args ...any) {
	b.Helper()
	line := fmt.Sprintf(format, args...)
	b.Log(line)
	fmt.Println(line)
}

// benchCompareRate reports a throughput comparison of the same bytes:
// ratio = mount throughput / native throughput.
func benchCompareRate(b *testing.B, name string, bytes int64, native, mount time.Duration, note string) float64 {
	b.Helper()
	ratio := native.Seconds() / mount.Seconds()
	benchPrint(b, "bench %s: native %s, pkgdirfs %s, ratio %.2f%s",
		name, benchRate(bytes, native), benchRate(bytes, mount), ratio, note)
	b.ReportMetric(ratio, "ratio")
	return ratio
}

// benchCompareTime reports a comparison of durations, per item when items
// are counted (nNative/nMount > 0, unit is the singular: "entry", "file"):
// ratio = native time per item / mount time per item.
func benchCompareTime(b *testing.B, name string, native time.Duration, nNative int, mount time.Duration, nMount int, unit, note string) float64 {
	b.Helper()
	if nNative <= 0 || nMount <= 0 {
		ratio := native.Seconds() / mount.Seconds()
		benchPrint(b, "bench %s: native %s, pkgdirfs %s, ratio %.2f%s", name, benchDur(native), benchDur(mount), ratio, note)
		b.ReportMetric(ratio, "ratio")
		return ratio
	}
	pn := native / time.Duration(nNative)
	pm := mount / time.Duration(nMount)
	ratio := (native.Seconds() / float64(nNative)) / (mount.Seconds() / float64(nMount))
	plural := unit + "s"
	if strings.HasSuffix(unit, "y") {
		plural = strings.TrimSuffix(unit, "y") + "ies"
	}
	benchPrint(b, "bench %s: native %s (%d %s, %s/%s), pkgdirfs %s (%d %s, %s/%s), ratio %.2f%s",
		name, benchDur(native), nNative, plural, benchDur(pn), unit,
		benchDur(mount), nMount, plural, benchDur(pm), unit, ratio, note)
	b.ReportMetric(ratio, "ratio")
	return ratio
}

// benchReadFile reads path to the end with a buffer of bufSize and returns
// the number of bytes read.
func benchReadFile(tb testing.TB, path string, buf []byte) int64 {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n
		}
		if err != nil {
			tb.Fatalf("read %s: %v", path, err)
		}
	}
}
