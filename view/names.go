// Package view is the one resolver of the mount's names: for a path it
// answers what the name is (the synthesized index, a removed build in its
// grace, a client's scratch entry, a catalog directory, a package
// instance, an alias symlink) and lists directories, with one order of
// precedence. It knows no FUSE: the fs package asks it and adapts the
// answer to go-fuse.
package view

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree"
)

// Kind is what a name is.
type Kind uint8

const (
	// None: nothing is shown at the name.
	None Kind = iota
	// Index: Packages or Packages.gz at the root, synthesized.
	Index
	// Area: .pkgdirfs, or a directory of its removed area.
	Area
	// Removed: a removed build in its removal grace (Answer.Entry.File).
	Removed
	// Scratch: a file, symlink or directory a client made (Answer.Stat),
	// the quarantine below .pkgdirfs included.
	Scratch
	// Dir: a directory of the catalog's tree (Answer.Entry).
	Dir
	// Instance: a package instance's file, or a placeholder's
	// (Answer.Entry.File; File.Placeholder tells).
	Instance
	// Alias: a flat or All/ symlink to an instance (Answer.Entry).
	Alias
)

var kindNames = [...]string{"none", "index", "area", "removed", "scratch", "dir", "instance", "alias"}

func (k Kind) String() string { return kindNames[k] }

// Answer is what a name shows.
type Answer struct {
	Kind  Kind
	Entry tree.Entry     // Index (its inode), Area, Removed, Dir, Instance, Alias
	Stat  syscall.Stat_t // Scratch; Dir when the scratch tree has it too
}

// IsDir tells whether the name is a directory.
func (a Answer) IsDir() bool {
	switch a.Kind {
	case Area, Dir:
		return true
	case Scratch:
		return a.Stat.Mode&syscall.S_IFMT == syscall.S_IFDIR
	}
	return false
}

// The hidden directory and its areas.
const (
	// AreaDir holds what the mount keeps beside the PKGDIR; not listed in
	// the root, like a .snapshot directory.
	AreaDir = ".pkgdirfs"
	// RemovedDir: removed builds in their grace (the catalog's tombstones).
	RemovedDir = tree.RemovedDir
	// RefusedDir: bytes refused at a package name.
	RefusedDir = catalog.RefusedDir
	// RecoveredDir: package writes that never committed (a crash, our own
	// failure).
	RecoveredDir = catalog.RecoveredDir
)

// InRemoved tells whether p is .pkgdirfs or in its removed area, and the
// rest of p below RemovedDir.
func InRemoved(p string) (rest string, ok bool) {
	switch {
	case p == AreaDir || p == RemovedDir:
		return "", true
	case strings.HasPrefix(p, RemovedDir+"/"):
		return p[len(RemovedDir)+1:], true
	}
	return "", false
}

// InQuarantine tells whether p is in one of the quarantine areas.
func InQuarantine(p string) bool {
	for _, a := range []string{RefusedDir, RecoveredDir} {
		if p == a || strings.HasPrefix(p, a+"/") {
			return true
		}
	}
	return false
}

// IsIndexName tells whether name in dir is the synthesized index.
func IsIndexName(dir, name string) bool {
	return dir == "" && (name == "Packages" || name == "Packages.gz")
}

// ScratchInoBase puts scratch entries' inode numbers (their own on the
// scratch filesystem, plus this) apart from instances, directories and the
// index.
const ScratchInoBase = 1 << 57

// IndexUnlinkWindow is how long an unlinked Packages or Packages.gz stays
// absent. A fact about tar -x: it removes a file, then creates it with
// O_EXCL, and that create must reach the mount. The index itself is
// synthesized and never gone for long.
const IndexUnlinkWindow = 2 * time.Second

// Names resolves the names of one mount: the catalog's tree (Model), the
// clients' scratch tree (a directory), and the state of names no catalog
// row holds: package files being written, and alias names hidden.
type Names struct {
	Model   *tree.Model
	Scratch string // root of the scratch tree

	// Mu makes "is the name free? then take it" atomic for creators
	// (O_EXCL is how Portage allocates build ids and temp names): hold it
	// across Exists and AddPending.
	Mu      sync.Mutex
	pending map[string]int // package names being written (under Mu)

	hmu       sync.Mutex
	hidden    map[string]bool      // alias names hidden (Hide)
	indexGone map[string]time.Time // Packages(.gz) just unlinked
}

