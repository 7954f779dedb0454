// Package pieces keeps the Packages index of a binary-package directory as
// cached pieces, so that one changed package costs O(change) instead of a
// re-render and re-gzip of the whole catalog.
//
// Entries (one rendered package block each) are grouped into chunks of
// consecutive keys, cut where the keys say (boundary), so that the same
// entries make the same chunks and bytes whatever the history of changes. Each chunk caches its plain bytes and its own gzip member;
// Packages.gz is a header member followed by the chunk members (RFC 1952
// allows concatenated members; zcat, Python's gzip and Go's compress/gzip read
// them as one stream). A change re-renders and recompresses only its chunk.
//
// Chunks reachable from a View are immutable: a change to such a chunk makes a
// new chunk object (copy-on-write), so Views stay valid and consistent while
// the Index keeps changing.
//
// With Options.Dir the chunk bytes live in an unlinked, append-only file
// instead of the Go heap; reads are preads, so the page cache holds them. The
// heap keeps only keys and lengths (about 8 bytes per entry plus the key).
//
// An Index can be written to a cache file (View.WriteCache) and loaded back
// (LoadCache) in O(metadata): the loaded chunks are read from that file, which
// the Index treats as an old store segment, so a process that starts serves
// Packages without rendering or compressing anything.
//
// Errors: a failing write (ENOSPC, EIO) leaves the affected chunks unsealed
// and Freeze returns the error; the Index stays consistent and the next
// Freeze retries. Put and Delete have no error result: if one cannot apply
// its change because reading a chunk back from the file fails, the Index
// records the error, ignores further changes and Freeze returns that error
// until Reset (the caller then reloads). Err reports it early.
package pieces

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"iter"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultChunkEntries: a chunk of 64 entries (~45 KB) gzips in ~0.5 ms
	// at level 6 and a full chunk of 128 in ~1.1 ms; smaller chunks cost
	// ratio because every member starts with an empty window.
	DefaultChunkEntries = 64
	// DefaultGzipLevel: compress/gzip level 6 is within 1% of level 9's
	// size on Packages chunks and about 1.5x faster (see bench_test.go).
	DefaultGzipLevel = 6

	defaultMaxDraft = 8 << 20   // Dir mode: unsealed bytes held on the heap before an early seal
	defaultMinDead  = 64 << 20  // Dir mode: dead bytes tolerated before compaction
	migrateMin      = 256 << 10 // Dir mode: bytes moved per Freeze while compacting, at least
)

// Options configure an Index. The zero value is valid.
type Options struct {
	// ChunkEntries is the mean number of entries per chunk; 0 means
	// DefaultChunkEntries. Chunks are cut by content (boundary), so their
	// sizes spread around it (about 1 in 60 is over 4 times the mean).
	ChunkEntries int
	// Dir, if not empty, is a directory where chunk bytes (plain and gzip)
	// are kept in an unlinked file instead of the Go heap.
	Dir string
	// GzipLevel for chunk members: 0 means DefaultGzipLevel, otherwise a
	// level compress/gzip accepts (1..9, gzip.HuffmanOnly, ...).
	GzipLevel int
}

// Index holds the package blocks of a Packages file, keyed and ordered by key
// (byte order of the string). Not safe for concurrent mutation: the caller
// serialises Put/Delete/Freeze under its own lock. Frozen views are immutable
// and safe for any number of concurrent readers, also while Index keeps changing.
type Index struct {
	n          int      // entries
	chunks     []*chunk // in key order, never empty chunks between calls
	draftBytes int64    // bytes of unsealed chunks (Dir mode: heap held until sealed)
	err        error    // sticky: a change could not be applied
	closed     bool

	chunkN int
	level  int
	dir    string

	// Dir store.
	open        func(string) (file, error)
	cur         *seg // appends go here
	old         *seg // being emptied by incremental compaction
	migrateAt   int  // where the compaction scan resumes in chunks
	maxDraft    int64
	minDead     int64
	flushFailed bool // an early seal failed: wait for Freeze to retry
	scratch     [][]byte

	// Counters for tests: gzip members compressed.
	chunkGz     atomic.Int64
	headerGz    int64
	compactions int
}

