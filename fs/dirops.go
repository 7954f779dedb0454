package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

var (
	_ gofs.NodeCreater   = (*dirNode)(nil)
	_ gofs.NodeMkdirer   = (*dirNode)(nil)
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
	_ gofs.NodeRenamer   = (*dirNode)(nil)
	_ gofs.NodeLinker    = (*dirNode)(nil)
	_ gofs.NodeSymlinker = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
)

// scratchInode makes the kernel inode of a scratch entry.
func (f *FS) scratchInode(ctx context.Context, parent *gofs.Inode, rel string, st *syscall.Stat_t, out *fuse.EntryOut) *gofs.Inode {
	out.Attr.FromStat(st)
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		ino := f.model.DirIno(rel)
		out.Attr.Ino = ino
		return parent.NewInode(ctx, &dirNode{fs: f, path: rel}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
	}
	ino := st.Ino + scratchInoBase
	out.Attr.Ino = ino
	// A scratch file may be renamed onto a package name, where the kernel
	// keeps its dentry (a regular file) until an invalidation sent after
	// the rename returns: a dentry that is already stale makes the next
	// lookup ask us, and a flat name then shows its symlink at once.
	out.SetEntryTimeout(scratchEntryTimeout)
	return parent.NewInode(ctx, f.newScratchNode(), gofs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: ino})
}

// scratchEntryTimeout: 0 would mean go-fuse's default.
const scratchEntryTimeout = time.Nanosecond

// exists tells whether rel names anything: what Lookup shows, or a
// package file being written (hold names.Mu to act on it).
func (f *FS) exists(rel string) bool { return f.names.Exists(rel) }

// visible tells whether Lookup shows rel.
func (f *FS) visible(rel string) bool { return f.names.Resolve(rel).Kind != view.None }

// catalogEntry is what the catalog's tree shows at rel (Packages and
// Packages.gz count as files of no instance), whatever shadows it.
func (f *FS) catalogEntry(rel string) (tree.Entry, bool) { return f.names.Catalog(rel) }

func (d *dirNode) writable() syscall.Errno {
	if d.fs.cfg.ReadOnly {
		return syscall.EROFS
	}
	if _, ok := view.InRemoved(d.path); ok || view.InQuarantine(d.path) {
		return syscall.EPERM
	}
	return 0
}

// removable tells whether names may be removed from the directory (or
// renamed out of it): as writable, and in the quarantine, which the user
// empties.
func (d *dirNode) removable() syscall.Errno {
	if view.InQuarantine(d.path) && !d.fs.cfg.ReadOnly {
		return 0
	}
	return d.writable()
}

func (d *dirNode) mkParent(rel string) error {
	return os.MkdirAll(filepath.Dir(d.fs.scratchPath(rel)), 0o755)
}

func chownToCaller(ctx context.Context, p string) {
	if uid, gid, ok := callerOwner(ctx); ok && (uid != 0 || gid != 0) {
		os.Lchown(p, uid, gid)
	}
}

