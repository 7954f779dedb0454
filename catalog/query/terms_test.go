package query

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
)

// Values as the fixtures' Packages (testdata/fixtures/gpkg-zstd-multi.tar)
// and their packages' metadata hold them.
const (
	fxCHOST    = "x86_64-pc-linux-gnu"
	fxCFLAGS   = "-O2 -pipe -march=x86-64-v2"
	fxStable   = "amd64 arm64 ~ppc64 ~riscv x86"
	fxTesting  = "~amd64 ~arm64 ~x86" // sys-devel/gcc-13.3.1_p20241025
	fxProfile  = "default/linux/amd64/23.0"
	fxLDFLAGS  = "-Wl,-O1 -Wl,--as-needed -Wl,-z,pack-relative-relocs"
	fxUseSudo  = "amd64 elibc_glibc kernel_linux ssl"
	fxUseGcc2  = "amd64 doc elibc_glibc kernel_linux nls static test"
	fxBuildGcc = 1732003589
)

// fxHeader is the fixture's Packages header, the keys a fallback reads.
var fxHeader = map[string]string{
	"ACCEPT_KEYWORDS": "amd64", "ARCH": "amd64", "CBUILD": fxCHOST, "CHOST": fxCHOST,
	"ELIBC": "glibc", "KERNEL": "linux", "PROFILE": fxProfile, "VERSION": "0",
}

func fxInst(cpv string, id, bt int64, meta map[string]string) catalog.Instance {
	cat, pf, _ := strings.Cut(cpv, "/")
	pn := pf[:strings.LastIndexByte(pf, '-')]
	if i := strings.LastIndex(pf, "-r"); i > 0 && !strings.Contains(pf[i:], ".") {
		pn = pf[:strings.LastIndexByte(pf[:i], '-')]
	}
	m := map[string]string{"SLOT": "0", "EAPI": "8", "IUSE": "+ssl nls test doc static", "repository": "gentoo"}
	maps.Copy(m, meta)
	return catalog.Instance{ID: id, CPV: cpv, Category: cat, PF: pf, PN: pn, BuildID: id, BuildTime: bt, Format: "gpkg", Meta: m}
}

func fxInsts() []catalog.Instance {
	return []catalog.Instance{
		fxInst("app-admin/sudo-1.9.15_p5", 1, 1732000776, map[string]string{
			"KEYWORDS": fxStable, "USE": fxUseSudo, "CHOST": fxCHOST}),
		fxInst("sys-devel/gcc-13.3.1_p20241025", 2, fxBuildGcc, map[string]string{
			"KEYWORDS": fxTesting, "USE": fxUseSudo, "SLOT": "13", "CHOST": fxCHOST}),
		// The Meta the brief's --cflags and --meta read: a build that
		// carries CFLAGS, and one built elsewhere, for musl and another
		// -march, with no CHOST of its own (the header's, inherited).
		fxInst("sys-libs/zlib-1.3.1-r1", 3, 1732003783, map[string]string{
			"KEYWORDS": fxStable, "USE": fxUseGcc2, "CFLAGS": fxCFLAGS, "CXXFLAGS": fxCFLAGS, "LDFLAGS": fxLDFLAGS}),
		fxInst("sys-libs/zlib-1.3.1-r1", 4, 1732003790, map[string]string{
			"KEYWORDS": "amd64 -x86 ~riscv", "USE": "", "CHOST": "x86_64-gentoo-linux-musl",
			"CFLAGS": "-O2 -pipe -march=x86-64-v3 -mtune=znver4", "PROFILE": "default/linux/amd64/23.0/musl"}),
	}
}

func ids(insts []catalog.Instance, sel *Selection) string {
	var out []string
	for i := range insts {
		if sel.Match(&insts[i]) {
			out = append(out, fmt.Sprint(insts[i].ID))
		}
	}
	return strings.Join(out, " ")
}

