package fs

import (
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/tree"
)

// rawFS wraps go-fuse's node bridge so that OPEN and RELEASE of one kernel
// inode never interleave. go-fuse (v2.12.1, and its master as of 2026-11)
// registers an inode's passthrough backing file on an open and drops one
// reference on the release of any handle of the inode, after our Release
// has returned. Were a reader's open to run between our Release of a
// non-passthrough handle and that drop, the backing would be closed under
// the reader, whose open then fails with EIO. Serialized, ioCount sees what
// go-fuse does.
//
// It also ignores FUSE interrupts (the cancel channels go-fuse turns into a
// cancelled context). The kernel sends one whenever the calling thread gets
// any signal: Go programs get SIGURG for preemption all the time, Portage
// SIGCHLD. A catalog transaction cut short that way would turn a rename or
// close that can succeed into EIO. Our requests are short and run to their
// end.
type rawFS struct {
	fuse.RawFileSystem
	log *slog.Logger

	mu    sync.Mutex
	nodes map[uint64]*nodeLock

	// noOpen: OPEN and FLUSH answer ENOSYS (Config.NoOpen).
	noOpen bool
}

type nodeLock struct {
	sync.Mutex
	refs int
}

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

func (r *rawFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if r.noOpen {
		// The kernel sets no_open for the connection at the first ENOSYS:
		// no OPEN and no RELEASE of a regular file after this one, whose
		// open succeeds with fh 0 and FOPEN_KEEP_CACHE (noopen.go).
		return fuse.ENOSYS
	}
	start := time.Now()
	for {
		l := r.lock(in.NodeId)
		st := r.RawFileSystem.Open(nil, in, out)
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
		time.Sleep(time.Millisecond)
	}
}

func (r *rawFS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	l := r.lock(in.NodeId)
	defer r.unlock(in.NodeId, l)
	r.RawFileSystem.Release(nil, in)
}

func (r *rawFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := r.RawFileSystem.Lookup(nil, h, name, out)
	noEntryCache(out)
	return st
}

// noEntryCache keeps the kernel from caching names whose meaning a change
// replaces with another inode. go-fuse cannot say "no caching" (0 means its
// default), and the least it can say, 1 ns, the kernel rounds up to a
// jiffy, in which a stat after the change still finds the old inode.
//   - Packages and Packages.gz: each generation is an inode of its own
//     (tree.IndexIno), and an open right after a commit must reach the new
//     one.
//   - A file whose node asked for the least timeout (1 ns: a client's
//     scratch file, a channel's build): a scratch file renamed onto a flat
//     package name moves its dentry there, where the name is then a
//     symlink, and only a lookup the kernel cannot skip shows that as soon
//     as the rename returns (CI: Portage's inject lstat'ed the flat name and
//     saw a regular file).
func noEntryCache(out *fuse.EntryOut) {
	switch {
	case tree.IsIndexIno(out.Attr.Ino):
		out.EntryValid, out.EntryValidNsec = 0, 0
		out.AttrValid, out.AttrValidNsec = 0, 0
	case out.EntryValid == 0 && out.EntryValidNsec == 1 && out.Attr.Mode&syscall.S_IFMT == syscall.S_IFREG:
		out.EntryValidNsec = 0
	}
}

func (r *rawFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return r.RawFileSystem.GetAttr(nil, in, out)
}

func (r *rawFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return r.RawFileSystem.SetAttr(nil, in, out)
}

func (r *rawFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	st := r.RawFileSystem.Mknod(nil, in, name, out)
	noEntryCache(out)
	return st
}

func (r *rawFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return r.RawFileSystem.Mkdir(nil, in, name, out)
}

func (r *rawFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.RawFileSystem.Unlink(nil, h, name)
}

func (r *rawFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.RawFileSystem.Rmdir(nil, h, name)
}

func (r *rawFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return r.RawFileSystem.Rename(nil, in, oldName, newName)
}

func (r *rawFS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	st := r.RawFileSystem.Link(nil, in, name, out)
	noEntryCache(out)
	return st
}

func (r *rawFS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return r.RawFileSystem.Symlink(nil, h, target, name, out)
}

func (r *rawFS) SetXAttr(_ <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return r.RawFileSystem.SetXAttr(nil, in, attr, data)
}

func (r *rawFS) RemoveXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return r.RawFileSystem.RemoveXAttr(nil, h, attr)
}

func (r *rawFS) GetXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	return r.RawFileSystem.GetXAttr(nil, h, attr, dest)
}

func (r *rawFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := r.RawFileSystem.Create(nil, in, name, out)
	noEntryCache(&out.EntryOut)
	return st
}

func (r *rawFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	return r.RawFileSystem.Read(nil, in, buf)
}

func (r *rawFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return r.RawFileSystem.Write(nil, in, data)
}

func (r *rawFS) Writev(_ <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	return r.RawFileSystem.Writev(nil, in, data)
}

func (r *rawFS) CopyFileRange(_ <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	return r.RawFileSystem.CopyFileRange(nil, in)
}

func (r *rawFS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if r.noOpen {
		// A handle-less open has no FOPEN_NOFLUSH: ENOSYS sets the
		// connection's no_flush, so that a close costs no round trip.
		// Nothing is written through a read-only mount.
		return fuse.ENOSYS
	}
	return r.RawFileSystem.Flush(nil, in)
}

func (r *rawFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return r.RawFileSystem.Fsync(nil, in)
}

func (r *rawFS) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return r.RawFileSystem.Fallocate(nil, in)
}

// OpenDir answers ENOSYS: the kernel then sends no OPENDIR and no
// RELEASEDIR at all (FUSE_NO_OPENDIR_SUPPORT), and keeps every directory's
// listing between reads, as it does with FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE.
// A warm ls -lR or find then costs no request per directory. Listings are
// dropped by the invalidation that follows every change to a directory
// (notifyWorker).
func (r *rawFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (r *rawFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(in, out, r.RawFileSystem.ReadDir)
}

func (r *rawFS) ReadDirPlus(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readDir(in, out, r.RawFileSystem.ReadDirPlus)
}

// readDir serves a READDIR, which comes without a handle (OpenDir), through
// a handle of go-fuse's opened for this request alone.
func (r *rawFS) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(nil, in, out)
	}
	var open fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(nil, &fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}, &open); !st.Ok() {
		return st
	}
	rin := *in
	rin.Fh = open.Fh
	st := read(nil, &rin, out)
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: open.Fh})
	return st
}

func (r *rawFS) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return r.RawFileSystem.StatFs(nil, h, out)
}