func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := d.writable(); errno != 0 {
		return nil, nil, 0, errno
	}
	f := d.fs
	rel := d.child(name)
	if view.IsIndexName(d.path, name) {
		f.names.SetIndexAbsent(name, false)
		// Writing an index is accepted (tar -x, cp): the header is kept.
		idx, err := f.index()
		if err != nil {
			return nil, nil, 0, f.errno("create", name, err)
		}
		n := &indexNode{fs: f, gz: name == "Packages.gz"}
		n.fill(idx, &out.Attr)
		return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: out.Attr.Ino}), &headerHandle{fs: f, keep: !n.gz}, fuse.FOPEN_DIRECT_IO, 0
	}
	if _, ok := view.InRemoved(rel); ok {
		return nil, nil, 0, syscall.EPERM
	}
	p := layout.ParsePath(rel)
	f.names.Mu.Lock()
	// Lookup does not show package files still being written, and for a
	// flat or All/ name every write becomes a new instance: cp stats the
	// name, sees nothing and creates with O_EXCL, which must not fail on
	// another writer's pending file. A multi-instance name carries a build
	// id, and there a pending writer is a reservation O_EXCL honours.
	if flags&syscall.O_EXCL != 0 && (f.visible(rel) || p.Kind == layout.KindMulti && f.names.Pending(rel)) {
		f.names.Mu.Unlock()
		return nil, nil, 0, syscall.EEXIST
	}
	if p.Kind == layout.KindOther {
		f.names.Mu.Unlock()
		if errno := f.refuseSkippedName(ctx, rel); errno != 0 {
			return nil, nil, 0, errno
		}
		return d.createScratch(ctx, rel, flags, mode, out)
	}
	// A package name: the bytes go to a private staging file and become
	// visible only when committed on close.
	release := f.names.AddPending(rel)
	f.names.Mu.Unlock()
	var reserved *catalog.Instance
	if flags&syscall.O_EXCL != 0 && p.Kind == layout.KindMulti && f.cfg.Store.Loc.Shared() {
		// Other hosts allocate from the same catalog: the id is taken
		// there, now, or O_EXCL fails as if the name existed.
		inst, err := f.commit.Reserve(ctx, rel, mode&0o7777, time.Now().UnixNano())
		if err != nil {
			release()
			if errors.Is(err, catalog.ErrBuildIDTaken) {
				return nil, nil, 0, syscall.EEXIST
			}
			return nil, nil, 0, f.errno("create", rel, err)
		}
		reserved = inst
	}
	tmp, err := os.CreateTemp(f.cfg.Store.StagingDir(), "w-")
	if err != nil {
		release()
		return nil, nil, 0, f.errno("create", rel, err)
	}
	tmp.Chmod(os.FileMode(mode & 0o7777))
	tmp.Close()
	unix.Setxattr(tmp.Name(), catalog.NameXattr, []byte(rel), 0)
	chownToCaller(ctx, tmp.Name())
	fd, err := syscall.Open(tmp.Name(), int(flags)&^(syscall.O_CREAT|syscall.O_EXCL), 0)
	if err != nil {
		release()
		os.Remove(tmp.Name())
		return nil, nil, 0, f.errno("create", rel, err)
	}
	n := &pendingNode{fs: f, name: rel, staging: tmp.Name(), hash: ingest.NewSeqHash(), reserved: reserved}
	n.done = release
	n.io.startWrite() // a new inode: nothing else is open on it
	h := n.newHandle(ctx, fd, true, &n.io)
	var st syscall.Stat_t
	syscall.Fstat(fd, &st)
	out.Attr.FromStat(&st)
	// The staging file's own inode number: if the bytes end up as a plain
	// file at that name (empty, or refused), they keep the st_ino the
	// creator saw (GNU tar checks its placeholders by it).
	ino := st.Ino + scratchInoBase
	out.Attr.Ino = ino
	return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), h, 0, 0
}

func (d *dirNode) createScratch(ctx context.Context, rel string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if err := d.mkParent(rel); err != nil {
		return nil, nil, 0, d.fs.errno("create", rel, err)
	}
	p := d.fs.scratchPath(rel)
	fd, err := syscall.Open(p, int(flags)|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, errnoOf(err)
	}
	chownToCaller(ctx, p)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, errnoOf(err)
	}
	inode := d.fs.scratchInode(ctx, &d.Inode, rel, &st, out)
	lf := gofs.NewLoopbackFile(fd).(*gofs.LoopbackFile)
	if sn, ok := inode.Operations().(*scratchNode); ok {
		return inode, newScratchFile(lf, &sn.io), 0, 0
	}
	return inode, lf, 0, 0
}

