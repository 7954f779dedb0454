package pieces

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// faultFile wraps a store file so that tests can fail its writes and reads
// and see when it is closed.
type faultFile struct {
	file
	ctl    *faults
	closed atomic.Bool
}

type faults struct {
	failWrite atomic.Bool
	failRead  atomic.Bool
	mu        sync.Mutex
	files     []*faultFile
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.ctl.failWrite.Load() {
		// A partial write, as a full disk may leave.
		n, _ := f.file.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.file.WriteAt(p, off)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if f.ctl.failRead.Load() {
		return 0, syscall.EIO
	}
	return f.file.ReadAt(p, off)
}

func (f *faultFile) Close() error {
	if f.closed.Swap(true) {
		panic("store file closed twice")
	}
	return f.file.Close()
}

func (c *faults) open(dir string) (file, error) {
	f, err := openTemp(dir)
	if err != nil {
		return nil, err
	}
	ff := &faultFile{file: f, ctl: c}
	c.mu.Lock()
	c.files = append(c.files, ff)
	c.mu.Unlock()
	return ff, nil
}

func (c *faults) counts() (open, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		if f.closed.Load() {
			closed++
		} else {
			open++
		}
	}
	return open, closed
}

// newIndex returns an Index in memory (dir == false) or on a store in a
// temporary directory whose files go through ctl.
func newIndex(t testing.TB, opts Options, dir bool, ctl *faults) *Index {
	t.Helper()
	if dir {
		opts.Dir = t.TempDir()
	}
	x, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if dir && ctl != nil {
		x.Reset() // drop the file New made; the next one goes through ctl
		x.open = ctl.open
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func naive(header []byte, m map[string][]byte) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := slices.Clone(header)
	for _, k := range keys {
		out = append(out, m[k]...)
	}
	return out
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
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

func header(gen int, n int) []byte {
	return fmt.Appendf(nil, "ARCH: amd64\nPACKAGES: %d\nTIMESTAMP: %d\nVERSION: 0\n\n", n, 1719000000+gen)
}

// checkView compares every way of reading v with want.
func checkView(t testing.TB, r *rand.Rand, v *View, want []byte, mtime int64) {
	t.Helper()
	got, err := v.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Bytes: %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if v.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", v.Size(), len(want))
	}
	gz, err := v.GzBytes()
	if err != nil {
		t.Fatal(err)
	}
	if v.GzSize() != int64(len(gz)) {
		t.Fatalf("GzSize %d, len(GzBytes) %d", v.GzSize(), len(gz))
	}
	if plain := gunzip(t, gz); !bytes.Equal(plain, want) {
		t.Fatalf("gunzip(GzBytes): %d bytes, want %d (first difference at %d)", len(plain), len(want), firstDiff(plain, want))
	}
	// The first member is the header's: MTIME = TIMESTAMP, OS unknown, no name.
	if len(gz) < 10 || gz[0] != 0x1f || gz[1] != 0x8b || gz[3] != 0 || gz[9] != 255 ||
		int64(binary.LittleEndian.Uint32(gz[4:8])) != mtime {
		t.Fatalf("header member: % x", gz[:min(len(gz), 10)])
	}
	for range 20 {
		checkReadAt(t, r, v.ReadAt, want)
		checkReadAt(t, r, v.GzReadAt, gz)
	}
}

func checkReadAt(t testing.TB, r *rand.Rand, read func([]byte, int64) (int, error), want []byte) {
	t.Helper()
	off := int64(r.Intn(len(want) + 2))
	n := r.Intn(1 << uint(r.Intn(18)))
	p := make([]byte, n)
	got, err := read(p, off)
	exp := 0
	if off < int64(len(want)) {
		exp = copy(make([]byte, n), want[off:])
	}
	if got != exp || !bytes.Equal(p[:got], want[min(off, int64(len(want))):][:exp]) {
		t.Fatalf("ReadAt(%d bytes, %d): %d, %v; want %d bytes", n, off, got, err, exp)
	}
	switch {
	case got < n && err != io.EOF:
		t.Fatalf("ReadAt(%d bytes, %d) = %d, %v: short read without io.EOF", n, off, got, err)
	case got == n && err != nil && err != io.EOF:
		t.Fatalf("ReadAt(%d bytes, %d): %v", n, off, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkInvariants verifies the Index's bookkeeping against its chunks.
func checkInvariants(t testing.TB, x *Index) {
	t.Helper()
	n := 0
	var draft int64
	live := map[*seg]int64{}
	count := map[*seg]int{}
	prev := ""
	for ci, c := range x.chunks {
		if c.len() == 0 {
			t.Fatalf("chunk %d empty", ci)
		}
		// Cut by content (boundary): the last key of every chunk but the
		// index's last is a boundary key, and no other key is.
		for i := range c.len() {
			last := i == c.len()-1
			if b := x.boundary(c.key(i)); b != last && (b || ci < len(x.chunks)-1) {
				t.Fatalf("chunk %d of %d, entry %d of %d (%q): boundary %v", ci, len(x.chunks), i, c.len(), c.key(i), b)
			}
		}
		for i := range c.len() {
			if (ci > 0 || i > 0) && c.key(i) <= prev {
				t.Fatalf("keys out of order: %q after %q", c.key(i), prev)
			}
			prev = c.key(i)
		}
		n += c.len()
		if c.d != nil {
			draft += c.d.size
			var s int64
			for _, b := range c.d.blocks {
				s += int64(len(b))
			}
			if s != c.d.size {
				t.Fatalf("draft size %d, blocks %d", c.d.size, s)
			}
			continue
		}
		if int64(c.bend[len(c.bend)-1]) != c.plen {
			t.Fatalf("chunk %d: plen %d, blocks end at %d", ci, c.plen, c.bend[len(c.bend)-1])
		}
		if c.seg != nil {
			if c.seg != x.cur && c.seg != x.old {
				t.Fatalf("chunk %d in a file the index does not hold", ci)
			}
			live[c.seg] += c.plen + c.glen
			count[c.seg]++
		}
	}
	if n != x.Len() {
		t.Fatalf("Len %d, chunks hold %d", x.Len(), n)
	}
	if draft != x.draftBytes {
		t.Fatalf("draftBytes %d, drafts hold %d", x.draftBytes, draft)
	}
	for _, s := range []*seg{x.cur, x.old} {
		if s != nil && (s.live != live[s] || s.nchunks != count[s]) {
			t.Fatalf("segment accounts %d bytes in %d chunks, holds %d in %d", s.live, s.nchunks, live[s], count[s])
		}
	}
}

type frozen struct {
	v     *View
	want  []byte
	mtime int64
}

// TestProperty drives random Put/Delete/Freeze sequences against a sorted map.
func TestProperty(t *testing.T) {
	for _, dir := range []bool{false, true} {
		for _, c := range []struct{ space, chunk int }{{40, 1}, {40, 4}, {5000, 4}, {5000, 64}} {
			t.Run(fmt.Sprintf("dir=%v/keys=%d/chunk=%d", dir, c.space, c.chunk), func(t *testing.T) {
				t.Parallel()
				testProperty(t, dir, c.space, c.chunk, int64(c.space*100+c.chunk))
			})
		}
	}
}

func testProperty(t *testing.T, dir bool, space, chunkN int, seed int64) {
	r := rand.New(rand.NewSource(seed))
	ctl := &faults{}
	// Level 1: the race detector slows deflate a hundredfold, and what is
	// tested here is the framing, not compress/flate.
	x := newIndex(t, Options{ChunkEntries: chunkN, GzipLevel: 1}, dir, ctl)
	x.minDead = 0          // compact as soon as dead bytes exceed live ones
	x.maxDraft = 256 << 10 // exercise early sealing during long runs of Puts
	m := map[string][]byte{}
	var kept []frozen
	ops := 3000
	if testing.Short() {
		ops = 800
	}
	gen, puts, bigViews := 0, 0, 0
	for op := range ops {
		switch k := r.Intn(100); {
		case k < 64:
			key := fmt.Sprintf("cat-%d/pkg-%d\x00%010d", r.Intn(7), r.Intn(space), r.Intn(3))
			size := 30 + r.Intn(400)
			if puts++; puts%500 == 50 {
				size = 100 << 10 // a few per run, at fixed places so that every run has them
			}
			b := make([]byte, size)
			for i := range b {
				b[i] = "ABCDEFGHIJ: abcdefghij0123456789\n"[r.Intn(33)]
			}
			copy(b[len(b)-2:], "\n\n")
			x.Put(key, b)
			m[key] = slices.Clone(b)
			b[0] = '#' // the Index must have copied the block
		case k < 87:
			var key string
			if len(m) > 0 && r.Intn(4) > 0 {
				for key = range m {
					break
				}
			} else {
				key = fmt.Sprintf("cat-%d/pkg-%d\x00%010d", r.Intn(7), r.Intn(space), r.Intn(3))
			}
			x.Delete(key)
			delete(m, key)
		case k < 88 && len(m) > 0:
			// Delete a run, to exercise merges.
			for key := range m {
				x.Delete(key)
				delete(m, key)
				if r.Intn(30) == 0 {
					break
				}
			}
		case k < 96:
			// Most Freezes are checked below; these only change the
			// generation, like a daemon freezing without a reader.
			v, err := x.Freeze(header(gen, len(m)), 1)
			if err != nil {
				t.Fatal(err)
			}
			v.Release()
		default:
			gen++
			h := header(gen, len(m))
			mtime := int64(1719000000 + gen)
			v, err := x.Freeze(h, mtime)
			if err != nil {
				t.Fatal(err)
			}
			want := naive(h, m)
			checkView(t, r, v, want, mtime)
			if len(want) > 100<<10 {
				bigViews++
			}
			if r.Intn(4) == 0 {
				kept = append(kept, frozen{v, want, mtime})
			} else {
				v.Release()
			}
			// Old views still read their own bytes, across compactions.
			if len(kept) > 0 && r.Intn(2) == 0 {
				i := r.Intn(len(kept))
				checkView(t, r, kept[i].v, kept[i].want, kept[i].mtime)
				if r.Intn(3) == 0 {
					kept[i].v.Release()
					if _, err := kept[i].v.ReadAt(make([]byte, 1), 0); dir && !errors.Is(err, ErrReleased) {
						t.Fatalf("read after Release: %v", err)
					}
					kept = slices.Delete(kept, i, i+1)
				}
			}
		}
		if op%10 == 0 || op == ops-1 {
			checkInvariants(t, x) // O(entries): every op would dominate the run
		}
		if x.Len() != len(m) {
			t.Fatalf("op %d: Len %d, want %d", op, x.Len(), len(m))
		}
	}
	for _, f := range kept {
		checkView(t, r, f.v, f.want, f.mtime)
		f.v.Release()
	}
	if bigViews == 0 {
		t.Error("no checked view held a 100 KiB block")
	}
	if dir {
		t.Logf("compactions %d", x.compactions)
		if x.compactions == 0 && space > 1000 {
			t.Errorf("no compaction happened")
		}
		x.Close()
		if open, _ := ctl.counts(); open != 0 {
			t.Errorf("%d store files still open after Close and Release of every view", open)
		}
	}
}

// TestImmutableAcrossCompaction: a View keeps its bytes and its file while
// the Index changes, compacts and drops that file.
func TestImmutableAcrossCompaction(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dir), func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			ctl := &faults{}
			x := newIndex(t, Options{ChunkEntries: 8}, dir, ctl)
			x.minDead = 0
			m := map[string][]byte{}
			for i := range 500 {
				k, b := entry(7, i, 0)
				x.Put(k, b)
				m[k] = b
			}
			h := header(0, len(m))
			v0, err := x.Freeze(h, 5)
			if err != nil {
				t.Fatal(err)
			}
			want0 := naive(h, m)
			checkView(t, r, v0, want0, 5)
			firstFiles, _ := ctl.counts()
			// Rewrite everything several times: the first file becomes all dead.
			for g := 1; g <= 6; g++ {
				for i := range 500 {
					k, b := entry(7, i, uint64(g))
					x.Put(k, b)
					m[k] = b
				}
				h := header(g, len(m))
				v, err := x.Freeze(h, int64(5+g))
				if err != nil {
					t.Fatal(err)
				}
				checkView(t, r, v, naive(h, m), int64(5+g))
				v.Release()
				checkView(t, r, v0, want0, 5)
			}
			if !dir {
				return
			}
			if x.compactions == 0 {
				t.Fatal("no compaction")
			}
			open, closed := ctl.counts()
			t.Logf("files: first %d, now open %d, closed %d; compactions %d", firstFiles, open, closed, x.compactions)
			if ctl.files[0].closed.Load() {
				t.Fatal("first file closed under v0")
			}
			v0.Release()
			if !ctl.files[0].closed.Load() {
				t.Fatal("first file still open after its last view was released")
			}
			if open, _ := ctl.counts(); open != 1 {
				t.Fatalf("%d files open, want only the current one", open)
			}
		})
	}
}

