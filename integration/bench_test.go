package integration

// Benchmarks: each one compares the mount with the native filesystem in the
// same run, on the same bytes, and prints one line per measurement:
//
//	bench NAME: native X, pkgdirfs Y, ratio R
//
// ratio = pkgdirfs throughput / native throughput (= native time / pkgdirfs
// time), so 1.00 is "as fast as the disk" and 0.25 is "four times slower".
// The native side is the generated PKGDIR itself (multi-instance layout, on
// the same ext4 as the state); the mount serves the state it was imported
// into. `make bench` runs them once each (-benchtime=1x); every benchmark
// measures once per call whatever b.N is.
//
// Cold figures write 3 to /proc/sys/vm/drop_caches (after sync) before each
// side's run; warm figures come after a warm-up run. Both take the best of a
// few runs, native and mount alternating, because the figures are meant to be
// taken on a small shared machine where anything else running adds noise to
// whichever side happens to be running.

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const benchCat = "bench-cat"

// ---------------------------------------------------------------- 1. one large package

// BenchmarkLargeRead reads one 256 MiB package sequentially: Go reads with a
// 1 MiB buffer and `cat FILE > /dev/null`, cold (caches dropped) and warm.
func BenchmarkLargeRead(b *testing.B) {
	benchNeed(b)
	tmp := b.TempDir()
	src, state := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state")
	pkg := benchPkg{Cat: benchCat, PN: "bigpkg", Ver: "1.0", BuildID: 1, Seed: 1,
		Files: []int64{256 << 20}} // plus 2.5 KiB of tar headers and XPAK
	size := benchWriteAll(b, src, []benchPkg{pkg})
	benchImport(b, state, src, 1)
	m := benchMount(b, state)
	defer m.Close(b)
	native, mounted := filepath.Join(src, pkg.Rel()), filepath.Join(m.Dir, pkg.Rel())
	if fi, err := os.Stat(mounted); err != nil || fi.Size() != size {
		b.Fatalf("mounted %s: %v (size %v, want %d)", mounted, err, fi, size)
	}
	name := fmt.Sprintf("read-%dMiB", size>>20)
	buf := make([]byte, 1<<20)
	goRead := func(path string) time.Duration {
		var n int64
		d := benchTimed(func() { n = benchReadFile(b, path, buf) })
		if n != size {
			b.Fatalf("read %s: %d bytes, want %d", path, n, size)
		}
		return d
	}
	catRead := func(path string) time.Duration {
		return benchShell(b, "", "cat "+shQuote(path)+" > /dev/null")
	}
	cold := func(read func(string) time.Duration) (time.Duration, time.Duration) {
		return benchBestPair(3,
			func() time.Duration { benchDropCaches(b); return read(native) },
			func() time.Duration { benchDropCaches(b); return read(mounted) })
	}
	warm := func(read func(string) time.Duration) (time.Duration, time.Duration) {
		read(native)
		read(mounted)
		return benchBestPair(3, func() time.Duration { return read(native) }, func() time.Duration { return read(mounted) })
	}
	b.Run("cold-go", func(b *testing.B) {
		dn, dm := cold(goRead)
		benchCompareRate(b, name+"-cold-go1MiB", size, dn, dm, " (best of 3)")
	})
	b.Run("warm-go", func(b *testing.B) {
		dn, dm := warm(goRead)
		benchCompareRate(b, name+"-warm-go1MiB", size, dn, dm, " (best of 3)")
	})
	b.Run("cold-cat", func(b *testing.B) {
		dn, dm := cold(catRead)
		benchCompareRate(b, name+"-cold-cat", size, dn, dm, " (best of 3)")
	})
	b.Run("warm-cat", func(b *testing.B) {
		dn, dm := warm(catRead)
		benchCompareRate(b, name+"-warm-cat", size, dn, dm, " (best of 3)")
	})
}

// ---------------------------------------------------------------- 2 and 5. many small packages