// chunk is a run of consecutive entries. Sealed (d == nil), it is immutable
// and may be shared with Views; while being edited (d != nil) it belongs to
// the Index alone and no View can reach it.
type chunk struct {
	keys string   // keys, concatenated
	kend []uint32 // kend[i]: end of key i in keys
	bend []uint32 // bend[i]: end of block i in the plain bytes
	plen int64    // plain bytes
	glen int64    // gzip member, stored right after the plain bytes
	mem  []byte   // memory store: plain bytes then gzip member
	seg  *seg     // file store: plain bytes at off, gzip member after them
	off  int64
	d    *draft
}

// draft is a chunk being edited: entries as separate slices so that a Put
// costs one insertion, not a re-render.
type draft struct {
	keys   []string
	blocks [][]byte
	size   int64
}

func (c *chunk) len() int {
	if c.d != nil {
		return len(c.d.keys)
	}
	return len(c.kend)
}

func (c *chunk) key(i int) string {
	if c.d != nil {
		return c.d.keys[i]
	}
	var s uint32
	if i > 0 {
		s = c.kend[i-1]
	}
	return c.keys[s:c.kend[i]]
}

// search returns the position of key in c, or where it would be inserted.
func (c *chunk) search(key string) (int, bool) {
	n := c.len()
	i := sort.Search(n, func(i int) bool { return c.key(i) >= key })
	return i, i < n && c.key(i) == key
}

// readAt reads the chunk's stored bytes (plain, then gzip member) at o.
func (c *chunk) readAt(p []byte, o int64) (int, error) {
	if c.seg == nil {
		return copy(p, c.mem[o:]), nil
	}
	return readFull(c.seg.f, p, c.off+o)
}

// New returns an empty Index. With opts.Dir it creates the store file there.
func New(opts Options) (*Index, error) {
	x := &Index{
		chunkN:   opts.ChunkEntries,
		level:    opts.GzipLevel,
		dir:      opts.Dir,
		open:     openTemp,
		maxDraft: defaultMaxDraft,
		minDead:  defaultMinDead,
	}
	if x.chunkN < 0 {
		return nil, fmt.Errorf("pieces: ChunkEntries %d < 0", x.chunkN)
	}
	if x.chunkN == 0 {
		x.chunkN = DefaultChunkEntries
	}
	if x.level == 0 {
		x.level = DefaultGzipLevel
	}
	zw, err := getZW(x.level)
	if err != nil {
		return nil, fmt.Errorf("pieces: %w", err)
	}
	putZW(x.level, zw)
	if x.dir != "" {
		// Fail early on an unusable directory rather than at the first Freeze.
		if x.cur, err = newSeg(x.open, x.dir); err != nil {
			return nil, fmt.Errorf("pieces: store: %w", err)
		}
	}
	return x, nil
}

// Len returns the number of entries.
func (x *Index) Len() int { return x.n }

// Err returns the error that made the Index drop a change, if any; Freeze
// returns it too. Reset clears it.
func (x *Index) Err() error { return x.err }

// find returns the chunk that holds key or would: the last one whose first
// key is <= key, or the first chunk.
func (x *Index) find(key string) int {
	// Chunk 0 takes every key below chunk 1, so its own first key (absent
	// while a first Put fills it) is never needed.
	return sort.Search(len(x.chunks)-1, func(i int) bool { return x.chunks[i+1].key(0) > key })
}

// Put inserts or replaces the block of key. block is one rendered package
// block ending in "\n\n"; it is copied.
func (x *Index) Put(key string, block []byte) {
	if x.err != nil || x.closed {
		return
	}
	if len(block) > math.MaxUint32/4 {
		x.err = fmt.Errorf("pieces: block of %q too large (%d bytes)", key, len(block))
		return
	}
	if len(x.chunks) == 0 {
		x.chunks = append(x.chunks, &chunk{d: &draft{}})
	}
	i := x.find(key)
	if c := x.chunks[i]; c.len() > 0 && c.key(c.len()-1) < key && x.boundary(c.key(c.len()-1)) {
		// After the boundary that ends chunks[i]: the key starts the next
		// run (boundary).
		if i+1 == len(x.chunks) {
			x.chunks = append(x.chunks, &chunk{d: &draft{}})
		}
		i++
	}
	c, err := x.edit(i)
	if err != nil {
		x.err = fmt.Errorf("pieces: put %q: %w", key, err)
		return
	}
	d := c.d
	b := bytes.Clone(block)
	j, found := c.search(key)
	if found {
		delta := int64(len(b) - len(d.blocks[j]))
		d.blocks[j] = b
		d.size += delta
		x.draftBytes += delta
	} else {
		d.keys = slices.Insert(d.keys, j, key)
		d.blocks = slices.Insert(d.blocks, j, b)
		d.size += int64(len(b))
		x.draftBytes += int64(len(b))
		x.n++
		x.afterInsert(i, j)
	}
	x.maybeFlush()
}

