package blobs

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Staging is per writer: each process that writes bytes (the mount daemon,
// an import) stages in a directory of its own below the staging base,
// holding a lock on it for as long as it lives. Recovery touches only
// directories whose lock nobody holds (their owner died), so a mount or any
// command started beside a running import never takes its in-flight files.
type Staging struct {
	Base string // the shared staging directory
	log  *slog.Logger

	mu   sync.Mutex
	name string   // of this process's own directory ("" until chosen)
	dir  string   // this process's own directory, once made
	lock *os.File // holds its lock
}

// OwnerLock is the file in each writer's staging directory whose lock the
// writer holds while it lives.
const OwnerLock = ".owner"

// NewStaging returns the staging of base for this process.
func NewStaging(base string, log *slog.Logger) *Staging {
	if log == nil {
		log = slog.Default()
	}
	return &Staging{Base: base, log: log}
}

// Dir is this process's own staging directory, made (and locked) on first
// use. If it cannot be made (a read-only or full state filesystem), the
// shared base is answered: creating a file there fails the same way and
// the writer hears why; the next call tries again.
func (s *Staging) Dir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		return s.dir
	}
	if s.name == "" {
		s.name = NewStagingName()
	}
	dir := filepath.Join(s.Base, s.name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		s.log.Warn("making this process's staging directory", "err", err)
		return s.Base
	}
	f, err := os.OpenFile(filepath.Join(dir, OwnerLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		s.log.Warn("locking this process's staging directory", "err", err)
		return s.Base
	}
	s.dir, s.lock = dir, f
	return dir
}

// NewStagingName names a process's staging directory: unique among the
// processes of all hosts staging below one base.
func NewStagingName() string {
	return strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(rand.Uint64(), 36)
}

// Use names this process's staging directory (after its session's): the
// directory in use, if any, is given up as by Close, and the next Dir
// makes the new one.
func (s *Staging) Use(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	s.name = name
}

func (s *Staging) own() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

// Close gives this process's staging directory up (removed if empty:
// anything left in it is recovered by the next opener).
func (s *Staging) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *Staging) closeLocked() {
	if s.lock == nil {
		return
	}
	os.Remove(filepath.Join(s.dir, OwnerLock))
	os.Remove(s.dir) // fails, and stays, if bytes are left
	s.lock.Close()
	s.lock, s.dir = nil, ""
}

// RecoverDead hands keep every file of the staging directories whose owner
// died (their lock is free), then removes those directories; with legacy
// (the caller holds the whole state), also the files staged directly in
// the base by an older pkgdirfs.
func (s *Staging) RecoverDead(legacy bool, keep func(path string) error) error {
	ents, err := os.ReadDir(s.Base)
	if err != nil {
		return err
	}
	own := s.own()
	for _, e := range ents {
		p := filepath.Join(s.Base, e.Name())
		if !e.IsDir() {
			if legacy {
				if err := keep(p); err != nil {
					return err
				}
			}
			continue
		}
		if p == own {
			continue
		}
		f, err := os.OpenFile(filepath.Join(p, OwnerLock), os.O_RDWR|os.O_CREATE, 0o644)
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
				if x.Name() != OwnerLock {
					if err = keep(filepath.Join(p, x.Name())); err != nil {
						break
					}
				}
			}
		}
		if err == nil {
			os.Remove(filepath.Join(p, OwnerLock))
			err = os.Remove(p)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("recovering staging %s: %w", p, err)
		}
	}
	return nil
}

// OtherWriterLive tells whether another live process is staging bytes
// (its staging directory's lock is held): then blobs without rows may be
// its commit in progress, not a lost catalog.
func (s *Staging) OtherWriterLive() bool {
	ents, err := os.ReadDir(s.Base)
	if err != nil {
		return false
	}
	own := s.own()
	for _, e := range ents {
		p := filepath.Join(s.Base, e.Name())
		if !e.IsDir() || p == own {
			continue
		}
		f, err := os.Open(filepath.Join(p, OwnerLock))
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

// Files lists the files live writers are staging, relative to the base.
func (s *Staging) Files() []string {
	var out []string
	filepath.WalkDir(s.Base, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != OwnerLock {
			rel, _ := filepath.Rel(s.Base, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}
