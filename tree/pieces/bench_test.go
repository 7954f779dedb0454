package pieces

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
)

// BenchmarkChunkCompress compares gzip implementations and levels on one chunk
// of realistic entries, at the target size and at the split size. This is
// what chose DefaultGzipLevel and DefaultChunkEntries.
func BenchmarkChunkCompress(b *testing.B) {
	const seed = 1
	_, order := corpusOrder(seed, 4000)
	for _, n := range []int{64, 128} {
		var ch []byte
		for _, i := range order[1000 : 1000+n] {
			_, blk := entry(seed, i, 0)
			ch = append(ch, blk...)
		}
		type wr interface {
			io.WriteCloser
			Reset(io.Writer)
		}
		for _, c := range []struct {
			name string
			new  func() (wr, error)
		}{
			{"std6", func() (wr, error) { return stdgzip.NewWriterLevel(nil, 6) }},
			{"std9", func() (wr, error) { return stdgzip.NewWriterLevel(nil, 9) }},
			{"klauspost6", func() (wr, error) { return kgzip.NewWriterLevel(nil, 6) }},
			{"klauspost9", func() (wr, error) { return kgzip.NewWriterLevel(nil, 9) }},
		} {
			b.Run(fmt.Sprintf("entries=%d/%s", n, c.name), func(b *testing.B) {
				w, err := c.new()
				if err != nil {
					b.Fatal(err)
				}
				var buf bytes.Buffer
				b.SetBytes(int64(len(ch)))
				for b.Loop() {
					buf.Reset()
					w.Reset(&buf)
					w.Write(ch)
					w.Close()
				}
				b.ReportMetric(float64(buf.Len())/float64(len(ch))*100, "%size")
			})
		}
	}
}

// BenchmarkPutFreeze: one changed entry and a Freeze, on 100,000 entries.
func BenchmarkPutFreeze(b *testing.B) {
	for _, dir := range []bool{false, true} {
		b.Run(fmt.Sprintf("dir=%v", dir), func(b *testing.B) {
			const seed, n = 2, 100000
			x, keys, _, _ := loadCorpus(b, seed, n, dir)
			r := rand.New(rand.NewPCG(seed, 0))
			g := uint64(0)
			for b.Loop() {
				g++
				i := r.IntN(n)
				_, blk := entry(seed, i, g)
				x.Put(keys[i], blk)
				v, err := x.Freeze(header(int(g), n), int64(g))
				if err != nil {
					b.Fatal(err)
				}
				v.Release()
			}
		})
	}
}

// loadCorpus loads n corpus entries in key order and freezes once.
func loadCorpus(tb testing.TB, seed uint64, n int, dir bool) (x *Index, keys []string, load, freeze time.Duration) {
	tb.Helper()
	keys, order := corpusOrder(seed, n)
	opts := Options{}
	if dir {
		opts.Dir = tb.TempDir()
	}
	x, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { x.Close() })
	t0 := time.Now()
	if err := x.Load(corpusSeq(seed, order)); err != nil {
		tb.Fatal(err)
	}
	t1 := time.Now()
	v, err := x.Freeze(header(0, n), 1)
	if err != nil {
		tb.Fatal(err)
	}
	v.Release()
	return x, keys, t1.Sub(t0), time.Since(t1)
}

