package pieces

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// writeCacheFile writes v to a cache file in dir and returns its path.
func writeCacheFile(t testing.TB, v *View, info string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "index.cache")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WriteCache(context.Background(), f, []byte(info)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// freezeBoth freezes a and b with one header and checks that they serve
// the same Packages and Packages.gz, byte for byte.
func freezeBoth(t *testing.T, a, b *Index, gen int) (*View, *View) {
	t.Helper()
	h := header(gen, a.Len())
	va, err := a.Freeze(h, int64(gen))
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.Freeze(h, int64(gen))
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := va.Bytes()
	pb, err := vb.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pa, pb) {
		t.Fatalf("gen %d: Packages differs at %d (%d and %d bytes)", gen, firstDiff(pa, pb), len(pa), len(pb))
	}
	ga, _ := va.GzBytes()
	gb, err := vb.GzBytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ga, gb) {
		t.Fatalf("gen %d: Packages.gz differs at %d (%d and %d bytes)", gen, firstDiff(ga, gb), len(ga), len(gb))
	}
	if !bytes.Equal(gunzip(t, gb), pb) {
		t.Fatalf("gen %d: Packages.gz of the loaded index does not decompress to its Packages", gen)
	}
	return va, vb
}

// TestCacheRoundTrip: an Index loaded from a cache file serves what the
// written one served, and both stay equal under the same changes, across
// compaction (Dir mode: the cache file's chunks move to the store, and the
// file is let go). Views of the loaded index keep their bytes meanwhile.
func TestCacheRoundTrip(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dir), func(t *testing.T) {
			r := rand.New(rand.NewSource(7))
			opts := Options{ChunkEntries: 8, GzipLevel: 1}
			a := newIndex(t, opts, dir, nil)
			for i := range 600 {
				k, b := entry(3, i, 0)
				a.Put(k, b)
			}
			va, err := a.Freeze(header(0, a.Len()), 1)
			if err != nil {
				t.Fatal(err)
			}
			p := writeCacheFile(t, va, "made at generation 0")
			va.Release()
			if dir {
				opts.Dir = t.TempDir()
			}
			b, info, err := LoadCache(p, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if string(info) != "made at generation 0" {
				t.Fatalf("info %q", info)
			}
			if b.Len() != a.Len() {
				t.Fatalf("loaded %d entries, wrote %d", b.Len(), a.Len())
			}
			checkInvariants(t, b)
			cacheSeg := b.old
			if cacheSeg == nil {
				t.Fatal("the loaded chunks are not in the cache file")
			}
			b.minDead = 0
			_, first := freezeBoth(t, a, b, 1)
			firstWant, _ := first.Bytes()
			firstGz, _ := first.GzBytes()
			if b.chunkGz.Load() != 0 {
				t.Fatalf("loading compressed %d chunks; it must compress none", b.chunkGz.Load())
			}
			for gen := 2; gen < 200; gen++ {
				for range 1 + r.Intn(6) {
					i := r.Intn(900)
					k, blk := entry(3, i, uint64(gen))
					if r.Intn(3) == 0 {
						a.Delete(k)
						b.Delete(k)
					} else {
						a.Put(k, blk)
						b.Put(k, blk)
					}
				}
				va, vb := freezeBoth(t, a, b, gen)
				va.Release()
				vb.Release()
				checkInvariants(t, b)
			}
			// The first view still reads what it read, whatever became of
			// the cache file's chunks.
			checkView(t, r, first, firstWant, 1)
			if g, _ := first.GzBytes(); !bytes.Equal(g, firstGz) {
				t.Fatal("an old view's Packages.gz changed")
			}
			if dir && b.old != nil {
				t.Fatal("the cache file still holds chunks after 200 Freezes of compaction")
			}
			first.Release()
			if dir && cacheSeg.refs.Load() != 0 {
				t.Fatalf("the cache file is still held (%d references) with no chunk and no view in it", cacheSeg.refs.Load())
			}
			// The loaded index and its file are independent: a cache written
			// from it round-trips too.
			vb, err := b.Freeze(header(500, b.Len()), 500)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := vb.Bytes()
			p2 := writeCacheFile(t, vb, "")
			vb.Release()
			c, _, err := LoadCache(p2, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			vc, err := c.Freeze(header(500, c.Len()), 500)
			if err != nil {
				t.Fatal(err)
			}
			checkView(t, r, vc, want, 500)
			vc.Release()
		})
	}
}

