package integration

// BenchmarkBrowse (issue 12): what users do to a whole PKGDIR — ls -lR,
// find -ls, a stat walk, tar -c, rsync -a, checksums, small random reads,
// nginx serving it — on the mount and on a native copy of it, at each size
// of BENCH_BROWSE (instances, comma-separated; default 10,000 and 100,000).
//
// The packages are of realistic size (8–60 KiB, ~24 KB on average),
// imported with --link (no bytes copied) and mounted with every layout, so
// the tree has the multi-instance files plus the flat and All/ symlinks.
// The native side is `cp -a MNT/. NATIVE/`: a plain directory tree on the
// local disk with exactly the mount's entries. Every row runs one untimed
// pass per side, then the best of 3 (of 2 when a pass takes over 10 s),
// native first, all warm except ls-lR-cold. The smallest size also holds one
// 1 GiB package (cat-large/, left out of the rows that read every small
// package) for the large-file rows.

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	benchBrowseDefault = "10000,100000"
	benchBrowseMinSize = 1000
	// A row whose untimed pass took longer than this is run twice, not three times.
	benchBrowseSlow = 10 * time.Second
	// A command of a row (tar, rsync, sha1sum) running this long is a hang.
	benchBrowseCmdLimit = 10 * time.Minute
	benchBrowseLargeCat = "cat-large"
	benchBrowsePicks    = 2000 // open-read-close
	benchBrowseURLs     = 5000 // nginx-small
)

func BenchmarkBrowse(b *testing.B) {
	benchNeed(b)
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk not found: make bench-deps")
	}
	sizes := benchBrowseSizes(b)
	benchScaleStart = time.Now() // progress lines (benchScaleSay) count from here
	benchScaleSay("BENCH_BROWSE=%v instances", sizes)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n%d", n), func(b *testing.B) { benchBrowseSize(b, n, n == slices.Min(sizes)) })
	}
	benchScaleSay("done")
}

// benchBrowseSizes parses BENCH_BROWSE, rounding each count up to a
// multiple of 4 (2 versions × 2 builds per package).
func benchBrowseSizes(b *testing.B) []int {
	v := os.Getenv("BENCH_BROWSE")
	if v == "" {
		v = benchBrowseDefault
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < benchBrowseMinSize {
			b.Fatalf("BENCH_BROWSE=%q: want comma-separated instance counts, each at least %d", v, benchBrowseMinSize)
		}
		out = append(out, (n+3)/4*4)
	}
	return out
}

// benchBrowseSet is n instances: n/4 packages of 2 versions × 2 builds with
// 8–60 KiB of payload in 1–3 files, skewed small like real binary packages
// (payload mean 21 KiB, ~23 KiB with tar headers and XPAK), spread over
// max(10, n/60) categories. PNs are unique across categories, so every CPV
// also gets its All/$PF.tbz2.
func benchBrowseSet(n int) []benchPkg {
	rng := rand.New(rand.NewPCG(12, 12))
	ncat := max(10, n/60)
	pkgs := make([]benchPkg, 0, n)
	for i := 0; len(pkgs) < n; i++ {
		cat, pn := fmt.Sprintf("cat-%02d", i%ncat), fmt.Sprintf("pkg%06d", i)
		for v := 0; v < 2; v++ {
			for bid := 1; bid <= 2; bid++ {
				u := rng.Float64()
				total := int64(8<<10) + int64(52<<10*u*u*u)
				files := make([]int64, 1+rng.IntN(3))
				for f := range files {
					files[f] = total / int64(len(files))
				}
				files[0] += total % int64(len(files))
				pkgs = append(pkgs, benchPkg{Cat: cat, PN: pn, Ver: fmt.Sprintf("1.%d", v), BuildID: bid, Seed: 12, Files: files})
			}
		}
	}
	return pkgs
}

var benchBrowseHowRE = regexp.MustCompile(`linked (\d+), cloned (\d+), copied (\d+)`)