// TestGzipReaders: zcat, Python's gzip module and Go's compress/gzip read the
// multi-member Packages.gz as the exact Packages bytes.
func TestGzipReaders(t *testing.T) {
	x := newIndex(t, Options{ChunkEntries: 16}, true, nil)
	for i := range 300 {
		x.Put(entry(3, i, 0))
	}
	x.Delete(func() string { k, _ := entry(3, 17, 0); return k }())
	h := header(1, x.Len())
	v, err := x.Freeze(h, 1719000001)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	plain, err := v.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	gz, err := v.GzBytes()
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(gz, []byte{0x1f, 0x8b, 8}); n < 1+300/32 {
		t.Fatalf("only %d gzip members", n)
	}
	path := filepath.Join(t.TempDir(), "Packages.gz")
	if err := os.WriteFile(path, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("go", func(t *testing.T) {
		if !bytes.Equal(gunzip(t, gz), plain) {
			t.Fatal("compress/gzip output differs")
		}
	})
	for _, c := range []struct {
		name, bin string
		args      []string
	}{
		{"zcat", "zcat", []string{path}},
		{"python", "python3", []string{"-c", "import gzip,sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())", path}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.bin); err != nil {
				t.Skipf("%s not installed", c.bin)
			}
			out, err := exec.Command(c.bin, c.args...).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, plain) {
				t.Fatalf("%s: %d bytes, want %d (first difference at %d)", c.name, len(out), len(plain), firstDiff(out, plain))
			}
		})
	}
}