// TestMeasure prints the numbers behind the defaults. It is slow (minutes at
// 1,000,000 entries) and runs only with PIECES_MEASURE set, e.g.
// PIECES_MEASURE=100000,1000000 go test -run TestMeasure -v ./tree/pieces/
func TestMeasure(t *testing.T) {
	env := os.Getenv("PIECES_MEASURE")
	if env == "" {
		t.Skip("set PIECES_MEASURE=100000,1000000 to measure")
	}
	var sizes []int
	for _, f := range bytes.Split([]byte(env), []byte(",")) {
		n, err := strconv.Atoi(string(f))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	t.Logf("GOMAXPROCS %d, ChunkEntries %d, GzipLevel %d", runtime.GOMAXPROCS(0), DefaultChunkEntries, DefaultGzipLevel)
	for _, n := range sizes {
		for _, dir := range []bool{false, true} {
			measure(t, n, dir)
		}
	}
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func measure(t *testing.T, n int, dir bool) {
	const seed = 3
	name := fmt.Sprintf("n=%d dir=%v", n, dir)
	_, order := corpusOrder(seed, n)
	keys := make([]string, n)
	for _, i := range order {
		keys[i], _ = entry(seed, i, 0)
	}
	base := heap()
	opts := Options{}
	if dir {
		opts.Dir = t.TempDir()
	}
	x, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	t0 := time.Now()
	if err := x.Load(corpusSeq(seed, order)); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	v, err := x.Freeze(header(0, n), 1)
	if err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	t.Logf("%s: Load %v, first Freeze %v (%d chunks)", name, t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), len(x.chunks))
	held := heap()
	t.Logf("%s: heap %d MB, %.1f bytes/entry (keys average %.1f bytes) with one View held",
		name, (held-base)>>20, float64(held-base)/float64(n), func() float64 {
			s := 0
			for _, k := range keys {
				s += len(k)
			}
			return float64(s) / float64(n)
		}())
	gzSize, size := v.GzSize(), v.Size()
	// The single level-9 stream Portage writes, for comparison.
	var cw countWriter
	zw, _ := stdgzip.NewWriterLevel(&cw, 9)
	t3 := time.Now()
	if _, err := io.Copy(zw, io.NewSectionReader(v, 0, size)); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	t.Logf("%s: Packages %d bytes; Packages.gz %d bytes (%.2f%%); one level-9 stream %d bytes (%.2f%%, %v); pieces/stream %.3f",
		name, size, gzSize, 100*float64(gzSize)/float64(size), cw.n, 100*float64(cw.n)/float64(size), time.Since(t3).Round(time.Millisecond), float64(gzSize)/float64(cw.n))
	v.Release()

	// One change per Freeze: replace an entry (same key, new contents).
	r := rand.New(rand.NewPCG(seed, 1))
	var lat []time.Duration
	for g := 1; g <= 300; g++ {
		i := r.IntN(n)
		_, blk := entry(seed, i, uint64(g))
		s := time.Now()
		x.Put(keys[i], blk)
		v, err := x.Freeze(header(g, n), int64(g))
		lat = append(lat, time.Since(s))
		if err != nil {
			t.Fatal(err)
		}
		v.Release()
	}
	t.Logf("%s: Put+Freeze of one change: %s", name, stats(lat))

	lat = lat[:0]
	for range 100 {
		s := time.Now()
		v, err := x.Freeze(header(0, n), 1)
		lat = append(lat, time.Since(s))
		if err != nil {
			t.Fatal(err)
		}
		v.Release()
	}
	t.Logf("%s: Freeze without change (the O(chunks) part): %s", name, stats(lat))

	if dir && n <= 200000 {
		// Enough single changes for dead bytes to pass live ones, so that
		// an incremental compaction runs among them.
		x.minDead = 0
		var during, other []time.Duration
		for g := 1000; x.compactions == 0 || x.old != nil; g++ {
			i := r.IntN(n)
			_, blk := entry(seed, i, uint64(g))
			s := time.Now()
			x.Put(keys[i], blk)
			v, err := x.Freeze(header(g, n), int64(g))
			d := time.Since(s)
			if err != nil {
				t.Fatal(err)
			}
			v.Release()
			if x.old != nil {
				during = append(during, d)
			} else {
				other = append(other, d)
			}
		}
		t.Logf("%s: compaction spread over %d Freezes: Put+Freeze %s (before it: %s)", name, len(during), stats(during), stats(other))
	}
	runtime.KeepAlive(keys)
}

func stats(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	lat = slices.Clone(lat)
	slices.Sort(lat)
	return fmt.Sprintf("median %v, p90 %v, max %v (%d runs)", lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*9/10].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat))
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
