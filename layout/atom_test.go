package layout

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// atomSyntaxRE is the atom syntax as a regular expression, the reference
// matchAtom is written against (and was the implementation before it).
var atomSyntaxRE = func() *regexp.Regexp {
	const (
		word = `[A-Za-z0-9_]`
		cat  = word + `[A-Za-z0-9_+.-]*`
		pkg  = word + `[A-Za-z0-9_+-]*?`
		ver  = `[0-9]+(?:\.[0-9]+)*[a-z]?(?:_(?:pre|p|beta|alpha|rc)[0-9]*)*`
		vr   = ver + `(?:-r[0-9]+)?`
	)
	return regexp.MustCompile(`^(?:` +
		`(?:[=~]|[><]=?)` + cat + `/` + pkg + `(?P<opinner>-` + vr + `)?-(?P<opver>` + vr + `)` +
		`|=` + cat + `/` + pkg + `(?P<starinner>-` + vr + `)?-` + vr + `\*` +
		`|` + cat + `/` + pkg + `(?P<simpleinner>-` + vr + `)?` +
		`)` +
		`(?::(?P<slot>[A-Za-z0-9_+./*=-]+))?` +
		`(?:::` + word + `[A-Za-z0-9_-]*)?` +
		`(?P<use>\[.*\])?$`)
}()

// atomByRE is matchAtom's answer computed with the regular expression.
func atomByRE(s string) (atomParts, bool) {
	m := atomSyntaxRE.FindStringSubmatch(s)
	if m == nil {
		return atomParts{}, false
	}
	g := func(name string) string { return m[atomSyntaxRE.SubexpIndex(name)] }
	p := atomParts{
		opInner:     g("opinner") != "",
		starInner:   g("starinner") != "",
		simpleInner: g("simpleinner") != "",
		slot:        g("slot"),
		hasSlot:     g("slot") != "",
		use:         g("use"),
	}
	if p.opInner {
		p.opVer = g("opver")
	}
	return p, true
}

func checkAtomAgainstRE(t *testing.T, s string) {
	t.Helper()
	got, ok := matchAtom(s)
	if got.opVer != "" && !got.opInner {
		got.opVer = "" // only read when the inner version took part
	}
	want, wok := atomByRE(s)
	if ok != wok || (ok && got != want) {
		t.Fatalf("matchAtom(%q) = %+v, %v; the regular expression says %+v, %v", s, got, ok, want, wok)
	}
}

func TestMatchAtomTable(t *testing.T) {
	for _, c := range []struct {
		atom string
		ok   bool
		want atomParts
	}{
		{"app-misc/hello", true, atomParts{}},
		{">=dev-libs/glib-2.80.0:2[introspection?,-debug]", true, atomParts{opVer: "2.80.0", slot: "2", hasSlot: true, use: "[introspection?,-debug]"}},
		{"=app-misc/hello-2.10-3", true, atomParts{opInner: true, opVer: "3"}},
		{"=app-misc/hello-2.10-r1-03", true, atomParts{opInner: true, opVer: "03"}},
		{"=app-misc/hello-2*", true, atomParts{}},
		{"=app-misc/hello-1-2*", true, atomParts{starInner: true}},
		{"app-misc/hello-2.10", true, atomParts{simpleInner: true}},
		{"app-misc/hello::gentoo", true, atomParts{}},
		{"app-misc/hello:0::gentoo[x]", true, atomParts{slot: "0", hasSlot: true, use: "[x]"}},
		{"app-misc/hello:", false, atomParts{}},
		{"app-misc/hello:0:gentoo", false, atomParts{}},
		{"~app-misc/hello", false, atomParts{}},
		{"app-misc/foo-bar-1a_pre1_p2-r3", true, atomParts{simpleInner: true}},
		{"app-misc/foo-1_pree", true, atomParts{}},
		{">app-misc/foo-1_pree", false, atomParts{}},
		{"app-misc", false, atomParts{}},
		{"a/b/c", false, atomParts{}},
		{"<=x/y-1.0*", false, atomParts{}},
	} {
		got, ok := matchAtom(c.atom)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("matchAtom(%q) = %+v, %v; want %+v, %v", c.atom, got, ok, c.want, c.ok)
		}
		checkAtomAgainstRE(t, c.atom)
	}
}

// TestMatchAtomGenerated compares matchAtom with the regular expression on
// atoms assembled from the pieces where the syntax has its corners.
func TestMatchAtomGenerated(t *testing.T) {
	pieces := []string{"=", "~", "<", ">=", ">", "!", "*", "dev-libs", "a", "Z", "_", "+", ".", "-",
		"/", "foo", "-bar", "-1", "-1.0", "-2.80.0", "-1a", "_pre", "_p1", "_rc", "_beta2", "_x", "-r1",
		"-r", "-03", "0", "9", ":", "::", "gentoo", ":0", ":2/2.1=", ":*", ":=", "[", "]", "[x]", "[-x,y?]",
		"\n", "é", "ab", "12", "r"}
	r := rand.New(rand.NewPCG(1, 2))
	n := 300000
	if testing.Short() {
		n = 30000
	}
	for range n {
		var b strings.Builder
		for k := 1 + r.IntN(9); k > 0; k-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		checkAtomAgainstRE(t, b.String())
		// Most random strings fail early: also vary a valid atom.
		checkAtomAgainstRE(t, ">=dev-libs/"+b.String())
		checkAtomAgainstRE(t, "app-misc/x"+b.String())
	}
}

func FuzzMatchAtom(f *testing.F) {
	for _, s := range []string{"app-misc/hello", "=a/b-1-2*", ">=c/d-1.0-r1:0/1=::x[y]", "a/b-1_pre-r2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAtomAgainstRE(t, s) })
}

var (
	slotDepSyntaxRE = regexp.MustCompile(`^(?:(?P<main>[A-Za-z0-9_][A-Za-z0-9_+.-]*)(?:/(?P<sub>[A-Za-z0-9_][A-Za-z0-9_+.-]*))?)?(?P<op>[*=])?$`)
	useDepSyntaxRE  = regexp.MustCompile(`^([!-]?)([A-Za-z0-9][A-Za-z0-9+_@-]*)((?:\(\+\)|\(-\))?)([?=]?)$`)
)

// TestSlotAndUseDepGenerated compares matchSlotDep and matchUseDep with
// the regular expressions they replace.
func TestSlotAndUseDepGenerated(t *testing.T) {
	pieces := []string{"", "0", "2.1", "a", "_", "+", ".", "-", "/", "*", "=", "!", "?", "(+)", "(-)", "(", ")", "@", "ssl", "X", "é"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		var b strings.Builder
		for k := 1 + r.IntN(6); k > 0; k-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		main, sub, op, ok := matchSlotDep(s)
		if m := slotDepSyntaxRE.FindStringSubmatch(s); (m != nil) != ok || ok && (m[1] != main || m[2] != sub || m[3] != op) {
			t.Fatalf("matchSlotDep(%q) = %q %q %q %v; regexp %q", s, main, sub, op, ok, m)
		}
		pre, flag, dflt, suf, ok := matchUseDep(s)
		if m := useDepSyntaxRE.FindStringSubmatch(s); (m != nil) != ok || ok && (m[1] != pre || m[2] != flag || m[3] != dflt || m[4] != suf) {
			t.Fatalf("matchUseDep(%q) = %q %q %q %q %v; regexp %q", s, pre, flag, dflt, suf, ok, m)
		}
	}
}
