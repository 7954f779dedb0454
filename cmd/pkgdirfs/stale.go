package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A daemon killed with SIGKILL leaves its mount behind, and clients blocked
// on it may hold the kernel in a state where even the dead daemon cannot
// finish exiting (a thread waits on a directory lock a stuck client holds).
// Mounting again recovers: the stale FUSE connection is aborted, which fails
// every waiting request, and the mount is detached.

func pidFile(state string) string { return filepath.Join(state, "pkgdirfs.pid") }

// fuseType is our mounts' type in mountinfo (go-fuse mounts "fuse." + Name);
// their source is the state directory (older daemons: "pkgdirfs").
const fuseType = "fuse.pkgdirfs"

// mountConnection finds a pkgdirfs mount at mnt; conn is its FUSE
// connection (the minor of its device number, its name under fusectl).
func mountConnection(mnt string) (conn string, found bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != mnt {
			continue
		}
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && fields[i+1] == fuseType {
				_, conn, _ = strings.Cut(fields[2], ":")
				found = true
			}
		}
	}
	return conn, found
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

// daemonAlive tells whether the daemon recorded in the state's pid file runs.
func daemonAlive(state string) (int, bool) {
	b, err := os.ReadFile(pidFile(state))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, procRunning(pid)
}

// procRunning tells whether pid runs. A process that is exiting does not
// count: a zombie, or one with SIGKILL pending (a thread stuck in the kernel
// keeps a killed daemon from finishing).
func procRunning(pid int) bool {
	st := procStatus(pid)
	if st == nil || strings.HasPrefix(st["State"], "Z") || strings.HasPrefix(st["State"], "X") {
		return false
	}
	for _, k := range []string{"ShdPnd", "SigPnd"} {
		if mask, err := strconv.ParseUint(st[k], 16, 64); err == nil && mask&(1<<(uint(syscall.SIGKILL)-1)) != 0 {
			return false
		}
	}
	return true
}

// procStatus is /proc/PID/status as key → value; nil if pid is gone.
func procStatus(pid int) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st
}

// abortConnection fails every request waiting on FUSE connection minor
// (nothing to do if it is gone).
func abortConnection(minor string) error {
	dir, ok := connectionDir(minor)
	if !ok {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "abort"), []byte("1"), 0o200)
}

// connectionDir is the fusectl directory of a FUSE connection, mounting
// fusectl if needed; false if the connection is gone.
func connectionDir(minor string) (string, bool) {
	const fusectl = "/sys/fs/fuse/connections"
	dir := filepath.Join(fusectl, minor)
	if _, err := os.Stat(dir); err != nil {
		syscall.Mount("fusectl", fusectl, "fusectl", 0, "")
		if _, err := os.Stat(dir); err != nil {
			return dir, false
		}
	}
	return dir, true
}

// recoverStaleMount clears a dead daemon's mount at mnt, or says why it won't.
func recoverStaleMount(mnt, state string, log *slog.Logger) error {
	minor, found := mountConnection(mnt)
	if !found {
		return nil
	}
	if pid, alive := daemonAlive(state); alive {
		return fmt.Errorf("%s is already mounted by pkgdirfs (pid %d)", mnt, pid)
	} else if pid == 0 {
		return fmt.Errorf("%s is already a pkgdirfs mount, not of state %s (umount it first)", mnt, state)
	}
	if err := abortConnection(minor); err != nil {
		log.Warn("could not abort the dead mount's FUSE connection", "mountpoint", mnt, "err", err)
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the dead mount at %s: %v", mnt, err)
	}
	log.Warn("recovered the mount of a daemon that died", "mountpoint", mnt, "connection", minor)
	os.Remove(pidFile(state))
	return nil
}
