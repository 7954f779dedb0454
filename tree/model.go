package tree

import (
	"context"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Inode numbers: instances take their catalog id plus instInoBase, with the
// mount's incarnation in bits 40-55 (Model.Ino); directories and synthetic
// files get numbers from disjoint ranges.
const (
	RootIno     = 1
	instInoBase = 1 << 8
	// incShift places the incarnation above any catalog id a state reaches
	// (2^40) and below DirInoBase.
	incShift = 40
	// DirInoBase starts the numbers of directories, given by path for the
	// life of the process.
	DirInoBase = 1 << 56
	// linkInoBase numbers alias symlinks by instance and kind: a symlink's
	// target never changes under its number, so the kernel may cache it.
	linkInoBase = 1 << 58
	// indexInoBase numbers Packages and Packages.gz by generation (IndexIno).
	indexInoBase = 1 << 60
)

// IndexIno is the inode number of Packages (or Packages.gz) of generation
// gen. Each generation is an inode of its own, of fixed size and content:
// fstat(2) reaches a FUSE filesystem without the file handle, so the size a
// reader of an open index gets (nginx's Content-Length) is right only if
// its inode stands for the generation it reads.
// IsIndexIno tells an inode number given by IndexIno.
func IsIndexIno(ino uint64) bool { return ino >= indexInoBase }

func IndexIno(gen int64, gz bool) uint64 {
	ino := uint64(indexInoBase) + uint64(gen)<<1
	if gz {
		ino++
	}
	return ino
}

// restampedIno marks the inode numbers of a generation served again with
// the TIMESTAMP the catalog recorded for it (IndexView.Restamped): other
// bytes, so another inode, whose pages the kernel never mixes with the
// first one's.
const restampedIno = 1 << 59

// File is one instance as the tree shows it: enough for getattr and open,
// nothing that belongs in the catalog. Immutable: a change makes a new File.
type File struct {
	ID      int64
	Size    int64
	MtimeNs int64
	Mode    uint32
	// The blob's name: its SHA-256 in binary when it is the usual
	// "hh/<sha256 hex>" (32 bytes instead of a 67-byte string per
	// instance), else blobName.
	blobSum     [32]byte
	blobName    string
	BuildID     int64
	BuildTime   int64
	Gpkg        bool
	Placeholder bool
	g           *group
}

// Blob is the instance's blob, relative to the blob directory ("" for a
// placeholder).
func (f *File) Blob() string {
	if f.blobName != "" || f.blobSum == ([32]byte{}) {
		return f.blobName
	}
	var b [67]byte
	hex.Encode(b[3:], f.blobSum[:])
	b[0], b[1], b[2] = b[3], b[4], '/'
	return string(b[:])
}

// setBlob keeps name compactly when it is a SHA-256 blob name.
func (f *File) setBlob(name string) {
	if len(name) == 67 && name[2] == '/' && name[:2] == name[3:5] {
		_, err := hex.Decode(f.blobSum[:], []byte(name[3:]))
		if err == nil && strings.ToLower(name) == name && f.blobSum != ([32]byte{}) {
			return
		}
		f.blobSum = [32]byte{}
	}
	f.blobName = name
}

// Ino is the inode number of instance f under every name. It differs
// between incarnations (SetIncarnation): a descriptor opened on an earlier
// mount of the state reads from a dead FUSE connection, and what tells its
// holder so is st_ino: nginx's open_file_cache reuses a descriptor while
// stat(2) of its path gives the same st_ino. XOR keeps numbers distinct
// within a mount whatever the id.
func (m *Model) Ino(f *File) uint64 {
	return (uint64(f.ID) + instInoBase) ^ uint64(m.incarnation)<<incShift
}

// SetIncarnation sets which mount of the state this model serves (0: none,
// numbers as the catalog gives them). Call it before Load: numbers never
// change under a mount.
func (m *Model) SetIncarnation(n uint16) { m.incarnation = n }

func (f *File) format() layout.Format {
	if f.Gpkg {
		return layout.FormatGpkg
	}
	return layout.FormatXpak
}

func (f *File) slot() int {
	if f.Gpkg {
		return 1
	}
	return 0
}

// MultiPath is the instance's multi-instance path (layout.MultiPath, with
// the PN the catalog keeps instead of parsing PF again).
func (f *File) MultiPath() string { return multiPath(f.g.cat, f.g.pn, f.g.pf, f.BuildID, f.Gpkg) }

func multiPath(cat, pn, pf string, buildID int64, gpkg bool) string {
	ext := ".xpak"
	if gpkg {
		ext = ".gpkg.tar"
	}
	return cat + "/" + pn + "/" + pf + "-" + strconv.FormatInt(buildID, 10) + ext
}

// CPV is the instance's category/package-version.
func (f *File) CPV() string { return f.g.cpv }

// Category and PF are the two halves of CPV.
func (f *File) Category() string { return f.g.cat }
func (f *File) PF() string       { return f.g.pf }

// Format is "xpak" or "gpkg".
func (f *File) Format() string { return string(f.format()) }

// group is the instances of one CPV.
type group struct {
	cpv, cat, pn, pf string
	files            []*File  // by build id
	newest           [2]*File // [xpak, gpkg], placeholders never
}

type child struct {
	d *dir
	f *File
}

// aliasKind tells an instance's file from its symlinks: the flat and All/
// names point at the one file of the instance (Portage's walk and tar then
// see each build once).
type aliasKind uint8

const (
	notAlias aliasKind = iota
	flatAlias
	legacyAlias
)

// aliasIn is what the instance names in directory dir are under the
// layouts shown (not stored per name: a million names would pay for it).
func (l Layouts) aliasIn(dir string) aliasKind {
	switch {
	case dir == "All" && l.Legacy && (l.Multi || l.Flat):
		return legacyAlias
	case l.Multi && dir != "" && strings.IndexByte(dir, '/') < 0:
		return flatAlias
	}
	return notAlias
}

// target is the relative symlink target of an alias of f.
func (m *Model) target(f *File, k aliasKind) string {
	g := f.g
	switch {
	case k == flatAlias:
		return f.MultiPath()[len(g.cat)+1:]
	case m.lay.Multi:
		return "../" + f.MultiPath()
	default:
		return "../" + layout.FlatPath(g.cat, g.pf, f.format())
	}
}

type dir struct {
	ino      uint64
	children map[string]child // nil while lazy
	nsub     int
	sorted   []string // nil when stale
	// lazy: a top directory (a category, or All/) whose names are made on
	// first use (materialize). The kernel caches no name in it until then,
	// so changes in it need no journal, and a mount of a million instances
	// does not build millions of names nobody has looked at.
	lazy bool
}

// claim is the CPVs whose newest instance of one format wants one All/ name;
// the first CPV in byte order shows there.
type claim struct{ owners []*group }

func (c *claim) ownersOrNil() []*group {
	if c == nil {
		return nil
	}
	return c.owners
}

func (c *claim) owner() *group {
	if c == nil || len(c.owners) == 0 {
		return nil
	}
	return c.owners[0]
}

// Model is the tree of one mount. Readers take a read lock per call; changes
// are applied by one writer at a time (Catchup).
type Model struct {
	lay         Layouts
	incarnation uint16 // see Ino

	// catchMu serialises the appliers (Catchup, BuildIndex); mu guards the
	// model against its readers.
	catchMu     sync.Mutex
	mu          sync.RWMutex
	gen         int64
	mtimeNs     int64
	dirs        map[string]*dir
	dirIno      map[string]uint64 // kept after a directory goes: its number stays its own
	nextIno     uint64
	groups      map[string]*group
	catGroups   map[string][]*group // a category's groups in cpv order, for materialize
	topNames    map[string]int      // names under each top directory, lazy or not
	legacy      map[string]*claim
	journal     journal
	conflictLog func(msg string)
	indexErrLog func(err error)
	// removed: the catalog's tombstones, by the path they are served at
	// under the removed area (see removed.go).
	removed removedSet

	// contentGen: the generation at which what the model shows (builds,
	// their mtime and mode, the header) last changed; a catchup that only
	// moves the generation leaves it (ContentGen).
	contentGen int64
	// index: nil until built (BuildIndex); then kept with the tree.
	idx   *indexState
	cache cacheState
}

// NewModel returns an empty model showing lay.
func NewModel(lay Layouts) *Model {
	m := &Model{lay: lay, dirs: map[string]*dir{}, dirIno: map[string]uint64{"": RootIno}, nextIno: DirInoBase,
		groups: map[string]*group{}, catGroups: map[string][]*group{}, topNames: map[string]int{}, legacy: map[string]*claim{}}
	m.dirs[""] = &dir{ino: RootIno, children: map[string]child{}}
	return m
}

// Layouts is what the model shows.
func (m *Model) Layouts() Layouts { return m.lay }

// SetInoSpace numbers this model's directories, its root included, apart
// from those of every model of another space (a channel's tree beside the
// mount's, space 0): tools that walk the mount (find, du, tar) tell
// directories by st_ino. Call it before Load; space < 1<<16.
func (m *Model) SetInoSpace(space uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if space == 0 {
		return
	}
	base := uint64(DirInoBase) + uint64(space)<<40
	m.dirIno[""], m.nextIno, m.dirs[""].ino = base, base, base
}

// ContentGen is the generation at which the builds the model shows, or
// the header, last changed (Load: the loaded generation). A view of the
// catalog (a channel) publishes a new index only when it moves.
func (m *Model) ContentGen() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.contentGen
}

