package tree

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree/pieces"
)

// The index cache: the rendered pieces of a model's index, written to a
// file so that the next mount (this host's, another host's of a shared
// catalog, a follower's) serves Packages at once instead of rendering every
// entry again. A cache is used only for the catalog it was rendered from
// (catalog_id), the same PATHs (layout), the same renderer (build) and a
// generation the change log still reaches: the changes since are applied to
// it exactly as to a model behind the catalog, so what is served is what a
// fresh render serves.

// entryFormat changes whenever the bytes of an entry change for the same
// catalog row (entryOf, layout.RenderPackage): caches of another format are
// not used. Builds from version control are told apart anyway (buildKey).
const entryFormat = 1

// cacheInfo is what a cache file says it holds.
type cacheInfo struct {
	CatalogID  int64             `json:"catalog_id"`
	Layout     string            `json:"layout"`
	Build      string            `json:"build"`
	GzipLevel  int               `json:"gzip_level"`
	Generation int64             `json:"generation"`
	Entries    int               `json:"entries"`
	Header     map[string]string `json:"header"`
}

// indexLayout is what an entry's PATH is under lay: hosts showing other
// layouts with the same PATHs share a cache.
func indexLayout(lay Layouts) string {
	switch {
	case lay.Multi:
		return "multi"
	case lay.Flat:
		return "flat"
	case lay.Legacy:
		return "legacy"
	}
	return "none"
}

// buildKey names the renderer: the entry format, the Go release (its
// compress/flate makes the gzip members) and the revision built.
var buildKey = sync.OnceValue(func() string {
	k := fmt.Sprintf("entry%d %s", entryFormat, runtime.Version())
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return k
	}
	k += " " + bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			k += " " + s.Value
		case "vcs.modified":
			if s.Value != "true" {
				continue
			}
			// A build of changed sources: its executable tells it apart.
			k += " modified"
			if exe, err := os.Executable(); err == nil {
				if st, err := os.Stat(exe); err == nil {
					k += fmt.Sprintf(" %d.%d", st.Size(), st.ModTime().UnixNano())
				}
			}
		}
	}
	return k
})

// cacheState is the model's index cache configuration and bookkeeping.
type cacheState struct {
	dir string
	log *slog.Logger
	// id is the catalog's identity as read at the last BuildIndex (0: none,
	// no cache is written).
	id int64
	// pre: a load begun by PreloadIndexCache, for the next BuildIndex.
	pre *preload
}

// preload is a cache load running beside the tree's load.
type preload struct {
	done chan struct{}
	opts pieces.Options
	res  cacheLoad
}

// cacheLoad is what loadCacheFile found.
type cacheLoad struct {
	x    *indexState
	info *cacheInfo
	path string
	id   int64
	err  error
}

// PreloadIndexCache starts loading the index cache now, for the next
// BuildIndex with the same opts: call it before Load, and the cache is read
// while the tree loads (the mount is not ready before that), so that the
// first read of Packages after the mount waits for neither.
//
// The catalog's identity is read now: the load's own reads may take every
// connection the catalog has, and the file is what takes time. What the
// catalog says of the cache's generation is asked by BuildIndex.
func (m *Model) PreloadIndexCache(db catalog.Source, opts pieces.Options) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache.dir == "" || m.cache.pre != nil {
		return
	}
	pl := &preload{done: make(chan struct{}), opts: opts}
	m.cache.pre = pl
	dir, lay := m.cache.dir, m.lay
	id, err := catalogID(context.Background(), db)
	if err != nil {
		pl.res.err = err
		close(pl.done)
		return
	}
	go func() {
		defer close(pl.done)
		pl.res = loadCacheFile(dir, id, lay, opts)
	}()
}

// IndexCacheFound waits for PreloadIndexCache and tells whether it found
// a cache file it could load (BuildIndex may still refuse it, e.g. when
// the change log no longer reaches its generation).
func (m *Model) IndexCacheFound() bool {
	m.mu.Lock()
	pl := m.cache.pre
	m.mu.Unlock()
	if pl == nil {
		return false
	}
	<-pl.done
	return pl.res.err == nil && pl.res.x != nil
}

func catalogID(ctx context.Context, db catalog.Source) (id int64, err error) {
	err = db.Read(ctx, func(v catalog.Reader) error {
		id, err = v.CatalogID()
		return err
	})
	return id, err
}

// takePreload returns the result of a preload begun with opts, if any; one
// begun with other options is dropped.
func (m *Model) takePreload(opts pieces.Options) *cacheLoad {
	m.mu.Lock()
	pl := m.cache.pre
	m.cache.pre = nil
	m.mu.Unlock()
	if pl == nil {
		return nil
	}
	<-pl.done
	if pl.opts != opts {
		if pl.res.x != nil {
			pl.res.x.p.Close()
		}
		return nil
	}
	return &pl.res
}

// SetIndexCache makes BuildIndex try a cache in dir first, and
// WriteIndexCache write one there; log hears why a cache is not used.
func (m *Model) SetIndexCache(dir string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	m.mu.Lock()
	m.cache = cacheState{dir: dir, log: log}
	m.mu.Unlock()
}

