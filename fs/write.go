package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"pkgdirfs/catalog"
	"pkgdirfs/ingest"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
	"pkgdirfs/view"
)

// Inode numbers of files that are not instances: scratch files and package
// files being written keep their backing file's inode number, offset into a
// range of their own (hard links share one st_ino).
const scratchInoBase = view.ScratchInoBase

// scratchPath is where the bytes of a non-package name live.
func (f *FS) scratchPath(rel string) string { return f.names.ScratchPath(rel) }

// ioCount tracks how one kernel inode is open. The kernel requires the
// handles open on an inode at one time to be all passthrough (a backing
// file) or all not, and go-fuse drops an inode's backing file on the release
// of any of its handles: so a passthrough handle is only given while no
// other kind is open. Writers (never passthrough) arriving while
// passthrough readers are open get ETXTBSY; readers arriving while other
// handles are open read through the daemon. Open and Release of one inode
// are serialized (rawFS), so these counts match go-fuse's own.
type ioCount struct {
	mu                  sync.Mutex
	passthrough, cached int
}

// startRead counts a reader and tells whether it may use passthrough.
func (c *ioCount) startRead(canPassthrough bool) (passthrough bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !canPassthrough || c.cached > 0 {
		c.cached++
		return false
	}
	c.passthrough++
	return true
}

func (c *ioCount) endRead(passthrough bool) {
	c.mu.Lock()
	if passthrough {
		c.passthrough--
	} else {
		c.cached--
	}
	c.mu.Unlock()
}

// startWrite counts a writer, unless passthrough readers hold the inode.
func (c *ioCount) startWrite() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passthrough > 0 {
		return false
	}
	c.cached++
	return true
}

func (c *ioCount) endWrite() { c.endRead(false) }

// openWriter counts a writer for the handle open returns (the handle's
// release ends it): ETXTBSY while passthrough readers hold the inode.
func (c *ioCount) openWriter(open func() (gofs.FileHandle, uint32, syscall.Errno)) (gofs.FileHandle, uint32, syscall.Errno) {
	if !c.startWrite() {
		return nil, 0, syscall.ETXTBSY
	}
	fh, fl, errno := open()
	if errno != 0 {
		c.endWrite()
	}
	return fh, fl, errno
}

// commitTarget is the state shared by every kernel inode whose bytes may
// become an instance: once committed it shows that instance.
type commitTarget struct {
	io        ioCount
	mu        sync.Mutex
	committed *instFile
	index     *indexNode // a temp file renamed onto Packages(.gz) shows the index
}

func (c *commitTarget) asIndex() *indexNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index
}

func (c *commitTarget) instance() *instFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed
}

func (c *commitTarget) setInstance(f *instFile) {
	c.mu.Lock()
	c.committed = f
	c.mu.Unlock()
}

func instFileOf(in *catalog.Instance) *instFile { return tree.FileOf(in) }

// scratchNode is a non-package file, symlink or refused package kept as a
// plain file: the loopback node serves it from the scratch tree.
type scratchNode struct {
	gofs.LoopbackNode
	commitTarget
}

var (
	_ gofs.NodeGetattrer = (*scratchNode)(nil)
	_ gofs.NodeOpener    = (*scratchNode)(nil)
	_ gofs.NodeSetattrer = (*scratchNode)(nil)
)

func (f *FS) newScratchNode() *scratchNode {
	return &scratchNode{LoopbackNode: gofs.LoopbackNode{RootData: f.loop}}
}

func (n *scratchNode) fsys() *FS { return n.RootData.RootNode.(*dirNode).fs }

func (n *scratchNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if x := n.asIndex(); x != nil {
		return x.Getattr(ctx, nil, out)
	}
	if in := n.instance(); in != nil {
		n.fsys().fillFile(in, &out.Attr)
		return 0
	}
	return n.LoopbackNode.Getattr(ctx, fh, out)
}

