package layout

import (
	"strings"
	"testing"
)

func TestQueryParseAtom(t *testing.T) {
	cases := []struct {
		in      string
		op      string
		cat, pn string
		ver     string
		build   int64
		slot    string // "main" or "main/sub"
		repo    string
		use     string // "ssl,-X"
	}{
		{in: "app-misc/hello", cat: "app-misc", pn: "hello"},
		{in: "=app-misc/hello-2.10", op: "=", cat: "app-misc", pn: "hello", ver: "2.10"},
		{in: ">=dev-libs/glib-2.80", op: ">=", cat: "dev-libs", pn: "glib", ver: "2.80"},
		{in: "<=dev-libs/glib-2.80.5-r1", op: "<=", cat: "dev-libs", pn: "glib", ver: "2.80.5-r1"},
		{in: ">dev-libs/glib-2", op: ">", cat: "dev-libs", pn: "glib", ver: "2"},
		{in: "<dev-libs/glib-2", op: "<", cat: "dev-libs", pn: "glib", ver: "2"},
		{in: "~cat/pkg-1.0", op: "~", cat: "cat", pn: "pkg", ver: "1.0"},
		{in: "=cat/pkg-1.0*", op: "=*", cat: "cat", pn: "pkg", ver: "1.0"},
		{in: "=cat/pkg-1.0-r0", op: "=", cat: "cat", pn: "pkg", ver: "1.0-r0"},
		{in: "=app-misc/hello-2.10-3", op: "=", cat: "app-misc", pn: "hello", ver: "2.10", build: 3},
		{in: "=app-shells/bash-5.1_p16-r10-2", op: "=", cat: "app-shells", pn: "bash", ver: "5.1_p16-r10", build: 2},
		{in: "cat/pkg:SLOT", cat: "cat", pn: "pkg", slot: "SLOT"},
		{in: "app-arch/zstd:0/1", cat: "app-arch", pn: "zstd", slot: "0/1"},
		{in: "app-arch/zstd:=", cat: "app-arch", pn: "zstd"},
		{in: "app-arch/zstd:*", cat: "app-arch", pn: "zstd"},
		{in: "app-arch/zstd:0=", cat: "app-arch", pn: "zstd", slot: "0"},
		{in: "cat/*", cat: "cat", pn: "*"},
		{in: "*/hello", cat: "*", pn: "hello"},
		{in: "*/*:0", cat: "*", pn: "*", slot: "0"},
		{in: "dev-libs/libsigc++:2", cat: "dev-libs", pn: "libsigc++", slot: "2"},
		{in: "dev-python/python-dateutil", cat: "dev-python", pn: "python-dateutil"},
		{in: "app-misc/hello::gentoo", cat: "app-misc", pn: "hello", repo: "gentoo"},
		{in: "app-misc/hello:0::gentoo[nls,-X]", cat: "app-misc", pn: "hello", slot: "0", repo: "gentoo", use: "nls,-X"},
		{in: "net-misc/curl[ssl]", cat: "net-misc", pn: "curl", use: "ssl"},
	}
	for _, c := range cases {
		a, err := ParseAtom(c.in)
		if err != nil {
			t.Errorf("ParseAtom(%q): %v", c.in, err)
			continue
		}
		slot := a.Slot
		if a.HasSubSlot {
			slot += "/" + a.SubSlot
		}
		var use []string
		for _, u := range a.Use {
			if u.On {
				use = append(use, u.Flag)
			} else {
				use = append(use, "-"+u.Flag)
			}
		}
		got := []string{a.Op, a.Category, a.PN, a.Version.String(), slot, a.Repo, strings.Join(use, ",")}
		want := []string{c.op, c.cat, c.pn, c.ver, c.slot, c.repo, c.use}
		if strings.Join(got, "|") != strings.Join(want, "|") || a.BuildID != c.build {
			t.Errorf("ParseAtom(%q) = %q build %d, want %q build %d", c.in, got, a.BuildID, want, c.build)
		}
		if a.HasSlot != (c.slot != "") {
			t.Errorf("ParseAtom(%q).HasSlot = %v", c.in, a.HasSlot)
		}
	}
}

func TestQueryParseAtomErrors(t *testing.T) {
	cases := map[string]string{
		"":                        "empty",
		"hello":                   "not a valid atom",
		"app-misc/hello-2.10":     "needs an operator",
		"!app-misc/hello":         "blockers",
		">=app-misc/hello":        "not a valid atom",
		"=app-misc/hello":         "not a valid atom",
		">=app-misc/hello-2.10-3": "goes with = only",
		"=app-misc/hello-2.10-03": "invalid build id",
		"app-misc/hello:":         "not a valid atom",
		"app-misc/hello[ssl?]":    "only FLAG and -FLAG",
		"app-misc/hello[!ssl]":    "only FLAG and -FLAG",
		"app misc/hello":          "white space",
		"-bad/*":                  "invalid category",
		"cat/*:":                  "invalid slot",
		"*/hello-1.0":             "invalid package name",
		">=cat/*":                 "invalid category",
		"~cat/pkg-1.x":            "not a valid atom",
	}
	for in, want := range cases {
		_, err := ParseAtom(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAtom(%q) = %v, want an error saying %q", in, err, want)
		}
	}
}

