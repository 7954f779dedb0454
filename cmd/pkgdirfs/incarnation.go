package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Every mount of a state is an incarnation of its own, and every instance's
// inode number carries it (tree.Model.Ino). nginx keeps descriptors open
// (open_file_cache) and reuses one for as long as stat(2) of its path shows
// the st_ino it was opened with; after a crash and a remount, the dead
// mount's descriptors read nothing, and only a new number makes nginx open
// the file again. The mounts are counted in a file of the state.

// mountsFile counts the mounts of the state (a decimal number).
const mountsFile = "pkgdirfs.mounts"

// nextIncarnation counts this mount and returns its incarnation, in
// 1..65535 (0 would be the catalog's own numbers, which an earlier mount
// showed too). Called under the state lock: one mount at a time. If the
// count cannot be kept, the incarnation comes from the clock, and err says
// why.
func nextIncarnation(state string) (uint16, error) {
	p := filepath.Join(state, mountsFile)
	var n uint64
	b, err := os.ReadFile(p)
	if err == nil {
		n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	} else if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		// Unreadable: any number but the last one will do, and the
		// clock's nanoseconds almost surely give one.
		n = uint64(time.Now().UnixNano())
	}
	n++
	// Not synced: a count lost in a power cut repeats a number only after
	// the reboot, which restarted nginx too.
	tmp := p + ".tmp"
	if werr := os.WriteFile(tmp, []byte(strconv.FormatUint(n, 10)+"\n"), 0o644); werr != nil {
		err = errors.Join(err, werr)
	} else if werr := os.Rename(tmp, p); werr != nil {
		err = errors.Join(err, werr)
	}
	return uint16(n%65535) + 1, err
}
