package fs

import (
	"context"
	"errors"
	"runtime/debug"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/tree"
	"pkgdirfs/view"
)

// The mount serves each channel (view.Channels) read-only at
// .pkgdirfs/channels/NAME, or as its whole tree (Config.Channel). Names
// in a channel are looked up again at every use (chanTimeout): a channel
// moves in one catalog transaction, and a name there means what the
// catalog now says, whatever the kernel saw before. Every node of a
// channel's version carries its Serial as go-fuse's Gen, so no node of
// one version, or of the main tree, stands for another's.

// chanTimeout is how long the kernel keeps a channel's names and its
// directories' attributes: no time (0 would mean go-fuse's default, the
// mount's hour, and a live channel's Packages or a removed build would
// stay as first looked up).
const chanTimeout = time.Nanosecond

// chanAreaNode is .pkgdirfs/channels: one directory per channel.
type chanAreaNode struct {
	gofs.Inode
	fs *FS
}

var (
	_ gofs.NodeLookuper       = (*chanAreaNode)(nil)
	_ gofs.NodeOpendirHandler = (*chanAreaNode)(nil)
	_ gofs.NodeGetattrer      = (*chanAreaNode)(nil)
)

func (n *chanAreaNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fillDir(n.StableAttr().Ino, len(n.fs.channels.Names()), &out.Attr)
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimeout(chanTimeout) // its link count follows the channels
	return 0
}

func (n *chanAreaNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := n.fs.channels.Get(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	return n.fs.chanDirInode(ctx, &n.Inode, ch, "", out), 0
}

func (n *chanAreaNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: n, fs: n.fs}, 0, 0
}

func (n *chanAreaNode) listingKey() string { return view.ChannelsDir }

func (n *chanAreaNode) entries() ([]fuse.DirEntry, syscall.Errno) {
	var list []fuse.DirEntry
	for _, name := range n.fs.channels.Names() {
		if ch := n.fs.channels.Get(name); ch != nil {
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: ch.Model.RootIno()})
		}
	}
	return list, 0
}

// chanDirNode is a directory of a channel's tree (path "" its root). It
// asks for the channel by name at every use: the current version.
type chanDirNode struct {
	gofs.Inode
	fs   *FS
	name string
	path string
}

var (
	_ gofs.NodeLookuper       = (*chanDirNode)(nil)
	_ gofs.NodeOpendirHandler = (*chanDirNode)(nil)
	_ gofs.NodeGetattrer      = (*chanDirNode)(nil)
	_ gofs.NodeStatfser       = (*chanDirNode)(nil)
)

// chanDirInode is the node of directory path of channel ch, under parent.
func (f *FS) chanDirInode(ctx context.Context, parent *gofs.Inode, ch *view.Channel, path string, out *fuse.EntryOut) *gofs.Inode {
	e, _ := ch.Model.Dir(path)
	f.fillChanDir(ch, e.Ino, e.Subdirs, &out.Attr)
	out.SetEntryTimeout(chanTimeout)
	out.SetAttrTimeout(chanTimeout)
	return parent.NewInode(ctx, &chanDirNode{fs: f, name: ch.Info.Name, path: path},
		gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.Ino, Gen: uint64(ch.Serial)})
}

func (d *chanDirNode) channel() *view.Channel { return d.fs.channels.Get(d.name) }

// fillChanDir is a channel's directory: read-only, with the channel's
// mtime (a mount of one channel has no main tree to take it from).
func (f *FS) fillChanDir(ch *view.Channel, ino uint64, subdirs int, a *fuse.Attr) {
	f.fillDir(ino, subdirs, a)
	a.Mode = syscall.S_IFDIR | 0o555
	fillTime(a, ch.Model.MtimeNs())
}

// isMountRoot tells the root of a --channel mount, which stays an (empty)
// directory when its channel is deleted: a mountpoint that stat cannot
// stat breaks every tool, and the channel may come back.
func (d *chanDirNode) isMountRoot() bool { return d.path == "" && d.fs.cfg.Channel == d.name }

func (d *chanDirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	ch := d.channel()
	if ch == nil && d.isMountRoot() {
		d.fs.fillDir(d.StableAttr().Ino, 0, &out.Attr)
		out.Mode = syscall.S_IFDIR | 0o555
		out.SetTimeout(chanTimeout)
		return 0
	}
	if ch == nil {
		return syscall.ENOENT
	}
	e, ok := ch.Model.Dir(d.path)
	if !ok && d.path != "" {
		return syscall.ENOENT
	}
	d.fs.fillChanDir(ch, e.Ino, e.Subdirs, &out.Attr)
	out.SetTimeout(chanTimeout)
	return 0
}