// Packages counts the packages the model shows (no placeholders).
func (m *Model) Packages() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, g := range m.groups {
		for _, f := range g.files {
			if !f.Placeholder {
				n++
			}
		}
	}
	return n
}

// RootIno is the inode number of the model's root directory.
func (m *Model) RootIno() uint64 { return m.DirIno("") }

// SameGroup tells whether the model shows exactly insts for cpv: the same
// builds, with the same mtime and mode (what an index entry and a stat
// show). A view uses it to tell a change that reaches it from one that
// does not.
func (m *Model) SameGroup(cpv string, insts []catalog.Instance) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.sameGroupLocked(cpv, insts)
}

func (m *Model) sameGroupLocked(cpv string, insts []catalog.Instance) bool {
	g := m.groups[cpv]
	if g == nil {
		return len(insts) == 0
	}
	if len(g.files) != len(insts) {
		return false
	}
	for i, f := range g.files {
		in := &insts[i]
		if f.ID != in.ID || f.MtimeNs != in.MtimeNs || f.Mode != in.Mode || f.Placeholder != in.Placeholder {
			return false
		}
	}
	return true
}

// OnConflict sets where legacy-name conflicts are reported.
func (m *Model) OnConflict(fn func(msg string)) {
	m.mu.Lock()
	m.conflictLog = fn
	m.mu.Unlock()
}

