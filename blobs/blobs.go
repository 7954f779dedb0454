// Package blobs keeps package bytes: a directory of content-addressed,
// immutable files named by their SHA-256 (hh/<sha256>), and the staging
// directories where writers put bytes on their way in, each under a lock
// of its own. It knows no catalog: the catalog decides which blobs are
// named, this package only makes them durable, finds them and drops them.
package blobs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dir is a blob directory.
type Dir struct{ Root string }

// Name is the blob name of bytes with this SHA-256 (lowercase hex).
func Name(sha256 string) string { return sha256[:2] + "/" + sha256 }

// Path is where the blob name lives.
func (d Dir) Path(name string) string { return filepath.Join(d.Root, name) }

// MakeDir makes the directory of blobs whose names start with prefix (the
// first two hex digits).
func (d Dir) MakeDir(prefix string) error { return os.MkdirAll(filepath.Join(d.Root, prefix), 0o755) }

// Remove drops a blob (gone already is fine).
func (d Dir) Remove(name string) error {
	if err := os.Remove(d.Path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// NotBlobs tells a directory under a blob directory that holds no blobs: a
// name starting with a dot (.staging of a shared one, .index-cache). Blob
// names never do (hh/<sha256>); whoever walks the blob directory skips these.
func NotBlobs(name string) bool { return len(name) > 1 && name[0] == '.' }

// IndexCacheDir is where mounts keep their rendered index between runs, in
// the blob directory: every host of a shared catalog and every follower of
// a state finds it there.
const IndexCacheDir = ".index-cache"

// Walk calls fn with the name and size of every blob.
func (d Dir) Walk(fn func(name string, size int64) error) error {
	return filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && p != d.Root && NotBlobs(e.Name()) {
			return filepath.SkipDir
		}
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.Root, p)
		return fn(filepath.ToSlash(rel), info.Size())
	})
}

// Commit makes the staged file src the blob name in the background,
// durably: data synced, then renamed, then the name synced. The caller
// waits (Pending.Wait) before the catalog row that names it commits: a row
// never names bytes a power cut could take.
func (d Dir) Commit(src, name string) *Pending {
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.Renamed, p.err = commitFile(src, d.Path(name))
	}()
	return p
}

// Pending is a blob being committed.
type Pending struct {
	done chan struct{}
	err  error
	// Renamed: the bytes are at the blob's name (also when a sync after
	// the rename failed); valid once Wait returned.
	Renamed bool
}

// Wait returns once the bytes are durable at their blob name, or why not.
func (p *Pending) Wait() error {
	<-p.done
	return p.err
}

func commitFile(src, dst string) (renamed bool, err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, err
	}
	// The bytes are durable before the name and the row that make them a
	// package: bytes written through the mount reach staging unsynced.
	f, err := os.Open(src)
	if err != nil {
		return false, err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return false, err
	}
	// Committed bytes never change: read-only guards against mistakes.
	if err := os.Chmod(src, 0o444); err != nil {
		return false, err
	}
	if err := os.Rename(src, dst); err != nil {
		return false, err
	}
	dir, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return true, err
	}
	defer dir.Close()
	return true, dir.Sync()
}

// RenameNoReplace moves oldpath to newpath unless newpath exists, and
// tells whether it did.
func RenameNoReplace(oldpath, newpath string) (bool, error) {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EEXIST):
		return false, nil
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS):
		return false, &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	// A filesystem without RENAME_NOREPLACE: look, then rename.
	if _, err := os.Lstat(newpath); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, os.Rename(oldpath, newpath)
}