func cachePath(dir string, id int64, lay Layouts) string {
	return filepath.Join(dir, fmt.Sprintf("index-%016x-%s.cache", id, indexLayout(lay)))
}

func gzipLevel(opts pieces.Options) int {
	if opts.GzipLevel == 0 {
		return pieces.DefaultGzipLevel
	}
	return opts.GzipLevel
}

// errNoCache is why a cache is not used: logged, and the index is rendered.
type errNoCache struct {
	level slog.Level
	why   string
	err   error
}

func (e *errNoCache) Error() string { return e.why }

func noCache(level slog.Level, why string, err error) error {
	return &errNoCache{level: level, why: why, err: err}
}

// cacheTooFar: from this many changed CPVs since the cache (and a quarter
// of its entries) on, rendering is cheaper than a query per changed CPV.
const cacheTooFar = 1000

// indexFromCache installs the index of the cache file, if one is valid for
// this catalog, and applies the changes since. used is false (and the
// reason logged) when there was no cache to use; err is an error of the
// catchup once it was installed.
func (m *Model) indexFromCache(ctx context.Context, db catalog.Source, opts pieces.Options) (used bool, err error) {
	start := time.Now()
	m.mu.RLock()
	cs := m.cache
	m.mu.RUnlock()
	r := m.takePreload(opts)
	if r == nil {
		id, err := catalogID(ctx, db)
		l := cacheLoad{err: err}
		if err == nil {
			l = loadCacheFile(cs.dir, id, m.lay, opts)
		}
		r = &l
	}
	x, info, path, err := r.x, r.info, r.path, r.err
	if err == nil {
		if err = checkCache(ctx, db, info); err != nil {
			x.p.Close()
		}
	}
	if r.id != 0 || err == nil {
		m.mu.Lock()
		m.cache.id = r.id
		m.mu.Unlock()
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		var nc *errNoCache
		if !errors.As(err, &nc) {
			nc = &errNoCache{level: slog.LevelWarn, why: "reading the index cache failed", err: err}
		}
		args := []any{"reason", nc.why}
		if path != "" {
			args = append(args, "path", path)
		}
		if nc.err != nil {
			args = append(args, "err", nc.err)
		}
		cs.log.Log(ctx, nc.level, "index cache not used; rendering the index", args...)
		return false, nil
	}
	m.catchMu.Lock()
	defer m.catchMu.Unlock()
	m.mu.Lock()
	if m.idx != nil {
		m.idx.p.Close()
	}
	m.idx = x
	since := min(m.gen, info.Generation)
	m.mu.Unlock()
	loaded := time.Since(start)
	if _, err = m.catchup(ctx, db, since, true); err != nil {
		// The index is still the cache's generation, maybe far behind the
		// tree's: it must not be served as the tree's.
		m.dropIndex(x)
		return true, err
	}
	m.mu.RLock()
	var changed int
	if m.idx != nil {
		changed = m.idx.changed
	}
	gen := m.gen
	m.mu.RUnlock()
	// load_ms: until the cache was in (mostly waiting for a preload).
	cs.log.Info("index loaded from its cache", "path", path, "cache_generation", info.Generation, "generation", gen,
		"entries", info.Entries, "changed_since", changed, "load_ms", loaded.Milliseconds(), "ms", time.Since(start).Milliseconds())
	return true, nil
}

// loadCacheFile loads the cache file of this catalog and layout, and checks
// what it says of itself.
func loadCacheFile(dir string, id int64, lay Layouts, opts pieces.Options) cacheLoad {
	fail := func(path string, err error) cacheLoad { return cacheLoad{path: path, id: id, err: err} }
	if id == 0 {
		return fail("", noCache(slog.LevelInfo, "the catalog has no catalog_id yet (a writable open gives it one)", nil))
	}
	path := cachePath(dir, id, lay)
	p, raw, err := pieces.LoadCache(path, opts)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fail(path, noCache(slog.LevelInfo, "no index cache yet", nil))
	case errors.Is(err, pieces.ErrCacheInvalid):
		return fail(path, noCache(slog.LevelWarn, "the index cache is damaged or not one", err))
	case err != nil:
		return fail(path, err)
	}
	var info cacheInfo
	if err = json.Unmarshal(raw, &info); err != nil {
		err = noCache(slog.LevelWarn, "the index cache's description is unreadable", err)
	} else {
		switch {
		case info.CatalogID != id:
			err = noCache(slog.LevelWarn, fmt.Sprintf("the index cache is of another catalog (%016x)", info.CatalogID), nil)
		case info.Layout != indexLayout(lay):
			err = noCache(slog.LevelWarn, "the index cache is of another layout ("+info.Layout+")", nil)
		case info.Build != buildKey():
			err = noCache(slog.LevelInfo, "the index cache was written by another build ("+info.Build+")", nil)
		case info.GzipLevel != gzipLevel(opts):
			err = noCache(slog.LevelInfo, fmt.Sprintf("the index cache was compressed at level %d", info.GzipLevel), nil)
		case info.Entries != p.Len() || info.Header == nil:
			err = noCache(slog.LevelWarn, "the index cache does not hold what it says", nil)
		}
	}
	if err != nil {
		p.Close()
		return fail(path, err)
	}
	return cacheLoad{x: &indexState{p: p, header: info.Header}, info: &info, path: path, id: id}
}

