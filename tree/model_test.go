package tree

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
	"pkgdirfs/tree/pieces"
)

func inst(id int64, cat, pn, pf string, buildID, buildTime int64, format string) catalog.Instance {
	return catalog.Instance{ID: id, Category: cat, PN: pn, PF: pf, CPV: cat + "/" + pf,
		BuildID: buildID, BuildTime: buildTime, Format: format, Size: 100 * id, Blob: "b"}
}

func loaded(lay Layouts, insts []catalog.Instance) *Model {
	m := NewModel(lay)
	m.loadAll(insts)
	return m
}

// files lists every file path of the model with the instance id it shows,
// and every directory with its subdirectory count, walking from the root.
func files(m *Model) []string {
	var out []string
	var walk func(p string)
	walk = func(p string) {
		ents, ok := m.ReadDir(p)
		if !ok {
			out = append(out, p+": missing")
			return
		}
		for _, e := range ents {
			full := e.Name
			if p != "" {
				full = p + "/" + e.Name
			}
			if e.IsDir() {
				// ReadDir counts no subdirectories of a lazy directory:
				// Dir makes it.
				d, _ := m.Dir(full)
				out = append(out, fmt.Sprintf("%s/ (%d)", full, d.Subdirs))
				walk(full)
			} else {
				out = append(out, full+"="+strconv.FormatInt(e.File.ID, 10))
			}
		}
	}
	walk("")
	return out
}

