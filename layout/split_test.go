package layout

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The hand-written fast paths must agree with the definitions they replace.
func TestFastPathsAgree(t *testing.T) {
	useFlagRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+_@-]*$`)
	alphabet := []rune("aZ09+_@-!?.: \t\n\v\f\r\x1c\x1f\u00a0\u2003\u3000é[]()|")
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []string{"", " ", "a", "-a", "a-", "+x", "abi_x86_64", "ssl", "foo@bar", "a b", "\x1c", "a\u00a0b", " dev-libs/glib  ssl? ( x )\n"}
	for i := 0; i < 20000; i++ {
		n := rng.IntN(12)
		var b strings.Builder
		for j := 0; j < n; j++ {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		if got, want := isUseFlag(s), useFlagRE.MatchString(s); got != want {
			t.Errorf("isUseFlag(%q) = %v, regexp says %v", s, got, want)
		}
		got, want := pySplit(s), strings.FieldsFunc(s, isPySpace)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Errorf("pySplit(%q) = %q, want %q", s, got, want)
		}
	}
}

// Cached atom verdicts give what a fresh evaluation gives, for conditional
// atoms (whose result depends on USE) too.
func TestAtomCache(t *testing.T) {
	on, off := map[string]bool{"ssl": true}, map[string]bool{}
	for _, c := range []struct {
		tok, on, off string
		bad          bool
	}{
		{tok: "dev-libs/openssl:0=", on: "dev-libs/openssl:0=", off: "dev-libs/openssl:0="},
		{tok: "net-misc/curl[ssl?]", on: "net-misc/curl[ssl]", off: "net-misc/curl"},
		{tok: "net-misc/curl[ssl=]", on: "net-misc/curl[ssl]", off: "net-misc/curl[-ssl]"},
		{tok: "dev-libs/foo-1.0", bad: true},
	} {
		for round := 0; round < 2; round++ {
			for _, u := range []struct {
				use  map[string]bool
				want string
			}{{on, c.on}, {off, c.off}} {
				got, err := evaluateAtom(c.tok, u.use)
				if c.bad {
					if err == nil {
						t.Errorf("round %d: %s: want an error", round, c.tok)
					}
					continue
				}
				if err != nil || got != u.want {
					t.Errorf("round %d: evaluateAtom(%s, %v) = %q, %v; want %q", round, c.tok, u.use, got, err, u.want)
				}
			}
		}
	}
}
