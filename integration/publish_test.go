package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pkgdirfs/integration/binhost"
)

// TestBinhostPublishUnderLoad: publishing under load. One writer adds 200
// packages through the mount (cp and write+rename, at flat names that get
// the next build id and at multi-instance names with a chosen build id; new
// builds of CPVs already present), and removes an older instance of some CPV
// every 5th package. Meanwhile 4 Portage-rules clients fetch the index
// through nginx in a loop (each with its own cache: 200 and 304), check that
// every index they get is internally consistent and agrees with what the
// writer had published when it was fetched, and download and verify (SIZE,
// MD5, SHA1) the new entries and a random sample of every index they hold. No
// entry of an index a client holds may ever be a 404 or fail verification:
// removed instances stay downloadable through the removed-grace fallback.
// At the end the index lists exactly the expected instances, and all of them
// download and verify.
func TestBinhostPublishUnderLoad(t *testing.T) {
	needBinary(t)
	needNginx(t)
	const (
		fixture     = "xpak-zstd-multi"
		nPackages   = 200
		nClients    = 4
		removeEvery = 5
		sampleSize  = 5
		maxFailures = 25 // detailed failure reports kept (the rest is counted)
	)
	state := filepath.Join(t.TempDir(), "state")
	srcDir := extractFixture(t, fixture)
	if r, sum := importDirs(t, state, srcDir); r.Code != 0 || sum.Invalid != 0 || sum.Imported == 0 {
		t.Fatalf("import %s: want exit 0, packages imported, none invalid; got exit %d %+v: %s", fixture, r.Code, sum, r)
	}
	mi := mountFSInfo(t, state, "--allow-other")
	mnt := mi.Dir
	ng := startNginx(t, mnt)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	run := &pubRun{mnt: mnt, log: mi.Log, max: maxFailures, present: map[string]*pubInst{}, events: map[string][]*pubEvent{}, kinds: map[string]int{}}

	// The start state, as the mount's Packages shows it.
	initial, err := run.mountIndex()
	if err != nil {
		t.Fatalf("the mount's Packages: %v", err)
	}
	for _, p := range initial.Packages {
		in := pubInstOf(p)
		in.Initial = true
		run.present[in.Path] = in
	}
	if len(run.present) == 0 {
		t.Fatalf("the mount's Packages lists no package after importing %s", fixture)
	}
	nInitial := len(run.present)

	// ~20 CPVs: 17 new ones and 3 of the fixture (whose instances the new
	// builds then replace as the newest).
	cpvs := []string{"app-misc/hello-2.10", "app-editors/nano-7.2-r1", "app-arch/zstd-1.5.5-r1"}
	for i, pn := range []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
		"juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec"} {
		cat := "app-pubtest"
		if i%2 == 1 {
			cat = "dev-pubtest"
		}
		ver := []string{"1.0", "2.3.1", "0.9-r1", "4.2_p3"}[i%4]
		cpvs = append(cpvs, cat+"/"+pn+"-"+ver)
	}
	maxID := map[string]int64{} // highest build id ever used per CPV (ids are never reused)
	for _, in := range run.present {
		maxID[in.CPV] = max(maxID[in.CPV], in.BuildID)
	}

	// The four ways to publish; PKGDIRFS_PUBLISH_MODES (comma-separated) may
	// narrow them down to isolate a failure.
	modes := []string{"cp-flat", "rename-flat", "cp-multi", "rename-multi"}
	if v := os.Getenv("PKGDIRFS_PUBLISH_MODES"); v != "" {
		modes = strings.Split(v, ",")
		for _, m := range modes {
			if _, ok := pubModes[m]; !ok {
				t.Fatalf("PKGDIRFS_PUBLISH_MODES: unknown mode %q (cp-flat, rename-flat, cp-multi, rename-multi)", m)
			}
		}
	}

	writerDone := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()

	// ------------------------------------------------------------ writer
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		rng := rand.New(rand.NewSource(20261122))
		tmp, err := os.MkdirTemp("", "pkgdirfs-it-pub-")
		if err != nil {
			run.fail("writer: other", "writer: %v", err)
			return
		}
		defer os.RemoveAll(tmp)
		buildTime := time.Now().Unix()
		for i := 0; i < nPackages && ctx.Err() == nil; i++ {
			cpv := cpvs[rng.Intn(len(cpvs))]
			cat, pf, _ := strings.Cut(cpv, "/")
			pn := pubPN(pf)
			buildTime++
			data := pubXpak(cat, pf, buildTime, fmt.Sprintf("publish test package %d of %s\n", i, cpv))
			sum := sha1.Sum(data)
			in := &pubInst{CPV: cpv, BuildTime: buildTime, SHA1: hex.EncodeToString(sum[:]), Size: int64(len(data))}
			mode := modes[rng.Intn(len(modes))]
			var id int64
			if strings.HasSuffix(mode, "-flat") {
				id = maxID[cpv] + 1 // the next build id: max + 1 over the CPV's instances
			} else {
				id = maxID[cpv] + 1 + int64(rng.Intn(3)) // a chosen free build id, sometimes leaving gaps
			}
			in.BuildID = id
			in.Path = fmt.Sprintf("%s/%s/%s-%d.xpak", cat, pn, pf, id)
			ev := run.begin(&pubEvent{Kind: "add", How: mode, Path: in.Path, SHA1: in.SHA1})
			werr := run.writePackage(tmp, mode, cat, pn, pf, id, i, data)
			run.finish(ev, werr == nil)
			if werr != nil {
				run.fail("writer: write failed", "writer: package %d (%s, %s -> expected %s): %v\n%s", i, cpv, mode, in.Path, werr, run.logWindow(ev.Start, ev.End, pf))
				continue
			}
			maxID[cpv] = id
			// The instance is at its multi-instance name, and the flat name
			// shows it (the newest build of the CPV).
			if got, err := pubSHA1File(filepath.Join(mnt, in.Path)); err != nil || got != in.SHA1 {
				actual := run.findBySHA1(in.SHA1)
				run.fail("writer: committed at another PATH", "writer: package %d (%s) written by %s at %v: want it at %s (SHA1 %s), found there SHA1 %q (err %v); the mount's Packages has that SHA1 at %q\n%s",
					i, cpv, mode, ev.End.Format("15:04:05.000"), in.Path, in.SHA1, got, err, actual, run.logWindow(ev.Start, ev.End, pf))
				if actual == "" {
					continue
				}
				in.Path = actual
				run.move(ev, actual)
				if m := pubMultiRE.FindStringSubmatch(actual); m != nil {
					id, _ = strconv.ParseInt(m[4], 10, 64)
					in.BuildID = id
					maxID[cpv] = max(maxID[cpv], id)
				}
			}
			run.add(in)
			// Published means downloadable: GET it through nginx at once.
			if code, got, err := pubGet(ng.URL + "/" + in.Path); err != nil || code != http.StatusOK || got != in.SHA1 {
				run.fail("writer: not downloadable right after the commit", "writer: %s (%s, committed %s by %s) through nginx right after the commit: HTTP %d, SHA1 %q, err %v (want 200, SHA1 %s)\n%s",
					in.Path, cpv, ev.End.Format("15:04:05.000"), mode, code, got, err, in.SHA1, run.logWindow(ev.Start, time.Now(), pf))
			}
			if got, err := pubSHA1File(filepath.Join(mnt, cpv+".tbz2")); err != nil || got != in.SHA1 {
				shown := run.whose(got)
				run.fail("writer: flat name not the newest", "writer: after adding %s (%s, BUILD_TIME %d, the newest build; close/rename returned at %s), the flat name %s.tbz2 shows SHA1 %q = %s (err %v), want %s; %s",
					in.Path, cpv, buildTime, ev.End.Format("15:04:05.000"), cpv, got, shown, err, in.SHA1, run.settle(filepath.Join(mnt, cpv+".tbz2"), in.SHA1, ev.End))
			}
			run.writes[modeIndex(mode)].Add(1)

			if (i+1)%removeEvery == 0 {
				run.removeOlder(rng)
			}
			time.Sleep(time.Duration(40+rng.Intn(160)) * time.Millisecond)
		}
	}()

	// ------------------------------------------------------------ clients
	clients := make([]*pubClient, nClients)
	for k := range clients {
		clients[k] = &pubClient{id: k + 1, run: run, url: ng.URL, c: binhost.NewClient(true), cache: &binhost.Cache{},
			rng: rand.New(rand.NewSource(int64(k + 1)))}
		cl := clients[k]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				select {
				case <-writerDone:
					cl.round(ctx, sampleSize) // one final round after the writer is done
					return
				default:
				}
				cl.round(ctx, sampleSize)
				time.Sleep(time.Duration(30+cl.rng.Intn(120)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	loadTime := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("the run did not finish within its time limit (%v)", loadTime)
	}

	// ------------------------------------------------------------ final state
	// A fresh client (no cache): the index must list exactly the initial
	// instances plus those written minus those removed, and all download.
	fc := binhost.NewClient(true)
	fcache := &binhost.Cache{}
	final, _, err := fc.Fetch(ctx, ng.URL, fcache)
	if err != nil {
		t.Fatalf("final fetch: %v\n%s", err, exchangesString(fc.Exchanges()))
	}
	if msg := pubCheckIndex(final, true); msg != "" {
		t.Errorf("final index (TIMESTAMP %d) is inconsistent: %s", final.Timestamp(), msg)
	}
	want := run.presentSHA1s()
	got := map[string]string{}
	for _, p := range final.Packages {
		got[strings.TrimLeft(p.Path(), "/")] = p.Get("SHA1")
	}
	var missing, extra, differ []string
	for p, sha := range want {
		switch g, ok := got[p]; {
		case !ok:
			missing = append(missing, p)
		case g != sha:
			differ = append(differ, fmt.Sprintf("%s (index SHA1 %s, written %s)", p, g, sha))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(differ)
	if len(missing)+len(extra)+len(differ) > 0 {
		t.Errorf("final index (TIMESTAMP %d, %d entries) != the writer's expectation (%d entries: %d initial + %d written - %d removed):\nmissing: %v\nnot expected: %v\nother bytes: %v",
			final.Timestamp(), len(final.Packages), len(want), nInitial, run.added.Load(), run.removals.Load(), missing, extra, differ)
	}
	if onMount, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil || !bytes.Equal(onMount, final.Raw) {
		t.Errorf("final index through nginx (%d bytes) != the mount's Packages (%d bytes, err %v)", len(final.Raw), len(onMount), err)
	}
	downloaded, err := fc.Sync(ctx, fcache, final.Packages)
	if err != nil {
		t.Errorf("final index: downloading every entry: %v", err)
	}
	checkChosenIsFlat(t, mnt, final)
	nowTS := time.Now().Unix()

	// ------------------------------------------------------------ report
	var n200, n304, nNotNewer, nDownloads, nGone int64
	var stuck []string
	for _, cl := range clients {
		n200 += cl.n200
		n304 += cl.n304
		nNotNewer += cl.n200NotNewer
		nDownloads += cl.downloads
		nGone += cl.goneAtDownload
		if cl.cache.Index == nil || cl.cache.Index.Timestamp() != final.Timestamp() {
			ts := int64(0)
			if cl.cache.Index != nil {
				ts = cl.cache.Index.Timestamp()
			}
			stuck = append(stuck, fmt.Sprintf("client %d holds TIMESTAMP %d", cl.id, ts))
		}
	}
	w := &run.writes
	summary := fmt.Sprintf("publish under load (%v): writer added %d packages (cp flat %d, rename flat %d, cp multi %d, rename multi %d) and removed %d; "+
		"%d clients made %d index fetches (%d answered 200 with a newer index, %d answered 304, %d answered 200 but not newer), "+
		"verified %d package downloads (%d of PATHs already gone from the mount at download time: removed-grace fallback or nginx's cached fd); "+
		"final index: TIMESTAMP %d (%+d s from the wall clock), %d entries, %d of them downloaded and verified",
		loadTime.Round(time.Millisecond), run.added.Load(), w[0].Load(), w[1].Load(), w[2].Load(), w[3].Load(), run.removals.Load(),
		nClients, n200+n304, n200-nNotNewer, n304, nNotNewer, nDownloads, nGone,
		final.Timestamp(), final.Timestamp()-nowTS, len(final.Packages), len(downloaded))
	t.Log(summary)
	fmt.Println(summary)
	if len(stuck) > 0 {
		// Not a failure: Portage sends If-Modified-Since = TIMESTAMP + 5 s and
		// nginx answers 304 when the index is not newer than that, so a
		// client holding an index less than 6 s older than the last one does
		// not see the last generation until a later one.
		note := fmt.Sprintf("note: after the final round, %d of %d clients still hold an older index than the final TIMESTAMP %d (If-Modified-Since = TIMESTAMP + 5 s answered 304): %s",
			len(stuck), nClients, final.Timestamp(), strings.Join(stuck, ", "))
		t.Log(note)
		fmt.Println(note)
	}
	run.mu.Lock()
	fails, nFails := run.failures, run.nFailures
	var kinds []string
	for k, n := range run.kinds {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	run.mu.Unlock()
	sort.Strings(kinds)
	if len(kinds) > 0 {
		t.Errorf("%d failures by kind:\n  %s", nFails, strings.Join(kinds, "\n  "))
	}
	for _, f := range fails {
		t.Error(f)
	}
	if nFails > len(fails) {
		t.Errorf("... and %d more failures (only the first %d are shown)", nFails-len(fails), len(fails))
	}
	if nDownloads == 0 || n200 == 0 {
		t.Errorf("the clients checked nothing: %d index fetches answered 200, %d downloads", n200, nDownloads)
	}
	if run.removals.Load() == 0 {
		t.Errorf("the writer removed nothing")
	}
	if t.Failed() {
		// The temp dirs go with the test: keep the full logs for the report.
		for name, src := range map[string]string{"daemon": mi.Log, "nginx-error": filepath.Join(ng.Prefix, "logs", "error.log")} {
			keep := filepath.Join(os.TempDir(), "pkgdirfs-publish-"+name+".log")
			if b, err := os.ReadFile(src); err == nil && os.WriteFile(keep, b, 0o644) == nil {
				t.Logf("full %s log kept at %s", name, keep)
			}
		}
	}
}

// pubInst is one instance the writer knows of.
type pubInst struct {
	CPV, Path          string
	BuildID, BuildTime int64
	SHA1               string
	Size               int64
	Initial            bool
}

func pubInstOf(p *binhost.Package) *pubInst {
	return &pubInst{CPV: p.CPV(), Path: strings.TrimLeft(p.Path(), "/"), BuildID: p.BuildID(), BuildTime: p.BuildTime(),
		SHA1: p.Get("SHA1"), Size: p.Size()}
}

// pubEvent is one publication by the writer: Start before its first system
// call, End after the one that committed it (close, rename, unlink) returned.
type pubEvent struct {
	Kind, How, Path, SHA1 string
	Start, End            time.Time
}

func (e *pubEvent) String() string {
	return fmt.Sprintf("%s %s by %s [%s .. %s]", e.Kind, e.Path, e.How, e.Start.Format("15:04:05.000"), e.End.Format("15:04:05.000"))
}

// pubRun is the shared state of one run: the writer's model and the failures.
type pubRun struct {
	mnt, log string
	max      int

	mu        sync.Mutex
	present   map[string]*pubInst    // PATH -> instance, as the writer expects now
	events    map[string][]*pubEvent // PATH -> its publications, in order
	failures  []string
	nFailures int
	kinds     map[string]int

	added, removals atomic.Int64
	writes          [4]atomic.Int64
}

var pubModes = map[string]int{"cp-flat": 0, "rename-flat": 1, "cp-multi": 2, "rename-multi": 3}

func modeIndex(mode string) int { return pubModes[mode] }

// fail records a failure of some kind (counted per kind; the first few
// reported in full).
func (r *pubRun) fail(kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nFailures++
	r.kinds[kind]++
	if len(r.failures) < r.max {
		r.failures = append(r.failures, msg)
	}
}

// begin records a publication before its first system call (End zero:
// in progress), so a client never misses one that completes before its own
// check runs.
func (r *pubRun) begin(ev *pubEvent) *pubEvent {
	r.mu.Lock()
	ev.Start = time.Now()
	r.events[ev.Path] = append(r.events[ev.Path], ev)
	r.mu.Unlock()
	return ev
}

// finish sets End when the publication's last system call returned; a
// failed one is forgotten.
func (r *pubRun) finish(ev *pubEvent, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.End = time.Now()
	if ok {
		return
	}
	evs := r.events[ev.Path]
	for i, e := range evs {
		if e == ev {
			r.events[ev.Path] = append(evs[:i:i], evs[i+1:]...)
			break
		}
	}
	if len(r.events[ev.Path]) == 0 {
		delete(r.events, ev.Path)
	}
}

// move re-files an add that landed at another PATH than expected.
func (r *pubRun) move(ev *pubEvent, path string) {
	r.finish(ev, false)
	r.mu.Lock()
	ev.Path = path
	r.events[path] = append(r.events[path], ev)
	r.mu.Unlock()
}

func (r *pubRun) add(in *pubInst) {
	r.mu.Lock()
	r.present[in.Path] = in
	r.mu.Unlock()
	r.added.Add(1)
}

func (r *pubRun) presentSHA1s() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]string, len(r.present))
	for p, in := range r.present {
		m[p] = in.SHA1
	}
	return m
}

// eventsOf describes the writer's publications of path.
func (r *pubRun) eventsOf(path string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events[path]
	if len(evs) == 0 {
		if in, ok := r.present[path]; ok && in.Initial {
			return "initial instance, never touched by the writer"
		}
		return "no publication by the writer"
	}
	var s []string
	for _, e := range evs {
		s = append(s, e.String())
	}
	return strings.Join(s, "; ")
}

func (r *pubRun) mountIndex() (*binhost.Index, error) {
	b, err := os.ReadFile(filepath.Join(r.mnt, "Packages"))
	if err != nil {
		return nil, err
	}
	return binhost.ParseIndex(b), nil
}

// findBySHA1 returns the PATH of the mount's index entry with that SHA1.
func (r *pubRun) findBySHA1(sha string) string {
	ix, err := r.mountIndex()
	if err != nil {
		return ""
	}
	for _, p := range ix.Packages {
		if p.Get("SHA1") == sha {
			return strings.TrimLeft(p.Path(), "/")
		}
	}
	return ""
}

// writePackage publishes data through the mount in one of four ways:
// cp (for the flat name: cp to a temp name, then mv) or write+rename (from a
// temp name in the same directory) onto the flat name CAT/PF.tbz2 (the next
// build id) or the multi-instance name CAT/PN/PF-ID.xpak.
func (r *pubRun) writePackage(tmp, mode, cat, pn, pf string, id int64, i int, data []byte) error {
	var dst string
	if strings.HasSuffix(mode, "-flat") {
		dst = filepath.Join(r.mnt, cat, pf+".tbz2")
	} else {
		dst = filepath.Join(r.mnt, cat, pn, fmt.Sprintf("%s-%d.xpak", pf, id))
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch mode {
	case "cp-flat", "cp-multi":
		src := filepath.Join(tmp, fmt.Sprintf("%s-%d.xpak", pf, i))
		if err := os.WriteFile(src, data, 0o644); err != nil {
			return err
		}
		defer os.Remove(src)
		cctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
		defer cancel()
		if mode == "cp-flat" {
			// The flat name shows a package nginx may hold open (its fd
			// cache): a served file is never rewritten in place (the mount
			// answers ETXTBSY); a new build is copied next to it and moved
			// into place, as quickpkg does.
			temp := dst + "." + strconv.Itoa(i) + ".tmp"
			if out, err := exec.CommandContext(cctx, "cp", src, temp).CombinedOutput(); err != nil {
				return fmt.Errorf("cp %s %s: %v: %s", src, temp, err, out)
			}
			if out, err := exec.CommandContext(cctx, "mv", temp, dst).CombinedOutput(); err != nil {
				return fmt.Errorf("mv %s %s: %v: %s", temp, dst, err, out)
			}
			return nil
		}
		if out, err := exec.CommandContext(cctx, "cp", src, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("cp %s %s: %v: %s", src, dst, err, out)
		}
		return nil
	default:
		temp := dst + "." + strconv.Itoa(os.Getpid()) + ".partial"
		f, err := os.OpenFile(temp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %v", temp, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %v", temp, err)
		}
		if err := os.Rename(temp, dst); err != nil {
			return fmt.Errorf("rename %s -> %s: %v", temp, dst, err)
		}
		return nil
	}
}

// removeOlder removes, with rm, an instance of some CPV with several
// instances, taken from the mount's current Packages: never the newest
// (BUILD_TIME) nor the highest build id, so no build id is ever reused.
func (r *pubRun) removeOlder(rng *rand.Rand) {
	ix, err := r.mountIndex()
	if err != nil {
		r.fail("writer: other", "writer: reading the mount's Packages: %v", err)
		return
	}
	byCPV := map[string][]*binhost.Package{}
	for _, p := range ix.Packages {
		byCPV[p.CPV()] = append(byCPV[p.CPV()], p)
	}
	chosen := binhost.Choose(ix)
	var cands []*binhost.Package
	for _, cpv := range binhost.CPVs(ix) {
		insts := byCPV[cpv]
		if len(insts) < 2 {
			continue
		}
		var maxID int64
		for _, p := range insts {
			maxID = max(maxID, p.BuildID())
		}
		for _, p := range insts {
			if p != chosen[cpv] && p.BuildID() != maxID {
				cands = append(cands, p)
			}
		}
	}
	if len(cands) == 0 {
		return
	}
	p := cands[rng.Intn(len(cands))]
	path := strings.TrimLeft(p.Path(), "/")
	r.mu.Lock()
	in, known := r.present[path]
	r.mu.Unlock()
	if !known || in.SHA1 != p.Get("SHA1") {
		r.fail("writer: other", "writer: the mount's Packages (TIMESTAMP %d) lists %s (SHA1 %s), which the writer does not expect there (known %v)",
			ix.Timestamp(), path, p.Get("SHA1"), known)
		return
	}
	ev := r.begin(&pubEvent{Kind: "remove", How: "rm", Path: path, SHA1: in.SHA1})
	cctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	out, err := exec.CommandContext(cctx, "rm", filepath.Join(r.mnt, path)).CombinedOutput()
	cancel()
	r.finish(ev, err == nil)
	if err != nil {
		r.fail("writer: rm failed", "writer: rm %s: %v: %s\n%s", path, err, out, r.logWindow(ev.Start, ev.End, path))
		return
	}
	r.mu.Lock()
	delete(r.present, path)
	var newest *pubInst
	for _, o := range r.present {
		if o.CPV == in.CPV && (newest == nil || o.BuildTime > newest.BuildTime || o.BuildTime == newest.BuildTime && o.BuildID > newest.BuildID) {
			newest = o
		}
	}
	r.mu.Unlock()
	r.removals.Add(1)
	if _, err := os.Stat(filepath.Join(r.mnt, path)); !errors.Is(err, fs.ErrNotExist) {
		r.fail("writer: removed name still there", "writer: after rm %s, stat on the mount: %v (want ENOENT)", path, err)
	}
	if got, err := pubSHA1File(filepath.Join(r.mnt, ".pkgdirfs/removed", path)); err != nil || got != in.SHA1 {
		r.fail("writer: removed-grace copy unreadable", "writer: after rm %s, .pkgdirfs/removed/%s: SHA1 %q, err %v (want the removed bytes, SHA1 %s, for the grace period)", path, path, got, err, in.SHA1)
	}
	if newest != nil && !strings.HasSuffix(newest.Path, ".gpkg.tar") {
		if got, err := pubSHA1File(filepath.Join(r.mnt, in.CPV+".tbz2")); err != nil || got != newest.SHA1 {
			r.fail("writer: flat name not the newest", "writer: after rm %s, the flat name %s.tbz2 shows SHA1 %q = %s (err %v), want the newest instance %s (SHA1 %s); %s",
				path, in.CPV, got, r.whose(got), err, newest.Path, newest.SHA1, r.settle(filepath.Join(r.mnt, in.CPV+".tbz2"), newest.SHA1, ev.End))
		}
	}
}

// whose names the instance with that SHA1 (present or removed).
func (r *pubRun) whose(sha string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, in := range r.present {
		if in.SHA1 == sha {
			return p
		}
	}
	for p, evs := range r.events {
		for _, e := range evs {
			if e.SHA1 == sha {
				return p + " (" + e.Kind + ")"
			}
		}
	}
	if sha == "da39a3ee5e6b4b0d3255bfef95601890afd80709" {
		return "an empty file"
	}
	return "unknown bytes"
}

// full reports whether the next failure is still reported in full (the
// expensive details are gathered only for those).
func (r *pubRun) full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nFailures < r.max
}

