package fs

import (
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS wraps go-fuse's node bridge so that OPEN and RELEASE of one kernel
// inode never interleave. go-fuse (v2.12.1, and its master as of 2026-11)
// registers an inode's passthrough backing file on an open and drops one
// reference on the release of any handle of the inode, after our Release
// has returned. Were a reader's open to run between our Release of a
// non-passthrough handle and that drop, the backing would be closed under
// the reader, whose open then fails with EIO. Serialized, ioCount sees what
// go-fuse does.
type rawFS struct {
	fuse.RawFileSystem
	log *slog.Logger

	mu    sync.Mutex
	nodes map[uint64]*nodeLock
}

type nodeLock struct {
	sync.Mutex
	refs int
}

// releaseWait bounds how long an open for writing waits for readers'
// RELEASEs: the kernel sends RELEASE after close() has returned, so a client
// that reads a package, closes it and opens it for writing (Portage's XPAK
// recompose reads the trailer first) can reach us before its own release.
const releaseWait = time.Second

func newRawFS(inner fuse.RawFileSystem, log *slog.Logger) *rawFS {
	return &rawFS{RawFileSystem: inner, log: log, nodes: map[uint64]*nodeLock{}}
}

func (r *rawFS) lock(id uint64) *nodeLock {
	r.mu.Lock()
	l := r.nodes[id]
	if l == nil {
		l = &nodeLock{}
		r.nodes[id] = l
	}
	l.refs++
	r.mu.Unlock()
	l.Lock()
	return l
}

func (r *rawFS) unlock(id uint64, l *nodeLock) {
	l.Unlock()
	r.mu.Lock()
	if l.refs--; l.refs == 0 {
		delete(r.nodes, id)
	}
	r.mu.Unlock()
}

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	start := time.Now()
	for {
		l := r.lock(in.NodeId)
		st := r.RawFileSystem.Open(cancel, in, out)
		r.unlock(in.NodeId, l)
		if st != fuse.Status(syscall.ETXTBSY) {
			return st
		}
		if time.Since(start) > releaseWait {
			r.log.Warn("refused to open a package for writing while it is being read (write a new name, or rename onto it)",
				"node", in.NodeId, "waited", time.Since(start).Round(time.Millisecond), "errno", "ETXTBSY")
			return st
		}
		*out = fuse.OpenOut{}
		select {
		case <-cancel:
			return fuse.EINTR
		case <-time.After(time.Millisecond):
		}
	}
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	l := r.lock(in.NodeId)
	defer r.unlock(in.NodeId, l)
	r.RawFileSystem.Release(cancel, in)
}