func (n *scratchNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if x := n.asIndex(); x != nil {
		return x.Open(ctx, flags)
	}
	if in := n.instance(); in != nil {
		return n.fsys().openInstance(ctx, in, flags, &n.io)
	}
	// Rewriting a plain file that stands at a package name (bytes refused
	// earlier) is a new attempt at that package, committed on close.
	if flags&syscall.O_TRUNC != 0 && flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 && n.StableAttr().Mode == syscall.S_IFREG {
		if name := n.Path(n.Root()); layout.ParsePath(name).Kind != layout.KindOther {
			if n.fsys().cfg.ReadOnly {
				return nil, 0, syscall.EROFS
			}
			fh, fl, errno := n.io.openWriter(func() (gofs.FileHandle, uint32, syscall.Errno) {
				return n.fsys().openFresh(ctx, name, &n.io)
			})
			return fh, fl | fuse.FOPEN_DIRECT_IO, errno
		}
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if lf, ok := fh.(*gofs.LoopbackFile); ok && errno == 0 {
		return newScratchFile(lf, &n.io), fl, 0
	}
	return fh, fl, errno
}

// scratchFile is a handle on a plain file. go-fuse gives such handles
// passthrough to the file itself, which is only right while no other kind
// of handle is open on the inode (see ioCount).
type scratchFile struct {
	*gofs.LoopbackFile
	io          *ioCount
	passthrough bool
}

func newScratchFile(lf *gofs.LoopbackFile, io *ioCount) *scratchFile {
	return &scratchFile{LoopbackFile: lf, io: io, passthrough: io.startRead(true)}
}

func (f *scratchFile) PassthroughFd() (int, bool) {
	if !f.passthrough {
		return 0, false
	}
	return f.LoopbackFile.PassthroughFd()
}

func (f *scratchFile) Release(ctx context.Context) syscall.Errno {
	errno := f.LoopbackFile.Release(ctx)
	f.io.endRead(f.passthrough)
	return errno
}

func (n *scratchNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if x := n.asIndex(); x != nil {
		return x.Setattr(ctx, nil, in, out)
	}
	if inst := n.instance(); inst != nil {
		return n.fsys().setInstanceAttr(ctx, inst, fh, in, out)
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// ErrorXattr carries, under --xattrs, why the bytes at a package name were refused.
const ErrorXattr = "user.pkgdirfs.error"

var (
	_ gofs.NodeGetxattrer  = (*scratchNode)(nil)
	_ gofs.NodeListxattrer = (*scratchNode)(nil)
)

func (n *scratchNode) refusal() string { return n.fsys().refusal(n.Path(n.Root())) }

// refusal is why the bytes at rel (in the quarantine: the name they were
// refused at) were refused, "" if they were not.
func (f *FS) refusal(rel string) string {
	r, _ := f.cfg.Store.DB.RefusalReason(context.Background(), strings.TrimPrefix(rel, view.RefusedDir+"/"))
	return r
}

// errorXattr answers a getxattr of ErrorXattr for the name rel.
func (f *FS) errorXattr(rel string, dest []byte) (uint32, syscall.Errno) {
	r := f.refusal(rel)
	if r == "" {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(r) {
		return uint32(len(r)), syscall.ERANGE
	}
	return uint32(copy(dest, r)), 0
}

func (n *scratchNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr == ErrorXattr {
		return n.fsys().errorXattr(n.Path(n.Root()), dest)
	}
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *scratchNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	own, errno := n.LoopbackNode.Listxattr(ctx, dest)
	if errno != 0 && errno != syscall.ERANGE {
		return own, errno
	}
	if n.refusal() == "" {
		return own, errno
	}
	need := own + uint32(len(ErrorXattr)+1)
	if errno == syscall.ERANGE || len(dest) < int(need) {
		if len(dest) == 0 {
			return need, 0
		}
		return need, syscall.ERANGE
	}
	copy(dest[own:], ErrorXattr+"\x00")
	return need, 0
}

var (
	_ gofs.NodeGetxattrer  = (*pendingNode)(nil)
	_ gofs.NodeListxattrer = (*pendingNode)(nil)
)

// Getxattr: refused bytes stay at the name with the staging file's inode
// number, so a lookup may find this node again rather than a scratchNode.
func (n *pendingNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr == ErrorXattr {
		return n.fs.errorXattr(n.name, dest)
	}
	return 0, syscall.ENODATA
}

func (n *pendingNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.fs.refusal(n.name) == "" {
		return 0, 0
	}
	need := uint32(len(ErrorXattr) + 1)
	if len(dest) == 0 {
		return need, 0
	}
	if len(dest) < int(need) {
		return need, syscall.ERANGE
	}
	return uint32(copy(dest, ErrorXattr+"\x00")), 0
}

// pendingNode is a file created at a package name: its bytes go to a private
// staging file, and it becomes an instance when closed (or is refused).
type pendingNode struct {
	gofs.Inode
	commitTarget
	fs       *FS
	name     string // where it was created, relative to the root
	staging  string
	replaces int64
	reserved *catalog.Instance // the build id the create reserved in a shared catalog
	done     func()            // releases the name reservation of a create
	doneOnce sync.Once
	hash     *ingest.SeqHash // shared by every handle on the node; nil: commit re-reads
	handles  int             // open handles (under mu)
	written  bool            // a handle wrote: uncommitted staging bytes are a client's (under mu)
	refused  bool            // its bytes were refused and are kept in the quarantine (under mu)
}

// newHandle opens a handle on the node's staging file (fd); io is the
// count of the kernel inode it is open on, where it is already counted as
// a writer.
func (n *pendingNode) newHandle(ctx context.Context, fd int, dirty bool, io *ioCount) *stagingHandle {
	n.mu.Lock()
	n.handles++
	n.mu.Unlock()
	return &stagingHandle{lf: gofs.NewLoopbackFile(fd).(*gofs.LoopbackFile), fd: fd, node: n, dirty: dirty, hash: n.hash, io: io,
		opener: callerProcess(ctx)}
}

// callerProcess is the process (thread group) making a request; 0 if unknown.
// FUSE requests carry the calling thread's id.
func callerProcess(ctx context.Context) int {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 {
		return 0
	}
	return ingest.Tgid(int(c.Pid))
}

// clientOf names the process making a request (ingest.ClientOf).
func clientOf(ctx context.Context) string {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return ""
	}
	return ingest.ClientOf(int(c.Pid))
}

func (n *pendingNode) stagingPath() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.staging
}

func (n *pendingNode) setStaging(p string) {
	n.mu.Lock()
	n.staging = p
	n.mu.Unlock()
}

// finish ends the node's life as a name being written.
func (n *pendingNode) finish() {
	n.doneOnce.Do(func() {
		if n.done != nil {
			n.done()
		}
	})
}

var (
	_ gofs.NodeGetattrer = (*pendingNode)(nil)
	_ gofs.NodeOpener    = (*pendingNode)(nil)
	_ gofs.NodeSetattrer = (*pendingNode)(nil)
)

func (n *pendingNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if in := n.instance(); in != nil {
		n.fs.fillFile(in, &out.Attr)
		return 0
	}
	if h, ok := fh.(*stagingHandle); ok {
		return h.lf.Getattr(ctx, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(n.stagingPath(), &st); err != nil {
		return errnoOf(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *pendingNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if in := n.instance(); in != nil {
		return n.fs.openInstance(ctx, in, flags, &n.io)
	}
	// Every handle of a file being written reads and writes through us.
	return n.io.openWriter(func() (gofs.FileHandle, uint32, syscall.Errno) {
		if flags&syscall.O_TRUNC != 0 && flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
			// Another writer of the same name (cp of many builds onto one
			// flat name): its bytes are its own package, never mixed with these.
			return n.fs.openFresh(ctx, n.name, &n.io)
		}
		fd, err := syscall.Open(n.stagingPath(), int(flags)&^(syscall.O_CREAT|syscall.O_EXCL), 0)
		if err != nil {
			return nil, 0, errnoOf(err)
		}
		if flags&syscall.O_TRUNC != 0 && n.hash != nil {
			n.hash.Truncate(0)
		}
		return n.newHandle(ctx, fd, flags&syscall.O_TRUNC != 0, &n.io), 0, 0
	})
}

func (n *pendingNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if inst := n.instance(); inst != nil {
		return n.fs.setInstanceAttr(ctx, inst, fh, in, out)
	}
	if h, ok := fh.(*stagingHandle); ok {
		return h.Setattr(ctx, in, out)
	}
	fd, err := syscall.Open(n.stagingPath(), syscall.O_RDWR, 0)
	if err != nil {
		return errnoOf(err)
	}
	lf := gofs.NewLoopbackFile(fd).(*gofs.LoopbackFile)
	defer lf.Release(ctx)
	if errno := lf.Setattr(ctx, in, out); errno != 0 {
		return errno
	}
	return 0
}

// stagingHandle writes a package's bytes to a private staging file. It
// deliberately offers no passthrough fd: writes must come through the daemon,
// so that none can reach a blob once the bytes are committed.
type stagingHandle struct {
	lf   *gofs.LoopbackFile
	fd   int
	node *pendingNode

	mu        sync.Mutex
	opener    int  // the process that opened it; 0 if unknown
	dirty     bool // written (or truncated) since the last commit attempt
	touched   bool // ever dirty: only then are uncommitted bytes the client's
	committed bool
	hash      *ingest.SeqHash
	io        *ioCount // the open count of the kernel inode it is open on
	// writeErr is the first write that failed (ENOSPC, EDQUOT, EIO): the
	// bytes are incomplete, so close() reports it again and commits nothing.
	writeErr syscall.Errno
}

var (
	_ gofs.FileReader    = (*stagingHandle)(nil)
	_ gofs.FileWriter    = (*stagingHandle)(nil)
	_ gofs.FileFlusher   = (*stagingHandle)(nil)
	_ gofs.FileReleaser  = (*stagingHandle)(nil)
	_ gofs.FileGetattrer = (*stagingHandle)(nil)
	_ gofs.FileSetattrer = (*stagingHandle)(nil)
	_ gofs.FileLseeker   = (*stagingHandle)(nil)
	_ gofs.FileFsyncer   = (*stagingHandle)(nil)
	_ gofs.FileAllocater = (*stagingHandle)(nil)
)

func (h *stagingHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, dest, off)
}

func (h *stagingHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.committed {
		return 0, syscall.EBADF
	}
	h.dirty = true
	n, errno := h.lf.Write(ctx, data, off)
	if errno != 0 || int(n) > len(data) {
		// The loopback answers -1 as a length on error.
		if errno == 0 {
			errno = syscall.EIO
		}
		if h.writeErr == 0 {
			h.writeErr = errno
			h.node.fs.log.Warn("a write of a package failed; it will not be committed", "path", h.node.name, "errno", errno.Error())
		}
		return 0, errno
	}
	if h.hash != nil {
		h.hash.Write(data[:n], off)
	}
	return n, 0
}

func (h *stagingHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if in := h.node.instance(); in != nil {
		h.node.fs.fillFile(in, &out.Attr)
		return 0
	}
	return h.lf.Getattr(ctx, out)
}

func (h *stagingHandle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.committed {
		return syscall.EBADF
	}
	if sz, ok := in.GetSize(); ok {
		h.dirty = true
		if h.hash != nil {
			h.hash.Truncate(int64(sz))
		}
	}
	return h.lf.Setattr(ctx, in, out)
}

func (h *stagingHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

func (h *stagingHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.lf.Fsync(ctx, flags)
}

func (h *stagingHandle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dirty = true
	if h.hash != nil {
		h.hash.Break()
	}
	return h.lf.Allocate(ctx, off, size, mode)
}

// Flush is close(): the package is committed here, so that close() reports
// a refusal (EINVAL) or our own failure (EIO) to the writer.
//
// Only the opener's close commits. A process that inherited the descriptor
// (any fork between open and close: its exec or exit closes its copy)
// flushes too, often before the opener has written anything.
func (h *stagingHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.committed || !h.dirty {
		return 0
	}
	if h.opener != 0 {
		if p := callerProcess(ctx); p != 0 && p != h.opener {
			return 0
		}
	}
	if h.writeErr != 0 {
		// Incomplete bytes are neither a package nor a refusal: the writer
		// hears why again, and nothing becomes visible. Release drops
		// them, but the kernel sends it after close() returned: the space
		// (often the reason of the failure) is given back now, so that the
		// writer's next try finds it.
		h.dirty = false
		syscall.Ftruncate(h.fd, 0)
		return h.writeErr
	}
	h.dirty, h.touched = false, true
	f := h.node.fs
	before := f.model.Seq()
	// The closer is the opener (checked above): the client that wrote.
	errno := f.commitPending(h.node, h.fd, h.hash, func() string { return clientOf(ctx) })
	h.node.finish()
	if errno == 0 || errno == syscall.EINVAL {
		h.committed = true
		// close() holds no directory lock in the kernel, so every name the
		// commit changed is invalidated before close returns: the next stat
		// of any of them (flat, All/) sees the new state.
		f.notifyNow(h.node.name)
		for _, c := range f.changedSince(before) {
			f.notifyNow(joinPath(c.Dir, c.Name))
		}
	}
	return errno
}

func (h *stagingHandle) Release(ctx context.Context) syscall.Errno {
	errno := h.lf.Release(ctx)
	h.io.endWrite()
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.node
	n.mu.Lock()
	n.handles--
	n.written = n.written || h.touched || h.dirty
	last, written, refused := n.handles == 0, n.written, n.refused
	n.mu.Unlock()
	if last && !h.committed && n.instance() == nil && !refused {
		// Never committed (a write error, or nothing written after a
		// failed commit): the bytes are kept as a plain file, not lost.
		// Unless nothing was written: an empty file, or a copy of a
		// package opened for writing and closed untouched, which is
		// kept already.
		p := n.stagingPath()
		if !written || fileSize(p) == 0 || h.writeErr != 0 {
			// Incomplete bytes (a failed write: often a full disk) are
			// dropped, which gives the space back.
			os.Remove(p)
		} else if fileExists(p) {
			if kept, err := n.fs.commit.Quarantine(view.RecoveredDir, p, n.name, false); err == nil {
				// The name the kernel still holds from the create shows
				// nothing now; the quarantine's new directories are there.
				// Told before it is said: whoever reads the log then sees
				// the bytes where it says.
				n.fs.changedWait(context.Background(), n.fs.model.Seq(), nil, append(withParents(kept), n.name)...)
				n.fs.log.Warn("kept the bytes of a package write that was never committed", "path", n.name, "kept", kept)
			} else {
				n.fs.log.Error("keeping the bytes of a package write that was never committed", "path", n.name, "from", p, "err", err)
			}
		}
	}
	h.node.finish()
	return errno
}

// commitPending commits the staging file of n (ingest.Committer.Commit):
// an empty file at a multi-instance name is Portage's placeholder, a
// reservation.
func (f *FS) commitPending(n *pendingNode, fd int, sh *ingest.SeqHash, client func() string) syscall.Errno {
	ctx := context.Background()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return f.errno("commit", n.name, err)
	}
	out, errno := f.commitFile(ctx, ingest.File{Name: n.name, Path: n.stagingPath(), Size: st.Size, Mode: st.Mode & 0o7777,
		MtimeNs: st.Mtim.Nano(), Replaces: n.replaces, Hash: sh, Client: client, Reserved: n.reserved})
	switch {
	case errno == syscall.EINVAL:
		n.mu.Lock()
		n.staging, n.refused = f.scratchPath(out.Kept), true // where the refused bytes are kept
		n.mu.Unlock()
	case errno != 0:
	case out.Plain:
		n.setStaging(f.scratchPath(n.name))
	default:
		if out.Reserved {
			os.Remove(n.stagingPath())
		}
		n.setInstance(instFileOf(out.Inst))
	}
	return errno
}

// commitFile commits a file (ingest.Committer) and makes the outcome
// visible; a refusal is EINVAL (the bytes are in the quarantine), an id
// spent for a reservation EEXIST.
func (f *FS) commitFile(ctx context.Context, file ingest.File) (ingest.Outcome, syscall.Errno) {
	if k := layout.ParsePath(file.Name).Kind; k == layout.KindFlat || k == layout.KindLegacy {
		// Something is put at the name: it shows what the commit leaves there.
		f.names.Unhide(file.Name)
	}
	out, err := f.commit.Commit(ctx, file)
	var rerr *catalog.RefusedError
	switch {
	case errors.As(err, &rerr):
		f.changed(ctx, file.Name, out.Kept)
		return out, syscall.EINVAL
	case err != nil:
		// The kernel may hold the name the writer created: it shows nothing.
		dir, base := tree.SplitPath(file.Name)
		f.notifyEntry(dir, base)
		return out, f.errno("commit", file.Name, err)
	}
	if out.Inst != nil && !out.Reserved {
		// The package takes the name from a plain file left there.
		if st, err := os.Lstat(f.scratchPath(file.Name)); err == nil && st.Mode().IsRegular() {
			os.Remove(f.scratchPath(file.Name))
		}
		f.dropPackageSymlinks(out.Inst)
	}
	f.changed(ctx, file.Name)
	return out, 0
}

// dropPackageSymlinks removes symlinks copied in at inst's flat and All/
// names that point at a name of that same package (an old PKGDIR's
// cat/pf.tbz2 -> ../All/pf.tbz2, taken before the package arrived): the
// names are the package's own symlinks now, and follow its newest build.
func (f *FS) dropPackageSymlinks(inst *catalog.Instance) {
	format := layout.Format(inst.Format)
	for _, rel := range []string{layout.FlatPath(inst.Category, inst.PF, format), layout.LegacyPath(inst.PF, format)} {
		f.names.Unhide(rel) // the name shows the package's newest build again
		p := f.scratchPath(rel)
		target, err := os.Readlink(p)
		if err != nil {
			continue
		}
		if r := ingest.ResolveLink(rel, target); r != "" && ingest.SamePackageName(r, inst.Category, inst.PF, inst.Format) && os.Remove(p) == nil {
			f.notifyEntry(tree.SplitPath(rel))
		}
	}
}

// changed makes a catalog or scratch change visible at once: the snapshot is
// swapped now; kernel invalidations follow from the notifier goroutine.
func (f *FS) changed(ctx context.Context, names ...string) {
	if err := f.Refresh(ctx); err != nil {
		f.catalogError("reading catalog changes", err)
	}
	for _, n := range names {
		dir, base := tree.SplitPath(n)
		f.notifyEntry(dir, base)
	}
}

// withParents is the path p and the directories above it: a path kept in
// the quarantine may have made directories the kernel holds as absent.
func withParents(p string) []string {
	out := []string{p}
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append(out, d)
	}
	return out
}

func fileSize(p string) int64 {
	st, err := os.Lstat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// passthroughMin is the size from which a package is read through
// passthrough. Below it the kernel's page cache of the FUSE inode serves
// warm reads (passthrough keeps no pages of its own, and registering the
// backing file costs more than reading a small file; each passthrough read
// also invalidates the inode's atime, so the next stat is a GETATTR).
const passthroughMin = 1 << 20

// openInstance opens a committed instance. Reads share the immutable blob;
// a writable open writes a new copy that is committed on close: with O_TRUNC
// as a new instance of the CPV (as cp and parallel builders writing one flat
// name expect), without it as a rewrite of this instance (Portage's in-place
// XPAK recompose), which keeps its build id.
func (f *FS) openInstance(ctx context.Context, in *instFile, flags uint32, io *ioCount) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0 {
		h := &blobHandle{fd: -1, io: io}
		if blob := in.Blob(); blob != "" {
			p := f.blobPath(blob)
			fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				return nil, 0, f.errno("open", p, &os.PathError{Op: "open", Path: p, Err: err})
			}
			h.fd = fd
		}
		h.passthrough = io.startRead(h.fd >= 0 && in.Size >= passthroughMin)
		// Blobs never change once committed, so the kernel may keep their
		// pages; a reader has nothing to flush.
		return h, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	if f.cfg.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	// On ETXTBSY, rawFS.Open waits a while for the readers' releases.
	fh, fl, errno := io.openWriter(func() (gofs.FileHandle, uint32, syscall.Errno) {
		return f.openInstanceWrite(ctx, in, flags, io)
	})
	return fh, fl | fuse.FOPEN_DIRECT_IO, errno
}

func (f *FS) openInstanceWrite(ctx context.Context, in *instFile, flags uint32, ioc *ioCount) (gofs.FileHandle, uint32, syscall.Errno) {
	inst, err := f.instanceRow(ctx, in.ID)
	if err != nil {
		return nil, 0, f.errno("open", "instance", err)
	}
	format := layout.FormatXpak
	if inst.Format == string(layout.FormatGpkg) {
		format = layout.FormatGpkg
	}
	n := &pendingNode{fs: f}
	trunc := flags&syscall.O_TRUNC != 0
	if trunc || inst.Placeholder {
		n.name = layout.FlatPath(inst.Category, inst.PF, format)
		if inst.Placeholder {
			n.name = layout.MultiPath(inst.Category, inst.PF, inst.BuildID, format)
		}
	} else {
		n.name = layout.MultiPath(inst.Category, inst.PF, inst.BuildID, format)
		n.replaces = inst.ID
	}
	staging, err := os.CreateTemp(f.cfg.Store.StagingDir(), "w-")
	if err != nil {
		return nil, 0, f.errno("open", n.name, err)
	}
	n.staging = staging.Name()
	unix.Setxattr(n.staging, catalog.NameXattr, []byte(n.name), 0)
	if blob := in.Blob(); !trunc && blob != "" {
		src, err := os.Open(f.blobPath(blob))
		if err == nil {
			_, err = io.Copy(staging, src)
			src.Close()
		}
		if err != nil {
			staging.Close()
			os.Remove(n.staging)
			return nil, 0, f.errno("open", n.name, err)
		}
	}
	staging.Chmod(os.FileMode(in.Mode))
	staging.Close()
	mt := time.Unix(0, in.MtimeNs)
	os.Chtimes(n.staging, mt, mt)
	fd, err := syscall.Open(n.staging, int(flags)&^(syscall.O_CREAT|syscall.O_EXCL|syscall.O_TRUNC), 0)
	if err != nil {
		os.Remove(n.staging)
		return nil, 0, f.errno("open", n.name, err)
	}
	if trunc {
		n.hash = ingest.NewSeqHash()
	}
	return n.newHandle(ctx, fd, trunc, ioc), 0, 0
}

// openFresh starts an independent write of a package at name, on a kernel
// inode whose count io has it as a writer.
func (f *FS) openFresh(ctx context.Context, name string, io *ioCount) (gofs.FileHandle, uint32, syscall.Errno) {
	tmp, err := os.CreateTemp(f.cfg.Store.StagingDir(), "w-")
	if err != nil {
		return nil, 0, f.errno("open", name, err)
	}
	tmp.Chmod(0o644)
	tmp.Close()
	unix.Setxattr(tmp.Name(), catalog.NameXattr, []byte(name), 0)
	fd, err := syscall.Open(tmp.Name(), syscall.O_RDWR, 0)
	if err != nil {
		os.Remove(tmp.Name())
		return nil, 0, f.errno("open", name, err)
	}
	n := &pendingNode{fs: f, name: name, staging: tmp.Name(), hash: ingest.NewSeqHash()}
	return n.newHandle(ctx, fd, true, io), 0, 0
}

func (f *FS) instanceRow(ctx context.Context, id int64) (*catalog.Instance, error) {
	var out *catalog.Instance
	err := f.cfg.Store.DB.View(ctx, func(v *catalog.View) error {
		var err error
		out, err = v.InstanceByID(id)
		return err
	})
	return out, err
}

// setInstanceAttr applies chmod and utimensat to an instance (kept in the
// catalog, shown under all its names); chown to other ids is not kept
// (EPERM, which Portage tolerates); truncation needs a writable handle.
func (f *FS) setInstanceAttr(ctx context.Context, in *instFile, fh gofs.FileHandle, attr *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*stagingHandle); ok {
		return h.Setattr(ctx, attr, out)
	}
	if f.cfg.ReadOnly {
		return syscall.EROFS
	}
	if _, ok := attr.GetSize(); ok {
		return syscall.EPERM
	}
	if uid, ok := attr.GetUID(); ok && uid != 0 {
		return syscall.EPERM
	}
	if gid, ok := attr.GetGID(); ok && gid != 0 {
		return syscall.EPERM
	}
	mode, mtime := in.Mode, in.MtimeNs
	if m, ok := attr.GetMode(); ok {
		mode = m & 0o7777
	}
	if t, ok := attr.GetMTime(); ok {
		mtime = t.UnixNano()
	}
	if mode != in.Mode || mtime != in.MtimeNs {
		if in.Blob() == "" || in.ID == 0 {
			return syscall.EPERM
		}
		if err := f.cfg.Store.SetAttrs(ctx, in.ID, mode, mtime); err != nil {
			return f.errno("setattr", "instance", err)
		}
		f.changed(ctx)
		if cur := f.model.File(in.CPV(), in.ID); cur != nil {
			in = cur
		}
	}
	f.fillFile(in, &out.Attr)
	return 0
}

// notifyEntry queues a kernel dentry invalidation; the notifiers send it,
// never a handler (the kernel may hold the directory lock).
func (f *FS) notifyEntry(dir, name string) { f.notes.push(noteKey{dir, name}, nil) }

// changedWait is changed (since snapshot old) for handlers that run under a directory lock
// (unlink, rename): names in other directories are invalidated before the
// handler returns, so the next stat of another name already sees the
// change. The wait is bounded: the kernel may need a lock that only the
// returning request releases, and then the invalidation completes later.
func (f *FS) changedWait(ctx context.Context, before uint64, locked []string, names ...string) {
	// Catchup, not Refresh: Refresh would queue every name without a wait,
	// and one in a locked directory would hold the notifier until this
	// request returns, ahead of the names it must send now.
	if _, err := f.model.Catchup(ctx, f.cfg.Store.DB); err != nil {
		f.catalogError("reading catalog changes", err)
	}
	var waits []chan struct{}
	pairs := f.changedSince(before)
	for _, n := range names {
		dir, base := tree.SplitPath(n)
		pairs = append(pairs, tree.Name{Dir: dir, Name: base})
	}
	// The index names point at the next generation's inodes (IndexIno).
	pairs = append(pairs, tree.Name{Name: "Packages"}, tree.Name{Name: "Packages.gz"}, tree.Name{})
	// Names in directories the kernel holds locked for this request can
	// only be invalidated after it returns, and the notifier sends in
	// order: those go last, so that the others are not stuck behind them.
	slices.SortStableFunc(pairs, func(a, b tree.Name) int {
		return cmpBool(slices.Contains(locked, a.Dir), slices.Contains(locked, b.Dir))
	})
	for _, c := range pairs {
		var done chan struct{}
		if !slices.Contains(locked, c.Dir) {
			done = make(chan struct{})
			waits = append(waits, done)
		}
		f.notes.push(noteKey{c.Dir, c.Name}, done)
	}
	deadline := time.NewTimer(invalidationWait)
	defer deadline.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline.C:
			return
		}
	}
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// notifyNow invalidates one name at once; only for handlers the kernel runs
// without directory locks (FLUSH).
func (f *FS) notifyNow(rel string) {
	dir, name := tree.SplitPath(rel)
	parent := f.root.EmbeddedInode()
	if dir != "" {
		parent = walk(parent, dir)
	}
	if parent != nil {
		parent.NotifyEntry(name)
		// The kernel's copy of the directory's listing too: a listing
		// read right after close() returned must show the change.
		parent.NotifyContent(0, 0)
	}
}

// notifyWorkers send invalidations side by side: the kernel holds a send
// for a directory locked by a request in flight until that request returns,
// and the others must not wait behind it.
const notifyWorkers = 4

func (f *FS) notifier() {
	for range notifyWorkers {
		go f.notifyWorker()
	}
}

func (f *FS) notifyWorker() {
	root := f.treeRoot
	for {
		k, waiters, ok := f.notes.pop()
		if !ok {
			return
		}
		parent := root
		if k.dir != "" {
			parent = walk(root, k.dir)
		}
		if parent != nil {
			if k.name != "" {
				parent.NotifyEntry(k.name)
			}
			// The kernel's copy of the directory's listing (rawFS.OpenDir),
			// which a change by another process does not drop by itself;
			// a listing made before the change and answered after this
			// is dropped too (TestListingMadeBeforeChange).
			parent.NotifyContent(0, 0)
		}
		for _, w := range waiters {
			close(w)
		}
	}
}

func callerOwner(ctx context.Context) (uid, gid int, ok bool) {
	if c, ok := fuse.FromContext(ctx); ok {
		return int(c.Uid), int(c.Gid), true
	}
	return 0, 0, false
}

// renameat2 moves within the scratch tree, honouring RENAME_NOREPLACE.
func renameat2(from, to string, flags uint32) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags))
}
