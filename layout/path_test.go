package layout

import (
	"strings"
	"testing"
)

func TestParseBuildID(t *testing.T) {
	cases := []struct {
		name string
		want int64
	}{
		// Portage's test_bintree_build_id.py.
		{"openpgp-keys-bzip2-20220406.gpkg.tar", -1},
		{"openpgp-keys-bzip2-20220406-1.gpkg.tar", 1},
		{"openpgp-keys-bzip2-20220406.xpak", -1},
		{"openpgp-keys-bzip2-20220406-1.xpak", 1},
		{"/pkgdir/app-crypt/openpgp-keys-bzip2/openpgp-keys-bzip2-20220406-1.xpak", 1},
		{"foo-1.0-r1.gpkg.tar", -1},
		// Python int() leniency: the name check rejects these later.
		{"foo-1.0-01.xpak", 1},
		{"foo-1.0-1_0.xpak", 10},
		{"foo-1.0- 3.xpak", 3},
		{"foo-1.0-+4.xpak", 4},
		{"foo-1.0-1.tbz2", 1},
		{"cat/pn/foo-1.0-r1-7.xpak", 7},
		{"foo-1.0-x.xpak", -1},
		{"foo-1.0-1__0.xpak", -1},
		{"foo-1.0-_1.xpak", -1},
		{"foo-1.0-1.zip", -1},
		{"foo-1.0", -1},
		{"foo.xpak", -1},
		{"foo-1-2.xpak", 2},
	}
	for _, c := range cases {
		if got := ParseBuildID(c.name); got != c.want {
			t.Errorf("ParseBuildID(%q) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPackageExt(t *testing.T) {
	cases := []struct {
		name, ext string
		f         Format
		ok        bool
	}{
		{"a-1.tbz2", ".tbz2", FormatXpak, true},
		{"a-1-1.xpak", ".xpak", FormatXpak, true},
		{"a-1.gpkg.tar", ".gpkg.tar", FormatGpkg, true},
		{"a-1.tar", "", "", false},
		{"a-1.gpkg.tar1edmeuz5.14462", "", "", false},
		{"a-1.xpak.partial", "", "", false},
	}
	for _, c := range cases {
		ext, f, ok := PackageExt(c.name)
		if ext != c.ext || f != c.f || ok != c.ok {
			t.Errorf("PackageExt(%q) = %q %q %v", c.name, ext, f, ok)
		}
	}
}

func TestPathsRoundTrip(t *testing.T) {
	for _, f := range []Format{FormatXpak, FormatGpkg} {
		for _, c := range []struct{ cat, pf string }{
			{"app-misc", "hello-2.10"},
			{"dev-libs", "libsigc++-2.12.1"},
			{"app-shells", "bash-5.1_p16-r10"},
			{"x11-libs", "foo-1-bar-2"},
		} {
			pn, _, _, _ := PkgSplit(c.pf)
			for _, id := range []int64{1, 2, 10, 12345678901} {
				rel := MultiPath(c.cat, c.pf, id, f)
				want := Path{Kind: KindMulti, Format: f, Category: c.cat, PN: pn, PF: c.pf, BuildID: id}
				if got := ParsePath(rel); got != want {
					t.Errorf("ParsePath(%q) = %+v, want %+v", rel, got, want)
				}
				if err := CheckIdentity(want, c.cat, c.pf); err != nil {
					t.Errorf("CheckIdentity(%q): %v", rel, err)
				}
			}
			rel := FlatPath(c.cat, c.pf, f)
			want := Path{Kind: KindFlat, Format: f, Category: c.cat, PN: pn, PF: c.pf}
			if got := ParsePath(rel); got != want {
				t.Errorf("ParsePath(%q) = %+v, want %+v", rel, got, want)
			}
			if err := CheckIdentity(want, c.cat, c.pf); err != nil {
				t.Errorf("CheckIdentity(%q): %v", rel, err)
			}
			rel = LegacyPath(c.pf, f)
			want = Path{Kind: KindLegacy, Format: f, PN: pn, PF: c.pf}
			if got := ParsePath(rel); got != want {
				t.Errorf("ParsePath(%q) = %+v, want %+v", rel, got, want)
			}
			if err := CheckIdentity(want, c.cat, c.pf); err != nil {
				t.Errorf("CheckIdentity(%q): %v", rel, err)
			}
			if got := want.String(); got != rel {
				t.Errorf("Path.String() = %q, want %q", got, rel)
			}
		}
	}
	if got := MultiPath("cat", "nover", 1, FormatXpak); got != "" {
		t.Errorf("MultiPath with invalid PF = %q", got)
	}
}

func TestParsePathExamples(t *testing.T) {
	cases := []struct {
		rel  string
		want Path
	}{
		{"app-misc/hello/hello-2.10-3.xpak", Path{KindMulti, FormatXpak, "app-misc", "hello", "hello-2.10", 3}},
		{"app-misc/hello/hello-2.10-r1-3.gpkg.tar", Path{KindMulti, FormatGpkg, "app-misc", "hello", "hello-2.10-r1", 3}},
		{"app-misc/hello-2.10.tbz2", Path{KindFlat, FormatXpak, "app-misc", "hello", "hello-2.10", 0}},
		{"app-misc/hello-2.10.gpkg.tar", Path{KindFlat, FormatGpkg, "app-misc", "hello", "hello-2.10", 0}},
		{"All/hello-2.10.tbz2", Path{KindLegacy, FormatXpak, "", "hello", "hello-2.10", 0}},
		{"All/hello-2.10.gpkg.tar", Path{KindLegacy, FormatGpkg, "", "hello", "hello-2.10", 0}},
	}
	for _, c := range cases {
		if got := ParsePath(c.rel); got != c.want {
			t.Errorf("ParsePath(%q) = %+v, want %+v", c.rel, got, c.want)
		}
	}
	for _, rel := range []string{
		"Packages", "Packages.gz", ".Packages.portage_lockfile", "Packages1a2b3c4d",
		"app-misc/hello/foo.partial",
		"app-misc/hello/hello-2.10-2.gpkg.tar1edmeuz5.14462",
		"app-misc/hello/hello-2.10-2.xpak.partial",
		"app-misc/hello/.hello-2.10-2.xpak.partial.portage_lockfile",
		"app-misc/hello-2.10x1a2b3c4.tbz2.1234", // doebuild temp: ends in .<pid>
		"app-misc/hello/hello-2.10-01.xpak",     // non-canonical build id
		"app-misc/hello/hello-2.10-0.xpak",      // build id must be >= 1
		"app-misc/hello/hello-2.10-+1.xpak",
		"app-misc/hello/hello-2.10-1_0.xpak",
		"app-misc/hello/hello-2.10.xpak",   // xpak is multi-instance only
		"app-misc/hello-2.10-1.xpak",       // multi outside cat/pn
		"app-misc/hello-2.10-1.gpkg.tar",   // build id outside cat/pn
		"All/hello-2.10-1.gpkg.tar",        // build id outside cat/pn
		"app-misc/other/hello-2.10-1.xpak", // wrong PN dir
		"app-misc/hello/hello-2.10.tbz2",   // tbz2 is never multi-instance
		"app-misc/hello/hello-2.10.gpkg.tar",
		"All/hello/hello-2.10-1.xpak", // category All
		"-bad/hello/hello-2.10-1.xpak",
		"-bad/hello-2.10.tbz2",
		"hello-2.10.tbz2",
		"/app-misc/hello-2.10.tbz2",
		"app-misc//hello-2.10.tbz2",
		"./hello-2.10.tbz2",
		"a/b/c/hello-2.10-1.xpak",
		"app-misc/hello.tbz2",
		"app-misc/hello-1-2.tbz2",
		"app-misc/hello-2.10-1.tbz2",
	} {
		if got := ParsePath(rel); got.Kind != KindOther {
			t.Errorf("ParsePath(%q) = %+v, want KindOther", rel, got)
		}
	}
}

func TestCheckIdentity(t *testing.T) {
	multi := ParsePath("app-misc/hello/hello-2.10-3.xpak")
	flat := ParsePath("app-misc/hello-2.10.tbz2")
	legacy := ParsePath("All/hello-2.10.tbz2")
	ok := []struct {
		p       Path
		cat, pf string
	}{
		{multi, "app-misc", "hello-2.10"},
		{flat, "app-misc", "hello-2.10"},
		{legacy, "app-misc", "hello-2.10"},
		{legacy, "dev-util", "hello-2.10"},
	}
	for _, c := range ok {
		if err := CheckIdentity(c.p, c.cat, c.pf); err != nil {
			t.Errorf("CheckIdentity(%+v, %q, %q): %v", c.p, c.cat, c.pf, err)
		}
	}
	bad := []struct {
		p       Path
		cat, pf string
	}{
		{multi, "dev-util", "hello-2.10"},
		{multi, "app-misc", "hello-2.11"},
		{flat, "dev-util", "hello-2.10"},
		{flat, "app-misc", "hello-2.10-r1"},
		{legacy, "app-misc", "other-2.10"},
		{legacy, "-bad", "hello-2.10"},
		{flat, "", "hello-2.10"},
		{flat, "app-misc", ""},
		{Path{}, "app-misc", "hello-2.10"},
		{Path{Kind: KindMulti, Category: "app-misc", PN: "hello", PF: "nover"}, "app-misc", "nover"},
	}
	for _, c := range bad {
		if err := CheckIdentity(c.p, c.cat, c.pf); err == nil {
			t.Errorf("CheckIdentity(%+v, %q, %q) = nil, want error", c.p, c.cat, c.pf)
		}
	}
}

func TestNewer(t *testing.T) {
	cases := []struct {
		ta, ia, tb, ib int64
		want           bool
	}{
		{2, 1, 1, 5, true},
		{1, 5, 2, 1, false},
		{1, 2, 1, 1, true},
		{1, 1, 1, 2, false},
		{1, 1, 1, 1, false},
		{0, -1, 0, -1, false},
	}
	for _, c := range cases {
		if got := Newer(c.ta, c.ia, c.tb, c.ib); got != c.want {
			t.Errorf("Newer(%d,%d,%d,%d) = %v", c.ta, c.ia, c.tb, c.ib, got)
		}
	}
}

func TestSkippedName(t *testing.T) {
	for _, c := range []struct {
		rel  string
		want string // substring of the reason; "" for not judged
	}{
		// Package names and names that do not look like one: not judged.
		{"app-misc/hello/hello-2.10-1.xpak", ""},
		{"app-misc/hello-2.10.tbz2", ""},
		{"All/hello-2.10.tbz2", ""},
		{"app-misc/hello-2.10.gpkg.tar", ""},
		{"app-misc/.hello-2.10.tbz2.Xy12ab", ""},
		{"app-misc/hello/.hello-2.10-1.gpkg.tar.partial", ""},
		{"app-misc/hello-2.10.tbz2.12345", ""},
		{"app-misc/hello/hello-2.10-1.gpkg.tar.partial", ""},
		{"Packages", ""},
		{"hello-2.10.tbz2", ""},
		{"app-misc/notes.txt", ""},
		// Package-looking names Portage skips.
		{"app-misc/hello/hello-2.10-1.XPAK", "not lower-case .xpak"},
		{"app-misc/hello-2.10.TBZ2", "not lower-case .tbz2"},
		{"app-misc/hello-2.10.gpkg", "cut short"},
		{"app-misc/hello-2.10.xpak", "belongs in its $PN directory"},
		{"app-misc/hello/hello-2.10.tbz2", "belongs in its category directory"},
		{"app-misc/hello/hello-2.10.xpak", "build id of 1 or more"},
		{"app-misc/hello/hello-2.10-0.xpak", "build id of 1 or more"},
		{"app-misc/hello/hello-2.10-01.xpak", "without leading zeros"},
		{"app-misc/hello/hello-2.10-99999999999999999999.xpak", "within 64 bits"},
		{"app-misc/other/hello-2.10-1.xpak", "in the PN directory"},
		{"app-misc/hello/hello-x.y-1.xpak", "valid package name and version"},
		{"app-misc/hello-x.y.tbz2", "valid package name and version"},
		{"-bad/hello-2.10.tbz2", "not a valid category"},
		{"app-misc/hello-2.10\xff.tbz2", "not UTF-8"},
	} {
		got := SkippedName(c.rel)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("SkippedName(%q) = %q, want %q", c.rel, got, c.want)
		}
	}
}
