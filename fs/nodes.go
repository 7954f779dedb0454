package fs

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/tree"
	"pkgdirfs/view"
)

// dirNode is a directory of the tree; its content is looked up in the current
// snapshot by path, so one node serves every generation.
type dirNode struct {
	gofs.Inode
	fs   *FS
	path string
}

var (
	_ gofs.NodeLookuper       = (*dirNode)(nil)
	_ gofs.NodeOpendirHandler = (*dirNode)(nil)
	_ gofs.NodeGetattrer      = (*dirNode)(nil)
	_ gofs.NodeStatfser       = (*dirNode)(nil)
)

func (d *dirNode) child(name string) string {
	if d.path == "" {
		return name
	}
	return d.path + "/" + name
}

// Lookup adapts what the resolver answers for the name to a kernel inode.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	rel := d.child(name)
	if rel == view.ChannelsDir {
		d.fs.fillDir(d.fs.model.DirIno(rel), 0, &out.Attr)
		out.Mode = syscall.S_IFDIR | 0o555
		return d.NewInode(ctx, &chanAreaNode{fs: d.fs}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.fs.model.DirIno(rel)}), 0
	}
	a := d.fs.names.Resolve(rel)
	switch a.Kind {
	case view.Index:
		gz := name == "Packages.gz"
		idx, err := d.fs.index()
		if err != nil {
			return nil, d.fs.errno("lookup", name, err)
		}
		// An inode per generation (tree.IndexIno): what is opened through
		// it, and its size, are that generation's.
		n := &indexNode{fs: d.fs, gz: gz, idx: idx}
		n.fill(idx, &out.Attr)
		out.SetAttrTimeout(indexAttrTimeout)
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: idx.Ino(gz)}), 0
	case view.Area:
		d.fs.fillDir(a.Entry.Ino, 0, &out.Attr)
		return d.NewInode(ctx, &dirNode{fs: d.fs, path: rel}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: a.Entry.Ino}), 0
	case view.Removed, view.Instance:
		d.fs.fillFile(a.Entry.File, &out.Attr)
		n := &instNode{fs: d.fs, f: a.Entry.File, removed: a.Kind == view.Removed}
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: a.Entry.Ino}), 0
	case view.Scratch:
		return d.fs.scratchInode(ctx, &d.Inode, rel, &a.Stat, out), 0
	case view.Dir:
		if a.Stat.Ino != 0 {
			// Made (or chmod'ed) by clients too: its own attributes.
			return d.fs.scratchInode(ctx, &d.Inode, rel, &a.Stat, out), 0
		}
		d.fs.fillDir(a.Entry.Ino, a.Entry.Subdirs, &out.Attr)
		return d.NewInode(ctx, &dirNode{fs: d.fs, path: rel}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: a.Entry.Ino}), 0
	case view.Alias:
		n := &linkNode{fs: d.fs, target: a.Entry.Link, f: a.Entry.File}
		n.fill(a.Entry.Ino, &out.Attr)
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: a.Entry.Ino}), 0
	}
	return nil, syscall.ENOENT
}

// OpendirHandle serves READDIR requests; the kernel never sends OPENDIR
// (rawFS.OpenDir), so rawFS opens one handle per request: a listing is
// made on the first request of a read from the start and kept (listings)
// for the requests that continue it.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d, fs: d.fs}, 0, 0
}

// lister is a directory a dirHandle reads: key names its listings (a path
// of the tree it shows), entries lists it.
type lister interface {
	listingKey() string
	entries() ([]fuse.DirEntry, syscall.Errno)
}

func (d *dirNode) listingKey() string { return d.path }

// dirHandle reads one listing. An entry's offset names its listing and its
// place in it (listingID<<32 | index+1).
type dirHandle struct {
	d    lister
	fs   *FS
	l    *listing
	pos  int
	sent int // entries this handle gave out
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.l == nil {
		if errno := h.start(); errno != 0 {
			return nil, errno
		}
	}
	if h.pos >= len(h.l.list) {
		// The request that finds nothing left is the read's last (a
		// request that reaches the end with entries is followed by one).
		if h.sent == 0 {
			h.fs.listings.done(h.l)
		}
		return nil, 0
	}
	de := h.l.list[h.pos]
	h.pos++
	h.sent++
	de.Off = uint64(h.l.id)<<32 | uint64(h.pos)
	return &de, 0
}

// Seekdir continues the listing the offset names, or, if it is gone,
// starts a new one at the same place.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off != 0 {
		h.l = h.fs.listings.get(uint32(off>>32), h.d.listingKey())
	}
	if h.l == nil {
		if errno := h.start(); errno != 0 {
			return errno
		}
	}
	h.pos = int(min(off&0xffffffff, uint64(len(h.l.list))))
	return 0
}

func (h *dirHandle) start() syscall.Errno {
	list, errno := h.d.entries()
	if errno != 0 {
		return errno
	}
	if hook := listingMade.Load(); hook != nil {
		(*hook)(h.d.listingKey())
	}
	h.l = h.fs.listings.add(h.d.listingKey(), list)
	return 0
}

