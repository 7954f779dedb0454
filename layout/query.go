package layout

import (
	"fmt"
	"strings"
)

// Atom is a package atom as a user names builds with it (pkgdirfs query,
// prune --keep-atoms): Portage's atom syntax (PMS 8.3) plus the wildcards
// "cat/*", "*/pkg" and "*/*" for whole categories.
type Atom struct {
	Text string // as written
	// Op is "", "=", "=*" (the "=cat/pkg-1.2*" prefix form), "~", "<",
	// "<=", ">" or ">=".
	Op       string
	Category string // "*": any
	PN       string // "*": any
	// Version is the version (with revision) an operator compares with;
	// VersionText is how it was written.
	Version     Version
	VersionText string
	// BuildID, from "=cat/pkg-1.0-3" (Portage's build-id atoms), selects
	// one build; 0: any.
	BuildID int64
	// Slot and SubSlot restrict SLOT when HasSlot ("cat/pkg:0",
	// "cat/pkg:0/1"); ":*" and ":=" say nothing about the slot.
	Slot, SubSlot string
	HasSlot       bool
	HasSubSlot    bool
	Repo          string // "::gentoo"; "" for any
	Use           []UseReq
}

// UseReq is one USE condition a build must meet: Flag enabled (On) or not.
// Default, "(+)" or "(-)", stands for a flag missing from the build's IUSE.
type UseReq struct {
	Flag    string
	On      bool
	Default string
}

// Build is what an atom is matched against: one instance's names and the
// metadata values it looks at (space-separated, as in the index).
type Build struct {
	Category, PN, PF string
	BuildID          int64
	Slot             string // "0", "0/1"; "" is "0"
	Repo             string
	Use, IUse        string
}

// ParseAtom parses an atom, with a message that says what is wrong.
func ParseAtom(s string) (*Atom, error) {
	a := &Atom{Text: s}
	if s == "" {
		return nil, fmt.Errorf("empty atom")
	}
	if s[0] == '!' {
		return nil, fmt.Errorf("%q: blockers (!) select nothing", s)
	}
	if strings.ContainsAny(s, " \t\n") {
		return nil, fmt.Errorf("%q: an atom holds no white space", s)
	}
	end := strings.IndexAny(s, ":[")
	if end < 0 {
		end = len(s)
	}
	body, rest := s[:end], s[end:]
	var p atomParts
	if cat, pn, ok := strings.Cut(body, "/"); ok && (cat == "*" || pn == "*") {
		// Wildcards are ours, not Portage's: check the rest with a
		// stand-in name.
		if cat != "*" && !ValidCategory(cat) {
			return nil, fmt.Errorf("%q: invalid category %q", s, cat)
		}
		if pn != "*" && !ValidPN(pn) {
			return nil, fmt.Errorf("%q: invalid package name %q", s, pn)
		}
		var ok bool
		if p, ok = matchAtom("a/b" + rest); !ok {
			return nil, fmt.Errorf("%q: invalid slot, repository or USE part %q", s, rest)
		}
		a.Category, a.PN = cat, pn
	} else {
		var ok bool
		if p, ok = matchAtom(s); !ok {
			return nil, fmt.Errorf("%q: not a valid atom (CATEGORY/PN, an operator with a version like >=cat/pkg-1.0, :SLOT, [USE])", s)
		}
		if p.simpleInner {
			return nil, fmt.Errorf("%q: a version needs an operator (=%s)", s, s)
		}
		switch {
		case strings.HasPrefix(body, ">="), strings.HasPrefix(body, "<="):
			a.Op = body[:2]
		case body[0] == '=' || body[0] == '~' || body[0] == '<' || body[0] == '>':
			a.Op = body[:1]
		}
		cat, pv, _ := strings.Cut(body[len(a.Op):], "/")
		a.Category = cat
		if a.Op == "" {
			a.PN = pv
		} else {
			if a.Op == "=" && strings.HasSuffix(pv, "*") {
				a.Op, pv = "=*", pv[:len(pv)-1]
				if p.starInner {
					return nil, fmt.Errorf("%q: a build id cannot end in *", s)
				}
			}
			if p.opInner {
				if a.Op != "=" {
					return nil, fmt.Errorf("%q: a build id (the last -%s) goes with = only", s, p.opVer)
				}
				if !allDigits(p.opVer) || (len(p.opVer) > 1 && p.opVer[0] == '0') {
					return nil, fmt.Errorf("%q: invalid build id %q", s, p.opVer)
				}
				if _, err := fmt.Sscan(p.opVer, &a.BuildID); err != nil || a.BuildID <= 0 {
					return nil, fmt.Errorf("%q: invalid build id %q", s, p.opVer)
				}
				pv = pv[:len(pv)-len(p.opVer)-1]
			}
			pn, ver, rev, ok := PkgSplit(pv)
			if !ok {
				return nil, fmt.Errorf("%q: %q is not a package name and version", s, pv)
			}
			a.PN = pn
			a.VersionText = pv[len(pn)+1:]
			if rev != "r0" || strings.HasSuffix(a.VersionText, "-r0") {
				ver += "-" + rev
			}
			v, err := ParseVersion(ver)
			if err != nil {
				return nil, fmt.Errorf("%q: invalid version %q", s, ver)
			}
			a.Version = v
		}
	}
	if p.hasSlot {
		main, sub, op, ok := matchSlotDep(p.slot)
		if !ok || (main == "" && op == "") || (main != "" && op == "*") {
			return nil, fmt.Errorf("%q: invalid slot %q", s, p.slot)
		}
		if main != "" {
			a.Slot, a.SubSlot, a.HasSlot, a.HasSubSlot = main, sub, true, sub != ""
		}
	}
	if i := strings.Index(rest, "::"); i >= 0 {
		a.Repo = rest[i+2:]
		if j := strings.IndexByte(a.Repo, '['); j >= 0 {
			a.Repo = a.Repo[:j]
		}
	}
	if p.use != "" {
		for _, d := range strings.Split(p.use[1:len(p.use)-1], ",") {
			prefix, flag, dflt, suffix, ok := matchUseDep(d)
			if !ok || prefix == "!" || suffix != "" {
				return nil, fmt.Errorf("%q: USE condition %q: only FLAG and -FLAG select builds", s, d)
			}
			a.Use = append(a.Use, UseReq{Flag: flag, On: prefix != "-", Default: dflt})
		}
	}
	return a, nil
}

