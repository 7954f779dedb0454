package integration

// BenchmarkScale: the daemon at the sizes it is designed for (DESIGN.md
// "Scale"), with the native side measured first in the same run wherever
// there is one, and ratios printed like the other benchmarks
// (ratio = native time / pkgdirfs time).
//
//   - BENCH_SCALE instances (default 100,000) with real package files:
//     import, mount start, RSS, lookup/readdir, per-change latency, and a
//     migration of 1,000 packages by `cp -a`.
//   - BENCH_SCALE_CATALOG instances (default 1,000,000; 0 skips it) written
//     straight into a catalog without blobs: mount start, RSS and
//     per-change latency of the catalog and tree alone.
//
// Steps that wait on the daemon are bounded: past benchScaleStepLimit the
// daemon is killed (its watchdog aborts the mount, so the blocked call fails
// and the benchmark stops instead of hanging), and the per-change and
// migration loops stop repeating once their time budget is spent, saying so.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

const (
	// One daemon-bound step (a mount, a cp, a read) longer than this is a hang.
	benchScaleStepLimit = 15 * time.Minute
	// Per-change latency: up to benchScaleReps changes, fewer once the
	// budget is spent (at least benchScaleMinReps).
	benchScaleReps        = 20
	benchScaleMinReps     = 3
	benchScaleChgBudget   = 150 * time.Second
	benchScaleCatChgBgt   = 4 * time.Minute
	benchScaleMigrate     = 1000
	benchScaleMigrateStep = 100 // packages per `cp -a`, so the budget can stop between them
	benchScaleMigBudget   = 3 * time.Minute
	benchScaleStatPicks   = 2000
	benchScaleMinSize     = 2000
)

// benchScaleStart is when BenchmarkScale began: progress lines show the time since.
var benchScaleStart time.Time

func BenchmarkScale(b *testing.B) {
	benchNeed(b)
	n := benchScaleEnv(b, "BENCH_SCALE", 100000)
	nc := benchScaleEnv(b, "BENCH_SCALE_CATALOG", 1000000)
	if n < benchScaleMinSize || (nc != 0 && nc < benchScaleMinSize) {
		b.Fatalf("BENCH_SCALE=%d BENCH_SCALE_CATALOG=%d: each must be at least %d (or 0 for the catalog run)", n, nc, benchScaleMinSize)
	}
	benchScaleStart = time.Now()
	benchScaleSay("BENCH_SCALE=%d instances with blobs, BENCH_SCALE_CATALOG=%d catalog-only", n, nc)
	var withBlobs *benchScaleChangeResult
	b.Run(fmt.Sprintf("blobs-%d", n), func(b *testing.B) { withBlobs = benchScaleBlobs(b, n) })
	if nc > 0 {
		b.Run(fmt.Sprintf("catalog-%d", nc), func(b *testing.B) { benchScaleCatalogOnly(b, nc, n, withBlobs) })
	}
	benchScaleSay("done")
}

// ---------------------------------------------------------------- BENCH_SCALE instances with blobs

func benchScaleBlobs(b *testing.B, n int) *benchScaleChangeResult {
	tmp := b.TempDir()
	b.Cleanup(func() { benchScaleSay("removing %s", tmp) }) // runs just before the removal: it takes a while
	src, state := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state")
	pkgs := benchScaleSet(n)
	n = len(pkgs)
	benchScaleSay("generating %d packages (%d CPVs, %d categories, 2 versions x 2 builds each) in %s", n, n/2, min(len(benchScaleCats), n/4), src)
	var total int64
	gen := benchTimed(func() {
		total = benchScaleWriteAll(b, src, pkgs, benchScalePkg.MultiRel, func(d int) { benchScaleSay("  generated %d/%d", d, n) })
	})
	benchPrint(b, "bench scale-generate-%d: %d packages, %.1f MB (%.0f B/package) in %s", n, n, float64(total)/1e6, float64(total)/float64(n), benchDur(gen))

	// 1. import, against a durable native copy of the same tree.
	var cp time.Duration
	ok := b.Run("import", func(b *testing.B) {
		dst := filepath.Join(tmp, "copy")
		benchScaleSay("sync (the generated tree's writeback, so neither side pays for it)")
		benchScaleSh(b, benchScaleStepLimit, "sync")
		benchScaleSay("native: cp -a %d packages && sync", n)
		cp = benchScaleSh(b, benchScaleStepLimit, "cp -a "+shQuote(src)+" "+shQuote(dst)+" && sync")
		// The copy stays until the end (tmp goes then): on ext4 without a
		// journal (this machine's root), creating files within minutes of
		// deleting as many costs several times more (recently_deleted() in
		// the inode allocator), so removing it here would charge whatever
		// creates files next for the native side's cleanup (`cp -a` itself:
		// 9.8 s on a fresh filesystem, 76 s right after an rm -rf of a copy).
		benchScaleSay("pkgdirfs import of %d packages", n)
		imp, how := benchScaleImport(b, state, src, n)
		benchScaleImportLine(b, fmt.Sprintf("scale-import-%d", n), "pkgdirfs import", imp, how, total, cp)
	})
	if !ok {
		b.Fatal("import failed: nothing to mount")
	}
	b.Run("import-link", func(b *testing.B) {
		if !benchScaleHasLink(b) {
			benchPrint(b, "bench scale-import-link-%d: n/a (`pkgdirfs import --help` has no --link)", n)
			return
		}
		lstate := filepath.Join(tmp, "state-link")
		benchScaleSh(b, benchScaleStepLimit, "sync")
		benchScaleSay("pkgdirfs import --link of %d packages", n)
		imp, how := benchScaleImport(b, lstate, src, n, "--link")
		benchScaleImportLine(b, fmt.Sprintf("scale-import-link-%d", n), "pkgdirfs import --link", imp, how, total, cp)
		// Kept until the end, as the native copy is.
	})

	b.Run("snapshot", func(b *testing.B) { benchScaleSnapshot(b, state, n) })

	// 2. mount start, then 5. RSS before anything else touches the mount.
	m := benchScaleMountTimed(b, state, n)
	nativeIndex := filepath.Join(tmp, "Packages.native")
	benchScaleIndexRSS(b, m, n, n, nativeIndex)

	// 6. lookup and readdir against a native tree of the same shape.
	b.Run("lookup", func(b *testing.B) { benchScaleLookup(b, m, src, filepath.Join(tmp, "native-tree"), pkgs) })

	// 3. per-change latency.
	var res *benchScaleChangeResult
	chgDir := filepath.Join(tmp, "changes")
	chg := benchScaleNewPkgs(benchScaleReps, 5_000_000)
	benchScaleWriteAll(b, chgDir, chg, benchScalePkg.FlatRel, nil)
	ok = b.Run("change", func(b *testing.B) {
		res = benchScaleChange(b, m, n, nativeIndex, chgDir, chg, benchScaleChgBudget, 5)
	})
	if !ok {
		res = nil
	}

	// 4. migration by cp -a.
	b.Run("migrate", func(b *testing.B) { benchScaleMigration(b, m, filepath.Join(tmp, "migrate"), pkgs) })

	rss, anon := benchScaleRSS(b, m)
	benchPrint(b, "bench scale-rss-end-%d: VmRSS %s, RssAnon %s (after every change and the migration)", n, benchScaleMiB(rss), benchScaleMiB(anon))
	benchScaleSay("unmounting")
	m.Close(b)
	benchScaleCheckLog(b, m.log)
	b.Run("remount", func(b *testing.B) { benchScaleRemount(b, state, n) })
	return res
}

