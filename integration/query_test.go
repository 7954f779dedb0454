package integration

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// query, prune, stats and mount --keep (issue 13), on real mounts: every
// answer is checked against what the mount's Packages lists.

// qInst is one block of an index with what query selects by.
type qInst struct {
	instance
	Cat, PN string
	Slot    string
	Use     []string
}

func qInstances(t *testing.T, idx *pkgIndex) []qInst {
	t.Helper()
	var out []qInst
	for _, in := range instances(idx) {
		cat, pn, _, err := splitCPV(in.CPV)
		if err != nil {
			t.Fatal(err)
		}
		slot, ok := get(in.Block, "SLOT")
		if !ok {
			slot = "0" // omitted when "0" (portage-facts §4.5)
		}
		use, _ := get(in.Block, "USE")
		out = append(out, qInst{instance: in, Cat: cat, PN: pn, Slot: slot, Use: strings.Fields(use)})
	}
	return out
}

func (q qInst) hasUse(f string) bool { return slices.Contains(q.Use, f) }

// allFixturesState imports every fixture into one state; bySHA1 names a
// source file of each package.
func allFixturesState(t *testing.T) (state string, bySHA1 map[string]string) {
	t.Helper()
	bySHA1 = map[string]string{}
	var srcs []string
	for _, name := range allFixtures {
		src := extractFixture(t, name)
		srcs = append(srcs, src)
		if name == legacyFixture {
			continue // the packages of xpak-bzip2-flat again
		}
		for _, b := range readFixtureIndex(t, src).Blocks {
			sha, _ := get(b, "SHA1")
			p, _ := get(b, "PATH")
			bySHA1[sha] = filepath.Join(src, p)
		}
	}
	state = t.TempDir()
	if r, _ := importDirs(t, state, srcs...); r.Code != 0 {
		t.Fatalf("import of all fixtures: %s", r)
	}
	return state, bySHA1
}

// queryRowJSON is one element of `query --format json`.
type queryRowJSON struct {
	CPV       string   `json:"cpv"`
	BuildID   int64    `json:"build_id"`
	BuildTime int64    `json:"build_time"`
	Size      int64    `json:"size"`
	Slot      string   `json:"slot"`
	Format    string   `json:"format"`
	Path      string   `json:"path"`
	Use       []string `json:"use"`
}

var queryJSONKeys = []string{"build_id", "build_time", "cpv", "format", "path", "size", "slot", "use"}

