package integration

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

// kill -9 of the daemon at random moments of a mixed write workload: the
// catalog must verify, and every package whose write was acknowledged
// (cp exit 0, rename returned nil) and not later removed must be listed in
// Packages with its SHA1 and be readable with that digest after a remount.
//
// Every operation on the mount runs in a child process (cp, mv, rm, sh): the
// test process must hold no descriptor on the mount, because exec of the
// restarted daemon closes inherited descriptors, and a close on a dead
// connection (FLUSH) would wait until that very restart recovers it.

const (
	crashTrials  = 50
	crashWorkers = 3
	crashOpsEach = 24 // prepared operations per worker and trial
)

type crashOpKind int

const (
	opCpFlat       crashOpKind = iota // cp → cat/PF.tbz2 or cat/PF.gpkg.tar
	opCpMulti                         // cp → cat/PN/PF-1.xpak|.gpkg.tar
	opCpLegacy                        // cp → All/PF.tbz2
	opPlaceholder                     // O_EXCL placeholder at the multi name, temp file, rename onto it
	opTempRename                      // temp file + rename onto the flat name
	opUnlink                          // unlink an acknowledged package of this worker
	opBad                             // cp random bytes to a package name (must fail)
	opPartialWrite                    // write half of a package at a name, slowly (interrupted writes)
)

func (k crashOpKind) String() string {
	return [...]string{"cp-flat", "cp-multi", "cp-legacy", "placeholder+rename", "temp+rename", "unlink", "bad", "slow-write"}[k]
}

// crashPkg is one unique package prepared for a write.
type crashPkg struct {
	CPV, SHA1 string
	Name      string // where it is written, relative to the mount
	Src       string // its bytes on local disk
	Data      []byte
}

type pkgState int

const (
	stUnknown pkgState = iota // an operation on it was not acknowledged
	stPresent
	stAbsent
)

// crashModel is what the workload was told: per package, the state its last
// acknowledged operation left, or unknown if a later one was in flight.
type crashModel struct {
	mu   sync.Mutex
	pkgs map[string]*crashEntry // by SHA1
}

type crashEntry struct {
	Pkg   crashPkg
	State pkgState
	Op    string
	Trial int
}

func (m *crashModel) set(p crashPkg, st pkgState, op string, trial int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pkgs[p.SHA1] = &crashEntry{Pkg: p, State: st, Op: op, Trial: trial}
}

// crashPool is the base material: the xpak packages of a fixture, split.
type crashBase struct {
	Cat, PN string
	Tarball []byte
	Entries []xpak.Entry
}

func crashPool(t *testing.T, pkgdir string) []crashBase {
	t.Helper()
	var out []crashBase
	err := filepath.Walk(pkgdir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || !strings.HasSuffix(p, ".tbz2") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tarball, entries := splitXpak(t, b)
		rel, _ := filepath.Rel(pkgdir, p)
		cat, pn, _, err := splitCPV(strings.TrimSuffix(rel, ".tbz2"))
		if err != nil {
			return err
		}
		out = append(out, crashBase{cat, pn, tarball, entries})
		return nil
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("crash pool from %s: %d packages, %v", pkgdir, len(out), err)
	}
	return out
}

// crashDaemon is a foreground daemon we started, so we have its pid.
type crashDaemon struct {
	cmd    *exec.Cmd
	done   chan struct{}
	marker string // the log line written before it started
}