// makeScratch creates one scratch entry at name with mk, atomically with
// respect to other creators of the name, and returns its inode.
func (d *dirNode) makeScratch(ctx context.Context, name, op string, out *fuse.EntryOut, mk func(p string) error) (*gofs.Inode, syscall.Errno) {
	if errno := d.writable(); errno != 0 {
		return nil, errno
	}
	rel := d.child(name)
	d.fs.names.Mu.Lock()
	defer d.fs.names.Mu.Unlock()
	if d.fs.exists(rel) {
		return nil, syscall.EEXIST
	}
	if err := d.mkParent(rel); err != nil {
		return nil, d.fs.errno(op, rel, err)
	}
	p := d.fs.scratchPath(rel)
	if err := mk(p); err != nil {
		return nil, errnoOf(err)
	}
	chownToCaller(ctx, p)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errnoOf(err)
	}
	return d.fs.scratchInode(ctx, &d.Inode, rel, &st, out), 0
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return d.makeScratch(ctx, name, "mkdir", out, func(p string) error { return syscall.Mkdir(p, mode) })
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := d.removable(); errno != 0 {
		return errno
	}
	f := d.fs
	rel := d.child(name)
	a := f.names.Resolve(rel)
	switch a.Kind {
	case view.None:
		return syscall.ENOENT
	case view.Index:
		// The index stays synthesized (Portage unlinks Packages.gz without
		// compress-index); the name is briefly absent for a create to follow.
		f.names.SetIndexAbsent(name, true)
		return 0
	case view.Dir, view.Area:
		return syscall.EISDIR
	case view.Removed:
		return syscall.EPERM
	case view.Scratch:
		if err := syscall.Unlink(f.scratchPath(rel)); err != nil {
			return errnoOf(err)
		}
		if e, ok := f.catalogEntry(rel); ok && e.File != nil {
			// The file shadowed a package's name: that name shows
			// nothing, not the package, until something is put there.
			f.names.Hide(rel)
		}
		// The bytes of a refusal are gone: verify no longer lists it.
		f.cfg.Store.Forget(ctx, strings.TrimPrefix(rel, view.RefusedDir+"/"))
		f.changed(ctx, rel)
		return 0
	}
	e := a.Entry
	// The name shows an instance: remove it under all its names. Open
	// handles keep reading the unlinked blob, and binhost clients holding
	// the previous index find it under RemovedDir for its grace (its
	// tombstone, written by the removing transaction).
	before := f.model.Seq()
	alias := layout.ParsePath(rel).Kind != layout.KindMulti
	// Unlinking a file never removes its directory: the client may go on
	// using it (cp -a of a legacy PKGDIR replaces the alias with a symlink).
	if d.path != "" {
		os.MkdirAll(f.scratchPath(d.path), 0o755)
	}
	if _, err := f.cfg.Store.Remove(ctx, e.File.ID, rel, clientOf(ctx)); err != nil {
		return f.errno("unlink", rel, err)
	}
	if alias {
		// The name shows nothing now, not the next newest build: a copy
		// that removed it to put its own entry there (tar retries
		// symlink() after each unlink) would otherwise remove them all.
		f.names.Hide(rel)
	}
	f.log.Info("removed", "path", rel, "cpv", e.File.CPV(), "build_id", e.File.BuildID, "instance", e.File.ID)
	f.changedWait(ctx, before, []string{d.path}, rel)
	return 0
}

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.removable(); errno != 0 {
		return errno
	}
	rel := d.child(name)
	if d.fs.model.HasChildren(rel) {
		return syscall.ENOTEMPTY
	}
	if err := syscall.Rmdir(d.fs.scratchPath(rel)); err != nil {
		return errnoOf(err)
	}
	d.fs.changed(ctx, rel)
	return 0
}

func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	rel := d.child(name)
	resolved := ingest.ResolveLink(rel, target)
	if k := layout.ParsePath(rel).Kind; resolved != "" && (k == layout.KindFlat || k == layout.KindLegacy) {
		if inode, ok := d.symlinkAlias(ctx, rel, name, resolved, out); ok {
			return inode, 0
		}
	}
	inode, errno := d.makeScratch(ctx, name, "symlink", out, func(p string) error { return syscall.Symlink(target, p) })
	if errno == 0 {
		d.fs.names.Unhide(rel)
	}
	return inode, errno
}

