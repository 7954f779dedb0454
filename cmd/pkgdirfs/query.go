package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/catalog/query"
	"pkgdirfs/layout"
)

func cmdQuery(args []string) int {
	fl := newFlags("query")
	state := stateFlag(fl)
	format := fl.String("format", "table", "output `FORMAT`: table (aligned columns), json (one array) or paths (multi-instance paths, one a line)")
	use := fl.String("use", "", "only builds with these USE `FLAGS` enabled and the -FLAGs disabled, e.g. ssl,-X")
	older := fl.String("older-than", "", "only builds whose BUILD_TIME is older than `DUR` (Go duration like 36h, or days: 30d)")
	newer := fl.String("newer-than", "", "only builds whose BUILD_TIME is within the last `DUR`")
	chost := fl.String("chost", "", "only builds whose CHOST matches `GLOB` (* matches any run of characters, / and blanks too), e.g. 'x86_64-*-linux-gnu'")
	keywords := fl.String("keywords", "", "only builds whose KEYWORDS hold every one of `KW,...` (exact words: ~amd64 is not amd64)")
	arch := fl.String("arch", "", "only builds keyworded for `ARCH`, stable or testing (ARCH or ~ARCH in KEYWORDS: a build carries no ARCH of its own)")
	cflags := fl.String("cflags", "", "only builds whose CFLAGS, the whole value, match `GLOB`, e.g. '*-march=x86-64-v3*'")
	meta := fl.StringArray("meta", nil, "only builds where `KEY=GLOB` holds: the build's KEY, or the catalog's Packages header's when the build has none, matches GLOB; repeatable, all must hold; e.g. PROFILE='default/linux/amd64/23.0*'")
	keep := fl.String("keep", "", "of the builds selected, only the `N` newest of each CPV (newest as prune decides: BUILD_TIME, then BUILD_ID)")
	perUse := fl.Bool("per-use", false, "with --keep: the N newest of each distinct USE set of each CPV")
	atoms, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "pkgdirfs query: "+format+"\n", a...)
		return 2
	}
	if *format != "table" && *format != "json" && *format != "paths" {
		return usage("--format %q: want table, json or paths", *format)
	}
	for _, name := range []string{"chost", "keywords", "arch", "cflags", "keep"} {
		// As in a query string: given empty, these would read as not
		// given at all.
		if f := fl.Lookup(name); f.Changed && f.Value.String() == "" {
			return usage("--%s needs a value", name)
		}
	}
	sel, err := newSelection(query.Terms{Atoms: atoms, Use: *use, Older: *older, Newer: *newer,
		Chost: *chost, Keywords: *keywords, Arch: *arch, Cflags: *cflags, Meta: *meta, Keep: *keep, PerUse: *perUse}, time.Now())
	if err != nil {
		return usage("%v", err)
	}
	if why := notAState(location(*state)); why != "" {
		return fail("query: %s is not a pkgdirfs state (%s)", *state, why)
	}
	store, err := openToRead(location(*state), newLogger(os.Stderr))
	if err != nil {
		return fail("query: %v", err)
	}
	defer store.Close()
	// A key a build lacks (PROFILE, an inherited CHOST) is the header's.
	if sel.Header, err = store.DB.Header(background()); err != nil {
		return fail("query: %v", err)
	}
	var rows []queryRow
	// A snapshot of the catalog, read-only: a mounted state goes on as if
	// nobody asked.
	stream := func(each func(*catalog.Instance) error) error {
		return store.DB.ForEachInScopes(background(), sel.scopes(), each)
	}
	if sel.Grouped() {
		// --keep chooses among the builds of each CPV.
		err = catalog.EachCPV(stream, func(group []catalog.Instance) error {
			for _, in := range sel.Filter(group) {
				rows = append(rows, rowOf(&in))
			}
			return nil
		})
	} else {
		err = stream(func(inst *catalog.Instance) error {
			if sel.match(inst) {
				rows = append(rows, rowOf(inst))
			}
			return nil
		})
	}
	if err != nil {
		return fail("query: %v", err)
	}
	sortRows(rows)
	w := bufio.NewWriter(os.Stdout)
	switch *format {
	case "json":
		err = writeJSON(w, rows)
	case "paths":
		for _, r := range rows {
			fmt.Fprintln(w, r.Path)
		}
	default:
		writeTable(w, rows)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail("query: %v", err)
	}
	return 0
}