// Delete removes key; no-op if absent.
func (x *Index) Delete(key string) {
	if x.err != nil || x.closed || len(x.chunks) == 0 {
		return
	}
	i := x.find(key)
	j, found := x.chunks[i].search(key)
	if !found {
		return
	}
	c, err := x.edit(i)
	if err != nil {
		x.err = fmt.Errorf("pieces: delete %q: %w", key, err)
		return
	}
	d := c.d
	sz := int64(len(d.blocks[j]))
	d.keys = slices.Delete(d.keys, j, j+1)
	d.blocks = slices.Delete(d.blocks, j, j+1)
	d.size -= sz
	x.draftBytes -= sz
	x.n--
	switch {
	case len(d.keys) == 0:
		// It held a run's boundary alone: the chunk before ends at one too.
		x.chunks = slices.Delete(x.chunks, i, i+1)
	case j == len(d.keys) && i+1 < len(x.chunks):
		// The boundary that ended the chunk went: its run goes on into
		// the next chunk's.
		x.join(i)
	}
}

// DeleteRange removes every key k with lo <= k < hi (a package's entries,
// whatever their build ids).
func (x *Index) DeleteRange(lo, hi string) {
	for x.err == nil && !x.closed && len(x.chunks) > 0 {
		i := x.find(lo)
		c := x.chunks[i]
		j, _ := c.search(lo)
		if j == c.len() {
			// The first key from lo on, if any, starts the next chunk.
			if i+1 == len(x.chunks) {
				return
			}
			c, j = x.chunks[i+1], 0
		}
		k := c.key(j)
		if k >= hi {
			return
		}
		x.Delete(k)
	}
}

// edit makes chunks[i] editable and returns it. A sealed chunk is replaced by
// a new draft (copy-on-write): Views keep the old one.
func (x *Index) edit(i int) (*chunk, error) {
	c := x.chunks[i]
	if c.d != nil {
		return c, nil
	}
	var plain []byte
	if c.seg == nil {
		// Immutable bytes: the draft may alias them.
		plain = c.mem[:c.plen:c.plen]
	} else {
		plain = make([]byte, c.plen)
		if _, err := readFull(c.seg.f, plain, c.off); err != nil {
			return nil, err
		}
	}
	n := len(c.kend)
	d := &draft{keys: make([]string, n), blocks: make([][]byte, n), size: c.plen}
	var s uint32
	for k := range n {
		d.keys[k] = c.key(k)
		e := c.bend[k]
		d.blocks[k] = plain[s:e:e] // capped: an append must never reach the neighbour
		s = e
	}
	x.retire(c)
	nc := &chunk{d: d}
	x.chunks[i] = nc
	x.draftBytes += d.size
	return nc, nil
}

// retire accounts a sealed chunk leaving the index: its stored bytes become dead.
func (x *Index) retire(c *chunk) {
	if c.seg != nil {
		c.seg.live -= c.plen + c.glen
		c.seg.nchunks--
	}
}

// Chunks are cut by content, not by history: a chunk ends right after a
// boundary key (one whose hash is 0 modulo chunkN: chunkN entries a chunk on
// average) or at the end of the index, and holds no other boundary key. The
// chunks, so each gzip member and Packages.gz as a whole, are then a function
// of the entries alone: every host of a shared catalog serves byte-identical
// files for a generation, whatever order its puts and deletes came in, and
// an index loaded from a cache is the one a fresh render makes.
func (x *Index) boundary(key string) bool {
	// FNV-1a, 64 bits: no allocation, well spread over package keys.
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h%uint64(x.chunkN) == 0
}

// afterInsert restores the rule after a key was inserted at position j of
// the draft chunks[i] (Put chose the chunk of its run): a boundary key
// inside a chunk ends it.
func (x *Index) afterInsert(i, j int) {
	d := x.chunks[i].d
	if j < len(d.keys)-1 && x.boundary(d.keys[j]) {
		x.cutAfter(i, j)
	}
}

