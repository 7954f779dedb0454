package query

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
)

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		"":                         nil,
		"  a  b\tc ":               {"a", "b", "c"},
		`'>=dev-lang/python-3.11'`: {">=dev-lang/python-3.11"},
		`"app-misc/*" x`:           {"app-misc/*", "x"},
		`a' 'b`:                    {"a b"},
		`"say \"hi\" \\ \x"`:       {`say "hi" \ \x`},
		`a\ b`:                     {"a b"},
		`--use 'ssl,-X' --use=nls`: {"--use", "ssl,-X", "--use=nls"},
		`''`:                       {""},
	} {
		got, err := Split(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `end\`} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q): want an error", bad)
		}
	}
}

func TestParse(t *testing.T) {
	now := time.Unix(1_000_000_000, 0)
	day := int64(24 * 3600)
	mk := func(cpv string, id, bt int64, use string) *catalog.Instance {
		cat, pf, _ := strings.Cut(cpv, "/")
		pn := pf[:strings.LastIndexByte(pf, '-')]
		return &catalog.Instance{ID: id, CPV: cpv, Category: cat, PF: pf, PN: pn, BuildID: id, BuildTime: bt,
			Format: "xpak", Meta: map[string]string{"USE": use, "IUSE": "ssl X nls"}}
	}
	insts := []*catalog.Instance{
		mk("app-misc/hello-2.10", 1, now.Unix()-40*day, "ssl nls"),
		mk("app-misc/hello-2.10", 2, now.Unix()-10*day, "ssl X"),
		mk("dev-lang/python-3.12", 3, now.Unix()-2*day, ""),
		mk("dev-lang/python-3.10", 4, now.Unix()-2*day, "ssl"),
	}
	for q, want := range map[string]string{
		"":                                      "1 2 3 4",
		"app-misc/*":                            "1 2",
		"'app-misc/*' '>=dev-lang/python-3.11'": "1 2 3",
		"--use ssl,-X":                          "1 4",
		"--use=ssl --newer-than 30d":            "2 4",
		`app-misc/hello --older-than "30d"`:     "1",
		"-- app-misc/hello":                     "1 2",
	} {
		sel, err := Parse(q, now)
		if err != nil {
			t.Errorf("Parse(%q): %v", q, err)
			continue
		}
		var got []string
		for _, in := range insts {
			if sel.Match(in) {
				got = append(got, strconv.FormatInt(in.ID, 10))
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("Parse(%q) selects [%s], want [%s]", q, strings.Join(got, " "), want)
		}
	}
	for q, wantErr := range map[string]string{
		"app-misc/hello-2.10": "version",
		"hello":               "'*/hello'",
		"--older-than soon":   "--older-than",
		"--newer-than 3x":     "--newer-than",
		"--newer-than":        "needs a value",
		"--use=":              "needs a value",
		"--use 's!sl'":        "--use",
		"--keep-atoms x":      "unknown option",
		"'app-misc/*":         "unterminated",
	} {
		_, err := Parse(q, now)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Parse(%q) = %v, want an error about %s", q, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): a multi-line error %q", q, err)
		}
	}
}