// TestRecompressOnlyChanged: a Freeze compresses the changed chunks and the
// header member, nothing else.
func TestRecompressOnlyChanged(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dir), func(t *testing.T) {
			x := newIndex(t, Options{ChunkEntries: 64}, dir, nil)
			var keys []string
			for i := range 5000 {
				k, b := entry(5, i, 0)
				x.Put(k, b)
				keys = append(keys, k)
			}
			v, err := x.Freeze(header(0, x.Len()), 1)
			if err != nil {
				t.Fatal(err)
			}
			v.Release()
			if got := x.chunkGz.Load(); got != int64(len(x.chunks)) {
				t.Fatalf("initial Freeze compressed %d chunks, index has %d", got, len(x.chunks))
			}
			step := func(name string, want int64, change func()) {
				t.Helper()
				c0, h0 := x.chunkGz.Load(), x.headerGz
				change()
				v, err := x.Freeze(header(1, x.Len()), 2)
				if err != nil {
					t.Fatal(err)
				}
				v.Release()
				if c, h := x.chunkGz.Load()-c0, x.headerGz-h0; c != want || h != 1 {
					t.Fatalf("%s: compressed %d chunk and %d header members, want %d and 1", name, c, h, want)
				}
			}
			// A key after keys[7] (and before keys[8]) that is, or is not,
			// a chunk boundary.
			after7 := func(boundary bool) string {
				for c := byte(1); ; c++ {
					if k := keys[7] + string([]byte{c}); x.boundary(k) == boundary {
						return k
					}
				}
			}
			step("replace", 1, func() { _, b := entry(5, 42, 1); x.Put(keys[42], b) })
			step("insert", 1, func() { x.Put(after7(false), []byte("X: y\n\n")) })
			// A boundary key cuts its chunk in two (boundary).
			step("insert a boundary", 2, func() { x.Put(after7(true), []byte("X: y\n\n")) })
			step("delete", 1, func() { x.Delete(keys[99]) })
			step("nothing", 0, func() {})
			step("two in one chunk", 1, func() {
				x.Put(keys[100]+"\x01", []byte("X: z\n\n"))
				x.Put(keys[100]+"\x02", []byte("X: z\n\n"))
			})
		})
	}
}

