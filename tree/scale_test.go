package tree

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree/pieces"
)

// scaleMeta is index metadata of a realistic size (~700 bytes rendered).
func scaleMeta(i int) map[string]string {
	return map[string]string{
		"BUILD_TIME": strconv.Itoa(1700000000 + i), "EAPI": "8", "SLOT": "0", "KEYWORDS": "~amd64",
		"DEFINED_PHASES": "compile configure install prepare", "LICENSE": "LGPL-2.1+",
		"DEPEND":   ">=dev-libs/glib-2.80:2 dev-libs/libxml2:2= virtual/pkgconfig sys-libs/zlib:= >=dev-libs/openssl-3:0=",
		"RDEPEND":  ">=dev-libs/glib-2.80:2 dev-libs/libxml2:2= sys-libs/zlib:=",
		"IUSE":     "doc +introspection test static-libs",
		"USE":      "abi_x86_64 amd64 elibc_glibc introspection kernel_linux",
		"PROVIDES": "x86_64: libfoo" + strconv.Itoa(i%97) + ".so.1",
		"REQUIRES": "x86_64: libc.so.6 libglib-2.0.so.0 libxml2.so.2 libz.so.1",
		"CHOST":    "x86_64-pc-linux-gnu", "REPO": "gentoo",
	}
}

// scaleCatalog writes n instances (160 categories, 2 versions x 2 builds
// per package) straight into a catalog, without blobs.
func scaleCatalog(tb testing.TB, dir string, n int) *catalog.DB {
	db, err := catalog.OpenState(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for start := 0; start < n; start += 10000 {
		err := db.Tx(ctx, func(tx *catalog.Tx) error {
			for i := start; i < min(start+10000, n); i++ {
				pkg := i / 4
				cat := fmt.Sprintf("cat-%03d", pkg%160)
				pn := fmt.Sprintf("pkg%d", pkg/160)
				pf := fmt.Sprintf("%s-1.%d", pn, (i/2)%2)
				in := &catalog.Instance{Category: cat, PN: pn, PF: pf, BuildID: int64(i%2 + 1),
					BuildTime: int64(1700000000 + i), Format: "xpak", Size: 24576, MtimeNs: 1700000000e9, Mode: 0o644,
					MD5: fmt.Sprintf("%032x", i), SHA1: fmt.Sprintf("%040x", i), SHA256: fmt.Sprintf("%064x", i),
					Blob: fmt.Sprintf("%02x/%064x", i%256, i), Meta: scaleMeta(i)}
				if _, err := tx.InsertInstance(in); err != nil {
					return err
				}
			}
			_, err := tx.BumpGeneration()
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return db
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkModelScale measures, at PKGDIRFS_SCALE instances (default
// 100000), a load, the index build, and one change applied and published,
// against a full re-render of the same index. Catalog only (no blobs).
func BenchmarkModelScale(b *testing.B) {
	n := 100000
	if s := os.Getenv("PKGDIRFS_SCALE"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	t0 := time.Now()
	db := scaleCatalog(b, dir, n)
	defer db.Close()
	b.Logf("catalog of %d instances written in %v", n, time.Since(t0).Round(time.Millisecond))
	ctx := context.Background()
	base := heapInUse()
	t0 = time.Now()
	m, err := Load(ctx, db, AllLayouts)
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(t0)
	treeHeap := heapInUse() - base
	t0 = time.Now()
	if err := m.BuildIndex(ctx, db, pieces.Options{Dir: dir}); err != nil {
		b.Fatal(err)
	}
	build := time.Since(t0)
	defer m.Close()
	v, err := m.FreezeIndex(m.Gen(), 1)
	if err != nil {
		b.Fatal(err)
	}
	allHeap := heapInUse() - base
	b.Logf("load %v (tree heap %d B/instance); index build %v (%.1f MiB; heap with index %d B/instance)",
		load.Round(time.Millisecond), treeHeap/uint64(n), build.Round(time.Millisecond), float64(v.Size())/(1<<20), allHeap/uint64(n))

	var change, full time.Duration
	const rounds = 20
	for r := range rounds {
		t0 = time.Now()
		err := db.Tx(ctx, func(tx *catalog.Tx) error {
			in := &catalog.Instance{Category: "cat-007", PN: "pkg3", PF: "pkg3-1.0", BuildID: int64(100 + r),
				BuildTime: 1800000000, Format: "xpak", Size: 1, Mode: 0o644, Blob: "x", Meta: scaleMeta(r)}
			if _, err := tx.InsertInstance(in); err != nil {
				return err
			}
			_, err := tx.BumpGeneration()
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Catchup(ctx, db); err != nil {
			b.Fatal(err)
		}
		v, err := m.FreezeIndex(m.Gen(), int64(2+r))
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		if _, err := v.GzReadAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		change += time.Since(t0)
	}
	// The reference: everything rendered and compressed again, as Portage
	// does on each inject.
	t0 = time.Now()
	fresh, err := Load(ctx, db, AllLayouts)
	if err != nil {
		b.Fatal(err)
	}
	if err := fresh.BuildIndex(ctx, db, pieces.Options{}); err != nil {
		b.Fatal(err)
	}
	if _, err := fresh.FreezeIndex(fresh.Gen(), 99); err != nil {
		b.Fatal(err)
	}
	full = time.Since(t0)
	b.Logf("one change (commit + apply + first byte of Packages.gz): %v; full re-render + gzip: %v; ratio %.0fx",
		(change / rounds).Round(time.Microsecond), full.Round(time.Millisecond), float64(full)/float64(change/rounds))
	b.ReportMetric(float64(change/rounds)/1e6, "ms/change")
}