func queryJSON(t *testing.T, state string, args ...string) []queryRowJSON {
	t.Helper()
	r := runCLI(t, append([]string{"query", "--state", state, "--format", "json"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("query %v: want exit 0: %s", args, r)
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(r.Stdout, &raw); err != nil {
		t.Fatalf("query %v --format json: not a JSON array: %v\n%s", args, err, r)
	}
	for _, m := range raw {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !slices.Equal(keys, queryJSONKeys) {
			t.Fatalf("query --format json: keys %v, want exactly %v", keys, queryJSONKeys)
		}
	}
	var rows []queryRowJSON
	if err := json.Unmarshal(r.Stdout, &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func pathsOf[T any](xs []T, path func(T) string) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, path(x))
	}
	sort.Strings(out)
	return out
}

// checkQueryRows compares query's rows with the index blocks they must be.
func checkQueryRows(t *testing.T, what string, rows []queryRowJSON, want []qInst) {
	t.Helper()
	got := pathsOf(rows, func(r queryRowJSON) string { return r.Path })
	exp := pathsOf(want, func(q qInst) string { return q.Path })
	if !slices.Equal(got, exp) {
		t.Errorf("query %s: %d paths %v\nwant the %d the index lists: %v", what, len(got), got, len(exp), exp)
		return
	}
	byPath := map[string]qInst{}
	for _, q := range want {
		byPath[q.Path] = q
	}
	for _, r := range rows {
		q := byPath[r.Path]
		use := q.Use
		if use == nil {
			use = []string{}
		}
		w := queryRowJSON{CPV: q.CPV, BuildID: q.BuildID, BuildTime: q.BuildTime, Size: q.Size, Slot: q.Slot,
			Format: q.Format, Path: q.Path, Use: use}
		if fmt.Sprint(r) != fmt.Sprint(w) {
			t.Errorf("query %s: row %+v, the index says %+v", what, r, w)
		}
	}
}

func selectInsts(all []qInst, pred func(q qInst) bool) []qInst {
	var out []qInst
	for _, q := range all {
		if pred(q) {
			out = append(out, q)
		}
	}
	return out
}

// timeCut is a time halfway between two BUILD_TIMEs at least 20 s apart
// (in the upper half), and the distinct BUILD_TIMEs.
func timeCut(t *testing.T, all []qInst) (int64, []int64) {
	t.Helper()
	var times []int64
	for _, q := range all {
		times = append(times, q.BuildTime)
	}
	slices.Sort(times)
	times = slices.Compact(times)
	for i := len(times) / 2; i+1 < len(times); i++ {
		if times[i+1]-times[i] >= 20 {
			return (times[i] + times[i+1]) / 2, times
		}
	}
	t.Fatalf("premise: no two BUILD_TIMEs 20 s apart in the upper half of %v", times)
	return 0, nil
}

func TestQueryFixtures(t *testing.T) {
	t.Parallel()
	state, _ := allFixturesState(t)
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	idx, raw0 := wReadIndex(t, mnt)
	all := qInstances(t, idx)
	if len(all) < 100 {
		t.Fatalf("premise: the fixtures give %d instances", len(all))
	}
	slot := func(q qInst) (string, string) { m, s, _ := strings.Cut(q.Slot, "/"); return m, s }
	cases := []struct {
		args []string
		want func(q qInst) bool
	}{
		{nil, func(q qInst) bool { return true }},
		{[]string{"app-misc/hello"}, func(q qInst) bool { return q.Cat == "app-misc" && q.PN == "hello" }},
		{[]string{"=app-misc/hello-2.10"}, func(q qInst) bool { return q.CPV == "app-misc/hello-2.10" }},
		{[]string{"=app-misc/hello-2.10-2"}, func(q qInst) bool { return q.CPV == "app-misc/hello-2.10" && q.BuildID == 2 }},
		{[]string{"=app-misc/hello-2.9"}, func(q qInst) bool { return false }},
		{[]string{">=dev-libs/glib-2.80"}, func(q qInst) bool { return q.CPV == "dev-libs/glib-2.80.5-r1" }},
		{[]string{">=dev-libs/glib-2.81"}, func(q qInst) bool { return false }},
		{[]string{"<dev-libs/glib-2.80.5-r2"}, func(q qInst) bool { return q.CPV == "dev-libs/glib-2.80.5-r1" }},
		{[]string{"<dev-libs/glib-2.80.5-r1"}, func(q qInst) bool { return false }},
		{[]string{"~dev-libs/glib-2.80.5"}, func(q qInst) bool { return q.CPV == "dev-libs/glib-2.80.5-r1" }},
		{[]string{"=dev-libs/glib-2.80.5"}, func(q qInst) bool { return false }},
		{[]string{"=dev-libs/glib-2.80*"}, func(q qInst) bool { return q.CPV == "dev-libs/glib-2.80.5-r1" }},
		{[]string{"=dev-libs/glib-2.8*"}, func(q qInst) bool { return false }},
		{[]string{"app-arch/zstd:0/1"}, func(q qInst) bool { return q.Cat == "app-arch" && q.PN == "zstd" && q.Slot == "0/1" }},
		{[]string{"app-arch/zstd:0/2"}, func(q qInst) bool { return false }},
		{[]string{"dev-libs/*:2"}, func(q qInst) bool { m, _ := slot(q); return q.Cat == "dev-libs" && m == "2" }},
		{[]string{"*/*:0/1"}, func(q qInst) bool { return q.Slot == "0/1" }},
		{[]string{"dev-libs/*"}, func(q qInst) bool { return q.Cat == "dev-libs" }},
		{[]string{"app-misc/hello", "dev-libs/*"}, func(q qInst) bool { return q.PN == "hello" || q.Cat == "dev-libs" }},
		{[]string{"--use", "ssl,-nls"}, func(q qInst) bool { return q.hasUse("ssl") && !q.hasUse("nls") }},
		{[]string{"--use", "static-libs", "dev-libs/*"}, func(q qInst) bool { return q.Cat == "dev-libs" && q.hasUse("static-libs") }},
		{[]string{"app-misc/hello[nls]"}, func(q qInst) bool { return q.PN == "hello" && q.hasUse("nls") }},
	}
	// Build-time windows: a threshold between two BUILD_TIMEs far enough
	// apart that the seconds a query takes do not matter.
	cut, times := timeCut(t, all)
	now := time.Now().Unix()
	age := now - cut
	cases = append(cases,
		struct {
			args []string
			want func(q qInst) bool
		}{[]string{"--older-than", fmt.Sprintf("%ds", age)}, func(q qInst) bool { return q.BuildTime < cut }},
		struct {
			args []string
			want func(q qInst) bool
		}{[]string{"--newer-than", fmt.Sprintf("%.7fd", float64(age)/86400)}, func(q qInst) bool { return q.BuildTime >= cut }},
		struct {
			args []string
			want func(q qInst) bool
		}{[]string{"--newer-than", fmt.Sprintf("%ds", now-times[0]+30), "--older-than", fmt.Sprintf("%ds", age), "app-misc/hello"},
			func(q qInst) bool { return q.BuildTime < cut && q.PN == "hello" }},
	)
	if now-times[len(times)-1] > 2*86400 {
		cases = append(cases, struct {
			args []string
			want func(q qInst) bool
		}{[]string{"--older-than", "1d"}, func(q qInst) bool { return true }},
			struct {
				args []string
				want func(q qInst) bool
			}{[]string{"--newer-than", "1d"}, func(q qInst) bool { return false }})
	}
	for _, c := range cases {
		rows := queryJSON(t, state, c.args...)
		checkQueryRows(t, strings.Join(c.args, " "), rows, selectInsts(all, c.want))
	}

	// table: one aligned row per build, the same builds as json.
	r := runCLI(t, "query", "--state", state, "app-misc/hello", "dev-libs/*")
	if r.Code != 0 {
		t.Fatalf("query (table): %s", r)
	}
	want := selectInsts(all, func(q qInst) bool { return q.PN == "hello" || q.Cat == "dev-libs" })
	lines := strings.Split(strings.TrimRight(string(r.Stdout), "\n"), "\n")
	if len(lines) != len(want)+1 || !regexp.MustCompile(`^CPV +BUILD_ID +BUILT \(UTC\) +SIZE +USE +PATH$`).MatchString(lines[0]) {
		t.Fatalf("query table: want a header and %d rows, got:\n%s", len(want), r.Stdout)
	}
	pathCol := strings.Index(lines[0], "PATH")
	byPath := map[string]qInst{}
	for _, q := range want {
		byPath[q.Path] = q
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		p := l[min(pathCol, len(l)):]
		q, ok := byPath[p]
		if !ok || len(f) < 6 {
			t.Errorf("query table row %q: PATH column (at %d) %q is not one of the builds listed", l, pathCol, p)
			continue
		}
		delete(byPath, p)
		built := time.Unix(q.BuildTime, 0).UTC().Format("2006-01-02 15:04")
		wantRow := fmt.Sprintf("%s %d %s %d %s %s", q.CPV, q.BuildID, built, q.Size, strings.Join(q.Use, " "), q.Path)
		if strings.Join(f, " ") != wantRow {
			t.Errorf("query table row:\n  %s\nwant the index's\n  %s", strings.Join(f, " "), wantRow)
		}
	}
	// paths: fed to sha1sum inside the mount, the index's SHA1s come out.
	sums := shell(t, mnt, binPath+" query --state "+shQuote(state)+" --format paths app-misc/hello '>=dev-libs/glib-2.80' | xargs sha1sum")
	if sums.Code != 0 {
		t.Fatalf("query --format paths | xargs sha1sum in the mount: %s", sums)
	}
	want = selectInsts(all, func(q qInst) bool { return q.PN == "hello" || q.PN == "glib" })
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimRight(string(sums.Stdout), "\n"), "\n") {
		sum, p, _ := strings.Cut(l, "  ")
		got[p] = sum
	}
	if len(got) != len(want) {
		t.Errorf("query --format paths | xargs sha1sum: %d files, want %d:\n%s", len(got), len(want), sums.Stdout)
	}
	for _, q := range want {
		if got[q.Path] != q.SHA1 {
			t.Errorf("sha1sum MNT/%s = %q, Packages SHA1 %s", q.Path, got[q.Path], q.SHA1)
		}
	}

	// Bad atoms and flags: exit 2, a message naming the problem, no output.
	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{[]string{"app-misc/hello-2.10"}, "needs an operator"},
		{[]string{"!app-misc/hello"}, "blockers"},
		{[]string{">=app-misc/hello"}, "not a valid atom"},
		{[]string{"--use", "s!sl"}, "invalid USE flag"},
		{[]string{"--older-than", "soon"}, "not a duration"},
		{[]string{"--format", "xml"}, "want table, json or paths"},
	} {
		r := runCLI(t, append([]string{"query", "--state", state}, bad.args...)...)
		if r.Code != 2 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), bad.msg) {
			t.Errorf("query %v: want exit 2, no output and %q on stderr: %s", bad.args, bad.msg, r)
		}
	}
	if r := runCLI(t, "query", "--help"); r.Code != 0 || !strings.Contains(string(r.Stdout), "Usage: pkgdirfs query") {
		t.Errorf("query --help: %s", r)
	}
	// The mount went on undisturbed: same generation, same index.
	if _, raw := wReadIndex(t, mnt); !bytes.Equal(raw, raw0) {
		t.Errorf("queries changed the mounted state's Packages")
	}
}

