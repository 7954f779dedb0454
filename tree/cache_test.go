package tree

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pkgdirfs/catalog"
	"pkgdirfs/tree/pieces"
)

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// freshIndex renders the index of db without any cache.
func freshIndex(t *testing.T, db catalog.Source, lay Layouts) []byte {
	t.Helper()
	m, err := Load(context.Background(), db, lay)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.BuildIndex(context.Background(), db, pieces.Options{}); err != nil {
		t.Fatal(err)
	}
	return indexOf(t, m)
}

// cachedModel loads a model of db that builds its index from the cache in
// dir (if it can); tree behind: changes land between the tree's load and
// the index build.
func cachedModel(t *testing.T, w *world, lay Layouts, dir string, log *slog.Logger, behind int) *Model {
	t.Helper()
	ctx := context.Background()
	m := NewModel(lay)
	m.SetIndexCache(dir, log)
	// Half the time the cache is read while the tree loads (as a mount
	// does), and changes may land in between.
	if w.rng.IntN(2) == 0 {
		m.PreloadIndexCache(w.db, pieces.Options{ChunkEntries: 4})
		for range w.rng.IntN(2) {
			w.step()
		}
	}
	if err := m.Load(ctx, w.db); err != nil {
		t.Fatal(err)
	}
	for range behind {
		w.step()
	}
	if err := m.BuildIndex(ctx, w.db, pieces.Options{ChunkEntries: 4}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIndexCacheEqualsRender: a model whose index comes from a cache written
// generations ago (by a model whose tree was behind, ahead or level with its
// index) serves the index a fresh render serves, byte for byte, for every
// layout choice; and the cache is used.
func TestIndexCacheEqualsRender(t *testing.T) {
	for _, lay := range []Layouts{AllLayouts, {Multi: true}, {Flat: true}, {Legacy: true}, {Flat: true, Legacy: true}} {
		t.Run(lay.String(), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, 3, uint64(len(lay.String())), 30)
			if _, err := w.db.EnsureID(ctx); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "cache")
			var log logBuf
			m := cachedModel(t, w, lay, dir, log.logger(), 0)
			if gen, err := m.WriteIndexCache(ctx, pieces.Options{ChunkEntries: 4}); err != nil || gen != m.Gen() {
				t.Fatalf("first cache write: generation %d, %v; want %d", gen, err, m.Gen())
			}
			m.Close()
			used := 0
			for round := range 30 {
				for range w.rng.IntN(4) {
					w.step()
				}
				before := strings.Count(log.String(), "index loaded from its cache")
				m := cachedModel(t, w, lay, dir, log.logger(), w.rng.IntN(3))
				if strings.Count(log.String(), "index loaded from its cache") > before {
					used++
				}
				for range w.rng.IntN(3) {
					w.step()
					if _, err := m.Catchup(ctx, w.db); err != nil {
						t.Fatal(err)
					}
				}
				if got, want := indexOf(t, m), freshIndex(t, w.db, lay); !bytes.Equal(got, want) {
					t.Fatalf("round %d: index from the cache\n%s\nwant\n%s", round, got, want)
				}
				if w.rng.IntN(2) == 0 {
					if _, err := m.WriteIndexCache(ctx, pieces.Options{ChunkEntries: 4}); err != nil {
						t.Fatal(err)
					}
				}
				m.Close()
			}
			if used < 5 {
				t.Fatalf("the cache was used in %d of 30 rounds; log:\n%s", used, log.String())
			}
			if strings.Contains(log.String(), "level=WARN") {
				t.Errorf("warnings:\n%s", log.String())
			}
		})
	}
}