// benchBrowseSize sets up one size (generate, import --link, mount, native
// copy) and runs every row on it.
func benchBrowseSize(b *testing.B, n int, withLarge bool) {
	tmp := b.TempDir()
	b.Cleanup(func() { benchScaleSay("removing %s", tmp) }) // runs just before the removal: it takes a while
	// nginx's workers (www-data) serve the native copy from here: b.TempDir's parent is 0700.
	if err := os.Chmod(filepath.Dir(tmp), 0o755); err != nil {
		b.Fatal(err)
	}
	src, state, native := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state"), filepath.Join(tmp, "native")

	pkgs := benchBrowseSet(n)
	all := pkgs
	var large benchPkg
	if withLarge {
		large = benchPkg{Cat: benchBrowseLargeCat, PN: "largepkg", Ver: "1.0", BuildID: 1, Seed: 12, Files: []int64{1 << 30}}
		all = append([]benchPkg{large}, pkgs...) // first: its 1 GiB is written while the small ones are
	}
	sizes := make([]int64, len(all))
	ncat := max(10, n/60)
	benchScaleSay("n%d: generating %d packages (%d CPVs, %d categories, 1 GiB package: %v) in %s", n, len(pkgs), len(pkgs)/2, ncat, withLarge, src)
	gen := benchTimed(func() {
		benchWriteParallel(b, src, len(all), func(i int) (int64, error) {
			s, err := benchWritePackage(src, all[i])
			sizes[i] = s
			return s, err
		}, func(d int) { benchScaleSay("  generated %d/%d", d, len(all)) })
	})
	small := sizes[len(all)-len(pkgs):]
	var smallBytes int64
	for _, s := range small {
		smallBytes += s
	}
	var largeSize int64
	if withLarge {
		largeSize = sizes[0]
	}

	benchScaleSh(b, benchScaleStepLimit, "sync") // the generated tree's writeback, so that no step below pays for it
	imp, how := benchScaleImport(b, state, src, len(all), "--link")
	if hm := benchBrowseHowRE.FindStringSubmatch(how); hm == nil || hm[1] != strconv.Itoa(len(all)) {
		b.Fatalf("import --link %s: want every package hard-linked (linked %d, cloned 0, copied 0)", how, len(all))
	}

	// --allow-other: nginx's workers run as www-data.
	m := benchMount(b, state, "--allow-other")
	defer m.Close(b)
	if err := os.Mkdir(native, 0o755); err != nil {
		b.Fatal(err)
	}
	benchScaleSay("n%d: cp -a MNT/. NATIVE/ && sync", n)
	stop := benchScaleTicker("cp -a MNT/. NATIVE/", nil)
	cp := benchScaleSh(b, benchScaleStepLimit, "cp -a "+shQuote(m.Dir)+"/. "+shQuote(native)+"/ && sync")
	stop()
	nf, nd := benchCountEntries(b, native)
	mf, md := benchCountEntries(b, m.Dir)
	if nf != mf || nd != md {
		b.Fatalf("native copy has %d files, %d dirs; the mount %d files, %d dirs", nf, nd, mf, md)
	}
	ents := nf + nd
	// What rsync copies: the regular files (symlinks are a few bytes), less cat-large.
	var treeBytes int64
	err := filepath.WalkDir(native, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == benchBrowseLargeCat {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			treeBytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	largeNote := ""
	if withLarge {
		largeNote = fmt.Sprintf(" + 1 package of %d B", largeSize)
	}
	benchPrint(b, "bench browse-setup-%d: %d instances of %d–%d B (mean %.0f B, %.1f MB)%s in %d categories; %d files (incl. symlinks), %d dirs; generate %s, import --link %s %s, cp -a MNT/. NATIVE/ && sync %s",
		n, len(pkgs), slices.Min(small), slices.Max(small), float64(smallBytes)/float64(len(pkgs)), float64(smallBytes)/1e6, largeNote,
		ncat, nf, nd, benchDur(gen), benchDur(imp.Elapsed), how, benchDur(cp))

	var summary []string
	row := func(name string, f func(b *testing.B) float64) {
		benchScaleSay("n%d: %s", n, name)
		b.Run(name, func(b *testing.B) { summary = append(summary, fmt.Sprintf("%s %.2f", name, f(b))) })
	}
	title := func(name string) string { return fmt.Sprintf("browse-%s-%d", name, n) }
	sh := func(b *testing.B, dir, script string) func() time.Duration {
		return func() time.Duration { return benchShell(b, dir, script) }
	}

	row("ls-lR", func(b *testing.B) float64 {
		dn, dm, reps := benchBrowseBest(3, true,
			sh(b, "", "ls -lR "+shQuote(native)+" > /dev/null"), sh(b, "", "ls -lR "+shQuote(m.Dir)+" > /dev/null"))
		return benchCompareTime(b, title("ls-lR"), dn, ents, dm, ents, "entry", fmt.Sprintf(" (warm, best of %d)", reps))
	})
	row("ls-lR-cold", func(b *testing.B) float64 {
		cold := func(f func() time.Duration) func() time.Duration {
			return func() time.Duration { benchDropCaches(b); return f() }
		}
		dn, dm, reps := benchBrowseBest(3, false,
			cold(sh(b, "", "ls -lR "+shQuote(native)+" > /dev/null")), cold(sh(b, "", "ls -lR "+shQuote(m.Dir)+" > /dev/null")))
		return benchCompareTime(b, title("ls-lR-cold"), dn, ents, dm, ents, "entry",
			fmt.Sprintf(" (caches dropped before each run, best of %d)", reps))
	})
	row("find-ls", func(b *testing.B) float64 {
		dn, dm, reps := benchBrowseBest(3, true,
			sh(b, "", "find "+shQuote(native)+" -ls > /dev/null"), sh(b, "", "find "+shQuote(m.Dir)+" -ls > /dev/null"))
		return benchCompareTime(b, title("find-ls"), dn, ents, dm, ents, "entry", fmt.Sprintf(" (warm, best of %d)", reps))
	})
	row("stat-walk", func(b *testing.B) float64 {
		var nn, nm int
		dn, dm, reps := benchBrowseBest(3, true,
			func() time.Duration { return benchTimed(func() { nn = benchWalkLstat(b, native) }) },
			func() time.Duration { return benchTimed(func() { nm = benchWalkLstat(b, m.Dir) }) })
		return benchCompareTime(b, title("stat-walk"), dn, nn, dm, nm, "entry", fmt.Sprintf(" (WalkDir+Lstat, warm, best of %d)", reps))
	})
	row("tar-c", func(b *testing.B) float64 {
		// Piped: GNU tar does not read file data when the archive is /dev/null.
		var nn, nm int64
		tarC := func(dir string, out *int64) func() time.Duration {
			return func() time.Duration {
				var o []byte
				d := benchTimed(func() {
					o = benchExec(b, "", benchBrowseCmdLimit, nil, "bash", "-c",
						"set -o pipefail; tar -cf - -C "+shQuote(dir)+" --exclude=./"+benchBrowseLargeCat+" . | wc -c")
				})
				var err error
				if *out, err = strconv.ParseInt(strings.TrimSpace(string(o)), 10, 64); err != nil {
					b.Fatalf("tar | wc -c printed %q", o)
				}
				return d
			}
		}
		dn, dm, reps := benchBrowseBest(3, true, tarC(native, &nn), tarC(m.Dir, &nm))
		// The headers describe the same entries: a big difference means different trees.
		if d := nn - nm; d < -16<<10 || d > 16<<10 {
			b.Fatalf("tar -c: native archive %d bytes, mount %d", nn, nm)
		}
		return benchCompareRate(b, title("tar-c"), nn, dn, dm,
			fmt.Sprintf(" (tar -cf - . | wc -c, per archive byte: native %d, pkgdirfs %d; warm, best of %d)", nn, nm, reps))
	})
	row("rsync-a", func(b *testing.B) float64 {
		// Each run copies into a new directory, all removed after the row:
		// on this ext4 without a journal, creating files within minutes of
		// deleting as many costs several times more (recently_deleted() in
		// the inode allocator; rsync into a just-removed DST measured 3.9 s
		// against 0.6 s into a new name), which would swamp both sides.
		dsts := filepath.Join(tmp, "rsync")
		if err := os.Mkdir(dsts, 0o755); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dsts)
		counts := map[string][2]int{}
		runs := 0
		rsync := func(dir string) func() time.Duration {
			return func() time.Duration {
				runs++
				dst := filepath.Join(dsts, strconv.Itoa(runs))
				syscall.Sync() // no writeback of the previous run pending, outside the timing
				d := benchTimed(func() {
					benchExec(b, "", benchBrowseCmdLimit, nil, "rsync", "-a", "--exclude=/"+benchBrowseLargeCat, dir+"/", dst+"/")
				})
				if _, ok := counts[dir]; !ok {
					f, dd := benchCountEntries(b, dst)
					counts[dir] = [2]int{f, dd}
				}
				return d
			}
		}
		dn, dm, reps := benchBrowseBest(2, true, rsync(native), rsync(m.Dir))
		if counts[native] != counts[m.Dir] {
			b.Fatalf("rsync -a: the copy of the native tree has %v files, dirs; the copy of the mount %v", counts[native], counts[m.Dir])
		}
		return benchCompareRate(b, title("rsync-a"), treeBytes, dn, dm,
			fmt.Sprintf(" (rsync -a into a new directory on the local disk, per byte of regular files: %.1f MB; warm, best of %d)", float64(treeBytes)/1e6, reps))
	})
	row("open-read-close", func(b *testing.B) float64 {
		rng := rand.New(rand.NewPCG(13, 13))
		picks := make([]string, benchBrowsePicks)
		for i := range picks {
			picks[i] = pkgs[rng.IntN(len(pkgs))].Rel()
		}
		buf := make([]byte, 256<<10)
		var nn, nm int64
		dn, dm, reps := benchBrowseBest(3, true,
			func() time.Duration { d, k := benchOpenReadClose(b, native, picks, buf); nn = k; return d },
			func() time.Duration { d, k := benchOpenReadClose(b, m.Dir, picks, buf); nm = k; return d })
		if nn != nm {
			b.Fatalf("open-read-close: native read %d bytes, mount %d", nn, nm)
		}
		return benchCompareTime(b, title("open-read-close"), dn, len(picks), dm, len(picks), "file",
			fmt.Sprintf(" (open+fstat+read+close of %d random packages, %s vs %s; warm, best of %d)", len(picks), benchRate(nn, dn), benchRate(nm, dm), reps))
	})
	row("sha1sum", func(b *testing.B) float64 {
		script := "find . -path ./" + benchBrowseLargeCat + " -prune -o -type f -name '*.xpak' -print0 | xargs -0 sha1sum"
		outs := map[string][]byte{}
		sum := func(dir string) func() time.Duration {
			return func() time.Duration {
				var o []byte
				d := benchTimed(func() { o = benchExec(b, dir, benchBrowseCmdLimit, nil, "bash", "-c", "set -o pipefail; "+script) })
				if _, ok := outs[dir]; !ok {
					outs[dir] = o
				}
				return d
			}
		}
		dn, dm, reps := benchBrowseBest(3, true, sum(native), sum(m.Dir))
		// find lists in readdir order, which differs between the two: compare sorted.
		sorted := func(o []byte) []byte {
			lines := strings.SplitAfter(string(o), "\n")
			slices.Sort(lines)
			return []byte(strings.Join(lines, ""))
		}
		on, om := sorted(outs[native]), sorted(outs[m.Dir])
		if !bytes.Equal(on, om) {
			b.Fatalf("sha1sum output differs between native and mount:\nnative:\n%s\nmount:\n%s", clip(on, 2000), clip(om, 2000))
		}
		if got := bytes.Count(on, []byte("\n")); got != len(pkgs) {
			b.Fatalf("sha1sum summed %d files, want %d", got, len(pkgs))
		}
		return benchCompareRate(b, title("sha1sum"), smallBytes, dn, dm,
			fmt.Sprintf(" (find -name '*.xpak' | xargs sha1sum, %d packages, %.1f MB; warm, best of %d)", len(pkgs), float64(smallBytes)/1e6, reps))
	})
	row("nginx-small", func(b *testing.B) float64 {
		ngN, ngM := startNginx(b, native), startNginx(b, m.Dir)
		dir := b.TempDir()
		list, script := filepath.Join(dir, "paths"), filepath.Join(dir, "random.lua")
		var paths strings.Builder
		rng := rand.New(rand.NewPCG(14, 14))
		for _, i := range rng.Perm(len(pkgs))[:min(len(pkgs), benchBrowseURLs)] {
			paths.WriteString("/" + pkgs[i].Rel() + "\n")
		}
		if err := os.WriteFile(list, []byte(paths.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(script, []byte(benchBrowseLua), 0o644); err != nil {
			b.Fatal(err)
		}
		args := []string{"-t2", "-c16", "-d10s", "-s", script}
		rn, rm := benchBrowseWrkBest(b, ngN.URL+"/", ngM.URL+"/", args, []string{"--", list}, func(r benchBrowseWrk) float64 { return r.RPS })
		ratio := rm / rn
		benchPrint(b, "bench %s: native %.0f req/s, pkgdirfs %.0f req/s, ratio %.2f (wrk -t2 -c16 -d10s, GETs of random paths out of %d packages, nginx.conf.tmpl; best of 2 after one run each)",
			title("nginx-small"), rn, rm, ratio, min(len(pkgs), benchBrowseURLs))
		b.ReportMetric(ratio, "ratio")
		return ratio
	})
	if !withLarge {
		benchPrint(b, "bench browse-summary-%d: %s", n, strings.Join(summary, ", "))
		benchBrowseEnd(b, m)
		return
	}
	largeRel := large.Rel()
	row("nginx-large", func(b *testing.B) float64 {
		ngN, ngM := startNginx(b, native), startNginx(b, m.Dir)
		rn, rm := benchBrowseWrkBest(b, ngN.URL+"/"+largeRel, ngM.URL+"/"+largeRel, []string{"-t1", "-c1", "-d10s", "--timeout", "60s"}, nil,
			func(r benchBrowseWrk) float64 { return r.Transfer })
		per := func(rate float64) time.Duration { return time.Duration(float64(largeSize) / rate * 1e9) }
		return benchCompareRate(b, title("nginx-large"), largeSize, per(rn), per(rm),
			fmt.Sprintf(" (wrk -t1 -c1 -d10s of the %d-byte package, Transfer/sec; best of 2 after one run each)", largeSize))
	})
	row("large-read", func(b *testing.B) float64 {
		dn, dm, reps := benchBrowseBest(3, true,
			sh(b, "", "cat "+shQuote(filepath.Join(native, largeRel))+" > /dev/null"),
			sh(b, "", "cat "+shQuote(filepath.Join(m.Dir, largeRel))+" > /dev/null"))
		return benchCompareRate(b, title("large-read"), largeSize, dn, dm, fmt.Sprintf(" (cat of the %d-byte package; warm, best of %d)", largeSize, reps))
	})
	benchPrint(b, "bench browse-summary-%d: %s", n, strings.Join(summary, ", "))
	benchBrowseEnd(b, m)
}

// benchBrowseEnd unmounts and checks the daemon log.
func benchBrowseEnd(b *testing.B, m *benchMounted) {
	benchScaleSay("unmounting")
	m.Close(b)
	benchScaleCheckLog(b, m.log)
}

// benchBrowseBest runs one pass of each side (untimed when warmup, else
// counted: cold rows need no warming), then native and mount alternately
// for the best of reps, or of 2 when that pass took over benchBrowseSlow.
func benchBrowseBest(reps int, warmup bool, native, mount func() time.Duration) (time.Duration, time.Duration, int) {
	dn, dm := native(), mount()
	if max(dn, dm) > benchBrowseSlow {
		reps = min(reps, 2)
	}
	if warmup {
		dn, dm = benchBestPair(reps, native, mount)
		return dn, dm, reps
	}
	n2, m2 := benchBestPair(reps-1, native, mount)
	return min(dn, n2), min(dm, m2), reps
}

// benchBrowseLua GETs a random path of the list file given after `--` on
// each request. Threads are seeded by number, so both sides see the same
// sequence of paths.
const benchBrowseLua = `local paths = {}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(id)
end
function request()
  return wrk.format(nil, paths[math.random(#paths)])
end
`

// benchBrowseWrk is what one wrk run reported.
type benchBrowseWrk struct {
	RPS, Transfer float64 // requests/s, bytes/s
}

var (
	benchBrowseRPSRE  = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	benchBrowseXferRE = regexp.MustCompile(`(?m)^Transfer/sec:\s+([0-9.]+)([KMGT]?)B`)
)

// benchBrowseRunWrk runs `wrk ARGS URL TAIL` and fails on any non-2xx/3xx
// response or socket error: a failed request would make either side look fast.
func benchBrowseRunWrk(b *testing.B, url string, args, tail []string) benchBrowseWrk {
	b.Helper()
	out := string(benchExec(b, "", 2*time.Minute, nil, "wrk", append(append(slices.Clone(args), url), tail...)...))
	if strings.Contains(out, "Non-2xx or 3xx responses") || strings.Contains(out, "Socket errors") {
		b.Fatalf("wrk %s %s: failed requests:\n%s", strings.Join(args, " "), url, out)
	}
	rm, xm := benchBrowseRPSRE.FindStringSubmatch(out), benchBrowseXferRE.FindStringSubmatch(out)
	if rm == nil || xm == nil {
		b.Fatalf("wrk %s %s: no Requests/sec and Transfer/sec in:\n%s", strings.Join(args, " "), url, out)
	}
	var r benchBrowseWrk
	r.RPS, _ = strconv.ParseFloat(rm[1], 64)
	r.Transfer, _ = strconv.ParseFloat(xm[1], 64)
	if xm[2] != "" { // wrk's units are binary
		r.Transfer *= float64(int64(1) << (10 + 10*strings.Index("KMGT", xm[2])))
	}
	return r
}

// benchBrowseWrkBest runs wrk once per side untimed, then twice per side
// (each run lasts as long as -d says), native first, and returns the best
// of metric for each side.
func benchBrowseWrkBest(b *testing.B, urlN, urlM string, args, tail []string, metric func(benchBrowseWrk) float64) (float64, float64) {
	b.Helper()
	benchBrowseRunWrk(b, urlN, args, tail)
	benchBrowseRunWrk(b, urlM, args, tail)
	var bn, bm float64
	for i := 0; i < 2; i++ {
		bn = max(bn, metric(benchBrowseRunWrk(b, urlN, args, tail)))
		bm = max(bm, metric(benchBrowseRunWrk(b, urlM, args, tail)))
	}
	return bn, bm
}
