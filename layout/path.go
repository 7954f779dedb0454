package layout

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Format is the container format of a binary package. It mirrors
// xpak.Format; it is declared here so this package does not depend on the
// xpak reader.
type Format string

// Binary package formats.
const (
	FormatXpak Format = "xpak"
	FormatGpkg Format = "gpkg"
)

// File name extensions Portage knows (const.py).
const (
	extTbz2 = ".tbz2"
	extXpak = ".xpak"
	extGpkg = ".gpkg.tar"
)

// legacyDir is the directory of the legacy layout (PKGDIR/All/PF.tbz2).
const legacyDir = "All"

// PackageExt returns the package extension of name and its format.
func PackageExt(name string) (ext string, f Format, ok bool) {
	switch {
	case strings.HasSuffix(name, extGpkg):
		return extGpkg, FormatGpkg, true
	case strings.HasSuffix(name, extXpak):
		return extXpak, FormatXpak, true
	case strings.HasSuffix(name, extTbz2):
		return extTbz2, FormatXpak, true
	}
	return "", "", false
}

// isPySpace is Python's str.isspace for one rune; Go's unicode.IsSpace lacks
// the ASCII separators U+001C..U+001F.
func isPySpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0,
		0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// pyInt parses s the way Python's int() does for ASCII input: surrounding
// whitespace, an optional sign and single underscores between digits are
// accepted. Values outside int64 are reported as not ok.
func pyInt(s string) (int64, bool) {
	s = strings.TrimFunc(s, isPySpace)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false
	}
	s = strings.ReplaceAll(s, "_", "")
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// ParseBuildID extracts the build id from a package file name the way
// Portage's binarytree._parse_build_id does: strip the extension, take the
// basename, split once at the last '-'; the right part is the id if the
// left part is a valid PF and the right part parses as an integer (with
// Python's lenient int(): "01" is 1). Anything else is -1.
func ParseBuildID(filename string) int64 {
	ext, _, ok := PackageExt(filename)
	if !ok {
		return -1
	}
	name := filename[:len(filename)-len(ext)]
	if k := strings.LastIndexByte(name, '/'); k >= 0 {
		name = name[k+1:]
	}
	k := strings.LastIndexByte(name, '-')
	if k < 0 {
		return -1
	}
	if _, _, _, ok := PkgSplit(name[:k]); !ok {
		return -1
	}
	id, ok := pyInt(name[k+1:])
	if !ok {
		return -1
	}
	return id
}

// multiExt is the extension a multi-instance file of format f carries.
func multiExt(f Format) string {
	if f == FormatGpkg {
		return extGpkg
	}
	return extXpak
}

// singleExt is the extension of a flat or legacy file of format f.
func singleExt(f Format) string {
	if f == FormatGpkg {
		return extGpkg
	}
	return extTbz2
}

// MultiPath is "cat/pn/pf-ID.xpak" or ".gpkg.tar"; "" if pf is not a valid
// package name (the PN directory cannot be derived).
func MultiPath(category, pf string, buildID int64, f Format) string {
	pn, _, _, ok := PkgSplit(pf)
	if !ok {
		return ""
	}
	return category + "/" + pn + "/" + pf + "-" + strconv.FormatInt(buildID, 10) + multiExt(f)
}

// FlatPath is "cat/pf.tbz2" or "cat/pf.gpkg.tar".
func FlatPath(category, pf string, f Format) string {
	return category + "/" + pf + singleExt(f)
}

// LegacyPath is "All/pf.tbz2" or "All/pf.gpkg.tar".
func LegacyPath(pf string, f Format) string {
	return legacyDir + "/" + pf + singleExt(f)
}

// Kind is the role a path plays in a PKGDIR.
type Kind int

// Path kinds.
const (
	KindOther  Kind = iota // not a package name: index, lock, temp or scratch file
	KindMulti              // cat/pn/pf-N.xpak or cat/pn/pf-N.gpkg.tar
	KindFlat               // cat/pf.tbz2 or cat/pf.gpkg.tar
	KindLegacy             // All/pf.tbz2 or All/pf.gpkg.tar
)

func (k Kind) String() string {
	switch k {
	case KindMulti:
		return "multi"
	case KindFlat:
		return "flat"
	case KindLegacy:
		return "legacy"
	}
	return "other"
}

// Path is the meaning of a path relative to the PKGDIR root.
type Path struct {
	Kind     Kind
	Format   Format
	Category string // "" for legacy
	PN, PF   string
	BuildID  int64 // >0 only for KindMulti, 0 otherwise
}

