package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// No-open mode (Config.NoOpen, read-only mounts only). rawFS answers OPEN
// with ENOSYS; the kernel (fs/fuse/file.c, fuse_file_open) then sets
// no_open for the whole connection and opens every regular file itself,
// with fh 0 and FOPEN_KEEP_CACHE, sending neither OPEN nor RELEASE. READs
// then arrive without a handle, and go-fuse's bridge hands them to the
// node (NodeReader) with a nil FileHandle. The page cache of an inode is
// kept across opens and dropped only when its size or mtime changes: right
// for what this mount serves, whose bytes never change under an inode
// number (an instance's blob; an index generation, tree.IndexIno). There
// is no passthrough: its backing file is given in the OPEN reply.
//
// A handle-less read opens the file it reads and closes it after: an fd
// kept per node would live as long as the kernel keeps the inode, one per
// package ever read, past the process's file limit on a large binhost.

var (
	_ gofs.NodeReader = (*instNode)(nil)
	_ gofs.NodeReader = (*indexNode)(nil)
	_ gofs.NodeReader = (*scratchNode)(nil)
)

// noOpen tells whether this mount runs in no-open mode.
func (f *FS) noOpen() bool { return f.cfg.NoOpen && f.cfg.ReadOnly }

// readHandle is what go-fuse does without a NodeReader: the handle reads.
func readHandle(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	return nil, syscall.ENOTSUP
}

func (n *instNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if fh != nil {
		return readHandle(ctx, fh, dest, off)
	}
	return n.fs.readBlob(n.f, dest, off)
}

// readBlob reads an instance's bytes without a handle.
func (f *FS) readBlob(in *instFile, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	blob := in.Blob()
	if blob == "" {
		return fuse.ReadResultData(nil), 0
	}
	return f.readPath(f.blobPath(blob), dest, off)
}

func (f *FS) readPath(p string, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, f.errno("read", p, &os.PathError{Op: "open", Path: p, Err: err})
	}
	defer syscall.Close(fd)
	return preadFull(fd, dest, off)
}

// Read without a handle reads the generation the node was looked up as:
// the kernel keeps the pages of this inode number, which are that
// generation's alone. A node that shows every generation in turn (a name
// created or renamed onto, in a writable mount) has no such read.
func (n *indexNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if fh != nil {
		return readHandle(ctx, fh, dest, off)
	}
	if n.idx == nil {
		n.fs.log.Error("a read without a handle of an index name that shows every generation (no-open needs a read-only mount)")
		return nil, syscall.EIO
	}
	return n.fs.readIndex(n.idx, n.gz, dest, off)
}

// Read without a handle: a scratch file's bytes are read from the scratch
// tree at the node's path.
func (n *scratchNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if fh != nil {
		return readHandle(ctx, fh, dest, off)
	}
	if x := n.asIndex(); x != nil {
		return x.Read(ctx, nil, dest, off)
	}
	f := n.fsys()
	if in := n.instance(); in != nil {
		return f.readBlob(in, dest, off)
	}
	return f.readPath(f.scratchPath(n.Path(n.Root())), dest, off)
}