// benchSmallSet is 2,000 packages of 20–200 KiB (one to three random files
// each), 100 CPVs of 20 instances.
func benchSmallSet() []benchPkg {
	rng := rand.New(rand.NewPCG(2, 2))
	var pkgs []benchPkg
	for i := 0; i < 2000; i++ {
		total := int64(20<<10 + rng.IntN(180<<10))
		nfiles := 1 + rng.IntN(3)
		var files []int64
		for f := 0; f < nfiles; f++ {
			files = append(files, total/int64(nfiles))
		}
		pn := fmt.Sprintf("small%03d", i/20)
		pkgs = append(pkgs, benchPkg{Cat: benchCat, PN: pn, Ver: "1.0", BuildID: 1 + i%20, Seed: 2, Files: files})
	}
	return pkgs
}

// BenchmarkSmallFiles: sha1sum of 2,000 small packages, and the nginx-like
// open+fstat+read+close of 2,000 random ones, both warm.
func BenchmarkSmallFiles(b *testing.B) {
	benchNeed(b)
	tmp := b.TempDir()
	src, state := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state")
	pkgs := benchSmallSet()
	total := benchWriteAll(b, src, pkgs)
	benchImport(b, state, src, len(pkgs))
	m := benchMount(b, state)
	defer m.Close(b)
	var list bytes.Buffer
	rels := make([]string, len(pkgs))
	for i, p := range pkgs {
		rels[i] = p.Rel()
		list.WriteString(p.Rel())
		list.WriteByte(0)
	}

	b.Run("sha1sum-warm", func(b *testing.B) {
		sha1sum := func(dir string) ([]byte, time.Duration) {
			start := time.Now()
			out := benchExec(b, dir, 5*time.Minute, bytes.NewReader(list.Bytes()), "xargs", "-0", "sha1sum", "--")
			return out, time.Since(start)
		}
		outN, _ := sha1sum(src)
		outM, _ := sha1sum(m.Dir)
		if !bytes.Equal(outN, outM) {
			b.Fatalf("sha1sum differs between native and mount:\nnative:\n%s\nmount:\n%s", clip(outN, 2000), clip(outM, 2000))
		}
		dn, dm := benchBestPair(5,
			func() time.Duration { _, d := sha1sum(src); return d },
			func() time.Duration { _, d := sha1sum(m.Dir); return d })
		benchCompareRate(b, fmt.Sprintf("sha1sum-%d-files-%dMiB-warm", len(pkgs), total>>20), total, dn, dm, " (best of 5)")
	})

	b.Run("open-read-close-warm", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(5, 5))
		picks := make([]string, 2000)
		for i := range picks {
			picks[i] = rels[rng.IntN(len(rels))]
		}
		buf := make([]byte, 256<<10)
		loop := func(dir string) (time.Duration, int64) { return benchOpenReadClose(b, dir, picks, buf) }
		_, nn := loop(src)
		_, nm := loop(m.Dir)
		if nn != nm {
			b.Fatalf("open-read-close: native read %d bytes, mount %d", nn, nm)
		}
		dn, dm := benchBestPair(5,
			func() time.Duration { d, _ := loop(src); return d },
			func() time.Duration { d, _ := loop(m.Dir); return d })
		benchCompareTime(b, fmt.Sprintf("open-read-close-%d-random-warm", len(picks)), dn, len(picks), dm, len(picks), "file",
			fmt.Sprintf(" (%s vs %s, best of 5)", benchRate(nn, dn), benchRate(nm, dm)))
	})
}

// benchOpenReadClose is what a web server does per small file: open,
// fstat, read st_size bytes with buf, close; for each of rels under dir. It
// returns the time taken and the bytes read. Plain syscalls, as C programs
// make them: Go's os.Open also tries to register a file with its poller
// (fcntl, epoll_ctl), which a FUSE file accepts and a disk file refuses.
func benchOpenReadClose(b *testing.B, dir string, rels []string, buf []byte) (time.Duration, int64) {
	b.Helper()
	var n int64
	start := time.Now()
	for _, rel := range rels {
		p := filepath.Join(dir, rel)
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			b.Fatalf("open %s: %v", p, err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			b.Fatalf("fstat %s: %v", p, err)
		}
		for off := int64(0); off < st.Size; {
			k, err := syscall.Read(fd, buf)
			if err != nil || k == 0 {
				b.Fatalf("read %s at %d of %d: %d, %v", p, off, st.Size, k, err)
			}
			off += int64(k)
			n += int64(k)
		}
		syscall.Close(fd)
	}
	return time.Since(start), n
}

// ---------------------------------------------------------------- 3 and 4. a 20,000-instance tree

