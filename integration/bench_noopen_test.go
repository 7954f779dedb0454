package integration

// BenchmarkFollowerNoOpen (issue 23, item 4): is a read-only follower in
// no-open mode (PKGDIRFS_NO_OPEN=1: OPEN answered with ENOSYS, so the
// kernel opens files without asking and keeps their pages across opens, but
// without passthrough) better at the binhost workload than a normal one?
//
// One state of BENCH_NOOPEN small instances (default 4,000; 20–200 KiB,
// skewed small) and one 1 GiB package, imported with --link; two followers
// of it mounted side by side (`mount --read-only --allow-other`, one with
// PKGDIRFS_NO_OPEN=1) and a native copy (`cp -a MNT/. NATIVE/`). Each row
// runs on the three, in turn; warm rows run once untimed first. nginx is
// integration/nginx.conf.tmpl (open_file_cache on package paths, as
// contrib/nginx ships it). One table at the end.

import (
	"bytes"
	"fmt"
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
	benchNoOpenDefault = 4000
	benchNoOpenLarge   = "cat-large"
	benchNoOpenWrk     = "5s" // one wrk run
)

// benchNoOpenSide is one of native, normal follower, no-open follower.
type benchNoOpenSide struct {
	name string
	dir  string
	m    *benchMounted // nil: native
}

// benchNoOpenRow is one row of the table: a figure per side.
type benchNoOpenRow struct {
	name   string
	unit   string
	higher bool // a higher figure is better
	val    [3]float64
	note   string
}