// TestTermsMatch: each new term takes the builds whose metadata (or, for
// a key a build lacks, the header) says so, in the query string and
// through Terms alike.
func TestTermsMatch(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	insts := fxInsts()
	for _, c := range []struct {
		q    string
		want string // build ids
	}{
		{"--chost x86_64-pc-linux-gnu", "1 2 3"}, // 3 inherits the header's
		{"--chost 'x86_64-*-linux-gnu'", "1 2 3"},
		{"--chost '*-musl'", "4"},
		{"--chost=x86_64-pc-linux", "1 2"[:0]}, // the whole value
		{"--chost '*'", "1 2 3 4"},
		{"--chost 'x86_64-[a-z][a-z]-linux-gnu'", "1 2 3"},
		{"--chost 'x86_64-[^p]*'", "4"},
		{"--chost 'i?86-*'", ""},
		{"--keywords amd64", "1 3 4"},
		{"--keywords ~amd64", "2"}, // exact tokens: ~amd64 is not amd64
		{"--keywords amd64,x86", "1 3"},
		{"--keywords=~riscv", "1 3 4"},
		{"--keywords amd64,~arm64", ""},
		{"--keywords x86 --keywords ~x86", "2"}, // the last one given
		{"--arch amd64", "1 2 3 4"},
		{"--arch x86", "1 2 3"}, // 4 says -x86
		{"--arch riscv", "1 3 4"},
		{"--arch ppc64", "1 3"},
		{"--arch sparc", ""},
		{"--cflags '*-march=x86-64-v2*'", "3"},
		{"--cflags '*-march=x86-64-v3*'", "4"},
		{"--cflags '-O2 -pipe *'", "3 4"},
		{"--cflags '-O2'", ""},
		{"--cflags '*'", "3 4"}, // a build without CFLAGS has none to match
		{"--meta PROFILE=default/linux/amd64/23.0", "1 2 3"},
		{"--meta 'PROFILE=default/linux/amd64/23.0*'", "1 2 3 4"},
		{"--meta 'PROFILE=*/musl'", "4"},
		{"--meta CXXFLAGS='*x86-64-v2' --meta 'LDFLAGS=*--as-needed*'", "3"},
		{"--meta 'CXXFLAGS=*' --meta 'LDFLAGS=*-z,now*'", ""},
		{"--meta SLOT=13", "2"},
		{"--meta 'SLOT=[0-9]*'", "1 2 3 4"},
		{"--meta 'NO_SUCH_KEY=*'", ""},
		{"--meta REPO=gentoo", "1 2 3 4"}, // kept as repository
		{"--meta ARCH=amd64", "1 2 3 4"},  // the header's
		{"--meta 'USE=*static*' --arch amd64 --chost '*-gnu'", "3"},
		{"'sys-libs/*' --keywords amd64 --cflags '*v3*'", "4"},
		{`--cflags "-O2 -pipe -march=x86-64-v[23]"`, "3"},
		{`--cflags '*\*'`, ""},
	} {
		sel, err := Parse(c.q, now)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.q, err)
			continue
		}
		sel.Header = fxHeader
		if got := ids(insts, sel); got != c.want {
			t.Errorf("%s: selects [%s], want [%s]", c.q, got, c.want)
		}
		// The same through Terms, as pkgdirfs query's flags give them.
		terms, err := ParseTerms(c.q)
		if err != nil {
			t.Fatal(err)
		}
		sel2, err := New(terms, now)
		if err != nil {
			t.Fatal(err)
		}
		sel2.Header = fxHeader
		if got := ids(insts, sel2); got != c.want {
			t.Errorf("New(%+v): selects [%s], want [%s]", terms, got, c.want)
		}
	}
	// Without the header no build inherits: 3 has no CHOST, none a PROFILE
	// but 4.
	for q, want := range map[string]string{
		"--chost x86_64-pc-linux-gnu":            "1 2",
		"--meta 'PROFILE=default/linux/amd64/*'": "4",
	} {
		sel, err := Parse(q, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(insts, sel); got != want {
			t.Errorf("%s without a header: selects [%s], want [%s]", q, got, want)
		}
	}
	// A key the build has wins over the header's.
	sel, _ := Parse("--meta PROFILE=default/linux/amd64/23.0", now)
	sel.Header = fxHeader
	if in := insts[3]; sel.Match(&in) {
		t.Errorf("build 4's own PROFILE %q lost to the header's", in.Meta["PROFILE"])
	}
}

