package integration

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/integration/binhost"
)

// TestSoak is `make soak` (SOAK_MINUTES; skipped otherwise). Rounds of
// SOAK_ROUND_SECONDS (90) until the time is up, each on a freshly started daemon behind
// a fresh nginx: two uploaders cp new packages in (flat and multi-instance
// names), a remover deletes acknowledged ones, `pkgdirfs import` brings
// batches into the mounted state, `pkgdirfs verify` runs on it, and a
// Portage-rules client fetches the index through nginx and downloads and
// verifies packages from it. Every third round ends in kill -9 during the
// uploads, the others in SIGTERM. At the end every acknowledged package
// not removed is in the index with its bytes, no removed one is,
// `verify --deep` finds nothing, and the daemon's goroutines, fds and RSS
// (SIGUSR1 stats) are printed per round: they must stay flat.
func TestSoak(t *testing.T) {
	minutes, _ := strconv.Atoi(os.Getenv("SOAK_MINUTES"))
	if minutes <= 0 {
		t.Skip("SOAK_MINUTES is not set: the soak runs with `make soak`")
	}
	needBinary(t)
	needNginx(t)
	deadline := time.Now().Add(time.Duration(minutes) * time.Minute)
	roundLen := 90 * time.Second
	if v, _ := strconv.Atoi(os.Getenv("SOAK_ROUND_SECONDS")); v > 0 {
		roundLen = time.Duration(v) * time.Second
	}
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	if r, sum := importDirs(t, state, extractFixture(t, "xpak-zstd-multi")); r.Code != 0 || sum.Imported == 0 {
		t.Fatalf("import of the fixture: %s", r)
	}
	mnt, err := os.MkdirTemp("", "pkgdirfs-soak-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(tmp, "daemon.log")
	s := newSoakRun(t, state, mnt, tmp, 15*time.Second, 20*time.Second)
	var cur *crashDaemon
	t.Cleanup(func() {
		if cur != nil {
			_ = cur.cmd.Process.Signal(syscall.SIGTERM)
			cur.wait(t, "cleanup")
		}
		run(t, "", toolTimeout, "umount", "-l", mnt)
		os.Remove(mnt)
	})
	for round := 1; time.Now().Before(deadline.Add(-20 * time.Second)); round++ {
		kill := round%3 == 0
		cur = startCrashDaemon(t, state, mnt, logPath, fmt.Sprintf("soak round %d", round), "--allow-other")
		ng := startNginx(t, mnt)
		rs := soakRound{n: round, kill: kill, start: s.vitals(cur, logPath)}
		dur := min(roundLen, time.Until(deadline)-15*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		s.killed.Store(false)
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); s.upload(ctx, round, w) }()
		}
		for _, f := range []func(context.Context, int){s.remove, s.importer, s.verifier, s.indexer, s.client(ng.URL)} {
			wg.Add(1)
			go func() { defer wg.Done(); f(ctx, round) }()
		}
		time.Sleep(dur)
		if kill {
			rs.end = s.vitals(cur, logPath)
			// While every worker is at it: what fails from now on is
			// expected, what was acknowledged before must survive.
			s.killed.Store(true)
			_ = cur.cmd.Process.Kill()
			cancel()
			wg.Wait()
			cur.wait(t, "kill -9")
			ng.stop(t)
			run(t, "", toolTimeout, "umount", "-l", mnt)
		} else {
			cancel()
			wg.Wait()
			rs.end = s.vitals(cur, logPath)
			ng.stop(t)
			_ = cur.cmd.Process.Signal(syscall.SIGTERM)
			cur.wait(t, "SIGTERM")
		}
		cancel()
		cur = nil
		s.mu.Lock()
		rs.ops = s.opsLine()
		s.mu.Unlock()
		s.rounds = append(s.rounds, rs)
		if t.Failed() {
			break
		}
	}

	// Nothing acknowledged is lost, nothing removed comes back.
	cur = startCrashDaemon(t, state, mnt, logPath, "soak final check")
	ix, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	paths, missing, back := s.checkIndex(ix)
	sort.Strings(paths)
	sums, errs := sha1Batch(t, mnt, paths)
	for _, p := range paths {
		if sums[p] == "" {
			t.Errorf("%s: unreadable: %s", p, errs)
		}
	}
	for _, p := range binhost.ParseIndex(ix).Packages {
		if got, ok := sums[p.Get("PATH")]; ok && got != p.Get("SHA1") {
			t.Errorf("%s: sha1 %s, the index says %s", p.Get("PATH"), got, p.Get("SHA1"))
		}
	}
	_ = cur.cmd.Process.Signal(syscall.SIGTERM)
	cur.wait(t, "final SIGTERM")
	cur = nil
	deep := runCLI(t, "verify", "--deep", "--state", state)
	if deep.Code != 0 || !strings.Contains(string(deep.Stdout)+string(deep.Stderr), " 0 faults") {
		t.Errorf("verify --deep after the soak: %s", deep)
	}
	// The watchdog's ERROR after each kill -9 is expected; nothing else.
	var bad []string
	for _, l := range strings.Split(soakGrep(soakLog(logPath), "panic|level=ERROR"), "\n") {
		if l != "" && !strings.Contains(l, "the daemon died without unmounting") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("the daemon log has a panic or an unexpected ERROR line:\n%s", strings.Join(bad, "\n"))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d minutes, %d rounds (%d ended by kill -9), %d packages acknowledged, %d removed, %d verified byte for byte at the end (%d missing, %d back)\n",
		minutes, len(s.rounds), (len(s.rounds))/3, len(s.acked), len(s.removed), len(paths), missing, back)
	fmt.Fprintf(&b, "soak: client downloads verified %d, index fetches %d\n", s.downloads.Load(), s.fetches.Load())
	fmt.Fprintf(&b, "%-6s %-8s %-34s %-34s %s\n", "round", "end", "start (goroutines fds rss)", "end (goroutines fds rss)", "operations so far")
	for _, r := range s.rounds {
		end := "SIGTERM"
		if r.kill {
			end = "kill -9"
		}
		fmt.Fprintf(&b, "%-6d %-8s %-34s %-34s %s\n", r.n, end, r.start, r.end, r.ops)
	}
	fmt.Print(b.String())
	t.Log("\n" + b.String())
}

