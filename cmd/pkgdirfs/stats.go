package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"pkgdirfs/catalog"
)

// What stats lists of the long tails.
const (
	statsTopCategories = 20
	statsTopCPVs       = 10
)

func cmdStats(args []string) int {
	fl := newFlags("stats")
	state := stateFlag(fl)
	format := fl.String("format", "table", "output `FORMAT`: table or json")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) != 0 {
		return usageError(fl, "unexpected operand %q", ops[0])
	}
	if *format != "table" && *format != "json" {
		return usageError(fl, "--format %q: want table or json", *format)
	}
	if why := notAState(location(*state)); why != "" {
		return fail("stats: %s is not a pkgdirfs state (%s)", *state, why)
	}
	store, err := openToRead(location(*state), newLogger(os.Stderr))
	if err != nil {
		return fail("stats: %v", err)
	}
	defer store.Close()
	sum, err := store.DB.Summary(background(), statsTopCategories, statsTopCPVs)
	if err != nil {
		return fail("stats: %v", err)
	}
	signed, unsigned, xpak, err := store.DB.SignatureCounts(background())
	if err != nil {
		return fail("stats: %v", err)
	}
	files, bytes, err := store.BlobUsage()
	if err != nil {
		return fail("stats: blobs: %v", err)
	}
	r := statsReport{
		Instances: sum.Instances, Placeholders: sum.Placeholders, CPVs: sum.CPVs, Bytes: sum.Bytes,
		BlobFiles: files, BlobBytes: bytes, Refused: sum.Refused,
		Categories: []statsCategory{}, MostBuilds: []statsCPV{},
		Oldest: buildRef(sum.Oldest), Newest: buildRef(sum.Newest),
		SignedGpkg: signed, UnsignedGpkg: unsigned, Xpak: xpak,
	}
	for _, c := range sum.Categories {
		r.Categories = append(r.Categories, statsCategory{c.Category, c.Instances, c.Bytes})
	}
	for _, c := range sum.MostBuilds {
		r.MostBuilds = append(r.MostBuilds, statsCPV{c.CPV, c.Builds, c.Bytes})
	}
	w := bufio.NewWriter(os.Stdout)
	if *format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		r.writeTable(w)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail("stats: %v", err)
	}
	return 0
}

// statsReport is stats' output; the JSON keys are stable.
type statsReport struct {
	Instances    int64 `json:"instances"`
	Placeholders int64 `json:"placeholders"`
	CPVs         int64 `json:"cpvs"`
	Bytes        int64 `json:"bytes"`
	BlobFiles    int64 `json:"blob_files"`
	BlobBytes    int64 `json:"blob_bytes"`
	Refused      int64 `json:"refused"`
	// By signature: what a client with verify-signature (Portage's
	// default) accepts (signed gpkg), refuses, and skips (xpak).
	SignedGpkg   int64           `json:"signed_gpkg"`
	UnsignedGpkg int64           `json:"unsigned_gpkg"`
	Xpak         int64           `json:"xpak"`
	Oldest       *statsBuild     `json:"oldest"`
	Newest       *statsBuild     `json:"newest"`
	Categories   []statsCategory `json:"categories"`
	MostBuilds   []statsCPV      `json:"most_builds"`
}

type statsBuild struct {
	CPV       string `json:"cpv"`
	BuildID   int64  `json:"build_id"`
	BuildTime int64  `json:"build_time"`
	Path      string `json:"path"`
}

type statsCategory struct {
	Category  string `json:"category"`
	Instances int64  `json:"instances"`
	Bytes     int64  `json:"bytes"`
}

type statsCPV struct {
	CPV    string `json:"cpv"`
	Builds int64  `json:"builds"`
	Bytes  int64  `json:"bytes"`
}

func buildRef(in *catalog.Instance) *statsBuild {
	if in == nil {
		return nil
	}
	return &statsBuild{CPV: in.CPV, BuildID: in.BuildID, BuildTime: in.BuildTime, Path: instPath(in)}
}

func (r *statsReport) writeTable(w io.Writer) {
	pct := func(n int64) string {
		if r.Bytes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(r.Bytes))
	}
	build := func(b *statsBuild) string {
		if b == nil {
			return "-"
		}
		return fmt.Sprintf("%s build %d, %s UTC: %s", b.CPV, b.BuildID, builtText(b.BuildTime), b.Path)
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	writeColumns(w, [][]string{
		{"instances", fmt.Sprintf("%d (%d CPVs, %d placeholders)", r.Instances, r.CPVs, r.Placeholders)},
		{"bytes", fmt.Sprintf("%d (%s)", r.Bytes, bytesText(r.Bytes))},
		{"blobs", fmt.Sprintf("%d files, %d bytes (%s)", r.BlobFiles, r.BlobBytes, bytesText(r.BlobBytes))},
		{"signatures", fmt.Sprintf("%d signed gpkg, %d unsigned gpkg, %d xpak (cannot be signed)", r.SignedGpkg, r.UnsignedGpkg, r.Xpak)},
		{"refused", fmt.Sprintf("%d %s", r.Refused, plural(int(r.Refused), "file", "files"))},
		{"oldest build", build(r.Oldest)},
		{"newest build", build(r.Newest)},
	}, nil)
	fmt.Fprintf(w, "\nbytes by category (top %d):\n", statsTopCategories)
	cells := [][]string{{"  CATEGORY", "INSTANCES", "BYTES", "SHARE"}}
	for _, c := range r.Categories {
		cells = append(cells, []string{"  " + c.Category, itoa(c.Instances), itoa(c.Bytes), pct(c.Bytes)})
	}
	writeColumns(w, cells, map[int]bool{1: true, 2: true, 3: true})
	fmt.Fprintf(w, "\nCPVs with the most builds (top %d):\n", statsTopCPVs)
	cells = [][]string{{"  CPV", "BUILDS", "BYTES"}}
	for _, c := range r.MostBuilds {
		cells = append(cells, []string{"  " + c.CPV, itoa(c.Builds), itoa(c.Bytes)})
	}
	writeColumns(w, cells, map[int]bool{1: true, 2: true})
}