func TestParseTerms(t *testing.T) {
	terms, err := ParseTerms(`app-misc/* --chost 'x86_64-*' --keywords=amd64,~x86 --arch amd64 --cflags "*-O2 *" --meta A=1 --meta=B_2='x y' --keep 3 --per-use`)
	want := Terms{Atoms: []string{"app-misc/*"}, Chost: "x86_64-*", Keywords: "amd64,~x86", Arch: "amd64", Cflags: "*-O2 *",
		Meta: []string{"A=1", "B_2=x y"}, Keep: "3", PerUse: true}
	if err != nil || !reflect.DeepEqual(terms, want) {
		t.Errorf("ParseTerms = %#v, %v\nwant %#v", terms, err, want)
	}
	sel, err := New(terms, time.Now())
	if err != nil || sel.Keep != 3 || !sel.PerUse || !slices.Equal(sel.Keywords, []string{"amd64", "~x86"}) ||
		!slices.Equal(sel.Meta, []MetaCond{{"A", "1"}, {"B_2", "x y"}}) || sel.Chost != "x86_64-*" || sel.Cflags != "*-O2 *" || sel.Arch != "amd64" {
		t.Errorf("New: %+v, %v", sel, err)
	}
}

func TestTermsErrors(t *testing.T) {
	for q, wantErr := range map[string]string{
		"--chosts x":                    `unknown option "--chosts"`,
		"--march=x":                     `unknown option "--march"`,
		"--chost":                       "--chost needs a value",
		"--keywords":                    "--keywords needs a value",
		"--arch=":                       "--arch needs a value",
		"--cflags":                      "--cflags needs a value",
		"--meta":                        "--meta needs a value",
		"--meta PROFILE=x --meta":       "--meta needs a value",
		"--keep":                        "--keep needs a value",
		"--chost '[x86'":                `--chost: bad glob "[x86"`,
		`--cflags 'x\'`:                 `--cflags: bad glob "x\\"`,
		"--meta 'CFLAGS=[]'":            `--meta "CFLAGS=[]": bad glob`,
		"--meta CFLAGS":                 `--meta "CFLAGS": want KEY=GLOB`,
		"--meta cflags=x":               `KEY "cflags" is not a metadata key`,
		"--meta =x":                     `KEY "" is not a metadata key`,
		"--meta 'C FLAGS=x'":            `KEY "C FLAGS" is not a metadata key`,
		"--meta CXX-FLAGS=x":            `KEY "CXX-FLAGS" is not a metadata key`,
		"--keywords amd64,,x86":         "--keywords",
		"--keywords ,":                  "--keywords",
		"--keywords 'amd64 x86'":        "--keywords",
		"--arch ~amd64":                 "--arch",
		"--arch -x86":                   "--arch",
		"--arch 'amd 64'":               "--arch",
		"--keep 0":                      `--keep "0": want a number N >= 1`,
		"--keep -2":                     `--keep "-2"`,
		"--keep two":                    `--keep "two"`,
		"--keep 1.5":                    `--keep "1.5"`,
		"--per-use":                     "--per-use needs --keep N",
		"--per-use app-misc/hello":      "--per-use needs --keep N",
		"--keep 2 --per-use=yes":        "--per-use takes no value",
		"--keep 1 app-misc/hello-2.10":  "version",
		"--meta 'PROFILE=*' --keep 0x1": `--keep "0x1"`,
	} {
		_, err := Parse(q, time.Now())
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Parse(%q) = %v, want an error with %q", q, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): a multi-line error %q", q, err)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"*", "a b/c", true},
		{"a*", "a b/c", true},
		{"*c", "a b/c", true},
		{"*/*", "default/linux/amd64/23.0", true},
		{"default/*/23.0", "default/linux/amd64/23.0", true},
		{"default/*/23.0", "default/linux/amd64/23.0/musl", false},
		{"*-march=x86-64-v3*", "-O2 -pipe -march=x86-64-v3 -mtune=znver4", true},
		{"*-march=x86-64-v3*", fxCFLAGS, false},
		{"*-march=x86-64-v?", fxCFLAGS, true},
		{"*-march=x86-64-v?", "-march=x86-64-v2 -g", false},
		{"a?c", "a/c", true},
		{"a?c", "a c", true},
		{"a?c", "ac", false},
		{"[/]", "/", true},
		{"[^a]", "/", true},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`a\?`, "a?", true},
		{"*ab*ab*", "xxabyyabzz", true},
		{"*ab*ab", "xxabyyab", true},
		{"*ab*ab", "xxabyyabz", false},
		{"**a", "bba", true},
		{"ü*", "über", true},
		{"?ber", "über", true},
		{"[ü]ber", "über", true},
		{"[", "[", false}, // a bad pattern matches nothing
	} {
		if got := MatchGlob(c.pat, c.s); got != c.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
	for _, bad := range []string{"[", "[a", "x\\", "[]", "[a-]", "a[b-"} {
		if CheckGlob(bad) == nil {
			t.Errorf("CheckGlob(%q): want an error", bad)
		}
	}
}