// checkCache tells whether the catalog can bring a cache of info's
// generation to its present: the generation is not beyond the catalog's,
// the change log still reaches it, and the header did not change since.
func checkCache(ctx context.Context, db catalog.Source, info *cacheInfo) error {
	return db.Read(ctx, func(v catalog.Reader) error {
		gen, err := v.Generation()
		if err != nil {
			return err
		}
		if info.Generation > gen {
			return noCache(slog.LevelWarn, fmt.Sprintf("the index cache is of generation %d, the catalog at %d (restored from a backup?)", info.Generation, gen), nil)
		}
		names, err := v.Changes(info.Generation)
		if errors.Is(err, catalog.ErrChangesPruned) {
			return noCache(slog.LevelInfo, fmt.Sprintf("the change log no longer reaches the index cache's generation %d", info.Generation), nil)
		}
		if err != nil {
			return err
		}
		if slices.Contains(names, catalog.HeaderChange) {
			// Every entry depends on the header: all would be rendered again.
			return noCache(slog.LevelInfo, "the index header changed since the index cache was written", nil)
		}
		header, err := v.Header()
		if err != nil {
			return err
		}
		if !maps.Equal(header, info.Header) {
			return noCache(slog.LevelWarn, "the index cache's header is not the catalog's, though the change log names no header change", nil)
		}
		if len(names) > max(cacheTooFar, info.Entries/4) {
			return noCache(slog.LevelInfo, fmt.Sprintf("%d packages changed since the index cache was written", len(names)), nil)
		}
		return nil
	})
}

// IndexCacheLag is how many packages the index re-rendered since it was
// last written to (or loaded from) the cache, and how many entries it has.
// After a full render every entry counts as changed.
func (m *Model) IndexCacheLag() (changed, entries int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.idx == nil || m.cache.dir == "" {
		return 0, 0
	}
	return m.idx.changed - m.idx.cachedMark, m.idx.p.Len()
}

// WriteIndexCache writes the index as the model shows it now to the cache,
// unless a valid cache there is as new. It returns the generation written
// (-1: none). The index is frozen under the model's lock; the file is
// written outside it, streaming the chunks (the heap does not grow by the
// index). ctx cancels it.
func (m *Model) WriteIndexCache(ctx context.Context, opts pieces.Options) (int64, error) {
	m.mu.Lock()
	cs := m.cache
	x := m.idx
	if x == nil || cs.dir == "" || cs.id == 0 || x.p.Len() == 0 {
		m.mu.Unlock()
		return -1, nil
	}
	info := cacheInfo{CatalogID: cs.id, Layout: indexLayout(m.lay), Build: buildKey(), GzipLevel: gzipLevel(opts),
		Generation: m.gen, Entries: x.p.Len(), Header: maps.Clone(x.header)}
	mark := x.changed
	v, err := x.p.Freeze(nil, 0)
	m.mu.Unlock()
	if err != nil {
		return -1, err
	}
	defer v.Release()
	done := func() {
		m.mu.Lock()
		if m.idx == x {
			x.cachedMark = mark
		}
		m.mu.Unlock()
	}
	path := cachePath(cs.dir, cs.id, m.lay)
	if raw, err := pieces.ReadCacheInfo(path); err == nil {
		var old cacheInfo
		if json.Unmarshal(raw, &old) == nil && old.Build == info.Build && old.GzipLevel == info.GzipLevel &&
			old.CatalogID == info.CatalogID && old.Generation >= info.Generation {
			// Another host (or this one) wrote as new a cache: keep it.
			done()
			return -1, nil
		}
	}
	raw, err := json.Marshal(&info)
	if err != nil {
		return -1, err
	}
	if err := writeAtomic(ctx, cs.dir, path, func(w *bufio.Writer) error { return v.WriteCache(ctx, w, raw) }); err != nil {
		return -1, fmt.Errorf("writing the index cache %s: %w", path, err)
	}
	done()
	return info.Generation, nil
}

// cacheTempPrefix names files being written; a writer killed midway
// leaves one, removed by a later writer once it is clearly abandoned.
const cacheTempPrefix = ".tmp-"

// writeAtomic writes path through a temporary file in dir: synced, renamed,
// the directory synced. Readers see the old file or the new, never a part.
func writeAtomic(ctx context.Context, dir, path string, fill func(w *bufio.Writer) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	removeAbandoned(dir)
	f, err := os.CreateTemp(dir, cacheTempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// Other hosts and followers (maybe other users) read it.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeAbandoned removes temporary files no writer has touched for an
// hour (a writer killed midway; a live one writes every second).
func removeAbandoned(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), cacheTempPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
