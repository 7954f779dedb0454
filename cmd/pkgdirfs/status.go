package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pkgdirfs/catalog"
)

// catalogStatus is what the catalog says about a state.
type catalogStatus struct {
	Generation     int64
	Instances      int64
	Placeholders   int64
	Bytes          int64
	IndexTimestamp int64
	// LastWrite is when the catalog was last written (catalog.DB.LastWrite);
	// zero if unknown.
	LastWrite time.Time
}

func readCatalogStatus(db *catalog.DB) (catalogStatus, error) {
	var s catalogStatus
	ctx := background()
	var err error
	if s.Generation, err = db.Generation(ctx); err != nil {
		return s, err
	}
	if s.Instances, s.Placeholders, s.Bytes, err = db.Stats(ctx); err != nil {
		return s, err
	}
	if s.IndexTimestamp, err = db.LastTimestamp(ctx); err != nil {
		return s, err
	}
	// Informational: a time that cannot be read leaves the line out.
	s.LastWrite, _ = db.LastWrite()
	return s, nil
}

// handleCounts counts a daemon's open files in the state: packages being
// read (blobs/: a handle keeps its blob open until release, passthrough or
// not), packages being written (staging/) and other files (scratch/).
type handleCounts struct{ Reading, Writing, Other, FDs int }

func countHandles(pid int, state string) (handleCounts, error) {
	var h handleCounts
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return h, err
	}
	abs, _ := filepath.Abs(state)
	h.FDs = len(ents)
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, abs+"/blobs/"):
			h.Reading++
		case strings.HasPrefix(target, abs+"/staging/"):
			h.Writing++
		case strings.HasPrefix(target, abs+"/scratch/"):
			h.Other++
		}
	}
	return h, nil
}

func rssKiB(pid int) int64 {
	if v, ok := procStatus(pid)["VmRSS"]; ok {
		n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		return n
	}
	return -1
}

// mountsOfState finds the mountpoints of pkgdirfs mounts of state: the
// mount's source (its FUSE fsname) is the state directory.
func mountsOfState(state string) []string {
	abs, _ := filepath.Abs(state)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+2 < len(fields) && fields[i+1] == fuseType && unescapeMount(fields[i+2]) == abs {
				out = append(out, unescapeMount(fields[4]))
			}
		}
	}
	return out
}

// mountStateAt is the state of the pkgdirfs mount holding path (absolute,
// without symlinks): the innermost mount whose mountpoint is path or above
// it is that mount, and its source is its state. False if that innermost
// mount is not ours.
func mountStateAt(path string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	best, state, ours := "", "", false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if path != mp && !strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
			continue
		}
		// Longer is deeper; of equal ones the later is mounted on top.
		if len(mp) < len(best) {
			continue
		}
		best, ours = mp, false
		for i, x := range fields {
			if x == "-" && i+2 < len(fields) {
				state = unescapeMount(fields[i+2])
				// Older daemons' source was "pkgdirfs", not their state.
				ours = fields[i+1] == fuseType && filepath.IsAbs(state)
			}
		}
	}
	return state, ours
}

// stateAt is the state status reports for PATH: that of the pkgdirfs
// mount holding it, or PATH itself if it is a state.
func stateAt(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	// mountinfo names real paths, not symlinks to them.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if s, ok := mountStateAt(abs); ok {
		return s, nil
	}
	if catalog.StatePresent(abs) == "" {
		return abs, nil
	}
	if _, err := os.Stat(abs); err != nil {
		return "", unwrapPath(err)
	}
	return "", fmt.Errorf("%s is neither in a pkgdirfs mount nor a pkgdirfs state", path)
}