// benchScaleRemount mounts state again, first with the index cache the
// last unmount left, then with it deleted (the mount renders every entry),
// and prints for each the first reads after `pkgdirfs mount` returned: open
// and read 4 KiB of Packages, the same of Packages.gz, then Packages.gz in
// full. The cache file is warm in the page cache (it was just written).
func benchScaleRemount(b *testing.B, state string, n int) {
	cacheDir := filepath.Join(state, "blobs", ".index-cache")
	for _, cached := range []bool{true, false} {
		what := "cache"
		if !cached {
			what = "no-cache"
			if err := os.RemoveAll(cacheDir); err != nil {
				b.Fatal(err)
			}
		} else if files, _ := filepath.Glob(filepath.Join(cacheDir, "index-*.cache")); len(files) == 0 {
			benchPrint(b, "bench scale-remount-cache-%d: n/a (the unmount left no index cache in %s)", n, cacheDir)
			continue
		}
		before, _ := os.ReadFile(filepath.Join(state, "bench-daemon.log"))
		benchScaleSay("remounting %d instances (%s)", n, what)
		m, d := benchScaleMount(b, state)
		r := benchIndexFirstReads(b, m.Dir)
		after, _ := os.ReadFile(filepath.Join(state, "bench-daemon.log"))
		used := bytes.Contains(after[min(len(before), len(after)):], []byte("index loaded from its cache"))
		if used != cached {
			b.Errorf("remount (%s): the daemon log says the cache was used: %v", what, used)
		}
		benchPrint(b, "bench scale-remount-%s-%d: mount %s; then Packages first 4 KiB %s, Packages.gz first 4 KiB %s, Packages.gz in full %s (%.1f MiB); %s from the mount's return to the whole Packages.gz",
			what, n, benchDur(d), benchDur(r.First), benchDur(r.FirstGz), benchDur(r.FullGz), float64(r.GzSize)/(1<<20), benchDur(r.First+r.FirstGz+r.FullGz))
		m.Close(b)
		benchScaleCheckLog(b, m.log)
	}
}

// benchIndexReads is what benchIndexFirstReads measured.
type benchIndexReads struct {
	First, FirstGz, FullGz time.Duration
	GzSize                 int64
}

// benchIndexFirstReads times, on a mount just made, open+read 4 KiB of
// Packages (the first byte a client gets: it waits for the index), the same
// of Packages.gz, then a full read of Packages.gz.
func benchIndexFirstReads(b *testing.B, mnt string) benchIndexReads {
	b.Helper()
	var r benchIndexReads
	r.First = benchTimed(func() { benchScaleFirst4K(b, filepath.Join(mnt, "Packages")) })
	r.FirstGz = benchTimed(func() { benchScaleFirst4K(b, filepath.Join(mnt, "Packages.gz")) })
	r.FullGz = benchTimed(func() { r.GzSize, _ = benchScaleReadAll(b, filepath.Join(mnt, "Packages.gz")) })
	return r
}

// benchScaleImportLine prints an import rate and the native copy's.
func benchScaleImportLine(b *testing.B, name, what string, imp benchImportResult, how string, total int64, cp time.Duration) {
	b.Helper()
	ratio := cp.Seconds() / imp.Elapsed.Seconds()
	if how != "" {
		how = " " + how
	}
	benchPrint(b, "bench %s: %s of %d packages%s, %.1f MB in %s = %.0f packages/s, %.2f MB/s; native `cp -a SRC DST && sync` %s (%.0f files/s), ratio %.3f",
		name, what, imp.Imported, how, float64(total)/1e6, benchDur(imp.Elapsed),
		float64(imp.Imported)/imp.Elapsed.Seconds(), float64(total)/1e6/imp.Elapsed.Seconds(),
		benchDur(cp), float64(imp.Imported)/cp.Seconds(), ratio)
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(imp.Imported)/imp.Elapsed.Seconds(), "pkgs/s")
}

// benchScaleNewPkgs is k packages of new CPVs (PN numbers from base on, so
// no two sets collide), one build each, without BUILD_ID: written to a flat
// name, the mount gives them one.
func benchScaleNewPkgs(k, base int) []benchScalePkg {
	out := make([]benchScalePkg, k)
	for i := range out {
		out[i] = benchScalePkg{Cat: benchScaleCats[i*7%len(benchScaleCats)], PN: benchScaleName(base + i), Ver: "1.0",
			BuildTime: 1800000000 + int64(i), Seed: uint64(base+i) << 8}
	}
	return out
}

// ---------------------------------------------------------------- 2 and 5: mount start, index, RSS

// benchScaleMountTimed mounts state (b's cleanup unmounts) and prints the
// time from exec of `pkgdirfs mount` until it returned with the mount ready.
func benchScaleMountTimed(b *testing.B, state string, n int) *benchScaleMounted {
	b.Helper()
	benchScaleSay("mounting %d instances", n)
	m, d := benchScaleMount(b, state)
	benchPrint(b, "bench scale-mount-start-%d: %s (exec of `pkgdirfs mount` until it returned, mount ready)", n, benchDur(d))
	b.ReportMetric(d.Seconds(), "mount-s")
	return m
}