func BenchmarkFollowerNoOpen(b *testing.B) {
	benchNeed(b)
	needNginx(b)
	for _, tool := range []string{"wrk", "curl", "rsync", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found: make deps bench-deps", tool)
		}
	}
	n := benchNoOpenDefault
	if v := os.Getenv("BENCH_NOOPEN"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			b.Fatalf("BENCH_NOOPEN=%q: want a count of small instances, at least 100", v)
		}
	}
	benchScaleStart = time.Now()
	tmp := b.TempDir()
	// nginx's workers (www-data) serve the native copy from here: b.TempDir's parent is 0700.
	if err := os.Chmod(filepath.Dir(tmp), 0o755); err != nil {
		b.Fatal(err)
	}
	src, state, native := filepath.Join(tmp, "pkgdir"), filepath.Join(tmp, "state"), filepath.Join(tmp, "native")

	pkgs := benchNoOpenSet(n)
	large := benchPkg{Cat: benchNoOpenLarge, PN: "largepkg", Ver: "1.0", BuildID: 1, Seed: 23, Files: []int64{1 << 30}}
	all := append([]benchPkg{large}, pkgs...)
	sizes := make([]int64, len(all))
	benchScaleSay("generating %d small packages and one of 1 GiB in %s", n, src)
	gen := benchTimed(func() {
		benchWriteParallel(b, src, len(all), func(i int) (int64, error) {
			s, err := benchWritePackage(src, all[i])
			sizes[i] = s
			return s, err
		}, nil)
	})
	largeSize, small := sizes[0], sizes[1:]
	var smallBytes int64
	for _, s := range small {
		smallBytes += s
	}
	benchScaleSh(b, benchScaleStepLimit, "sync")
	imp, how := benchScaleImport(b, state, src, len(all), "--link")

	// --allow-other: nginx's workers run as www-data.
	normal := benchMountEnv(b, nil, "bench-normal.log", state, "--read-only", "--allow-other")
	noOpen := benchMountEnv(b, noOpenEnv, "bench-noopen.log", state, "--read-only", "--allow-other")
	if !strings.Contains(readLog(noOpen.log), "no-open mode") {
		b.Fatalf("the no-open follower's log does not say it runs in no-open mode:\n%s", readLog(noOpen.log))
	}
	if err := os.Mkdir(native, 0o755); err != nil {
		b.Fatal(err)
	}
	cp := benchScaleSh(b, benchScaleStepLimit, "cp -a "+shQuote(normal.Dir)+"/. "+shQuote(native)+"/ && sync")
	nf, nd := benchCountEntries(b, native)
	benchPrint(b, "bench noopen-setup: %d instances of %d–%d B (mean %.0f B, %.1f MB) + 1 package of %d B; %d files (incl. symlinks), %d dirs; generate %s, import --link %s (%s), cp -a %s",
		n, slices.Min(small), slices.Max(small), float64(smallBytes)/float64(n), float64(smallBytes)/1e6, largeSize,
		nf, nd, benchDur(gen), benchDur(imp.Elapsed), how, benchDur(cp))

	sides := []benchNoOpenSide{{"native", native, nil}, {"normal", normal.Dir, normal}, {"no-open", noOpen.Dir, noOpen}}
	var rows []benchNoOpenRow
	add := func(r benchNoOpenRow) {
		rows = append(rows, r)
		benchPrint(b, "bench noopen %s: native %s, normal %s, no-open %s %s%s", r.name,
			benchNoOpenFmt(r.val[0]), benchNoOpenFmt(r.val[1]), benchNoOpenFmt(r.val[2]), r.unit, r.note)
	}
	// each runs f for every side, in turn, reps times, and keeps the best
	// by better (after one untimed pass when warm).
	each := func(reps int, warm bool, higher bool, f func(s benchNoOpenSide) float64) [3]float64 {
		var best [3]float64
		if warm {
			for _, s := range sides {
				f(s)
			}
		}
		for r := 0; r < reps; r++ {
			for i, s := range sides {
				v := f(s)
				if r == 0 || (higher && v > best[i]) || (!higher && v < best[i]) {
					best[i] = v
				}
			}
		}
		return best
	}

	// nginx: random GETs of the small packages.
	servers := make([]*nginxServer, len(sides))
	for i, s := range sides {
		servers[i] = startNginx(b, s.dir)
	}
	benchScaleSay("nginx-small")
	list, script := filepath.Join(tmp, "paths"), filepath.Join(tmp, "random.lua")
	var paths strings.Builder
	for _, i := range rand.New(rand.NewPCG(23, 23)).Perm(n) {
		paths.WriteString("/" + pkgs[i].Rel() + "\n")
	}
	if err := os.WriteFile(list, []byte(paths.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(benchBrowseLua), 0o644); err != nil {
		b.Fatal(err)
	}
	wrkArgs := []string{"-t2", "-c16", "-d" + benchNoOpenWrk, "--latency", "-s", script}
	var rps, p50, p99 [3]float64
	for _, s := range servers { // warm: every path read once through nginx
		benchNoOpenWrk1(b, s.URL+"/", wrkArgs, list)
	}
	for r := 0; r < 2; r++ {
		for i, s := range servers {
			w := benchNoOpenWrk1(b, s.URL+"/", wrkArgs, list)
			if w.rps > rps[i] {
				rps[i], p50[i], p99[i] = w.rps, w.p50, w.p99
			}
		}
	}
	wrkNote := fmt.Sprintf(" (wrk -t2 -c16 -d%s, random GETs of %d packages; warm, best of 2)", benchNoOpenWrk, n)
	add(benchNoOpenRow{name: "nginx-small", unit: "req/s", higher: true, val: rps, note: wrkNote})
	add(benchNoOpenRow{name: "nginx-small p50", unit: "µs", val: p50, note: " (of the best run)"})
	add(benchNoOpenRow{name: "nginx-small p99", unit: "µs", val: p99, note: " (of the best run)"})
	// The same without open_file_cache: nginx opens every file it serves,
	// as a server configured without it does.
	for _, s := range servers {
		benchNoOpenNoFileCache(b, s)
	}
	rps, p50, p99 = [3]float64{}, [3]float64{}, [3]float64{}
	for r := 0; r < 2; r++ {
		for i, s := range servers {
			w := benchNoOpenWrk1(b, s.URL+"/", wrkArgs, list)
			if w.rps > rps[i] {
				rps[i], p50[i], p99[i] = w.rps, w.p50, w.p99
			}
		}
	}
	add(benchNoOpenRow{name: "nginx-small no-ofc", unit: "req/s", higher: true, val: rps, note: " (open_file_cache off;" + wrkNote[2:]})
	add(benchNoOpenRow{name: "nginx-small no-ofc p50", unit: "µs", val: p50, note: " (of the best run)"})
	add(benchNoOpenRow{name: "nginx-small no-ofc p99", unit: "µs", val: p99, note: " (of the best run)"})

	// nginx: the 1 GiB package, with the daemon's CPU time.
	benchScaleSay("nginx-large")
	largeRel := large.Rel()
	var cpu [3]float64
	get := func(i int) float64 {
		c0 := benchNoOpenCPU(sides[i].m)
		start := time.Now()
		out := benchExec(b, "", 5*time.Minute, nil, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", servers[i].URL+"/"+largeRel)
		d := time.Since(start)
		if want := fmt.Sprintf("200 %d", largeSize); string(out) != want {
			b.Fatalf("GET %s from %s: %q, want %q", largeRel, sides[i].name, out, want)
		}
		cpu[i] = benchNoOpenCPU(sides[i].m) - c0
		return float64(largeSize) / d.Seconds() / 1e6
	}
	var warmCPU, coldCPU [3]float64
	warmRate := each(3, true, true, func(s benchNoOpenSide) float64 {
		i := slices.Index(sides, s)
		v := get(i)
		warmCPU[i] = cpu[i] // the last run's; they hardly differ
		return v
	})
	add(benchNoOpenRow{name: "nginx-1GiB warm", unit: "MB/s", higher: true, val: warmRate, note: " (curl GET of the 1 GiB package; best of 3)"})
	add(benchNoOpenRow{name: "nginx-1GiB warm, daemon CPU", unit: "s", val: warmCPU, note: " (utime+stime of the daemon during one GET)"})
	coldRate := each(2, false, true, func(s benchNoOpenSide) float64 {
		i := slices.Index(sides, s)
		benchDropCaches(b)
		v := get(i)
		coldCPU[i] = cpu[i]
		return v
	})
	add(benchNoOpenRow{name: "nginx-1GiB cold", unit: "MB/s", higher: true, val: coldRate, note: " (curl GET after drop_caches; best of 2)"})
	add(benchNoOpenRow{name: "nginx-1GiB cold, daemon CPU", unit: "s", val: coldCPU, note: ""})
	for _, s := range servers {
		s.stop(b)
	}

	// rsync -a and tar -c of the tree but the 1 GiB package, warm.
	benchScaleSay("rsync-a, tar-c")
	dsts := filepath.Join(tmp, "rsync")
	if err := os.Mkdir(dsts, 0o755); err != nil {
		b.Fatal(err)
	}
	runs := 0
	var copied [2]int // files, dirs of the first copy: every copy must match it
	rsync := each(2, true, false, func(s benchNoOpenSide) float64 {
		runs++
		dst := filepath.Join(dsts, strconv.Itoa(runs))
		benchScaleSh(b, benchScaleStepLimit, "sync")
		d := benchTimed(func() {
			benchExec(b, "", benchBrowseCmdLimit, nil, "rsync", "-a", "--exclude=/"+benchNoOpenLarge, s.dir+"/", dst+"/")
		})
		f, dd := benchCountEntries(b, dst)
		if copied == [2]int{} {
			copied = [2]int{f, dd}
		} else if copied != [2]int{f, dd} {
			b.Fatalf("rsync -a of %s: %d files, %d dirs; the first copy had %v", s.name, f, dd, copied)
		}
		os.RemoveAll(dst)
		return d.Seconds()
	})
	add(benchNoOpenRow{name: "rsync -a", unit: "s", val: rsync, note: " (into a new local directory, all but the 1 GiB package; warm, best of 2)"})
	tar := each(3, true, false, func(s benchNoOpenSide) float64 {
		return benchShell(b, s.dir, "tar -cf - --exclude=./"+benchNoOpenLarge+" . | cat > /dev/null").Seconds()
	})
	add(benchNoOpenRow{name: "tar -c", unit: "s", val: tar, note: " (tar -cf - . | cat > /dev/null, all but the 1 GiB package; warm, best of 3)"})

	// open+fstat+read+close of every small package, in a random order.
	benchScaleSay("open-read-close")
	picks := make([]string, n)
	for i, j := range rand.New(rand.NewPCG(24, 24)).Perm(n) {
		picks[i] = pkgs[j].Rel()
	}
	buf := make([]byte, 256<<10)
	orc := func(s benchNoOpenSide) float64 {
		d, k := benchOpenReadClose(b, s.dir, picks, buf)
		if k != smallBytes {
			b.Fatalf("open-read-close of %s read %d bytes, want %d", s.name, k, smallBytes)
		}
		return float64(d.Microseconds()) / float64(n)
	}
	add(benchNoOpenRow{name: "open-read-close warm", unit: "µs/file", val: each(3, true, false, orc), note: fmt.Sprintf(" (%d packages; best of 3)", n)})
	cold := each(2, false, false, func(s benchNoOpenSide) float64 {
		benchDropCaches(b)
		return orc(s)
	})
	add(benchNoOpenRow{name: "open-read-close cold", unit: "µs/file", val: cold, note: " (after drop_caches; best of 2)"})

	benchNoOpenTable(b, n, rows)
	for _, m := range []*benchMounted{normal, noOpen} {
		m.Close(b)
		benchScaleCheckLog(b, m.log)
	}
}

// benchNoOpenSet is n instances of 20–200 KiB of payload in 1–3 files,
// skewed small (mean ~80 KiB), in n/4 packages of 2 versions × 2 builds
// over max(10, n/60) categories.
func benchNoOpenSet(n int) []benchPkg {
	rng := rand.New(rand.NewPCG(23, 23))
	ncat := max(10, n/60)
	pkgs := make([]benchPkg, 0, n)
	for i := 0; len(pkgs) < n; i++ {
		cat, pn := fmt.Sprintf("cat-%02d", i%ncat), fmt.Sprintf("pkg%06d", i)
		for v := 0; v < 2 && len(pkgs) < n; v++ {
			for bid := 1; bid <= 2 && len(pkgs) < n; bid++ {
				u := rng.Float64()
				total := int64(20<<10) + int64(180<<10*u*u)
				files := make([]int64, 1+rng.IntN(3))
				for f := range files {
					files[f] = total / int64(len(files))
				}
				files[0] += total % int64(len(files))
				pkgs = append(pkgs, benchPkg{Cat: cat, PN: pn, Ver: fmt.Sprintf("1.%d", v), BuildID: bid, Seed: 23, Files: files})
			}
		}
	}
	return pkgs
}

// benchNoOpenNoFileCache turns open_file_cache off in s's configuration
// and has nginx reload it (SIGHUP), waiting for the new workers.
func benchNoOpenNoFileCache(b *testing.B, s *nginxServer) {
	b.Helper()
	conf, err := os.ReadFile(s.Conf)
	if err != nil {
		b.Fatal(err)
	}
	off := regexp.MustCompile(`(?m)^\s*open_file_cache(_[a-z_]+)?\s[^;]*;\s*$`).ReplaceAll(conf, nil)
	if bytes.Contains(off, []byte("open_file_cache ")) {
		b.Fatalf("open_file_cache left in %s", s.Conf)
	}
	if err := os.WriteFile(s.Conf, off, 0o644); err != nil {
		b.Fatal(err)
	}
	benchExec(b, "", time.Minute, nil, "nginx", "-t", "-q", "-c", s.Conf, "-p", s.Prefix+"/", "-e", filepath.Join(s.Prefix, "logs", "error.log"))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the old workers finish, the new ones start
}

type benchNoOpenWrkResult struct{ rps, p50, p99 float64 }

var benchNoOpenLatRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)

