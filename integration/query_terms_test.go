package integration

import (
	"path"
	"slices"
	"strings"
	"testing"
)

// The query terms fleets split builds on (--chost, --keywords, --arch,
// --cflags, --meta) and --keep N [--per-use], on two real PKGDIRs
// imported into one state: every answer is checked against what their
// metadata says, as the state's Packages (pkgdirfs index) lists it, each
// block the fixture's own (by SHA1).

// termInst is an index block with the metadata the new terms read.
type termInst struct {
	qInst
	Keywords []string
	Chost    string // the block's, or the header's it inherits
	Block    map[string]string
}

func (q termInst) hasKeyword(kw string) bool { return slices.Contains(q.Keywords, kw) }

// blockMap is an index block as a map.
func blockMap(b []string) map[string]string {
	m := map[string]string{}
	for _, l := range b {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = v
		}
	}
	return m
}

func TestQueryTerms(t *testing.T) {
	t.Parallel()
	var srcs []string
	fixtureBlocks := map[string]map[string]string{} // by SHA1
	for _, name := range []string{"gpkg-zstd-multi", "xpak-bzip2-multi"} {
		src := extractFixture(t, name)
		srcs = append(srcs, src)
		for _, b := range readFixtureIndex(t, src).Blocks {
			m := blockMap(b)
			fixtureBlocks[m["SHA1"]] = m
		}
	}
	state := t.TempDir()
	importOK(t, state, importSummary{len(fixtureBlocks), 0, 0}, srcs...)
	ix := runCLI(t, "index", "--state", state)
	if ix.Code != 0 {
		t.Fatalf("pkgdirfs index: %s", ix)
	}
	idx, err := parseIndex(ix.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	header := blockMap(idx.Header)
	var all []termInst
	for _, q := range qInstances(t, idx) {
		b := blockMap(q.Block)
		fx := fixtureBlocks[q.SHA1]
		if fx == nil || fx["KEYWORDS"] != b["KEYWORDS"] || fx["USE"] != b["USE"] || fx["CHOST"] != b["CHOST"] {
			t.Fatalf("premise: %s is not a fixture's block as it was: %v", q.Path, fx)
		}
		chost, ok := b["CHOST"]
		if !ok {
			chost = header["CHOST"] // omitted when the header's (portage-facts §4.5)
		}
		all = append(all, termInst{qInst: q, Keywords: strings.Fields(b["KEYWORDS"]), Chost: chost, Block: b})
	}
	// What the cases below tell apart: a header with CHOST, PROFILE and
	// ARCH, no package with an ARCH or CFLAGS of its own (Portage puts
	// neither in a package's entry), stable and testing keywords.
	if len(all) != len(fixtureBlocks) || header["CHOST"] == "" || !strings.HasPrefix(header["PROFILE"], "default/linux/amd64/") || header["ARCH"] != "amd64" {
		t.Fatalf("premise: %d builds, header %v", len(all), header)
	}
	for _, q := range all {
		if _, ok := q.Block["ARCH"]; ok {
			t.Fatalf("premise: %s has an ARCH of its own", q.Path)
		}
		if _, ok := q.Block["CFLAGS"]; ok {
			t.Fatalf("premise: %s has CFLAGS in the index", q.Path)
		}
	}
	count := func(pred func(termInst) bool) int {
		n := 0
		for _, q := range all {
			if pred(q) {
				n++
			}
		}
		return n
	}
	if n := count(func(q termInst) bool { return q.hasKeyword("~amd64") }); n == 0 || n == len(all) {
		t.Fatalf("premise: %d of %d builds keyworded ~amd64", n, len(all))
	}

	type tcase struct {
		args []string
		want func(q termInst) bool
	}
	cases := []tcase{
		{[]string{"--keywords", "~amd64"}, func(q termInst) bool { return q.hasKeyword("~amd64") }},
		{[]string{"--keywords", "amd64"}, func(q termInst) bool { return q.hasKeyword("amd64") }},
		{[]string{"--keywords=amd64,~ppc64,x86"}, func(q termInst) bool {
			return q.hasKeyword("amd64") && q.hasKeyword("~ppc64") && q.hasKeyword("x86")
		}},
		{[]string{"--keywords", "amd64,~amd64"}, func(q termInst) bool { return false }},
		{[]string{"--arch", "amd64"}, func(q termInst) bool { return q.hasKeyword("amd64") || q.hasKeyword("~amd64") }},
		{[]string{"--arch", "ppc64"}, func(q termInst) bool { return q.hasKeyword("ppc64") || q.hasKeyword("~ppc64") }},
		{[]string{"--arch", "sparc"}, func(q termInst) bool { return false }},
		{[]string{"--arch", "ppc64", "--use", "nls"}, func(q termInst) bool { return (q.hasKeyword("ppc64") || q.hasKeyword("~ppc64")) && q.hasUse("nls") }},
		{[]string{"--chost", "x86_64-*-linux-gnu"}, func(q termInst) bool { ok, _ := path.Match("x86_64-*-linux-gnu", q.Chost); return ok }},
		{[]string{"--chost", header["CHOST"]}, func(q termInst) bool { return q.Chost == header["CHOST"] }},
		{[]string{"--chost", "*-musl"}, func(q termInst) bool { return strings.HasSuffix(q.Chost, "-musl") }},
		{[]string{"--chost", "x86_64"}, func(q termInst) bool { return false }}, // the whole value
		// The catalog keeps each build's own CFLAGS (every fixture build
		// was made with -O2 -pipe -march=x86-64-v2), which Packages does
		// not list (premise above).
		{[]string{"--cflags", "*-march=x86-64-v2*"}, func(q termInst) bool { return true }},
		{[]string{"--cflags", "*-march=x86-64-v3*"}, func(q termInst) bool { return false }},
		{[]string{"--meta", "CFLAGS=-O2 -pipe *", "--keywords", "~amd64"}, func(q termInst) bool { return q.hasKeyword("~amd64") }},
		{[]string{"--meta", "PROFILE=default/linux/amd64/*"}, func(q termInst) bool { return true }}, // the header's
		{[]string{"--meta", "PROFILE=*/musl"}, func(q termInst) bool { return false }},
		{[]string{"--meta", "SLOT=0/1"}, func(q termInst) bool { return q.Slot == "0/1" }},
		{[]string{"--meta", "REPO=gentoo", "--meta", "USE=*static*"}, func(q termInst) bool {
			return q.Block["REPO"] == "gentoo" && strings.Contains(q.Block["USE"], "static")
		}},
		{[]string{"--meta", "KEYWORDS=~*", "dev-libs/*"}, func(q termInst) bool { return false }},
		{[]string{"--meta", "KEYWORDS=~*"}, func(q termInst) bool { return strings.HasPrefix(q.Block["KEYWORDS"], "~") }},
		{[]string{"--meta", "NO_SUCH_KEY=*"}, func(q termInst) bool { return false }},
	}
	qs := func(qs []termInst) []qInst {
		var out []qInst
		for _, q := range qs {
			out = append(out, q.qInst)
		}
		return out
	}
	sel := func(pred func(q termInst) bool) []termInst {
		var out []termInst
		for _, q := range all {
			if pred(q) {
				out = append(out, q)
			}
		}
		return out
	}
	for _, c := range cases {
		rows := queryJSON(t, state, c.args...)
		checkQueryRows(t, strings.Join(c.args, " "), rows, qs(sel(c.want)))
	}

	// --keep: of what the rest selects, the N newest of each CPV (of each
	// USE set), as prune --keep decides.
	keepCases := []struct {
		args   []string
		n      int
		perUse bool
		of     func(q termInst) bool
	}{
		{[]string{"--keep", "1"}, 1, false, func(termInst) bool { return true }},
		{[]string{"--keep", "2"}, 2, false, func(termInst) bool { return true }},
		{[]string{"--keep", "1", "--per-use"}, 1, true, func(termInst) bool { return true }},
		{[]string{"--keep=1", "--arch", "ppc64", "app-misc/*", "dev-libs/*"}, 1, false, func(q termInst) bool {
			return q.hasKeyword("~ppc64") && (q.Cat == "app-misc" || q.Cat == "dev-libs")
		}},
		{[]string{"--keep", "1", "--keywords", "~amd64"}, 1, false, func(q termInst) bool { return q.hasKeyword("~amd64") }},
		{[]string{"--keep", "1", "--use", "-nls", "--per-use"}, 1, true, func(q termInst) bool { return !q.hasUse("nls") }},
	}
	var kept1, kept1PerUse int
	for _, c := range keepCases {
		want, _ := expectKeep(qs(sel(c.of)), c.n, c.perUse, nil)
		rows := queryJSON(t, state, c.args...)
		checkQueryRows(t, strings.Join(c.args, " "), rows, want)
		switch strings.Join(c.args, " ") {
		case "--keep 1":
			kept1 = len(want)
		case "--keep 1 --per-use":
			kept1PerUse = len(want)
		}
	}
	if !(kept1 < kept1PerUse && kept1PerUse < len(all)) {
		t.Errorf("premise: --keep 1 keeps %d, with --per-use %d, of %d builds: the cases tell nothing apart", kept1, kept1PerUse, len(all))
	}

	// The same terms in a snapshot's query freeze the same builds.
	q := "--arch ppc64 --meta 'PROFILE=default/linux/amd64/*' --keep 1 --per-use"
	if r := runCLI(t, "snapshot", "--state", state, "create", "k1", "--query", q); r.Code != 0 {
		t.Fatalf("snapshot create --query %q: %s", q, r)
	}
	want, _ := expectKeep(qs(sel(func(q termInst) bool { return q.hasKeyword("~ppc64") })), 1, true, nil)
	if r := runCLI(t, "snapshot", "--state", state, "show", "k1", "--format", "paths"); r.Code != 0 {
		t.Errorf("snapshot show k1: %s", r)
	} else if got, exp := strings.Fields(string(r.Stdout)), pathsOf(want, func(q qInst) string { return q.Path }); !slices.Equal(sorted(got), exp) {
		t.Errorf("snapshot of %q holds %v, want %v", q, got, exp)
	}

	// Bad terms: exit 2, one line naming the problem, no output; in a
	// snapshot's query too.
	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--keep", "0"}, `--keep "0": want a number N >= 1`},
		{[]string{"--keep", "-1"}, `--keep "-1"`},
		{[]string{"--keep", "many"}, `--keep "many"`},
		{[]string{"--keep="}, "--keep needs a value"},
		{[]string{"--per-use"}, "--per-use needs --keep N"},
		{[]string{"--meta", "profile=x"}, `KEY "profile" is not a metadata key`},
		{[]string{"--meta", "PROFILE"}, "want KEY=GLOB"},
		{[]string{"--chost", "[x86_64"}, `bad glob "[x86_64"`},
		{[]string{"--cflags", `-O2\`}, "bad glob"},
		{[]string{"--keywords", "amd64,,x86"}, "--keywords"},
		{[]string{"--arch", "~amd64"}, "--arch"},
		{[]string{"--arch"}, "needs an argument"},
		{[]string{"--chosts", "x"}, "unknown flag: --chosts"},
	} {
		r := runCLI(t, append([]string{"query", "--state", state}, bad.args...)...)
		if r.Code != 2 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), bad.msg) || strings.Count(string(r.Stderr), "\n") != 1 {
			t.Errorf("query %v: want exit 2, no output and one line with %q on stderr: %s", bad.args, bad.msg, r)
		}
	}
	for q, msg := range map[string]string{
		"--keep 0":          `--keep "0"`,
		"--per-use":         "--per-use needs --keep N",
		"--meta 'a b=c'":    `KEY "a b" is not a metadata key`,
		"--chost '[x86_64'": "bad glob",
		"--keep":            "--keep needs a value",
	} {
		r := runCLI(t, "snapshot", "--state", state, "create", "bad", "--query", q)
		if r.Code != 2 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), msg) {
			t.Errorf("snapshot create --query %q: want exit 2 and %q on stderr: %s", q, msg, r)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