// ValidPN reports whether s is a package name (PMS 3.1.2): no version at
// its end.
func ValidPN(s string) bool {
	if s == "" || !isWordByte(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPkgChar(s[i]) {
			return false
		}
		if s[i] == '-' && (i == len(s)-1 || isVersionRev(s[i+1:]) || hyphenVRSplit(s[i+1:])) {
			return false
		}
	}
	return true
}

// ParseUseReqs parses "ssl,-X" (commas or spaces between flags): each
// flag must be enabled, each -flag disabled.
func ParseUseReqs(s string) ([]UseReq, error) {
	var out []UseReq
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		r := UseReq{Flag: f, On: true}
		if f[0] == '-' || f[0] == '+' {
			r.Flag, r.On = f[1:], f[0] == '+'
		}
		if !isUseFlag(r.Flag) {
			return nil, fmt.Errorf("invalid USE flag %q", f)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no USE flag in %q", s)
	}
	return out, nil
}

// MatchUse tells whether a build with these USE and IUSE values meets every
// requirement. A flag outside IUSE takes the requirement's default if it
// has one; without, it counts as disabled (it was not built with it).
func MatchUse(reqs []UseReq, use, iuse string) bool {
	if len(reqs) == 0 {
		return true
	}
	on := map[string]bool{}
	for _, f := range strings.Fields(use) {
		on[f] = true
	}
	var known map[string]bool
	for _, r := range reqs {
		if r.Default == "" {
			continue
		}
		if known == nil {
			known = map[string]bool{}
			for _, f := range strings.Fields(iuse) {
				known[strings.TrimLeft(f, "+-")] = true
			}
		}
	}
	for _, r := range reqs {
		got := on[r.Flag]
		if r.Default != "" && !known[r.Flag] && !on[r.Flag] {
			got = r.Default == "(+)"
		}
		if got != r.On {
			return false
		}
	}
	return true
}

// Names reports whether the atom could match some build of category/pn:
// what a caller narrows a scan with.
func (a *Atom) Names(category, pn string) bool {
	return (a.Category == "*" || a.Category == category) && (a.PN == "*" || a.PN == pn)
}

// Match tells whether b is a build the atom names.
func (a *Atom) Match(b *Build) bool {
	if !a.Names(b.Category, b.PN) {
		return false
	}
	if a.BuildID != 0 && b.BuildID != a.BuildID {
		return false
	}
	if a.Op != "" {
		if len(b.PF) <= len(b.PN)+1 {
			return false
		}
		vtext := b.PF[len(b.PN)+1:]
		v, err := ParseVersion(vtext)
		if err != nil {
			return false
		}
		if !a.matchVersion(v, vtext) {
			return false
		}
	}
	if a.HasSlot {
		slot := strings.TrimSpace(b.Slot)
		if slot == "" {
			slot = "0"
		}
		main, sub, _ := strings.Cut(slot, "/")
		if main != a.Slot || (a.HasSubSlot && sub != a.SubSlot) {
			return false
		}
	}
	if a.Repo != "" && strings.TrimSpace(b.Repo) != a.Repo {
		return false
	}
	return MatchUse(a.Use, b.Use, b.IUse)
}

func (a *Atom) matchVersion(v Version, vtext string) bool {
	switch a.Op {
	case "=":
		return CompareVersions(v, a.Version) == 0
	case "~":
		return CompareVersions(withoutRevision(v), withoutRevision(a.Version)) == 0
	case "<":
		return CompareVersions(v, a.Version) < 0
	case "<=":
		return CompareVersions(v, a.Version) <= 0
	case ">":
		return CompareVersions(v, a.Version) > 0
	case ">=":
		return CompareVersions(v, a.Version) >= 0
	case "=*":
		return globVersion(a.VersionText, vtext)
	}
	return false
}

func withoutRevision(v Version) Version {
	if v.rev == "" {
		return v
	}
	w := v
	w.rev = ""
	w.text = v.text[:strings.LastIndex(v.text, "-r")]
	return w
}

// globVersion is the "=cat/pkg-1.2*" match: the version as written starts
// with the atom's, and the match ends where a version component does (1*
// matches 1.5 and 1-r1 but not 10). The first component is compared
// without leading zeros, as Portage does.
func globVersion(prefix, v string) bool {
	prefix, v = trimLeadingZeros(prefix), trimLeadingZeros(v)
	if !strings.HasPrefix(v, prefix) {
		return false
	}
	if len(v) == len(prefix) || prefix == "" {
		return true
	}
	next := v[len(prefix)]
	return next == '.' || next == '_' || next == '-' || isDigit(prefix[len(prefix)-1]) != isDigit(next)
}

func trimLeadingZeros(v string) string {
	t := strings.TrimLeft(v, "0")
	if t == "" || !isDigit(t[0]) {
		return "0" + t
	}
	return t
}