// symlinkAlias takes a symlink created at a flat or All/ name that points at
// the package that name shows (an old PKGDIR copied in: cat/pf.tbz2 ->
// ../All/pf.tbz2; or a copy of a mount) as that name's own symlink: it is
// accepted and changes nothing. A build removed through that name (cp -a,
// rsync and tar remove the name first) comes back if the symlink points at
// exactly it (restoreByLink). ok is false when the name is taken or shows
// something else.
func (d *dirNode) symlinkAlias(ctx context.Context, rel, name, resolved string, out *fuse.EntryOut) (*gofs.Inode, bool) {
	f := d.fs
	if d.writable() != 0 {
		return nil, false
	}
	f.names.Mu.Lock()
	defer f.names.Mu.Unlock()
	if f.visible(rel) {
		return nil, false
	}
	if f.commit.RestoreByLink(ctx, rel, resolved) != nil {
		f.changed(ctx, rel, resolved)
	}
	e, ok := f.catalogEntry(rel)
	if !ok || !e.IsLink() || !ingest.SamePackageName(resolved, e.File.Category(), e.File.PF(), e.File.Format()) {
		return nil, false
	}
	f.names.Unhide(rel)
	n := &linkNode{fs: f, target: e.Link, f: e.File}
	n.fill(e.Ino, &out.Attr)
	return d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: e.Ino}), true
}

// Link works for scratch files (Portage's lock files are hard-linked);
// instances are one inode already and take no further names.
func (d *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	src, ok := target.(*scratchNode)
	if !ok || src.instance() != nil {
		return nil, syscall.EPERM
	}
	from := d.fs.scratchPath(src.Path(d.Root()))
	return d.makeScratch(ctx, name, "link", out, func(p string) error { return syscall.Link(from, p) })
}

func (d *dirNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.writable(); errno != 0 {
		return errno
	}
	if d.path == "" {
		return d.setRootAttr(ctx, fh, in, out)
	}
	// Attributes of a directory live on its scratch twin, made on demand
	// (Portage sets the setgid bit and group on category directories).
	p := d.fs.scratchPath(d.path)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return d.fs.errno("setattr", d.path, err)
	}
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, m); err != nil {
			return errnoOf(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := os.Lchown(p, u, g); err != nil {
			return errnoOf(err)
		}
	}
	if mt, ok := in.GetMTime(); ok {
		at, aok := in.GetATime()
		if !aok {
			at = mt
		}
		if err := os.Chtimes(p, at, mt); err != nil {
			return errnoOf(err)
		}
	}
	return d.Getattr(ctx, fh, out)
}

// setRootAttr refuses to change the root: its mode, owner and times are the
// mount's own (no scratch twin is shown for it), so a change could only
// report success and show nothing. What changes nothing succeeds: the mode
// and owner it already has, and explicit times, which copies of a PKGDIR
// onto the mount set on it (cp -a, rsync -a, tar -x fail on an EPERM there);
// `touch` (the current time) is refused.
func (d *dirNode) setRootAttr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.Getattr(ctx, fh, out); errno != 0 {
		return errno
	}
	if m, ok := in.GetMode(); ok && m&0o7777 != out.Mode&0o7777 {
		return syscall.EPERM
	}
	if uid, ok := in.GetUID(); ok && uid != out.Uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != out.Gid {
		return syscall.EPERM
	}
	if in.Valid&(fuse.FATTR_MTIME_NOW|fuse.FATTR_ATIME_NOW) != 0 {
		return syscall.EPERM
	}
	return 0
}