// benchTreeSet is 20,000 instances of ~2.5 KiB: 10 categories × 500 packages ×
// 4 builds (one CPV per package). Package names are unique across categories
// so that every CPV also gets its All/$PF.tbz2.
func benchTreeSet() []benchPkg {
	var pkgs []benchPkg
	for c := 0; c < 10; c++ {
		for p := 0; p < 500; p++ {
			for n := 1; n <= 4; n++ {
				pkgs = append(pkgs, benchPkg{Cat: fmt.Sprintf("%s%d", benchCat, c), PN: fmt.Sprintf("pkg%d%03d", c, p),
					Ver: "1.0", BuildID: n, Seed: 3, Files: []int64{1024}})
			}
		}
	}
	return pkgs
}

// benchCountEntries counts the files and directories under root (root excluded).
func benchCountEntries(b *testing.B, root string) (files, dirs int) {
	b.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		if d.IsDir() {
			dirs++
		} else {
			files++
		}
		return nil
	})
	if err != nil {
		b.Fatalf("walk %s: %v", root, err)
	}
	return files, dirs
}

// benchWalkLstat is `find -type f | xargs stat` in Go: WalkDir plus one
// Lstat per entry. It returns the number of entries it stat'ed.
func benchWalkLstat(b *testing.B, root string) int {
	b.Helper()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(path); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		b.Fatalf("walk %s: %v", root, err)
	}
	return n
}

