package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	rtdebug "runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/catalog"
	pfs "pkgdirfs/fs"
	"pkgdirfs/tree"
)

// readyFdEnv tells a daemonized child which fd reports "mounted" to its parent.
const readyFdEnv = "PKGDIRFS_READY_FD"

func cmdMount(args []string) int {
	fl := newFlags("mount")
	state := stateFlag(fl)
	layouts := fl.String("layouts", "all", "layouts to show: all, or a comma list of multi, flat, legacy")
	readOnly := fl.Bool("read-only", false, "refuse every write with EROFS; access(W_OK) is false, so Portage does not try")
	allowOther := fl.Bool("allow-other", false, "let other users (e.g. nginx's) access the mount")
	stamp := fl.Bool("stamp-build-id", false, "write the assigned BUILD_ID into new xpak packages that carry none (changes their bytes and digests)")
	xattrs := fl.Bool("xattrs", false, "answer xattr requests: refused files carry user.pkgdirfs.error (costs ls -l two round trips per file)")
	var fg bool
	fl.BoolVar(&fg, "f", false, "stay in the foreground, logging to stderr")
	fl.BoolVar(&fg, "foreground", false, "same as -f")
	logFile := fl.String("log", "", "log file of the daemon (default STATE/pkgdirfs.log; -f logs to stderr)")
	grace := fl.Duration("removed-grace", 15*time.Minute, "how long a removed package stays downloadable at "+pfs.RemovedDir+"/PATH for binhost clients holding the previous index (0: not at all)")
	debug := fl.Bool("debug", false, "log every FUSE request (very verbose)")
	initState := fl.Bool("init", false, "create STATE if it does not exist yet: a new, empty PKGDIR (else STATE must hold a catalog, made by pkgdirfs import)")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) != 1 {
		fmt.Fprintln(os.Stderr, "pkgdirfs mount: need exactly one MOUNTPOINT")
		fl.Usage()
		return 2
	}
	lay, err := tree.ParseLayouts(*layouts)
	if err != nil {
		return fail("mount: %v", err)
	}
	mnt, err := filepath.Abs(ops[0])
	if err != nil {
		return fail("mount: %v", err)
	}
	// A dead daemon's mount is recovered before anything looks at the
	// mountpoint: a stat of a wedged mount would block for ever.
	if os.Getenv(readyFdEnv) == "" {
		if err := recoverStaleMount(mnt, *state, newLogger(os.Stderr)); err != nil {
			return fail("mount: %v", err)
		}
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		return fail("mount: mountpoint %s is not a directory", mnt)
	}
	// A mistyped --state must not mount an empty PKGDIR over the real one.
	if !*initState {
		if why := notAState(*state); why != "" {
			return fail("mount: %s is not a pkgdirfs state (%s): make one with `pkgdirfs import --state %s PKGDIR`, or pass --init to mount a new, empty PKGDIR (if it held packages: `pkgdirfs import --rebuild --state %s` rebuilds its catalog from its blobs)", *state, why, *state, *state)
		}
	}
	if *logFile == "" {
		*logFile = filepath.Join(*state, "pkgdirfs.log")
	}
	if !fg && os.Getenv(readyFdEnv) == "" {
		return daemonize(*state, *logFile)
	}

	var logw io.Writer = os.Stderr
	ready := readyPipe()
	if ready != nil {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(ready, "cannot open log %s: %v\n", *logFile, err)
			return 1
		}
		logw = f
		// Anything on the standard logger, and a crash (a Go panic) on
		// fd 2, goes into the log, not /dev/null.
		stdlog.SetOutput(f)
		unix.Dup2(int(f.Fd()), 2)
	}
	log := newLogger(logw)
	failReady := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		log.Error("mount failed", "err", msg)
		if ready != nil {
			fmt.Fprintln(ready, msg)
			ready.Close()
		}
		return fail("mount: %s", msg)
	}

	// Before the mount exists: a signal that arrives as soon as it is ready must
	// unmount, not kill the daemon and leave a dead mount behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			logStats(log)
		}
	}()

	// One daemon per state: its staging files are its own.
	lk, err := lockState(*state, fmt.Sprintf("pid %d, mounted at %s", os.Getpid(), mnt))
	if err != nil {
		return failReady("state %s: %v", *state, err)
	}
	defer lk.Release()
	store, err := catalog.OpenStoreLocked(*state, log, lk)
	if err != nil {
		return failReady("%v", err)
	}
	defer store.Close()
	if why := lostCatalog(store); why != "" {
		return failReady("%s", why)
	}
	store.StampBuildID = *stamp
	// The daemon's heap is mostly the tree, which lives as long as the
	// mount: collecting at half the live heap instead of all of it keeps
	// the resident size near what the tree needs (about 1.5x, not 2x).
	rtdebug.SetGCPercent(50)
	fsys, err := pfs.New(background(), pfs.Config{
		Store:   store,
		Layouts: lay, ReadOnly: *readOnly, AllowOther: *allowOther, XAttrs: *xattrs, RemovedGrace: *grace, Debug: *debug, Log: log,
	})
	if err != nil {
		return failReady("%v", err)
	}
	// The pid file exists before the mount does: whenever a mount of this
	// state is found, a restart can tell whether its daemon still runs.
	if err := os.WriteFile(pidFile(*state), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		log.Warn("writing the pid file", "err", err)
	}
	defer os.Remove(pidFile(*state))
	if err := fsys.Mount(mnt); err != nil {
		return failReady("%v", err)
	}
	log.Info("mounted", "mountpoint", mnt, "state", *state, "layouts", lay.String())
	// Before reporting ready: the mount is watched from the moment
	// `pkgdirfs mount` returns (and no half-started child looks like a
	// second daemon then).
	startWatchdog(mnt, logw, log)
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}

	go func() {
		s := <-sig
		log.Info("unmounting", "signal", s.String())
		if err := fsys.Unmount(); err != nil {
			log.Error("unmount", "err", err)
		}
	}()
	fsys.Wait()
	log.Info("unmounted", "mountpoint", mnt)
	return 0
}