func TestQueryAtomMatch(t *testing.T) {
	b := func(cpv string, build int64, slot, use string) *Build {
		cat, pn, pf, ok := SplitCPV(cpv)
		if !ok {
			t.Fatalf("bad cpv %q", cpv)
		}
		return &Build{Category: cat, PN: pn, PF: pf, BuildID: build, Slot: slot, Repo: "gentoo", Use: use, IUse: "ssl X +nls"}
	}
	hello := b("app-misc/hello-2.10", 1, "0", "nls")
	hello2 := b("app-misc/hello-2.10", 2, "0", "nls ssl")
	hello9 := b("app-misc/hello-2.9", 1, "", "")
	glib := b("dev-libs/glib-2.80.5-r1", 1, "2", "ssl")
	glibOld := b("dev-libs/glib-2.78.0", 1, "2", "")
	zstd := b("app-arch/zstd-1.5.5-r1", 1, "0/1", "X")
	zstd10 := b("app-arch/zstd-1.10", 1, "0/2", "")
	bash := b("app-shells/bash-5.1_p16-r10", 3, "0", "")
	bashPre := b("app-shells/bash-5.1_rc1", 1, "0", "")
	all := []*Build{hello, hello2, hello9, glib, glibOld, zstd, zstd10, bash, bashPre}
	names := func(bs []*Build) string {
		var s []string
		for _, x := range bs {
			s = append(s, x.Category+"/"+x.PF+"-"+string(rune('0'+x.BuildID)))
		}
		return strings.Join(s, " ")
	}
	cases := []struct {
		atom string
		want []*Build
	}{
		{"app-misc/hello", []*Build{hello, hello2, hello9}},
		{"=app-misc/hello-2.10", []*Build{hello, hello2}},
		{"=app-misc/hello-2.10-r0", []*Build{hello, hello2}},
		{"=app-misc/hello-2.10-2", []*Build{hello2}},
		{">app-misc/hello-2.9", []*Build{hello, hello2}}, // 2.10 > 2.9 (numeric, not string, order)
		{"<app-misc/hello-2.10", []*Build{hello9}},       // and 2.9 < 2.10
		{">=dev-libs/glib-2.80", []*Build{glib}},         // 2.80.5-r1 >= 2.80
		{"<=dev-libs/glib-2.80.5", []*Build{glibOld}},    // a revision is newer than none
		{"<=dev-libs/glib-2.80.5-r1", []*Build{glib, glibOld}},
		{"~dev-libs/glib-2.80.5", []*Build{glib}}, // any revision
		{"=dev-libs/glib-2.80.5", nil},            // = wants the revision too
		{"=app-arch/zstd-1.5*", []*Build{zstd}},
		{"=app-arch/zstd-1.1*", nil}, // 1.1* does not take 1.10
		{"=app-arch/zstd-1*", []*Build{zstd, zstd10}},
		{"=app-arch/zstd-1.10*", []*Build{zstd10}},
		{"=app-shells/bash-5.1*", []*Build{bash, bashPre}},
		{"<app-shells/bash-5.1", []*Build{bashPre}}, // _rc sorts before the release
		{">app-shells/bash-5.1", []*Build{bash}},    // _p after it
		{"app-arch/zstd:0", []*Build{zstd, zstd10}},
		{"app-arch/zstd:0/1", []*Build{zstd}},
		{"app-arch/zstd:1", nil},
		{"app-misc/hello:0", []*Build{hello, hello2, hello9}}, // no SLOT is slot 0
		{"dev-libs/*", []*Build{glib, glibOld}},
		{"*/hello", []*Build{hello, hello2, hello9}},
		{"*/*:2", []*Build{glib, glibOld}},
		{"app-misc/hello[ssl]", []*Build{hello2}},
		{"app-misc/hello[-ssl]", []*Build{hello, hello9}},
		{"*/*[X]", []*Build{zstd}},
		{"*/*[missing(+)]", all}, // not in IUSE: the default decides
		{"*/*[missing(-)]", nil},
		{"*/*[missing]", nil},
		{"app-misc/hello::gentoo", []*Build{hello, hello2, hello9}},
		{"app-misc/hello::other", nil},
	}
	for _, c := range cases {
		a, err := ParseAtom(c.atom)
		if err != nil {
			t.Errorf("ParseAtom(%q): %v", c.atom, err)
			continue
		}
		var got []*Build
		for _, x := range all {
			if a.Match(x) {
				got = append(got, x)
			}
		}
		if names(got) != names(c.want) {
			t.Errorf("%s matches [%s], want [%s]", c.atom, names(got), names(c.want))
		}
	}
}

func TestQueryUseReqs(t *testing.T) {
	reqs, err := ParseUseReqs("ssl,-X")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		use  string
		want bool
	}{
		{"ssl", true}, {"ssl nls", true}, {"ssl X", false}, {"X", false}, {"", false}, {"ssl-foo", false},
	}
	for _, c := range cases {
		if got := MatchUse(reqs, c.use, ""); got != c.want {
			t.Errorf("USE=%q against ssl,-X: %v, want %v", c.use, got, c.want)
		}
	}
	if r, err := ParseUseReqs("a b,+c"); err != nil || len(r) != 3 || !r[2].On {
		t.Errorf("ParseUseReqs(\"a b,+c\") = %+v, %v", r, err)
	}
	for _, bad := range []string{"", ",", "-", "ss!l", "-_x"} {
		if _, err := ParseUseReqs(bad); err == nil {
			t.Errorf("ParseUseReqs(%q): want an error", bad)
		}
	}
}

func TestQueryValidPN(t *testing.T) {
	for s, want := range map[string]bool{
		"hello": true, "libsigc++": true, "python-dateutil": true, "foo-1-bar": true,
		"hello-2.10": false, "foo-1": false, "-x": false, "": false, "foo-": false, "a.b": false,
	} {
		if got := ValidPN(s); got != want {
			t.Errorf("ValidPN(%q) = %v, want %v", s, got, want)
		}
	}
}
