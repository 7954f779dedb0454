package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkChannels: BENCH_CHANNELS instances (catalog only, as the scale
// benchmark writes them) served with 10 live channels — 9 of one category
// each and one of every build: how long a channel takes to load, the
// daemon's memory per channel, and per commit the commit itself and the
// first byte of the channel's new Packages (open + 4 KiB, its PACKAGES and
// TIMESTAMP checked) beside the main tree's; a channel the change does not
// reach keeps its TIMESTAMP. Then snapshot create and a snapshot channel.
// `make bench-channels` (BENCH_CHANNELS=20000 for a quick run).
func BenchmarkChannels(b *testing.B) {
	benchNeed(b)
	n := benchScaleEnv(b, "BENCH_CHANNELS", 100000)
	benchScaleStart = time.Now()
	tmp := b.TempDir()
	state := filepath.Join(tmp, "state")
	benchScaleSay("writing %d instances into a catalog (no blobs)", n)
	rows := benchScaleFillCatalog(b, state, n)
	cli := func(args ...string) string { return benchChannelsCLI(b, state, args...) }

	m := benchScaleMountTimed(b, state, rows)
	pk := filepath.Join(m.Dir, "Packages")
	benchScaleWithin(b, m, "first read of Packages", func() { benchScaleReadAll(b, pk) })
	rss0, anon0 := benchScaleRSS(b, m)

	// Nine channels of one category each, then one of every build.
	var cats []string
	for k := range 9 {
		cats = append(cats, benchScaleCats[k*17%len(benchScaleCats)])
	}
	chPath := func(name string) string { return filepath.Join(m.Dir, ".pkgdirfs", "channels", name, "Packages") }
	load := func(name string, args ...string) (time.Duration, int64) {
		start := time.Now()
		cli(append([]string{"channel", "set", name, "--live"}, args...)...)
		var count int64
		d := benchScaleWithin(b, m, "loading channel "+name, func() {
			for {
				if _, err := exec.Command("test", "-e", chPath(name)).Output(); err == nil {
					_, count = benchScaleHead(b, chPath(name))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		_ = d
		return time.Since(start), count
	}
	var loads []time.Duration
	counts := map[string]int64{}
	for k, cat := range cats {
		name := fmt.Sprintf("c%d", k)
		d, c := load(name, "--query", "'"+cat+"/*'")
		loads = append(loads, d)
		counts[name] = c
		benchScaleSay("  channel %s (%s/*): %d builds, served %s after channel set", name, cat, c, benchDur(d))
	}
	rss9, anon9 := benchScaleRSS(b, m)
	dAll, cAll := load("all")
	counts["all"] = cAll
	if cAll != int64(rows) {
		b.Fatalf("channel all lists %d builds, want %d", cAll, rows)
	}
	rss10, anon10 := benchScaleRSS(b, m)
	med, mx := benchScaleMedianMax(loads)
	benchPrint(b, "bench channels-load-%d: a live channel of one category (about %d builds) is served %s after `channel set` (median of %d, max %s); one of every build (%d) after %s (includes the 1 s poll that notices the set)",
		rows, counts["c0"], benchDur(med), len(loads), benchDur(mx), cAll, benchDur(dAll))
	benchPrint(b, "bench channels-memory-%d: daemon RSS %s (anon %s) without channels; +%s (anon +%s) per one-category channel (9); +%s (anon +%s) for the channel of every build",
		rows, benchScaleMiB(rss0), benchScaleMiB(anon0), benchScaleMiB((rss9-rss0)/9), benchScaleMiB((anon9-anon0)/9),
		benchScaleMiB(rss10-rss9), benchScaleMiB(anon10-anon9))

	// Commits into the channels' categories.
	chgDir := filepath.Join(tmp, "changes")
	var chg []benchScalePkg
	for i := range 27 {
		chg = append(chg, benchScalePkg{Cat: cats[i%9], PN: benchScaleName(8_000_000 + i), Ver: "1.0",
			BuildTime: 1800000000 + int64(i), Seed: uint64(8_000_000+i) << 8})
	}
	benchScaleWriteAll(b, chgDir, chg, benchScalePkg.FlatRel, nil)
	var commits, firstMain, firstCh, firstAll []time.Duration
	for i, p := range chg {
		name := fmt.Sprintf("c%d", i%9)
		other := fmt.Sprintf("c%d", (i+1)%9)
		tsCh, cCh := benchScaleHead(b, chPath(name))
		tsOther, _ := benchScaleHead(b, chPath(other))
		tsAll, cAll := benchScaleHead(b, chPath("all"))
		commit := benchScaleWithin(b, m, "cp to "+p.FlatRel(), func() {
			benchScaleCmd(b, benchScaleStepLimit, "cp", filepath.Join(chgDir, p.FlatRel()), filepath.Join(m.Dir, p.FlatRel()))
		})
		var ts, c int64
		fCh := benchScaleWithin(b, m, "first byte of "+name+"/Packages", func() { ts, c = benchScaleHead(b, chPath(name)) })
		if c != cCh+1 || ts <= tsCh {
			b.Fatalf("after committing %s: channel %s has PACKAGES %d, TIMESTAMP %d; before %d, %d", p.FlatRel(), name, c, ts, cCh, tsCh)
		}
		fAll := benchScaleWithin(b, m, "first byte of all/Packages", func() { ts, c = benchScaleHead(b, chPath("all")) })
		if c != cAll+1 || ts <= tsAll {
			b.Fatalf("after committing %s: channel all has PACKAGES %d, TIMESTAMP %d; before %d, %d", p.FlatRel(), c, ts, cAll, tsAll)
		}
		fMain := benchScaleWithin(b, m, "first byte of Packages", func() { benchScaleHead(b, pk) })
		if ts2, _ := benchScaleHead(b, chPath(other)); ts2 != tsOther {
			b.Fatalf("after committing %s: channel %s (another category) changed its TIMESTAMP %d -> %d", p.FlatRel(), other, tsOther, ts2)
		}
		commits, firstCh, firstAll, firstMain = append(commits, commit), append(firstCh, fCh), append(firstAll, fAll), append(firstMain, fMain)
		benchScaleSay("  change %d/%d: commit %s, first byte of %s/Packages %s, of all/Packages %s, of Packages %s", i+1, len(chg),
			benchDur(commit), name, benchDur(fCh), benchDur(fAll), benchDur(fMain))
	}
	line := func(what string, ds []time.Duration, note string) {
		med, mx := benchScaleMedianMax(ds)
		benchPrint(b, "bench channels-%s-%d: median %s, max %s (%d changes; %s)", what, rows, benchDur(med), benchDur(mx), len(ds), note)
	}
	line("commit", commits, "`cp NEW.tbz2 MNT/CAT/PF.tbz2` with 10 live channels until cp returned")
	line("first-byte", firstCh, "open+read 4 KiB of the changed one-category channel's Packages right after, one more build and a later TIMESTAMP checked")
	line("first-byte-all", firstAll, "the same of the channel of every build, after that")
	line("first-byte-main", firstMain, "the main tree's Packages, after that")

	// Snapshots and a snapshot channel.
	var out string
	d := benchTimed(func() { out = cli("snapshot", "create", "bench") })
	benchPrint(b, "bench channels-snapshot-create-%d: %s in %s", rows, strings.TrimSpace(out), benchDur(d))
	start := time.Now()
	cli("channel", "set", "frozen", "--snapshot", "bench")
	benchScaleWithin(b, m, "loading channel frozen", func() {
		for {
			if _, err := exec.Command("test", "-e", chPath("frozen")).Output(); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	_, cf := benchScaleHead(b, chPath("frozen"))
	benchPrint(b, "bench channels-snapshot-channel-%d: channel set --snapshot of %d builds served after %s", rows, cf, benchDur(time.Since(start)))
	names := strings.Fields(strings.Join(strings.Split(cli("channel", "list"), "\n")[1:], " "))
	if !slices.Contains(names, "frozen") {
		b.Errorf("channel list does not list frozen: %v", names)
	}
	benchScaleSay("unmounting")
	m.Close(b)
	benchScaleCheckLog(b, m.log)

	if nc := benchScaleEnv(b, "BENCH_CHANNELS_CATALOG", 1000000); nc > 0 {
		b.Run(fmt.Sprintf("catalog-%d", nc), func(b *testing.B) { benchChannelsCatalog(b, nc) })
	}
}

// benchChannelsCatalog: snapshot create and a snapshot channel on a
// catalog of nc instances (catalog only).
func benchChannelsCatalog(b *testing.B, nc int) {
	state := filepath.Join(b.TempDir(), "state")
	benchScaleSay("writing %d instances into a catalog (no blobs)", nc)
	rows := benchScaleFillCatalog(b, state, nc)
	cli := func(args ...string) string { return benchChannelsCLI(b, state, args...) }
	var out string
	d := benchTimed(func() { out = cli("snapshot", "create", "all") })
	benchPrint(b, "bench channels-snapshot-create-%d: %s; %s in all", rows, out, benchDur(d))
	q := benchScaleCats[0] + "/*"
	d = benchTimed(func() { out = cli("snapshot", "create", "one-category", "--query", "'"+q+"'") })
	benchPrint(b, "bench channels-snapshot-create-query-%d: --query '%s': %s; %s in all", rows, q, out, benchDur(d))
	m := benchScaleMountTimed(b, state, rows)
	start := time.Now()
	cli("channel", "set", "frozen", "--snapshot", "all")
	p := filepath.Join(m.Dir, ".pkgdirfs", "channels", "frozen", "Packages")
	benchScaleWithin(b, m, "loading channel frozen", func() {
		for {
			if _, err := exec.Command("test", "-e", p).Output(); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	loaded := time.Since(start)
	var ts, count int64
	first := benchScaleWithin(b, m, "first byte of frozen/Packages", func() { ts, count = benchScaleHead(b, p) })
	if count != int64(rows) || ts == 0 {
		b.Fatalf("channel frozen: PACKAGES %d, TIMESTAMP %d; want %d packages", count, ts, rows)
	}
	rss, _ := benchScaleRSS(b, m)
	benchPrint(b, "bench channels-snapshot-channel-%d: channel set --snapshot of %d builds served after %s, its Packages' first 4 KiB then %s; daemon RSS %s with it",
		rows, count, benchDur(loaded), benchDur(first), benchScaleMiB(rss))
	m.Close(b)
	benchScaleCheckLog(b, m.log)
}

// benchChannelsCLI runs `pkgdirfs COMMAND --state STATE ARGS...` and
// returns its output, trimmed; a failure fails the benchmark.
func benchChannelsCLI(b *testing.B, state string, args ...string) string {
	b.Helper()
	out, err := exec.Command(binPath, append(args[:1:1], append([]string{"--state", state}, args[1:]...)...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("pkgdirfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
