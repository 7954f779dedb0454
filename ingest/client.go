package ingest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClientOf names the process of thread tid and its parent, each as
// pid@starttime (a reused pid is another process): "self parent"; "" if
// unknown. A tool that replaces a name unlinks it and then puts its own
// file there from the same process (tar, cp) or from its parent or child
// (rsync's generator unlinks, its receiver renames): SameClient.
func ClientOf(tid int) string {
	if tid <= 0 {
		return ""
	}
	self, ppid := procID(tid)
	if self == "" {
		return ""
	}
	parent, _ := procID(ppid)
	return self + " " + parent
}

// procID is pid's thread group as tgid@starttime, and its parent's pid.
func procID(pid int) (id string, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// The fields after the command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1]) // field 4
	if tgid := Tgid(pid); tgid != 0 && tgid != pid {
		return procID(tgid)
	}
	return strconv.Itoa(pid) + "@" + f[19], ppid // field 22: start time
}

// Tgid is the thread group (the process) of thread tid; 0 if unknown.
func Tgid(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			tgid, _ := strconv.Atoi(strings.TrimSpace(v))
			return tgid
		}
	}
	return 0
}

// SameClient tells whether two ClientOf values are one process, or a
// parent and its child; siblings (two commands of one shell) are not.
func SameClient(a, b string) bool {
	as, ap, _ := strings.Cut(a, " ")
	bs, bp, _ := strings.Cut(b, " ")
	if as == "" || bs == "" {
		return false
	}
	return as == bs || ap != "" && ap == bs || bp != "" && as == bp
}