// logSince is the log at path from the last line marker on (at most 64 KiB).
func logSince(path, marker string) string {
	b, _ := os.ReadFile(path)
	if i := bytes.LastIndex(b, []byte(marker)); i >= 0 {
		b = b[i:]
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

func startCrashDaemon(t *testing.T, state, mnt, logPath, marker string, extra ...string) *crashDaemon {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "===== %s\n", marker)
	cmd := exec.Command(binPath, append(append([]string{"mount", "-f"}, extra...), "--state", state, mnt)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start daemon: %v", err)
	}
	d := &crashDaemon{cmd: cmd, done: make(chan struct{}), marker: "===== " + marker}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	deadline := time.Now().Add(mountTimeout)
	for {
		if _, ok := mountedFSType(mnt); ok {
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("%s: daemon exited before mounting (%v)\nlog:\n%s", marker, cmd.ProcessState, tailFile(logPath, 4000))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("%s: not mounted after %v\nlog:\n%s", marker, mountTimeout, tailFile(logPath, 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fuseConnID is the fusectl connection of the mount at dir: the minor
// device number in /proc/self/mountinfo.
func fuseConnID(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	id := ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && unescapeMount(f[4]) == dir {
			if _, minor, ok := strings.Cut(f[2], ":"); ok {
				id = minor
			}
		}
	}
	return id
}

// abortFuse aborts a FUSE connection through fusectl (mounting it if needed).
func abortFuse(t *testing.T, id string) error {
	t.Helper()
	const ctl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(ctl, id)); err != nil {
		run(t, "", toolTimeout, "mount", "-t", "fusectl", "none", ctl)
	}
	return os.WriteFile(filepath.Join(ctl, id, "abort"), []byte("1"), 0o200)
}

// threadStacks describes the threads of pid that are not plain sleepers.
func threadStacks(pid int) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var b strings.Builder
	for _, task := range tasks {
		stat, _ := os.ReadFile(task + "/stat")
		wchan, _ := os.ReadFile(task + "/wchan")
		stack, _ := os.ReadFile(task + "/stack")
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			s = s[i+2 : i+3]
		}
		if s == "S" && !strings.Contains(string(stack), "fuse") {
			continue
		}
		fmt.Fprintf(&b, "  %s state %s wchan %s\n", filepath.Base(task), s, wchan)
		for _, l := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			if l != "" {
				fmt.Fprintf(&b, "      %s\n", l)
			}
		}
	}
	return b.String()
}

func tailFile(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (d *crashDaemon) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(exitTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("%s: daemon pid %d did not exit within %v", what, d.cmd.Process.Pid, exitTimeout)
	}
}

// sha1Batch is sha1sum over paths (relative to dir); unreadable ones are
// missing from the result and explained in the returned stderr.
func sha1Batch(t *testing.T, dir string, paths []string) (map[string]string, string) {
	t.Helper()
	res := map[string]string{}
	var errs strings.Builder
	for start := 0; start < len(paths); start += 400 {
		chunk := paths[start:min(start+400, len(paths))]
		r := run(t, dir, toolTimeout, "sha1sum", append([]string{"--"}, chunk...)...)
		errs.Write(r.Stderr)
		for _, line := range strings.Split(strings.TrimRight(string(r.Stdout), "\n"), "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok {
				res[name] = sum
			}
		}
	}
	return res, errs.String()
}

// checkCrashState checks a freshly mounted state against the model.
// It returns how many acknowledged packages it checked.
func checkCrashState(t *testing.T, mnt string, model *crashModel, label string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Errorf("%s: read Packages: %v", label, err)
		return 0
	}
	idx, err := parseIndex(raw)
	if err != nil {
		t.Errorf("%s: Packages does not parse: %v", label, err)
		return 0
	}
	insts := instances(idx)
	type key struct{ cpv, sha string }
	listed := map[key]instance{}
	var paths []string
	for _, in := range insts {
		if in.Size <= 0 {
			t.Errorf("%s: Packages lists a %d-byte entry %s (PATH %s)", label, in.Size, in.CPV, in.Path)
		}
		if in.SHA1 == "" || in.Path == "" || in.CPV == "" {
			t.Errorf("%s: Packages block without CPV/PATH/SHA1: %q", label, in.Block)
			continue
		}
		listed[key{in.CPV, in.SHA1}] = in
		paths = append(paths, in.Path)
	}
	// Nothing half-visible: every listed PATH is readable with its SHA1 and SIZE.
	sums, serr := sha1Batch(t, mnt, paths)
	for _, in := range insts {
		if got, ok := sums[in.Path]; !ok {
			t.Errorf("%s: Packages lists %s (%s) but it cannot be read: %s", label, in.Path, in.CPV, strings.TrimSpace(serr))
		} else if got != in.SHA1 {
			t.Errorf("%s: %s reads with sha1 %s, Packages says %s", label, in.Path, got, in.SHA1)
		}
	}
	sizes, missing, _ := statPaths(t, mnt, paths)
	for _, in := range insts {
		if st, ok := sizes[in.Path]; ok && st.Size != in.Size {
			t.Errorf("%s: %s has size %d, Packages says %d", label, in.Path, st.Size, in.Size)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: Packages lists paths that stat cannot find: %v", label, missing)
	}

	model.mu.Lock()
	entries := make([]*crashEntry, 0, len(model.pkgs))
	for _, e := range model.pkgs {
		entries = append(entries, e)
	}
	model.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].Pkg.Name < entries[j].Pkg.Name })
	checked := 0
	var names []string
	for _, e := range entries {
		if e.State == stPresent {
			names = append(names, e.Pkg.Name)
		}
	}
	nameSums, nerr := sha1Batch(t, mnt, names)
	for _, e := range entries {
		k := key{e.Pkg.CPV, e.Pkg.SHA1}
		switch e.State {
		case stPresent:
			checked++
			if _, ok := listed[k]; !ok {
				t.Errorf("%s: acknowledged package lost: %s sha1 %s (written at %s by %s in trial %d) is not in Packages",
					label, e.Pkg.CPV, e.Pkg.SHA1, e.Pkg.Name, e.Op, e.Trial)
			}
			if got, ok := nameSums[e.Pkg.Name]; !ok {
				t.Errorf("%s: acknowledged package %s (%s, trial %d) cannot be read at its name: %s", label, e.Pkg.Name, e.Op, e.Trial, strings.TrimSpace(nerr))
			} else if got != e.Pkg.SHA1 {
				t.Errorf("%s: acknowledged package %s (%s, trial %d) reads with sha1 %s, want %s", label, e.Pkg.Name, e.Op, e.Trial, got, e.Pkg.SHA1)
			}
		case stAbsent:
			if in, ok := listed[k]; ok {
				t.Errorf("%s: acknowledged unlink of %s (trial %d) undone: Packages lists it at %s", label, e.Pkg.Name, e.Trial, in.Path)
			}
		}
	}
	return checked
}