// settle polls path for up to 3 s and tells when (after since) it first
// read as want, or that it never did.
func (r *pubRun) settle(path, want string, since time.Time) string {
	if !r.full() {
		return "(not polled)"
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := pubSHA1File(path); err == nil && got == want {
			return fmt.Sprintf("it shows the new instance %v after the commit", time.Since(since).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Sprintf("still not the new instance %v after the commit", time.Since(since).Round(time.Millisecond))
}

// logWindow returns the daemon log lines from 1 s before from to 1 s after
// to, and any line naming one of needles, at most 40 lines.
func (r *pubRun) logWindow(from, to time.Time, needles ...string) string {
	if !r.full() {
		return ""
	}
	f, err := os.Open(r.log)
	if err != nil {
		return fmt.Sprintf("(daemon log %s: %v)", r.log, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		keep := false
		for _, n := range needles {
			if n != "" && strings.Contains(l, n) {
				keep = true
			}
		}
		if v, ok := strings.CutPrefix(l, "time="); ok && !keep {
			ts, _, _ := strings.Cut(v, " ")
			if tm, err := time.Parse(time.RFC3339Nano, ts); err == nil && !tm.Before(from.Add(-time.Second)) && !tm.After(to.Add(time.Second)) {
				keep = true
			}
		}
		if keep {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = append(lines[:20:20], append([]string{fmt.Sprintf("... (%d lines)", len(lines)-40)}, lines[len(lines)-20:]...)...)
	}
	if len(lines) == 0 {
		return fmt.Sprintf("(daemon log %s: no line between %s and %s)", r.log, from.Add(-time.Second).Format("15:04:05.000"), to.Add(time.Second).Format("15:04:05.000"))
	}
	return fmt.Sprintf("daemon log %s around %s .. %s:\n  %s", r.log, from.Format("15:04:05.000"), to.Format("15:04:05.000"), strings.Join(lines, "\n  "))
}

// pubClient is one binhost client looping over fetch, check, download.
type pubClient struct {
	id    int
	run   *pubRun
	url   string
	c     *binhost.Client
	cache *binhost.Cache
	rng   *rand.Rand

	lastTS, lastLM                    int64 // highest TIMESTAMP / Last-Modified seen so far
	n200, n304, n200NotNewer          int64
	downloads, goneAtDownload, rounds int64
}

func (cl *pubClient) fail(kind, format string, args ...any) {
	cl.run.fail(kind, "client %d, round %d: "+format, append([]any{cl.id, cl.rounds}, args...)...)
}

// round fetches the index (with the cache), checks it, then downloads and
// verifies its new entries and a random sample of it.
func (cl *pubClient) round(ctx context.Context, sample int) {
	cl.rounds++
	prev := cl.cache.Index
	cl.c.ResetExchanges()
	t0 := time.Now()
	ix, fromCache, err := cl.c.Fetch(ctx, cl.url, cl.cache)
	t1 := time.Now()
	ex := cl.c.Exchanges()
	for _, e := range ex {
		switch e.Status {
		case http.StatusOK:
			cl.n200++
			if fromCache {
				cl.n200NotNewer++
			}
			lm, perr := http.ParseTime(e.ResponseHeader.Get("Last-Modified"))
			if perr != nil {
				cl.fail("client: index HTTP", "GET %s: 200 without a valid Last-Modified (%q)", e.URL, e.ResponseHeader.Get("Last-Modified"))
				continue
			}
			if lm.Unix() < cl.lastLM {
				cl.fail("client: index Last-Modified went back", "GET %s at %s: Last-Modified went back from %d to %d (%s)", e.URL, t0.Format("15:04:05.000"), cl.lastLM, lm.Unix(), e.ResponseHeader.Get("Last-Modified"))
			}
			cl.lastLM = max(cl.lastLM, lm.Unix())
		case http.StatusNotModified:
			cl.n304++
		default:
			cl.fail("client: index HTTP", "GET %s at %s: HTTP %d (err %v)", e.URL, t0.Format("15:04:05.000"), e.Status, e.Err)
		}
	}
	if err != nil {
		cl.fail("client: index fetch failed", "fetch at %s: %v\n%s\n%s", t0.Format("15:04:05.000"), err, exchangesString(ex), cl.run.logWindow(t0, t1))
		return
	}
	if !fromCache {
		if msg := pubCheckIndex(ix, true); msg != "" {
			cl.fail("client: index inconsistent", "index fetched at %s (TIMESTAMP %d, Last-Modified %q) is inconsistent: %s", t0.Format("15:04:05.000"), ix.Timestamp(), ix.LastModified, msg)
		}
		if ix.Timestamp() < cl.lastTS {
			cl.fail("client: index TIMESTAMP went back", "index fetched at %s: TIMESTAMP %d is below the previous %d", t0.Format("15:04:05.000"), ix.Timestamp(), cl.lastTS)
		}
		cl.lastTS = max(cl.lastTS, ix.Timestamp())
		cl.checkPublished(ix, t0, t1)
	}

	// The sample: every entry new since the previous index, plus a few random ones.
	seen := map[string]bool{}
	if prev != nil {
		for _, p := range prev.Packages {
			seen[p.Path()] = true
		}
	}
	var todo []*binhost.Package
	picked := map[string]bool{}
	if prev != nil && prev != ix {
		for _, p := range ix.Packages {
			if !seen[p.Path()] {
				todo = append(todo, p)
				picked[p.Path()] = true
			}
		}
	}
	extra := 0
	for _, k := range cl.rng.Perm(len(ix.Packages)) {
		if extra == sample {
			break
		}
		if p := ix.Packages[k]; !picked[p.Path()] {
			todo = append(todo, p)
			extra++
		}
	}
	for _, p := range todo {
		cl.download(ctx, ix, p)
	}
}

// checkPublished compares an index fetched between t0 and t1 with the
// writer's publications: everything committed before t0 is listed, nothing
// removed before t0 is, and nothing is listed before it was written.
func (cl *pubClient) checkPublished(ix *binhost.Index, t0, t1 time.Time) {
	listed := map[string]string{}
	for _, p := range ix.Packages {
		listed[strings.TrimLeft(p.Path(), "/")] = p.Get("SHA1")
	}
	r := cl.run
	r.mu.Lock()
	var problems []string
	for path, evs := range r.events {
		last := evs[len(evs)-1]
		var lastDone *pubEvent // the last publication complete before t0
		for _, e := range evs {
			if !e.End.IsZero() && e.End.Before(t0) {
				lastDone = e
			}
		}
		sha, ok := listed[path]
		switch {
		case lastDone != nil && lastDone.Kind == "add" && !ok && !(last.Kind == "remove" && last.Start.Before(t1)):
			problems = append(problems, fmt.Sprintf("%s is missing, committed before the fetch (%s)", path, lastDone))
		case lastDone != nil && lastDone.Kind == "remove" && ok && !(last.Kind == "add" && last.Start.Before(t1)):
			problems = append(problems, fmt.Sprintf("%s is still listed, removed before the fetch (%s)", path, lastDone))
		case ok && evs[0].Kind == "add" && !evs[0].Start.Before(t1):
			problems = append(problems, fmt.Sprintf("%s is listed before it was written (%s)", path, evs[0]))
		case ok && evs[0].Kind == "add" && sha != evs[0].SHA1:
			problems = append(problems, fmt.Sprintf("%s is listed with SHA1 %s, written %s (%s)", path, sha, evs[0].SHA1, evs[0]))
		}
	}
	for path, sha := range listed {
		if _, ok := r.events[path]; ok {
			continue
		}
		if in, ok := r.present[path]; ok && in.Initial {
			if in.SHA1 != sha {
				problems = append(problems, fmt.Sprintf("initial instance %s is listed with SHA1 %s, imported %s", path, sha, in.SHA1))
			}
			continue
		}
		// Not yet recorded: written now (the writer records after its checks).
		if !cl.knownLater(path) {
			problems = append(problems, fmt.Sprintf("%s (SHA1 %s) is listed but neither imported nor (yet) written", path, sha))
		}
	}
	r.mu.Unlock()
	if len(problems) > 0 {
		sort.Strings(problems)
		cl.fail("client: index disagrees with the writer", "index fetched %s .. %s (TIMESTAMP %d) disagrees with what the writer published:\n  %s\n%s",
			t0.Format("15:04:05.000"), t1.Format("15:04:05.000"), ix.Timestamp(), strings.Join(problems, "\n  "), r.logWindow(t0, t1))
	}
}

// knownLater: a path the writer is committing right now has no event yet
// (it records after its own checks); it is the writer's if it is at a name of
// one of the writer's CPVs with a build id above all recorded ones. Called
// with run.mu held.
func (cl *pubClient) knownLater(path string) bool {
	m := pubMultiRE.FindStringSubmatch(path)
	if m == nil {
		return false
	}
	id, _ := strconv.ParseInt(m[4], 10, 64)
	cpv := m[1] + "/" + m[3]
	var maxID int64
	for _, in := range cl.run.present {
		if in.CPV == cpv {
			maxID = max(maxID, in.BuildID)
		}
	}
	for p := range cl.run.events {
		if mm := pubMultiRE.FindStringSubmatch(p); mm != nil && mm[1]+"/"+mm[3] == cpv {
			n, _ := strconv.ParseInt(mm[4], 10, 64)
			maxID = max(maxID, n)
		}
	}
	return id > maxID
}

// download fetches one entry of ix through nginx and verifies it.
func (cl *pubClient) download(ctx context.Context, ix *binhost.Index, p *binhost.Package) {
	path := strings.TrimLeft(p.Path(), "/")
	_, serr := os.Stat(filepath.Join(cl.run.mnt, path))
	gone := errors.Is(serr, fs.ErrNotExist)
	before := len(cl.c.Exchanges())
	t0 := time.Now()
	_, err := cl.c.Download(ctx, p)
	t1 := time.Now()
	if err == nil {
		cl.downloads++
		if gone {
			cl.goneAtDownload++
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	status := 0
	if ex := cl.c.Exchanges(); len(ex) > before {
		status = ex[len(ex)-1].Status
	}
	nowSum, nowErr := pubSHA1File(filepath.Join(cl.run.mnt, path))
	remSum, remErr := pubSHA1File(filepath.Join(cl.run.mnt, ".pkgdirfs/removed", path))
	kind := "client: download failed"
	switch {
	case status == http.StatusNotFound:
		kind = "client: download 404"
	case status == http.StatusOK:
		kind = "client: download fails verification"
	}
	cl.fail(kind, "download of an entry of the index it holds (TIMESTAMP %d, fetched as %s, Last-Modified %q) at %s .. %s: GET %s -> HTTP %d: %v\n"+
		"  on the mount (as root): stat before the GET: %v; read after: %s; .pkgdirfs/removed/%s read after: %s (index SHA1 %s)\n  writer: %s\n%s",
		ix.Timestamp(), ix.URL, ix.LastModified, t0.Format("15:04:05.000"), t1.Format("15:04:05.000"), p.URL(), status, err,
		errOrOK(serr), sumOrErr(nowSum, nowErr), path, sumOrErr(remSum, remErr), p.Get("SHA1"), cl.run.eventsOf(path), cl.run.logWindow(t0, t1, filepath.Base(path)))
}

func sumOrErr(sum string, err error) string {
	if err != nil {
		return err.Error()
	}
	return "SHA1 " + sum
}

func errOrOK(err error) string {
	if err == nil {
		return "exists"
	}
	return err.Error()
}

// pubMultiRE matches a multi-instance PATH: CAT/PN/PF-BUILD_ID.xpak.
var pubMultiRE = regexp.MustCompile(`^([^/]+)/([^/]+)/([^/]+)-([0-9]+)\.xpak$`)

// pubVersionRE splits a PF into PN and version (with revision).
var pubVersionRE = regexp.MustCompile(`^(.+?)-([0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|p)[0-9]*)*(-r[0-9]+)?)$`)

func pubPN(pf string) string {
	if m := pubVersionRE.FindStringSubmatch(pf); m != nil {
		return m[1]
	}
	return pf
}

// pubCheckIndex checks that an index is internally consistent: PACKAGES is
// the number of package blocks; every block has CPV, PATH, SIZE, MD5 and
// SHA1; no PATH twice; every PATH is CAT/PN/PF-BUILD_ID.xpak of its CPV and
// BUILD_ID; TIMESTAMP present and (fetched) equal to Last-Modified.
func pubCheckIndex(ix *binhost.Index, fetched bool) string {
	var problems []string
	ts, ok := ix.Header["TIMESTAMP"]
	if !ok || ts == "" {
		problems = append(problems, "no TIMESTAMP in the header")
	} else if fetched && (ix.LastModified == "" || ix.RemoteTimestamp != ix.Timestamp()) {
		problems = append(problems, fmt.Sprintf("Last-Modified %q (%d) != TIMESTAMP %s", ix.LastModified, ix.RemoteTimestamp, ts))
	}
	// Raw blocks after the header, each a run of non-empty lines.
	blocks := 0
	parts := strings.Split(strings.TrimRight(string(ix.Raw), "\n"), "\n\n")
	for _, b := range parts[1:] {
		if strings.TrimSpace(b) != "" {
			blocks++
		}
	}
	if n := ix.Header["PACKAGES"]; n != strconv.Itoa(len(ix.Packages)) || blocks != len(ix.Packages) {
		problems = append(problems, fmt.Sprintf("PACKAGES: %q, %d blocks in the text, %d package blocks read", n, blocks, len(ix.Packages)))
	}
	paths := map[string]bool{}
	for _, p := range ix.Packages {
		for _, k := range []string{"CPV", "PATH", "SIZE", "MD5", "SHA1", "BUILD_ID"} {
			if p.Get(k) == "" {
				problems = append(problems, fmt.Sprintf("%s has no %s", p, k))
			}
		}
		path := strings.TrimLeft(p.Path(), "/")
		if paths[path] {
			problems = append(problems, fmt.Sprintf("PATH %s listed twice", path))
		}
		paths[path] = true
		cat, pf, _ := strings.Cut(p.CPV(), "/")
		if want := fmt.Sprintf("%s/%s/%s-%s.xpak", cat, pubPN(pf), pf, p.Get("BUILD_ID")); path != want {
			problems = append(problems, fmt.Sprintf("%s: PATH %s, want %s", p, path, want))
		}
	}
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... %d more", len(problems)-10))
	}
	return strings.Join(problems, "; ")
}

// pubXpak builds an xpak package: a plain tar with one small file, the XPAK
// block (CATEGORY, PF, SLOT, EAPI, BUILD_TIME, USE), BE32(len(block)), "STOP".
func pubXpak(cat, pf string, buildTime int64, content string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "usr/share/" + pubPN(pf) + "/build", Mode: 0o644, Size: int64(len(content)),
		ModTime: time.Unix(buildTime, 0), Typeflag: tar.TypeReg}
	_ = tw.WriteHeader(hdr) // writes to a bytes.Buffer cannot fail
	_, _ = tw.Write([]byte(content))
	_ = tw.Close()
	meta := [][2]string{
		{"BUILD_TIME", strconv.FormatInt(buildTime, 10) + "\n"},
		{"CATEGORY", cat + "\n"},
		{"EAPI", "8\n"},
		{"PF", pf + "\n"},
		{"SLOT", "0\n"},
		{"USE", "amd64 elibc_glibc kernel_linux\n"},
	}
	be := func(w *bytes.Buffer, n int) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n))
		w.Write(b[:])
	}
	var index, data bytes.Buffer
	for _, kv := range meta {
		be(&index, len(kv[0]))
		index.WriteString(kv[0])
		be(&index, data.Len())
		be(&index, len(kv[1]))
		data.WriteString(kv[1])
	}
	var block bytes.Buffer
	block.WriteString("XPAKPACK")
	be(&block, index.Len())
	be(&block, data.Len())
	block.Write(index.Bytes())
	block.Write(data.Bytes())
	block.WriteString("XPAKSTOP")
	buf.Write(block.Bytes())
	be(&buf, block.Len())
	buf.WriteString("STOP")
	return buf.Bytes()
}

// pubGet is a plain GET; it returns the status and the SHA1 of the body.
func pubGet(url string) (int, string, error) {
	resp, err := nginxHTTP.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	h := sha1.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, hex.EncodeToString(h.Sum(nil)), nil
}

func pubSHA1File(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:]), nil
}