func fileNames(m *Model) []string {
	var out []string
	for _, s := range files(m) {
		if !strings.HasSuffix(s, ")") {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func TestModelLayouts(t *testing.T) {
	insts := []catalog.Instance{
		// hello: build 2 is newest by BUILD_TIME although build 3 has the higher id.
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
		inst(3, "app-misc", "hello", "hello-2.10", 3, 200, "xpak"),
		inst(4, "app-misc", "hello", "hello-2.10", 4, 50, "gpkg"),
		// equal BUILD_TIME: the higher BUILD_ID wins.
		inst(5, "dev-libs", "foo", "foo-1", 1, 10, "gpkg"),
		inst(6, "dev-libs", "foo", "foo-1", 2, 10, "gpkg"),
		// same PF in another category: All/ can show only one of them.
		inst(7, "dev-perl", "foo", "foo-1", 1, 10, "gpkg"),
	}
	var conflicts []string
	m := NewModel(AllLayouts)
	m.OnConflict(func(s string) { conflicts = append(conflicts, s) })
	m.loadAll(insts)
	want := []string{
		"All/foo-1.gpkg.tar=6",
		"All/hello-2.10.gpkg.tar=4",
		"All/hello-2.10.tbz2=2",
		"app-misc/hello-2.10.gpkg.tar=4",
		"app-misc/hello-2.10.tbz2=2",
		"app-misc/hello/hello-2.10-1.xpak=1",
		"app-misc/hello/hello-2.10-2.xpak=2",
		"app-misc/hello/hello-2.10-3.xpak=3",
		"app-misc/hello/hello-2.10-4.gpkg.tar=4",
		"dev-libs/foo-1.gpkg.tar=6",
		"dev-libs/foo/foo-1-1.gpkg.tar=5",
		"dev-libs/foo/foo-1-2.gpkg.tar=6",
		"dev-perl/foo-1.gpkg.tar=7",
		"dev-perl/foo/foo-1-1.gpkg.tar=7",
	}
	if got := fileNames(m); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(conflicts) != 1 || !strings.Contains(conflicts[0], "dev-perl/foo-1") {
		t.Errorf("conflicts = %q, want one naming dev-perl/foo-1", conflicts)
	}
	if got := m.IndexPath("app-misc/hello-2.10", 1); got != "app-misc/hello/hello-2.10-1.xpak" {
		t.Errorf("index path of 1 = %q", got)
	}
	for _, in := range insts {
		f := m.File(in.CPV, in.ID)
		if got, want := f.MultiPath(), layout.MultiPath(in.Category, in.PF, in.BuildID, layout.Format(in.Format)); got != want {
			t.Errorf("MultiPath of %d = %q, layout says %q", in.ID, got, want)
		}
	}
	// One file per instance: the flat and All/ names are symlinks to it.
	a, _ := m.Lookup("app-misc", "hello-2.10.tbz2")
	b, _ := m.Lookup("app-misc/hello", "hello-2.10-2.xpak")
	c, _ := m.Lookup("All", "hello-2.10.tbz2")
	if b.IsLink() || b.Ino != uint64(2)+instInoBase {
		t.Errorf("multi name of instance 2: %+v, want its file (ino %d)", b, uint64(2)+instInoBase)
	}
	if a.File != b.File || a.Link != "hello/hello-2.10-2.xpak" || a.Ino == b.Ino {
		t.Errorf("flat name of instance 2: %+v, want a symlink of its own number to hello/hello-2.10-2.xpak", a)
	}
	if c.File != b.File || c.Link != "../app-misc/hello/hello-2.10-2.xpak" || c.Ino == a.Ino || c.Ino == b.Ino {
		t.Errorf("All/ name of instance 2: %+v, want a symlink of its own number to ../app-misc/hello/hello-2.10-2.xpak", c)
	}
	cat, _ := m.Dir("app-misc")
	root, _ := m.Dir("")
	if cat.Subdirs != 1 || root.Subdirs != 4 {
		t.Errorf("subdirs: app-misc %d (want 1), root %d (want 4: All + 3 categories)", cat.Subdirs, root.Subdirs)
	}
}

// TestModelIncarnation: an instance's number differs between two mounts of
// the same catalog (so a descriptor of the earlier one fails nginx's
// st_ino check), is the same under every name within one, and stays out
// of the ranges of directories, symlinks and the index.
func TestModelIncarnation(t *testing.T) {
	insts := []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 200, "gpkg"),
		inst(1<<40-instInoBase-1, "dev-libs", "foo", "foo-1", 1, 100, "xpak"), // the largest id below the incarnation bits
	}
	nums := map[uint16]map[int64]uint64{}
	for _, inc := range []uint16{0, 1, 2, 1<<16 - 1} {
		m := NewModel(AllLayouts)
		m.SetIncarnation(inc)
		m.loadAll(insts)
		nums[inc] = map[int64]uint64{}
		for _, in := range insts {
			f := m.File(in.CPV, in.ID)
			ino := m.Ino(f)
			nums[inc][in.ID] = ino
			multi := f.MultiPath()
			e, ok := m.Lookup(filepath.Dir(multi), filepath.Base(multi))
			if !ok || e.Ino != ino {
				t.Errorf("incarnation %d: %s has number %d (found %v), Ino says %d", inc, multi, e.Ino, ok, ino)
			}
			if ino >= DirInoBase || ino < instInoBase {
				t.Errorf("incarnation %d: instance %d has number %#x, outside the instances' range", inc, in.ID, ino)
			}
			if inc == 0 && ino != uint64(in.ID)+instInoBase {
				t.Errorf("incarnation 0: instance %d has number %d, want the catalog's %d", in.ID, ino, uint64(in.ID)+instInoBase)
			}
		}
	}
	seen := map[uint64]string{}
	for inc, byID := range nums {
		for id, ino := range byID {
			who := fmt.Sprintf("instance %d in incarnation %d", id, inc)
			if other, dup := seen[ino]; dup {
				t.Errorf("%s and %s have the same number %d", who, other, ino)
			}
			seen[ino] = who
		}
	}
}

func TestModelNarrowLayouts(t *testing.T) {
	insts := []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
	}
	flat := loaded(Layouts{Flat: true}, insts)
	if got := strings.Join(fileNames(flat), " "); got != "app-misc/hello-2.10.tbz2=2" {
		t.Errorf("flat tree = %s", got)
	}
	if flat.IndexPath("app-misc/hello-2.10", 1) != "" || flat.IndexPath("app-misc/hello-2.10", 2) != "app-misc/hello-2.10.tbz2" {
		t.Errorf("flat index paths = %q %q, want only the visible newest", flat.IndexPath("app-misc/hello-2.10", 1), flat.IndexPath("app-misc/hello-2.10", 2))
	}
	multi := loaded(Layouts{Multi: true}, insts)
	if _, ok := multi.Dir("All"); ok {
		t.Error("multi-only tree has All/")
	}
	if ents, _ := multi.ReadDir("app-misc"); len(ents) != 1 {
		t.Errorf("multi-only app-misc/ holds %d entries, want just hello/", len(ents))
	}
	legacy := loaded(Layouts{Legacy: true}, insts)
	if got := strings.Join(fileNames(legacy), " "); got != "All/hello-2.10.tbz2=2" {
		t.Errorf("legacy tree = %s", got)
	}
	for _, bad := range []string{"mult", "flat,nope", "all,x"} {
		if _, err := ParseLayouts(bad); err == nil {
			t.Errorf("ParseLayouts(%q) accepted", bad)
		}
	}
	if l, err := ParseLayouts("flat,legacy"); err != nil || l != (Layouts{Flat: true, Legacy: true}) {
		t.Errorf("ParseLayouts(flat,legacy) = %v, %v", l, err)
	}
}