// New returns the resolver of model over the scratch tree at scratch.
func New(model *tree.Model, scratch string) *Names {
	return &Names{Model: model, Scratch: scratch, pending: map[string]int{},
		hidden: map[string]bool{}, indexGone: map[string]time.Time{}}
}

// ScratchPath is where rel lives in the scratch tree.
func (n *Names) ScratchPath(rel string) string { return filepath.Join(n.Scratch, rel) }

// Resolve answers what rel shows, in this order: the index at the root;
// .pkgdirfs and its removed area; a scratch entry (it shadows the
// catalog); the catalog's tree, but for a hidden alias name.
func (n *Names) Resolve(rel string) Answer {
	dir, name := tree.SplitPath(rel)
	if IsIndexName(dir, name) {
		if n.indexAbsent(name) {
			return Answer{}
		}
		return Answer{Kind: Index, Entry: tree.Entry{Name: name, Ino: tree.IndexIno(n.Model.Gen(), name == "Packages.gz")}}
	}
	if rel == ChannelsDir {
		// The channels, served by the fs layer's own nodes.
		return Answer{Kind: Area, Entry: tree.Entry{Name: name, Ino: n.Model.DirIno(rel)}}
	}
	if rest, ok := InRemoved(rel); ok {
		f, isDir := n.Model.LookupRemoved(rest)
		switch {
		case isDir:
			return Answer{Kind: Area, Entry: tree.Entry{Name: name, Ino: n.Model.DirIno(rel)}}
		case f != nil:
			return Answer{Kind: Removed, Entry: tree.Entry{Name: name, Ino: n.Model.Ino(f), File: f}}
		}
		return Answer{}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.ScratchPath(rel), &st); err == nil {
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			// A directory in both trees is one directory, listing both.
			if e, ok := n.Model.Dir(rel); ok {
				return Answer{Kind: Dir, Entry: e, Stat: st}
			}
		}
		return Answer{Kind: Scratch, Stat: st}
	}
	if dir == AreaDir || strings.HasPrefix(dir, AreaDir+"/") {
		return Answer{} // only what the areas hold
	}
	e, ok := n.Model.Lookup(dir, name)
	switch {
	case !ok:
		return Answer{}
	case e.IsDir():
		return Answer{Kind: Dir, Entry: e}
	case n.Hidden(rel):
		return Answer{}
	case e.IsLink():
		return Answer{Kind: Alias, Entry: e}
	}
	return Answer{Kind: Instance, Entry: e}
}

// Catalog is what the catalog's tree shows at rel (the index counts, as
// files of no instance), whatever shadows or hides it.
func (n *Names) Catalog(rel string) (tree.Entry, bool) {
	dir, name := tree.SplitPath(rel)
	if IsIndexName(dir, name) {
		return tree.Entry{Name: name, Ino: tree.IndexIno(n.Model.Gen(), name == "Packages.gz")}, true
	}
	return n.Model.Lookup(dir, name)
}

// Exists tells whether rel names anything: what Resolve shows, or a
// package file being written (hold Mu to act on the answer).
func (n *Names) Exists(rel string) bool {
	return n.Resolve(rel).Kind != None || n.pending[rel] > 0
}

// Pending tells whether a package file is being written at rel (hold Mu).
func (n *Names) Pending(rel string) bool { return n.pending[rel] > 0 }

// AddPending counts a package file being written at rel (hold Mu); done
// ends it.
func (n *Names) AddPending(rel string) (done func()) {
	n.pending[rel]++
	return func() {
		n.Mu.Lock()
		if n.pending[rel]--; n.pending[rel] <= 0 {
			delete(n.pending, rel)
		}
		n.Mu.Unlock()
	}
}

// Hide makes an alias name show nothing (not the next newest build) until
// something is created there or a build of its package is committed
// (Unhide): copies remove a name before they put their own entry there,
// and tar retries symlink() after each unlink; showing the next build
// would have them remove every build. State, not a timer: a restart shows
// the alias again.
func (n *Names) Hide(rel string) {
	n.hmu.Lock()
	n.hidden[rel] = true
	n.hmu.Unlock()
}

