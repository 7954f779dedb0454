package fs

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
)

// RemovedDir is a hidden directory (not listed, like a .snapshot directory)
// where an unlinked instance stays readable at its index PATH for the
// removal grace period: a binhost client that fetched the index before the
// removal can still download what it lists (the nginx configuration falls
// back to it). The PKGDIR itself shows the removal at once.
const RemovedDir = ".pkgdirfs/removed"

type removedEntry struct {
	file  *instFile
	blob  string
	until time.Time
}

// graceRemoved keeps a just-removed instance readable under RemovedDir.
func (f *FS) graceRemoved(path string, file *instFile, blob string) {
	f.removedMu.Lock()
	f.removed[path] = removedEntry{file: file, blob: blob, until: time.Now().Add(f.cfg.RemovedGrace)}
	f.removedMu.Unlock()
	f.removedChanged(path)
}

// removedChanged invalidates what the kernel may hold of path under
// RemovedDir: the name, and the listings of the directories above it
// (which appear and go with the paths below them).
func (f *FS) removedChanged(path string) {
	for p := RemovedDir + "/" + path; p != RemovedDir; {
		dir, name := tree.SplitPath(p)
		f.notifyEntry(dir, name)
		p = dir
	}
}

// graceSeen keeps an instance the catalog no longer has readable under
// RemovedDir, whoever removed it (prune, the keep policy, another host):
// the model tells of every removal it applies. An unlink through this
// mount has registered its own already, and bytes already dropped (a
// replaced build) are not offered. Called under the model's lock.
func (f *FS) graceSeen(path string, file *instFile) {
	blob := file.Blob()
	if blob == "" {
		return
	}
	f.removedMu.Lock()
	defer f.removedMu.Unlock()
	if _, ok := f.removed[path]; ok {
		return
	}
	if _, err := os.Lstat(filepath.Join(f.cfg.Store.BlobDir(), blob)); err != nil {
		return
	}
	f.removed[path] = removedEntry{file: file, blob: blob, until: time.Now().Add(f.cfg.RemovedGrace)}
	f.removedChanged(path)
}

// expireRemoved drops what the grace period no longer covers.
func (f *FS) expireRemoved(now time.Time) {
	var drop, gone []string
	f.removedMu.Lock()
	for p, e := range f.removed {
		if now.After(e.until) {
			drop = append(drop, e.blob)
			delete(f.removed, p)
			gone = append(gone, p)
		}
	}
	f.removedMu.Unlock()
	for _, p := range gone {
		f.removedChanged(p)
	}
	for _, b := range drop {
		f.cfg.Store.DropBlob(context.Background(), b)
	}
}

// dropAllRemoved ends every grace period (unmount).
func (f *FS) dropAllRemoved() { f.expireRemoved(time.Now().Add(100 * 365 * 24 * time.Hour)) }

func inRemoved(p string) (rest string, ok bool) {
	switch {
	case p == ".pkgdirfs" || p == RemovedDir:
		return "", true
	case strings.HasPrefix(p, RemovedDir+"/"):
		return p[len(RemovedDir)+1:], true
	}
	return "", false
}

// removedLookup resolves a path under RemovedDir: a directory if any
// removed path lies below it, the instance if one was removed there.
func (f *FS) removedLookup(p string) (file *instFile, dir bool) {
	rest, ok := inRemoved(p)
	if !ok {
		return nil, false
	}
	if rest == "" {
		return nil, true
	}
	f.removedMu.Lock()
	defer f.removedMu.Unlock()
	if e, ok := f.removed[rest]; ok {
		return e.file, false
	}
	for k := range f.removed {
		if strings.HasPrefix(k, rest+"/") {
			return nil, true
		}
	}
	return nil, false
}

func (d *dirNode) lookupRemoved(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	rel := d.child(name)
	if d.path == "" || d.path == ".pkgdirfs" {
		if rel != ".pkgdirfs" && rel != RemovedDir {
			return nil, syscall.ENOENT
		}
	}
	file, dir := d.fs.removedLookup(rel)
	switch {
	case dir:
		ino := d.fs.model.DirIno(rel)
		d.fs.fillDir(ino, 0, &out.Attr)
		return d.NewInode(ctx, &dirNode{fs: d.fs, path: rel}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case file != nil:
		fillFile(file, &out.Attr)
		return d.NewInode(ctx, &instNode{fs: d.fs, f: file}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: file.Ino()}), 0
	}
	return nil, syscall.ENOENT
}

func (d *dirNode) readdirRemoved() []fuse.DirEntry {
	rest, _ := inRemoved(d.path)
	if d.path == ".pkgdirfs" {
		return []fuse.DirEntry{{Name: "removed", Mode: syscall.S_IFDIR, Ino: d.fs.model.DirIno(RemovedDir)}}
	}
	prefix := ""
	if rest != "" {
		prefix = rest + "/"
	}
	seen := map[string]bool{}
	var list []fuse.DirEntry
	d.fs.removedMu.Lock()
	for k, e := range d.fs.removed {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		tail := k[len(prefix):]
		if i := strings.IndexByte(tail, '/'); i >= 0 {
			if n := tail[:i]; !seen[n] {
				seen[n] = true
				list = append(list, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: d.fs.model.DirIno(d.child(n))})
			}
		} else {
			list = append(list, fuse.DirEntry{Name: tail, Mode: syscall.S_IFREG, Ino: e.file.Ino()})
		}
	}
	d.fs.removedMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

