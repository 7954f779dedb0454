package pieces

import (
	"errors"
	"io"
	"runtime"
	"sort"
)

// View is an immutable Packages index as of one Freeze. Any number of
// goroutines may read it concurrently, also while the Index changes.
//
// In Dir mode a View holds a reference on the store files its chunks live in,
// so that compaction cannot take them away. Call Release when no reader uses
// the View any more; reads after Release fail with ErrReleased. A View that
// becomes unreachable without Release is released by the garbage collector,
// which only delays reclaiming disk space. In memory mode Release is a no-op.
type View struct {
	header []byte
	hgz    []byte // header member: MTIME = the Freeze mtime
	chunks []*chunk
	pend   []int64 // pend[i]: end of chunk i's blocks in Packages
	gend   []int64 // gend[i]: end of chunk i's member in Packages.gz
	refs   *viewRefs
}

var errNegOffset = errors.New("pieces: negative offset")

// Size returns the length of Packages: header plus every block.
func (v *View) Size() int64 { return end(v.header, v.pend) }

// GzSize returns the length of Packages.gz.
func (v *View) GzSize() int64 { return end(v.hgz, v.gend) }

func end(head []byte, ends []int64) int64 {
	if len(ends) == 0 {
		return int64(len(head))
	}
	return ends[len(ends)-1]
}

// ReadAt reads Packages with io.ReaderAt semantics.
func (v *View) ReadAt(p []byte, off int64) (int, error) { return v.read(p, off, false) }

// GzReadAt reads Packages.gz with io.ReaderAt semantics.
func (v *View) GzReadAt(p []byte, off int64) (int, error) { return v.read(p, off, true) }

func (v *View) read(p []byte, off int64, gz bool) (int, error) {
	// The View must stay reachable until the preads are done, or its
	// cleanup could close the file under them.
	defer runtime.KeepAlive(v)
	head, ends := v.header, v.pend
	if gz {
		head, ends = v.hgz, v.gend
	}
	if off < 0 {
		return 0, errNegOffset
	}
	if v.refs != nil && v.refs.done.Load() {
		return 0, ErrReleased
	}
	size := end(head, ends)
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	if off < int64(len(head)) {
		n = copy(p, head[off:])
	}
	pos := off + int64(n)
	i := sort.Search(len(ends), func(i int) bool { return ends[i] > pos })
	for ; n < len(p) && i < len(ends); i++ {
		pos = off + int64(n)
		start := int64(len(head))
		if i > 0 {
			start = ends[i-1]
		}
		want := min(int64(len(p)-n), ends[i]-pos)
		c := v.chunks[i]
		o := pos - start
		if gz {
			o += c.plen
		}
		m, err := c.readAt(p[n:n+int(want)], o)
		n += m
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Bytes returns the whole Packages.
func (v *View) Bytes() ([]byte, error) { return v.all(v.Size(), v.ReadAt) }

// GzBytes returns the whole Packages.gz.
func (v *View) GzBytes() ([]byte, error) { return v.all(v.GzSize(), v.GzReadAt) }

func (v *View) all(size int64, read func([]byte, int64) (int, error)) ([]byte, error) {
	b := make([]byte, size)
	if size == 0 {
		return b, nil
	}
	n, err := read(b, 0)
	if n == len(b) {
		return b, nil
	}
	return nil, err
}

// Release drops the View's references on the store; idempotent. Only call it
// when no read of the View is in progress or will follow.
func (v *View) Release() {
	if v.refs != nil {
		v.refs.release()
	}
}