type soakRun struct {
	t          *testing.T
	state, mnt string
	tmp        string
	// how often import and index run, and verify
	importEvery, verifyEvery time.Duration
	mu                       sync.Mutex
	acked                    map[string]string // SHA1 -> what, for every package a tool reported written
	removed                  map[string]bool   // SHA1s removed by a successful rm
	ops                      map[string]int
	seq                      atomic.Int64
	downloads                atomic.Int64
	fetches                  atomic.Int64
	rounds                   []soakRound
	statsRE                  *regexp.Regexp
	statsOnce                sync.Once
	killed                   atomic.Bool // the round's daemon was killed: failures are expected
}

func newSoakRun(t *testing.T, state, mnt, tmp string, importEvery, verifyEvery time.Duration) *soakRun {
	return &soakRun{t: t, state: state, mnt: mnt, tmp: tmp, importEvery: importEvery, verifyEvery: verifyEvery,
		acked: map[string]string{}, removed: map[string]bool{}, ops: map[string]int{}}
}

type soakRound struct {
	n          int
	kill       bool
	start, end string
	ops        string
}

// checkIndex checks an index against what the run did: every package
// acknowledged and not removed is listed, no removed one is. It returns the
// PATHs of the listed acknowledged packages.
func (s *soakRun) checkIndex(ix []byte) (paths []string, missing, back int) {
	s.t.Helper()
	present := map[string]string{} // SHA1 -> PATH
	for _, p := range binhost.ParseIndex(ix).Packages {
		present[p.Get("SHA1")] = p.Get("PATH")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sum, what := range s.acked {
		p, ok := present[sum]
		switch {
		case s.removed[sum] && ok:
			back++
			s.t.Errorf("removed %s is in the index again at %s", what, p)
		case !s.removed[sum] && !ok:
			missing++
			s.t.Errorf("acknowledged %s (sha1 %s) is not in the index", what, sum)
		case ok:
			paths = append(paths, p)
		}
	}
	return paths, missing, back
}

func (s *soakRun) count(op string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		op += " failed"
	}
	s.ops[op]++
}