// OnIndexError sets where a failure to keep the index is reported (the
// index is then dropped, and IndexReady is false until BuildIndex again).
func (m *Model) OnIndexError(fn func(err error)) {
	m.mu.Lock()
	m.indexErrLog = fn
	m.mu.Unlock()
}

// Gen is the catalog generation the model shows.
func (m *Model) Gen() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.gen
}

// MtimeNs is what directories show as mtime: the last TIMESTAMP, or the
// newest package's mtime when that is later.
func (m *Model) MtimeNs() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.mtimeNs
}

// SetMtime sets the directories' mtime (seconds), when a TIMESTAMP is assigned.
func (m *Model) SetMtime(ts int64) {
	m.mu.Lock()
	if ts*1e9 > m.mtimeNs {
		m.mtimeNs = ts * 1e9
	}
	m.mu.Unlock()
}

// Entry is one name of the tree.
type Entry struct {
	Name    string
	File    *File  // nil for a directory
	Ino     uint64 // of the directory, file or symlink
	Subdirs int    // a directory's subdirectories, for st_nlink
	// Link is the target when the name is a symlink to File's file (a
	// flat or All/ name); "" for the file itself.
	Link string
}

// IsDir tells a directory from a file.
func (e Entry) IsDir() bool { return e.File == nil }