// group makes builds of one CPV: build ids 1.., BUILD_TIMEs and USE as
// given.
func group(times []int64, use []string) []catalog.Instance {
	var g []catalog.Instance
	for i, bt := range times {
		g = append(g, fxInst("sys-devel/gcc-13.3.1_p20241025", int64(i+1), bt, map[string]string{
			"KEYWORDS": fxTesting, "USE": use[i], "CHOST": fxCHOST}))
	}
	return g
}

func buildIDs(g []catalog.Instance) string {
	var out []string
	for _, in := range g {
		out = append(out, fmt.Sprint(in.BuildID))
	}
	return strings.Join(out, " ")
}

// TestFilter: the Keep newest (BUILD_TIME, then BUILD_ID, as prune) of the
// builds the conditions take, per USE set with --per-use; build id order
// kept, the input untouched, and no copy when every build is taken.
func TestFilter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const b = fxBuildGcc
	// Build 4 is the newest by time; 2 and 5 share a time, 5 wins by id.
	times := []int64{b, b + 100, b + 50, b + 300, b + 100, b - 10}
	use := []string{fxUseSudo, fxUseGcc2, "ssl kernel_linux amd64 elibc_glibc", fxUseGcc2, fxUseSudo, "amd64"}
	for _, c := range []struct {
		q    string
		want string
	}{
		{"", "1 2 3 4 5 6"},
		{"--keep 6", "1 2 3 4 5 6"},
		{"--keep 1", "4"},
		{"--keep 2", "4 5"},
		{"--keep 3", "2 4 5"},
		{"--keep 5", "1 2 3 4 5"},
		{"--keep 1 --use nls", "4"},
		{"--keep 1 --use -nls", "5"},
		{"--keep 2 --use -nls", "3 5"},
		{"--keep 1 --per-use", "4 5 6"}, // 1, 3 and 5 have one USE set, written two ways
		{"--keep 2 --per-use", "2 3 4 5 6"},
		{"--keep 1 --per-use --use ssl", "5"},
		{"--keep 1 --per-use --use nls", "4"},
		{"--keep 9 --per-use", "1 2 3 4 5 6"},
		{"--keep 1 --keywords amd64", ""},
		{"--keep 1 --newer-than 1d", ""},
		{"--keep 2 '=sys-devel/gcc-13.3.1_p20241025-3' '=sys-devel/gcc-13.3.1_p20241025-1'", "1 3"},
		{"--use nls", "2 4"},
	} {
		sel, err := Parse(c.q, now)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.q, err)
		}
		if sel.Grouped() != (sel.Keep > 0) || sel.Grouped() != strings.Contains(c.q, "--keep") {
			t.Errorf("%q: Grouped() = %v", c.q, sel.Grouped())
		}
		g := group(times, use)
		before := fmt.Sprintf("%+v", g)
		got := sel.Filter(g)
		if buildIDs(got) != c.want {
			t.Errorf("%q: Filter keeps [%s], want [%s]", c.q, buildIDs(got), c.want)
		}
		if fmt.Sprintf("%+v", g) != before {
			t.Errorf("%q: Filter changed its input", c.q)
		}
		if len(got) == len(g) && len(g) > 0 && &got[0] != &g[0] {
			t.Errorf("%q: Filter copied a group it took whole", c.q)
		}
		if len(got) > 0 && len(got) < len(g) && &got[0] == &g[0] {
			t.Errorf("%q: Filter returned its input's array for a part of it", c.q)
		}
	}
	// No allocation when everything is taken (with --per-use: when no
	// more builds than Keep).
	for _, q := range []string{"", "--keep 6", "--keep 6 --per-use --arch amd64", "--chost 'x86_64-*' --keywords ~amd64,~x86 --meta 'PROFILE=default/*'"} {
		sel, _ := Parse(q, now)
		sel.Header = fxHeader
		g := group(times, []string{"a", "b", "c", "d", "e", "f"})
		if n := testing.AllocsPerRun(20, func() { sel.Filter(g) }); n != 0 {
			t.Errorf("%q: Filter of a group it takes whole allocates %v times", q, n)
		}
	}
	// A placeholder is no build: never taken, never counted.
	g := group(times[:3], use[:3])
	g[2].Placeholder, g[2].Meta = true, nil
	sel, _ := Parse("--keep 2", now)
	if got := buildIDs(sel.Filter(g)); got != "1 2" {
		t.Errorf("a group with a placeholder: Filter keeps [%s], want [1 2]", got)
	}
	sel, _ = Parse("", now)
	if got := buildIDs(sel.Filter(g)); got != "1 2" {
		t.Errorf("a group with a placeholder, no keep: Filter keeps [%s], want [1 2]", got)
	}
	if got := sel.Filter(nil); len(got) != 0 {
		t.Errorf("Filter(nil) = %v", got)
	}
}