func (s *soakRun) opsLine() string {
	keys := make([]string, 0, len(s.ops))
	for k := range s.ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.ops[k]))
	}
	return strings.Join(parts, ", ")
}

// newPackage is a package no other has the bytes or the PF of.
func (s *soakRun) newPackage(round, w int) (cat, pn, pf string, data []byte, sum string) {
	i := s.seq.Add(1)
	cat = []string{"app-soak", "dev-soak"}[i%2]
	pn = fmt.Sprintf("p%d", i%50)
	pf = fmt.Sprintf("%s-%d.%d.%d", pn, round, w, i)
	data = pubXpak(cat, pf, 1800000000+i, fmt.Sprintf("soak package %d of round %d\n", i, round))
	h := sha1.Sum(data)
	return cat, pn, pf, data, hex.EncodeToString(h[:])
}

func (s *soakRun) ack(sum, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[sum] = what
}

// upload copies new packages in with cp, at a flat name (the mount gives
// the next build id) or at a multi-instance name.
func (s *soakRun) upload(ctx context.Context, round, w int) {
	dir := filepath.Join(s.tmp, fmt.Sprintf("up-%d-%d", round, w))
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	for ctx.Err() == nil {
		cat, pn, pf, data, sum := s.newPackage(round, w)
		src := filepath.Join(dir, pf+".tbz2")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			s.t.Error(err)
			return
		}
		name, op := filepath.Join(cat, pf+".tbz2"), "cp flat"
		if s.seq.Load()%2 == 0 {
			name, op = filepath.Join(cat, pn, pf+"-1.xpak"), "cp multi"
		}
		os.MkdirAll(filepath.Dir(filepath.Join(s.mnt, name)), 0o755)
		err := exec.Command("cp", src, filepath.Join(s.mnt, name)).Run()
		s.count(op, err == nil)
		if err == nil {
			s.ack(sum, cat+"/"+pf+" by "+op)
		}
		os.Remove(src)
		time.Sleep(20 * time.Millisecond)
	}
}

// remove deletes an acknowledged package every 2 s, found by its SHA1 in
// the mount's own index.
func (s *soakRun) remove(ctx context.Context, round int) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b, err := os.ReadFile(filepath.Join(s.mnt, "Packages"))
		if err != nil {
			continue
		}
		s.mu.Lock()
		var victim, path string
		for _, p := range binhost.ParseIndex(b).Packages {
			if sum := p.Get("SHA1"); s.acked[sum] != "" && !s.removed[sum] {
				victim, path = sum, p.Get("PATH")
				break
			}
		}
		s.mu.Unlock()
		if victim == "" {
			continue
		}
		err = os.Remove(filepath.Join(s.mnt, path))
		s.count("rm", err == nil)
		if err == nil {
			s.mu.Lock()
			s.removed[victim] = true
			s.mu.Unlock()
		}
	}
}

// importer runs `pkgdirfs import` of 5 new packages into the mounted
// state every importEvery.
func (s *soakRun) importer(ctx context.Context, round int) {
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.importEvery):
		}
		dir := filepath.Join(s.tmp, fmt.Sprintf("imp-%d-%d", round, k))
		sums := map[string]string{}
		for range 5 {
			cat, _, pf, data, sum := s.newPackage(round, 9)
			p := filepath.Join(dir, cat, pf+".tbz2")
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				s.t.Error(err)
				return
			}
			sums[sum] = cat + "/" + pf + " by import"
		}
		cmd := exec.CommandContext(ctx, binPath, "import", "-q", "--state", s.state, dir)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil || s.killed.Load() {
			os.RemoveAll(dir)
			return // cut short by the end of the round: not acknowledged
		}
		s.count("import", err == nil)
		if err != nil {
			s.t.Errorf("pkgdirfs import into the mounted state: %v\n%s", err, out)
		}
		if err == nil {
			for sum, what := range sums {
				s.ack(sum, what)
			}
		}
		os.RemoveAll(dir)
	}
}

