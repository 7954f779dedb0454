package fs

import (
	"context"
	"sort"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
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
}

// expireRemoved drops what the grace period no longer covers.
func (f *FS) expireRemoved(now time.Time) {
	var drop []string
	f.removedMu.Lock()
	for p, e := range f.removed {
		if now.After(e.until) {
			drop = append(drop, e.blob)
			delete(f.removed, p)
		}
	}
	f.removedMu.Unlock()
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
		ino := d.fs.inos.get(rel)
		fillDir(&dirSnap{}, d.fs.snap.Load(), &out.Attr)
		out.Attr.Ino = ino
		return d.NewInode(ctx, &dirNode{fs: d.fs, path: rel}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case file != nil:
		fillFile(file, &out.Attr)
		return d.NewInode(ctx, &instNode{fs: d.fs, f: file}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: file.ino()}), 0
	}
	return nil, syscall.ENOENT
}

func (d *dirNode) readdirRemoved() []fuse.DirEntry {
	rest, _ := inRemoved(d.path)
	if d.path == ".pkgdirfs" {
		return []fuse.DirEntry{{Name: "removed", Mode: syscall.S_IFDIR, Ino: d.fs.inos.get(RemovedDir)}}
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
				list = append(list, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: d.fs.inos.get(d.child(n))})
			}
		} else {
			list = append(list, fuse.DirEntry{Name: tail, Mode: syscall.S_IFREG, Ino: e.file.ino()})
		}
	}
	d.fs.removedMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}