// TestConcurrentReaders reads Views from several goroutines while the Index
// changes, seals, compacts and freezes (run with -race).
func TestConcurrentReaders(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dir), func(t *testing.T) {
			x := newIndex(t, Options{ChunkEntries: 8}, dir, nil)
			x.minDead = 0
			m := map[string][]byte{}
			for i := range 400 {
				k, b := entry(9, i, 0)
				x.Put(k, b)
				m[k] = b
			}
			var cur atomic.Pointer[frozen]
			freeze := func(g int) *frozen {
				h := header(g, len(m))
				v, err := x.Freeze(h, int64(g+1))
				if err != nil {
					t.Fatal(err)
				}
				return &frozen{v, naive(h, m), int64(g + 1)}
			}
			all := []*frozen{freeze(0)}
			cur.Store(all[0])
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewSource(int64(w)))
					for !stop.Load() {
						f := cur.Load()
						off := r.Int63n(f.v.Size())
						p := make([]byte, r.Intn(1<<16))
						n, err := f.v.ReadAt(p, off)
						if (err != nil && err != io.EOF) || !bytes.Equal(p[:n], f.want[off:][:n]) || n != min(len(p), len(f.want)-int(off)) {
							errs <- fmt.Errorf("ReadAt(%d, %d) = %d, %v: wrong bytes", len(p), off, n, err)
							return
						}
						if _, err := f.v.GzReadAt(p, r.Int63n(f.v.GzSize())); err != nil && err != io.EOF {
							errs <- err
							return
						}
					}
				}()
			}
			r := rand.New(rand.NewSource(2))
			for g := 1; g <= 20; g++ {
				for range 30 {
					i := r.Intn(450)
					k, b := entry(9, i, uint64(g))
					if r.Intn(5) == 0 {
						x.Delete(k)
						delete(m, k)
					} else {
						x.Put(k, b)
						m[k] = b
					}
				}
				f := freeze(g)
				all = append(all, f)
				cur.Store(f)
			}
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			r = rand.New(rand.NewSource(3))
			for _, f := range all {
				checkView(t, r, f.v, f.want, f.mtime)
				f.v.Release()
			}
			if dir && x.compactions == 0 {
				t.Error("no compaction")
			}
		})
	}
}