// verifier runs `pkgdirfs verify` on the mounted state every verifyEvery.
func (s *soakRun) verifier(ctx context.Context, round int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.verifyEvery):
		}
		out, err := exec.CommandContext(ctx, binPath, "verify", "--state", s.state).CombinedOutput()
		if ctx.Err() != nil || s.killed.Load() {
			return
		}
		s.count("verify", err == nil)
		if err != nil {
			s.t.Errorf("pkgdirfs verify on the mounted state: %v\n%s", err, out)
		}
	}
}

// indexer runs `pkgdirfs index` on the mounted state every importEvery;
// the index it prints must list at least the packages acknowledged before.
func (s *soakRun) indexer(ctx context.Context, round int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.importEvery):
		}
		s.mu.Lock()
		want := map[string]bool{}
		for sum := range s.acked {
			if !s.removed[sum] {
				want[sum] = true
			}
		}
		s.mu.Unlock()
		out, err := exec.CommandContext(ctx, binPath, "index", "--state", s.state).Output()
		if ctx.Err() != nil || s.killed.Load() {
			return
		}
		s.count("index", err == nil)
		if err != nil {
			s.t.Errorf("pkgdirfs index on the mounted state: %v", err)
			continue
		}
		for _, p := range binhost.ParseIndex(out).Packages {
			delete(want, p.Get("SHA1"))
		}
		s.mu.Lock()
		for sum := range want {
			if s.removed[sum] { // removed meanwhile
				delete(want, sum)
			}
		}
		s.mu.Unlock()
		if len(want) > 0 {
			s.t.Errorf("pkgdirfs index on the mounted state misses %d acknowledged packages", len(want))
		}
	}
}

// client fetches the index through nginx every second, as Portage does,
// and downloads and verifies three of its packages.
func (s *soakRun) client(base string) func(context.Context, int) {
	return func(ctx context.Context, round int) {
		c := binhost.NewClient(true)
		cache := &binhost.Cache{}
		rng := rand.New(rand.NewSource(int64(round)))
		for ctx.Err() == nil {
			time.Sleep(time.Second)
			ix, _, err := c.Fetch(ctx, base, cache)
			if ctx.Err() != nil || s.killed.Load() {
				return
			}
			if err != nil {
				s.t.Errorf("round %d: index fetch: %v", round, err)
				continue
			}
			s.fetches.Add(1)
			for range 3 {
				if len(ix.Packages) == 0 {
					break
				}
				p := ix.Packages[rng.Intn(len(ix.Packages))]
				_, err := c.Download(ctx, p)
				if ctx.Err() != nil || s.killed.Load() {
					return
				}
				var nf *binhost.NotFoundError
				switch {
				case err == nil:
					s.downloads.Add(1)
				case errors.As(err, &nf):
					s.mu.Lock()
					gone := s.removed[p.Get("SHA1")]
					s.mu.Unlock()
					if !gone {
						s.t.Errorf("round %d: %s: 404, and it was not removed", round, p.Get("PATH"))
					}
				default:
					s.t.Errorf("round %d: download of %s: %v", round, p.Get("PATH"), err)
				}
			}
		}
	}
}