func (d *chanDirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.fs.root.Statfs(ctx, out)
}

func (d *chanDirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch := d.channel()
	if ch == nil {
		return nil, syscall.ENOENT
	}
	gen := uint64(ch.Serial)
	if d.path == "" && (name == "Packages" || name == "Packages.gz") {
		idx, err := ch.Index(context.Background())
		for try := 0; errors.Is(err, view.ErrChannelMoved) && try < 10; try++ {
			// Moved meanwhile: the version now served.
			if ch = d.channel(); ch == nil {
				return nil, syscall.ENOENT
			}
			gen = uint64(ch.Serial)
			idx, err = ch.Index(context.Background())
		}
		if err != nil {
			return nil, d.fs.errno("lookup", view.ChannelsDir+"/"+d.name+"/"+name, err)
		}
		gz := name == "Packages.gz"
		n := &chanIndexNode{fs: d.fs, ino: ch.IndexIno(idx.Timestamp, gz), gz: gz, idx: idx}
		n.fill(&out.Attr)
		out.SetEntryTimeout(chanTimeout)
		out.SetAttrTimeout(indexAttrTimeout)
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ch.IndexIno(idx.Timestamp, gz), Gen: gen}), 0
	}
	e, ok := ch.Model.Lookup(d.path, name)
	if !ok {
		return nil, syscall.ENOENT
	}
	rel := name
	if d.path != "" {
		rel = d.path + "/" + name
	}
	switch {
	case e.IsDir():
		return d.fs.chanDirInode(ctx, &d.Inode, ch, rel, out), 0
	case e.IsLink():
		n := &linkNode{fs: d.fs, target: e.Link, f: e.File, readOnly: true}
		n.fill(e.Ino, &out.Attr)
		out.SetEntryTimeout(chanTimeout)
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: e.Ino, Gen: gen}), 0
	}
	n := &chanFileNode{fs: d.fs, f: e.File}
	d.fs.fillFile(e.File, &out.Attr)
	out.Mode = syscall.S_IFREG | e.File.Mode&0o555
	out.SetEntryTimeout(chanTimeout)
	return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: e.Ino, Gen: gen}), 0
}

func (d *chanDirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d, fs: d.fs}, 0, 0
}

func (d *chanDirNode) listingKey() string {
	return view.ChannelsDir + "/" + d.name + "/" + d.path
}

func (d *chanDirNode) entries() ([]fuse.DirEntry, syscall.Errno) {
	ch := d.channel()
	if ch == nil && d.isMountRoot() {
		return nil, 0
	}
	if ch == nil {
		return nil, syscall.ENOENT
	}
	ents, ok := ch.Model.ReadDir(d.path)
	if !ok && d.path != "" {
		return nil, syscall.ENOENT
	}
	list := make([]fuse.DirEntry, 0, len(ents)+2)
	if d.path == "" {
		for _, name := range []string{"Packages", "Packages.gz"} {
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: ch.IndexIno(0, name == "Packages.gz")})
		}
	}
	for _, e := range ents {
		list = append(list, fuse.DirEntry{Name: e.Name, Mode: e.Type(), Ino: e.Ino})
	}
	return list, 0
}

// chanFileNode is a build as a channel shows it: read-only.
type chanFileNode struct {
	gofs.Inode
	fs *FS
	f  *tree.File
	io ioCount
}

var (
	_ gofs.NodeGetattrer = (*chanFileNode)(nil)
	_ gofs.NodeOpener    = (*chanFileNode)(nil)
)

func (n *chanFileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fillFile(n.f, &out.Attr)
	out.Mode = syscall.S_IFREG | n.f.Mode&0o555
	return 0
}

func (n *chanFileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	return n.fs.openInstance(ctx, n.f, flags, &n.io)
}

// chanIndexNode is a channel's Packages or Packages.gz of one TIMESTAMP.
type chanIndexNode struct {
	gofs.Inode
	fs  *FS
	ino uint64 // not the Channel: a node the kernel keeps must not keep a moved channel's tree
	gz  bool
	idx *tree.IndexView
}

var (
	_ gofs.NodeGetattrer = (*chanIndexNode)(nil)
	_ gofs.NodeOpener    = (*chanIndexNode)(nil)
)