func TestModelSetGroupJournal(t *testing.T) {
	m := loaded(AllLayouts, []catalog.Instance{inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak")})
	// Top directories are made on first use; until then nothing in them is
	// journaled (the kernel cannot have cached it), but their coming and
	// going in the root is.
	seq := m.Seq()
	m.mu.Lock()
	m.setGroup("dev-libs/foo-1", []catalog.Instance{inst(9, "dev-libs", "foo", "foo-1", 1, 100, "xpak")})
	m.mu.Unlock()
	if names, ok := m.ChangedSince(seq); !ok || !slices.Equal(names, []Name{{"", "dev-libs"}}) {
		t.Errorf("new category journaled as %v (%v), want only its root entry", names, ok)
	}
	if got := fileNames(m); !slices.Contains(got, "dev-libs/foo/foo-1-1.xpak=9") || !slices.Contains(got, "All/foo-1.tbz2=9") {
		t.Errorf("a lazy directory, made after a change, lacks it: %q", got)
	}
	seq = m.Seq()
	m.mu.Lock()
	m.setGroup("dev-libs/foo-1", nil)
	m.mu.Unlock()
	if names, _ := m.ChangedSince(seq); !slices.Contains(names, Name{"", "dev-libs"}) || !slices.Contains(names, Name{"All", "foo-1.tbz2"}) {
		t.Errorf("removal journaled as %v", names)
	}
	ino, _ := m.Dir("app-misc")
	seq = m.Seq()
	m.mu.Lock()
	m.setGroup("app-misc/hello-2.10", []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
	})
	m.mu.Unlock()
	names, ok := m.ChangedSince(seq)
	var got []string
	for _, n := range names {
		got = append(got, n.Dir+"|"+n.Name)
	}
	slices.Sort(got)
	want := "All|hello-2.10.tbz2 app-misc/hello|hello-2.10-2.xpak app-misc|hello-2.10.tbz2"
	if !ok || strings.Join(got, " ") != want {
		t.Errorf("changed = %q (%v), want %q", strings.Join(got, " "), ok, want)
	}
	if now, _ := m.Dir("app-misc"); now.Ino != ino.Ino {
		t.Error("directory inode changed between generations")
	}
	// Removing the last instance removes the directories it alone kept.
	seq = m.Seq()
	m.mu.Lock()
	m.setGroup("app-misc/hello-2.10", nil)
	m.mu.Unlock()
	if got := files(m); len(got) != 0 {
		t.Errorf("tree after removing everything: %q", got)
	}
	names, _ = m.ChangedSince(seq)
	if !slices.Contains(names, Name{"", "app-misc"}) || !slices.Contains(names, Name{"", "All"}) {
		t.Errorf("removed directories not in the journal: %v", names)
	}
	if _, ok := m.ChangedSince(0); ok {
		// The journal starts empty at load; seq 0 is before it, which is fine
		// only while no entry was trimmed.
		if len(m.journal.entries) > 0 && m.journal.entries[0].seq > 1 {
			t.Error("ChangedSince claims a trimmed past")
		}
	}
}

// world drives a real catalog through random changes, as commits, removals,
// chmods, header writes and imports would.
type world struct {
	t   *testing.T
	db  *catalog.DB
	rng *rand.Rand
	ids []int64
}

// newWorld opens a fresh catalog (closed when the test ends) and makes
// steps random changes to it, drawn with the seed (s1, s2).
func newWorld(t *testing.T, s1, s2 uint64, steps int) *world {
	t.Helper()
	db, err := catalog.OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Removals keep their builds for a grace (tombstones, served in the
	// removed area), which steps end now and then.
	if err := db.SetRemovedGrace(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, db: db, rng: rand.New(rand.NewPCG(s1, s2))}
	for range steps {
		w.step()
	}
	return w
}

var worldCPVs = func() []string {
	var out []string
	for _, cat := range []string{"app-misc", "dev-libs", "dev-perl"} {
		for _, pn := range []string{"foo", "bar", "foo-bar"} {
			for _, v := range []string{"1", "1.0", "2-r1"} {
				out = append(out, cat+"/"+pn+"-"+v)
			}
		}
	}
	return out
}()

func (w *world) insert(tx *catalog.Tx) {
	cpv := worldCPVs[w.rng.IntN(len(worldCPVs))]
	cat, pf, _ := strings.Cut(cpv, "/")
	pn := pf[:strings.LastIndexByte(pf, '-')]
	if strings.HasSuffix(pf, "-r1") {
		pn = strings.TrimSuffix(pf, "-2-r1")
	}
	id, err := tx.NextBuildID(cpv)
	if err != nil {
		w.t.Fatal(err)
	}
	format := "xpak"
	if w.rng.IntN(3) == 0 {
		format = "gpkg"
	}
	in := &catalog.Instance{Category: cat, PN: pn, PF: pf, CPV: cpv, BuildID: id,
		BuildTime: int64(w.rng.IntN(4)), Format: format, Size: int64(w.rng.IntN(1 << 20)),
		MtimeNs: int64(w.rng.IntN(1e6)) * 1e9, Mode: 0o644, MD5: fmt.Sprintf("%032x", w.rng.Uint64()),
		SHA1: fmt.Sprintf("%040x", w.rng.Uint64()), Blob: "x",
		Meta: map[string]string{"CHOST": []string{"x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu"}[w.rng.IntN(2)],
			"SLOT": "0", "EAPI": "8", "USE": strings.Repeat("flag ", w.rng.IntN(20)) + "end", "BUILD_TIME": "1"},
	}
	if w.rng.IntN(8) == 0 {
		in.Placeholder, in.Size, in.Meta = true, 0, nil
	}
	if _, err := tx.InsertInstance(in); err != nil {
		w.t.Fatal(err)
	}
	w.ids = append(w.ids, in.ID)
}

func (w *world) step() {
	err := w.db.Tx(context.Background(), func(tx *catalog.Tx) error {
		for n := 1 + w.rng.IntN(3); n > 0; n-- {
			switch op := w.rng.IntN(10); {
			case op < 5 || len(w.ids) == 0:
				w.insert(tx)
			case op < 8:
				i := w.rng.IntN(len(w.ids))
				if _, err := tx.RemoveInstance(w.ids[i]); err != nil {
					return err
				}
				w.ids = slices.Delete(w.ids, i, i+1)
			case op < 9:
				if err := tx.SetInstanceAttrs(w.ids[w.rng.IntN(len(w.ids))], 0o600, int64(w.rng.IntN(1e6))*1e9); err != nil {
					return err
				}
			default:
				if err := tx.SetHeader(map[string]string{"CHOST": "x86_64-pc-linux-gnu", "ARCH": fmt.Sprint("amd", w.rng.IntN(3))}); err != nil {
					return err
				}
			}
		}
		_, err := tx.BumpGeneration()
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if w.rng.IntN(6) == 0 {
		// Graces end (all those begun so far).
		if _, err := w.db.ExpireTombstones(context.Background(), time.Now().Add(2*time.Hour), 1000); err != nil {
			w.t.Fatal(err)
		}
	}
}

// removedNames lists what the removed area serves, with instance ids.
func removedNames(m *Model) []string {
	var out []string
	var walk func(rest string)
	walk = func(rest string) {
		for _, e := range m.ReadRemoved(rest) {
			p := e.Name
			if rest != "" {
				p = rest + "/" + e.Name
			}
			if e.IsDir() {
				walk(p)
				continue
			}
			out = append(out, fmt.Sprintf("%s/%s=%d", RemovedDir, p, e.File.ID))
		}
	}
	walk("")
	return out
}

func gunzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func indexOf(t *testing.T, m *Model) []byte {
	v, err := m.FreezeIndex(m.Gen(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := v.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	gz, err := v.GzBytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gunzip(t, gz), plain) {
		t.Fatal("Packages.gz does not decompress to Packages")
	}
	if int64(len(plain)) != v.Size() || int64(len(gz)) != v.GzSize() {
		t.Fatalf("sizes %d/%d, want %d/%d", v.Size(), v.GzSize(), len(plain), len(gz))
	}
	return plain
}

// TestModelIncrementalEqualsReload: after any sequence of catalog changes,
// the model kept by Catchup equals a fresh load, tree and index, for every
// layout choice; and the journal names every path that changed.
func TestModelIncrementalEqualsReload(t *testing.T) {
	for _, lay := range []Layouts{AllLayouts, {Multi: true}, {Flat: true}, {Legacy: true}, {Flat: true, Legacy: true}} {
		t.Run(lay.String(), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, 1, uint64(len(lay.String())), 20)
			db := w.db
			m, err := Load(ctx, db, lay)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.BuildIndex(ctx, db, pieces.Options{ChunkEntries: 4}); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for round := range 60 {
				before := append(fileNames(m), removedNames(m)...)
				seq := m.Seq()
				for n := w.rng.IntN(4); n >= 0; n-- {
					w.step()
				}
				if _, err := m.Catchup(ctx, db); err != nil {
					t.Fatal(err)
				}
				fresh, err := Load(ctx, db, lay)
				if err != nil {
					t.Fatal(err)
				}
				if err := fresh.BuildIndex(ctx, db, pieces.Options{}); err != nil {
					t.Fatal(err)
				}
				if got, want := files(m), files(fresh); !slices.Equal(got, want) {
					t.Fatalf("round %d: tree\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if got, want := removedNames(m), removedNames(fresh); !slices.Equal(got, want) {
					t.Fatalf("round %d: removed area\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if got, want := indexOf(t, m), indexOf(t, fresh); !bytes.Equal(got, want) {
					t.Fatalf("round %d: index\n%s\nwant\n%s", round, got, want)
				}
				fresh.Close()
				changed, ok := m.ChangedSince(seq)
				if !ok {
					t.Fatalf("round %d: journal lost", round)
				}
				for _, p := range symDiff(before, append(fileNames(m), removedNames(m)...)) {
					if !journaled(changed, p) {
						t.Fatalf("round %d: %s changed but the journal says only %v", round, p, changed)
					}
				}
			}
		})
	}
}

// journaled tells whether the journal names p or a directory above it (a
// directory that came or went: the kernel held nothing under it).
func journaled(changed []Name, p string) bool {
	for p != "" {
		dir, name := SplitPath(p)
		if slices.Contains(changed, Name{dir, name}) {
			return true
		}
		p = dir
	}
	return false
}

// TestModelLazyEqualsReload applies changes to models whose top directories
// are made at random moments (one never, one a few at a time), then
// compares both with a fresh load; names in directories already made must
// be journaled when they change.
func TestModelLazyEqualsReload(t *testing.T) {
	for _, lay := range []Layouts{AllLayouts, {Multi: true}, {Flat: true, Legacy: true}} {
		t.Run(lay.String(), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, 7, uint64(len(lay.String())), 20)
			db := w.db
			untouched, err := Load(ctx, db, lay)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(ctx, db, lay)
			if err != nil {
				t.Fatal(err)
			}
			tops := []string{"All", "app-misc", "dev-libs", "dev-perl"}
			for round := range 80 {
				// Some tops are made now (a lookup, a listing, a stat).
				made := map[string][]string{}
				for _, top := range tops {
					switch w.rng.IntN(6) {
					case 0:
						m.Lookup(top, "nothing")
					case 1:
						m.ReadDir(top)
					case 2:
						m.Dir(top)
					}
					if d := m.dirs[top]; d != nil && !d.lazy {
						made[top] = nil
					}
				}
				before := fileNamesUnder(m, made)
				seq := m.Seq()
				for n := w.rng.IntN(4); n >= 0; n-- {
					w.step()
				}
				for _, x := range []*Model{untouched, m} {
					if _, err := x.Catchup(ctx, db); err != nil {
						t.Fatal(err)
					}
				}
				changed, ok := m.ChangedSince(seq)
				if !ok {
					t.Fatalf("round %d: journal lost", round)
				}
				for _, p := range symDiff(before, fileNamesUnder(m, made)) {
					if !journaled(changed, p) {
						t.Fatalf("round %d: %s changed but the journal says only %v", round, p, changed)
					}
				}
			}
			fresh, err := Load(ctx, db, lay)
			if err != nil {
				t.Fatal(err)
			}
			want := files(fresh)
			for name, x := range map[string]*Model{"never made": untouched, "made at random": m} {
				if got := files(x); !slices.Equal(got, want) {
					t.Fatalf("%s: tree\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		})
	}
}

// fileNamesUnder is fileNames of the tops in made only (making no other).
func fileNamesUnder(m *Model, made map[string][]string) []string {
	var out []string
	var walk func(p string)
	walk = func(p string) {
		ents, _ := m.ReadDir(p)
		for _, e := range ents {
			full := p + "/" + e.Name
			if e.IsDir() {
				walk(full)
			} else {
				out = append(out, full+"="+strconv.FormatInt(e.File.ID, 10))
			}
		}
	}
	for top := range made {
		if d, ok := m.Dir(top); ok && d.Name == top {
			walk(top)
		}
	}
	slices.Sort(out)
	return out
}

// symDiff lists the paths whose presence or instance differs.
func symDiff(a, b []string) []string {
	ma, mb := map[string]string{}, map[string]string{}
	for _, s := range a {
		p, id, _ := strings.Cut(s, "=")
		ma[p] = id
	}
	for _, s := range b {
		p, id, _ := strings.Cut(s, "=")
		mb[p] = id
	}
	var out []string
	for p, id := range ma {
		if mb[p] != id {
			out = append(out, p)
		}
	}
	for p := range mb {
		if _, ok := ma[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// TestModelConcurrentReaders reads the tree and the index while changes are
// applied (run with -race).
func TestModelConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 7, 7, 20)
	db := w.db
	m, err := Load(ctx, db, AllLayouts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.BuildIndex(ctx, db, pieces.Options{ChunkEntries: 4}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r == 0 {
					v, err := m.FreezeIndex(m.Gen(), 1000)
					if err == nil {
						if _, err := v.Bytes(); err != nil {
							t.Error(err)
						}
					}
					continue
				}
				files(m)
				m.File(worldCPVs[r], int64(r))
				m.IndexPath(worldCPVs[r], int64(r))
			}
		}()
	}
	for range 100 {
		w.step()
		if _, err := m.Catchup(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestModelAliases: which names are symlinks, and to what, per layout set;
// a new newest instance makes a new symlink (new number, new target).
func TestModelAliases(t *testing.T) {
	insts := []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
		inst(3, "app-misc", "hello", "hello-2.10", 3, 50, "gpkg"),
	}
	type want struct{ dir, name, link string } // link "": a regular file
	for _, c := range []struct {
		lay   Layouts
		names []want
	}{
		{AllLayouts, []want{
			{"app-misc/hello", "hello-2.10-2.xpak", ""},
			{"app-misc", "hello-2.10.tbz2", "hello/hello-2.10-2.xpak"},
			{"app-misc", "hello-2.10.gpkg.tar", "hello/hello-2.10-3.gpkg.tar"},
			{"All", "hello-2.10.tbz2", "../app-misc/hello/hello-2.10-2.xpak"},
			{"All", "hello-2.10.gpkg.tar", "../app-misc/hello/hello-2.10-3.gpkg.tar"},
		}},
		{Layouts{Multi: true, Flat: true}, []want{
			{"app-misc", "hello-2.10.tbz2", "hello/hello-2.10-2.xpak"},
		}},
		{Layouts{Multi: true, Legacy: true}, []want{
			{"All", "hello-2.10.tbz2", "../app-misc/hello/hello-2.10-2.xpak"},
		}},
		{Layouts{Flat: true, Legacy: true}, []want{
			{"app-misc", "hello-2.10.tbz2", ""},
			{"All", "hello-2.10.tbz2", "../app-misc/hello-2.10.tbz2"},
			{"All", "hello-2.10.gpkg.tar", "../app-misc/hello-2.10.gpkg.tar"},
		}},
		{Layouts{Legacy: true}, []want{
			{"All", "hello-2.10.tbz2", ""},
		}},
		{Layouts{Flat: true}, []want{
			{"app-misc", "hello-2.10.gpkg.tar", ""},
		}},
	} {
		m := loaded(c.lay, insts)
		for _, w := range c.names {
			e, ok := m.Lookup(w.dir, w.name)
			switch {
			case !ok:
				t.Errorf("layouts %s: %s/%s missing", c.lay, w.dir, w.name)
			case e.Link != w.link:
				t.Errorf("layouts %s: %s/%s -> %q, want %q", c.lay, w.dir, w.name, e.Link, w.link)
			case w.link == "" && e.Ino != m.Ino(e.File):
				t.Errorf("layouts %s: %s/%s is the file of instance %d, but has number %d, not %d", c.lay, w.dir, w.name, e.File.ID, e.Ino, m.Ino(e.File))
			case w.link != "" && e.Ino == m.Ino(e.File):
				t.Errorf("layouts %s: symlink %s/%s has the number of its instance's file", c.lay, w.dir, w.name)
			}
		}
	}
	// A newer build: the flat name becomes another symlink.
	m := loaded(AllLayouts, insts)
	before, _ := m.Lookup("app-misc", "hello-2.10.tbz2")
	newer := append(slices.Clone(insts[:2]), inst(4, "app-misc", "hello", "hello-2.10", 4, 400, "xpak"), insts[2])
	m.setGroup("app-misc/hello-2.10", newer)
	after, _ := m.Lookup("app-misc", "hello-2.10.tbz2")
	if after.Link != "hello/hello-2.10-4.xpak" || after.Ino == before.Ino {
		t.Errorf("after a newer build: %+v, want a new symlink to hello/hello-2.10-4.xpak (was %+v)", after, before)
	}
}

// TestModelSplitLoad loads big catalogs in two halves at once: the result
// must equal a load in one piece, also when the catalog moves on between
// the two views (then one view reads everything).
func TestModelSplitLoad(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3, 11, 40) // a world with more than half its ids live (the split point is the middle id)
	db := w.db
	defer func(n int64) { splitLoadMin, beforeSecondView = n, func() {} }(splitLoadMin)
	load := func(min int64) *Model {
		splitLoadMin = min
		m, err := Load(ctx, db, AllLayouts)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BuildIndex(ctx, db, pieces.Options{}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	whole := load(1 << 62)
	defer whole.Close()
	split := load(1)
	defer split.Close()
	if got, want := files(split), files(whole); !slices.Equal(got, want) || len(want) < 20 {
		t.Fatalf("split load:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := indexOf(t, split), indexOf(t, whole); !bytes.Equal(got, want) {
		t.Fatalf("split load index:\n%s\nwant\n%s", got, want)
	}
	// A commit between the views.
	moved := false
	beforeSecondView = func() {
		if !moved {
			moved = true
			for range 3 {
				w.step()
			}
		}
	}
	splitLoadMin = 1
	late, err := Load(ctx, db, AllLayouts)
	if err != nil {
		t.Fatal(err)
	}
	beforeSecondView = func() {}
	if !moved {
		t.Fatal("the split load never opened a second view")
	}
	// The model shows the first view's generation, whole: catching up
	// brings it to the catalog's present, equal to a fresh load.
	if _, err := late.Catchup(ctx, db); err != nil {
		t.Fatal(err)
	}
	now := load(1 << 62)
	defer now.Close()
	if got, want := files(late), files(now); !slices.Equal(got, want) {
		t.Fatalf("split load across a commit:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestModelDirMtime: directories are as new as the newest package, before
// any TIMESTAMP was handed out.
func TestModelDirMtime(t *testing.T) {
	a, b := inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"), inst(2, "dev-libs", "foo", "foo-1", 1, 100, "xpak")
	a.MtimeNs, b.MtimeNs = 1_700_000_000e9, 1_700_000_500e9
	m := loaded(AllLayouts, []catalog.Instance{a, b})
	if got := m.MtimeNs(); got != b.MtimeNs {
		t.Errorf("directory mtime %d, want the newest package's %d", got, b.MtimeNs)
	}
	m.SetMtime(1_800_000_000)
	if got := m.MtimeNs(); got != 1_800_000_000e9 {
		t.Errorf("directory mtime %d after a TIMESTAMP, want it", got)
	}
}

// TestModelRemoved: the removed area shows the tombstones of each CPV at
// the PATH of the layouts, lists their directories, and journals what a
// change of tombstones changes (the kernel forgets those names).
func TestModelRemoved(t *testing.T) {
	tomb := func(id, build int64, pf string) catalog.Tombstone {
		in := inst(id, "app-misc", "hello", pf, build, 100, "xpak")
		return catalog.Tombstone{Instance: in}
	}
	a, b := tomb(1, 1, "hello-2.10"), tomb(2, 7, "hello-2.10")
	for _, c := range []struct {
		lay  Layouts
		want []string
	}{
		{AllLayouts, []string{"app-misc/hello/hello-2.10-1.xpak", "app-misc/hello/hello-2.10-7.xpak"}},
		// Without multi a tombstone is served at its flat name (one per name).
		{Layouts{Flat: true}, []string{"app-misc/hello-2.10.tbz2"}},
		{Layouts{Legacy: true}, []string{"All/hello-2.10.tbz2"}},
	} {
		m := loaded(c.lay, nil)
		seq := m.Seq()
		m.mu.Lock()
		m.setRemoved(a.CPV, []catalog.Tombstone{a, b})
		m.mu.Unlock()
		for _, p := range c.want {
			if f, dir := m.LookupRemoved(p); f == nil || dir {
				t.Errorf("%s: %s not served", c.lay, p)
			}
			for d := parentOf(p); d != ""; d = parentOf(d) {
				if f, dir := m.LookupRemoved(d); f != nil || !dir {
					t.Errorf("%s: %s is not a directory", c.lay, d)
				}
			}
		}
		if m.RemovedCount() != len(c.want) {
			t.Errorf("%s: %d removed, want %d", c.lay, m.RemovedCount(), len(c.want))
		}
		top := strings.SplitN(c.want[0], "/", 2)[0]
		if got := m.ReadRemoved(""); len(got) != 1 || got[0].Name != top || !got[0].IsDir() {
			t.Errorf("%s: removed area lists %+v, want only %s/", c.lay, got, top)
		}
		names, ok := m.ChangedSince(seq)
		if !ok || !slices.Contains(names, Name{Dir: RemovedDir, Name: top}) {
			t.Errorf("%s: journal %v lacks %s/%s", c.lay, names, RemovedDir, top)
		}
		// The grace of both ends: nothing is left, not even directories.
		m.mu.Lock()
		m.setRemoved(a.CPV, nil)
		m.mu.Unlock()
		if m.RemovedCount() != 0 || len(m.ReadRemoved("")) != 0 {
			t.Errorf("%s: removed area not empty after the tombstones went", c.lay)
		}
		if _, dir := m.LookupRemoved(top); dir {
			t.Errorf("%s: %s still a directory", c.lay, top)
		}
	}
}

// TestModelMakeCategories makes every category ahead of use, not All/, and
// changes nothing a reader sees.
func TestModelMakeCategories(t *testing.T) {
	insts := []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "dev-libs", "foo", "foo-1", 1, 100, "gpkg"),
	}
	m, fresh := loaded(AllLayouts, insts), loaded(AllLayouts, insts)
	m.MakeCategories(context.Background())
	for _, top := range []string{"app-misc", "dev-libs"} {
		if d := m.dirs[top]; d == nil || d.lazy {
			t.Errorf("%s not made", top)
		}
	}
	if d := m.dirs["All"]; d == nil || !d.lazy {
		t.Error("All/ made (or gone)")
	}
	if got, want := files(m), files(fresh); !slices.Equal(got, want) {
		t.Errorf("tree after MakeCategories:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFileBlob: a SHA-256 blob name is kept in binary and given back as it
// came; any other name as it is.
func TestFileBlob(t *testing.T) {
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, name := range []string{"9f/" + sum, "", "ab/" + sum, "9F/" + strings.ToUpper(sum), "9f/" + sum[:63], "7/x",
		"00/" + strings.Repeat("0", 64)} {
		var f File
		f.setBlob(name)
		if got := f.Blob(); got != name {
			t.Errorf("Blob() of %q = %q", name, got)
		}
		if compact := f.blobName == ""; compact != (name == "9f/"+sum) && name != "" {
			t.Errorf("%q kept compact: %v", name, compact)
		}
	}
}

// failingSource is a catalog whose reads fail from the n-th on.
type failingSource struct {
	catalog.Source
	reads, failFrom int
}

func (f *failingSource) Read(ctx context.Context, fn func(r catalog.Reader) error) error {
	f.reads++
	if f.reads >= f.failFrom {
		return errors.New("the catalog went away")
	}
	return f.Source.Read(ctx, fn)
}

// TestBuildIndexCatchupFails: an index rendered at one generation whose
// catchup to the catalog's present fails is dropped, never served as the
// tree's; the next build serves the right one.
func TestBuildIndexCatchupFails(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3, 3, 10)
	m, err := Load(ctx, w.db, AllLayouts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The render reads once; the catchup after it fails.
	if err := m.BuildIndex(ctx, &failingSource{Source: w.db, failFrom: 2}, pieces.Options{ChunkEntries: 4}); err == nil {
		t.Fatal("BuildIndex succeeded though its catchup failed")
	}
	if m.IndexReady() {
		t.Fatal("an index whose catchup failed is installed")
	}
	if err := m.BuildIndex(ctx, w.db, pieces.Options{ChunkEntries: 4}); err != nil || !m.IndexReady() {
		t.Fatalf("building again: %v, ready %v", err, m.IndexReady())
	}
}
