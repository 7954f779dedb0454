package layout

import "strings"

// atomParts is what the atom syntax shows about one dependency atom (the
// "!"/"!!" blocker prefix already removed).
type atomParts struct {
	opInner     bool   // "=cat/pkg-1.0-3": a version, then a build id
	opVer       string // the last version part of an operator atom
	starInner   bool   // "=cat/pkg-1-2*": a version inside the package name
	simpleInner bool   // "cat/pkg-1.0": a version without an operator
	slot        string // after ":", "" when absent
	hasSlot     bool
	use         string // "[...]" including the brackets, "" when absent
}

// matchAtom matches s against the atom syntax Portage accepts without an
// EAPI (repository and build-id forms allowed):
//
//	(op CAT/PKG(-VR)?-VR | =CAT/PKG(-VR)?-VR* | CAT/PKG(-VR)?) (:SLOT)? (::REPO)? ([...])?
//
// PKG is the shortest name that lets the rest match, and an optional inner
// version is taken whenever it can be, as a backtracking regular expression
// with a lazy PKG would; this is written out by hand because the regular
// expression was most of the cost of indexing a package. layout's tests
// compare the two on generated atoms.
func matchAtom(s string) (p atomParts, ok bool) {
	// The name-and-version part ends at the first ':' or '[': none of its
	// characters is one of those.
	end := strings.IndexAny(s, ":[")
	if end < 0 {
		end = len(s)
	}
	body, rest := s[:end], s[end:]
	if !matchAtomSuffix(rest, &p) {
		return p, false
	}
	op := 0
	switch {
	case body == "":
		return p, false
	case body[0] == '=' || body[0] == '~':
		op = 1
	case body[0] == '<' || body[0] == '>':
		op = 1
		if len(body) > 1 && body[1] == '=' {
			op = 2
		}
	}
	slash := strings.IndexByte(body, '/')
	if slash < op || !ValidCategory(body[op:slash]) {
		return p, false
	}
	pv := body[slash+1:]
	if op == 0 {
		inner, ok := splitNameOptionalVersion(pv)
		p.simpleInner = inner
		return p, ok
	}
	if body[0] == '=' && strings.HasSuffix(pv, "*") {
		inner, _, ok := splitNameVersion(pv[:len(pv)-1])
		p.starInner = inner
		return p, ok
	}
	inner, ver, ok := splitNameVersion(pv)
	p.opInner, p.opVer = inner, ver
	return p, ok
}

// matchAtomSuffix matches (:SLOT)?(::REPO)?(\[.*\])? to the whole of rest.
func matchAtomSuffix(rest string, p *atomParts) bool {
	if len(rest) > 1 && rest[0] == ':' && rest[1] != ':' {
		n := 1
		for n < len(rest) && isSlotChar(rest[n]) {
			n++
		}
		if n == 1 {
			return false
		}
		p.slot, p.hasSlot = rest[1:n], true
		rest = rest[n:]
	}
	if strings.HasPrefix(rest, "::") {
		n := 2
		if n >= len(rest) || !isWordByte(rest[n]) {
			return false
		}
		for n++; n < len(rest) && (isWordByte(rest[n]) || rest[n] == '-'); n++ {
		}
		rest = rest[n:]
	}
	if rest == "" {
		return true
	}
	// "." in the regular expression does not match a newline.
	if len(rest) < 2 || rest[0] != '[' || rest[len(rest)-1] != ']' || strings.IndexByte(rest, '\n') >= 0 {
		return false
	}
	p.use = rest
	return true
}

// splitNameVersion matches PKG(-VR)?-VR to the whole of pv with the
// shortest PKG; inner tells whether the optional version took part, ver is
// the last one.
func splitNameVersion(pv string) (inner bool, ver string, ok bool) {
	for j := 1; j < len(pv); j++ {
		if !isPkgChar(pv[j-1]) || !isWordByte(pv[0]) {
			return false, "", false
		}
		if pv[j] != '-' {
			continue
		}
		x := pv[j+1:]
		// A version's only '-' is that of "-r<digits>", so the two
		// versions meet at the first '-' followed by a digit.
		if k := dashDigit(x); k >= 0 {
			if isVersionRev(x[:k]) && isVersionRev(x[k+1:]) {
				return true, x[k+1:], true
			}
		} else if isVersionRev(x) {
			return false, x, true
		}
	}
	return false, "", false
}