func readyPipe() *os.File {
	v := os.Getenv(readyFdEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyFdEnv)
	var fd uintptr
	if _, err := fmt.Sscan(v, &fd); err != nil {
		return nil
	}
	return os.NewFile(fd, "ready")
}

// daemonize starts this command again in the background and returns once that
// child reports the mount is ready (or why it failed), like sshfs.
func daemonize(state, logFile string) int {
	if err := os.MkdirAll(state, 0o755); err != nil {
		return fail("mount: state directory: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("mount: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail("mount: %v", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyFdEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail("mount: %v", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		cmd.Process.Release()
		return 0
	}
	cmd.Wait()
	if line == "" {
		line = "the daemon exited before mounting; see " + logFile
	}
	return fail("mount: %s", line)
}

// notAState says why dir is not a state made by import or mount --init ("" if it is).
func notAState(dir string) string {
	st, err := os.Stat(filepath.Join(dir, "catalog.db"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return "no such directory"
		}
		return "no catalog.db in it"
	case err != nil:
		return err.Error()
	case st.Size() == 0:
		return "its catalog.db is empty (0 bytes)"
	}
	return ""
}

// lostCatalog says why a catalog listing nothing must not be mounted: its
// state's blobs hold packages, so the catalog was lost or replaced.
func lostCatalog(store *catalog.Store) string {
	// One probe, not a count: a mount of a million instances starts now.
	if empty, err := store.DB.Empty(background()); err != nil || !empty {
		return ""
	}
	blobs := 0
	filepath.WalkDir(store.BlobDir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			blobs++
			return filepath.SkipAll
		}
		return nil
	})
	if blobs == 0 {
		return ""
	}
	return fmt.Sprintf("catalog %s lists no packages, but %s holds package files: the catalog was lost or replaced; rebuild it with `pkgdirfs import --rebuild --state %s` (mounting it would show an empty PKGDIR)",
		store.DB.Path(), store.BlobDir(), store.Dir)
}

// lockState takes the state's lock, waiting a moment for a command that
// holds it briefly (import, index and verify take it to recover staging
// files when no daemon runs).
func lockState(dir, owner string) (*catalog.StateLock, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		lk, err := catalog.LockState(dir, owner)
		if err == nil || !errors.Is(err, catalog.ErrStateLocked) || time.Now().After(deadline) {
			return lk, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logStats answers SIGUSR1 with one line of the daemon's vital signs, for
// operators and soak runs: what must stay flat over days of uploads.
func logStats(log *slog.Logger) {
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	rss := int64(-1)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	log.Info("stats", "goroutines", runtime.NumGoroutine(), "fds", fds, "rss_kib", rss,
		"heap_inuse_kib", ms.HeapInuse>>10, "gc_cycles", ms.NumGC)
}