// TestFilterAsPrune: on random groups, Filter with --keep N [--per-use]
// keeps exactly what catalog.SelectPrune (pkgdirfs prune) leaves.
func TestFilterAsPrune(t *testing.T) {
	uses := []string{"", "ssl", "nls ssl", "ssl nls", "X"}
	seed := uint64(7)
	rnd := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for round := 0; round < 300; round++ {
		n := 1 + rnd(8)
		times, use := make([]int64, n), make([]string, n)
		for i := range times {
			times[i] = int64(1000 + rnd(4)) // ties are common
			use[i] = uses[rnd(len(uses))]
		}
		g := group(times, use)
		keep, perUse := 1+rnd(4), rnd(2) == 1
		q := fmt.Sprintf("--keep %d", keep)
		if perUse {
			q += " --per-use"
		}
		sel, err := Parse(q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		removed := catalog.SelectPrune(g, catalog.PrunePolicy{Keep: keep, PerUse: perUse},
			func(in *catalog.Instance) string { return in.Meta["USE"] }, nil)
		var want []string
		for _, in := range g {
			if !slices.ContainsFunc(removed, func(r catalog.Instance) bool { return r.ID == in.ID }) {
				want = append(want, fmt.Sprint(in.BuildID))
			}
		}
		if got := buildIDs(sel.Filter(g)); got != strings.Join(want, " ") {
			t.Fatalf("%s on times %v, USE %q: Filter keeps [%s], prune leaves [%s]", q, times, use, got, strings.Join(want, " "))
		}
	}
}

func TestAll(t *testing.T) {
	for q, want := range map[string]bool{
		"": true, "--": true, "*/*": false, "--use ssl": false, "--newer-than 1d": false,
		"--chost '*'": false, "--keywords amd64": false, "--arch amd64": false, "--cflags '*'": false,
		"--meta 'A=*'": false, "--keep 1": false, "--keep 1 --per-use": false,
	} {
		sel, err := Parse(q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if sel.All() != want {
			t.Errorf("Parse(%q).All() = %v, want %v", q, sel.All(), want)
		}
	}
}