// cutAfter splits the draft chunks[i] after its entry j.
func (x *Index) cutAfter(i, j int) {
	d := x.chunks[i].d
	r := &draft{keys: slices.Clone(d.keys[j+1:]), blocks: slices.Clone(d.blocks[j+1:])}
	for _, b := range r.blocks {
		r.size += int64(len(b))
	}
	clear(d.keys[j+1:])
	clear(d.blocks[j+1:])
	d.keys, d.blocks = d.keys[:j+1], d.blocks[:j+1]
	d.size -= r.size
	x.chunks = slices.Insert(x.chunks, i+1, &chunk{d: r})
}

// join appends chunks[i+1] to the draft chunks[i]. A failure to read it
// is sticky (Err): the chunks would otherwise depend on history.
func (x *Index) join(i int) {
	b, err := x.edit(i + 1)
	if err != nil {
		x.err = fmt.Errorf("pieces: joining chunks: %w", err)
		return
	}
	a := x.chunks[i]
	a.d.keys = append(a.d.keys, b.d.keys...)
	a.d.blocks = append(a.d.blocks, b.d.blocks...)
	a.d.size += b.d.size
	x.chunks = slices.Delete(x.chunks, i+1, i+2)
}

// Reset drops every entry, e.g. before a full reload. It also clears the
// sticky error and starts a new store file (Views keep theirs).
func (x *Index) Reset() {
	x.chunks = nil
	x.n = 0
	x.draftBytes = 0
	x.err = nil
	x.flushFailed = false
	x.dropSegs()
}

func (x *Index) dropSegs() {
	if x.cur != nil {
		x.cur.release()
		x.cur = nil
	}
	if x.old != nil {
		x.old.release()
		x.old = nil
	}
	x.migrateAt = 0
}

// Load replaces the contents with the entries of seq (any order; key order
// is cheapest) and returns Err. In Dir mode the heap holds at most about
// 64 MiB of unsealed blocks at a time.
func (x *Index) Load(seq iter.Seq2[string, []byte]) error {
	x.Reset()
	for k, b := range seq {
		x.Put(k, b)
		if x.err != nil {
			break
		}
	}
	return x.err
}

// Close releases the store. Views taken before keep working until released.
func (x *Index) Close() error {
	x.Reset()
	x.closed = true
	x.scratch = nil
	return nil
}

// maybeFlush seals unsealed chunks early in Dir mode, so that loading a large
// catalog does not hold it all on the heap until the first Freeze. A failure
// is left for Freeze to retry and report.
func (x *Index) maybeFlush() {
	if x.dir == "" || x.draftBytes <= x.maxDraft || x.flushFailed {
		return
	}
	if _, err := x.sealAll(); err != nil {
		x.flushFailed = true
	}
}

// Freeze seals the chunks changed since the last Freeze (compressing them in
// parallel) and returns an immutable View of header followed by every block in
// key order. header is the rendered header block; mtime goes into the header
// member's gzip MTIME. Cost: O(chunks) pointer work plus the changed chunks.
func (x *Index) Freeze(header []byte, mtime int64) (*View, error) {
	if x.closed {
		return nil, ErrClosed
	}
	if x.err != nil {
		return nil, x.err
	}
	x.flushFailed = false
	written, err := x.sealAll()
	if err != nil {
		return nil, err
	}
	if err := x.compact(written); err != nil {
		return nil, err
	}
	hgz, err := x.gzipHeader(header, mtime)
	if err != nil {
		return nil, err
	}
	v := &View{
		header: bytes.Clone(header),
		hgz:    hgz,
		chunks: slices.Clone(x.chunks),
		pend:   make([]int64, len(x.chunks)),
		gend:   make([]int64, len(x.chunks)),
	}
	p, g := int64(len(v.header)), int64(len(v.hgz))
	for i, c := range v.chunks {
		p += c.plen
		g += c.glen
		v.pend[i], v.gend[i] = p, g
	}
	if x.cur != nil || x.old != nil {
		// Every chunk of the index lives in memory, cur or old (also in
		// memory mode: a loaded cache file).
		r := &viewRefs{}
		for _, s := range []*seg{x.cur, x.old} {
			if s != nil {
				s.acquire()
				r.segs = append(r.segs, s)
			}
		}
		v.refs = r
		// A View dropped without Release must not pin its file forever.
		runtime.AddCleanup(v, func(r *viewRefs) { r.release() }, r)
	}
	return v, nil
}