// selection is what query (and prune's --keep-atoms) select builds by:
// catalog/query's, under the names this command's code and tests use.
type selection struct{ *query.Selection }

func parseSelection(atoms []string, use, older, newer string, now time.Time) (*selection, error) {
	return newSelection(query.Terms{Atoms: atoms, Use: use, Older: older, Newer: newer}, now)
}

func newSelection(t query.Terms, now time.Time) (*selection, error) {
	s, err := query.New(t, now)
	if err != nil {
		return nil, err
	}
	return &selection{s}, nil
}

func parseAtom(s string) (*layout.Atom, error)         { return query.ParseAtom(s) }
func parseAge(s string) (time.Duration, error)         { return query.ParseAge(s) }
func (s *selection) scopes() []catalog.Scope           { return s.Scopes() }
func (s *selection) match(inst *catalog.Instance) bool { return s.Match(inst) }

func matchAtoms(atoms []*layout.Atom, inst *catalog.Instance) bool {
	return query.MatchAtoms(atoms, inst)
}

// queryRow is one build as query prints it; the JSON keys are stable.
type queryRow struct {
	CPV       string   `json:"cpv"`
	BuildID   int64    `json:"build_id"`
	BuildTime int64    `json:"build_time"`
	Size      int64    `json:"size"`
	Slot      string   `json:"slot"`
	Format    string   `json:"format"`
	Path      string   `json:"path"`
	Use       []string `json:"use"`

	category, pn, pf string
}

func rowOf(inst *catalog.Instance) queryRow {
	slot := strings.TrimSpace(inst.Meta["SLOT"])
	if slot == "" {
		slot = "0"
	}
	use := strings.Fields(inst.Meta["USE"])
	if use == nil {
		use = []string{}
	}
	return queryRow{
		CPV: inst.CPV, BuildID: inst.BuildID, BuildTime: inst.BuildTime, Size: inst.Size, Slot: slot,
		Format: inst.Format, Path: instPath(inst), Use: use,
		category: inst.Category, pn: inst.PN, pf: inst.PF,
	}
}

func instPath(inst *catalog.Instance) string {
	return layout.MultiPath(inst.Category, inst.PF, inst.BuildID, layout.Format(inst.Format))
}

// sortRows orders builds as a user reads them: by package, versions in PMS
// order (2.9 before 2.10), then build id.
func sortRows(rows []queryRow) {
	vers := make(map[string]layout.Version)
	ver := func(r *queryRow) (layout.Version, bool) {
		if v, ok := vers[r.pf]; ok {
			return v, true
		}
		v, err := layout.ParseVersion(r.pf[min(len(r.pf), len(r.pn)+1):])
		if err != nil {
			return v, false
		}
		vers[r.pf] = v
		return v, true
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := &rows[i], &rows[j]
		if a.category != b.category {
			return a.category < b.category
		}
		if a.pn != b.pn {
			return a.pn < b.pn
		}
		if a.pf != b.pf {
			va, oka := ver(a)
			vb, okb := ver(b)
			if oka && okb {
				if c := layout.CompareVersions(va, vb); c != 0 {
					return c < 0
				}
			}
			return a.pf < b.pf
		}
		return a.BuildID < b.BuildID
	})
}

func writeJSON(w io.Writer, rows []queryRow) error {
	if rows == nil {
		rows = []queryRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// builtText is a BUILD_TIME for people; "-" when the build has none.
func builtText(bt int64) string {
	if bt <= 0 {
		return "-"
	}
	return time.Unix(bt, 0).UTC().Format("2006-01-02 15:04")
}

func writeTable(w io.Writer, rows []queryRow) {
	cells := [][]string{{"CPV", "BUILD_ID", "BUILT (UTC)", "SIZE", "USE", "PATH"}}
	for _, r := range rows {
		cells = append(cells, []string{r.CPV, strconv.FormatInt(r.BuildID, 10), builtText(r.BuildTime),
			strconv.FormatInt(r.Size, 10), strings.Join(r.Use, " "), r.Path})
	}
	// Numbers align right, text left.
	writeColumns(w, cells, map[int]bool{1: true, 3: true})
}

// writeColumns prints cells as aligned columns two spaces apart; the last
// column is not padded.
func writeColumns(w io.Writer, cells [][]string, right map[int]bool) {
	var width []int
	for _, row := range cells {
		for i, c := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(c))
		}
	}
	for _, row := range cells {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			switch {
			case right[i]:
				b.WriteString(pad + c)
			case i == len(row)-1:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}
