package main

import (
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A daemon killed with SIGKILL (or the OOM killer) may not finish exiting:
// a thread of it can be stuck in the kernel invalidating a directory entry
// while a client request holds that directory's lock, and that request waits
// for an answer the dead daemon will never send. Its /dev/fuse stays open,
// so the kernel does not abort the connection, and every client touching the
// mount waits, unkillable, until someone aborts it. The watchdog is a small
// process started beside each daemon that does this at once: clients get
// ENOTCONN instead of waiting, and the next `pkgdirfs mount` recovers.

const watchdogPoll = 200 * time.Millisecond

// startWatchdog starts the watchdog of this daemon's mount at mnt. It logs
// to logPath, opened when it has something to say (the file may have been
// rotated by then), or to the daemon's stderr if "".
func startWatchdog(mnt, logPath string, log *slog.Logger) {
	minor, found := mountConnection(mnt)
	if !found {
		log.Warn("no watchdog: the mount is not in /proc/self/mountinfo", "mountpoint", mnt)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		log.Warn("no watchdog", "err", err)
		return
	}
	// The daemon opens the connection's fusectl files while its mount
	// surely holds that connection number: opened by the watchdog, they
	// could belong to the next mount if this one were already gone.
	waiting, abort, err := openConnection(minor)
	if err != nil {
		log.Warn("no watchdog: cannot open the FUSE connection's control files", "connection", minor, "err", err)
		return
	}
	defer waiting.Close()
	defer abort.Close()
	cmd := exec.Command(exe, "watchdog", "--pid", strconv.Itoa(os.Getpid()), "--connection", minor, "--log", logPath, mnt)
	cmd.ExtraFiles = []*os.File{waiting, abort} // fds 3 and 4
	if logPath == "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	// Its own process group: a Ctrl-C meant for a foreground daemon must
	// not stop the watchdog before the daemon has unmounted.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Warn("no watchdog", "err", err)
		return
	}
	go cmd.Wait()
}

func cmdWatchdog(args []string) int {
	fl := newFlags("watchdog")
	pid := fl.Int("pid", 0, "the daemon's process id, `PID`")
	conn := fl.String("connection", "", "the mount's FUSE connection `N` (its device minor)")
	logPath := fl.String("log", "", "the daemon's log `FILE` (default: stderr)")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if *pid <= 0 || *conn == "" || len(ops) != 1 {
		return usageError(fl, "need --pid, --connection and one MOUNTPOINT")
	}
	mnt := ops[0]
	log := appendLogger(*logPath)
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	// The connection's fusectl files, opened by the daemon (fds 3 and 4):
	// they stay bound to its connection, while its number may belong to
	// the next mount by the time the daemon dies.
	waiting, abort := os.NewFile(3, "waiting"), os.NewFile(4, "abort")
	if _, err := abort.Stat(); err != nil {
		log.Error("watchdog: started without the FUSE connection's control files (fds 3 and 4); if the daemon dies, clients may wait until `pkgdirfs mount` runs again",
			"mountpoint", mnt, "connection", *conn, "err", err)
		return 1
	}
	for procRunning(*pid) {
		time.Sleep(watchdogPoll)
	}
	// A clean stop unmounts first, and then the connection is gone: its
	// files read as empty. (They cannot be seeked: one read, not pread.)
	var buf [32]byte
	if n, _ := waiting.Read(buf[:]); n == 0 {
		return 0
	}
	if _, err := abort.Write([]byte("1")); err != nil {
		log.Error("the daemon died; aborting its FUSE connection failed, clients may wait until `pkgdirfs mount` runs again",
			"pid", *pid, "mountpoint", mnt, "connection", *conn, "err", err)
		return 1
	}
	log.Error("the daemon died without unmounting; its FUSE connection is aborted, so clients get ENOTCONN until `pkgdirfs mount` runs again",
		"pid", *pid, "state", procStateLine(*pid), "mountpoint", mnt, "connection", *conn)
	return 0
}

// openConnection opens the "waiting" and "abort" files of a FUSE connection.
func openConnection(minor string) (waiting, abort *os.File, err error) {
	dir, _ := connectionDir(minor)
	if waiting, err = os.Open(filepath.Join(dir, "waiting")); err != nil {
		return nil, nil, err
	}
	if abort, err = os.OpenFile(filepath.Join(dir, "abort"), os.O_WRONLY, 0); err != nil {
		waiting.Close()
		return nil, nil, err
	}
	return waiting, abort, nil
}

// procStateLine is the State line of pid's status, for the log.
func procStateLine(pid int) string {
	st := procStatus(pid)
	if st == nil {
		return "exited"
	}
	if v, ok := st["State"]; ok {
		return v
	}
	return "unknown"
}