func (x *Index) gzipHeader(header []byte, mtime int64) ([]byte, error) {
	x.headerGz++
	var w appendWriter
	zw, err := getZW(x.level)
	if err != nil {
		return nil, err
	}
	defer putZW(x.level, zw)
	zw.Reset(&w)
	zw.ModTime = time.Time{}
	if mtime > 0 {
		zw.ModTime = time.Unix(mtime, 0)
	}
	zw.OS = 255 // as Portage's writer
	if _, err := zw.Write(header); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return w.b, nil
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// sealed is the outcome of sealing one draft, applied by the Index's goroutine.
type sealed struct {
	c               *chunk
	keys            string
	kend, bend      []uint32
	plen, glen, off int64
	mem             []byte
	err             error
}

// sealAll seals every draft chunk over up to GOMAXPROCS goroutines and
// returns the bytes written to the store. Chunks that fail stay drafts.
func (x *Index) sealAll() (int64, error) {
	var todo []*chunk
	for _, c := range x.chunks {
		if c.d != nil {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	if x.dir != "" && x.cur == nil {
		s, err := newSeg(x.open, x.dir)
		if err != nil {
			return 0, fmt.Errorf("pieces: store: %w", err)
		}
		x.cur = s
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	zws := make([]*gzip.Writer, workers)
	for w := range zws {
		zw, err := getZW(x.level)
		if err != nil {
			return 0, err
		}
		zws[w] = zw
	}
	defer func() {
		for _, zw := range zws {
			putZW(x.level, zw)
		}
	}()
	for len(x.scratch) < workers {
		x.scratch = append(x.scratch, nil)
	}
	res := make([]sealed, len(todo))
	if workers == 1 {
		for k, c := range todo {
			res[k] = x.seal(c, zws[0], &x.scratch[0])
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := int(next.Add(1) - 1)
					if k >= len(todo) {
						return
					}
					res[k] = x.seal(todo[k], zws[w], &x.scratch[w])
				}
			}()
		}
		wg.Wait()
	}
	var written int64
	var errs []error
	for _, r := range res {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		c := r.c
		x.draftBytes -= c.d.size
		c.keys, c.kend, c.bend = r.keys, r.kend, r.bend
		c.plen, c.glen, c.mem, c.off = r.plen, r.glen, r.mem, r.off
		c.d = nil
		if x.dir != "" {
			c.seg = x.cur
			x.cur.live += c.plen + c.glen
			x.cur.nchunks++
			written += c.plen + c.glen
		}
	}
	if len(errs) > 0 {
		// One error says it all when the disk is full; keep the first few.
		return written, fmt.Errorf("pieces: sealing %d of %d chunks: %w", len(errs), len(todo), errors.Join(errs[:min(len(errs), 3)]...))
	}
	return written, nil
}

// seal renders and compresses one draft and, in Dir mode, appends it to the
// store. It only reads the chunk: sealAll applies the result.
func (x *Index) seal(c *chunk, zw *gzip.Writer, scratch *[]byte) sealed {
	d := c.d
	if d.size > math.MaxUint32 {
		return sealed{err: fmt.Errorf("pieces: chunk of %d bytes too large", d.size)}
	}
	r := sealed{c: c, plen: d.size, kend: make([]uint32, len(d.keys)), bend: make([]uint32, len(d.keys))}
	var kb strings.Builder
	kn := 0
	for _, k := range d.keys {
		kn += len(k)
	}
	if kn > math.MaxUint32 {
		return sealed{err: fmt.Errorf("pieces: chunk keys of %d bytes too large", kn)}
	}
	kb.Grow(kn)
	var buf []byte
	if x.dir != "" {
		buf = (*scratch)[:0] // copied to the file: reuse one buffer per worker
	} else {
		buf = make([]byte, 0, d.size+d.size/5+256) // gzip is ~17% of the plain text
	}
	for k, key := range d.keys {
		kb.WriteString(key)
		r.kend[k] = uint32(kb.Len())
		buf = append(buf, d.blocks[k]...)
		r.bend[k] = uint32(len(buf))
	}
	r.keys = kb.String()
	w := appendWriter{b: buf}
	zw.Reset(&w)
	zw.OS = 255 // ModTime stays 0: a chunk member does not change with TIMESTAMP
	if _, err := zw.Write(buf); err != nil {
		return sealed{err: err}
	}
	if err := zw.Close(); err != nil {
		return sealed{err: err}
	}
	x.chunkGz.Add(1)
	buf = w.b
	r.glen = int64(len(buf)) - r.plen
	if x.dir == "" {
		if cap(buf)-len(buf) > len(buf)/8 {
			buf = slices.Clone(buf) // don't keep slack for the life of the chunk
		}
		r.mem = buf
		return r
	}
	*scratch = keepScratch(buf)
	r.off = x.cur.reserve(int64(len(buf)))
	if _, err := x.cur.f.WriteAt(buf, r.off); err != nil {
		return sealed{err: err}
	}
	return r
}

// compact runs one step of incremental compaction of the Dir store. When dead
// bytes exceed live bytes (and minDead), appends move to a new file and every
// Freeze then moves at least twice what it wrote, plus migrateMin, of the old
// file's chunks to the new one; the old file is released when empty. So no
// Freeze pays for a whole rewrite, and the new file ends up with no more dead
// than live bytes. Moved chunks are new objects: Views keep the old ones and,
// through their references, the old file.
func (x *Index) compact(written int64) error {
	if x.dir == "" && x.old != nil && x.old.nchunks == 0 {
		// A loaded cache file no chunk lives in any more. In memory
		// mode its chunks stay there until they change: moving them
		// would grow the heap by the index.
		x.old.release()
		x.old = nil
	}
	if x.dir == "" || x.cur == nil {
		return nil
	}
	if x.old == nil {
		dead := x.cur.size.Load() - x.cur.live
		if dead <= x.cur.live || dead <= x.minDead {
			return nil
		}
		s, err := newSeg(x.open, x.dir)
		if err != nil {
			return fmt.Errorf("pieces: compaction: %w", err)
		}
		x.old, x.cur, x.migrateAt = x.cur, s, 0
		x.compactions++
	}
	budget := 2*written + migrateMin
	var moved int64
	for scanned := 0; scanned < len(x.chunks) && x.old.nchunks > 0 && moved < budget; scanned++ {
		if x.migrateAt >= len(x.chunks) {
			x.migrateAt = 0
		}
		c := x.chunks[x.migrateAt]
		if c.seg == x.old {
			nc, err := x.move(c)
			if err != nil {
				return fmt.Errorf("pieces: compaction: %w", err)
			}
			x.chunks[x.migrateAt] = nc
			moved += c.plen + c.glen
		}
		x.migrateAt++
	}
	if x.old.nchunks == 0 {
		x.old.release()
		x.old = nil
	}
	return nil
}

// move copies a sealed chunk of the old file to the current one.
func (x *Index) move(c *chunk) (*chunk, error) {
	n := c.plen + c.glen
	if len(x.scratch) == 0 {
		x.scratch = append(x.scratch, nil)
	}
	buf := slices.Grow(x.scratch[0][:0], int(n))[:n]
	x.scratch[0] = keepScratch(buf)
	if _, err := readFull(c.seg.f, buf, c.off); err != nil {
		return nil, err
	}
	off := x.cur.reserve(n)
	if _, err := x.cur.f.WriteAt(buf, off); err != nil {
		return nil, err
	}
	nc := *c // shares the immutable keys and lengths
	nc.seg, nc.off = x.cur, off
	x.retire(c)
	x.cur.live += n
	x.cur.nchunks++
	return &nc, nil
}

// keepScratch returns buf for reuse unless a huge block made it huge: the
// heap should not keep the largest chunk ever seen.
func keepScratch(buf []byte) []byte {
	if cap(buf) > 4<<20 {
		return nil
	}
	return buf
}

// zwPools keeps gzip writers by level for every Index of the process: a
// writer holds about 800 KiB, and a mount keeps an index per channel.
var zwPools sync.Map // int → *sync.Pool

func getZW(level int) (*gzip.Writer, error) {
	if p, ok := zwPools.Load(level); ok {
		if zw, ok := p.(*sync.Pool).Get().(*gzip.Writer); ok {
			return zw, nil
		}
	}
	return gzip.NewWriterLevel(nil, level)
}

func putZW(level int, zw *gzip.Writer) {
	p, _ := zwPools.LoadOrStore(level, new(sync.Pool))
	p.(*sync.Pool).Put(zw)
}