func TestCrashKill9(t *testing.T) {
	needBinary(t)
	start := time.Now()
	state := t.TempDir()
	importOK(t, state, importSummary{20, 0, 0}, extractFixture(t, "xpak-bzip2-flat"))
	pool := crashPool(t, extractFixture(t, "xpak-bzip2-flat"))
	mnt, err := os.MkdirTemp("", "pkgdirfs-it-crash-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	var cur *crashDaemon
	t.Cleanup(func() {
		if cur != nil {
			_ = cur.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-cur.done:
			case <-time.After(exitTimeout):
				_ = cur.cmd.Process.Kill()
			}
		}
		if _, ok := mountedFSType(mnt); ok {
			run(t, "", toolTimeout, "umount", "-l", mnt)
		}
		os.Remove(mnt)
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", tailFile(logPath, 12000))
		}
	})
	model := &crashModel{pkgs: map[string]*crashEntry{}}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	seed := rng.Int63()
	t.Logf("seed %d", seed)
	rng = rand.New(rand.NewSource(seed))

	var (
		totalAcked, totalChecked, totalFailedOps, hung int
		opCounts                                       = map[string]int{}
		opMu                                           sync.Mutex
	)

	cur = startCrashDaemon(t, state, mnt, logPath, "initial mount")
	trials := 0
	for trial := 1; trial <= crashTrials; trial++ {
		if time.Since(start) > 8*time.Minute {
			t.Errorf("stopping after %d trials: over 8 minutes", trials)
			break
		}
		trials++
		label := fmt.Sprintf("trial %d", trial)
		srcDir := t.TempDir()

		// Prepare every worker's operations with unique packages (unique
		// PF, so no name is shared and no bytes are deduplicated).
		type prepared struct {
			kind crashOpKind
			pkg  crashPkg
		}
		plans := make([][]prepared, crashWorkers)
		for w := range plans {
			for i := 0; i < crashOpsEach; i++ {
				kind := crashOpKind(rng.Intn(8))
				if kind == opUnlink && i == 0 {
					kind = opCpMulti
				}
				b := pool[rng.Intn(len(pool))]
				ver := fmt.Sprintf("%d.%d.%d", 100+trial, w, i)
				pf := b.PN + "-" + ver
				gpkg := rng.Intn(3) == 0 && kind != opCpLegacy
				ents := withEntry(withEntry(b.Entries, "PF", []byte(pf+"\n")), "BUILD_ID", nil)
				ents = withEntry(ents, "PKGDIRFS_CRASH", []byte(fmt.Sprintf("%d %d %d %d\n", seed, trial, w, i)))
				var data []byte
				ext, mext := ".tbz2", ".xpak"
				if gpkg {
					data = synthGpkg(t, pf, ents, 0)
					ext, mext = ".gpkg.tar", ".gpkg.tar"
				} else {
					data = buildXpak(t, b.Tarball, ents)
				}
				var name string
				switch kind {
				case opCpFlat, opTempRename:
					name = b.Cat + "/" + pf + ext
				case opCpLegacy:
					name = "All/" + pf + ".tbz2"
				default:
					name = b.Cat + "/" + b.PN + "/" + pf + "-1" + mext
				}
				if kind == opBad {
					data = make([]byte, 2048+rng.Intn(8192))
					rng.Read(data)
				}
				sum := sha1.Sum(data)
				src := filepath.Join(srcDir, fmt.Sprintf("w%d-%02d", w, i))
				if err := os.WriteFile(src, data, 0o644); err != nil {
					t.Fatal(err)
				}
				plans[w] = append(plans[w], prepared{kind, crashPkg{
					CPV: b.Cat + "/" + pf, SHA1: hex.EncodeToString(sum[:]), Name: name, Src: src, Data: data}})
			}
		}

		var stop atomic.Bool
		var wg sync.WaitGroup
		var acked atomic.Int64
		var failures []string
		var failMu sync.Mutex
		for w := 0; w < crashWorkers; w++ {
			wg.Add(1)
			go func(w int, plan []prepared, seed int64) {
				defer wg.Done()
				wr := rand.New(rand.NewSource(seed))
				var mine []crashPkg // acknowledged, present
				count := func(op string, ok bool) {
					opMu.Lock()
					opCounts[op]++
					if !ok {
						totalFailedOps++
					}
					opMu.Unlock()
				}
				fail := func(format string, a ...any) {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf(format, a...))
					failMu.Unlock()
				}
				for _, op := range plan {
					if stop.Load() {
						return
					}
					p := op.pkg
					dst := filepath.Join(mnt, p.Name)
					switch op.kind {
					case opCpFlat, opCpMulti, opCpLegacy:
						model.set(p, stUnknown, op.kind.String(), trial)
						err := exec.Command("cp", p.Src, dst).Run()
						count(op.kind.String(), err == nil)
						if err == nil {
							model.set(p, stPresent, op.kind.String(), trial)
							mine = append(mine, p)
							acked.Add(1)
						}
					case opPlaceholder:
						// Portage's multi-instance sequence: an O_EXCL
						// placeholder (noclobber), a temp file, a rename onto it.
						model.set(p, stUnknown, op.kind.String(), trial)
						tmp := filepath.Join(filepath.Dir(dst), fmt.Sprintf(".%s.%d", filepath.Base(dst), wr.Int63()))
						err := exec.Command("sh", "-c", `set -C && : > "$1" && cat "$2" > "$3" && mv "$3" "$1"`, "sh", dst, p.Src, tmp).Run()
						count(op.kind.String(), err == nil)
						if err == nil {
							model.set(p, stPresent, op.kind.String(), trial)
							mine = append(mine, p)
							acked.Add(1)
						}
					case opTempRename:
						model.set(p, stUnknown, op.kind.String(), trial)
						tmp := dst + ".partial"
						err := exec.Command("sh", "-c", `cp "$1" "$2" && mv "$2" "$3"`, "sh", p.Src, tmp, dst).Run()
						count(op.kind.String(), err == nil)
						if err == nil {
							model.set(p, stPresent, op.kind.String(), trial)
							mine = append(mine, p)
							acked.Add(1)
						}
					case opUnlink:
						if len(mine) == 0 {
							continue
						}
						j := wr.Intn(len(mine))
						v := mine[j]
						mine = append(mine[:j], mine[j+1:]...)
						model.set(v, stUnknown, "unlink", trial)
						err := exec.Command("rm", filepath.Join(mnt, v.Name)).Run()
						count("unlink", err == nil)
						if err == nil {
							model.set(v, stAbsent, "unlink", trial)
						}
					case opBad:
						out, err := exec.Command("cp", p.Src, dst).CombinedOutput()
						count("bad", err != nil)
						if err == nil {
							fail("bad bytes accepted: cp to %s exited 0 (%s)", p.Name, out)
						}
					case opPartialWrite:
						// An interrupted write: half the bytes, a pause, the rest.
						model.set(p, stUnknown, op.kind.String(), trial)
						half := len(p.Data) / 2
						script := fmt.Sprintf(`{ head -c %d "$2" && sleep 0.0%02d && tail -c +%d "$2"; } > "$1"`, half, wr.Intn(20), half+1)
						err := exec.Command("sh", "-c", script, "sh", dst, p.Src).Run()
						count(op.kind.String(), err == nil)
						if err == nil {
							model.set(p, stPresent, op.kind.String(), trial)
							mine = append(mine, p)
							acked.Add(1)
						}
					}
				}
			}(w, plans[w], rng.Int63())
		}

		delay := time.Duration(rng.Intn(301)) * time.Millisecond
		time.Sleep(delay)
		pid := cur.cmd.Process.Pid
		conn := fuseConnID(mnt)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			// The daemon exited by itself: say how, and what it logged.
			<-cur.done
			t.Errorf("%s: kill -9 %d: %v: the daemon had exited by itself (%v); its log since it started:\n%s",
				label, pid, err, cur.cmd.ProcessState, logSince(logPath, cur.marker))
		}
		stop.Store(true)
		old := cur
		select {
		case <-old.done:
		case <-time.After(3 * time.Second):
			// A killed daemon may not finish exiting: a thread of it can
			// be stuck in the kernel invalidating an entry whose directory
			// a client request holds. Its watchdog must abort the
			// connection, which frees that thread; the restart below
			// would recover it too, but clients would wait until then.
			hung++
			t.Errorf("%s: the killed daemon (pid %d) has not exited 3 s after kill -9: its watchdog did not abort the connection:\n%s",
				label, pid, threadStacks(pid))
		}
		cur = nil
		// Restart through the product: it recovers the dead mount first.
		cur = startCrashDaemon(t, state, mnt, logPath, label+": remount after kill -9")
		select {
		case <-old.done:
		case <-time.After(exitTimeout):
			t.Fatalf("%s: the killed daemon (pid %d) still has not exited after the remount recovered its mount:\n%s",
				label, pid, threadStacks(pid))
		}
		// The new daemon has mounted once its log says so after its marker
		// (the kernel may give the new connection the dead one's number).
		marker := "===== " + label + ": remount after kill -9"
		for deadline := time.Now().Add(mountTimeout); ; {
			b, _ := os.ReadFile(logPath)
			if i := bytes.LastIndex(b, []byte(marker)); i >= 0 && bytes.Contains(b[i:], []byte("msg=mounted")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the remount did not mount within %v (dead connection %s)", label, mountTimeout, conn)
			}
			time.Sleep(10 * time.Millisecond)
		}
		wgDone := make(chan struct{})
		go func() { wg.Wait(); close(wgDone) }()
		select {
		case <-wgDone:
		case <-time.After(toolTimeout):
			t.Fatalf("%s: workload still running %v after the daemon was killed and the mount recovered", label, toolTimeout)
		}
		for _, f := range failures {
			t.Errorf("%s: %s", label, f)
		}
		totalAcked += int(acked.Load())

		if r := runCLI(t, "verify", "--deep", "--state", state); r.Code != 0 || bytes.Contains(r.Stdout, []byte("FAULT")) {
			t.Errorf("%s (killed after %v): `pkgdirfs verify --deep` after kill -9: want exit 0 and no FAULT: %s", label, delay, r)
		}
		totalChecked += checkCrashState(t, mnt, model, fmt.Sprintf("%s (killed after %v)", label, delay))
		os.RemoveAll(srcDir)
	}

	// A clean stop at the end.
	if cur != nil {
		_ = cur.cmd.Process.Signal(syscall.SIGTERM)
		cur.wait(t, "final SIGTERM")
		cur = nil
		if !waitMounted(mnt, false, exitTimeout) {
			t.Errorf("%s still mounted after SIGTERM", mnt)
		}
	}
	if r := runCLI(t, "verify", "--deep", "--state", state); r.Code != 0 {
		t.Errorf("final `pkgdirfs verify --deep`: %s", r)
	} else {
		t.Logf("final verify: %s", strings.TrimSpace(string(r.Stdout[max(0, bytes.LastIndexByte(bytes.TrimRight(r.Stdout, "\n"), '\n')):])))
	}
	present := 0
	for _, e := range model.pkgs {
		if e.State == stPresent {
			present++
		}
	}
	logb, _ := os.ReadFile(logPath)
	checkDaemonLog(t, &mountInfo{Log: logPath, AllowErrors: []string{"the daemon died without unmounting"}})
	aborted := bytes.Count(logb, []byte("the daemon died without unmounting; its FUSE connection is aborted"))
	t.Logf("%d kill -9 trials in %v: %d operations acknowledged, %d present at the end, %d acknowledged-package checks, %d operations failed (mostly cut by the kill), %d killed daemons did not exit within 3 s, %d connections aborted by the watchdog before the restart; ops %v",
		trials, time.Since(start).Round(time.Second), totalAcked, present, totalChecked, totalFailedOps, hung, aborted, opCounts)
}
