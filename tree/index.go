package tree

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
	"pkgdirfs/tree/pieces"
)

// indexState is the rendered index kept with the tree: one block per
// indexed instance, keyed in Portage's order (cpv in byte order, then
// build id), held by pieces so that a change re-renders and recompresses
// only what it touched.
type indexState struct {
	p      *pieces.Index
	header map[string]string
	// changed counts the packages rendered since the index was built;
	// cachedMark is what it was when the index cache last caught up.
	changed, cachedMark int
}

// entryKey orders like the catalog's ORDER BY cpv, build_id: NUL sorts
// before every byte a longer cpv could continue with, and the padded id
// sorts numerically.
func entryKey(cpv string, buildID int64) string {
	return fmt.Sprintf("%s\x00%020d", cpv, buildID)
}

// entryOf renders one package block the way Portage writes it.
func entryOf(in *catalog.Instance, path string, header map[string]string) []byte {
	pkg := make(map[string]string, len(in.Meta)+8)
	maps.Copy(pkg, in.Meta)
	pkg["CPV"] = in.CPV
	pkg["PATH"] = path
	pkg["SIZE"] = strconv.FormatInt(in.Size, 10)
	pkg["MD5"] = in.MD5
	pkg["SHA1"] = in.SHA1
	// Whole seconds, rounded down also before 1970 (time normalises).
	pkg["_mtime_"] = strconv.FormatInt(time.Unix(0, in.MtimeNs).Unix(), 10)
	// The catalog's BUILD_ID is authoritative for names and the index.
	pkg["BUILD_ID"] = strconv.FormatInt(in.BuildID, 10)
	return layout.RenderPackage(pkg, header)
}

// putGroup renders the indexed instances of g (insts: g's rows with Meta,
// in g.files order).
func (x *indexState) putGroup(m *Model, g *group, insts []catalog.Instance) error {
	if len(insts) != len(g.files) {
		return fmt.Errorf("index: %s: %d rows for %d instances", g.cpv, len(insts), len(g.files))
	}
	for i, f := range g.files {
		if p := m.indexPath(f); p != "" {
			if insts[i].ID != f.ID {
				return fmt.Errorf("index: %s: row %d is not instance %d", g.cpv, insts[i].ID, f.ID)
			}
			x.p.Put(entryKey(g.cpv, f.BuildID), entryOf(&insts[i], p, x.header))
		}
	}
	return nil
}

// reindex follows the setGroup calls of one catchup: the entries of every
// CPV in render go (whatever build ids the index held) and
// are rendered again from the group the model now shows. loaded has the rows
// of the CPVs the catchup read; others are read from v, which shows the
// generation the model now shows.
func (x *indexState) reindex(m *Model, render map[string]bool, loaded map[string][]catalog.Instance, v catalog.Reader) error {
	for _, cpv := range slices.Sorted(maps.Keys(render)) {
		// Every entry of the CPV, not only those of its groups: an index
		// of another generation (rendered while the tree loaded, or read
		// from the cache) may hold builds neither group has.
		x.p.DeleteRange(cpv+"\x00", cpv+"\x01")
		x.changed++
		g := m.groups[cpv]
		if g == nil {
			continue
		}
		insts, ok := loaded[cpv]
		if !ok {
			var err error
			if insts, err = v.GroupWithMeta(cpv); err != nil {
				return err
			}
		}
		if err := x.putGroup(m, g, insts); err != nil {
			return err
		}
	}
	// A write of the pieces' store that failed (a full disk) leaves the
	// index short of this change: say so rather than serve it.
	return x.p.Err()
}

// rebuild renders every entry again (the header changed: entries leave out
// values they inherit from it). v shows the generation the tree now shows.
func (x *indexState) rebuild(m *Model, v catalog.Reader) error {
	header, err := v.Header()
	if err != nil {
		return err
	}
	x.header = header
	x.p.Reset()
	err = renderAll(v, header, x.p, func(in *catalog.Instance) (string, error) {
		f := m.fileLocked(in.CPV, in.ID)
		if f == nil {
			return "", fmt.Errorf("index: instance %d of %s is not in the tree", in.ID, in.CPV)
		}
		return m.indexPath(f), nil
	})
	x.changed += x.p.Len()
	return err
}

// renderAll renders every indexed instance of v into p. Rendering runs on
// every core while the catalog is read: at 1,000,000 entries it is what a
// first read of Packages waits for. pathOf must be safe to call from several
// goroutines ("" leaves the instance out).
func renderAll(v catalog.Reader, header map[string]string, p *pieces.Index, pathOf func(in *catalog.Instance) (string, error)) error {
	type job struct {
		in   *catalog.Instance
		path string
	}
	type entry struct {
		key   string
		block []byte
	}
	const batchSize = 256
	jobs := make(chan []job, 4)
	entries := make(chan []entry, 4)
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for batch := range jobs {
				out := make([]entry, len(batch))
				for i, j := range batch {
					out[i] = entry{entryKey(j.in.CPV, j.in.BuildID), entryOf(j.in, j.path, header)}
				}
				entries <- out
			}
		}()
	}
	// One goroutine puts: the Index is not safe for concurrent changes.
	putDone := make(chan error, 1)
	go func() {
		for batch := range entries {
			for _, e := range batch {
				p.Put(e.key, e.block)
			}
		}
		putDone <- p.Err()
	}()
	batch := make([]job, 0, batchSize)
	err := v.ForEachIndexed(func(in *catalog.Instance) error {
		path, err := pathOf(in)
		if err != nil || path == "" {
			return err
		}
		batch = append(batch, job{in, path})
		if len(batch) == batchSize {
			jobs <- batch
			batch = make([]job, 0, batchSize)
		}
		return nil
	})
	if len(batch) > 0 {
		jobs <- batch
	}
	close(jobs)
	workers.Wait()
	close(entries)
	return errors.Join(err, <-putDone)
}

