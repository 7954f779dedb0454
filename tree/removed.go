package tree

import (
	"slices"
	"strings"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// RemovedDir is the hidden directory (not listed, like a .snapshot
// directory) where a removed build stays readable at its index PATH for its
// removal grace: a binhost client that fetched the index before the removal
// can still download what it lists (the shipped nginx site falls back to
// it). What it shows is the catalog's tombstones, so it survives restarts
// and shows every process's removals.
const RemovedDir = ".pkgdirfs/removed"

// removedSet is the tombstones as the tree shows them.
type removedSet struct {
	files map[string]*File    // path below RemovedDir -> the removed build
	byCPV map[string][]string // cpv -> its paths in files
	dirs  map[string]int      // directory below RemovedDir -> paths under it
}

// removedPath is where a tombstone is served below RemovedDir: its index
// PATH in this model's layouts.
func (m *Model) removedPath(t *catalog.Tombstone) string {
	f := layout.Format(t.Format)
	switch {
	case m.lay.Multi:
		return t.Path()
	case m.lay.Flat:
		return layout.FlatPath(t.Category, t.PF, f)
	default:
		return layout.LegacyPath(t.PF, f)
	}
}

// setRemoved replaces the tombstones of cpv with ts (under m.mu) and
// journals the names that changed.
func (m *Model) setRemoved(cpv string, ts []catalog.Tombstone) {
	r := &m.removed
	if r.files == nil {
		r.files, r.byCPV, r.dirs = map[string]*File{}, map[string][]string{}, map[string]int{}
	}
	for _, p := range r.byCPV[cpv] {
		delete(r.files, p)
		m.journalRemoved(p)
		for d := parentOf(p); d != ""; d = parentOf(d) {
			if r.dirs[d]--; r.dirs[d] <= 0 {
				delete(r.dirs, d)
			}
		}
	}
	delete(r.byCPV, cpv)
	for i := range ts {
		p := m.removedPath(&ts[i])
		if _, dup := r.files[p]; dup {
			continue // two tombstones at one flat name: the first (lowest build id) is served
		}
		r.files[p] = FileOf(&ts[i].Instance)
		r.byCPV[cpv] = append(r.byCPV[cpv], p)
		m.journalRemoved(p)
		for d := parentOf(p); d != ""; d = parentOf(d) {
			r.dirs[d]++
		}
	}
}

// journalRemoved journals the removed-area names from p up to RemovedDir,
// so that the kernel forgets what it cached of them.
func (m *Model) journalRemoved(p string) {
	for q := RemovedDir + "/" + p; q != RemovedDir; {
		dir, name := SplitPath(q)
		m.journal.add(dir, name)
		q = dir
	}
}

// parentOf is the directory of p ("" at the top).
func parentOf(p string) string {
	dir, _ := SplitPath(p)
	return dir
}

// LookupRemoved resolves rest, a path below RemovedDir ("" for RemovedDir
// itself): the removed build served there, or whether it is a directory.
func (m *Model) LookupRemoved(rest string) (f *File, dir bool) {
	if rest == "" {
		return nil, true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if f := m.removed.files[rest]; f != nil {
		return f, false
	}
	return nil, m.removed.dirs[rest] > 0
}

// ReadRemoved lists the directory rest below RemovedDir, by name.
func (m *Model) ReadRemoved(rest string) []Entry {
	prefix := ""
	if rest != "" {
		prefix = rest + "/"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	var out []Entry
	add := func(p string, f *File) {
		if !strings.HasPrefix(p, prefix) {
			return
		}
		tail := p[len(prefix):]
		if i := strings.IndexByte(tail, '/'); i >= 0 {
			tail = tail[:i]
			f = nil
		}
		if seen[tail] {
			return
		}
		seen[tail] = true
		e := Entry{Name: tail, File: f}
		if f != nil {
			e.Ino = m.Ino(f)
		} else {
			e.Ino = m.dirInoLocked(RemovedDir + "/" + prefix + tail)
		}
		out = append(out, e)
	}
	for p, f := range m.removed.files {
		add(p, f)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RemovedCount is how many removed builds the tree serves.
func (m *Model) RemovedCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.removed.files)
}
