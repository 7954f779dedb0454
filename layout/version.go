// Package layout holds the pure naming rules of a Portage PKGDIR: package
// versions and names, build ids, the paths of package instances in each
// layout, USE reduction of dependency strings and the text of the Packages
// index. Nothing here touches the file system.
package layout

import (
	"errors"
	"strings"
)

// Suffix kinds, valued so that plain integer order is PMS order
// (_alpha < _beta < _pre < _rc < none < _p).
const (
	sufAlpha = -4
	sufBeta  = -3
	sufPre   = -2
	sufRC    = -1
	sufP     = 0
)

// suffixNames is ordered so that "pre" is tried before "p": "_pre" must not
// be read as "_p" followed by garbage.
var suffixNames = []struct {
	name string
	kind int
}{
	{"alpha", sufAlpha}, {"beta", sufBeta}, {"pre", sufPre}, {"rc", sufRC}, {"p", sufP},
}

type verSuffix struct {
	kind int
	num  string // digits as written, "" when the suffix has no number
}

// Version is a parsed PMS version (with optional -rN revision). Numbers are
// kept as digit strings so that arbitrarily long components compare exactly.
type Version struct {
	text     string
	nums     []string // first component, then each dotted component
	letter   byte     // 0 when absent
	suffixes []verSuffix
	rev      string // digits after "-r", "" when absent
}