func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.removable(); errno != 0 {
		return errno
	}
	f := d.fs
	nd, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if errno := nd.writable(); errno != 0 {
		return errno
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	src, dst := d.child(name), nd.child(newName)
	srcPath := f.scratchPath(src)
	a := f.names.Resolve(src)
	switch a.Kind {
	case view.None:
		return syscall.ENOENT
	case view.Instance, view.Alias:
		return f.renameInstance(ctx, d, nd, src, dst, a.Entry, flags)
	case view.Removed, view.Area, view.Dir:
		// A directory of packages is not renamed: EXDEV would have mv
		// copy it and remove the source, builds included.
		return syscall.EPERM
	case view.Index:
		// The kernel's EXDEV makes mv copy the index instead.
		return syscall.EXDEV
	}
	st := a.Stat
	if flags&unix.RENAME_NOREPLACE != 0 && f.exists(dst) {
		return syscall.EEXIST
	}
	if view.IsIndexName(nd.path, newName) {
		errno := f.renameOntoIndex(ctx, src, srcPath, newName == "Packages")
		if errno == 0 {
			// Until the kernel looks the name up again, the renamed inode
			// stands at Packages: it must answer as the index does.
			if child := d.GetChild(name); child != nil {
				if sn, ok := child.Operations().(*scratchNode); ok {
					sn.mu.Lock()
					sn.index = &indexNode{fs: f, gz: newName == "Packages.gz"}
					sn.mu.Unlock()
				}
			}
			f.notifyEntry("", newName)
		}
		return errno
	}
	p := layout.ParsePath(dst)
	if p.Kind == layout.KindOther && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		// The bytes stay at src. EPERM, not EINVAL: mv reads a rename's
		// EINVAL as "a subdirectory of itself".
		if errno := f.refuseSkippedName(ctx, dst); errno != 0 {
			return syscall.EPERM
		}
	}
	if p.Kind == layout.KindOther || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		if e, ok := f.catalogEntry(dst); ok && e.File != nil && !f.linksTo(srcPath, dst, e.File.ID) {
			// A plain file replacing an instance's name removes that instance.
			if _, err := f.cfg.Store.Remove(ctx, e.File.ID, dst, clientOf(ctx)); err != nil {
				return f.errno("rename", dst, err)
			}
		}
		if err := d.mkParent(dst); err != nil {
			return f.errno("rename", dst, err)
		}
		if err := renameat2(srcPath, f.scratchPath(dst), flags); err != nil {
			return errnoOf(err)
		}
		f.changed(ctx, src, dst)
		return 0
	}
	// A file renamed onto a package name: its bytes become that package
	// (replacing what the name showed: a placeholder, or an instance), or
	// are refused: rename fails and the bytes stay at the new name as a
	// plain file (a tool that cleans up its temp file must not lose them).
	file := ingest.File{Name: dst, Path: srcPath, Size: st.Size, MtimeNs: st.Mtim.Nano(), Mode: st.Mode & 0o7777,
		Client: func() string { return clientOf(ctx) }, Renamed: true}
	// Onto a multi-instance name the bytes replace that instance (same
	// build id); onto a flat or All/ name they add one, as a write does.
	if e, ok := f.catalogEntry(dst); p.Kind == layout.KindMulti && ok && e.File != nil && e.File.Blob() != "" {
		file.Replaces = e.File.ID
	}
	before := f.model.Seq()
	out, errno := f.commitFile(ctx, file)
	if errno == syscall.EINVAL {
		os.Remove(srcPath)
		f.notifyEntry(tree.SplitPath(src)) // the snapshot is fresh already
	}
	if errno != 0 {
		return errno
	}
	inst := out.Inst
	// Like any rename, it replaces what stood at the new name.
	if err := os.Remove(f.scratchPath(dst)); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.log.Warn("removing the file a package was renamed over", "path", dst, "err", err)
	}
	f.changedWait(ctx, before, []string{d.path, nd.path}, dst)
	// The kernel keeps the renamed inode at the new name until the entry
	// is invalidated: meanwhile it shows what the name shows, the
	// committed instance, or the build the name kept when these bytes
	// became another build (then the bytes the client wrote, still in the
	// inode's page cache, are dropped).
	if child := d.GetChild(name); child != nil {
		if sn, ok := child.Operations().(*scratchNode); ok {
			if e, ok := f.catalogEntry(dst); ok && e.File != nil && !e.IsLink() && e.File.ID != inst.ID {
				sn.setInstance(e.File)
				child.NotifyContent(0, 0)
			} else {
				sn.setInstance(instFileOf(inst))
			}
		}
	}
	f.notifyEntry(d.path, name)
	return 0
}