// listingMade, when set (tests), is called after a listing was made and
// before it is answered.
var listingMade atomic.Pointer[func(path string)]

// entries lists the directory as the resolver shows it.
func (d *dirNode) entries() ([]fuse.DirEntry, syscall.Errno) {
	names, ok := d.fs.names.List(d.path)
	if !ok {
		return nil, syscall.ENOENT
	}
	list := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		list[i] = fuse.DirEntry{Name: n.Name, Mode: n.Mode, Ino: n.Ino}
	}
	return list, 0
}

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.path == "" {
		e, _ := d.fs.model.Dir("")
		d.fs.fillDir(d.StableAttr().Ino, e.Subdirs, &out.Attr)
		return 0
	}
	a := d.fs.names.Resolve(d.path)
	switch {
	case a.Kind == view.Area:
		d.fs.fillDir(d.StableAttr().Ino, 0, &out.Attr)
		out.Mode = syscall.S_IFDIR | 0o555
		return 0
	case !a.IsDir():
		return syscall.ENOENT
	}
	d.fs.fillDir(d.StableAttr().Ino, a.Entry.Subdirs, &out.Attr)
	if st := a.Stat; st.Ino != 0 {
		// A directory clients created or chmod'ed: its own mode, owner and times.
		out.Mode = st.Mode
		out.Owner = fuse.Owner{Uid: st.Uid, Gid: st.Gid}
		out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
		out.Ctime, out.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
		out.Nlink += uint32(st.Nlink) - 2
	}
	return 0
}

// Statfs reports the filesystem that holds the blobs: that is where packages use space.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.fs.cfg.Store.Dir, &st); err != nil {
		return d.fs.errno("statfs", d.fs.cfg.Store.Dir, err)
	}
	out.FromStatfsT(&st)
	out.NameLen = 255
	return 0
}

func (f *FS) fillDir(ino uint64, subdirs int, a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Ino = ino
	a.Nlink = 2 + uint32(subdirs)
	a.Size = 4096
	a.Blocks = 8
	fillTime(a, f.model.MtimeNs())
}

// instFile is an instance as the tree shows it.
type instFile = tree.File

func (f *FS) fillFile(in *instFile, a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | in.Mode
	a.Ino = f.model.Ino(in)
	a.Nlink = 1
	a.Size = uint64(in.Size)
	a.Blocks = (uint64(in.Size) + 511) / 512
	a.Blksize = 1 << 16
	fillTime(a, in.MtimeNs)
}

// instNode is one package instance, the same inode under every name.
type instNode struct {
	gofs.Inode
	fs      *FS
	f       *instFile
	io      ioCount
	removed bool // a removed build in its grace: read-only
}

var (
	_ gofs.NodeGetattrer = (*instNode)(nil)
	_ gofs.NodeOpener    = (*instNode)(nil)
	_ gofs.NodeSetattrer = (*instNode)(nil)
)

func (n *instNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*stagingHandle); ok {
		return h.Getattr(ctx, out)
	}
	n.fs.fillFile(n.current(), &out.Attr)
	return 0
}

func (n *instNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.removed && flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EPERM
	}
	return n.fs.openInstance(ctx, n.current(), flags, &n.io)
}

func (n *instNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.removed {
		return syscall.EPERM
	}
	return n.fs.setInstanceAttr(ctx, n.current(), fh, in, out)
}

// current is the instance as the newest snapshot shows it (chmod and
// utimensat change mode and mtime; the bytes never change).
func (n *instNode) current() *instFile {
	if f := n.fs.model.File(n.f.CPV(), n.f.ID); f != nil {
		return f
	}
	return n.f
}

// linkNode is a flat or All/ name: a symlink to the newest instance's file.
// Its number is tied to the instance and the target, so the kernel may keep
// the target for as long as it keeps the inode; a new newest instance is a
// new symlink inode at the name.
type linkNode struct {
	gofs.Inode
	fs     *FS
	target string
	f      *instFile
	// readOnly: a channel's, which nothing changes but pkgdirfs channel.
	readOnly bool
}

var (
	_ gofs.NodeGetattrer  = (*linkNode)(nil)
	_ gofs.NodeReadlinker = (*linkNode)(nil)
	_ gofs.NodeSetattrer  = (*linkNode)(nil)
)

func (n *linkNode) fill(ino uint64, a *fuse.Attr) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Ino = ino
	a.Nlink = 1
	a.Size = uint64(len(n.target))
	fillTime(a, n.f.MtimeNs)
}

func (n *linkNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(n.StableAttr().Ino, &out.Attr)
	return 0
}

func (n *linkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(n.target), 0
}

// Setattr on the symlink itself (cp -a and rsync -a set owner and times with
// AT_SYMLINK_NOFOLLOW) succeeds and changes nothing: what it shows follows
// the catalog.
func (n *linkNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fs.cfg.ReadOnly || n.readOnly {
		return syscall.EROFS
	}
	return n.Getattr(ctx, fh, out)
}

// blobHandle reads a committed blob; where the kernel allows, go-fuse hands it
// the fd (passthrough) and reads never reach us. The fd is a plain one, not
// an *os.File: opening one of those tries the poller first (fcntl and
// epoll_ctl calls on every open of a package).
type blobHandle struct {
	fd          int      // -1: an empty placeholder
	io          *ioCount // the kernel inode's open count
	passthrough bool
}