var errBadVersion = errors.New("invalid version")

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digitsAt returns the end of the run of ASCII digits starting at i.
func digitsAt(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// ParseVersion parses "1.2.3b_alpha4_p5-r6" style versions (PMS 3.2).
func ParseVersion(s string) (Version, error) {
	v := Version{text: s}
	i := 0
	j := digitsAt(s, i)
	if j == i {
		return Version{}, errBadVersion
	}
	v.nums = append(v.nums, s[i:j])
	i = j
	for i < len(s) && s[i] == '.' {
		j = digitsAt(s, i+1)
		if j == i+1 {
			return Version{}, errBadVersion
		}
		v.nums = append(v.nums, s[i+1:j])
		i = j
	}
	if i < len(s) && s[i] >= 'a' && s[i] <= 'z' {
		v.letter = s[i]
		i++
	}
	for i < len(s) && s[i] == '_' {
		matched := false
		for _, sn := range suffixNames {
			if strings.HasPrefix(s[i+1:], sn.name) {
				k := i + 1 + len(sn.name)
				j = digitsAt(s, k)
				v.suffixes = append(v.suffixes, verSuffix{kind: sn.kind, num: s[k:j]})
				i = j
				matched = true
				break
			}
		}
		if !matched {
			return Version{}, errBadVersion
		}
	}
	if i < len(s) {
		if !strings.HasPrefix(s[i:], "-r") {
			return Version{}, errBadVersion
		}
		j = digitsAt(s, i+2)
		if j == i+2 || j != len(s) {
			return Version{}, errBadVersion
		}
		v.rev = s[i+2:]
		i = j
	}
	return v, nil
}

// validVR reports whether s is a version with optional revision.
func validVR(s string) bool {
	_, err := ParseVersion(s)
	return err == nil
}

// String returns the version exactly as it was written.
func (v Version) String() string { return v.text }

// cmpNum compares two non-negative decimal digit strings numerically.
func cmpNum(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return sign(len(a) - len(b))
	}
	return strings.Compare(a, b)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// cmpFraction compares dotted components where one has a leading zero:
// both are right-padded with zeros to equal length, so plain string order
// is numeric order (1.01 < 1.1, 1.010 == 1.01).
func cmpFraction(a, b string) int {
	n := max(len(a), len(b))
	a += strings.Repeat("0", n-len(a))
	b += strings.Repeat("0", n-len(b))
	return strings.Compare(a, b)
}

// cmpSuffixNum compares suffix numbers; a missing suffix counts as -1 and a
// number-less suffix as 0, so 1 < 1_p == 1_p0 < 1_p1.
func cmpSuffixNum(a string, aMissing bool, b string, bMissing bool) int {
	switch {
	case aMissing && bMissing:
		return 0
	case aMissing:
		return -1
	case bMissing:
		return 1
	}
	return cmpNum(a, b)
}

// CompareVersions orders versions the way Portage's vercmp does (PMS 3.3).
func CompareVersions(a, b Version) int {
	if a.text == b.text {
		return 0
	}
	if c := cmpNum(a.nums[0], b.nums[0]); c != 0 {
		return c
	}
	for i := 1; i < max(len(a.nums), len(b.nums)); i++ {
		// A missing component is smaller than any present one: 1.0 < 1.0.0.
		if i >= len(a.nums) {
			return -1
		}
		if i >= len(b.nums) {
			return 1
		}
		x, y := a.nums[i], b.nums[i]
		var c int
		if x[0] != '0' && y[0] != '0' {
			c = cmpNum(x, y)
		} else {
			c = cmpFraction(x, y)
		}
		if c != 0 {
			return c
		}
	}
	if a.letter != b.letter {
		// Absent letter sorts first (0 < 'a').
		return sign(int(a.letter) - int(b.letter))
	}
	for i := 0; i < max(len(a.suffixes), len(b.suffixes)); i++ {
		// A missing suffix behaves like "_p" with number -1.
		sa := verSuffix{kind: sufP}
		sb := verSuffix{kind: sufP}
		aMissing, bMissing := i >= len(a.suffixes), i >= len(b.suffixes)
		if !aMissing {
			sa = a.suffixes[i]
		}
		if !bMissing {
			sb = b.suffixes[i]
		}
		if sa.kind != sb.kind {
			return sign(sa.kind - sb.kind)
		}
		if c := cmpSuffixNum(sa.num, aMissing, sb.num, bMissing); c != 0 {
			return c
		}
	}
	return cmpNum(a.rev, b.rev)
}

// isWordByte is Python's ASCII \w.
func isWordByte(c byte) bool {
	return c == '_' || isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// ValidCategory reports whether s is a category name Portage accepts
// (^\w[-.+\w]*$, ASCII).
func ValidCategory(s string) bool {
	if s == "" || !isWordByte(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isWordByte(c) && c != '-' && c != '.' && c != '+' {
			return false
		}
	}
	return true
}

// hyphenVRSplit reports whether s is "VR-VR" for some hyphen in s. Each VR
// holds at most one hyphen (in "-rN"), so only the last few hyphens matter.
func hyphenVRSplit(s string) bool {
	for j := 0; j < len(s); j++ {
		if s[j] == '-' && validVR(s[:j]) && validVR(s[j+1:]) {
			return true
		}
	}
	return false
}

// PkgSplit splits "PN-PV[-rN]" with the acceptance of Portage's _pkgsplit:
// the shortest PN for which the rest is a version wins, and if at that
// point PN could itself end in "-version" the name is rejected
// ("foo-1-2" is invalid, "foo-1-bar-2" is foo-1-bar at 2).
func PkgSplit(pf string) (pn, ver, rev string, ok bool) {
	if pf == "" || !isWordByte(pf[0]) {
		return "", "", "", false
	}
	hyphens := strings.Count(pf, "-") // hyphens at or after i
	for i := 1; i < len(pf); i++ {
		c := pf[i]
		if c != '-' {
			if !isWordByte(c) && c != '+' {
				// PN can no longer grow past this character.
				return "", "", "", false
			}
			continue
		}
		hyphens--
		rest := pf[i+1:]
		if hyphens > 3 {
			continue // too many hyphens for "VR" or "VR-VR"
		}
		if hyphenVRSplit(rest) {
			return "", "", "", false
		}
		if validVR(rest) {
			ver, rev = rest, "r0"
			if k := strings.Index(rest, "-r"); k >= 0 {
				ver, rev = rest[:k], rest[k+1:]
			}
			return pf[:i], ver, rev, true
		}
	}
	return "", "", "", false
}

// SplitCPV splits "cat/pf" into category, PN and PF, like catpkgsplit.
func SplitCPV(cpv string) (category, pn, pf string, ok bool) {
	category, pf, found := strings.Cut(cpv, "/")
	if !found || !ValidCategory(category) {
		return "", "", "", false
	}
	pn, _, _, ok = PkgSplit(pf)
	if !ok {
		return "", "", "", false
	}
	return category, pn, pf, true
}