// renameInstance moves a build (mv of its file): to another free
// multi-instance name of its CPV and format it takes that build id (its old
// PATH is kept for the removal grace, like a removal's); onto a name its
// bytes can't have it is refused with an errno mv reports. A rename never
// deletes a build: EXDEV (mv's copy and unlink) is never answered for one.
func (f *FS) renameInstance(ctx context.Context, d, nd *dirNode, src, dst string, e tree.Entry, flags uint32) syscall.Errno {
	if src == dst {
		return 0
	}
	in := e.File
	p := layout.ParsePath(dst)
	refuse := func(errno syscall.Errno, why string) syscall.Errno {
		f.log.Warn("refused a rename of a package", "from", src, "to", dst, "reason", why)
		return errno
	}
	switch {
	case e.IsLink():
		return refuse(syscall.EPERM, "a flat or All/ name is the package's alias, not its file: move its multi-instance file")
	case p.Kind != layout.KindMulti:
		return refuse(syscall.EPERM, "a package file keeps a multi-instance name of its own package (a rename never deletes a build)")
	case p.Category != in.Category() || p.PF != in.PF() || string(p.Format) != in.Format():
		return refuse(syscall.EPERM, fmt.Sprintf("the name is not one of %s in %s format", in.CPV(), in.Format()))
	case f.exists(dst):
		return refuse(syscall.EEXIST, fmt.Sprintf("build id %d of %s is taken", p.BuildID, in.CPV()))
	}
	before := f.model.Seq()
	moved, err := f.cfg.Store.Move(ctx, in.ID, p.BuildID, src)
	if errors.Is(err, catalog.ErrBuildIDTaken) {
		return refuse(syscall.EEXIST, err.Error())
	}
	if err != nil {
		return f.errno("rename", dst, err)
	}
	f.log.Info("moved", "from", src, "to", dst, "cpv", moved.CPV, "build_id", moved.BuildID)
	f.changedWait(ctx, before, []string{d.path, nd.path}, src, dst)
	return 0
}

// renameOntoIndex handles Portage's atomic rewrite of Packages: the header
// keys of a written Packages are kept; the body is not (the index stays
// synthesized). The temp file is consumed either way.
func (f *FS) renameOntoIndex(ctx context.Context, src, srcPath string, keep bool) syscall.Errno {
	if keep {
		b, err := os.ReadFile(srcPath)
		if err != nil {
			return f.errno("rename", src, err)
		}
		if err := f.cfg.Store.KeepHeader(ctx, b); err != nil {
			return f.errno("rename", "Packages", err)
		}
	}
	if err := os.Remove(srcPath); err != nil {
		return f.errno("rename", src, err)
	}
	f.changed(ctx, src)
	return 0
}

// headerHandle takes a Packages (or Packages.gz) written in place; on close
// the header keys of Packages are kept.
type headerHandle struct {
	fs   *FS
	keep bool
	mu   sync.Mutex
	buf  []byte
}

var (
	_ gofs.FileWriter  = (*headerHandle)(nil)
	_ gofs.FileFlusher = (*headerHandle)(nil)
)

func (h *headerHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if end := off + int64(len(data)); end > int64(len(h.buf)) {
		if end > 1<<30 {
			return 0, syscall.EFBIG
		}
		h.buf = append(h.buf, make([]byte, end-int64(len(h.buf)))...)
	}
	copy(h.buf[off:], data)
	return uint32(len(data)), 0
}

func (h *headerHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.keep || len(h.buf) == 0 {
		return 0
	}
	if err := h.fs.cfg.Store.KeepHeader(context.Background(), h.buf); err != nil {
		return h.fs.errno("write", "Packages", err)
	}
	h.buf = nil
	h.fs.changed(ctx)
	return 0
}

// linksTo tells whether the symlink at scratch path p, once at rel, points to
// a name of instance id (rsync's way of copying a legacy PKGDIR's links).
func (f *FS) linksTo(p, rel string, id int64) bool {
	target, err := os.Readlink(p)
	if err != nil {
		return false
	}
	resolved := ingest.ResolveLink(rel, target)
	if resolved == "" {
		return false
	}
	e, ok := f.catalogEntry(resolved)
	return ok && e.File != nil && e.File.ID == id
}

// refuseSkippedName answers EINVAL for a file put at a name that looks like
// a package but that Portage would skip (layout.SkippedName): a package
// there would be invisible to every client. The refusal is logged and
// recorded for verify; nothing is written, so the writer keeps its bytes.
func (f *FS) refuseSkippedName(ctx context.Context, rel string) syscall.Errno {
	why := layout.SkippedName(rel)
	if why == "" {
		return 0
	}
	f.log.Warn("refused a file at a package-looking name Portage would skip", "path", rel, "reason", why)
	if err := f.cfg.Store.Refuse(ctx, rel, "not a package file name Portage indexes: "+why, 0); err != nil {
		f.log.Error("recording a refusal", "path", rel, "err", err)
	}
	return syscall.EINVAL
}
