package integration

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestImportWhileOthersStartAndStop: a plain `pkgdirfs import` of a few
// thousand packages runs while, on the same state and over and over until
// it ends, other processes start and stop: mount daemons (each reads
// MNT/Packages and is unmounted), query, stats and verify. Every one of them
// opens the state, and opening recovers the staging directories of dead
// writers: none may take the running import's in-flight staging files
// (each writer stages in STATE/staging/<pid>-<rand>/ under a flock on its
// .owner file, and only unlocked directories are recovered).
//
// Two mount loops run, so that mounts also meet each other: the state
// takes one daemon at a time (cmd/pkgdirfs/mount.go lockState waits 2 s,
// then the mount fails with catalog.ErrStateLocked, "state is in use");
// that refusal is counted, not a failure. The import itself does not take
// the state lock, so a mount is never refused because of it.
//
// Then: the import exited 0 having imported all N; `verify --deep` finds
// no fault and no orphan blob; a mount lists exactly the N source files
// (CPV and SHA1 computed from the source bytes); staging/ is empty once
// every process stopped; no daemon logged an ERROR it should not have.
func TestImportWhileOthersStartAndStop(t *testing.T) {
	needBinary(t)
	// 2,984 small packages (~3.5 KiB: 746 PNs × 2 versions × 2 builds,
	// 1,492 CPVs in 160 categories) and 16 of 4 MiB, one in each category
	// group, so spread over the import's run: a small package's staging
	// file lives for microseconds, a large one's while it is copied and
	// hashed, long enough for an opener beside it to meet it.
	const nSmall, nLarge = 2984, 16
	const n = nSmall + nLarge
	const phaseTimeout = 90 * time.Second
	t0 := time.Now()

	// ---------------------------------------------------------------- source
	small := benchScaleSet(nSmall)
	if len(small) != nSmall {
		t.Fatalf("benchScaleSet(%d) made %d packages", nSmall, len(small))
	}
	src := t.TempDir()
	srcBytes := benchScaleWriteAll(t, src, small, benchScalePkg.MultiRel, nil)
	var large []benchPkg
	for i := 0; i < nLarge; i++ {
		large = append(large, benchPkg{Cat: benchScaleCats[i*10], PN: "bigblob" + strconv.Itoa(i), Ver: "1.0", BuildID: 1,
			Files: []int64{4 << 20}, Seed: uint64(i) + 77})
	}
	srcBytes += benchWriteAll(t, src, large)
	// want counts "CPV SHA1" of every source file, from its bytes as written.
	want := make(map[string]int, n)
	addWant := func(cpv, rel string) {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(b)
		want[cpv+" "+hex.EncodeToString(sum[:])]++
	}
	for _, p := range small {
		addWant(p.CPV(), p.MultiRel())
	}
	for _, p := range large {
		addWant(p.Cat+"/"+p.PF(), p.Rel())
	}
	t.Logf("generated %d packages (%d of 4 MiB; %d CPVs; %d bytes) in %v", n, nLarge, nSmall/2+nLarge, srcBytes, time.Since(t0).Round(time.Millisecond))

	// ---------------------------------------------------------------- import
	state := t.TempDir()
	stagingDir := filepath.Join(state, "staging")
	type importResult struct {
		r    cmdResult
		took time.Duration
		ok   bool // false: run stopped the goroutine (a timeout)
	}
	var imp importResult
	importDone := make(chan struct{})
	importStart := time.Now()
	go func() {
		defer close(importDone) // also when run fails the test (Goexit)
		defer func() { imp.took = time.Since(importStart) }()
		// importDirs without its summary check, which must not stop the
		// test from this goroutine: the summary is checked below.
		r := runCLI(t, "import", "--state", state, src)
		imp.r, imp.ok = r, true
	}()
	importRunning := func() bool {
		select {
		case <-importDone:
			return false
		default:
			return true
		}
	}

	// The others start once the import stages bytes: the first directory
	// in staging/ is the import's own (nothing else runs yet).
	var importStaging string
	for deadline := time.Now().Add(phaseTimeout); importStaging == ""; {
		if ents, err := os.ReadDir(stagingDir); err == nil {
			for _, e := range ents {
				if e.IsDir() {
					importStaging = e.Name()
				}
			}
		}
		if importStaging != "" {
			break
		}
		if !importRunning() {
			t.Fatalf("the import ended (after %v) before its staging directory was seen in %s: nothing ran beside it; make it longer (n=%d)\n%s",
				time.Since(importStart), stagingDir, n, imp.r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no staging directory of the import in %s after %v", stagingDir, phaseTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("import staging in staging/%s after %v; starting the others", importStaging, time.Since(importStart).Round(time.Millisecond))

	// ---------------------------------------------------------------- the others
	var (
		mounts, mountRefused, queries, stats, verifies atomic.Int64
		stagingSamples, inFlightSeen                   atomic.Int64
		maxMountBlocks, maxQueryRows, maxStatsInsts    atomic.Int64
	)
	logDir := t.TempDir()
	var mountSeq atomic.Int64
	var wg sync.WaitGroup
	// bad reports a failure of one kind of process; the loops go on (what
	// else fails, and when, is part of the report), the first few of each
	// kind are reported in full and the rest counted.
	var badMu sync.Mutex
	badCount := map[string]int{}
	badLast := map[string]time.Duration{}
	bad := func(kind, format string, a ...any) {
		badMu.Lock()
		badCount[kind]++
		c := badCount[kind]
		badLast[kind] = time.Since(importStart).Round(time.Millisecond)
		badMu.Unlock()
		if c <= 3 {
			t.Errorf("[%s, %v into the import] %s", kind, time.Since(importStart).Round(time.Millisecond), fmt.Sprintf(format, a...))
		}
	}
	// loop runs fn until the import ended; each loop is bounded by the
	// import's own deadline (cliTimeout of its run).
	loop := func(name string, fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(cliTimeout + phaseTimeout)
			for importRunning() {
				if time.Now().After(deadline) {
					t.Errorf("%s loop: still running after %v", name, cliTimeout+phaseTimeout)
					return
				}
				fn()
			}
		}()
	}
	checkBlocks := func(what string, b []byte) int {
		idx, err := parseIndex(b)
		if err != nil {
			bad("mount", "%s: Packages: %v", what, err)
			return 0
		}
		for _, inst := range instances(idx) {
			if want[inst.CPV+" "+inst.SHA1] == 0 {
				bad("mount", "%s: Packages lists %s with SHA1 %s, which no source file of that CPV has (PATH %s)", what, inst.CPV, inst.SHA1, inst.Path)
				break
			}
		}
		if len(idx.Blocks) > n {
			bad("mount", "%s: Packages lists %d packages, more than the %d imported", what, len(idx.Blocks), n)
		}
		return len(idx.Blocks)
	}
	raise := func(m *atomic.Int64, v int64) {
		for {
			cur := m.Load()
			if v <= cur || m.CompareAndSwap(cur, v) {
				return
			}
		}
	}
	mountOnce := func() {
		mnt, err := os.MkdirTemp("", "pkgdirfs-it-mnt-")
		if err != nil {
			t.Error(err)
			return
		}
		mi := &mountInfo{Dir: mnt, Log: filepath.Join(logDir, fmt.Sprintf("daemon-%d.log", mountSeq.Add(1)))}
		r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", mi.Log, mnt)
		if r.Code != 0 {
			if _, ok := mountedFSType(mnt); ok {
				bad("mount", "mount failed but %s is mounted: %s", mnt, r)
				run(t, "", toolTimeout, "umount", "-l", mnt)
			}
			os.Remove(mnt)
			if strings.Contains(string(r.Stderr), "state is in use") {
				// The other mount loop's daemon holds the state: documented.
				mountRefused.Add(1)
				mi.AllowErrors = []string{"state is in use"}
				checkDaemonLog(t, mi)
				return
			}
			kind := "mount"
			if strings.Contains(string(r.Stderr), "lists no packages") {
				kind = "mount refused: catalog lost"
			}
			bad(kind, "mount during the import: %s\ndaemon log:\n%s", r, readLog(mi.Log))
			return
		}
		mounts.Add(1)
		if !waitMounted(mnt, true, 0) {
			bad("mount", "`pkgdirfs mount` returned 0 but %s is not mounted: %s", mnt, r)
		}
		mi.PIDs = daemonPIDs(mnt)
		if b, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil {
			bad("mount", "read %s/Packages during the import: %v", mnt, err)
		} else {
			raise(&maxMountBlocks, int64(checkBlocks("mount during the import", b)))
		}
		unmountAndCheck(t, mi)
	}
	loop("mount A", mountOnce)
	loop("mount B", mountOnce)

	lastRows := -1
	loop("query", func() {
		r := runCLI(t, "query", "--state", state, "--format", "paths")
		queries.Add(1)
		if r.Code != 0 {
			bad("query", "query during the import: %s", r)
			return
		}
		rows := 0
		if s := strings.TrimSpace(string(r.Stdout)); s != "" {
			rows = len(strings.Split(s, "\n"))
		}
		if rows > n || rows < lastRows {
			bad("query", "query during the import listed %d packages (previous query: %d, imported at most %d): the catalog only grows", rows, lastRows, n)
		}
		lastRows = rows
		raise(&maxQueryRows, int64(rows))
	})
	lastInsts := int64(-1)
	loop("stats", func() {
		r := runCLI(t, "stats", "--state", state, "--format", "json")
		stats.Add(1)
		if r.Code != 0 {
			bad("stats", "stats during the import: %s", r)
			return
		}
		var rep struct {
			Instances int64 `json:"instances"`
		}
		if err := json.Unmarshal(r.Stdout, &rep); err != nil {
			bad("stats", "stats --format json: %v: %s", err, r)
			return
		}
		if rep.Instances > n || rep.Instances < lastInsts {
			bad("stats", "stats during the import: %d instances (previous: %d, imported at most %d): the catalog only grows", rep.Instances, lastInsts, n)
		}
		lastInsts = rep.Instances
		raise(&maxStatsInsts, rep.Instances)
	})
	loop("verify", func() {
		r := runCLI(t, "verify", "--state", state)
		verifies.Add(1)
		// Blobs an import placed whose rows are not committed yet are
		// orphans: notes, not faults (catalog/verify.go).
		if r.Code != 0 || strings.Contains(string(r.Stdout), "FAULT") {
			bad("verify", "verify during the import: exit %d, stderr %q; faults and summary:\n%s", r.Code, r.Stderr, concLines(r.Stdout, "FAULT", "verified "))
		}
	})
	// Staging as the others see it: only the import stages bytes (in-*
	// files); the daemons and commands stage nothing here.
	loop("staging", func() {
		stagingSamples.Add(1)
		ents, err := os.ReadDir(stagingDir)
		if err != nil {
			bad("staging", "read %s: %v", stagingDir, err)
			return
		}
		for _, e := range ents {
			if !e.IsDir() {
				bad("staging", "staging/%s: a file directly in staging/ (each writer stages in a directory of its own)", e.Name())
				continue
			}
			files, _ := os.ReadDir(filepath.Join(stagingDir, e.Name()))
			for _, f := range files {
				switch {
				case f.Name() == ".owner":
				case e.Name() == importStaging && strings.HasPrefix(f.Name(), "in-"):
					inFlightSeen.Add(1)
				default:
					bad("staging", "staging/%s/%s: only the import stages bytes during this test (its directory is staging/%s)", e.Name(), f.Name(), importStaging)
				}
			}
		}
		time.Sleep(5 * time.Millisecond) // a sampler, not a synchroniser
	})

	select {
	case <-importDone:
	case <-time.After(cliTimeout + phaseTimeout):
		t.Fatalf("the import did not end within %v", cliTimeout+phaseTimeout)
	}
	importEnd := time.Now()
	waitOthers := make(chan struct{})
	go func() { wg.Wait(); close(waitOthers) }()
	select {
	case <-waitOthers:
	case <-time.After(2 * cliTimeout):
		t.Fatalf("the other loops did not stop within %v of the import's end", 2*cliTimeout)
	}
	t.Logf("import: %v; beside it ran %d mounts (+%d refused: state in use by the other mount loop; max %d packages listed), %d queries (max %d rows), %d stats (max %d instances), %d verifies; %d staging samples saw %d in-flight import files; the others stopped %v after the import",
		imp.took.Round(time.Millisecond), mounts.Load(), mountRefused.Load(), maxMountBlocks.Load(), queries.Load(), maxQueryRows.Load(),
		stats.Load(), maxStatsInsts.Load(), verifies.Load(), stagingSamples.Load(), inFlightSeen.Load(), time.Since(importEnd).Round(time.Millisecond))

	if len(badCount) > 0 {
		t.Errorf("failures beside the import, by kind: %v; the last of each this long into the import: %v", badCount, badLast)
	}

	// ---------------------------------------------------------------- results
	// A failed import is reported and the state still checked: what an
	// opener beside it took shows below (missing packages, staging files).
	if !imp.ok {
		t.Fatalf("the import did not report a result (see above)")
	}
	if imp.r.Code != 0 || !summaryRE.Match(imp.r.Stderr) {
		t.Errorf("import beside the others: want exit 0 and its summary: %s", imp.r)
	} else if sum, w := parseSummary(t, imp.r), (importSummary{n, 0, 0}); sum != w {
		t.Errorf("import beside the others: want `imported %d, already present 0, invalid 0`, got %+v: %s", n, sum, imp.r)
	}
	for what, c := range map[string]int64{"mount": mounts.Load(), "query": queries.Load(), "stats": stats.Load(), "verify": verifies.Load()} {
		if c == 0 {
			t.Errorf("no %s completed during the import (%v): the test did not test anything for it", what, imp.took)
		}
	}
	concStagingEmpty(t, stagingDir, "after the import and the others stopped")

	r := runCLI(t, "verify", "--state", state, "--deep")
	if r.Code != 0 || strings.Contains(string(r.Stdout), "FAULT") || strings.Contains(string(r.Stdout), "orphan blob") {
		t.Errorf("verify --deep after the import: want exit 0, no FAULT, no orphan blob: %s", r)
	}
	if !strings.Contains(string(r.Stdout), fmt.Sprintf("verified %d instances", n)) {
		t.Errorf("verify --deep: want `verified %d instances`: %s", n, r)
	}

	mi := mountFSInfo(t, state)
	b, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
	if err != nil {
		t.Fatalf("read Packages: %v", err)
	}
	idx, err := parseIndex(b)
	if err != nil {
		t.Fatalf("Packages: %v", err)
	}
	got := map[string]int{}
	for _, inst := range instances(idx) {
		got[inst.CPV+" "+inst.SHA1]++
	}
	if len(idx.Blocks) != n {
		t.Errorf("Packages lists %d packages, want %d", len(idx.Blocks), n)
	}
	var missing, extra []string
	for k, c := range want {
		if got[k] < c {
			missing = append(missing, k)
		}
	}
	for k, c := range got {
		if want[k] < c {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("Packages vs the source files (CPV SHA1): %d missing, %d not from the source; missing: %s; extra: %s",
			len(missing), len(extra), concFirst(missing, 10), concFirst(extra, 10))
	}
	if r := run(t, "", toolTimeout, "umount", mi.Dir); r.Code != 0 {
		t.Fatalf("umount: %s", r)
	}
	for _, pid := range mi.PIDs {
		if !waitPIDGone(pid, exitTimeout) {
			t.Errorf("daemon pid %d did not exit within %v of umount", pid, exitTimeout)
		}
	}
	concStagingEmpty(t, stagingDir, "after everything stopped")
	t.Logf("whole test: %v", time.Since(t0).Round(time.Millisecond))
	// The final mount's daemon log is checked by mountFSInfo's cleanup.
}

// concStagingEmpty fails t unless staging/ holds nothing: every writer
// removes its own directory when it closes, and no process runs.
func concStagingEmpty(t *testing.T, dir, when string) {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			left = append(left, p+": "+err.Error())
			return nil
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("%s: staging/ holds %d entries, want none: %s", when, len(left), concFirst(left, 20))
	}
}

func concFirst(s []string, k int) string {
	if len(s) <= k {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:k], ", ") + " … (" + strconv.Itoa(len(s)-k) + " more)"
}

// concLines are the lines of out that start with one of prefixes.
func concLines(out []byte, prefixes ...string) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}