// expectKeep is what prune --keep N [--per-use] leaves of insts: the N
// newest (BUILD_TIME, then BUILD_ID) of each CPV (and USE set), plus the
// protected ones.
func expectKeep(insts []qInst, n int, perUse bool, protected func(qInst) bool) (kept, removed []qInst) {
	groups := map[string][]qInst{}
	for _, q := range insts {
		k := q.CPV
		if perUse {
			u := slices.Clone(q.Use)
			sort.Strings(u)
			k += "|" + strings.Join(slices.Compact(u), " ")
		}
		groups[k] = append(groups[k], q)
	}
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool {
			if g[i].BuildTime != g[j].BuildTime {
				return g[i].BuildTime > g[j].BuildTime
			}
			return g[i].BuildID > g[j].BuildID
		})
		for i, q := range g {
			if i < n || (protected != nil && protected(q)) {
				kept = append(kept, q)
			} else {
				removed = append(removed, q)
			}
		}
	}
	return kept, removed
}

var pruneLineRE = regexp.MustCompile(`^(removed|would remove) (\S+) build (\d+) \(built [^,]+, (\d+) bytes\): (\S+)$`)
var (
	pruneSumRE    = regexp.MustCompile(`^(removed|would remove) (\d+) builds? of (\d+) CPVs?, (\d+) bytes \([^)]*\); (freed|would free) (\d+) bytes \([^)]*\)( now)?((?:, [^;]+)?); kept (\d+)$`)
	pruneSpaceRE  = regexp.MustCompile(`^, (\d+) bytes \([^)]*\) (when their removal grace ends|still held by other hard links \(imported originals or exports\)|still used by other builds)`)
	pruneSpaceKey = map[string]int{"when their removal grace ends": 0, "still held by other hard links (imported originals or exports)": 1, "still used by other builds": 2}
)

// pruneSum is prune's summary line: the builds removed and where their
// blobs' space went.
type pruneSum struct {
	Builds, CPVs, Kept int
	Bytes              int64 // the builds' sizes
	Now                int64 // freed now (would free, in a dry run)
	AtGraceEnd         int64
	HeldLinks          int64
	Shared             int64
}

