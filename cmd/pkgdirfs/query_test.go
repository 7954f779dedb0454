package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
)

func TestQueryParseAge(t *testing.T) {
	day := 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"30d": 30 * day, "1.5d": 36 * time.Hour, "2d12h": 2*day + 12*time.Hour, "36h": 36 * time.Hour,
		"90m": 90 * time.Minute, "0d": 0, "1h30m": 90 * time.Minute,
	} {
		got, err := parseAge(in)
		if err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "30", "-1d", "30days", "1d-2h", "x", "3dd"} {
		if _, err := parseAge(bad); err == nil {
			t.Errorf("parseAge(%q): want an error", bad)
		}
	}
}

func inst(cpv string, id, bt int64, meta map[string]string) *catalog.Instance {
	cat, pf, _ := strings.Cut(cpv, "/")
	pn := pf[:strings.LastIndexByte(pf, '-')]
	if strings.Contains(pf, "-r") {
		pn = pf[:strings.LastIndex(pf[:strings.LastIndex(pf, "-r")], "-")]
	}
	return &catalog.Instance{ID: id, CPV: cpv, Category: cat, PF: pf, PN: pn, BuildID: id, BuildTime: bt, Format: "xpak", Meta: meta}
}

func TestQuerySelection(t *testing.T) {
	now := time.Unix(1_000_000_000, 0)
	day := int64(24 * 3600)
	insts := []*catalog.Instance{
		inst("app-misc/hello-2.10", 1, now.Unix()-40*day, map[string]string{"USE": "ssl nls", "SLOT": "0"}),
		inst("app-misc/hello-2.10", 2, now.Unix()-10*day, map[string]string{"USE": "ssl X", "SLOT": "0"}),
		inst("app-misc/hello-2.9", 3, now.Unix()-2*day, map[string]string{"USE": "", "SLOT": "0"}),
		inst("dev-libs/glib-2.80.5-r1", 4, 0, map[string]string{"USE": "ssl", "SLOT": "2"}),
	}
	cases := []struct {
		atoms             []string
		use, older, newer string
		want              string // build ids
	}{
		{nil, "", "", "", "1 2 3 4"},
		{[]string{"app-misc/hello"}, "", "", "", "1 2 3"},
		{[]string{"=app-misc/hello-2.10"}, "", "", "", "1 2"},
		{[]string{">app-misc/hello-2.9"}, "", "", "", "1 2"},
		{[]string{"dev-libs/*", "=app-misc/hello-2.9"}, "", "", "", "3 4"},
		{[]string{"*/*:2"}, "", "", "", "4"},
		{nil, "ssl,-X", "", "", "1 4"},
		{nil, "", "30d", "", "1 4"}, // no BUILD_TIME is older than anything
		{nil, "", "", "30d", "2 3"},
		{nil, "", "5d", "20d", "2"},
		{[]string{"app-misc/hello"}, "ssl", "1d", "", "1 2"},
		{[]string{"app-misc/hello"}, "ssl", "", "1d", ""},
	}
	for _, c := range cases {
		sel, err := parseSelection(c.atoms, c.use, c.older, c.newer, now)
		if err != nil {
			t.Errorf("%v: %v", c, err)
			continue
		}
		var got []string
		for _, in := range insts {
			if sel.match(in) {
				got = append(got, strconv.FormatInt(in.ID, 10))
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%+v selects [%s], want [%s]", c, strings.Join(got, " "), c.want)
		}
	}
	for _, bad := range []struct{ atom, use, older string }{
		{"app-misc/hello-2.10", "", ""}, {"", "s!sl", ""}, {"", "", "soon"},
	} {
		var atoms []string
		if bad.atom != "" {
			atoms = []string{bad.atom}
		}
		if _, err := parseSelection(atoms, bad.use, bad.older, "", now); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
	// Scopes narrow the read to the packages named, or to nothing less
	// than everything.
	sel, _ := parseSelection([]string{"app-misc/hello", "dev-libs/*"}, "", "", "", now)
	if sc := sel.scopes(); len(sc) != 2 || sc[0] != (catalog.Scope{Category: "app-misc", PN: "hello"}) || sc[1] != (catalog.Scope{Category: "dev-libs"}) {
		t.Errorf("scopes %v", sc)
	}
	sel, _ = parseSelection([]string{"app-misc/hello", "*/glib"}, "", "", "", now)
	if sc := sel.scopes(); sc != nil {
		t.Errorf("*/glib needs the whole catalog, scopes %v", sc)
	}
}

func TestQueryOutput(t *testing.T) {
	rows := []queryRow{
		rowOf(inst("app-misc/hello-2.10", 2, 1732000000, map[string]string{"USE": "ssl nls", "SLOT": "0"})),
		rowOf(inst("app-misc/hello-2.9", 1, 1732000000, map[string]string{})),
		rowOf(inst("app-misc/hello-2.10", 1, 0, map[string]string{"SLOT": "0/1"})),
		rowOf(inst("app-arch/zstd-1.5.5-r1", 1, 1732000000, map[string]string{})),
	}
	sortRows(rows)
	var order []string
	for _, r := range rows {
		order = append(order, r.Path)
	}
	want := "app-arch/zstd/zstd-1.5.5-r1-1.xpak app-misc/hello/hello-2.9-1.xpak app-misc/hello/hello-2.10-1.xpak app-misc/hello/hello-2.10-2.xpak"
	if strings.Join(order, " ") != want {
		t.Errorf("order %v, want %s", order, want)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, rows); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) string {
		var k []string
		for _, x := range []string{"cpv", "build_id", "build_time", "size", "slot", "format", "path", "use"} {
			if _, ok := m[x]; ok {
				k = append(k, x)
			}
		}
		return strings.Join(k, " ")
	}
	if len(back) != 4 || len(back[0]) != 8 || keys(back[0]) != "cpv build_id build_time size slot format path use" {
		t.Fatalf("json %s", buf.String())
	}
	if back[1]["slot"] != "0" || back[2]["slot"] != "0/1" || back[3]["use"].([]any)[1] != "nls" || len(back[1]["use"].([]any)) != 0 {
		t.Errorf("json values %s", buf.String())
	}
	buf.Reset()
	writeJSON(&buf, nil)
	if strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("no rows: %q, want []", buf.String())
	}
	buf.Reset()
	writeTable(&buf, rows)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "CPV ") {
		t.Fatalf("table:\n%s", buf.String())
	}
	// Every column starts at the same offset on every line.
	pathAt := strings.Index(lines[0], "PATH")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[pathAt:], "app-") || l[pathAt-1] != ' ' {
			t.Errorf("PATH column not aligned at %d:\n%s", pathAt, buf.String())
		}
	}
	if !strings.Contains(lines[3], " -  ") {
		t.Errorf("a build without BUILD_TIME shows -: %q", lines[3])
	}
}

func TestPruneAtomsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "world")
	os.WriteFile(p, []byte("# a world file\napp-misc/hello\n\n  dev-libs/glib:2  # a slot\n>=sys-libs/zlib-1.3\n"), 0o644)
	atoms, err := readAtomsFile(p)
	if err != nil || len(atoms) != 3 || atoms[1].Slot != "2" || atoms[2].Op != ">=" {
		t.Fatalf("readAtomsFile = %v, %v", atoms, err)
	}
	os.WriteFile(p, []byte("app-misc/hello\nnot an atom\n"), 0o644)
	if _, err := readAtomsFile(p); err == nil || !strings.Contains(err.Error(), "world:2:") {
		t.Errorf("a bad line: %v, want its line number", err)
	}
	if _, err := readAtomsFile(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("a missing file: no error")
	}
}

// TestQueryAtomHint: a package name without its category, which Gentoo's
// tools accept, is refused with the spelling that works; other bad atoms
// get no such hint.
func TestQueryAtomHint(t *testing.T) {
	for in, want := range map[string]string{
		"hello":        "'*/hello'",
		"hello:2":      "'*/hello:2'",
		"glib[-debug]": "'*/glib[-debug]'",
	} {
		_, err := parseSelection([]string{in}, "", "", "", time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("query %s: want an error suggesting %s, got %v", in, want, err)
		}
		if _, err := parseSelection([]string{strings.Trim(want, "'")}, "", "", "", time.Now()); err != nil {
			t.Errorf("the suggested %s is refused: %v", want, err)
		}
	}
	for _, in := range []string{"hello-2.10", "app-misc/hello-2.10", ">=hello-2", "!hello"} {
		if _, err := parseSelection([]string{in}, "", "", "", time.Now()); err == nil || strings.Contains(err.Error(), "*/") {
			t.Errorf("query %s: want an error without a */ hint, got %v", in, err)
		}
	}
}