// benchScaleIndexRSS prints the daemon's RSS after mount, after a full read
// of Packages (the first: it renders) and after one of Packages.gz; it checks
// both list every instance and decompress to the same bytes, and leaves a
// native copy of Packages at nativeIndex (the reference re-render reads it).
func benchScaleIndexRSS(b *testing.B, m *benchScaleMounted, n, want int, nativeIndex string) {
	b.Helper()
	rssLine := func(when string) {
		rss, anon := benchScaleRSS(b, m)
		benchPrint(b, "bench scale-rss-%s-%d: VmRSS %s = %.0f B/instance, RssAnon %s = %.0f B/instance",
			when, n, benchScaleMiB(rss), float64(rss)/float64(want), benchScaleMiB(anon), float64(anon)/float64(want))
	}
	rssLine("after-mount")
	pk, gz := filepath.Join(m.Dir, "Packages"), filepath.Join(m.Dir, "Packages.gz")
	benchScaleSay("reading Packages in full (first read after mount)")
	var size int64
	var cpvs int
	d := benchScaleWithin(b, m, "first full read of Packages", func() { size, cpvs = benchScaleReadAll(b, pk) })
	if cpvs != want {
		b.Fatalf("Packages lists %d CPV entries, want %d", cpvs, want)
	}
	benchPrint(b, "bench scale-Packages-first-read-%d: %s for %.1f MiB (%s; open+read to EOF, the first read after mount)", n, benchDur(d), float64(size)/(1<<20), benchRate(size, d))
	rssLine("after-Packages")
	benchScaleSay("reading Packages.gz in full")
	var gzSize int64
	d = benchScaleWithin(b, m, "first full read of Packages.gz", func() { gzSize, _ = benchScaleReadAll(b, gz) })
	benchPrint(b, "bench scale-Packages.gz-first-read-%d: %s for %.1f MiB (open+read to EOF, the first read after mount)", n, benchDur(d), float64(gzSize)/(1<<20))
	rssLine("after-Packages.gz")

	// Checks (untimed): a native copy of Packages, its entries, and the
	// gzip stream equal to it with header mtime = TIMESTAMP.
	benchScaleSay("checking the index: a native copy of Packages, its entries, Packages.gz = gzip of it")
	benchScaleWithin(b, m, "copying Packages out", func() { benchScaleCopy(b, pk, nativeIndex) })
	f, err := os.Open(nativeIndex)
	if err != nil {
		b.Fatal(err)
	}
	st, err := benchScaleScanIndex(f)
	f.Close()
	if err != nil {
		b.Fatalf("scan %s: %v", nativeIndex, err)
	}
	if st.Entries != want || st.Header["PACKAGES"] != strconv.Itoa(want) {
		b.Fatalf("Packages: %d entries, PACKAGES %q; want %d", st.Entries, st.Header["PACKAGES"], want)
	}
	benchPrint(b, "bench scale-index-%d: Packages %.1f MiB, %d entries of %d–%d B (mean %.0f B)",
		n, float64(st.Size)/(1<<20), st.Entries, st.MinEntry, st.MaxEntry, float64(st.EntryBytes)/float64(st.Entries))
	var gst *benchScaleIndexStats
	var mtime int64
	benchScaleWithin(b, m, "checking Packages.gz", func() {
		g, err := os.Open(gz)
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		if gst, mtime, err = benchScaleScanGz(g); err != nil {
			b.Fatalf("Packages.gz: %v", err)
		}
	})
	if gst.SHA256 != st.SHA256 || strconv.FormatInt(mtime, 10) != st.Header["TIMESTAMP"] {
		b.Fatalf("Packages.gz: %d bytes decompressed, gzip mtime %d; Packages %d bytes, TIMESTAMP %s (want the same bytes and mtime = TIMESTAMP)",
			gst.Size, mtime, st.Size, st.Header["TIMESTAMP"])
	}
}

// ---------------------------------------------------------------- 3: per-change latency

// benchScaleChangeResult holds one run of per-change measurements.
type benchScaleChangeResult struct {
	Commit, First, FirstGz, Full, FullGz, CommitFirst, Ref []time.Duration
}

