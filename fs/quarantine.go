package fs

import (
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The quarantine (view.RefusedDir, view.RecoveredDir): bytes that never
// became a package are kept there, below the hidden .pkgdirfs directory,
// at the path they were written to, never at a package name (Portage's
// walk, tar and nginx would meet them there). The user reads them and
// empties the quarantine with rm.

// quarantine keeps the bytes at from (moved, or copied with copy) in area
// at rel, or beside it with a number if that name is taken (nothing kept
// before is replaced), and returns the mount path they are at.
func (f *FS) quarantine(area, from, rel string, copy bool) (string, error) {
	kept := area + "/" + rel
	to := f.scratchPath(kept)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return "", err
	}
	if copy {
		tmp, err := os.CreateTemp(f.cfg.Store.StagingDir(), "q-")
		if err != nil {
			return "", err
		}
		tmp.Close()
		if err := copyFile(from, tmp.Name()); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
		from = tmp.Name()
		defer os.Remove(tmp.Name()) // a no-op once moved
	}
	for i := 1; ; i++ {
		err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
		if err != unix.EEXIST {
			return kept, err
		}
		kept = area + "/" + rel + "." + strconv.Itoa(i)
		to = f.scratchPath(kept)
	}
}
