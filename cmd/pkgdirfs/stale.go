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

// staleMount finds a pkgdirfs mount at mnt; dev is its "major:minor".
func staleMount(mnt string) (dev string, found bool) {
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
			if x == "-" && i+2 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") && fields[i+2] == "pkgdirfs" {
				dev, found = fields[2], true
			}
		}
	}
	return dev, found
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
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X") {
				return false
			}
		case "ShdPnd", "SigPnd":
			if mask, err := strconv.ParseUint(v, 16, 64); err == nil && mask&(1<<(uint(syscall.SIGKILL)-1)) != 0 {
				return false
			}
		}
	}
	return true
}

// abortConnection fails every request waiting on FUSE connection minor
// (nothing to do if it is gone).
func abortConnection(minor string) error {
	if _, err := os.Stat(filepath.Join(fusectlDir, minor)); err != nil {
		// fusectl is not always mounted; it is where connections are aborted.
		syscall.Mount("fusectl", fusectlDir, "fusectl", 0, "")
		if _, err := os.Stat(filepath.Join(fusectlDir, minor)); err != nil {
			return nil
		}
	}
	return os.WriteFile(filepath.Join(fusectlDir, minor, "abort"), []byte("1"), 0o200)
}

const fusectlDir = "/sys/fs/fuse/connections"

// recoverStaleMount clears a dead daemon's mount at mnt, or says why it won't.
func recoverStaleMount(mnt, state string, log *slog.Logger) error {
	dev, found := staleMount(mnt)
	if !found {
		return nil
	}
	if pid, alive := daemonAlive(state); alive {
		return fmt.Errorf("%s is already mounted by pkgdirfs (pid %d)", mnt, pid)
	} else if pid == 0 {
		return fmt.Errorf("%s is already a pkgdirfs mount, not of state %s (umount it first)", mnt, state)
	}
	minor := dev[strings.IndexByte(dev, ':')+1:]
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
