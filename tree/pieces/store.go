package pieces

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
)

// ErrReleased is returned by reads of a View after its Release.
var ErrReleased = errors.New("pieces: view released")

// ErrClosed is returned by Freeze after Close.
var ErrClosed = errors.New("pieces: index closed")

// file is what a segment needs of *os.File; an interface so that tests can
// inject write and read failures.
type file interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
}

// openTemp creates an unlinked file in dir: the bytes live in the page cache
// and on disk only as long as something holds the descriptor, and nothing is
// left behind after a crash.
func openTemp(dir string) (file, error) {
	f, err := os.CreateTemp(dir, ".pkgdirfs-pieces-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// seg is one append-only store file. Chunks written to it are never
// overwritten, so a View may read a chunk while the Index appends others.
// The Index holds a reference while it appends to the file or still has
// chunks in it; every View holds one for each segment its chunks live in. The
// file is closed when the last reference goes.
type seg struct {
	f    file
	size atomic.Int64 // append offset; reserved atomically by parallel sealers
	refs atomic.Int32

	// Owned by the Index (serialised by its caller): bytes and number of
	// chunks of the current index stored here. size-live is dead space.
	live    int64
	nchunks int
}

func newSeg(open func(string) (file, error), dir string) (*seg, error) {
	f, err := open(dir)
	if err != nil {
		return nil, err
	}
	s := &seg{f: f}
	s.refs.Store(1)
	return s, nil
}

// reserve hands out n bytes at the end of the file. A failed write leaves its
// range as dead space, which compaction reclaims like any other.
func (s *seg) reserve(n int64) int64 { return s.size.Add(n) - n }

func (s *seg) acquire() { s.refs.Add(1) }

func (s *seg) release() {
	if s.refs.Add(-1) == 0 {
		// The file is unlinked: closing it frees the space; an error here
		// has no consequence for any reader.
		_ = s.f.Close()
	}
}

// viewRefs is what a View holds of the store. It is separate from the View so
// that a cleanup attached to the View can release it without keeping the
// View reachable.
type viewRefs struct {
	segs []*seg
	done atomic.Bool
}

func (r *viewRefs) release() {
	if r.done.CompareAndSwap(false, true) {
		for _, s := range r.segs {
			s.release()
		}
	}
}

// readFull reads exactly len(p) bytes at off; a short file is corruption, not
// an end of data.
func readFull(f io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
