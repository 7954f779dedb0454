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

	"pkgdirfs/blobs"
	"pkgdirfs/catalog"
	pfs "pkgdirfs/fs"
	"pkgdirfs/tree"
)

// readyFdEnv tells a daemonized child which fd reports "mounted" to its parent.
const readyFdEnv = "PKGDIRFS_READY_FD"

func cmdMount(args []string) int {
	fl := newFlags("mount")
	state := stateFlag(fl)
	layouts := fl.String("layouts", "all", "`LAYOUTS` to show: all, or a comma list of multi, flat, legacy")
	readOnly := fl.Bool("read-only", false, "refuse every write with EROFS; access(W_OK) is false, so Portage does not try")
	allowOther := fl.Bool("allow-other", false, "let other users (e.g. nginx's) access the mount")
	stamp := fl.Bool("stamp-build-id", false, "write the assigned BUILD_ID into new xpak packages that carry none (changes their bytes and digests)")
	xattrs := fl.Bool("xattrs", false, "answer xattr requests: refused files carry user.pkgdirfs.error (costs ls -l two round trips per file)")
	var fg bool
	fl.BoolVarP(&fg, "foreground", "f", false, "stay in the foreground, logging to stderr")
	logFile := fl.String("log", "", "log `FILE` of the daemon (default STATE/pkgdirfs.log; -f logs to stderr)")
	grace := fl.Duration("removed-grace", 15*time.Minute, "how long (a `DURATION`) a removed package stays downloadable at "+pfs.RemovedDir+"/PATH for binhost clients holding the previous index (0: not at all)")
	debug := fl.Bool("debug", false, "log every FUSE request (very verbose)")
	level := fl.String("log-level", "info", "least severe log lines written, a `LEVEL`: debug, info, warn or error")
	initState := fl.Bool("init", false, "create STATE if it does not exist yet: a new, empty PKGDIR (else STATE must hold a catalog, made by pkgdirfs import)")
	keep := fl.Int("keep", 0, "at every commit, remove all but the `N` newest builds of the CPV committed (as pkgdirfs prune --keep N; 0: keep all)")
	perUse := fl.Bool("per-use", false, "with --keep: the N newest of each distinct USE set of the CPV")
	hideExisting := fl.Bool("hide-existing", false, "mount even when the catalog is empty and MOUNTPOINT holds package files, which the mount then hides (without it such a mount is refused: import them first)")
	otherPKGDIR := fl.Bool("other-pkgdir", false, "mount even when MOUNTPOINT is a PKGDIR other than the one STATE serves (STATE's packages and refused files then show there, over its own files), and serve it there from now on")
	channel := fl.String("channel", "", "serve channel `NAME` as the whole mount (a front-end for one fleet; needs --read-only)")
	signing := addSigningFlags(fl)
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if u := signing.usage(); u != "" {
		return usageError(fl, "%s", u)
	}
	if len(ops) != 1 {
		return usageError(fl, "need exactly one MOUNTPOINT, got %d operands", len(ops))
	}
	if *channel != "" && !*readOnly {
		return usageError(fl, "--channel serves a channel, which only `pkgdirfs channel` changes: add --read-only")
	}
	if *keep < 0 || (*perUse && *keep == 0) {
		return fail("mount: --keep %d --per-use=%v: want --keep N >= 1 (--per-use needs it)", *keep, *perUse)
	}
	lay, err := tree.ParseLayouts(*layouts)
	if err != nil {
		return fail("mount: %v", err)
	}
	if err := setLogLevel(*level); err != nil {
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
	if st, err := os.Stat(mnt); err != nil {
		return fail("mount: mountpoint: %v", unwrapPath(err))
	} else if !st.IsDir() {
		return fail("mount: mountpoint %s is not a directory", mnt)
	}
	// A mistyped --state must not mount an empty PKGDIR over the real one.
	if !*initState {
		if why := notAState(location(*state)); why != "" {
			return fail("mount: %s is not a pkgdirfs state (%s): make one with `pkgdirfs import --state %s PKGDIR`, or pass --init to mount a new, empty PKGDIR (if it held packages: `pkgdirfs import --rebuild --state %s` rebuilds its catalog from its blobs)", *state, why, *state, *state)
		}
	}
	if *logFile == "" {
		*logFile = filepath.Join(*state, "pkgdirfs.log")
		if *readOnly {
			// A follower's: the writing daemon's log is its own.
			*logFile = filepath.Join(*state, "pkgdirfs-ro.log")
		}
	}
	// SIGHUP reopens it by name, whatever the working directory then.
	*logFile = absPath(*logFile)
	if !fg && os.Getenv(readyFdEnv) == "" {
		return daemonize(*state, *logFile)
	}

	notify := notifySocket()
	ready := readyPipe()
	// One daemon per state: its staging files are its own. Taken before
	// the log is opened: a mount refused because the state is in use must
	// not write into the log of the daemon holding it.
	// A read-only mount is a follower: it writes nothing into the state,
	// so it takes no lock and mounts beside the writing daemon (any
	// number of them), following its changes like any reader.
	var lk *catalog.StateLock
	if !*readOnly {
		lk, err = lockState(*state, fmt.Sprintf("pid %d, mounted at %s", os.Getpid(), mnt))
		if err != nil {
			msg := fmt.Sprintf("state %s: %v", *state, err)
			if ready != nil {
				fmt.Fprintln(ready, msg)
				ready.Close()
			}
			return fail("mount: %s", msg)
		}
		defer lk.Release()
	}
	logPath := "" // the file SIGHUP reopens; "" with -f, which logs to stderr
	if ready != nil {
		// Anything on the standard logger, and a crash (a Go panic) on
		// fd 2, goes into the log, not /dev/null.
		if err := logToFile(*logFile); err != nil {
			fmt.Fprintf(ready, "cannot open log %s: %v\n", *logFile, err)
			return 1
		}
		logPath = *logFile
		stdlog.SetOutput(os.Stderr)
	}
	var logw io.Writer = os.Stderr
	log := newLogger(logw)
	failReady := func(format string, a ...any) int {
		// One line: the parent reads one from the ready pipe.
		msg := strings.ReplaceAll(strings.TrimSpace(fmt.Sprintf(format, a...)), "\n", "; ")
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
	reopenLogOnHUP(logPath, log)
	var statsStore *catalog.Store // set once open
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	statsReady := make(chan struct{})
	go func() {
		for range usr1 {
			select {
			case <-statsReady:
				logStats(log, statsStore)
			default:
				logStats(log, nil)
			}
		}
	}()

	var store *catalog.Store
	switch {
	case *readOnly && location(*state).Shared():
		// A front-end of a shared catalog refuses writes, but stores the
		// TIMESTAMP it is the first to serve, as every host does: all of
		// them serve one generation with the same bytes.
		store, err = catalog.OpenStoreAt(location(*state), log)
	case *readOnly:
		store, err = catalog.OpenStoreReadOnly(location(*state), log)
	default:
		store, err = catalog.OpenStoreLocked(location(*state), log, lk)
	}
	if err != nil {
		return failReady("%v", err)
	}
	defer store.Close()
	if why := lostCatalog(store); why != "" {
		return failReady("%s", why)
	}
	if !*hideExisting {
		if why := hidesPackages(store, mnt); why != "" {
			return failReady("%s", why)
		}
	}
	// A state serves one PKGDIR; over another it would mix the two.
	served, here := servedPKGDIR(*state), realDir(mnt)
	if served != "" && served != here && !*otherPKGDIR && (isPKGDIR(mnt) || pkgdirsIn(mnt) != nil) {
		return failReady("state %s serves the PKGDIR %s, and %s is another PKGDIR: mounted over it, the state would show the packages and refused files of %s there, and hide its own. "+
			"Give %s a state of its own (`make mount PKGDIR=%s STATE=...`), or pass --other-pkgdir to serve %s there from now on",
			store.Dir, served, mnt, served, mnt, mnt, store.Dir)
	}
	inc, err := nextIncarnation(*state)
	if err != nil {
		log.Warn("cannot count the mounts of the state; this mount's inode numbers come from the clock", "file", filepath.Join(*state, mountsFile), "err", err)
	}
	store.StampBuildID = *stamp
	var what []any
	if store.Signing, what, err = signing.signing(background()); err != nil {
		return failReady("%v", err)
	}
	if len(what) > 0 {
		log.Info("signatures", what...)
	}
	store.SetKeepPolicy(catalog.PrunePolicy{Keep: *keep, PerUse: *perUse})
	statsStore = store
	close(statsReady)
	// The daemon's heap is mostly the tree, which lives as long as the
	// mount: collecting at half the live heap instead of all of it keeps
	// the resident size near what the tree needs (about 1.5x, not 2x).
	rtdebug.SetGCPercent(50)
	// A measurement knob, not an option (docs/performance.md, "No-open
	// followers"): a follower that answers OPEN with ENOSYS.
	noOpen := os.Getenv("PKGDIRFS_NO_OPEN") == "1"
	switch {
	case noOpen && !*readOnly:
		log.Warn("PKGDIRFS_NO_OPEN=1 ignored: it applies to read-only mounts only")
		noOpen = false
	case noOpen:
		log.Info("no-open mode (PKGDIRFS_NO_OPEN=1): opens skip the daemon, no passthrough")
	}
	fsys, err := pfs.New(background(), pfs.Config{
		Store: store,
		// df and findmnt tell mounts apart by their source: the state.
		FsName:  absPath(*state),
		Layouts: lay, ReadOnly: *readOnly, AllowOther: *allowOther, XAttrs: *xattrs, RemovedGrace: *grace, Debug: *debug, Log: log,
		Incarnation: inc, NoOpen: noOpen, Channel: *channel, CompileChannel: compileChannel,
	})
	if err != nil {
		return failReady("%v", err)
	}
	// The pid file exists before the mount does: whenever a mount of this
	// state is found, a restart can tell whether its daemon still runs.
	// A follower has none: the pid file names the writing daemon.
	if !*readOnly {
		if err := os.WriteFile(pidFile(*state), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			log.Warn("writing the pid file", "err", err)
		}
		defer os.Remove(pidFile(*state))
	}
	if err := fsys.Mount(mnt); err != nil {
		return failReady("%s%s", strings.TrimSpace(err.Error()), mountHint(mnt, *allowOther, *logFile, ready != nil))
	}
	log.Info("mounted", "mountpoint", mnt, "state", *state, "layouts", lay.String())
	if !*readOnly && (served == "" || (*otherPKGDIR && served != here)) {
		if err := recordServed(*state, here); err != nil {
			log.Warn("cannot record which PKGDIR the state serves", "file", filepath.Join(*state, servedFile), "err", err)
		}
	}
	// Before reporting ready: the mount is watched from the moment
	// `pkgdirfs mount` returns (and no half-started child looks like a
	// second daemon then).
	startWatchdog(mnt, logPath, log)
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	if err := sdNotify(notify, "READY=1\nSTATUS=serving "+mnt); err != nil {
		log.Warn("cannot notify systemd of readiness", "socket", notify, "err", err)
	}

	go func() {
		s := <-sig
		sdNotify(notify, "STOPPING=1")
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
	// Under a Type=notify unit without -f, this process is the one systemd
	// watches: it reports the child as the main process once it is ready.
	notify := notifySocket()
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
		sdNotify(notify, fmt.Sprintf("MAINPID=%d\nREADY=1", cmd.Process.Pid))
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
func notAState(loc catalog.Location) string { return catalog.Present(loc) }

// hidesPackages says why an empty catalog must not be mounted over mnt: mnt
// holds package files, which the mount would hide (a new state mounted over
// a PKGDIR nobody imported), or PKGDIRs. One probe of the catalog, and walks
// that stop at the first package file, at most three levels deep.
func hidesPackages(store *catalog.Store, mnt string) string {
	if empty, err := store.DB.Empty(background()); err != nil || !empty {
		return ""
	}
	if below := pkgdirsIn(mnt); len(below) > 0 {
		return fmt.Sprintf("%s. Mounted over %s, the empty catalog of %s would hide them (--hide-existing mounts it anyway)",
			pkgdirsHint(mnt, below, store.Dir), mnt, store.Dir)
	}
	found := firstPackage(mnt)
	if found == "" {
		return ""
	}
	return fmt.Sprintf("%s holds package files (%s, ...) but the catalog of %s is empty: the mount would hide them. "+
		"Import them first (`pkgdirfs import --state %s %s`, or `make mount PKGDIR=%s`), or pass --hide-existing to mount an empty PKGDIR over them",
		mnt, found, store.Dir, store.Dir, mnt, mnt)
}

// lostCatalog says why a catalog listing nothing must not be mounted: its
// state's blobs hold packages, so the catalog was lost or replaced.
func lostCatalog(store *catalog.Store) string {
	// One probe, not a count: a mount of a million instances starts now.
	if empty, err := store.DB.Empty(background()); err != nil || !empty {
		return ""
	}
	if store.OtherWriterLive() {
		// A first import places blobs before its first batch commits.
		return ""
	}
	found := 0
	filepath.WalkDir(store.BlobDir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != store.BlobDir() && blobs.NotBlobs(d.Name()) {
			return filepath.SkipDir // an index cache is no package
		}
		if err == nil && d.Type().IsRegular() {
			found++
			return filepath.SkipAll
		}
		return nil
	})
	if found == 0 {
		return ""
	}
	return fmt.Sprintf("the catalog of %s lists no packages, but %s holds package files: the catalog was lost or replaced; rebuild it with `pkgdirfs import --rebuild --state %s` (mounting it would show an empty PKGDIR)",
		store.Dir, store.BlobDir(), store.Dir)
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
// operators and soak runs: what must stay flat over days of uploads, and
// what the catalog holds (store nil: not open yet).
func logStats(log *slog.Logger, store *catalog.Store) {
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
	attrs := []any{"goroutines", runtime.NumGoroutine(), "fds", fds, "rss_kib", rss,
		"heap_inuse_kib", ms.HeapInuse >> 10, "gc_cycles", ms.NumGC}
	if store != nil {
		if h, err := countHandles(os.Getpid(), store.Dir); err == nil {
			attrs = append(attrs, "open_reading", h.Reading, "open_writing", h.Writing, "open_other", h.Other)
		}
		if cs, err := readCatalogStatus(store.DB); err != nil {
			attrs = append(attrs, "catalog_err", err)
		} else {
			attrs = append(attrs, "generation", cs.Generation, "instances", cs.Instances, "placeholders", cs.Placeholders,
				"index_timestamp", cs.IndexTimestamp, "last_commit", cs.LastWrite.UTC().Format(time.RFC3339))
		}
	}
	log.Info("stats", attrs...)
}

// unwrapPath turns a *PathError into "PATH: reason" without the operation
// ("stat"), which says nothing to the user.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// mountHint says what to do when the kernel or fusermount3 refused the
// mount, which go-fuse reports only as fusermount's exit status.
func mountHint(mnt string, allowOther bool, logFile string, daemon bool) string {
	if os.Geteuid() == 0 {
		return ""
	}
	said := ""
	if daemon { // fusermount3 wrote its reason to our stderr: the log
		if l := lastLineWith(logFile, "fusermount"); l != "" {
			said = " (" + l + ")"
		}
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return " — fusermount3 is not installed: install fuse3 (Debian/Ubuntu: fuse3; Gentoo: sys-fs/fuse:3), or run as root"
	}
	if unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) != nil {
		return " — you may not open /dev/fuse" + said + ": run as root, or give your user access to /dev/fuse (mode 0666, or its group)"
	}
	if allowOther && !userAllowOther() {
		return " — --allow-other as a user needs user_allow_other in /etc/fuse.conf" + said + ": enable it there, or run as root"
	}
	if unix.Access(mnt, unix.W_OK) != nil {
		return fmt.Sprintf(" — you may not write to %s, and fusermount3 mounts only there%s: run as root, or mount on a directory you own", mnt, said)
	}
	if said == "" {
		said = " (its message is above)"
	}
	return " — fusermount3 could not mount" + said + ": run as root, or see fusermount3(1)"
}

// lastLineWith is the last line of the end of file that holds sub and is
// not one of our own log lines.
func lastLineWith(file, sub string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4096 {
		f.Seek(st.Size()-4096, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "time=") {
			last = strings.TrimSpace(l)
		}
	}
	return last
}

// userAllowOther tells whether /etc/fuse.conf enables user_allow_other.
func userAllowOther() bool {
	b, err := os.ReadFile("/etc/fuse.conf")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "user_allow_other" {
			return true
		}
	}
	return false
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
