package integration

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// pkgIndex is a parsed Packages file: the header block and the package blocks,
// each kept as its lines in file order (portage-facts.md §4.1).
type pkgIndex struct {
	Header []string
	Blocks [][]string
}

// parseIndex splits a Packages file into blocks. It is strict about the
// framing Portage writes: every block ends with one empty line.
func parseIndex(data []byte) (*pkgIndex, error) {
	s := string(data)
	if !strings.HasSuffix(s, "\n\n") {
		return nil, fmt.Errorf("Packages does not end with \"\\n\\n\" (last bytes %q)", tail(s, 40))
	}
	var blocks [][]string
	var cur []string
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			if len(cur) == 0 {
				return nil, fmt.Errorf("empty block (two consecutive blank lines) after block %d", len(blocks))
			}
			blocks = append(blocks, cur)
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) != 0 {
		return nil, fmt.Errorf("last block not terminated by a blank line")
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no header block")
	}
	return &pkgIndex{Header: blocks[0], Blocks: blocks[1:]}, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// get returns the value of KEY in a block.
func get(block []string, key string) (string, bool) {
	for _, l := range block {
		if k, v, ok := strings.Cut(l, ": "); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func getInt(block []string, key string) int64 {
	v, _ := get(block, key)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func lineKey(l string) string {
	k, _, _ := strings.Cut(l, ":")
	return k
}

// sortKey is the key Portage sorts by: its internal name (§4.1).
func sortKey(k string) string {
	switch k {
	case "MTIME":
		return "_mtime_"
	case "REPO":
		return "repository"
	case "DESC":
		return "DESCRIPTION"
	}
	return k
}

// without returns block minus the lines of the given keys.
func without(block []string, keys ...string) []string {
	var out []string
	for _, l := range block {
		drop := false
		for _, k := range keys {
			if lineKey(l) == k {
				drop = true
			}
		}
		if !drop {
			out = append(out, l)
		}
	}
	return out
}

// withKey inserts (or replaces) "KEY: VALUE" at KEY's sorted position.
func withKey(block []string, key, value string) []string {
	block = without(block, key)
	line := key + ": " + value
	for i, l := range block {
		if sortKey(lineKey(l)) > sortKey(key) {
			out := append([]string{}, block[:i]...)
			out = append(out, line)
			return append(out, block[i:]...)
		}
	}
	return append(append([]string{}, block...), line)
}

// inheritedKeys are omitted from a block when equal to a non-empty header value (§4.5).
var inheritedKeys = []string{"CHOST", "REPO"}

// expectedBlock renders what the mount must show for an instance whose
// source index block is fixBlock (under fixHeader), given the mount's header,
// the catalog's build id and the multi-instance path: BUILD_ID and PATH set,
// inherited keys materialized from the source header and omitted again
// against the mount's header.
func expectedBlock(fixBlock, fixHeader, mntHeader []string, buildID, path string) []string {
	b := append([]string{}, fixBlock...)
	for _, k := range inheritedKeys {
		if _, ok := get(b, k); !ok {
			if hv, ok := get(fixHeader, k); ok && hv != "" {
				b = withKey(b, k, hv)
			}
		}
	}
	b = withKey(b, "BUILD_ID", buildID)
	b = withKey(b, "PATH", path)
	for _, k := range inheritedKeys {
		v, ok := get(b, k)
		if hv, hok := get(mntHeader, k); ok && hok && hv != "" && hv == v {
			b = without(b, k)
		}
	}
	return b
}

// firstDiff compares two line lists, ignoring lines for which ignore(want
// line, got line) is true when both have the same key, and describes the
// first difference with its line number and some context.
func firstDiff(want, got []string, ignore func(w, g string) bool) string {
	n := max(len(want), len(got))
	for i := 0; i < n; i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w == g {
			continue
		}
		if i < len(want) && i < len(got) && ignore != nil && lineKey(w) == lineKey(g) && ignore(w, g) {
			continue
		}
		var ctx strings.Builder
		for j := max(0, i-3); j < i && j < len(got); j++ {
			fmt.Fprintf(&ctx, "    %4d  %s\n", j+1, got[j])
		}
		switch {
		case i >= len(got):
			return fmt.Sprintf("line %d: want %q, got end of file (got %d lines, want %d)\ncontext (got):\n%s", i+1, w, len(got), len(want), ctx.String())
		case i >= len(want):
			return fmt.Sprintf("line %d: want end of file, got %q (got %d lines, want %d)\ncontext (got):\n%s", i+1, g, len(got), len(want), ctx.String())
		}
		return fmt.Sprintf("line %d:\n  want %q\n  got  %q\ncontext (got):\n%s", i+1, w, g, ctx.String())
	}
	return ""
}

func ignoreTimestamp(w, g string) bool { return lineKey(w) == "TIMESTAMP" }

// lines renders a pkgIndex back to its lines (blank lines between blocks).
func (x *pkgIndex) lines() []string {
	out := append([]string{}, x.Header...)
	out = append(out, "")
	for _, b := range x.Blocks {
		out = append(out, b...)
		out = append(out, "")
	}
	return out
}

// ------------------------------------------------------------ names

// pfRE splits a PF into PN and version (PMS version syntax, enough for the fixtures).
var pfRE = regexp.MustCompile(`^(.+?)-(\d+(?:\.\d+)*[a-z]?(?:_(?:alpha|beta|pre|rc|p)\d*)*(?:-r\d+)?)$`)

// splitCPV returns category, PN and PF of "cat/pf".
func splitCPV(cpv string) (cat, pn, pf string, err error) {
	cat, pf, ok := strings.Cut(cpv, "/")
	if !ok {
		return "", "", "", fmt.Errorf("CPV %q has no category", cpv)
	}
	m := pfRE.FindStringSubmatch(pf)
	if m == nil {
		return "", "", "", fmt.Errorf("CPV %q: cannot split PF into PN and version", cpv)
	}
	return cat, m[1], pf, nil
}

// formatOfPath is "xpak" or "gpkg" by extension (.tbz2 and .xpak are xpak).
func formatOfPath(p string) string {
	switch {
	case strings.HasSuffix(p, ".gpkg.tar"):
		return "gpkg"
	case strings.HasSuffix(p, ".xpak"), strings.HasSuffix(p, ".tbz2"):
		return "xpak"
	}
	return ""
}

// multiPath is $CAT/$PN/$PF-$BUILD_ID.{xpak|gpkg.tar}.
func multiPath(cpv, buildID, format string) (string, error) {
	cat, pn, pf, err := splitCPV(cpv)
	if err != nil {
		return "", err
	}
	ext := ".xpak"
	if format == "gpkg" {
		ext = ".gpkg.tar"
	}
	return fmt.Sprintf("%s/%s/%s-%s%s", cat, pn, pf, buildID, ext), nil
}

// flatNames are the names of the newest instance of a CPV in a format:
// $CAT/$PF.tbz2 + All/$PF.tbz2 (xpak) or $CAT/$PF.gpkg.tar + All/$PF.gpkg.tar (gpkg).
func flatNames(cpv, format string) (flat, all string) {
	cat, pf, _ := strings.Cut(cpv, "/")
	ext := ".tbz2"
	if format == "gpkg" {
		ext = ".gpkg.tar"
	}
	return cat + "/" + pf + ext, "All/" + pf + ext
}

// instance is one block of the mount's Packages.
type instance struct {
	Block     []string
	CPV       string
	BuildID   int64
	BuildTime int64
	Path      string
	Format    string
	SHA1      string
	Size      int64
	Mtime     int64
}

func instances(x *pkgIndex) []instance {
	var out []instance
	for _, b := range x.Blocks {
		cpv, _ := get(b, "CPV")
		p, _ := get(b, "PATH")
		sha, _ := get(b, "SHA1")
		out = append(out, instance{
			Block: b, CPV: cpv, BuildID: getInt(b, "BUILD_ID"), BuildTime: getInt(b, "BUILD_TIME"),
			Path: p, Format: formatOfPath(p), SHA1: sha, Size: getInt(b, "SIZE"), Mtime: getInt(b, "MTIME"),
		})
	}
	return out
}

// newest returns, per (CPV, format), the instance Portage would choose:
// highest BUILD_TIME, then highest BUILD_ID.
func newest(insts []instance) map[[2]string]instance {
	res := map[[2]string]instance{}
	for _, in := range insts {
		k := [2]string{in.CPV, in.Format}
		cur, ok := res[k]
		if !ok || in.BuildTime > cur.BuildTime || (in.BuildTime == cur.BuildTime && in.BuildID > cur.BuildID) {
			res[k] = in
		}
	}
	return res
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
