package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Staging is per writer (blobs.Staging): each process stages in a
// directory of its own under a lock; only a dead writer's leftovers are
// recovered, by whoever opens the state.

// StagingDir is this process's own staging directory, made (and locked) on
// first use.
func (s *Store) StagingDir() string { return s.staging.Dir() }

// OtherWriterLive tells whether another live process is staging bytes in
// the state: then blobs without rows may be its commit in progress, not a
// lost catalog.
func (s *Store) OtherWriterLive() bool { return s.staging.OtherWriterLive() }

// recoverStaged keeps the bytes of one dead writer's staging file: an
// import's copy goes (its source still has the bytes); a package write is
// kept in the mount's quarantine (RecoveredDir), at the path the writer gave
// it: never at a package name, where Portage's walk, tar and nginx would
// meet half-written bytes.
func (s *Store) recoverStaged(p string) error {
	name := filepath.Base(p)
	if strings.HasPrefix(name, "in-") {
		os.Remove(p)
		return nil
	}
	buf := make([]byte, 4096)
	rel := time.Now().UTC().Format("20060102T150405") + "-" + name
	if n, err := unix.Getxattr(p, NameXattr, buf); err == nil && n > 0 {
		if r := filepath.Clean(string(buf[:n])); !filepath.IsAbs(r) && !strings.HasPrefix(r, "..") {
			rel = r
		}
	}
	dst := filepath.Join(s.ScratchDir(), RecoveredDir, rel)
	if _, err := os.Lstat(dst); err == nil {
		dst += ".recovered-" + time.Now().UTC().Format("20060102T150405")
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(p, dst); err != nil {
		return err
	}
	s.log.Warn("kept the bytes of a package write a crash interrupted in the quarantine", "file", dst)
	return nil
}