// parsePruneSum parses the summary line, failing the test if it is not one.
func parsePruneSum(t *testing.T, line string, dry bool) pruneSum {
	t.Helper()
	m := pruneSumRE.FindStringSubmatch(line)
	if m == nil || (m[1] == "would remove") != dry || (m[5] == "would free") != dry || (m[7] == " now") == dry {
		t.Fatalf("prune summary %q is not `removed N builds of M CPVs, S bytes (H); freed F bytes (H) now[, G bytes (H) when their removal grace ends][, ...]; kept K` (dry run %v)", line, dry)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	sum := pruneSum{Builds: int(n(m[2])), CPVs: int(n(m[3])), Bytes: n(m[4]), Now: n(m[6]), Kept: int(n(m[9]))}
	parts := []*int64{&sum.AtGraceEnd, &sum.HeldLinks, &sum.Shared}
	for rest := m[8]; rest != ""; {
		c := pruneSpaceRE.FindStringSubmatch(rest)
		if c == nil {
			t.Fatalf("prune summary %q: cannot read %q", line, rest)
		}
		*parts[pruneSpaceKey[c[2]]] = n(c[1])
		rest = rest[len(c[0]):]
	}
	return sum
}

// runPrune runs prune and checks its lines against the builds it must
// remove and keep; it returns the summary.
func runPrune(t *testing.T, state string, removed, kept []qInst, args ...string) pruneSum {
	t.Helper()
	r := runCLI(t, append([]string{"prune", "--state", state}, args...)...)
	if r.Code != 0 {
		t.Fatalf("prune %v: want exit 0: %s", args, r)
	}
	lines := strings.Split(strings.TrimRight(string(r.Stdout), "\n"), "\n")
	dry := slices.Contains(args, "--dry-run")
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	var got []string
	for _, l := range lines[:len(lines)-1] {
		m := pruneLineRE.FindStringSubmatch(l)
		if m == nil || m[1] != verb {
			t.Errorf("prune %v: line %q is not `%s CPV build N (built ..., SIZE bytes): PATH`", args, l, verb)
			continue
		}
		got = append(got, m[5])
	}
	sort.Strings(got)
	want := pathsOf(removed, func(q qInst) string { return q.Path })
	if !slices.Equal(got, want) {
		t.Errorf("prune %v removes %d: %v\nwant %d: %v", args, len(got), got, len(want), want)
	}
	var bytes int64
	cpvs := map[string]bool{}
	for _, q := range removed {
		bytes += q.Size
		cpvs[q.CPV] = true
	}
	sum := parsePruneSum(t, lines[len(lines)-1], dry)
	if sum.Builds != len(removed) || sum.CPVs != len(cpvs) || sum.Bytes != bytes || sum.Kept != len(kept) {
		t.Errorf("prune %v: summary %q, want %d builds of %d CPVs, %d bytes, kept %d", args, lines[len(lines)-1], len(removed), len(cpvs), bytes, len(kept))
	}
	return sum
}

// blobsOf is the blob files (STATE/blobs/hh/SHA256) of the packages at
// paths under dir.
func blobsOf(t *testing.T, state, dir string, paths []string) []string {
	t.Helper()
	var out []string
	for _, sum := range digestPaths(t, "sha256sum", dir, paths) {
		out = append(out, filepath.Join(state, "blobs", sum[:2], sum))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// allocated is the space the files hold on disk (st_blocks), each inode
// once; a missing file holds none.
func allocated(t *testing.T, files []string) int64 {
	t.Helper()
	var n int64
	seen := map[uint64]bool{}
	for _, f := range files {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err == nil && !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
	}
	return n
}

// filesUnder lists the regular files below dir, except below skip.
func filesUnder(t *testing.T, dir, skip string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p == skip:
			return filepath.SkipDir
		case d.Type().IsRegular():
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// blobSpace is the free space of the filesystem fsdir (which holds only
// the state and the PKGDIR) plus what the state's files other than its
// blobs hold: it changes only by what the blob store releases or takes.
func blobSpace(t *testing.T, fsdir, state string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(fsdir, &st); err != nil {
		t.Fatal(err)
	}
	other := filesUnder(t, state, filepath.Join(state, "blobs"))
	// The index cache lives beside the blobs and is rewritten as the
	// mount likes: it is not the blob store's.
	if cache := filepath.Join(state, "blobs", ".index-cache"); lexistsT(cache) {
		other = append(other, filesUnder(t, cache, "")...)
	}
	return int64(st.Bfree)*st.Bsize + allocated(t, other)
}

func lexistsT(p string) bool { _, err := os.Lstat(p); return err == nil }

func TestPruneFixtures(t *testing.T) {
	t.Parallel()
	state, bySHA1 := allFixturesState(t)
	mi := mountFSInfo(t, state, "--allow-other")
	mnt := mi.Dir
	ng := startNginx(t, mnt)
	idx, raw0 := wReadIndex(t, mnt)
	all := qInstances(t, idx)
	stats0 := runCLI(t, "stats", "--state", state, "--format", "json")

	// --dry-run lists what --keep 1 removes and changes nothing.
	kept, removed := expectKeep(all, 1, false, nil)
	if len(removed) == 0 || len(kept) != len(all)-len(removed) {
		t.Fatalf("premise: some CPV has several builds")
	}
	// It would free what the blobs hold (a dry run cannot know the grace).
	if sum := runPrune(t, state, removed, kept, "--keep", "1", "--dry-run"); sum.Now != allocated(t, blobsOf(t, state, mnt, pathsOf(removed, func(q qInst) string { return q.Path }))) || sum.Now == 0 {
		t.Errorf("prune --dry-run: would free %d bytes, want what the blobs of those builds hold", sum.Now)
	}
	if _, raw := wReadIndex(t, mnt); !bytes.Equal(raw, raw0) {
		t.Errorf("prune --dry-run changed Packages")
	}
	if s := runCLI(t, "stats", "--state", state, "--format", "json"); !bytes.Equal(s.Stdout, stats0.Stdout) {
		t.Errorf("prune --dry-run changed the catalog: stats before\n%s\nafter\n%s", stats0.Stdout, s.Stdout)
	}

	var gone []qInst
	step := func(what string, n int, perUse bool, protected func(qInst) bool, args ...string) {
		t.Helper()
		idx, _ := wReadIndex(t, mnt)
		cur := qInstances(t, idx)
		kept, removed := expectKeep(cur, n, perUse, protected)
		if len(removed) == 0 {
			t.Fatalf("%s: premise: something to remove", what)
		}
		// The mount's removal grace (15 min) holds their blobs: nothing is
		// freed now, all of it when the grace ends.
		held := allocated(t, blobsOf(t, state, mnt, pathsOf(removed, func(q qInst) string { return q.Path })))
		if sum := runPrune(t, state, removed, kept, args...); sum.Now != 0 || sum.AtGraceEnd != held || held == 0 || sum.HeldLinks+sum.Shared != 0 {
			t.Errorf("%s: prune reports %+v, want 0 bytes freed now and %d when the grace ends", what, sum, held)
		}
		gone = append(gone, removed...)
		// Packages follows at once: exactly the builds kept.
		idx, _ = wReadIndex(t, mnt)
		after := pathsOf(instances(idx), func(in instance) string { return in.Path })
		if want := pathsOf(kept, func(q qInst) string { return q.Path }); !slices.Equal(after, want) {
			t.Errorf("%s: MNT/Packages lists %d builds, want the %d kept", what, len(after), len(want))
		}
	}
	// One build per USE set of each CPV.
	step("--per-use", 1, true, nil, "--keep", "1", "--per-use")
	// --keep-atoms protects what it names (a world file: comments, blank lines).
	atoms := filepath.Join(t.TempDir(), "world")
	os.WriteFile(atoms, []byte("# kept whatever the policy says\napp-misc/hello\n\n=dev-libs/libxml2-2.12.9:2/2.13  # with a slot\n"), 0o644)
	protect := func(q qInst) bool { return q.PN == "hello" || q.CPV == "dev-libs/libxml2-2.12.9" }
	step("--keep-atoms", 1, false, protect, "--keep", "1", "--keep-atoms", atoms)
	// --keep 1: exactly one build per CPV, the newest.
	step("--keep 1", 1, false, nil, "--keep", "1")
	idx, _ = wReadIndex(t, mnt)
	final := qInstances(t, idx)
	perCPV := map[string]qInst{}
	for _, q := range final {
		if o, dup := perCPV[q.CPV]; dup {
			t.Errorf("after --keep 1, %s has builds %d and %d", q.CPV, o.BuildID, q.BuildID)
		}
		perCPV[q.CPV] = q
	}
	for _, q := range all {
		if k := perCPV[q.CPV]; q.BuildTime > k.BuildTime || (q.BuildTime == k.BuildTime && q.BuildID > k.BuildID) {
			t.Errorf("after --keep 1, %s keeps build %d (BUILD_TIME %d), but build %d (BUILD_TIME %d) was newer",
				q.CPV, k.BuildID, k.BuildTime, q.BuildID, q.BuildTime)
		}
	}
	if len(perCPV) != len(expectKeepCPVs(all)) {
		t.Errorf("after --keep 1: %d CPVs, want all %d", len(perCPV), len(expectKeepCPVs(all)))
	}

	// The removed paths are gone from the mount and still download through
	// nginx (the mount's removed-grace fallback), never fetched before.
	for _, q := range gone {
		if _, err := os.Lstat(filepath.Join(mnt, q.Path)); !os.IsNotExist(err) {
			t.Errorf("removed %s: lstat in the mount: %v, want ENOENT", q.Path, err)
		}
		res := httpDo(t, "GET", ng.URL+"/"+q.Path)
		sum := sha1.Sum(res.Body)
		if res.Status != 200 || hex.EncodeToString(sum[:]) != q.SHA1 {
			t.Errorf("GET %s after prune: status %d, SHA1 %x; want 200 and the removed build's %s", q.Path, res.Status, sum, q.SHA1)
		}
	}
	// Every layout and the index agree with the catalog.
	idx, raw := checkIndexFiles(t, mnt, state, true)
	srcOf := map[string]string{}
	for _, in := range instances(idx) {
		srcOf[in.Path] = bySHA1[in.SHA1]
	}
	checkInstances(t, mnt, idx, srcOf, allLayouts)
	rows := queryJSON(t, state)
	checkQueryRows(t, "(all, after prune)", rows, qInstances(t, idx))
	// A copy of the mount imported afresh is the same PKGDIR.
	cp := filepath.Join(t.TempDir(), "copy")
	mustRun(t, "", "cp", "-a", mnt, cp)
	fresh := t.TempDir()
	if r, s := importDirs(t, fresh, cp); r.Code != 0 || s.Imported != len(idx.Blocks) || s.Invalid != 0 {
		t.Fatalf("import of a cp -a copy of the mount: want %d imported: %s", len(idx.Blocks), r)
	}
	fr := runCLI(t, "index", "--state", fresh)
	if fr.Code != 0 {
		t.Fatalf("index of the fresh import: %s", fr)
	}
	if d := firstDiff(strings.Split(string(raw), "\n"), strings.Split(string(fr.Stdout), "\n"), ignoreTimestamp); d != "" {
		t.Errorf("the fresh import of a cp -a copy of the mount differs from MNT/Packages at %s", d)
	}
	if r := runCLI(t, "verify", "--state", state, "--deep"); r.Code != 0 {
		t.Errorf("verify --deep after prune: %s", r)
	}
}

func expectKeepCPVs(insts []qInst) map[string]bool {
	m := map[string]bool{}
	for _, q := range insts {
		m[q.CPV] = true
	}
	return m
}

// TestPruneUnmounted: without a mount, prune removes in catalog batches,
// the blobs go, and a mount started afterwards shows the result; bad
// usage is refused.
func TestPruneUnmounted(t *testing.T) {
	t.Parallel()
	state, _ := allFixturesState(t)
	ix0 := runCLI(t, "index", "--state", state)
	idx0, err := parseIndex(ix0.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	all := qInstances(t, idx0)
	cut, _ := timeCut(t, all)
	old := fmt.Sprintf("%ds", time.Now().Unix()-cut)
	// --older-than alone: every build older than DUR, whatever the count.
	kept := selectInsts(all, func(q qInst) bool { return q.BuildTime >= cut })
	removed := selectInsts(all, func(q qInst) bool { return q.BuildTime < cut })
	// Never mounted, no grace: the blobs go at once, and what they held is
	// what prune says it freed.
	blobs := filepath.Join(state, "blobs")
	before := allocated(t, filesUnder(t, blobs, ""))
	sum := runPrune(t, state, removed, kept, "--older-than", old)
	if freed := before - allocated(t, filesUnder(t, blobs, "")); sum.Now != freed || freed == 0 || sum.AtGraceEnd+sum.HeldLinks+sum.Shared != 0 {
		t.Errorf("prune of an unmounted state: %+v, want %d bytes freed now (what blobs/ lost)", sum, freed)
	}
	ix := runCLI(t, "index", "--state", state)
	idx, _ := parseIndex(ix.Stdout)
	for _, q := range qInstances(t, idx) {
		if q.BuildTime < cut {
			t.Errorf("after prune --older-than %s: %s (BUILD_TIME %d) is still there", old, q.Path, q.BuildTime)
		}
	}
	if r := runCLI(t, "verify", "--state", state); r.Code != 0 || strings.Contains(string(r.Stdout), "orphan") {
		t.Errorf("verify after an unmounted prune (no orphan blobs): %s", r)
	}
	mnt := mountFS(t, state)
	if _, raw := wReadIndex(t, mnt); !bytes.Equal(stripTimestamp(raw), stripTimestamp(ix.Stdout)) {
		t.Errorf("a mount after the prune shows another index than `pkgdirfs index`")
	}
	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{nil, "nothing to prune by"},
		{[]string{"--per-use"}, "--per-use needs --keep"},
		{[]string{"--keep", "-1"}, "want N >= 1"},
		{[]string{"--keep", "x"}, `invalid argument "x" for "--keep"`},
		{[]string{"--keep", "1", "extra"}, "unexpected operand"},
		{[]string{"--keep", "1", "--keep-atoms", "/nonexistent/world"}, "no such file"},
		{[]string{"--older-than", "3 days"}, "not a duration"},
	} {
		r := runCLI(t, append([]string{"prune", "--state", state}, bad.args...)...)
		if r.Code != 2 || !strings.Contains(string(r.Stderr), bad.msg) {
			t.Errorf("prune %v: want exit 2 and %q: %s", bad.args, bad.msg, r)
		}
	}
}

// TestPruneFreedSpace (issue 21, item 5): prune reports as freed what the
// filesystem got back. After import --link the originals keep the bytes:
// nothing is freed, and deleting those originals then frees what prune said
// they hold. A copied state served by a mount without a removal grace frees
// its blobs at once. The state and the PKGDIR are alone on a tmpfs, whose
// free space is measured.
func TestPruneFreedSpace(t *testing.T) {
	t.Parallel()
	needBinary(t)
	fsdir := smallTmpfs(t)
	fixture := extractFixture(t, "xpak-bzip2-multi")
	pkgdir := filepath.Join(fsdir, "binpkgs")
	mustRun(t, "", "cp", "-a", fixture, pkgdir)
	state := filepath.Join(fsdir, "state")
	r := runCLI(t, "import", "--link", "--state", state, pkgdir)
	n := len(readFixtureIndex(t, pkgdir).Blocks)
	if r.Code != 0 || !strings.Contains(string(r.Stderr), fmt.Sprintf("imported %d, already present 0, invalid 0 (linked %d, cloned 0, copied 0)", n, n)) {
		t.Fatalf("import --link of %d packages: want all linked: %s", n, r)
	}
	ix := runCLI(t, "index", "--state", state)
	idx, err := parseIndex(ix.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	kept, removed := expectKeep(qInstances(t, idx), 1, false, nil)
	paths := pathsOf(removed, func(q qInst) string { return q.Path })
	originals := make([]string, len(paths))
	for i, p := range paths {
		originals[i] = filepath.Join(pkgdir, p)
	}
	held := allocated(t, originals)
	if held == 0 {
		t.Fatal("premise: the fixture has builds to prune")
	}

	before := blobSpace(t, fsdir, state)
	sum := runPrune(t, state, removed, kept, "--keep", "1")
	freed := blobSpace(t, fsdir, state) - before
	if sum.Now != freed || sum.HeldLinks != held || sum.AtGraceEnd+sum.Shared != 0 {
		t.Errorf("prune after import --link: reports %d bytes freed now and %d held by hard links; the filesystem got %d back, the originals hold %d",
			sum.Now, sum.HeldLinks, freed, held)
	}
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(pkgdir, p)); err != nil {
			t.Errorf("the original %s: %v (prune must leave the originals alone)", p, err)
		}
	}
	before = blobSpace(t, fsdir, state)
	for _, o := range originals {
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
	if got := blobSpace(t, fsdir, state) - before; got != held {
		t.Errorf("deleting the pruned builds' originals freed %d bytes, prune said they hold %d", got, held)
	}

	// Copied blobs, a mount without a removal grace: freed at once.
	copied := filepath.Join(fsdir, "copied")
	importOK(t, copied, importSummary{n, 0, 0}, fixture)
	mi := mountFSInfo(t, copied, "--removed-grace", "0")
	idx, _ = wReadIndex(t, mi.Dir)
	kept, removed = expectKeep(qInstances(t, idx), 1, false, nil)
	before = blobSpace(t, fsdir, copied)
	sum = runPrune(t, copied, removed, kept, "--keep", "1")
	freed = blobSpace(t, fsdir, copied) - before
	if sum.Now != freed || freed <= 0 || sum.AtGraceEnd+sum.HeldLinks+sum.Shared != 0 {
		t.Errorf("prune of a mount without a grace: reports %+v; the filesystem got %d back", sum, freed)
	}
	if r := runCLI(t, "verify", "--state", copied); r.Code != 0 || strings.Contains(string(r.Stdout), "orphan") {
		t.Errorf("verify after a prune of a mount without a grace (no orphan blobs): %s", r)
	}
}

// TestMountKeep: with mount --keep 2, ten builds of one CPV copied in one
// after another (in no particular order of BUILD_TIME) leave the two
// newest, after every copy.
func TestMountKeep(t *testing.T) {
	t.Parallel()
	src := extractFixture(t, "xpak-zstd-multi")
	base, err := os.ReadFile(filepath.Join(src, "app-misc/hello/hello-2.10-1.xpak"))
	if err != nil {
		t.Fatal(err)
	}
	tarball, entries := splitXpak(t, base)
	entries = withEntry(entries, "BUILD_ID", nil)
	const t0 = 1_750_000_000
	variant := func(bt int64, use string) string {
		e := withEntry(entries, "BUILD_TIME", []byte(strconv.FormatInt(bt, 10)+"\n"))
		if use != "" {
			e = withEntry(e, "USE", []byte(use+"\n"))
		}
		p := filepath.Join(t.TempDir(), "hello-2.10.tbz2")
		if err := os.WriteFile(p, buildXpak(t, tarball, e), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	buildTimes := func(mnt string) []int64 {
		idx, _ := wReadIndex(t, mnt)
		var bts []int64
		for _, in := range instances(idx) {
			if in.CPV != "app-misc/hello-2.10" {
				t.Errorf("unexpected %s in the index", in.CPV)
			}
			bts = append(bts, in.BuildTime)
		}
		slices.Sort(bts)
		return bts
	}

	t.Run("keep 2", func(t *testing.T) {
		t.Parallel()
		state := t.TempDir()
		mi := mountFSInfo(t, state, "--keep", "2")
		mustRun(t, "", "mkdir", filepath.Join(mi.Dir, "app-misc"))
		order := []int64{3, 7, 1, 9, 0, 5, 8, 2, 6, 4}
		var copied []int64
		for _, i := range order {
			bt := int64(t0 + 100*i)
			mustRun(t, "", "cp", variant(bt, ""), filepath.Join(mi.Dir, "app-misc/hello-2.10.tbz2"))
			copied = append(copied, bt)
			want := slices.Clone(copied)
			slices.Sort(want)
			want = want[max(0, len(want)-2):]
			if got := buildTimes(mi.Dir); !slices.Equal(got, want) {
				t.Errorf("after copying the build of BUILD_TIME %d: the index lists BUILD_TIMEs %v, want the 2 newest copied so far %v", bt, got, want)
			}
			ents, _ := os.ReadDir(filepath.Join(mi.Dir, "app-misc/hello"))
			if len(ents) != len(want) {
				t.Errorf("after copying BUILD_TIME %d: MNT/app-misc/hello holds %d files, want %d", bt, len(ents), len(want))
			}
		}
		if n := strings.Count(readLog(mi.Log), "removed by the keep policy"); n != len(order)-2 {
			t.Errorf("the daemon logged %d removals by the keep policy, want %d", n, len(order)-2)
		}
		// Each path the policy removed a build from is there (build ids
		// are never given twice, so each path is one build's).
		// A new build older than the two kept goes in the transaction that
		// added it (its removal is logged right before its commit): no
		// index ever listed it, so it gets no grace, and its blob goes.
		paths := map[string]bool{}
		var pending []string // removals logged since the last commit
		field := func(line, key string) string {
			if _, v, ok := strings.Cut(line, " "+key+"="); ok {
				return strings.Fields(v)[0]
			}
			return ""
		}
		for _, line := range strings.Split(readLog(mi.Log), "\n") {
			switch {
			case strings.Contains(line, `msg="removed by the keep policy"`):
				pending = append(pending, line)
			case strings.Contains(line, "msg=committed"):
				for _, r := range pending {
					if field(r, "build_id") != field(line, "build_id") {
						paths[field(r, "path")] = true
					}
				}
				pending = nil
			}
		}
		removed, _ := filepath.Glob(filepath.Join(mi.Dir, ".pkgdirfs/removed/app-misc/hello/*.xpak"))
		for _, p := range removed {
			rel, _ := filepath.Rel(filepath.Join(mi.Dir, ".pkgdirfs/removed"), p)
			if _, err := os.ReadFile(p); err != nil || !paths[rel] {
				t.Errorf("%s under .pkgdirfs/removed (logged as removed: %v): %v", rel, paths[rel], err)
			}
		}
		if len(removed) != len(paths) || len(paths) < 2 {
			t.Errorf("%d builds under .pkgdirfs/removed, want the %d paths the keep policy removed listed builds from", len(removed), len(paths))
		}
		// The builds gone stay downloadable for the removal grace, as
		// after rm: their blobs are still there, beside the 2 kept.
		if files, _ := blobFiles(t, state); files != int64(2+len(paths)) {
			t.Errorf("blobs/ holds %d files, want the 2 kept and the %d in their grace", files, len(paths))
		}
	})
	t.Run("keep 1 per use", func(t *testing.T) {
		t.Parallel()
		state := t.TempDir()
		mi := mountFSInfo(t, state, "--keep", "1", "--per-use", "--removed-grace", "1s")
		mustRun(t, "", "mkdir", filepath.Join(mi.Dir, "app-misc"))
		for i, use := range []string{"ssl", "nls", "ssl", "nls ssl", "nls", "ssl nls", "ssl"} {
			mustRun(t, "", "cp", variant(int64(t0+10*i), use), filepath.Join(mi.Dir, "app-misc/hello-2.10.tbz2"))
		}
		// Newest of each USE set: ssl (60), nls (40), nls ssl (50).
		if got, want := buildTimes(mi.Dir), []int64{t0 + 40, t0 + 50, t0 + 60}; !slices.Equal(got, want) {
			t.Errorf("--keep 1 --per-use: BUILD_TIMEs %v, want %v", got, want)
		}
		// The grace over, the blobs of the builds gone go.
		var files int64
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if files, _ = blobFiles(t, state); files == 3 || time.Now().After(deadline) {
				break
			}
		}
		if files != 3 {
			t.Errorf("blobs/ holds %d files after the grace, want the 3 builds kept", files)
		}
	})
	if r := runCLI(t, "mount", "--state", t.TempDir(), "--init", "--per-use", t.TempDir()); r.Code == 0 || !strings.Contains(string(r.Stderr), "--per-use needs it") {
		t.Errorf("mount --per-use without --keep: %s", r)
	}
}

// blobFiles counts the blobs of a state: the files of blobs/ but those of
// its dot directories (the index cache, a shared store's staging).
func blobFiles(t *testing.T, state string) (files, size int64) {
	t.Helper()
	root := filepath.Join(state, "blobs")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}

// statsJSON is `stats --format json`.
type statsJSON struct {
	Instances    int64 `json:"instances"`
	Placeholders int64 `json:"placeholders"`
	CPVs         int64 `json:"cpvs"`
	Bytes        int64 `json:"bytes"`
	BlobFiles    int64 `json:"blob_files"`
	BlobBytes    int64 `json:"blob_bytes"`
	Refused      int64 `json:"refused"`
	SignedGpkg   int64 `json:"signed_gpkg"`
	UnsignedGpkg int64 `json:"unsigned_gpkg"`
	Xpak         int64 `json:"xpak"`
	Oldest       *struct {
		CPV       string `json:"cpv"`
		BuildID   int64  `json:"build_id"`
		BuildTime int64  `json:"build_time"`
		Path      string `json:"path"`
	} `json:"oldest"`
	Newest *struct {
		CPV       string `json:"cpv"`
		BuildID   int64  `json:"build_id"`
		BuildTime int64  `json:"build_time"`
		Path      string `json:"path"`
	} `json:"newest"`
	Categories []struct {
		Category  string `json:"category"`
		Instances int64  `json:"instances"`
		Bytes     int64  `json:"bytes"`
	} `json:"categories"`
	MostBuilds []struct {
		CPV    string `json:"cpv"`
		Builds int64  `json:"builds"`
		Bytes  int64  `json:"bytes"`
	} `json:"most_builds"`
}

// TestStatsFixtures: the figures are what the index and blobs/ add up to.
func TestStatsFixtures(t *testing.T) {
	t.Parallel()
	state, _ := allFixturesState(t)
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	// A refused file, for the refused count.
	if err := os.WriteFile(filepath.Join(mnt, "app-misc", "junk-1.tbz2"), []byte("not a package"), 0o644); err == nil {
		t.Fatalf("writing junk at a package name succeeded")
	}
	idx, _ := wReadIndex(t, mnt)
	all := qInstances(t, idx)
	r := runCLI(t, "stats", "--state", state, "--format", "json")
	if r.Code != 0 {
		t.Fatalf("stats: %s", r)
	}
	var s statsJSON
	dec := json.NewDecoder(bytes.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("stats --format json: %v\n%s", err, r.Stdout)
	}
	var total, gpkgs int64
	cpvs := map[string]int64{}
	cpvBytes := map[string]int64{}
	catBytes := map[string]int64{}
	catN := map[string]int64{}
	oldest, newest := all[0], all[0]
	for _, q := range all {
		total += q.Size
		if strings.HasSuffix(q.Path, ".gpkg.tar") {
			gpkgs++
		}
		cpvs[q.CPV]++
		cpvBytes[q.CPV] += q.Size
		catBytes[q.Cat] += q.Size
		catN[q.Cat]++
		if q.BuildTime < oldest.BuildTime || (q.BuildTime == oldest.BuildTime && q.BuildID < oldest.BuildID) {
			oldest = q
		}
		if q.BuildTime > newest.BuildTime || (q.BuildTime == newest.BuildTime && q.BuildID > newest.BuildID) {
			newest = q
		}
	}
	files, size := blobFiles(t, state)
	// The fixtures are unsigned, as most builders' packages are.
	got := fmt.Sprintf("instances %d cpvs %d bytes %d blobs %d/%d refused %d placeholders %d signed %d unsigned %d xpak %d",
		s.Instances, s.CPVs, s.Bytes, s.BlobFiles, s.BlobBytes, s.Refused, s.Placeholders, s.SignedGpkg, s.UnsignedGpkg, s.Xpak)
	want := fmt.Sprintf("instances %d cpvs %d bytes %d blobs %d/%d refused %d placeholders %d signed %d unsigned %d xpak %d",
		len(all), len(cpvs), total, files, size, 1, 0, 0, gpkgs, int64(len(all))-gpkgs)
	if got != want {
		t.Errorf("stats: %s\nwant (index, blobs/): %s", got, want)
	}
	if files != int64(len(all)) || size != total {
		t.Errorf("premise: blobs/ holds %d files of %d bytes, the index %d builds of %d bytes", files, size, len(all), total)
	}
	if s.Oldest == nil || s.Oldest.Path != oldest.Path || s.Oldest.BuildTime != oldest.BuildTime {
		t.Errorf("stats oldest %+v, want %s (BUILD_TIME %d)", s.Oldest, oldest.Path, oldest.BuildTime)
	}
	if s.Newest == nil || s.Newest.Path != newest.Path || s.Newest.BuildTime != newest.BuildTime {
		t.Errorf("stats newest %+v, want %s (BUILD_TIME %d)", s.Newest, newest.Path, newest.BuildTime)
	}
	cats := sortedKeys(catBytes)
	sort.SliceStable(cats, func(i, j int) bool { return catBytes[cats[i]] > catBytes[cats[j]] })
	cats = cats[:min(20, len(cats))]
	var gotCats, wantCats []string
	for _, c := range s.Categories {
		gotCats = append(gotCats, fmt.Sprintf("%s:%d:%d", c.Category, c.Instances, c.Bytes))
	}
	for _, c := range cats {
		wantCats = append(wantCats, fmt.Sprintf("%s:%d:%d", c, catN[c], catBytes[c]))
	}
	if !slices.Equal(gotCats, wantCats) {
		t.Errorf("stats categories %v\nwant (from the index) %v", gotCats, wantCats)
	}
	cpvList := sortedKeys(cpvs)
	sort.SliceStable(cpvList, func(i, j int) bool { return cpvs[cpvList[i]] > cpvs[cpvList[j]] })
	var gotB, wantB []string
	for _, c := range s.MostBuilds {
		gotB = append(gotB, fmt.Sprintf("%s:%d:%d", c.CPV, c.Builds, c.Bytes))
	}
	for _, c := range cpvList[:min(10, len(cpvList))] {
		if cpvs[c] > 1 {
			wantB = append(wantB, fmt.Sprintf("%s:%d:%d", c, cpvs[c], cpvBytes[c]))
		}
	}
	if !slices.Equal(gotB, wantB) {
		t.Errorf("stats most builds %v\nwant (from the index) %v", gotB, wantB)
	}
	tab := runCLI(t, "stats", "--state", state)
	if tab.Code != 0 || !strings.Contains(string(tab.Stdout), fmt.Sprintf("instances     %d (%d CPVs, 0 placeholders)", len(all), len(cpvs))) ||
		!strings.Contains(string(tab.Stdout), wantCats[0][:strings.IndexByte(wantCats[0], ':')]) {
		t.Errorf("stats (table):\n%s", tab)
	}
}