var (
	_ gofs.FileReader          = (*blobHandle)(nil)
	_ gofs.FileReleaser        = (*blobHandle)(nil)
	_ gofs.FilePassthroughFder = (*blobHandle)(nil)
)

func (h *blobHandle) PassthroughFd() (int, bool) {
	if !h.passthrough {
		return 0, false
	}
	return h.fd, true
}

func (h *blobHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.fd < 0 {
		return fuse.ReadResultData(nil), 0
	}
	return preadFull(h.fd, dest, off)
}

// preadFull reads dest from fd at off, short only at the end of the file.
func preadFull(fd int, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	n := 0
	for n < len(dest) {
		k, err := syscall.Pread(fd, dest[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if n == 0 {
				return nil, errnoOf(err)
			}
			break
		}
		if k == 0 {
			break
		}
		n += k
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *blobHandle) Release(ctx context.Context) syscall.Errno {
	if h.fd >= 0 {
		syscall.Close(h.fd)
	}
	h.io.endRead(h.passthrough)
	return 0
}

// indexAttrTimeout makes every stat of Packages(.gz) reach the daemon (0
// would mean go-fuse's default): an fstat must report the generation of its
// own handle, never a cached size of another one.
const indexAttrTimeout = time.Nanosecond

// indexNode is Packages or Packages.gz, rendered from the catalog per
// generation: idx, the generation it was looked up as (nil for a name
// created or renamed onto, which shows the current one).
type indexNode struct {
	gofs.Inode
	fs  *FS
	gz  bool
	idx *tree.IndexView
}

// view is the generation this node shows.
func (n *indexNode) view() (*tree.IndexView, error) {
	if n.idx != nil {
		return n.idx, nil
	}
	return n.fs.index()
}

var (
	_ gofs.NodeGetattrer = (*indexNode)(nil)
	_ gofs.NodeOpener    = (*indexNode)(nil)
	_ gofs.NodeSetattrer = (*indexNode)(nil)
)

// Setattr on Packages succeeds (Portage's utimensat after writing it must not
// fail) and changes nothing: mtime stays TIMESTAMP, the content synthesized.
func (n *indexNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fs.cfg.ReadOnly {
		return syscall.EROFS
	}
	return n.Getattr(ctx, fh, out)
}

func (n *indexNode) fill(idx *tree.IndexView, a *fuse.Attr) {
	a.Ino, a.Size = idx.Ino(n.gz), uint64(idx.Size())
	if n.gz {
		a.Size = uint64(idx.GzSize())
	}
	a.Mode = syscall.S_IFREG | 0o644
	a.Nlink = 1
	a.Blocks = (a.Size + 511) / 512
	fillTime(a, idx.Timestamp*1e9)
}

func (n *indexNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(indexAttrTimeout)
	if h, ok := fh.(*bytesHandle); ok && h.idx != nil {
		// fstat of an open index reports the generation that handle reads
		// (nginx takes Content-Length from it).
		n.fill(h.idx, &out.Attr)
		return 0
	}
	idx, err := n.view()
	if err != nil {
		return n.fs.errno("getattr", "Packages", err)
	}
	n.fill(idx, &out.Attr)
	return 0
}

func (n *indexNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		if n.fs.cfg.ReadOnly {
			return nil, 0, syscall.EROFS
		}
		// Written indexes are accepted; only a Packages header is kept.
		return &headerHandle{fs: n.fs, keep: !n.gz}, fuse.FOPEN_DIRECT_IO, 0
	}
	idx, err := n.view()
	if err != nil {
		return nil, 0, n.fs.errno("open", "Packages", err)
	}
	// An open handle reads the generation it opened, whole and consistent.
	// A name looked up is an inode of one generation (tree.IndexIno), whose
	// bytes never change: the kernel keeps its pages, and a warm read of
	// Packages never reaches us. A name created or renamed onto shows
	// every generation in turn: direct I/O, since the page cache is shared
	// by every open of the inode and generations must never see each
	// other's bytes.
	if n.idx != nil {
		return &bytesHandle{fs: n.fs, gz: n.gz, idx: idx}, fuse.FOPEN_KEEP_CACHE, 0
	}
	return &bytesHandle{fs: n.fs, gz: n.gz, idx: idx}, fuse.FOPEN_DIRECT_IO, 0
}

// bytesHandle reads Packages or Packages.gz of one generation from the
// index pieces (kept until the handle is released).
type bytesHandle struct {
	fs  *FS
	gz  bool
	idx *tree.IndexView
}

var _ gofs.FileReader = (*bytesHandle)(nil)

func (h *bytesHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.fs.readIndex(h.idx, h.gz, dest, off)
}

// readIndex reads Packages (Packages.gz if gz) of the generation idx.
func (f *FS) readIndex(idx *tree.IndexView, gz bool, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	var n int
	var err error
	if gz {
		n, err = idx.GzReadAt(dest, off)
	} else {
		n, err = idx.ReadAt(dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.errno("read", "Packages", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
