package fs

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Layouts selects which of the three PKGDIR layouts the mount shows.
type Layouts struct {
	Multi, Flat, Legacy bool
}

// AllLayouts shows every layout at once (the default).
var AllLayouts = Layouts{Multi: true, Flat: true, Legacy: true}

// ParseLayouts reads the --layouts flag: "all" or a comma list of multi, flat, legacy.
func ParseLayouts(s string) (Layouts, error) {
	var l Layouts
	if strings.TrimSpace(s) == "" || s == "all" {
		return AllLayouts, nil
	}
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "multi":
			l.Multi = true
		case "flat":
			l.Flat = true
		case "legacy":
			l.Legacy = true
		case "all":
			l = AllLayouts
		default:
			return l, fmt.Errorf("unknown layout %q (want all, or a comma list of multi, flat, legacy)", part)
		}
	}
	return l, nil
}

func (l Layouts) String() string {
	if l == AllLayouts {
		return "all"
	}
	var p []string
	if l.Multi {
		p = append(p, "multi")
	}
	if l.Flat {
		p = append(p, "flat")
	}
	if l.Legacy {
		p = append(p, "legacy")
	}
	return strings.Join(p, ",")
}

// Inode numbers: instances take their catalog id plus instInoBase, so an instance
// keeps its st_ino across restarts; directories and synthetic files get numbers
// from disjoint ranges.
const (
	rootIno       = 1
	packagesIno   = 2
	packagesGzIno = 3
	instInoBase   = 1 << 8
	dirInoBase    = 1 << 56
)

// instFile is what the tree keeps per instance: enough for getattr and open, nothing
// that belongs in SQLite (metadata stays there).
type instFile struct {
	id        int64
	size      int64
	mtimeNs   int64
	mode      uint32
	blob      string
	buildID   int64
	buildTime int64
	gpkg      bool
}

func (f *instFile) ino() uint64 { return uint64(f.id) + instInoBase }

type dirSnap struct {
	ino      uint64
	children map[string]*entry
	once     sync.Once
	names    []string // sorted, built on first use
	nsub     int      // number of subdirectories, for st_nlink
}

type entry struct {
	dir  *dirSnap
	file *instFile
}

func (d *dirSnap) sortedNames() []string {
	d.once.Do(func() {
		d.names = make([]string, 0, len(d.children))
		for n := range d.children {
			d.names = append(d.names, n)
		}
		sort.Strings(d.names)
		for _, e := range d.children {
			if e.dir != nil {
				d.nsub++
			}
		}
	})
	return d.names
}

func (d *dirSnap) subdirs() int {
	d.sortedNames()
	return d.nsub
}

// snapshot is an immutable view of the tree for one catalog generation. Lookups,
// getattr and readdir are served from it without touching SQLite.
type snapshot struct {
	gen     int64
	mtimeNs int64 // directories show the index TIMESTAMP as their mtime
	root    *dirSnap
	dirs    map[string]*dirSnap // by relative path ("" is the root)
	files   map[int64]*instFile
	// paths lists the multi-instance (or, without that layout, the visible) path of
	// each instance, for the index.
	indexPath map[int64]string
	// conflicts names instances hidden because another took the same legacy name.
	conflicts []string
}

// inoAllocator hands out stable directory inode numbers for the life of the process.
type inoAllocator struct {
	mu     sync.Mutex
	next   uint64
	byPath map[string]uint64
}

func newInoAllocator() *inoAllocator {
	return &inoAllocator{next: dirInoBase, byPath: map[string]uint64{"": rootIno}}
}

func (a *inoAllocator) get(path string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ino, ok := a.byPath[path]; ok {
		return ino
	}
	a.next++
	a.byPath[path] = a.next
	return a.next
}