func (n *chanIndexNode) fill(a *fuse.Attr) {
	a.Ino, a.Size = n.ino, uint64(n.idx.Size())
	if n.gz {
		a.Size = uint64(n.idx.GzSize())
	}
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Blocks = (a.Size + 511) / 512
	fillTime(a, n.idx.Timestamp*1e9)
}

func (n *chanIndexNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(indexAttrTimeout)
	n.fill(&out.Attr)
	return 0
}

func (n *chanIndexNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	// One TIMESTAMP per inode, bytes that never change: the kernel keeps
	// its pages.
	return &bytesHandle{fs: n.fs, gz: n.gz, idx: n.idx}, fuse.FOPEN_KEEP_CACHE, 0
}

// refreshChannels syncs the channels' definitions (a move is a new
// version) and brings the live ones to the catalog's present, and has the
// kernel drop what it cached of the names that changed.
func (f *FS) refreshChannels(ctx context.Context, sync bool) {
	if sync {
		moved, err := f.channels.Sync(ctx)
		if err != nil && ctx.Err() == nil {
			f.catalogError("reading the channels", err)
		}
		if len(moved) > 0 {
			// A load reads every build of the catalog with its metadata
			// (garbage once filtered): hand it back.
			debug.FreeOSMemory()
		}
		for _, name := range moved {
			if f.cfg.Channel == name {
				f.notifyEntry("", "")
				continue
			}
			f.notifyEntry(view.ChannelsDir, name)
		}
	}
	for _, ch := range f.channels.Live() {
		seq := ch.Model.Seq()
		if _, err := ch.Catchup(ctx); err != nil {
			if ctx.Err() != nil {
				return // unmounting
			}
			f.catalogError("reading catalog changes for channel "+ch.Info.Name, err)
			continue
		}
		names, ok := ch.Model.ChangedSince(seq)
		prefix := view.ChannelsDir + "/" + ch.Info.Name
		if f.cfg.Channel == ch.Info.Name {
			prefix = ""
		}
		if !ok {
			names = []tree.Name{{}}
		}
		for _, n := range names {
			dir := n.Dir
			if prefix != "" {
				dir = prefix + "/" + dir
				if n.Dir == "" {
					dir = prefix
				}
			}
			f.notifyEntry(dir, "")
		}
		if ok, err := ch.Settle(time.Now()); err != nil {
			f.log.Warn("could not re-publish a channel's index", "channel", ch.Info.Name, "err", err)
		} else if ok {
			f.log.Info("channel index re-published after a burst of changes", "channel", ch.Info.Name)
		}
	}
}

// channelWorker applies catalog changes to the live channels after the
// main tree (Refresh kicks it), so a commit does not wait for them.
func (f *FS) channelWorker() {
	defer close(f.chanDone)
	// buildCtx ends at unmount: a channel being loaded is not waited for.
	ctx := f.buildCtx
	for {
		select {
		case <-f.stop:
			return
		case <-f.chanKick:
			f.refreshChannels(ctx, false)
		case <-f.chanSync:
			f.refreshChannels(ctx, true)
		}
	}
}

// syncChannels asks the channel worker to read the channels' definitions
// too (never blocks).
func (f *FS) syncChannels() {
	select {
	case f.chanSync <- struct{}{}:
	default:
	}
}

// kickChannels asks the channel worker to catch up (never blocks).
func (f *FS) kickChannels() {
	select {
	case f.chanKick <- struct{}{}:
	default:
	}
}

// recordChannelStamp stores a TIMESTAMP a channel served, in the
// background (a channel's next move starts above it).
func (f *FS) recordChannelStamp(name string, ts int64) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.cfg.Store.DB.RaiseChannelServed(ctx, name, ts); err != nil {
			f.log.Warn("could not record the TIMESTAMP a channel served", "channel", name, "timestamp", ts, "err", err)
		}
	}()
}

// A channel is read-only: what it serves is moved with `pkgdirfs channel`.
func (d *chanDirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (d *chanDirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *chanDirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (d *chanDirNode) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }

func (d *chanDirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (d *chanDirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *chanDirNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *chanFileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *chanIndexNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *chanAreaNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (n *chanAreaNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// go-fuse answers success for an unlink or rmdir a node does not
// implement, and ENOTSUP for the rest: a channel answers EROFS to each.
func (n *chanAreaNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (n *chanAreaNode) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }

func (n *chanAreaNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *chanAreaNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *chanAreaNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *chanAreaNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *chanAreaNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (d *chanDirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *chanDirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