// benchScaleChange copies chg one by one to their flat names in the mount
// and times: the cp (commit), open+read 4 KiB of Packages (checking the new
// generation is served: PACKAGES one more, TIMESTAMP later), the same of
// Packages.gz (its gzip mtime = that TIMESTAMP; the render is already paid
// by Packages), then full reads of both (Packages' entry count checked).
// Before each change, the native reference: what Portage does per inject,
// a full re-render of the same index from the native copy (at most refReps
// times: it does not depend on the change).
func benchScaleChange(b *testing.B, m *benchScaleMounted, n int, nativeIndex, chgDir string, chg []benchScalePkg, budget time.Duration, refReps int) *benchScaleChangeResult {
	b.Helper()
	res := &benchScaleChangeResult{}
	pk, gz := filepath.Join(m.Dir, "Packages"), filepath.Join(m.Dir, "Packages.gz")
	var ts, count int64
	benchScaleWithin(b, m, "reading the Packages header", func() { ts, count = benchScaleHead(b, pk) })
	scratch := b.TempDir()
	start := time.Now()
	stopped := ""
	for i, p := range chg {
		if i >= benchScaleMinReps && time.Since(start) > budget {
			stopped = fmt.Sprintf("; stopped after %d of %d changes: the %s budget was spent", i, len(chg), budget)
			break
		}
		var ref time.Duration
		if i < refReps {
			ref = benchScaleRerender(b, nativeIndex, scratch)
			res.Ref = append(res.Ref, ref)
		}
		dst := filepath.Join(m.Dir, p.FlatRel())
		commit := benchScaleWithin(b, m, "cp to "+p.FlatRel(), func() {
			benchScaleCmd(b, benchScaleStepLimit+time.Minute, "cp", filepath.Join(chgDir, p.FlatRel()), dst)
		})
		var nts, ncount int64
		first := benchScaleWithin(b, m, "first byte of Packages", func() { nts, ncount = benchScaleHead(b, pk) })
		if ncount != count+1 || nts <= ts {
			b.Fatalf("after committing %s: Packages has PACKAGES %d, TIMESTAMP %d; before: %d, %d (want one more package, a later TIMESTAMP)",
				p.FlatRel(), ncount, nts, count, ts)
		}
		ts, count = nts, ncount
		var mtime int64
		firstGz := benchScaleWithin(b, m, "first byte of Packages.gz", func() { mtime = benchScaleGzHead(b, gz) })
		if mtime != ts {
			b.Fatalf("after committing %s: Packages.gz has gzip mtime %d, Packages TIMESTAMP %d (stale Packages.gz)", p.FlatRel(), mtime, ts)
		}
		var cpvs int
		full := benchScaleWithin(b, m, "full read of Packages", func() { _, cpvs = benchScaleReadAll(b, pk) })
		if int64(cpvs) != count {
			b.Fatalf("after committing %s: Packages has %d entries, PACKAGES says %d", p.FlatRel(), cpvs, count)
		}
		fullGz := benchScaleWithin(b, m, "full read of Packages.gz", func() { benchScaleReadAll(b, gz) })
		res.Commit = append(res.Commit, commit)
		res.First = append(res.First, first)
		res.FirstGz = append(res.FirstGz, firstGz)
		res.Full = append(res.Full, full)
		res.FullGz = append(res.FullGz, fullGz)
		res.CommitFirst = append(res.CommitFirst, commit+first)
		refNote := ""
		if ref > 0 {
			refNote = ", reference re-render " + benchDur(ref)
		}
		benchScaleSay("  change %d/%d: commit %s, first byte %s, gz first byte %s, full read %s, gz full read %s%s",
			i+1, len(chg), benchDur(commit), benchDur(first), benchDur(firstGz), benchDur(full), benchDur(fullGz), refNote)
	}
	reps := len(res.Commit)
	line := func(what string, ds []time.Duration, note string) {
		med, mx := benchScaleMedianMax(ds)
		benchPrint(b, "bench scale-change-%s-%d: median %s, max %s (%d changes%s)%s", what, n, benchDur(med), benchDur(mx), len(ds), note, stopped)
	}
	line("commit", res.Commit, "; `cp NEW.tbz2 MNT/CAT/PF.tbz2` until cp returned")
	line("first-byte", res.First, "; open+read 4 KiB of Packages right after the commit, new generation checked")
	line("gz-first-byte", res.FirstGz, "; open+read 4 KiB of Packages.gz after that, gzip mtime = new TIMESTAMP checked")
	line("full-read", res.Full, "; Packages open+read to EOF after that, entry count checked")
	line("gz-full-read", res.FullGz, "; Packages.gz open+read to EOF after that")
	line("commit+first-byte", res.CommitFirst, "")
	refMed, refMax := benchScaleMedianMax(res.Ref)
	cfMed, _ := benchScaleMedianMax(res.CommitFirst)
	benchCompareTime(b, fmt.Sprintf("scale-change-vs-rerender-%d", n), refMed, 0, cfMed, 0, "",
		fmt.Sprintf(" (native = Portage-style full re-render per inject: read Packages, write it + fsync, gzip -9 it + fsync, median of %d, max %s; pkgdirfs = commit + first byte of the new Packages, median of %d)",
			len(res.Ref), benchDur(refMax), reps))
	return res
}

// benchScaleRerender is the reference per-change cost: read the index,
// write it to a temp file and a gzip -9 of it to another, both fsync'ed.
func benchScaleRerender(b *testing.B, index, dir string) time.Duration {
	b.Helper()
	start := time.Now()
	in, err := os.Open(index)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, "Packages.*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	gzf, err := os.CreateTemp(dir, "Packages.gz.*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(gzf.Name())
	defer gzf.Close()
	bw := bufio.NewWriterSize(gzf, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestCompression)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(io.MultiWriter(out, zw), in, make([]byte, 1<<20)); err != nil {
		b.Fatalf("re-render: %v", err)
	}
	if err := errors.Join(zw.Close(), bw.Flush(), out.Sync(), gzf.Sync()); err != nil {
		b.Fatalf("re-render: %v", err)
	}
	return time.Since(start)
}

// ---------------------------------------------------------------- 4: migration by cp -a

// benchScaleMigration copies 1,000 packages in flat layout (half new CPVs,
// half new builds of existing CPVs) with `cp -a`, 100 per command, into a
// plain directory (native) and then into the mount, until the budget is
// spent; it checks the mount gained exactly one instance per copied file.
func benchScaleMigration(b *testing.B, m *benchScaleMounted, dir string, pkgs []benchScalePkg) {
	b.Helper()
	n := len(pkgs)
	ncpv := len(pkgs) / 2
	var mig []benchScalePkg
	fresh := benchScaleNewPkgs(benchScaleMigrate/2, 6_000_000)
	for k := 0; k < benchScaleMigrate/2; k++ {
		p := pkgs[2*(k*ncpv/(benchScaleMigrate/2))] // build 1 of a distinct CPV
		p.BuildID, p.BuildTime, p.Seed = 0, p.BuildTime+1_000_000, p.Seed^1<<50
		mig = append(mig, fresh[k], p)
	}
	var chunks []string
	for c := 0; c*benchScaleMigrateStep < len(mig); c++ {
		d := filepath.Join(dir, fmt.Sprintf("chunk%02d", c))
		benchScaleWriteAll(b, d, mig[c*benchScaleMigrateStep:min(len(mig), (c+1)*benchScaleMigrateStep)], benchScalePkg.FlatRel, nil)
		chunks = append(chunks, d)
	}
	benchScaleSay("native: cp -a %d packages (%d commands of %d) into a plain directory", len(mig), len(chunks), benchScaleMigrateStep)
	plain := filepath.Join(dir, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		b.Fatal(err)
	}
	benchScaleSh(b, benchScaleStepLimit, "sync")
	var native time.Duration
	for _, c := range chunks {
		native += benchScaleSh(b, benchScaleStepLimit, "cp -a "+shQuote(c)+"/. "+shQuote(plain)+"/")
	}
	syncD := benchScaleSh(b, benchScaleStepLimit, "sync")

	pk := filepath.Join(m.Dir, "Packages")
	var count0 int64
	benchScaleWithin(b, m, "reading the Packages header", func() { _, count0 = benchScaleHead(b, pk) })
	benchScaleSay("pkgdirfs: cp -a %d packages into the mount (%s budget)", len(mig), benchScaleMigBudget)
	var mount time.Duration
	copied := 0
	for i, c := range chunks {
		if i > 0 && mount > benchScaleMigBudget {
			break
		}
		mount += benchScaleWithin(b, m, "cp -a of "+c, func() {
			benchScaleSh(b, benchScaleStepLimit+time.Minute, "cp -a "+shQuote(c)+"/. "+shQuote(m.Dir)+"/")
		})
		copied += min(benchScaleMigrateStep, len(mig)-i*benchScaleMigrateStep)
		benchScaleSay("  copied %d/%d in %s", copied, len(mig), benchDur(mount))
	}
	var count int64
	benchScaleWithin(b, m, "reading the Packages header", func() { _, count = benchScaleHead(b, pk) })
	if count != count0+int64(copied) {
		b.Fatalf("after cp -a of %d packages: PACKAGES %d, before %d (want one instance per package)", copied, count, count0)
	}
	// A new build of an existing CPV (builds 1 and 2 exist) must be build 3.
	rebuilt := mig[1]
	multi := filepath.Join(m.Dir, rebuilt.Cat, rebuilt.PN, rebuilt.PF()+"-3.xpak")
	benchScaleWithin(b, m, "stat of a migrated build", func() {
		if _, err := os.Stat(multi); err != nil {
			b.Fatalf("migrated new build of %s: %v", rebuilt.CPV(), err)
		}
	})
	note := fmt.Sprintf(" (cp -a of CAT/PF.tbz2 trees, %d per command; half new CPVs, half new builds of existing ones; native into an empty directory, + sync %s not counted", benchScaleMigrateStep, benchDur(syncD))
	if copied < len(mig) {
		note += fmt.Sprintf("; pkgdirfs stopped after %d of %d: the %s budget was spent", copied, len(mig), benchScaleMigBudget)
	}
	if per := (mount.Seconds() / float64(copied)) / (native.Seconds() / float64(len(mig))); per > 20 {
		note += fmt.Sprintf("; pkgdirfs %.0fx the native time per package", per) // the ratio's two decimals show 0.00
	}
	benchCompareTime(b, fmt.Sprintf("scale-migrate-cp-a-into-%d", n), native, len(mig), mount, copied, "package", note+")")
}

