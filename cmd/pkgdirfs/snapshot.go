package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/catalog/query"
)

// The snapshot subcommands: their operands, and the --format values each
// takes ("" none).
var snapshotSubs = map[string]struct {
	operands int
	formats  string
}{
	"create": {1, ""},
	"list":   {0, "table|json"},
	"show":   {1, "table|json|paths"},
	"diff":   {2, "table|json"},
	"delete": {1, ""},
}

func cmdSnapshot(args []string) int {
	fl := newFlags("snapshot")
	state := stateFlag(fl)
	q := fl.String("query", "", "create: freeze only the builds `QUERY` selects: the terms of pkgdirfs query in one string, e.g. 'app-misc/* --use ssl --newer-than 30d' (default: every build)")
	format := fl.String("format", "table", "output `FORMAT`: table or json (list, show, diff), or paths (show)")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) == 0 {
		return usageError(fl, "which snapshot command? create, list, show, diff or delete")
	}
	sub, ops := ops[0], ops[1:]
	spec, ok := snapshotSubs[sub]
	switch {
	case !ok:
		return usageError(fl, "unknown snapshot command %q (want create, list, show, diff or delete)", sub)
	case len(ops) != spec.operands:
		want := map[int]string{0: "no operand", 1: "a snapshot NAME", 2: "two snapshot names A B"}[spec.operands]
		return usageError(fl, "snapshot %s takes %s, got %d operand(s)", sub, want, len(ops))
	case fl.Changed("query") && sub != "create":
		return usageError(fl, "--query is for snapshot create")
	case fl.Changed("format") && spec.formats == "":
		return usageError(fl, "snapshot %s prints no table: --format is for list, show and diff", sub)
	case fl.Changed("format") && !formatIn(*format, spec.formats):
		return usageError(fl, "--format %q: snapshot %s takes %s", *format, sub, spec.formats)
	}
	for _, name := range ops {
		if err := catalog.CheckSnapshotName(name); err != nil {
			return usageError(fl, "%v", err)
		}
	}
	var sel *query.Selection
	if sub == "create" && *q != "" {
		s, err := query.Parse(*q, time.Now())
		if err != nil {
			return usageError(fl, "--query: %v", err)
		}
		sel = s
	}
	loc := location(*state)
	if why := notAState(loc); why != "" {
		return fail("snapshot: %s is not a pkgdirfs state (%s)", *state, why)
	}
	log := newLogger(os.Stderr)
	var (
		store *catalog.Store
		err   error
	)
	if sub == "create" || sub == "delete" {
		store, err = catalog.OpenStoreAt(loc, log)
	} else {
		// Read-only: a mounted state goes on as if nobody asked.
		store, err = openToRead(loc, log)
	}
	if err != nil {
		return fail("snapshot %s: %v", sub, err)
	}
	defer store.Close()
	w := bufio.NewWriter(os.Stdout)
	switch sub {
	case "create":
		var (
			info *catalog.SnapshotInfo
			m    catalog.Matcher // a nil interface, not a nil *Selection: every build
		)
		start := time.Now()
		if sel != nil {
			m = sel
			// --meta falls back to the header, as pkgdirfs query does.
			sel.Header, err = store.DB.Header(background())
		}
		if err == nil {
			if info, err = store.DB.CreateSnapshot(background(), ops[0], *q, m); err == nil {
				fmt.Fprintf(w, "created snapshot %s: %d %s of generation %d (%s)\n", info.Name, info.Packages,
					plural(int(info.Packages), "build", "builds"), info.Generation, time.Since(start).Round(time.Millisecond))
			}
		}
	case "list":
		err = snapshotList(w, store, *format)
	case "show":
		err = snapshotShow(w, store, ops[0], *format)
	case "diff":
		err = snapshotDiff(w, store, ops[0], ops[1], *format)
	case "delete":
		if err = store.DeleteSnapshot(background(), ops[0]); err == nil {
			fmt.Fprintf(w, "deleted snapshot %s\n", ops[0])
		}
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		if errors.Is(err, catalog.ErrSnapshotExists) {
			return fail("snapshot %s: a snapshot named %q exists (snapshots are immutable: delete it first, or choose another name)", sub, ops[0])
		}
		return fail("snapshot %s: %v", sub, oneLine(err))
	}
	return 0
}

func formatIn(f, list string) bool { return slices.Contains(strings.Split(list, "|"), f) }

// oneLine keeps an error to the line its message starts with.
func oneLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// snapshotJSON is a snapshot as list prints it; the keys are stable.
type snapshotJSON struct {
	Name       string `json:"name"`
	Created    string `json:"created"`
	CreatedNs  int64  `json:"created_ns"`
	Query      string `json:"query"`
	Generation int64  `json:"generation"`
	Packages   int64  `json:"packages"`
}