// Type is the entry's file type bits (S_IFDIR, S_IFLNK or S_IFREG).
func (e Entry) Type() uint32 {
	switch {
	case e.IsDir():
		return syscall.S_IFDIR
	case e.IsLink():
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// IsLink tells a symlink to an instance from its file.
func (e Entry) IsLink() bool { return e.Link != "" }

func (m *Model) entry(c child, name string, alias aliasKind) Entry {
	switch {
	case c.d != nil:
		return Entry{Name: name, Ino: c.d.ino, Subdirs: c.d.nsub}
	case alias != notAlias:
		return Entry{Name: name, File: c.f, Ino: linkInoBase + uint64(c.f.ID)<<2 + uint64(alias), Link: m.target(c.f, alias)}
	}
	return Entry{Name: name, File: c.f, Ino: m.Ino(c.f)}
}

// Lookup returns what name shows in directory dir.
func (m *Model) Lookup(dirPath, name string) (Entry, bool) {
	// A directory's attributes count its subdirectories: a lazy top
	// directory looked up in the root is made first.
	top := topOf(dirPath)
	if dirPath == "" {
		top = name
	}
	m.rlockMade(top)
	defer m.mu.RUnlock()
	d := m.dirs[dirPath]
	if d == nil {
		return Entry{}, false
	}
	c, ok := d.children[name]
	if !ok {
		return Entry{}, false
	}
	return m.entry(c, name, m.lay.aliasIn(dirPath)), true
}

// rlockMade read-locks the model with the top directory top made
// (materialize), taking the write lock for that when needed.
func (m *Model) rlockMade(top string) {
	m.mu.RLock()
	if d := m.dirs[top]; d == nil || !d.lazy {
		return
	}
	m.mu.RUnlock()
	m.makeTop(top)
	// Tops are never made lazy again, so the check need not be repeated.
	m.mu.RLock()
}

// makeTop makes the top directory top if it is lazy.
func (m *Model) makeTop(top string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.dirs[top]; d != nil && d.lazy {
		m.materialize(top, d)
	}
}

// MakeCategories makes every lazy category directory, one at a time, each
// under the write lock alone (a few milliseconds at a million instances), until
// ctx is done. All/ stays lazy: making it holds the lock for as long as
// the whole catalog takes, and few clients look there.
func (m *Model) MakeCategories(ctx context.Context) {
	m.mu.RLock()
	var tops []string
	for name, c := range m.dirs[""].children {
		if c.d != nil && c.d.lazy && name != "All" {
			tops = append(tops, name)
		}
	}
	m.mu.RUnlock()
	sort.Strings(tops)
	for _, top := range tops {
		if ctx.Err() != nil {
			return
		}
		m.makeTop(top)
	}
}

// materialize makes the names of the lazy top directory top.
func (m *Model) materialize(top string, d *dir) {
	d.lazy = false
	d.children = map[string]child{}
	add := func(p string, f *File) {
		dp, name := SplitPath(p)
		dd := m.mkdirAll(dp, false)
		dd.children[name] = child{f: f}
	}
	if top == "All" && m.lay.Legacy {
		for p, c := range m.legacy {
			g := c.owner()
			for _, f := range g.newest {
				if f != nil && layout.LegacyPath(g.pf, f.format()) == p {
					add(p, f)
				}
			}
		}
	}
	prefix := top + "/"
	for _, g := range m.catGroups[top] {
		m.eachName(g, func(p string, f *File) {
			if strings.HasPrefix(p, prefix) {
				add(p, f)
			}
		})
	}
}

// Dir returns the directory at path itself.
func (m *Model) Dir(path string) (Entry, bool) {
	m.rlockMade(topOf(path))
	defer m.mu.RUnlock()
	d := m.dirs[path]
	if d == nil {
		return Entry{}, false
	}
	_, name := SplitPath(path)
	return Entry{Name: name, Ino: d.ino, Subdirs: d.nsub}, true
}

// HasChildren tells whether the directory at path shows any catalog name.
func (m *Model) HasChildren(path string) bool {
	m.rlockMade(topOf(path))
	defer m.mu.RUnlock()
	d := m.dirs[path]
	return d != nil && len(d.children) > 0
}

// ReadDir lists a directory in name order.
func (m *Model) ReadDir(path string) ([]Entry, bool) {
	m.rlockMade(topOf(path))
	d := m.dirs[path]
	if d == nil {
		m.mu.RUnlock()
		return nil, false
	}
	names := d.sorted
	if names == nil {
		// Sorting under the write lock keeps the cached order consistent
		// with the children it was made from.
		m.mu.RUnlock()
		m.mu.Lock()
		if d = m.dirs[path]; d == nil {
			m.mu.Unlock()
			return nil, false
		}
		if d.sorted == nil {
			d.sorted = make([]string, 0, len(d.children))
			for n := range d.children {
				d.sorted = append(d.sorted, n)
			}
			sort.Strings(d.sorted)
		}
		m.mu.Unlock()
		m.mu.RLock()
		if d = m.dirs[path]; d == nil || d.sorted == nil {
			m.mu.RUnlock()
			return m.ReadDir(path)
		}
		names = d.sorted
	}
	out := make([]Entry, 0, len(names))
	alias := m.lay.aliasIn(path)
	for _, n := range names {
		out = append(out, m.entry(d.children[n], n, alias))
	}
	m.mu.RUnlock()
	return out, true
}

// File returns the instance of cpv with this id as the tree shows it now.
func (m *Model) File(cpv string, id int64) *File {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.fileLocked(cpv, id)
}

func (m *Model) fileLocked(cpv string, id int64) *File {
	if g := m.groups[cpv]; g != nil {
		for _, f := range g.files {
			if f.ID == id {
				return f
			}
		}
	}
	return nil
}

// IndexPath is the PATH the index gives the instance ("" if not indexed).
func (m *Model) IndexPath(cpv string, id int64) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f := m.fileLocked(cpv, id)
	if f == nil {
		return ""
	}
	return m.indexPath(f)
}

// DirIno is the inode number of a directory path, stable for the life of
// the model (also for scratch directories the tree does not show).
func (m *Model) DirIno(path string) uint64 {
	m.mu.RLock()
	ino, ok := m.dirIno[path]
	m.mu.RUnlock()
	if ok {
		return ino
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dirInoLocked(path)
}

func (m *Model) dirInoLocked(path string) uint64 {
	if ino, ok := m.dirIno[path]; ok {
		return ino
	}
	m.nextIno++
	m.dirIno[path] = m.nextIno
	return m.nextIno
}

// SplitPath splits a slash path into its directory ("" at the root) and
// its last name.
func SplitPath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// indexPath: with the multi layout every package instance by its multi
// path; without it only the visible newest ones, by their flat (else All/) name.
func (m *Model) indexPath(f *File) string {
	if f.Placeholder {
		return ""
	}
	if m.lay.Multi {
		return f.MultiPath()
	}
	g := f.g
	if g.newest[f.slot()] != f {
		return ""
	}
	if m.lay.Flat {
		return layout.FlatPath(g.cat, g.pf, f.format())
	}
	if m.lay.Legacy {
		p := layout.LegacyPath(g.pf, f.format())
		if m.legacy[p].owner() == g {
			return p
		}
	}
	return ""
}

// names adds every path group g shows, with its file, to out.
func (m *Model) names(g *group, out map[string]*File) {
	m.eachName(g, func(p string, f *File) { out[p] = f })
}

// eachName calls fn with every path group g shows and its file (each path
// once).
func (m *Model) eachName(g *group, fn func(p string, f *File)) {
	if m.lay.Multi {
		for _, f := range g.files {
			fn(f.MultiPath(), f)
		}
	}
	for _, f := range g.newest {
		if f == nil {
			continue
		}
		if m.lay.Flat {
			fn(layout.FlatPath(g.cat, g.pf, f.format()), f)
		}
		if m.lay.Legacy {
			p := layout.LegacyPath(g.pf, f.format())
			if m.legacy[p].owner() == g {
				fn(p, f)
			}
		}
	}
}

func newGroup(cpv string, insts []catalog.Instance) *group {
	in := &insts[0]
	g := &group{cpv: cpv, cat: in.Category, pn: in.PN, pf: in.PF}
	for k := range insts {
		in := &insts[k]
		f := &File{ID: in.ID, Size: in.Size, MtimeNs: in.MtimeNs, Mode: in.Mode & 0o7777,
			BuildID: in.BuildID, BuildTime: in.BuildTime, Gpkg: in.Format == string(layout.FormatGpkg),
			Placeholder: in.Placeholder, g: g}
		f.setBlob(in.Blob)
		if f.Mode == 0 {
			f.Mode = 0o644
		}
		if f.Placeholder {
			f.Size = 0
		} else if n := g.newest[f.slot()]; n == nil || layout.Newer(f.BuildTime, f.BuildID, n.BuildTime, n.BuildID) {
			g.newest[f.slot()] = f
		}
		g.files = append(g.files, f)
	}
	return g
}

func (g *group) legacyNames() []string {
	var out []string
	for _, f := range g.newest {
		if f != nil {
			out = append(out, layout.LegacyPath(g.pf, f.format()))
		}
	}
	return out
}

// setGroup makes the model show cpv as insts (none: gone) and returns the
// groups whose index entries changed: cpv's own, and others whose All/ name
// changed hands (their entries carry that name only without multi and flat).
func (m *Model) setGroup(cpv string, insts []catalog.Instance) (old *group, reindex []*group) {
	old = m.groups[cpv]
	var g *group
	if len(insts) > 0 {
		g = newGroup(cpv, insts)
	}
	// Every group whose names may change: this one, and the claimants of
	// the All/ names it held or wants.
	affected := map[string]*group{}
	var claims []string
	if m.lay.Legacy {
		for _, x := range []*group{old, g} {
			if x != nil {
				claims = append(claims, x.legacyNames()...)
			}
		}
		for _, p := range claims {
			if c := m.legacy[p]; c != nil {
				for _, o := range c.owners {
					affected[o.cpv] = o
				}
			}
		}
	}
	before := map[string]*File{}
	if old != nil {
		m.names(old, before)
	}
	ownerBefore := map[string]*group{}
	for _, p := range claims {
		ownerBefore[p] = m.legacy[p].owner()
	}
	for cv, o := range affected {
		if cv != cpv {
			m.names(o, before)
		}
	}

	// Swap the group and its claims.
	if old != nil {
		for _, p := range old.legacyNames() {
			if c := m.legacy[p]; c != nil {
				c.owners = removeGroup(c.owners, old)
				if len(c.owners) == 0 {
					delete(m.legacy, p)
				}
			}
		}
	}
	if g != nil {
		m.register(g)
	} else {
		delete(m.groups, cpv)
		if old != nil {
			m.setCatGroup(old.cat, cpv, nil)
		}
	}

	after := map[string]*File{}
	if g != nil {
		m.names(g, after)
	}
	for cv, o := range affected {
		if cv != cpv {
			m.names(o, after)
		}
	}
	// Removals first: an All/ name changing hands is one path in both maps.
	for p, f := range before {
		if after[p] == nil {
			m.unlinkPath(p, f)
		}
	}
	for p, f := range after {
		if b := before[p]; b != f {
			m.linkPath(p, f, b)
		}
	}
	if g != nil {
		reindex = append(reindex, g)
	}
	for _, p := range claims {
		if ob, nb := ownerBefore[p], m.legacy[p].owner(); ob != nb {
			for _, x := range []*group{ob, nb} {
				if x != nil && x.cpv != cpv {
					reindex = append(reindex, x)
				}
			}
		}
	}
	return old, reindex
}

// register makes g's instances and All/ claims known; its names are made
// apart from this.
func (m *Model) register(g *group) {
	m.groups[g.cpv] = g
	// Directories show the newest of the last TIMESTAMP and the packages'
	// mtimes: a catalog that never served its index is not from 1970.
	for _, f := range g.files {
		m.mtimeNs = max(m.mtimeNs, f.MtimeNs)
	}
	m.setCatGroup(g.cat, g.cpv, g)
	if !m.lay.Legacy {
		return
	}
	for _, p := range g.legacyNames() {
		c := m.legacy[p]
		if c == nil {
			c = &claim{}
			m.legacy[p] = c
		}
		c.owners = insertGroup(c.owners, g)
		if len(c.owners) > 1 && m.conflictLog != nil {
			hidden := g
			if c.owners[0] == g {
				hidden = c.owners[1]
			}
			m.conflictLog(p + ": " + c.owners[0].cpv + " holds it, " + hidden.cpv + " is not shown there")
		}
	}
}

// setCatGroup makes g (nil: none) the group of cpv in its category's list.
func (m *Model) setCatGroup(cat, cpv string, g *group) {
	s := m.catGroups[cat]
	// A load comes in cpv order: appending is the common case.
	if n := len(s); g != nil && (n == 0 || s[n-1].cpv < cpv) {
		m.catGroups[cat] = append(s, g)
		return
	}
	i, found := slices.BinarySearchFunc(s, cpv, func(x *group, cpv string) int { return strings.Compare(x.cpv, cpv) })
	switch {
	case found && g != nil:
		s[i] = g
	case found:
		s = slices.Delete(s, i, i+1)
		if len(s) == 0 {
			delete(m.catGroups, cat)
			return
		}
		m.catGroups[cat] = s
	case g != nil:
		m.catGroups[cat] = slices.Insert(s, i, g)
	}
}

func insertGroup(s []*group, g *group) []*group {
	i := sort.Search(len(s), func(i int) bool { return s[i].cpv >= g.cpv })
	s = append(s, nil)
	copy(s[i+1:], s[i:])
	s[i] = g
	return s
}

func removeGroup(s []*group, g *group) []*group {
	for i, x := range s {
		if x.cpv == g.cpv {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// topOf is the top directory of a path (a category, or All).
func topOf(p string) string {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return p
}

// unlinkPath removes the name p (showing f) and directories left empty.
func (m *Model) unlinkPath(p string, f *File) {
	top := topOf(p)
	td := m.dirs[top]
	if td == nil {
		return
	}
	if td.lazy {
		if m.topNames[top]--; m.topNames[top] <= 0 {
			delete(m.topNames, top)
			m.removeTop(top)
		}
		return
	}
	dp, name := SplitPath(p)
	d := m.dirs[dp]
	if d == nil {
		return
	}
	if c, ok := d.children[name]; !ok || c.f == nil {
		return
	}
	if m.topNames[top]--; m.topNames[top] <= 0 {
		delete(m.topNames, top)
	}
	delete(d.children, name)
	d.sorted = nil
	m.journal.add(dp, name)
	for dp != "" && len(d.children) == 0 {
		delete(m.dirs, dp)
		parent, base := SplitPath(dp)
		pd := m.dirs[parent]
		delete(pd.children, base)
		pd.nsub--
		pd.sorted = nil
		m.journal.add(parent, base)
		dp, d = parent, pd
	}
}

// newTop adds a lazy top directory to the root.
func (m *Model) newTop(top string) *dir {
	td := &dir{ino: m.dirInoLocked(top), lazy: true}
	m.dirs[top] = td
	root := m.dirs[""]
	root.children[top] = child{d: td}
	root.nsub++
	root.sorted = nil
	m.journal.add("", top)
	return td
}

// addTop counts n names of a model being loaded under top.
func (m *Model) addTop(top string, n int) {
	if m.dirs[top] == nil {
		m.newTop(top)
	}
	m.topNames[top] += n
}

// removeTop removes a lazy top directory that shows nothing any more.
func (m *Model) removeTop(top string) {
	root := m.dirs[""]
	delete(m.dirs, top)
	delete(root.children, top)
	root.nsub--
	root.sorted = nil
	m.journal.add("", top)
}

// linkPath makes p show f; prev is what it showed (nil: nothing).
func (m *Model) linkPath(p string, f, prev *File) {
	top := topOf(p)
	if prev == nil {
		m.topNames[top]++
	}
	td := m.dirs[top]
	if td == nil {
		// A new top directory starts lazy, as at load.
		td = m.newTop(top)
	}
	if td.lazy {
		return
	}
	dp, name := SplitPath(p)
	d := m.mkdirAll(dp, true)
	if _, ok := d.children[name]; !ok {
		d.sorted = nil
	}
	d.children[name] = child{f: f}
	if prev == nil || prev.ID != f.ID {
		m.journal.add(dp, name)
	}
}

// mkdirAll makes the directories of path p; journal: whether the kernel may
// have seen their parents (not so while a top directory is made).
func (m *Model) mkdirAll(p string, journal bool) *dir {
	if d := m.dirs[p]; d != nil {
		return d
	}
	parent, name := SplitPath(p)
	pd := m.mkdirAll(parent, journal)
	d := &dir{ino: m.dirInoLocked(p), children: map[string]child{}}
	m.dirs[p] = d
	pd.children[name] = child{d: d}
	pd.nsub++
	pd.sorted = nil
	if journal {
		m.journal.add(parent, name)
	}
	return d
}

// Names is a (directory, name) pair the kernel may have cached.
type Name struct{ Dir, Name string }

// journal remembers the names the last changes touched, so that a caller
// can invalidate exactly those (ChangedSince).
type journal struct {
	seq     uint64 // of the newest entry
	entries []journalEntry
}

type journalEntry struct {
	seq  uint64
	name Name
}

// journalKeep bounds the journal; a caller further behind invalidates more.
const journalKeep = 1 << 14

func (j *journal) add(dir, name string) {
	j.seq++
	j.entries = append(j.entries, journalEntry{j.seq, Name{dir, name}})
	if len(j.entries) > 2*journalKeep {
		j.entries = append(j.entries[:0], j.entries[len(j.entries)-journalKeep:]...)
	}
}

// Seq marks the present, for ChangedSince.
func (m *Model) Seq() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.journal.seq
}

// ChangedSince lists the names changed after seq; ok is false when the
// journal no longer reaches back that far.
func (m *Model) ChangedSince(seq uint64) (names []Name, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.journal.entries
	i := sort.Search(len(e), func(i int) bool { return e[i].seq > seq })
	if seq < m.journal.seq && (len(e) == 0 || e[0].seq > seq+1) {
		return nil, false
	}
	seen := make(map[Name]bool, len(e)-i)
	for _, x := range e[i:] {
		if !seen[x.name] {
			seen[x.name] = true
			names = append(names, x.name)
		}
	}
	return names, true
}

// FileOf is the File of an instance the tree may not show yet (a commit
// the model has not applied).
func FileOf(in *catalog.Instance) *File {
	return newGroup(in.CPV, []catalog.Instance{*in}).files[0]
}