func cmdStatus(args []string) int {
	fl := newFlags("status")
	state := stateFlag(fl)
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	switch {
	case len(ops) > 1:
		return usageError(fl, "unexpected argument %q (status takes one PATH: a mount, a path inside one, or a state)", ops[1])
	case len(ops) == 1:
		s, err := stateAt(ops[0])
		if err != nil {
			return fail("status: %v", err)
		}
		*state = s
	case !fl.Changed("state"):
		// Where the admin stands says which binhost is meant, more
		// than the default or $PKGDIRFS_STATE does.
		if wd, err := syscall.Getwd(); err == nil {
			if s, ok := mountStateAt(wd); ok {
				*state = s
			}
		}
	}
	if why := notAState(location(*state)); why != "" {
		return fail("status: %s is not a pkgdirfs state (%s)", *state, why)
	}
	db, err := catalog.OpenReadOnly(location(*state))
	if err != nil {
		return fail("status: %v", err)
	}
	defer db.Close()
	cs, err := readCatalogStatus(db)
	if err != nil {
		return fail("status: %v", err)
	}
	abs, _ := filepath.Abs(*state)
	fmt.Printf("state:        %s\n", abs)
	if p := servedPKGDIR(*state); p != "" {
		fmt.Printf("serves:       %s\n", p)
	}
	pid, alive := daemonAlive(*state)
	mounts := mountsOfState(*state)
	switch {
	case alive:
		fmt.Printf("daemon:       running, pid %d\n", pid)
	case pid != 0:
		fmt.Printf("daemon:       not running (pid file names pid %d, which is gone)\n", pid)
	default:
		fmt.Printf("daemon:       not running\n")
	}
	for _, m := range mounts {
		fmt.Printf("mounted at:   %s\n", m)
	}
	fmt.Printf("generation:   %d\n", cs.Generation)
	fmt.Printf("instances:    %d (%s), placeholders %d\n", cs.Instances, bytesText(cs.Bytes), cs.Placeholders)
	if cs.IndexTimestamp > 0 {
		fmt.Printf("index:        TIMESTAMP %d (%s)\n", cs.IndexTimestamp, time.Unix(cs.IndexTimestamp, 0).UTC().Format(time.RFC3339))
	}
	if !cs.LastWrite.IsZero() {
		fmt.Printf("last commit:  %s\n", cs.LastWrite.UTC().Format(time.RFC3339))
	}
	if snaps, err := db.Snapshots(background()); err == nil && len(snaps) > 0 {
		fmt.Printf("snapshots:    %d\n", len(snaps))
	}
	if chans, err := db.Channels(background()); err == nil && len(chans) > 0 {
		var parts []string
		for _, c := range chans {
			what := "live"
			if !c.Live() {
				what = "snapshot " + c.Snapshot
			}
			parts = append(parts, c.Name+" ("+what+")")
		}
		fmt.Printf("channels:     %s\n", strings.Join(parts, ", "))
	}
	if ss, err := db.SessionStatus(background()); err != nil {
		fmt.Printf("writers:      unknown (%v)\n", err)
	} else if ss != nil {
		fmt.Printf("writers:      %s\n", sessionsText(ss))
	}
	if alive {
		if h, err := countHandles(pid, *state); err == nil {
			fmt.Printf("open handles: %d packages being read, %d being written, %d other files (%d fds)\n", h.Reading, h.Writing, h.Other, h.FDs)
		} else {
			fmt.Printf("open handles: unknown (%v)\n", err)
		}
		if rss := rssKiB(pid); rss >= 0 {
			fmt.Printf("memory:       %s resident\n", bytesText(rss<<10))
		}
	}
	// 3: "not running", as systemctl status and LSB init scripts answer.
	if !alive || len(mounts) == 0 {
		return 3
	}
	return 0
}

// sessionsText says which processes of which hosts write a shared catalog,
// and which are past the TTL (the next heartbeat of any host collects them).
func sessionsText(ss *catalog.SessionStatus) string {
	hosts := map[string]int{}
	for _, x := range ss.Live {
		hosts[x.Host]++
	}
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		parts = append(parts, fmt.Sprintf("%s (%d)", h, hosts[h]))
	}
	text := fmt.Sprintf("%d live on %d hosts", len(ss.Live), len(hosts))
	if len(parts) > 0 {
		text += ": " + strings.Join(parts, ", ")
	}
	if len(ss.Expired) > 0 {
		text += fmt.Sprintf("; %d expired (no heartbeat for %s: collected by the next host that looks)", len(ss.Expired), ss.TTL)
	}
	return text
}