// splitNameOptionalVersion matches PKG(-VR)? to the whole of pv with the
// shortest PKG; inner tells whether the version took part.
func splitNameOptionalVersion(pv string) (inner, ok bool) {
	if pv == "" || !isWordByte(pv[0]) {
		return false, false
	}
	for j := 1; j <= len(pv); j++ {
		if !isPkgChar(pv[j-1]) {
			return false, false
		}
		if j < len(pv) && pv[j] == '-' && isVersionRev(pv[j+1:]) {
			return true, true
		}
	}
	return false, true
}

func dashDigit(s string) int {
	for k := 0; k+1 < len(s); k++ {
		if s[k] == '-' && isDigit(s[k+1]) {
			return k
		}
	}
	return -1
}

// isVersionRev matches a whole version with its optional revision:
// [0-9]+(\.[0-9]+)*[a-z]?(_(pre|p|beta|alpha|rc)[0-9]*)*(-r[0-9]+)?
func isVersionRev(s string) bool {
	i := digitsAt(s, 0)
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '.' {
		n := digitsAt(s, i+1)
		if n == i+1 {
			return false
		}
		i = n
	}
	if i < len(s) && s[i] >= 'a' && s[i] <= 'z' {
		i++
	}
	for i < len(s) && s[i] == '_' {
		n := i + 1
		for n < len(s) && s[n] >= 'a' && s[n] <= 'z' {
			n++
		}
		switch s[i+1 : n] {
		case "pre", "p", "beta", "alpha", "rc":
		default:
			return false
		}
		i = digitsAt(s, n)
	}
	if i < len(s) {
		if !strings.HasPrefix(s[i:], "-r") {
			return false
		}
		n := digitsAt(s, i+2)
		if n == i+2 {
			return false
		}
		i = n
	}
	return i == len(s)
}

func isPkgChar(c byte) bool { return isWordByte(c) || c == '+' || c == '-' }

func isSlotChar(c byte) bool {
	return isPkgChar(c) || c == '.' || c == '/' || c == '*' || c == '='
}

// matchSlotDep matches an atom's slot part, (MAIN(/SUB)?)?[*=]?, where
// MAIN and SUB are [A-Za-z0-9_][A-Za-z0-9_+.-]*.
func matchSlotDep(s string) (main, sub, op string, ok bool) {
	if n := len(s); n > 0 && (s[n-1] == '*' || s[n-1] == '=') {
		s, op = s[:n-1], s[n-1:]
	}
	if s == "" {
		return "", "", op, true
	}
	// MAIN and SUB have a category name's syntax.
	main, sub, hasSub := strings.Cut(s, "/")
	if !ValidCategory(main) || (hasSub && !ValidCategory(sub)) {
		return "", "", "", false
	}
	return main, sub, op, true
}

// matchUseDep matches one USE dependency of an atom,
// [!-]?FLAG((+)|(-))?[?=]?, FLAG as in isUseFlag.
func matchUseDep(x string) (prefix, flag, dflt, suffix string, ok bool) {
	s := x
	if s != "" && (s[0] == '!' || s[0] == '-') {
		prefix, s = s[:1], s[1:]
	}
	n := 0
	for n < len(s) && isUseFlagChar(s[n], n == 0) {
		n++
	}
	if n == 0 {
		return "", "", "", "", false
	}
	flag, s = s[:n], s[n:]
	if strings.HasPrefix(s, "(+)") || strings.HasPrefix(s, "(-)") {
		dflt, s = s[:3], s[3:]
	}
	if s == "?" || s == "=" {
		suffix, s = s, ""
	}
	if s != "" {
		return "", "", "", "", false
	}
	return prefix, flag, dflt, suffix, true
}
