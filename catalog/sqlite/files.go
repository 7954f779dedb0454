package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"pkgdirfs/catalog"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The catalog of a state directory is files of this package's store: the
// database and, in WAL mode, its write-ahead log and shared-memory index
// beside it. The functions here are the only place that knows those names,
// so that commands speak of "the catalog of STATE" and another store can
// take this one's place behind the same calls.

// catalogFile is the catalog's database in a state directory.
const catalogFile = "catalog.db"

// Suffixes of the files SQLite keeps beside the database in WAL mode.
const (
	walSuffix = "-wal"
	shmSuffix = "-shm"
)

// catalogPath is the catalog's database in the state directory dir.
func catalogPath(dir string) string { return filepath.Join(dir, catalogFile) }

// catalogFiles are the files that together are the catalog of dir, the
// database first: moving or copying the catalog moves all of them, or a
// later open pairs a database with another one's log.
func catalogFiles(dir string) []string {
	p := catalogPath(dir)
	return []string{p, p + walSuffix, p + shmSuffix}
}

func init() { catalog.Register(catalog.DefaultDriver, driver{}) }

// driver is the state directory's side of the backend.
type driver struct{}

// Open opens the catalog of the state directory dir, creating it if missing.
func (driver) Open(loc catalog.Location) (catalog.Backend, error) {
	return Open(catalogPath(loc.State))
}

func (driver) OpenReadOnly(loc catalog.Location) (catalog.Backend, error) {
	return OpenReadOnly(catalogPath(loc.State))
}

func (driver) Present(loc catalog.Location) string { return StatePresent(loc.State) }

func (driver) Unreadable(loc catalog.Location) bool { return Unreadable(loc.State) }

func (driver) SetAside(loc catalog.Location, suffix string) ([]string, error) {
	return SetAside(loc.State, suffix)
}

// StatePresent says why dir does not hold a catalog ("" if it does), in
// words for a user who named dir: a mistyped --state must be refused, not
// served (or filled) as a new, empty catalog. A catalog of 0 bytes counts
// as absent: the store would take it for a new one, while it is what a
// full disk or a crash during a copy leaves of a real one.
func StatePresent(dir string) (why string) {
	st, err := os.Stat(catalogPath(dir))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return "no such directory"
		}
		return "no catalog in it"
	case err != nil:
		return err.Error()
	case st.Size() == 0:
		return "its catalog is empty (0 bytes)"
	}
	return ""
}

// Unreadable reports whether dir holds a catalog that cannot serve: one of
// 0 bytes (see StatePresent), or one that fails to open (damaged, or
// written by a newer pkgdirfs). A missing catalog is not unreadable: one is
// made. import --rebuild sets an unreadable catalog aside (SetAside).
func Unreadable(dir string) bool {
	st, err := os.Stat(catalogPath(dir))
	if err != nil {
		return false
	}
	if st.Size() == 0 {
		return true
	}
	db, err := Open(catalogPath(dir))
	if err != nil {
		return true
	}
	db.Close()
	return false
}

// SetAside renames the files of dir's catalog, each to its name plus suffix
// (e.g. ".lost-20240102T030405"), so that the next open makes a new catalog
// while the old one stays for the user to inspect or restore; its files
// move together, or a new catalog would meet the old one's log. moved are
// the new paths of the files that existed (the database first); on an error
// those moved so far are in moved. The caller holds the state's lock: no
// process may have the catalog open.
func SetAside(dir string, suffix string) (moved []string, err error) {
	if suffix == "" {
		return nil, fmt.Errorf("catalog: setting the catalog of %s aside needs a suffix", dir)
	}
	for _, p := range catalogFiles(dir) {
		if err := os.Rename(p, p+suffix); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return moved, err
		}
		moved = append(moved, p+suffix)
	}
	return moved, nil
}

// LastWrite is the newest modification time of the catalog's files: every
// committed transaction (a package, a removal, a stamped index TIMESTAMP)
// writes the write-ahead log, and a checkpoint the database. The
// shared-memory index is left out: readers touch it too. The error is set
// only when no file could be examined (the time is then zero).
func (db *DB) LastWrite() (time.Time, error) {
	var last time.Time
	var firstErr error
	seen := false
	for _, p := range []string{db.path, db.path + walSuffix} {
		st, err := os.Stat(p)
		if err != nil {
			if firstErr == nil && !errors.Is(err, os.ErrNotExist) {
				firstErr = err
			}
			continue
		}
		seen = true
		if st.ModTime().After(last) {
			last = st.ModTime()
		}
	}
	if !seen {
		if firstErr == nil {
			firstErr = fmt.Errorf("catalog: %s: %w", db.path, os.ErrNotExist)
		}
		return time.Time{}, firstErr
	}
	return last, nil
}

// Files are the files that together are the catalog of state directory
// dir, the database first: for tests and tools that damage, copy or
// measure a catalog on purpose.
func Files(dir string) []string { return catalogFiles(dir) }

// HoldWriteLock takes the write lock of dir's catalog as another process
// would (a long transaction) until release is called: for tests of what
// the mount does meanwhile.
func HoldWriteLock(dir string) (release func(), err error) {
	db, err := sql.Open("sqlite3", dsn(catalogPath(dir), "_txlock=immediate&_busy_timeout=10000"))
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin()
	if err != nil {
		db.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			tx.Rollback()
			db.Close()
		})
	}, nil
}

// ringAgain: the pauses after which Ring rings again after a change of the
// log.
var ringAgain = []time.Duration{3 * time.Millisecond, 7 * time.Millisecond, 15 * time.Millisecond, 25 * time.Millisecond}

// Ring rings when another process may have committed: the write-ahead log
// of the catalog changed (inotify on the state directory, filtered to it).
// A follower beside the writing daemon then applies its changes at once
// instead of at its next poll. nil if inotify is not available.
func (db *DB) Ring(ctx context.Context) <-chan struct{} {
	dir, wal := filepath.Dir(db.path), filepath.Base(db.path)+walSuffix
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil
	}
	ch := make(chan struct{}, 1)
	ring := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	f := os.NewFile(uintptr(fd), "inotify")
	again := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close() // ends the read below
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-again:
			}
			for _, d := range ringAgain {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
				ring()
			}
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				if i := bytes.IndexByte(name, 0); i >= 0 {
					name = name[:i]
				}
				if string(name) == wal {
					ring()
					// The log is written before the commit is visible to
					// readers (its index in -shm, which inotify does not
					// see, is updated last): look again a moment later.
					select {
					case again <- struct{}{}:
					default:
					}
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}()
	return ch
}