// benchNoOpenWrk1 runs wrk once (failing on any error response) and returns
// requests/s and the 50th and 99th percentile latencies in µs.
func benchNoOpenWrk1(b *testing.B, url string, args []string, list string) benchNoOpenWrkResult {
	b.Helper()
	out := string(benchExec(b, "", 2*time.Minute, nil, "wrk", append(append(slices.Clone(args), url), "--", list)...))
	if strings.Contains(out, "Non-2xx or 3xx responses") || strings.Contains(out, "Socket errors") {
		b.Fatalf("wrk %s: failed requests:\n%s", url, out)
	}
	m := benchBrowseRPSRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("wrk %s: no Requests/sec in:\n%s", url, out)
	}
	var r benchNoOpenWrkResult
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, lm := range benchNoOpenLatRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(lm[2], 64)
		v *= map[string]float64{"us": 1, "ms": 1e3, "s": 1e6}[lm[3]]
		if lm[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		b.Fatalf("wrk %s: no latency distribution in:\n%s", url, out)
	}
	return r
}

// benchNoOpenCPU is the user+system CPU time, in seconds, of a mount's
// daemon so far (0 for the native side).
func benchNoOpenCPU(m *benchMounted) float64 {
	if m == nil || len(m.pids) == 0 {
		return 0
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pids[0]))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is 3,
	// utime 14, stime 15, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