// Unhide ends Hide.
func (n *Names) Unhide(rel string) {
	n.hmu.Lock()
	delete(n.hidden, rel)
	n.hmu.Unlock()
}

// Hidden tells whether rel is hidden.
func (n *Names) Hidden(rel string) bool {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	return n.hidden[rel]
}

// SetIndexAbsent marks Packages or Packages.gz unlinked (for
// IndexUnlinkWindow) or created again.
func (n *Names) SetIndexAbsent(name string, absent bool) {
	n.hmu.Lock()
	if absent {
		n.indexGone[name] = time.Now()
	} else {
		delete(n.indexGone, name)
	}
	n.hmu.Unlock()
}

func (n *Names) indexAbsent(name string) bool {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	t, ok := n.indexGone[name]
	return ok && time.Since(t) < IndexUnlinkWindow
}

// Listed is one name of a directory listing.
type Listed struct {
	Name string
	Mode uint32 // S_IFDIR, S_IFREG or S_IFLNK
	Ino  uint64
}

// List lists the directory dir as Resolve shows its names; ok is false if
// dir is none.
func (n *Names) List(dir string) (list []Listed, ok bool) {
	if rest, in := InRemoved(dir); in {
		if dir == AreaDir {
			list = append(list, Listed{Name: "removed", Mode: syscall.S_IFDIR, Ino: n.Model.DirIno(RemovedDir)},
				Listed{Name: "channels", Mode: syscall.S_IFDIR, Ino: n.Model.DirIno(ChannelsDir)})
			// The quarantine areas, once something was kept there.
			for _, a := range []string{RecoveredDir, RefusedDir} {
				if st, err := os.Stat(n.ScratchPath(a)); err == nil && st.IsDir() {
					_, name := tree.SplitPath(a)
					list = append(list, Listed{Name: name, Mode: syscall.S_IFDIR, Ino: n.Model.DirIno(a)})
				}
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			return list, true
		}
		if _, isDir := n.Model.LookupRemoved(rest); !isDir {
			return nil, false
		}
		for _, e := range n.Model.ReadRemoved(rest) {
			mode := uint32(syscall.S_IFREG)
			if e.IsDir() {
				mode = syscall.S_IFDIR
			}
			list = append(list, Listed{Name: e.Name, Mode: mode, Ino: e.Ino})
		}
		return list, true
	}
	ents, inTree := n.Model.ReadDir(dir)
	if strings.HasPrefix(dir, AreaDir+"/") {
		ents, inTree = nil, false // the quarantine: scratch only
	}
	scratch, err := os.ReadDir(n.ScratchPath(dir))
	if !inTree && err != nil {
		return nil, false
	}
	list = make([]Listed, 0, len(ents)+len(scratch)+2)
	if dir == "" {
		// The catalog's generation, without waiting for its index.
		gen := n.Model.Gen()
		for _, name := range []string{"Packages", "Packages.gz"} {
			if !n.indexAbsent(name) {
				list = append(list, Listed{Name: name, Mode: syscall.S_IFREG, Ino: tree.IndexIno(gen, name == "Packages.gz")})
			}
		}
	}
	shadow := make(map[string]bool, len(scratch))
	for _, e := range scratch {
		if dir == "" && (IsIndexName(dir, e.Name()) || e.Name() == AreaDir) {
			continue // the index is synthesized; .pkgdirfs is not listed
		}
		shadow[e.Name()] = true
		l := Listed{Name: e.Name(), Mode: uint32(e.Type())}
		if e.IsDir() {
			l.Mode, l.Ino = syscall.S_IFDIR, n.Model.DirIno(join(dir, e.Name()))
		} else if info, err := e.Info(); err == nil {
			st := info.Sys().(*syscall.Stat_t)
			l.Mode, l.Ino = st.Mode&syscall.S_IFMT, st.Ino+ScratchInoBase
		}
		list = append(list, l)
	}
	for _, e := range ents {
		if shadow[e.Name] || e.File != nil && n.Hidden(join(dir, e.Name)) {
			continue
		}
		list = append(list, Listed{Name: e.Name, Mode: e.Type(), Ino: e.Ino})
	}
	return list, true
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