func TestCacheEmpty(t *testing.T) {
	a := newIndex(t, Options{}, false, nil)
	v, err := a.Freeze(header(0, 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	p := writeCacheFile(t, v, "x")
	b, _, err := LoadCache(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Put("a", []byte("A: 1\n\n"))
	vb, err := b.Freeze(header(1, 1), 1)
	if err != nil {
		t.Fatal(err)
	}
	checkView(t, rand.New(rand.NewSource(1)), vb, append(header(1, 1), "A: 1\n\n"...), 1)
}

// TestCacheRefused: a cache file that is truncated, damaged in its header,
// info or metadata, or not a cache file at all is refused with an error,
// never loaded.
func TestCacheRefused(t *testing.T) {
	a := newIndex(t, Options{ChunkEntries: 8, GzipLevel: 1}, false, nil)
	for i := range 100 {
		k, b := entry(5, i, 0)
		a.Put(k, b)
	}
	v, err := a.Freeze(header(0, a.Len()), 1)
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(writeCacheFile(t, v, "info"))
	if err != nil {
		t.Fatal(err)
	}
	// Where the data begins: header, info, then meta.
	metaEnd := len(good) - int(v.GzSize()-int64(len(v.hgz))) - int(v.Size()-int64(len(v.header)))
	cases := map[string][]byte{
		"empty":         {},
		"header only":   good[:cacheHeaderLen],
		"no data":       good[:metaEnd],
		"short by one":  good[:len(good)-1],
		"one more byte": append(bytes.Clone(good), 0),
		"gzip file":     v.hgz,
		"text file":     []byte("Packages\nARCH: amd64\n\n" + string(make([]byte, 200))),
	}
	for _, at := range []int{0, 9, 13, 17, 33, 38, cacheHeaderLen + 1, cacheHeaderLen + 5, cacheHeaderLen + 30, metaEnd - 3, metaEnd - 40} {
		b := bytes.Clone(good)
		b[at] ^= 0x20
		cases[fmt.Sprintf("flipped byte %d", at)] = b
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			x, _, err := LoadCache(p, Options{})
			if err == nil {
				x.Close()
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrCacheInvalid) {
				t.Fatalf("error %v is not ErrCacheInvalid", err)
			}
			if len(b) >= cacheHeaderLen+4 && bytes.Equal(b[:36], good[:36]) && bytes.Equal(b[40:44], good[40:44]) {
				return // header and info intact: ReadCacheInfo checks no more
			}
			if _, err := ReadCacheInfo(p); err == nil {
				t.Fatal("ReadCacheInfo accepted it")
			}
		})
	}
	if _, _, err := LoadCache(filepath.Join(t.TempDir(), "none"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestCacheReleasedView: a released View is not written.
func TestCacheReleasedView(t *testing.T) {
	a := newIndex(t, Options{}, true, nil)
	a.Put("k", []byte("K: 1\n\n"))
	v, err := a.Freeze(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	v.Release()
	if err := v.WriteCache(context.Background(), &bytes.Buffer{}, nil); !errors.Is(err, ErrReleased) {
		t.Fatalf("WriteCache of a released view: %v", err)
	}
}

func TestDeleteRange(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for _, dir := range []bool{false, true} {
		x := newIndex(t, Options{ChunkEntries: 4, GzipLevel: 1}, dir, nil)
		m := map[string][]byte{}
		for range 400 {
			k := fmt.Sprintf("c/p-%d\x00%03d", r.Intn(40), r.Intn(12))
			b := []byte(k + "\n\n")
			x.Put(k, b)
			m[k] = b
		}
		for round := range 60 {
			if round%3 == 0 {
				v, err := x.Freeze(nil, 0)
				if err != nil {
					t.Fatal(err)
				}
				v.Release()
			}
			p := fmt.Sprintf("c/p-%d", r.Intn(45))
			x.DeleteRange(p+"\x00", p+"\x01")
			for k := range m {
				if k >= p+"\x00" && k < p+"\x01" {
					delete(m, k)
				}
			}
			checkInvariants(t, x)
			v, err := x.Freeze(nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := v.Bytes()
			if want := naive(nil, m); !bytes.Equal(got, want) {
				t.Fatalf("after DeleteRange(%q): %d entries, want %d", p, x.Len(), len(m))
			}
			v.Release()
		}
	}
}
