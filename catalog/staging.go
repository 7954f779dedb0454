package catalog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Staging is per writer: each process that writes bytes (the mount daemon,
// an import) stages in a directory of its own below STATE/staging, holding
// a lock on it for as long as it lives. Recovery touches only directories
// whose lock nobody holds (their owner died), so a mount or any command
// started beside a running import never takes its in-flight files.

const ownerLock = ".owner"

type ownStaging struct {
	mu   sync.Mutex
	dir  string
	lock *os.File
}

// StagingDir is this process's own staging directory, made (and locked) on
// first use. If it cannot be made (a read-only or full state filesystem),
// the shared staging/ is answered: creating a file there fails the same way
// and the writer hears why; the next call tries again.
func (s *Store) StagingDir() string {
	st := &s.staging
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.dir != "" {
		return st.dir
	}
	base := filepath.Join(s.Dir, "staging")
	name := strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(rand.Uint64(), 36)
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		s.log.Warn("making this process's staging directory", "err", err)
		return base
	}
	f, err := os.OpenFile(filepath.Join(dir, ownerLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		s.log.Warn("locking this process's staging directory", "err", err)
		return base
	}
	st.dir, st.lock = dir, f
	return dir
}

// closeStaging gives this process's staging directory up (removed if empty:
// anything left in it is recovered by the next opener).
func (s *Store) closeStaging() {
	st := &s.staging
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.lock == nil {
		return
	}
	os.Remove(filepath.Join(st.dir, ownerLock))
	os.Remove(st.dir) // fails, and stays, if bytes are left
	st.lock.Close()
	st.lock = nil
}

// recoverDeadStaging recovers the staging directories whose owner died
// (their lock is free), and, with legacy (the caller holds the state lock),
// the files staged directly in staging/ by an older pkgdirfs.
func (s *Store) recoverDeadStaging(legacy bool) error {
	base := filepath.Join(s.Dir, "staging")
	ents, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(base, e.Name())
		if !e.IsDir() {
			if legacy {
				if err := s.recoverStaged(p); err != nil {
					return err
				}
			}
			continue
		}
		s.staging.mu.Lock()
		own := p == s.staging.dir
		s.staging.mu.Unlock()
		if own {
			continue
		}
		f, err := os.OpenFile(filepath.Join(p, ownerLock), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("staging %s: %w", p, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // its owner lives
			}
			return fmt.Errorf("staging %s: %w", p, err)
		}
		files, err := os.ReadDir(p)
		if err == nil {
			for _, x := range files {
				if x.Name() != ownerLock {
					if err = s.recoverStaged(filepath.Join(p, x.Name())); err != nil {
						break
					}
				}
			}
		}
		if err == nil {
			os.Remove(filepath.Join(p, ownerLock))
			err = os.Remove(p)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("recovering staging %s: %w", p, err)
		}
	}
	return nil
}

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

// OtherWriterLive tells whether another live process is staging bytes in
// the state (its staging directory's lock is held): then blobs without
// rows may be its commit in progress, not a lost catalog.
func (s *Store) OtherWriterLive() bool {
	base := filepath.Join(s.Dir, "staging")
	ents, err := os.ReadDir(base)
	if err != nil {
		return false
	}
	s.staging.mu.Lock()
	own := s.staging.dir
	s.staging.mu.Unlock()
	for _, e := range ents {
		p := filepath.Join(base, e.Name())
		if !e.IsDir() || p == own {
			continue
		}
		f, err := os.Open(filepath.Join(p, ownerLock))
		if err != nil {
			continue
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		f.Close() // releases the lock if it was taken
		if errors.Is(err, unix.EWOULDBLOCK) {
			return true
		}
	}
	return false
}