func snapshotList(w io.Writer, store *catalog.Store, format string) error {
	list, err := store.DB.Snapshots(background())
	if err != nil {
		return err
	}
	created := func(s *catalog.SnapshotInfo) string {
		return time.Unix(0, s.CreatedNs).UTC().Format("2006-01-02 15:04:05")
	}
	if format == "json" {
		out := []snapshotJSON{}
		for i := range list {
			s := &list[i]
			out = append(out, snapshotJSON{Name: s.Name, Created: time.Unix(0, s.CreatedNs).UTC().Format(time.RFC3339),
				CreatedNs: s.CreatedNs, Query: s.Query, Generation: s.Generation, Packages: s.Packages})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	cells := [][]string{{"NAME", "CREATED (UTC)", "BUILDS", "GENERATION", "QUERY"}}
	for i := range list {
		s := &list[i]
		cells = append(cells, []string{s.Name, created(s), strconv.FormatInt(s.Packages, 10),
			strconv.FormatInt(s.Generation, 10), s.Query})
	}
	writeColumns(w, cells, map[int]bool{2: true, 3: true})
	return nil
}

func snapshotShow(w *bufio.Writer, store *catalog.Store, name, format string) error {
	var rows []queryRow
	err := store.DB.SnapshotMembers(background(), name, func(_ *catalog.SnapshotInfo, inst *catalog.Instance) error {
		rows = append(rows, rowOf(inst))
		return nil
	})
	if err != nil {
		return err
	}
	sortRows(rows)
	switch format {
	case "json":
		return writeJSON(w, rows)
	case "paths":
		for _, r := range rows {
			fmt.Fprintln(w, r.Path)
		}
	default:
		writeTable(w, rows)
	}
	return nil
}

// diffBuild is one build in a diff; the JSON keys are stable.
type diffBuild struct {
	BuildID   int64  `json:"build_id"`
	BuildTime int64  `json:"build_time"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Path      string `json:"path"`
}

type diffCPV struct {
	CPV     string         `json:"cpv"`
	Added   []diffBuild    `json:"added"`
	Removed []diffBuild    `json:"removed"`
	Changed [][2]diffBuild `json:"changed"`
}

func diffBuildOf(in *catalog.Instance) diffBuild {
	return diffBuild{BuildID: in.BuildID, BuildTime: in.BuildTime, Size: in.Size, SHA256: in.SHA256, Path: instPath(in)}
}

func snapshotDiff(w io.Writer, store *catalog.Store, a, b, format string) error {
	d, err := store.DB.DiffSnapshots(background(), a, b)
	if err != nil {
		return err
	}
	out := []diffCPV{}
	var added, removed, changed int
	for _, c := range d.CPVs {
		dc := diffCPV{CPV: c.CPV, Added: []diffBuild{}, Removed: []diffBuild{}, Changed: [][2]diffBuild{}}
		for i := range c.Added {
			dc.Added = append(dc.Added, diffBuildOf(&c.Added[i]))
		}
		for i := range c.Removed {
			dc.Removed = append(dc.Removed, diffBuildOf(&c.Removed[i]))
		}
		for i := range c.Changed {
			dc.Changed = append(dc.Changed, [2]diffBuild{diffBuildOf(&c.Changed[i][0]), diffBuildOf(&c.Changed[i][1])})
		}
		added, removed, changed = added+len(dc.Added), removed+len(dc.Removed), changed+len(dc.Changed)
		out = append(out, dc)
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			A    string    `json:"a"`
			B    string    `json:"b"`
			CPVs []diffCPV `json:"cpvs"`
		}{a, b, out})
	}
	cells := [][]string{{"CPV", "CHANGE", "BUILD_ID", "SIZE", "PATH"}}
	row := func(cpv, what string, x diffBuild) {
		cells = append(cells, []string{cpv, what, strconv.FormatInt(x.BuildID, 10), strconv.FormatInt(x.Size, 10), x.Path})
	}
	for _, c := range out {
		for _, x := range c.Removed {
			row(c.CPV, "removed", x)
		}
		for _, x := range c.Added {
			row(c.CPV, "added", x)
		}
		for _, x := range c.Changed {
			row(c.CPV, "changed", x[1])
		}
	}
	if len(cells) > 1 {
		writeColumns(w, cells, map[int]bool{2: true, 3: true})
	}
	_, err = fmt.Fprintf(w, "%s -> %s: %d added, %d removed, %d changed in %d %s\n", a, b, added, removed, changed,
		len(out), plural(len(out), "CPV", "CPVs"))
	return err
}