// vitals asks the daemon for its stats line (SIGUSR1) and returns
// "goroutines fds rss".
func (s *soakRun) vitals(d *crashDaemon, logPath string) string {
	s.statsOnce.Do(func() {
		s.statsRE = regexp.MustCompile(`msg=stats goroutines=(\d+) fds=(\d+) rss_kib=(\d+)`)
	})
	before := len(s.statsRE.FindAllStringSubmatch(soakLog(logPath), -1))
	_ = d.cmd.Process.Signal(syscall.SIGUSR1)
	for range 50 {
		all := s.statsRE.FindAllStringSubmatch(soakLog(logPath), -1)
		if len(all) > before {
			m := all[len(all)-1]
			rss, _ := strconv.Atoi(m[3])
			return fmt.Sprintf("%s %s %.1fMiB", m[1], m[2], float64(rss)/1024)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "no stats line"
}

// soakGrep is the lines of text that match pattern.
func soakGrep(text, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFaultCommandsDuringUploads: `pkgdirfs import`, `index` and `verify`
// run in a loop on a mounted state while two uploaders cp packages in and
// a remover deletes some, for 15 s: every upload and every command succeeds, each
// index lists what was acknowledged before it, and the mount's index at
// the end lists exactly what was acknowledged and not removed.
func TestFaultCommandsDuringUploads(t *testing.T) {
	// Not parallel: its stream of fsyncs (and the imports' syncfs of the
	// whole filesystem) would slow every other test's commits down.
	needBinary(t)
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	importOK(t, state, importSummary{30, 0, 0}, extractFixture(t, "xpak-bzip2-multi"))
	mi := mountFSInfo(t, state)
	s := newSoakRun(t, state, mi.Dir, tmp, 1500*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); s.upload(ctx, 1, w) }()
	}
	for _, f := range []func(context.Context, int){s.remove, s.importer, s.verifier, s.indexer} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx, 1) }()
	}
	wg.Wait()
	s.mu.Lock()
	ops := s.opsLine()
	s.mu.Unlock()
	t.Logf("operations: %s", ops)
	for _, op := range []string{"cp flat", "cp multi", "import", "index", "verify", "rm"} {
		if s.ops[op] == 0 {
			t.Errorf("no %s succeeded in 15 s (%s)", op, ops)
		}
		if s.ops[op+" failed"] != 0 {
			t.Errorf("%d of %s failed (%s)", s.ops[op+" failed"], op, ops)
		}
	}
	ix, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	if paths, _, _ := s.checkIndex(ix); len(paths) == 0 {
		t.Error("the index lists none of the packages written")
	}
}

// soakLog is the whole daemon log (readLog clips it).
func soakLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestIndexSizeMatchesHandle: while packages are committed, readers open
// Packages.gz, fstat the fd (nginx's Content-Length) and read to EOF: the
// size must be that of the generation the fd reads. fstat reaches a FUSE
// filesystem without the file handle: with one inode for every generation,
// ~3% of these reads got another generation's size (and nginx sent bodies
// cut short, or longer than their Content-Length allowed).
func TestIndexSizeMatchesHandle(t *testing.T) {
	t.Parallel()
	needBinary(t)
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	importOK(t, state, importSummary{30, 0, 0}, extractFixture(t, "xpak-bzip2-multi"))
	mi := mountFSInfo(t, state)
	s := newSoakRun(t, state, mi.Dir, tmp, time.Hour, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.upload(ctx, 1, 0) }()
	var reads, mismatches atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for _, name := range []string{"Packages.gz", "Packages"} {
					f, err := os.Open(filepath.Join(mi.Dir, name))
					if err != nil {
						t.Errorf("open %s: %v", name, err)
						return
					}
					st, err := f.Stat()
					b, rerr := io.ReadAll(f)
					f.Close()
					if err != nil || rerr != nil {
						t.Errorf("%s: stat %v, read %v", name, err, rerr)
						return
					}
					reads.Add(1)
					if int64(len(b)) != st.Size() {
						if mismatches.Add(1) <= 5 {
							t.Logf("%s: fstat %d, read %d", name, st.Size(), len(b))
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if reads.Load() == 0 || s.ops["cp flat"]+s.ops["cp multi"] == 0 {
		t.Fatalf("%d reads during %v commits: nothing was exercised", reads.Load(), s.ops)
	}
	if n := mismatches.Load(); n > 0 {
		t.Errorf("%d of %d reads got another size from fstat than the bytes the fd held", n, reads.Load())
	}
	t.Logf("%d index reads during %d commits", reads.Load(), s.ops["cp flat"]+s.ops["cp multi"])
}
