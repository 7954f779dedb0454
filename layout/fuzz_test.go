package layout

import (
	"strings"
	"testing"
)

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{
		"0", "1.0", "1.2.3b_alpha4_p5-r6", "1.01", "1.010", "20240101000000000000001",
		"1_pre_p_rc1_beta_alpha", "1.0-r01", "1.0a", "1..0", "1-r", "_p1", "1.0_pr",
	} {
		f.Add(s, "1.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, err := ParseVersion(a)
		if err != nil {
			return
		}
		if va.String() != a {
			t.Fatalf("String() = %q, want %q", va.String(), a)
		}
		if c := CompareVersions(va, va); c != 0 {
			t.Fatalf("CompareVersions(%q, itself) = %d", a, c)
		}
		vb, err := ParseVersion(b)
		if err != nil {
			return
		}
		ab, ba := CompareVersions(va, vb), CompareVersions(vb, va)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("CompareVersions(%q, %q) = %d but reversed = %d", a, b, ab, ba)
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"app-misc/hello/hello-2.10-3.xpak", "app-misc/hello-2.10.tbz2", "All/hello-2.10.tbz2",
		"All/hello-2.10.gpkg.tar", "dev-libs/libsigc++/libsigc++-2.12.1-1.gpkg.tar",
		"app-misc/hello-2.10.gpkg.tar", "Packages", ".Packages.portage_lockfile",
		"app-misc/hello/foo.partial", "app-misc/hello/hello-2.10-2.gpkg.tar1edmeuz5.14462",
		"app-misc/hello/hello-2.10-01.xpak", "app-misc/other/hello-2.10-1.xpak",
		"app-misc/hello/hello-2.10-1_0.xpak", "a/b/c-1- 1.xpak",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		p := ParsePath(rel)
		if p.Kind == KindOther {
			if p != (Path{Kind: KindOther}) {
				t.Fatalf("KindOther with fields: %+v", p)
			}
			return
		}
		var back string
		switch p.Kind {
		case KindMulti:
			if p.BuildID < 1 {
				t.Fatalf("multi with build id %d", p.BuildID)
			}
			back = MultiPath(p.Category, p.PF, p.BuildID, p.Format)
		case KindFlat:
			back = FlatPath(p.Category, p.PF, p.Format)
		case KindLegacy:
			back = LegacyPath(p.PF, p.Format)
		}
		if back != rel {
			t.Fatalf("ParsePath(%q) = %+v renders back as %q", rel, p, back)
		}
		if err := CheckIdentity(p, orDefault(p.Category, "cat"), p.PF); err != nil {
			t.Fatalf("CheckIdentity(%+v): %v", p, err)
		}
	})
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func FuzzPkgSplit(f *testing.F) {
	for _, s := range []string{
		"libsigc++-2.12.1", "bash-5.1_p16-r10", "foo-bar-1", "foo-1-bar-2", "foo-1-2",
		"foo-1.0-r1-r2", "x-1-r1-2", "foo", "-1", "a+b-1_rc-r3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pn, ver, rev, ok := PkgSplit(s)
		if !ok {
			if pn != "" || ver != "" || rev != "" {
				t.Fatalf("PkgSplit(%q) failed but returned %q %q %q", s, pn, ver, rev)
			}
			return
		}
		joined := pn + "-" + ver
		if rev != "r0" || strings.HasSuffix(s, "-r0") {
			joined += "-" + rev
		}
		if joined != s {
			t.Fatalf("PkgSplit(%q) = %q %q %q does not rebuild the name", s, pn, ver, rev)
		}
		if _, err := ParseVersion(ver); err != nil {
			t.Fatalf("PkgSplit(%q): version %q does not parse", s, ver)
		}
		// The PN must not itself end in -version.
		if i := strings.LastIndexByte(pn, '-'); i >= 0 && validVR(pn[i+1:]) {
			t.Fatalf("PkgSplit(%q): PN %q ends in a version", s, pn)
		}
		if c, p, pf, ok := SplitCPV("cat/" + s); !ok || c != "cat" || p != pn || pf != s {
			t.Fatalf("SplitCPV(cat/%q) = %q %q %q %v", s, c, p, pf, ok)
		}
		if id := ParseBuildID(s + "-7.xpak"); id != 7 {
			t.Fatalf("ParseBuildID(%q-7.xpak) = %d", s, id)
		}
	})
}

func FuzzUseReduce(f *testing.F) {
	for _, c := range useReduceCases {
		f.Add(c.deps, c.use, c.atoms)
	}
	f.Fuzz(func(t *testing.T, deps, use string, atoms bool) {
		u := map[string]bool{}
		for _, x := range strings.Fields(use) {
			u[x] = true
		}
		out, err := useReduce(deps, u, atoms)
		if err != nil {
			return
		}
		// Reduced output has no conditionals left, and reducing it again
		// is stable.
		again, err := useReduce(out, u, atoms)
		if err != nil {
			t.Fatalf("reduce(%q) = %q which does not reduce: %v", deps, out, err)
		}
		if again != out {
			t.Fatalf("reduce(%q) = %q, reduce again = %q", deps, out, again)
		}
	})
}