// buildSnapshot maps catalog instances (ordered by CPV, then BUILD_ID) onto the
// selected layouts.
func buildSnapshot(gen, timestamp int64, insts []catalog.Instance, lay Layouts, inos *inoAllocator) *snapshot {
	s := &snapshot{
		gen:       gen,
		mtimeNs:   timestamp * 1e9,
		dirs:      map[string]*dirSnap{},
		files:     make(map[int64]*instFile, len(insts)),
		indexPath: make(map[int64]string, len(insts)),
	}
	s.root = s.dir("", inos)
	legacyOwner := map[string]string{} // legacy name -> CPV holding it

	for i := 0; i < len(insts); {
		j := i
		for j < len(insts) && insts[j].CPV == insts[i].CPV {
			j++
		}
		group := insts[i:j]
		i = j

		var newest [2]*instFile // [xpak, gpkg]
		for k := range group {
			in := &group[k]
			f := &instFile{
				id: in.ID, size: in.Size, mtimeNs: in.MtimeNs, mode: in.Mode & 0o7777,
				blob: in.Blob, buildID: in.BuildID, buildTime: in.BuildTime,
				gpkg: in.Format == string(layout.FormatGpkg),
			}
			if f.mode == 0 {
				f.mode = 0o644
			}
			if in.Placeholder {
				f.size = 0
			}
			s.files[in.ID] = f
			format := layout.FormatXpak
			slot := 0
			if f.gpkg {
				format, slot = layout.FormatGpkg, 1
			}
			multi := layout.MultiPath(in.Category, in.PF, in.BuildID, format)
			if lay.Multi {
				s.add(multi, f, inos)
			}
			if !in.Placeholder {
				s.indexPath[in.ID] = multi
				if n := newest[slot]; n == nil || layout.Newer(f.buildTime, f.buildID, n.buildTime, n.buildID) {
					newest[slot] = f
				}
			}
		}
		in := &group[0]
		for slot, f := range newest {
			if f == nil {
				continue
			}
			format := layout.FormatXpak
			if slot == 1 {
				format = layout.FormatGpkg
			}
			if lay.Flat {
				p := layout.FlatPath(in.Category, in.PF, format)
				s.add(p, f, inos)
				if !lay.Multi {
					s.indexPath[f.id] = p
				}
			}
			if lay.Legacy {
				p := layout.LegacyPath(in.PF, format)
				if owner, taken := legacyOwner[p]; taken {
					s.conflicts = append(s.conflicts, fmt.Sprintf("%s: %s holds it, %s is not shown there", p, owner, in.CPV))
					continue
				}
				legacyOwner[p] = in.CPV
				s.add(p, f, inos)
				if !lay.Multi && !lay.Flat {
					s.indexPath[f.id] = p
				}
			}
		}
	}
	// Without the multi layout only the visible (newest) instances are indexed.
	if !lay.Multi {
		for id := range s.indexPath {
			if !s.visible(s.indexPath[id]) {
				delete(s.indexPath, id)
			}
		}
	}
	return s
}

func (s *snapshot) visible(p string) bool {
	dir, name := splitPath(p)
	d := s.dirs[dir]
	if d == nil {
		return false
	}
	_, ok := d.children[name]
	return ok
}

func splitPath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func (s *snapshot) dir(p string, inos *inoAllocator) *dirSnap {
	if d := s.dirs[p]; d != nil {
		return d
	}
	d := &dirSnap{ino: inos.get(p), children: map[string]*entry{}}
	s.dirs[p] = d
	if p != "" {
		parent, name := splitPath(p)
		s.dir(parent, inos).children[name] = &entry{dir: d}
	}
	return d
}

func (s *snapshot) add(p string, f *instFile, inos *inoAllocator) {
	dir, name := splitPath(p)
	s.dir(dir, inos).children[name] = &entry{file: f}
}

// changedNames lists (dir path, name) pairs whose target differs between two
// snapshots, so that only those kernel entries are invalidated.
func changedNames(old, cur *snapshot) [][2]string {
	var out [][2]string
	for p, od := range old.dirs {
		nd := cur.dirs[p]
		for name, oe := range od.children {
			var ne *entry
			if nd != nil {
				ne = nd.children[name]
			}
			if ne == nil || !sameTarget(oe, ne) {
				out = append(out, [2]string{p, name})
			}
		}
	}
	for p, nd := range cur.dirs {
		od := old.dirs[p]
		for name := range nd.children {
			if od == nil || od.children[name] == nil {
				out = append(out, [2]string{p, name})
			}
		}
	}
	return out
}

func sameTarget(a, b *entry) bool {
	if a.file != nil || b.file != nil {
		return a.file != nil && b.file != nil && a.file.id == b.file.id
	}
	return a.dir.ino == b.dir.ino
}