// TestWriteErrors: a failing store makes Freeze return the error; nothing is
// lost and the next Freeze after the disk recovers is exact.
func TestWriteErrors(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	ctl := &faults{}
	x := newIndex(t, Options{ChunkEntries: 8}, true, ctl)
	x.minDead = 0
	m := map[string][]byte{}
	put := func(g uint64) {
		for range 60 {
			k, b := entry(11, r.Intn(200), g)
			x.Put(k, b)
			m[k] = b
		}
	}
	put(0)
	v, err := x.Freeze(header(0, len(m)), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := naive(header(0, len(m)), m)
	checkView(t, r, v, want, 1)
	for g := uint64(1); g <= 5; g++ {
		put(g)
		ctl.failWrite.Store(true)
		if _, err := x.Freeze(header(int(g), len(m)), 2); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Freeze on a full disk: %v, want ENOSPC", err)
		}
		checkInvariants(t, x)
		checkView(t, r, v, want, 1) // the previous view still reads
		ctl.failWrite.Store(false)
		v2, err := x.Freeze(header(int(g), len(m)), 3)
		if err != nil {
			t.Fatal(err)
		}
		checkView(t, r, v2, naive(header(int(g), len(m)), m), 3)
		v2.Release()
	}
	// Early sealing during a long run of Puts fails quietly; Freeze reports.
	x.maxDraft = 1 << 10
	ctl.failWrite.Store(true)
	put(9)
	if _, err := x.Freeze(header(9, len(m)), 4); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Freeze: %v, want ENOSPC", err)
	}
	ctl.failWrite.Store(false)
	v3, err := x.Freeze(header(9, len(m)), 4)
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, r, v3, naive(header(9, len(m)), m), 4)
	v3.Release()
	v.Release()
}