// BuildIndex renders the index of the catalog once (the slow part runs
// without blocking lookups or changes), then keeps it with every change.
//
// With an index cache (SetIndexCache) it first tries the cache: valid for
// this catalog and layout, and at a generation the change log still reaches,
// it is loaded in O(metadata) and the changes since are applied to it.
func (m *Model) BuildIndex(ctx context.Context, db catalog.Source, opts pieces.Options) error {
	m.mu.RLock()
	cached := m.cache.dir != ""
	m.mu.RUnlock()
	if cached {
		if used, err := m.indexFromCache(ctx, db, opts); used || err != nil {
			return err
		}
	}
	p, err := pieces.New(opts)
	if err != nil {
		return err
	}
	var gen int64
	x := &indexState{p: p}
	err = db.Read(ctx, func(v catalog.Reader) error {
		if gen, err = v.Generation(); err != nil {
			return err
		}
		if x.header, err = v.Header(); err != nil {
			return err
		}
		// Without the multi layout an entry's PATH depends on the whole
		// CPV (newest) and on other CPVs (All/ names): a model of this
		// generation answers it.
		var at *Model
		if !m.lay.Multi {
			at = NewModel(m.lay)
			if err := at.loadFrom(v); err != nil {
				return err
			}
		}
		return renderAll(v, x.header, p, func(in *catalog.Instance) (string, error) {
			if at == nil {
				return multiPath(in.Category, in.PN, in.PF, in.BuildID, in.Format == string(layout.FormatGpkg)), nil
			}
			if f := at.fileLocked(in.CPV, in.ID); f != nil {
				return at.indexPath(f), nil
			}
			return "", nil
		})
	})
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		// Seal every chunk now: their text leaves the heap (in Dir mode)
		// before the daemon hands its garbage back to the system.
		var v *pieces.View
		if v, err = p.Freeze(nil, 0); err == nil {
			v.Release()
		}
	}
	if err != nil {
		p.Close()
		return err
	}
	m.catchMu.Lock()
	defer m.catchMu.Unlock()
	m.mu.Lock()
	if m.idx != nil {
		m.idx.p.Close()
	}
	x.changed = p.Len()
	m.idx = x
	since := min(m.gen, gen)
	m.mu.Unlock()
	// The tree may be ahead of the rendered generation, or behind it:
	// applying every change since the older one brings both to the
	// catalog's present (applying a CPV again is harmless).
	if _, err = m.catchup(ctx, db, since, true); err != nil {
		// The index is still the render's generation: it must not be
		// served as the tree's.
		m.dropIndex(x)
	}
	return err
}

// dropIndex drops x if it is the model's index: IndexReady is then false,
// and the next read of Packages builds the index again.
func (m *Model) dropIndex(x *indexState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx == x {
		x.p.Close()
		m.idx = nil
	}
}

// ErrStale says the model moved past the generation asked for.
var ErrStale = errors.New("tree: the model moved on")

// IndexView is Packages and Packages.gz of one generation.
type IndexView struct {
	Generation int64
	Timestamp  int64 // TIMESTAMP, and the mtime of both files
	Packages   int
	// Restamped: the generation served again with another TIMESTAMP (the
	// one the catalog recorded, after this mount had chosen its own).
	Restamped bool
	*pieces.View
}

// Ino is the inode number of this view's Packages (Packages.gz if gz).
func (v *IndexView) Ino(gz bool) uint64 {
	ino := IndexIno(v.Generation, gz)
	if v.Restamped {
		ino += restampedIno
	}
	return ino
}

// FreezeIndex returns the index of generation gen with TIMESTAMP ts; ErrStale
// if the model shows another generation; an error if the index is not built.
func (m *Model) FreezeIndex(gen, ts int64) (*IndexView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx == nil {
		return nil, errors.New("tree: index not built")
	}
	if m.gen != gen {
		return nil, ErrStale
	}
	h := make(map[string]string, len(m.idx.header)+3)
	maps.Copy(h, m.idx.header)
	n := m.idx.p.Len()
	h["VERSION"] = "0"
	h["TIMESTAMP"] = strconv.FormatInt(ts, 10)
	h["PACKAGES"] = strconv.Itoa(n)
	v, err := m.idx.p.Freeze(layout.RenderHeader(h), ts)
	if err != nil {
		// The store failed (a full disk): drop the index, so that the
		// caller can build it again (IndexReady is false).
		m.idx.p.Close()
		m.idx = nil
		return nil, err
	}
	if ts*1e9 > m.mtimeNs {
		m.mtimeNs = ts * 1e9
	}
	return &IndexView{Generation: gen, Timestamp: ts, Packages: n, View: v}, nil
}

// IndexReady tells whether BuildIndex has completed.
func (m *Model) IndexReady() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.idx != nil
}

// Close releases the index's resources.
func (m *Model) Close() error {
	if r := m.takePreload(pieces.Options{}); r != nil && r.x != nil {
		r.x.p.Close() // never built: a mount that failed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.idx == nil {
		return nil
	}
	err := m.idx.p.Close()
	m.idx = nil
	return err
}
