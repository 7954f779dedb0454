package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a directory of the tree; its content is looked up in the current
// snapshot by path, so one node serves every generation.
type dirNode struct {
	gofs.Inode
	fs   *FS
	path string
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeStatfser  = (*dirNode)(nil)
)

func (d *dirNode) snapDir() (*snapshot, *dirSnap) {
	s := d.fs.snap.Load()
	return s, s.dirs[d.path]
}

func (d *dirNode) child(name string) string {
	if d.path == "" {
		return name
	}
	return d.path + "/" + name
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.path == "" && (name == "Packages" || name == "Packages.gz") {
		gz := name == "Packages.gz"
		idx, err := d.fs.index()
		if err != nil {
			return nil, d.fs.errno("lookup", name, err)
		}
		n := &indexNode{fs: d.fs, gz: gz}
		n.fill(idx, &out.Attr)
		ino := uint64(packagesIno)
		if gz {
			ino = packagesGzIno
		}
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
	}
	s, ds := d.snapDir()
	if ds == nil {
		return nil, syscall.ENOENT
	}
	e := ds.children[name]
	if e == nil {
		return nil, syscall.ENOENT
	}
	if e.dir != nil {
		fillDir(e.dir, s, &out.Attr)
		return d.NewInode(ctx, &dirNode{fs: d.fs, path: d.child(name)}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.dir.ino}), 0
	}
	fillFile(e.file, &out.Attr)
	return d.NewInode(ctx, &instNode{fs: d.fs, f: e.file}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: e.file.ino()}), 0
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	_, ds := d.snapDir()
	if ds == nil {
		return nil, syscall.ENOENT
	}
	names := ds.sortedNames()
	list := make([]fuse.DirEntry, 0, len(names)+2)
	if d.path == "" {
		list = append(list,
			fuse.DirEntry{Name: "Packages", Mode: syscall.S_IFREG, Ino: packagesIno},
			fuse.DirEntry{Name: "Packages.gz", Mode: syscall.S_IFREG, Ino: packagesGzIno})
	}
	for _, n := range names {
		e := ds.children[n]
		if e.dir != nil {
			list = append(list, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: e.dir.ino})
		} else {
			list = append(list, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG, Ino: e.file.ino()})
		}
	}
	return gofs.NewListDirStream(list), 0
}

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s, ds := d.snapDir()
	if ds == nil {
		return syscall.ENOENT
	}
	fillDir(ds, s, &out.Attr)
	return 0
}

// Statfs reports the filesystem that holds the blobs: that is where packages use space.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.fs.cfg.StateDir, &st); err != nil {
		return d.fs.errno("statfs", d.fs.cfg.StateDir, err)
	}
	out.FromStatfsT(&st)
	out.NameLen = 255
	return 0
}

func fillDir(ds *dirSnap, s *snapshot, a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Ino = ds.ino
	a.Nlink = 2 + uint32(ds.subdirs())
	a.Size = 4096
	a.Blocks = 8
	fillTime(a, s.mtimeNs)
}

func fillFile(f *instFile, a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | f.mode
	a.Ino = f.ino()
	a.Nlink = 1
	a.Size = uint64(f.size)
	a.Blocks = (uint64(f.size) + 511) / 512
	a.Blksize = 1 << 16
	fillTime(a, f.mtimeNs)
}

// instNode is one package instance, the same inode under every name.
type instNode struct {
	gofs.Inode
	fs *FS
	f  *instFile
}

var (
	_ gofs.NodeGetattrer = (*instNode)(nil)
	_ gofs.NodeOpener    = (*instNode)(nil)
)

func (n *instNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillFile(n.f, &out.Attr)
	return 0
}

func (n *instNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.f.blob == "" { // a placeholder has no bytes
		return &blobHandle{}, fuse.FOPEN_KEEP_CACHE, 0
	}
	p := n.fs.blobPath(n.f.blob)
	file, err := os.Open(p)
	if err != nil {
		return nil, 0, n.fs.errno("open", p, err)
	}
	// Blobs never change once committed, so the kernel may keep their pages.
	return &blobHandle{file: file}, fuse.FOPEN_KEEP_CACHE, 0
}

// blobHandle reads a committed blob; where the kernel allows, go-fuse hands it
// the fd (passthrough) and reads never reach us.
type blobHandle struct {
	file *os.File
}

var (
	_ gofs.FileReader          = (*blobHandle)(nil)
	_ gofs.FileReleaser        = (*blobHandle)(nil)
	_ gofs.FilePassthroughFder = (*blobHandle)(nil)
)

func (h *blobHandle) PassthroughFd() (int, bool) {
	if h.file == nil {
		return 0, false
	}
	return int(h.file.Fd()), true
}

func (h *blobHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.file == nil {
		return fuse.ReadResultData(nil), 0
	}
	n, err := h.file.ReadAt(dest, off)
	if err != nil && n == 0 && off < 0 {
		return nil, syscall.EINVAL
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *blobHandle) Release(ctx context.Context) syscall.Errno {
	if h.file != nil {
		h.file.Close()
	}
	return 0
}

// indexNode is Packages or Packages.gz, rendered from the catalog per generation.
type indexNode struct {
	gofs.Inode
	fs *FS
	gz bool
}

var (
	_ gofs.NodeGetattrer = (*indexNode)(nil)
	_ gofs.NodeOpener    = (*indexNode)(nil)
)

func (n *indexNode) fill(idx *Index, a *fuse.Attr) {
	data := idx.Plain
	a.Ino = packagesIno
	if n.gz {
		data, a.Ino = idx.Gz, packagesGzIno
	}
	a.Mode = syscall.S_IFREG | 0o644
	a.Nlink = 1
	a.Size = uint64(len(data))
	a.Blocks = (a.Size + 511) / 512
	fillTime(a, idx.Timestamp*1e9)
}

func (n *indexNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	idx, err := n.fs.index()
	if err != nil {
		return n.fs.errno("getattr", "Packages", err)
	}
	n.fill(idx, &out.Attr)
	return 0
}

func (n *indexNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	idx, err := n.fs.index()
	if err != nil {
		return nil, 0, n.fs.errno("open", "Packages", err)
	}
	data := idx.Plain
	if n.gz {
		data = idx.Gz
	}
	// An open handle reads the generation it opened, whole and consistent. No
	// KEEP_CACHE: each open starts from the current generation's bytes.
	return &bytesHandle{data: data}, 0, 0
}

type bytesHandle struct{ data []byte }

var _ gofs.FileReader = (*bytesHandle)(nil)

func (h *bytesHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	if end > int64(len(h.data)) {
		end = int64(len(h.data))
	}
	return fuse.ReadResultData(h.data[off:end]), 0
}