// TestReadErrors: a Put that cannot read its chunk back makes the Index
// refuse to freeze until Reset.
func TestReadErrors(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	ctl := &faults{}
	x := newIndex(t, Options{ChunkEntries: 8}, true, ctl)
	for i := range 100 {
		x.Put(entry(12, i, 0))
	}
	v, err := x.Freeze(header(0, 100), 1)
	if err != nil {
		t.Fatal(err)
	}
	want, err := v.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ctl.failRead.Store(true)
	x.Put(entry(12, 5, 1))
	if !errors.Is(x.Err(), syscall.EIO) {
		t.Fatalf("Err after a failed Put: %v", x.Err())
	}
	if _, err := v.Bytes(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Bytes on a failing disk: %v", err)
	}
	if _, err := x.Freeze(header(1, 100), 2); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Freeze after a failed Put: %v", err)
	}
	ctl.failRead.Store(false)
	checkView(t, r, v, want, 1)
	v.Release()
	m := map[string][]byte{}
	err = x.Load(func(yield func(string, []byte) bool) {
		for i := range 100 {
			k, b := entry(12, i, 2)
			m[k] = b
			if !yield(k, b) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err = x.Freeze(header(2, 100), 3)
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, r, v, naive(header(2, 100), m), 3)
	v.Release()
}

func TestEmptyAndOptions(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	for _, dir := range []bool{false, true} {
		x := newIndex(t, Options{ChunkEntries: 0}, dir, nil)
		if x.chunkN != DefaultChunkEntries || x.level != DefaultGzipLevel {
			t.Fatalf("defaults: %d entries, level %d", x.chunkN, x.level)
		}
		h := header(0, 0)
		v, err := x.Freeze(h, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkView(t, r, v, h, 0)
		x.Put("a", []byte("A: 1\n\n"))
		x.Delete("a")
		x.Delete("b")
		v, err = x.Freeze(nil, 9)
		if err != nil {
			t.Fatal(err)
		}
		if v.Size() != 0 {
			t.Fatalf("Size %d", v.Size())
		}
		if b, err := v.Bytes(); err != nil || len(b) != 0 {
			t.Fatalf("Bytes: %q, %v", b, err)
		}
		if n, err := v.ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt past end: %d, %v", n, err)
		}
		if _, err := v.ReadAt(make([]byte, 4), -1); err == nil {
			t.Fatal("negative offset accepted")
		}
		if gz, err := v.GzBytes(); err != nil || len(gunzip(t, gz)) != 0 {
			t.Fatalf("GzBytes: %v", err)
		}
		x.Close()
		if _, err := x.Freeze(h, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Freeze after Close: %v", err)
		}
	}
	for _, o := range []Options{{ChunkEntries: -1}, {GzipLevel: 42}, {Dir: filepath.Join(t.TempDir(), "missing")}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if !strings.Contains(fmt.Sprint(ErrReleased), "released") {
		t.Fatal(ErrReleased)
	}
}

// TestSameEntriesSameBytes: two indexes that reach the same entries by
// different histories (a bulk load in order; random puts, deletes of keys
// that come and go, in another order and store) serve byte-identical
// Packages and Packages.gz: what hosts of one catalog serve for a
// generation must not depend on when each mounted.
func TestSameEntriesSameBytes(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	final := map[string][]byte{}
	var keys []string
	for i := range 3000 {
		k, b := entry(3, i, 0)
		final[k] = b
		keys = append(keys, k)
	}
	a := newIndex(t, Options{ChunkEntries: 16, GzipLevel: 1}, false, nil)
	for _, k := range keys {
		a.Put(k, final[k])
	}
	b := newIndex(t, Options{ChunkEntries: 16, GzipLevel: 1}, true, nil)
	extra := map[string]bool{}
	for round := range 3 {
		for _, i := range r.Perm(len(keys)) {
			k := keys[i]
			switch r.Intn(4) {
			case 0:
				b.Delete(k)
			case 1:
				e := k + "\x01" + strconv.Itoa(round)
				b.Put(e, []byte("X: gone\n\n"))
				extra[e] = true
			default:
				b.Put(k, []byte("X: other\n\n"))
			}
		}
		if _, err := b.Freeze(header(round, b.Len()), 1); err != nil {
			t.Fatal(err)
		}
	}
	for e := range extra {
		b.Delete(e)
	}
	for _, i := range r.Perm(len(keys)) {
		b.Put(keys[i], final[keys[i]])
	}
	checkInvariants(t, a)
	checkInvariants(t, b)
	va, err := a.Freeze(header(9, a.Len()), 5)
	if err != nil {
		t.Fatal(err)
	}
	defer va.Release()
	vb, err := b.Freeze(header(9, b.Len()), 5)
	if err != nil {
		t.Fatal(err)
	}
	defer vb.Release()
	pa, _ := va.Bytes()
	pb, _ := vb.Bytes()
	ga, _ := va.GzBytes()
	gb, _ := vb.GzBytes()
	if !bytes.Equal(pa, pb) {
		t.Fatalf("Packages differ (first difference at %d)", firstDiff(pa, pb))
	}
	if !bytes.Equal(ga, gb) {
		t.Fatalf("Packages.gz differs (%d and %d bytes, first difference at %d) though Packages is the same: %d and %d chunks",
			len(ga), len(gb), firstDiff(ga, gb), len(a.chunks), len(b.chunks))
	}
}