// ParsePath classifies a '/'-separated path relative to PKGDIR with
// Portage's naming rules (_populate_local): .xpak only as multi-instance
// "cat/pn/PF-N.xpak"; .gpkg.tar as multi-instance when the name carries a
// build id, else flat or legacy; .tbz2 only flat or legacy. Build ids must
// be written canonically (no leading zeros) and the directories must agree
// with PF. Everything else is KindOther.
func ParsePath(rel string) Path {
	other := Path{Kind: KindOther}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return other
		}
	}
	file := parts[len(parts)-1]
	ext, f, ok := PackageExt(file)
	if !ok {
		return other
	}
	stem := file[:len(file)-len(ext)]
	id := ParseBuildID(file)
	multi := ext == extXpak || (ext == extGpkg && id > 0)

	if multi {
		if len(parts) != 3 || id < 1 {
			return other
		}
		cat, dirPN := parts[0], parts[1]
		suffix := "-" + strconv.FormatInt(id, 10)
		if !strings.HasSuffix(stem, suffix) {
			return other // e.g. a non-canonical "-01"
		}
		pf := strings.TrimSuffix(stem, suffix)
		pn, _, _, ok := PkgSplit(pf)
		if !ok || pn != dirPN || !ValidCategory(cat) || cat == legacyDir {
			return other
		}
		return Path{Kind: KindMulti, Format: f, Category: cat, PN: pn, PF: pf, BuildID: id}
	}

	if len(parts) != 2 {
		return other
	}
	pn, _, _, ok := PkgSplit(stem)
	if !ok {
		return other
	}
	if parts[0] == legacyDir {
		return Path{Kind: KindLegacy, Format: f, PN: pn, PF: stem}
	}
	if !ValidCategory(parts[0]) {
		return other
	}
	return Path{Kind: KindFlat, Format: f, Category: parts[0], PN: pn, PF: stem}
}

// String renders p back to its relative path ("" for KindOther).
func (p Path) String() string {
	switch p.Kind {
	case KindMulti:
		return MultiPath(p.Category, p.PF, p.BuildID, p.Format)
	case KindFlat:
		return FlatPath(p.Category, p.PF, p.Format)
	case KindLegacy:
		return LegacyPath(p.PF, p.Format)
	}
	return ""
}

// CheckIdentity tells whether a package's metadata CATEGORY and PF agree
// with the path it sits at, following Portage's checks (§5.3): the file
// name must be PF (plus -ID for multi-instance), multi-instance files must
// sit in exactly CATEGORY/PN, and other files in CATEGORY or All.
func CheckIdentity(p Path, category, pf string) error {
	if category == "" || pf == "" {
		return fmt.Errorf("missing CATEGORY or PF in metadata (CATEGORY=%q PF=%q)", category, pf)
	}
	if p.Kind == KindOther {
		return fmt.Errorf("not a binary package name")
	}
	if !ValidCategory(category) {
		return fmt.Errorf("unrecognized category %q", category)
	}
	pn, _, _, ok := PkgSplit(pf)
	if !ok {
		return fmt.Errorf("invalid PF %q", pf)
	}
	if pf != p.PF {
		return fmt.Errorf("file name is for %q but metadata PF is %q", p.PF, pf)
	}
	switch p.Kind {
	case KindMulti:
		if p.Category != category || p.PN != pn {
			return fmt.Errorf("multi-instance package %s/%s must be in %s/%s, not %s/%s",
				category, pf, category, pn, p.Category, p.PN)
		}
	case KindFlat:
		if p.Category != category {
			return fmt.Errorf("package %s/%s must be in %s or %s, not %s",
				category, pf, category, legacyDir, p.Category)
		}
	}
	return nil
}

// Newer reports whether instance A is newer than instance B of the same
// CPV: higher BUILD_TIME wins (what clients select on), then higher
// BUILD_ID.
func Newer(buildTimeA, buildIDA, buildTimeB, buildIDB int64) bool {
	if buildTimeA != buildTimeB {
		return buildTimeA > buildTimeB
	}
	return buildIDA > buildIDB
}

// SkippedName tells why Portage would skip or choke on a file at rel that
// looks like a package: its name ends in a package extension (in any case,
// or the truncated .gpkg) in a category or $CATEGORY/$PN directory. It is
// "" for package names and for names that do not look like one (temp and
// lock files: rsync's and Portage's start with '.' or end in a suffix of
// their own).
func SkippedName(rel string) string {
	if ParsePath(rel).Kind != KindOther {
		return ""
	}
	parts := strings.Split(rel, "/")
	base := parts[len(parts)-1]
	if len(parts) < 2 || len(parts) > 3 || base == "" || base[0] == '.' {
		return ""
	}
	lower := strings.ToLower(base)
	ext := ""
	for _, e := range []string{extXpak, extTbz2, extGpkg, ".gpkg"} {
		if strings.HasSuffix(lower, e) {
			ext = e
			break
		}
	}
	switch {
	case ext == "":
		return ""
	case !utf8.ValidString(rel):
		return "the name is not UTF-8"
	case ext == ".gpkg":
		return "the extension .gpkg is cut short (Portage's is .gpkg.tar)"
	case !strings.HasSuffix(base, ext):
		return fmt.Sprintf("the extension %q is not lower-case %s", base[len(base)-len(ext):], ext)
	case !ValidCategory(parts[0]):
		return fmt.Sprintf("%q is not a valid category name", parts[0])
	case ext == extXpak && len(parts) == 2:
		return "an .xpak belongs in its $PN directory, as CATEGORY/PN/PF-BUILD_ID.xpak"
	case ext == extTbz2 && len(parts) == 3:
		return "a .tbz2 belongs in its category directory, as CATEGORY/PF.tbz2 (or All/PF.tbz2)"
	case len(parts) == 3:
		return "not CATEGORY/PN/PF-BUILD_ID" + ext + " with PF a valid package name and version in the PN directory and a build id of 1 or more, without leading zeros, within 64 bits"
	}
	return "not CATEGORY/PF" + ext + " with PF a valid package name and version"
}