// ---------------------------------------------------------------- 6: lookup and readdir

// benchScaleLookup compares stat of random multi-instance paths and `ls -l`
// of a category and of All/, cold and warm, with a native tree of the same
// shape: the generated multi-instance tree hard-linked, plus each CPV's
// newest build linked at $CAT/$PF.tbz2 and All/$PF.tbz2.
func benchScaleLookup(b *testing.B, m *benchScaleMounted, src, native string, pkgs []benchScalePkg) {
	b.Helper()
	n := len(pkgs)
	benchScaleSay("building the native tree of the mount's shape (hard links)")
	benchScaleSh(b, benchScaleStepLimit, "cp -al "+shQuote(src)+" "+shQuote(native))
	if err := os.Mkdir(filepath.Join(native, "All"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := 1; i < len(pkgs); i += 2 { // build 2 is the newest of each CPV
		p := pkgs[i]
		from := filepath.Join(src, p.MultiRel())
		for _, to := range []string{filepath.Join(native, p.FlatRel()), filepath.Join(native, "All", p.PF()+".tbz2")} {
			if err := os.Link(from, to); err != nil {
				b.Fatal(err)
			}
		}
	}
	cat := benchScaleCats[0]
	for _, dir := range []string{cat, "All"} {
		var want, got []string
		want = benchScaleNames(b, filepath.Join(native, dir))
		benchScaleWithin(b, m, "readdir "+dir, func() { got = benchScaleNames(b, filepath.Join(m.Dir, dir)) })
		if !slices.Equal(want, got) {
			b.Fatalf("%s/: the mount lists %d names, the native tree %d (or other names): mount %q…, native %q…",
				dir, len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
		}
	}

	rng := rand.New(rand.NewPCG(6, 6))
	picks := make([]string, benchScaleStatPicks)
	for i := range picks {
		picks[i] = pkgs[rng.IntN(len(pkgs))].MultiRel()
	}
	statAll := func(b *testing.B, root string) time.Duration {
		return benchScaleWithin(b, m, "stat of random paths", func() {
			for _, rel := range picks {
				if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	lsL := func(b *testing.B, dir string) (time.Duration, int) {
		var out []byte
		d := benchScaleWithin(b, m, "ls -l "+dir, func() { out, _ = benchScaleCmd(b, benchScaleStepLimit+time.Minute, "ls", "-l", dir) })
		return d, bytes.Count(out, []byte("\n")) - 1 // less the "total" line
	}
	b.Run("stat-cold", func(b *testing.B) {
		benchScaleSay("stat of %d random multi-instance paths, cold", len(picks))
		dn, dm := benchBestPair(3,
			func() time.Duration { benchDropCaches(b); return statAll(b, native) },
			func() time.Duration { benchDropCaches(b); return statAll(b, m.Dir) })
		benchCompareTime(b, fmt.Sprintf("scale-stat-%d-random-cold-%d", len(picks), n), dn, len(picks), dm, len(picks), "call",
			" (Lstat of $CAT/$PN/$PF-$N.xpak after drop_caches, best of 3)")
	})
	b.Run("stat-warm", func(b *testing.B) {
		benchScaleSay("stat of %d random multi-instance paths, warm", len(picks))
		statAll(b, native)
		statAll(b, m.Dir)
		dn, dm := benchBestPair(5, func() time.Duration { return statAll(b, native) }, func() time.Duration { return statAll(b, m.Dir) })
		benchCompareTime(b, fmt.Sprintf("scale-stat-%d-random-warm-%d", len(picks), n), dn, len(picks), dm, len(picks), "call", " (best of 5)")
	})
	for _, dir := range []string{cat, "All"} {
		name := "ls-l-category"
		if dir == "All" {
			name = "ls-l-All"
		}
		var nn, nm int
		b.Run(name+"-cold", func(b *testing.B) {
			benchScaleSay("ls -l %s/, cold", dir)
			dn, dm := benchBestPair(3,
				func() time.Duration { benchDropCaches(b); d, k := lsL(b, filepath.Join(native, dir)); nn = k; return d },
				func() time.Duration { benchDropCaches(b); d, k := lsL(b, filepath.Join(m.Dir, dir)); nm = k; return d })
			benchCompareTime(b, fmt.Sprintf("scale-%s-cold-%d", name, n), dn, nn, dm, nm, "entry",
				fmt.Sprintf(" (ls -l %s/ incl. exec, after drop_caches, best of 3)", dir))
		})
		b.Run(name+"-warm", func(b *testing.B) {
			benchScaleSay("ls -l %s/, warm", dir)
			lsL(b, filepath.Join(native, dir))
			lsL(b, filepath.Join(m.Dir, dir))
			dn, dm := benchBestPair(5,
				func() time.Duration { d, k := lsL(b, filepath.Join(native, dir)); nn = k; return d },
				func() time.Duration { d, k := lsL(b, filepath.Join(m.Dir, dir)); nm = k; return d })
			benchCompareTime(b, fmt.Sprintf("scale-%s-warm-%d", name, n), dn, nn, dm, nm, "entry",
				fmt.Sprintf(" (ls -l %s/ incl. exec, best of 5)", dir))
		})
	}
}

// benchScaleNames is the sorted entry names of dir.
func benchScaleNames(b *testing.B, dir string) []string {
	b.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = e.Name()
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------- catalog only

// benchScaleCatalogOnly writes nc instances straight into a catalog (fake
// blob names: their bytes are never read), mounts it and measures mount
// start, RSS, the first reads of the index and per-change latency; then the
// ratio of per-change latency to the run with blobs (blobs may be nil).
func benchScaleCatalogOnly(b *testing.B, nc, nBlobs int, blobs *benchScaleChangeResult) {
	tmp := b.TempDir()
	b.Cleanup(func() { benchScaleSay("removing %s", tmp) })
	state := filepath.Join(tmp, "state")
	benchScaleSay("writing %d instances into a catalog (no blobs)", nc)
	var rows int
	d := benchTimed(func() { rows = benchScaleFillCatalog(b, state, nc) })
	fi, _ := os.Stat(catalogFile(state))
	var dbSize int64
	if fi != nil {
		dbSize = fi.Size()
	}
	benchPrint(b, "bench scale-catalog-fill-%d: %d instances (%d CPVs) in %s = %.0f instances/s; catalog %.0f MiB",
		rows, rows, rows/2, benchDur(d), float64(rows)/d.Seconds(), float64(dbSize)/(1<<20))

	b.Run("snapshot", func(b *testing.B) { benchScaleSnapshot(b, state, rows) })

	m := benchScaleMountTimed(b, state, rows)
	nativeIndex := filepath.Join(tmp, "Packages.native")
	benchScaleIndexRSS(b, m, rows, rows, nativeIndex)

	chgDir := filepath.Join(tmp, "changes")
	chg := benchScaleNewPkgs(benchScaleReps, 7_000_000)
	benchScaleWriteAll(b, chgDir, chg, benchScalePkg.FlatRel, nil)
	var res *benchScaleChangeResult
	ok := b.Run("change", func(b *testing.B) {
		res = benchScaleChange(b, m, rows, nativeIndex, chgDir, chg, benchScaleCatChgBgt, 3)
	})
	benchScaleSay("unmounting")
	m.Close(b)
	benchScaleCheckLog(b, m.log)
	b.Run("remount", func(b *testing.B) { benchScaleRemount(b, state, rows) })
	if !ok {
		return
	}
	if blobs == nil {
		benchPrint(b, "bench scale-change-%d-vs-%d: n/a (the run with blobs did not finish)", rows, nBlobs)
		return
	}
	ratio := func(big, small []time.Duration) string {
		mb, _ := benchScaleMedianMax(big)
		ms, _ := benchScaleMedianMax(small)
		return fmt.Sprintf("%s / %s = %.2f", benchDur(mb), benchDur(ms), mb.Seconds()/ms.Seconds())
	}
	mb, _ := benchScaleMedianMax(res.CommitFirst)
	ms, _ := benchScaleMedianMax(blobs.CommitFirst)
	benchPrint(b, "bench scale-change-%d-vs-%d: commit+first byte %s; commit %s; first byte %s; gz first byte %s; full read %s; gz full read %s (medians, %d/%d instances: %.0fx the instances)",
		rows, nBlobs, ratio(res.CommitFirst, blobs.CommitFirst), ratio(res.Commit, blobs.Commit), ratio(res.First, blobs.First),
		ratio(res.FirstGz, blobs.FirstGz), ratio(res.Full, blobs.Full), ratio(res.FullGz, blobs.FullGz), rows, nBlobs, float64(rows)/float64(nBlobs))
	b.ReportMetric(mb.Seconds()/ms.Seconds(), "change-ratio")
}

// benchScaleSnapshot times `pkgdirfs snapshot create` of every instance
// (one INSERT … SELECT) and of a query that selects every instance too
// (every package read with its metadata and matched), then deletes both,
// so that what runs next sees the catalog as it was.
func benchScaleSnapshot(b *testing.B, state string, n int) {
	for _, c := range []struct{ name, what string }{
		{"all", "every instance"},
		{"query", "--query '*/*' (each package read and matched)"},
	} {
		args := []string{"snapshot", "--state", state, "create", "bench-" + c.name}
		if c.name == "query" {
			args = append(args, "--query", "'*/*'")
		}
		benchScaleSay("pkgdirfs snapshot create of %s", c.what)
		var out []byte
		var err error
		d := benchTimed(func() { out, err = exec.Command(binPath, args...).CombinedOutput() })
		if err != nil || !strings.Contains(string(out), fmt.Sprintf(": %d builds", n)) {
			b.Fatalf("pkgdirfs %s: %v: %s", strings.Join(args, " "), err, out)
		}
		benchPrint(b, "bench scale-snapshot-create-%s-%d: pkgdirfs snapshot create of %s: %d builds in %s = %.0f builds/s",
			c.name, n, c.what, n, benchDur(d), float64(n)/d.Seconds())
	}
	d := benchTimed(func() {
		for _, name := range []string{"bench-all", "bench-query"} {
			if out, err := exec.Command(binPath, "snapshot", "--state", state, "delete", name).CombinedOutput(); err != nil {
				b.Fatalf("pkgdirfs snapshot delete %s: %v: %s", name, err, out)
			}
		}
	})
	benchPrint(b, "bench scale-snapshot-delete-%d: 2 snapshots of %d builds deleted in %s", n, n, benchDur(d))
}

// benchScaleFillCatalog writes benchScaleSet(n) into a new state's catalog,
// 10,000 instances per transaction, with the index entries an import of the
// same packages would store, then bumps the generation once. It returns the
// number of instances.
func benchScaleFillCatalog(b testing.TB, state string, n int) int {
	return benchScaleFillCatalogAt(b, catalog.Location{State: state}, n)
}

// benchScaleFillCatalogAt is benchScaleFillCatalog of a catalog anywhere
// (a PostgreSQL one too).
func benchScaleFillCatalogAt(b testing.TB, loc catalog.Location, n int) int {
	b.Helper()
	store, err := catalog.OpenStoreAt(loc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	// Metadata is made on another goroutine while the catalog inserts.
	batches := make(chan []*catalog.Instance, 2)
	var stop atomic.Bool
	var genErr error // written before close(batches), read after
	go func() {
		defer close(batches)
		batch := make([]*catalog.Instance, 0, 10000)
		benchScaleEach(n, func(p benchScalePkg) {
			if stop.Load() || genErr != nil {
				return
			}
			meta, err := layout.IndexEntry(benchScaleMeta(p))
			if err != nil {
				genErr = fmt.Errorf("%s: %w", p.CPV(), err)
				return
			}
			md5hex, sha1hex, sha256hex := benchScaleFakeDigests(p)
			batch = append(batch, &catalog.Instance{Category: p.Cat, PN: p.PN, PF: p.PF(), BuildID: int64(p.BuildID),
				BuildTime: p.BuildTime, Format: "xpak", Compression: "none", Size: 3000 + int64(p.Seed%1000),
				MtimeNs: p.BuildTime * 1e9, Mode: 0o644, MD5: md5hex, SHA1: sha1hex, SHA256: sha256hex,
				Blob: sha256hex, Meta: meta})
			if len(batch) == cap(batch) {
				batches <- batch
				batch = make([]*catalog.Instance, 0, 10000)
			}
		})
		if len(batch) > 0 {
			batches <- batch
		}
	}()
	rows := 0
	for batch := range batches {
		err := store.DB.Tx(ctx, func(tx *catalog.Tx) error {
			for _, in := range batch {
				if _, err := tx.InsertInstance(in); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			stop.Store(true)
			for range batches { // let the generator return
			}
			b.Fatalf("catalog insert: %v", err)
		}
		rows += len(batch)
		if rows%100000 == 0 {
			benchScaleSay("  %d/%d instances", rows, n)
		}
	}
	if genErr != nil {
		b.Fatalf("metadata: %v", genErr)
	}
	err = store.DB.Tx(ctx, func(tx *catalog.Tx) error {
		// The header an import of these packages would get (FillHeaderCHOST).
		if err := tx.SetHeader(map[string]string{"CHOST": "x86_64-pc-linux-gnu"}); err != nil {
			return err
		}
		_, err := tx.BumpGeneration()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return rows
}

// ---------------------------------------------------------------- plumbing

// benchScaleMounted is a benchmark mount with its state and daemon pid.
type benchScaleMounted struct {
	*benchMounted
	state string
	pid   int
}

// benchScaleMount is benchMount with a mount timeout fit for 1,000,000
// instances; it returns how long `pkgdirfs mount` took to return.
func benchScaleMount(b *testing.B, state string) (*benchScaleMounted, time.Duration) {
	b.Helper()
	mnt, err := os.MkdirTemp("", "pkgdirfs-bench-mnt-")
	if err != nil {
		b.Fatal(err)
	}
	m := &benchScaleMounted{benchMounted: &benchMounted{Dir: mnt, log: filepath.Join(state, "bench-daemon.log")}, state: state}
	b.Cleanup(func() {
		if len(m.pids) == 0 { // the mount command failed or timed out: a daemon may still be starting
			m.pids = daemonPIDs(mnt)
		}
		m.Close(b)
		if b.Failed() { // the state directory goes with the benchmark: show the end of the log now
			data, _ := os.ReadFile(m.log)
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			b.Logf("daemon log %s (last lines):\n%s", m.log, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	start := time.Now()
	benchScaleCmd(b, benchScaleStepLimit, binPath, "mount", "--state", state, "--log", m.log, mnt)
	d := time.Since(start)
	if fstype, ok := mountedFSType(mnt); !ok || !strings.HasPrefix(fstype, "fuse") {
		b.Fatalf("`pkgdirfs mount` returned but %s is not a fuse mount (%q)\ndaemon log:\n%s", mnt, fstype, readLog(m.log))
	}
	m.pids = daemonPIDs(mnt)
	if pb, err := os.ReadFile(filepath.Join(state, "pkgdirfs.pid")); err == nil {
		m.pid, _ = strconv.Atoi(strings.TrimSpace(string(pb)))
	}
	if m.pid == 0 && len(m.pids) > 0 {
		m.pid = m.pids[0]
	}
	if m.pid == 0 {
		b.Fatalf("no daemon pid for %s (no %s/pkgdirfs.pid, no process found)", mnt, state)
	}
	if !slices.Contains(m.pids, m.pid) {
		m.pids = append(m.pids, m.pid)
	}
	return m, d
}

// benchScaleWithin runs f (which may call b.Fatal) and returns how long it
// took. Past limit the daemon is killed: its watchdog aborts the FUSE
// connection, the blocked call in f fails, and the benchmark stops there.
func benchScaleWithin(b *testing.B, m *benchScaleMounted, what string, f func()) time.Duration {
	b.Helper()
	var fired atomic.Bool
	t := time.AfterFunc(benchScaleStepLimit, func() {
		fired.Store(true)
		benchScaleSay("%s: no answer after %s: killing the daemon so the step fails instead of hanging", what, benchScaleStepLimit)
		for _, pid := range m.pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	defer t.Stop()
	defer benchScaleTicker(what, nil)()
	start := time.Now()
	f()
	d := time.Since(start)
	if fired.Load() {
		b.Fatalf("%s took %s, over the %s limit (daemon killed)", what, benchDur(d), benchScaleStepLimit)
	}
	return d
}

// benchScaleCmd runs a command with a timeout and returns its stdout and
// how long it took; a failure or timeout fails the benchmark.
func benchScaleCmd(b *testing.B, timeout time.Duration, name string, args ...string) ([]byte, time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 3 * time.Second // a daemonizing child must not hold us
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if ctx.Err() != nil {
		b.Fatalf("timeout after %v: %s %s\nstderr: %s", timeout, name, strings.Join(args, " "), clip(stderr.Bytes(), 4000))
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		b.Fatalf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, clip(stderr.Bytes(), 4000))
	}
	return stdout.Bytes(), d
}

// benchScaleSh runs a bash script (pipefail) and returns how long it took.
func benchScaleSh(b *testing.B, timeout time.Duration, script string) time.Duration {
	b.Helper()
	_, d := benchScaleCmd(b, timeout, "bash", "-c", "set -o pipefail; "+script)
	return d
}

// benchScaleHowRE is what follows the summary when import reports how the
// bytes came in: "(linked N, cloned N, copied N)".
var benchScaleHowRE = regexp.MustCompile(`invalid \d+ (\([^)\n]*\))`)

// benchScaleImport runs `pkgdirfs import -q [extra...] --state STATE SRC`
// and requires every package imported, none invalid. how is the
// parenthesised note after the summary, if any.
func benchScaleImport(b *testing.B, state, src string, want int, extra ...string) (res benchImportResult, how string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchScaleStepLimit)
	defer cancel()
	args := append(append([]string{"import", "-q"}, extra...), "--state", state, src)
	cmd := exec.CommandContext(ctx, binPath, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	stop := benchScaleTicker("pkgdirfs "+strings.Join(args[:len(args)-3], " "), func() string {
		fi, err := os.Stat(catalogFile(state))
		if err != nil {
			return ""
		}
		return fmt.Sprintf(", catalog %.1f MiB", float64(fi.Size())/(1<<20))
	})
	start := time.Now()
	err := cmd.Run()
	res = benchImportResult{Elapsed: time.Since(start)}
	stop()
	if err != nil {
		b.Fatalf("pkgdirfs %s: %v\n%s", strings.Join(args, " "), err, clip(stderr.Bytes(), 4000))
	}
	sm := summaryRE.FindSubmatch(stderr.Bytes())
	if sm == nil {
		b.Fatalf("pkgdirfs %s printed no summary line:\n%s", strings.Join(args, " "), clip(stderr.Bytes(), 4000))
	}
	res.Imported, _ = strconv.Atoi(string(sm[1]))
	res.Present, _ = strconv.Atoi(string(sm[2]))
	res.Invalid, _ = strconv.Atoi(string(sm[3]))
	if res.Imported != want || res.Present != 0 || res.Invalid != 0 {
		b.Fatalf("pkgdirfs %s: want `imported %d, already present 0, invalid 0`; got %q", strings.Join(args, " "), want, sm[0])
	}
	if hm := benchScaleHowRE.FindSubmatch(stderr.Bytes()); hm != nil {
		how = string(hm[1])
	}
	return res, how
}

var benchScaleLinkRE = regexp.MustCompile(`(?m)^\s*--?link\b`)

// benchScaleHasLink tells whether this binary's import takes --link (being
// added at the same time as this benchmark).
func benchScaleHasLink(b *testing.B) bool {
	out, _ := exec.Command(binPath, "import", "--help").CombinedOutput()
	return benchScaleLinkRE.Match(out)
}

// benchScaleHead is the first byte of an index: open, read 4 KiB, and the
// TIMESTAMP and PACKAGES of the header found in it.
func benchScaleHead(b *testing.B, path string) (ts, count int64) {
	b.Helper()
	head, _, _ := bytes.Cut(benchScaleFirst4K(b, path), []byte("\n\n"))
	var err error
	var okT, okP bool
	for _, line := range strings.Split(string(head), "\n") {
		if v, ok := strings.CutPrefix(line, "TIMESTAMP: "); ok {
			ts, err = strconv.ParseInt(v, 10, 64)
			okT = err == nil
		}
		if v, ok := strings.CutPrefix(line, "PACKAGES: "); ok {
			count, err = strconv.ParseInt(v, 10, 64)
			okP = err == nil
		}
	}
	if !okT || !okP {
		b.Fatalf("%s: no TIMESTAMP and PACKAGES in the header's first 4 KiB:\n%s", path, clip(head, 2000))
	}
	return ts, count
}

// benchScaleGzHead is the first byte of Packages.gz: open, read 4 KiB, and
// the gzip header's mtime.
func benchScaleGzHead(b *testing.B, path string) int64 {
	b.Helper()
	buf := benchScaleFirst4K(b, path)
	if len(buf) < 10 || buf[0] != 0x1f || buf[1] != 0x8b {
		b.Fatalf("%s: not gzip (%d bytes: %x)", path, len(buf), buf[:min(len(buf), 10)])
	}
	return int64(binary.LittleEndian.Uint32(buf[4:8]))
}

// benchScaleFirst4K opens path and reads its first 4 KiB (less if shorter).
func benchScaleFirst4K(b *testing.B, path string) []byte {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	k, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		b.Fatalf("read %s: %v", path, err)
	}
	return buf[:k]
}

// benchScaleReadAll reads path to EOF with 1 MiB reads, counting the bytes
// and the "\nCPV: " lines.
func benchScaleReadAll(b *testing.B, path string) (int64, int) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	var c benchScaleCPVCounter
	for {
		k, err := f.Read(buf)
		n += int64(k)
		c.Write(buf[:k])
		if err == io.EOF {
			return n, c.n
		}
		if err != nil {
			b.Fatalf("read %s: %v", path, err)
		}
	}
}

// benchScaleCopy copies src to a new file dst.
func benchScaleCopy(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 1<<20)); err != nil {
		b.Fatalf("copy %s: %v", src, err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// benchScaleRSS is the daemon's VmRSS and RssAnon in bytes.
func benchScaleRSS(b *testing.B, m *benchScaleMounted) (rss, anon int64) {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		b.Fatalf("daemon pid %d: %v", m.pid, err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "RssAnon") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			b.Fatalf("/proc/%d/status: %q", m.pid, line)
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	if rss == 0 || anon == 0 {
		b.Fatalf("/proc/%d/status has no VmRSS/RssAnon", m.pid)
	}
	return rss, anon
}

// benchScaleCheckLog fails on panics and errors in a daemon log.
func benchScaleCheckLog(b *testing.B, path string) {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Errorf("daemon log: %v", err)
		return
	}
	var bad []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.HasPrefix(line, "panic:") ||
			strings.HasPrefix(line, "fatal error:") || strings.Contains(line, "DATA RACE") {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 {
		b.Errorf("daemon log %s has %d error/panic lines:\n%s", path, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}

func benchScaleMedianMax(ds []time.Duration) (med, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

func benchScaleMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func benchScaleEnv(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a count", name, v)
	}
	return n
}

// benchScaleTicker prints a line every 30 s until stop is called, so a long
// wait does not look like a hang; more adds to the line.
func benchScaleTicker(what string, more func() string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				extra := ""
				if more != nil {
					extra = more()
				}
				benchScaleSay("  … still %s: %.0f s%s", what, time.Since(start).Seconds(), extra)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// benchScaleSay prints a progress line (not a result) so a human watching
// a long run sees what is being done.
func benchScaleSay(format string, args ...any) {
	fmt.Printf("scale [%6.0fs] %s\n", time.Since(benchScaleStart).Seconds(), fmt.Sprintf(format, args...))
}