// recentRemoval is an instance unlinked through one of its names a moment
// ago. Copying a PKGDIR in (cp -a, rsync -a, tar -x) removes a name before
// it puts its own entry there: a symlink (cat/pf.tbz2 -> ../All/pf.tbz2)
// pointing at that same package, or a package file. Either, following
// within moments, undoes the removal: the copy meant to add, not to drop a
// build.
type recentRemoval struct {
	inst *catalog.Instance
	at   time.Time
}

const removalUndoWindow = 30 * time.Second

// recentRemovals are those of the last removalUndoWindow, by name; order
// lists the names as they were removed, so that expiry looks at the oldest
// only (eclean-pkg removes thousands of packages in a row).
type recentRemovals struct {
	byName map[string]recentRemoval
	order  []string
}

func (f *FS) rememberRemoval(name string, inst *catalog.Instance) {
	now := time.Now()
	f.removedMu.Lock()
	defer f.removedMu.Unlock()
	r := &f.recentRemovals
	for len(r.order) > 0 {
		old, ok := r.byName[r.order[0]]
		if ok && now.Sub(old.at) <= removalUndoWindow {
			break
		}
		if ok {
			delete(r.byName, r.order[0])
		}
		r.order = r.order[1:]
	}
	if _, again := r.byName[name]; !again {
		r.order = append(r.order, name)
	}
	r.byName[name] = recentRemoval{inst: inst, at: now}
}

// undoRemoval restores the instance removed at name if target (a
// symlink's target, resolved inside the mount) names that same package, and
// makes it visible.
func (f *FS) undoRemoval(ctx context.Context, name, target string) {
	if inst := f.restoreRemoved(ctx, name, target); inst != nil {
		f.changed(ctx, name, target)
	}
}

// restoreRemoved restores the instance removed at name if target names that
// same package, or if target is "" (a package is being committed at name);
// the caller's own commit makes the change visible (a commit under a
// directory lock must not queue invalidations it cannot wait for).
func (f *FS) restoreRemoved(ctx context.Context, name, target string) *catalog.Instance {
	f.removedMu.Lock()
	r, ok := f.recentRemovals.byName[name]
	if ok && time.Since(r.at) <= removalUndoWindow {
		delete(f.recentRemovals.byName, name)
	} else {
		ok = false
	}
	f.removedMu.Unlock()
	if !ok || (target != "" && !sameInstanceName(target, r.inst)) {
		return nil
	}
	inst, err := f.cfg.Store.Restore(ctx, r.inst)
	if err != nil {
		f.log.Error("restoring a package removed a moment before", "path", name, "err", err)
		return nil
	}
	if target == "" {
		f.log.Info("restored a package removed a moment before by a copy that puts another package at its name", "path", name, "cpv", inst.CPV, "build_id", inst.BuildID)
	} else {
		f.log.Info("restored a package a symlink replaced its alias of", "path", name, "target", target, "cpv", inst.CPV, "build_id", inst.BuildID)
	}
	return inst
}

// sameInstanceName tells whether rel is a package name of inst (its multi,
// flat or All/ name).
func sameInstanceName(rel string, inst *catalog.Instance) bool {
	return samePackageName(rel, inst.Category, inst.PF, inst.Format)
}

// samePackageName tells whether rel is a package name (multi, flat or All/)
// of category/pf in format.
func samePackageName(rel, category, pf, format string) bool {
	p := layout.ParsePath(rel)
	if p.Kind == layout.KindOther || p.PF != pf || string(p.Format) != format {
		return false
	}
	return p.Kind == layout.KindLegacy || p.Category == category
}

// resolveLink resolves a relative symlink target against the link's
// directory; "" if it leaves the mount or is absolute.
func resolveLink(linkRel, target string) string {
	if path.IsAbs(target) {
		return ""
	}
	dir, _ := tree.SplitPath(linkRel)
	r := path.Clean(path.Join(dir, target))
	if r == ".." || strings.HasPrefix(r, "../") {
		return ""
	}
	return r
}

// A plain file can stand at a package's flat or All/ name, shadowing the
// package's own alias there (GNU tar's placeholder for a symlink it creates
// at the end). Unlinking it must not make another file appear at that name:
// the alias stays hidden for a while, or until something is created there.
func (f *FS) hideAlias(name string) {
	f.removedMu.Lock()
	f.hidden[name] = time.Now()
	f.removedMu.Unlock()
	// The alias comes back by itself: the kernel's copy of the listing
	// must learn it.
	time.AfterFunc(removalUndoWindow+time.Second, func() { f.notifyEntry(tree.SplitPath(name)) })
}

func (f *FS) unhideAlias(name string) {
	f.removedMu.Lock()
	delete(f.hidden, name)
	f.removedMu.Unlock()
}

func (f *FS) aliasHidden(name string) bool {
	f.removedMu.Lock()
	defer f.removedMu.Unlock()
	t, ok := f.hidden[name]
	if ok && time.Since(t) > removalUndoWindow {
		delete(f.hidden, name)
		return false
	}
	return ok
}

// An unlinked Packages or Packages.gz is absent for a moment, so that the
// create that follows (tar -x removes a file, then creates it with O_EXCL)
// reaches us; the index itself is never gone for long.
const indexUnlinkWindow = 2 * time.Second

func (f *FS) indexAbsent(name string) bool {
	f.removedMu.Lock()
	defer f.removedMu.Unlock()
	t, ok := f.indexUnlinked[name]
	return ok && time.Since(t) < indexUnlinkWindow
}

func (f *FS) setIndexAbsent(name string, absent bool) {
	f.removedMu.Lock()
	if absent {
		f.indexUnlinked[name] = time.Now()
	} else {
		delete(f.indexUnlinked, name)
	}
	f.removedMu.Unlock()
}