// BenchmarkTree20k imports 20,000 small instances (import rate), then
// compares listing, stat walks and reading Packages with the native tree.
func BenchmarkTree20k(b *testing.B) {
	benchNeed(b)
	tmp := b.TempDir()
	src, state := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state")
	pkgs := benchTreeSet()
	var total int64
	gen := benchTimed(func() { total = benchWriteAll(b, src, pkgs) })
	benchPrint(b, "bench tree-generate: %d packages, %.1f MB in %s", len(pkgs), float64(total)/1e6, benchDur(gen))
	imp := benchImport(b, state, src, len(pkgs))
	nFiles, nDirs := benchCountEntries(b, src)

	b.Run("import", func(b *testing.B) {
		// Reference: copying the same tree natively, durably (cp -a, then sync).
		dst := filepath.Join(b.TempDir(), "copy")
		benchShell(b, "", "sync")
		cp := benchShell(b, "", "cp -a "+shQuote(src)+" "+shQuote(dst)+" && sync")
		ratio := cp.Seconds() / imp.Elapsed.Seconds()
		benchPrint(b, "bench import-%d: %d packages, %.1f MB in %s = %.0f packages/s, %.2f MB/s; native `cp -a && sync` %s (%.0f files/s), ratio %.3f",
			len(pkgs), imp.Imported, float64(total)/1e6, benchDur(imp.Elapsed),
			float64(imp.Imported)/imp.Elapsed.Seconds(), float64(total)/1e6/imp.Elapsed.Seconds(),
			benchDur(cp), float64(len(pkgs))/cp.Seconds(), ratio)
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(float64(imp.Imported)/imp.Elapsed.Seconds(), "pkgs/s")
	})

	lsR := func(dir string) time.Duration { return benchShell(b, "", "ls -lR "+shQuote(dir)+" > /dev/null") }
	for _, layouts := range []string{"all", "multi"} {
		prefix := ""
		if layouts != "all" {
			prefix = layouts + "-"
		}
		b.Run(prefix+"ls-lR-cold", func(b *testing.B) {
			// Each round: a fresh mount, caches dropped, the first ls -lR.
			var mf, md int
			dn, dm := benchBestPair(2,
				func() time.Duration { benchDropCaches(b); return lsR(src) },
				func() time.Duration {
					m := benchMount(b, state, "--layouts", layouts)
					defer m.Close(b)
					benchDropCaches(b)
					d := lsR(m.Dir)
					mf, md = benchCountEntries(b, m.Dir)
					return d
				})
			benchCompareTime(b, fmt.Sprintf("ls-lR-cold-%s", layouts), dn, nFiles+nDirs, dm, mf+md, "entry",
				" (first run after mount, caches dropped, best of 2; ls stats Packages, which renders it; per entry)")
		})
		b.Run(prefix+"ls-lR-warm", func(b *testing.B) {
			m := benchMount(b, state, "--layouts", layouts)
			defer m.Close(b)
			mf, md := benchCountEntries(b, m.Dir) // also warms the mount's dentries
			dn, dm := benchBestPair(3, func() time.Duration { return lsR(src) }, func() time.Duration { return lsR(m.Dir) })
			benchCompareTime(b, fmt.Sprintf("ls-lR-warm-%s", layouts), dn, nFiles+nDirs, dm, mf+md, "entry",
				" (best of 3, per entry)")
		})
		b.Run(prefix+"walk-lstat-warm", func(b *testing.B) {
			m := benchMount(b, state, "--layouts", layouts)
			defer m.Close(b)
			var nn, nm int
			dn, dm := benchBestPair(3,
				func() time.Duration { return benchTimed(func() { nn = benchWalkLstat(b, src) }) },
				func() time.Duration { return benchTimed(func() { nm = benchWalkLstat(b, m.Dir) }) })
			benchCompareTime(b, fmt.Sprintf("walk-lstat-warm-%s", layouts), dn, nn, dm, nm, "entry",
				" (WalkDir+Lstat, best of 3 (the first warms), per entry)")
		})
	}

	// The native side of the Packages comparisons: a native file holding the
	// bytes the mount serves (written by each sub-benchmark from its mount).
	nativeIndex := filepath.Join(tmp, "Packages")
	catTime := func(path string) time.Duration { return benchShell(b, "", "cat "+shQuote(path)+" > /dev/null") }
	b.Run("Packages-first", func(b *testing.B) {
		// Each round: a fresh mount, caches dropped, the first cat Packages.
		var body []byte
		dm := benchBestOf(2, func() time.Duration {
			m := benchMount(b, state)
			defer m.Close(b)
			benchDropCaches(b)
			d := catTime(filepath.Join(m.Dir, "Packages"))
			var err error
			if body, err = os.ReadFile(filepath.Join(m.Dir, "Packages")); err != nil {
				b.Fatal(err)
			}
			return d
		})
		if got := strings.Count(string(body), "\nCPV: "); got != len(pkgs) {
			b.Fatalf("Packages lists %d CPV entries, want %d", got, len(pkgs))
		}
		if err := os.WriteFile(nativeIndex, body, 0o644); err != nil {
			b.Fatal(err)
		}
		dn := benchBestOf(2, func() time.Duration { benchDropCaches(b); return catTime(nativeIndex) })
		benchCompareTime(b, fmt.Sprintf("Packages-first-read-%d", len(pkgs)), dn, 0, dm, 0, "",
			fmt.Sprintf(" (cat, caches dropped, fresh mount: includes render, best of 2; Packages %d bytes = %.2f MiB)", len(body), float64(len(body))/(1<<20)))
	})
	b.Run("Packages-warm", func(b *testing.B) {
		m := benchMount(b, state)
		defer m.Close(b)
		mounted := filepath.Join(m.Dir, "Packages")
		fi, err := os.Stat(mounted)
		if err != nil {
			b.Fatal(err)
		}
		body, err := os.ReadFile(mounted)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(nativeIndex, body, 0o644); err != nil {
			b.Fatal(err)
		}
		catTime(nativeIndex)
		catTime(mounted)
		dn, dm := benchBestPair(5, func() time.Duration { return catTime(nativeIndex) }, func() time.Duration { return catTime(mounted) })
		benchCompareTime(b, fmt.Sprintf("Packages-warm-cat-%d", len(pkgs)), dn, 0, dm, 0, "",
			fmt.Sprintf(" (cat incl. exec, best of 5; %d bytes)", fi.Size()))
		buf := make([]byte, 1<<20)
		gn, gm := benchBestPair(5,
			func() time.Duration { return benchTimed(func() { benchReadFile(b, nativeIndex, buf) }) },
			func() time.Duration { return benchTimed(func() { benchReadFile(b, mounted, buf) }) })
		gratio := gn.Seconds() / gm.Seconds()
		benchPrint(b, "bench Packages-warm-go-%d: native %s (%s), pkgdirfs %s (%s), ratio %.2f (open+read 1 MiB+close, best of 5)",
			len(pkgs), benchDur(gn), benchRate(fi.Size(), gn), benchDur(gm), benchRate(fi.Size(), gm), gratio)
		b.ReportMetric(gratio, "ratio-go")
	})
}