// TestIndexCacheRefused: a cache of another catalog, a damaged one, one the
// change log no longer reaches, and one of another layout are not used
// (logged), and the index is rendered as without one.
func TestIndexCacheRefused(t *testing.T) {
	ctx := context.Background()
	lay := AllLayouts
	a := newWorld(t, 5, 1, 20)
	b := newWorld(t, 5, 2, 20)
	for _, w := range []*world{a, b} {
		if _, err := w.db.EnsureID(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	var log logBuf
	write := func(w *world, dir string) string {
		m := cachedModel(t, w, lay, dir, log.logger(), 0)
		defer m.Close()
		if _, err := m.WriteIndexCache(ctx, pieces.Options{}); err != nil {
			t.Fatal(err)
		}
		return cachePath(dir, m.cache.id, lay)
	}
	pathA, pathB := write(a, dirA), write(b, dirB)
	check := func(name string, w *world, dir, reason string) {
		t.Helper()
		before := len(log.String())
		m := cachedModel(t, w, lay, dir, log.logger(), 0)
		defer m.Close()
		got := log.String()[before:]
		if strings.Contains(got, "index loaded from its cache") || !strings.Contains(got, reason) {
			t.Fatalf("%s: log %q, want it refused: %q", name, got, reason)
		}
		if got, want := indexOf(t, m), freshIndex(t, w.db, lay); !bytes.Equal(got, want) {
			t.Fatalf("%s: index\n%s\nwant\n%s", name, got, want)
		}
	}
	// Catalog A's cache under catalog B's name.
	good, err := os.ReadFile(pathB)
	if err != nil {
		t.Fatal(err)
	}
	cacheA, err := os.ReadFile(pathA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pathB, cacheA, 0o644); err != nil {
		t.Fatal(err)
	}
	check("another catalog's", b, dirB, "of another catalog")
	// Truncated.
	if err := os.WriteFile(pathB, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	check("truncated", b, dirB, "damaged or not one")
	// A damaged key.
	bad := bytes.Clone(good)
	bad[len(bad)/3] ^= 1
	if i := bytes.Index(good, []byte("app-misc/")); i > 0 {
		bad = bytes.Clone(good)
		bad[i] = 'b'
	}
	if err := os.WriteFile(pathB, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	check("damaged", b, dirB, "damaged or not one")
	// Another layout's PATHs are not this one's.
	if err := os.WriteFile(pathB, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pathB, cachePath(dirB, readID(t, b.db), Layouts{Flat: true})); err != nil {
		t.Fatal(err)
	}
	func() {
		before := len(log.String())
		m := cachedModel(t, b, Layouts{Flat: true}, dirB, log.logger(), 0)
		defer m.Close()
		if got := log.String()[before:]; !strings.Contains(got, "of another layout") {
			t.Fatalf("another layout's cache: log %q", got)
		}
	}()
	// The change log no longer reaches the cache's generation.
	if err := os.WriteFile(pathB, good, 0o644); err != nil {
		t.Fatal(err)
	}
	b.step()
	if err := b.db.Tx(ctx, func(tx *catalog.Tx) error { return tx.SetSetting("changes_floor", 1<<40) }); err != nil {
		t.Fatal(err)
	}
	check("beyond the change log", b, dirB, "no longer reaches")
}

func readID(t *testing.T, db catalog.Source) int64 {
	var id int64
	if err := db.Read(context.Background(), func(v catalog.Reader) (err error) {
		id, err = v.CatalogID()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestIndexCachePreload: a preload for other options is not used (the cache
// is read again for the options BuildIndex gets), and a preload never built
// is released by Close.
func TestIndexCachePreload(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 9, 9, 20)
	if _, err := w.db.EnsureID(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log logBuf
	m := cachedModel(t, w, AllLayouts, dir, log.logger(), 0)
	if _, err := m.WriteIndexCache(ctx, pieces.Options{ChunkEntries: 4}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = NewModel(AllLayouts)
	m.SetIndexCache(dir, log.logger())
	m.PreloadIndexCache(w.db, pieces.Options{Dir: t.TempDir()})
	if err := m.Load(ctx, w.db); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(log.String(), "index loaded from its cache")
	if err := m.BuildIndex(ctx, w.db, pieces.Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(log.String(), "index loaded from its cache") != before+1 {
		t.Fatalf("the cache was not used; log:\n%s", log.String())
	}
	if got, want := indexOf(t, m), freshIndex(t, w.db, AllLayouts); !bytes.Equal(got, want) {
		t.Fatalf("index\n%s\nwant\n%s", got, want)
	}
	m.Close()
	m = NewModel(AllLayouts)
	m.SetIndexCache(dir, log.logger())
	m.PreloadIndexCache(w.db, pieces.Options{})
	m.Close()
	if m.cache.pre != nil {
		t.Fatal("Close left the preload")
	}
}