func benchNoOpenFmt(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// benchNoOpenTable prints the rows with each follower's figure relative to
// native and no-open relative to normal, as speed (above 1: better).
func benchNoOpenTable(b *testing.B, n int, rows []benchNoOpenRow) {
	b.Helper()
	rel := func(r benchNoOpenRow, x, base float64) string {
		if x == 0 || base == 0 || strings.Contains(r.name, "CPU") {
			return "-" // a few ticks of CPU against a second: no ratio
		}
		if r.higher {
			return fmt.Sprintf("%.2f", x/base)
		}
		return fmt.Sprintf("%.2f", base/x)
	}
	benchPrint(b, "bench noopen-table (BENCH_NOOPEN=%d; ratios are speed, above 1 = better than the base):", n)
	benchPrint(b, "| %-28s | %-8s | %9s | %9s | %9s | %14s | %15s | %15s |", "row", "unit", "native", "normal", "no-open", "normal/native", "no-open/native", "no-open/normal")
	benchPrint(b, "|%s|%s|%s|%s|%s|%s|%s|%s|", strings.Repeat("-", 30), strings.Repeat("-", 10), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 16), strings.Repeat("-", 17), strings.Repeat("-", 17))
	for _, r := range rows {
		nat := benchNoOpenFmt(r.val[0])
		if strings.Contains(r.name, "CPU") {
			nat = "-"
		}
		benchPrint(b, "| %-28s | %-8s | %9s | %9s | %9s | %14s | %15s | %15s |", r.name, r.unit, nat,
			benchNoOpenFmt(r.val[1]), benchNoOpenFmt(r.val[2]), rel(r, r.val[1], r.val[0]), rel(r, r.val[2], r.val[0]), rel(r, r.val[2], r.val[1]))
	}
}
