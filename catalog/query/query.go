// Package query selects builds the way `pkgdirfs query` does: Portage
// atoms, USE requirements, bounds on BUILD_TIME, what fleets split builds
// on (CHOST, KEYWORDS, arch, CFLAGS, any metadata key), and the newest N
// builds of each CPV. It knows no database and no FUSE: a Selection
// matches catalog.Instance values (with Meta), and Parse reads the same
// terms from one string, so that a query stored in the catalog (a
// snapshot's, later a channel's) can be evaluated again.
package query

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Selection is any of the atoms (all builds without one), and every other
// condition; Keep and PerUse then choose among the builds of each CPV
// (Filter).
type Selection struct {
	Atoms  []*layout.Atom
	Use    []layout.UseReq
	Before int64 // BUILD_TIME < Before (0: no bound)
	After  int64 // BUILD_TIME >= After (0: no bound)

	// Chost and Cflags are globs ("": any) on CHOST and CFLAGS, read as
	// Meta's keys are.
	Chost, Cflags string
	Keywords      []string   // each a word of KEYWORDS
	Arch          string     // ARCH or ~ARCH a word of KEYWORDS ("": any); see Match
	Meta          []MetaCond // each must hold

	// Keep > 0 takes only the Keep newest builds of each CPV (of each
	// distinct USE set with PerUse) among those the conditions take:
	// Filter, not Match, applies it.
	Keep   int
	PerUse bool

	// Header is the catalog's Packages header, where a key a build lacks
	// is looked up (Portage writes PROFILE there, and CHOST, which a
	// package block equal to it leaves out); nil: no fallback. The
	// caller sets it.
	Header map[string]string
}

// MetaCond is one --meta KEY=GLOB: the build's value of KEY, or else the
// Header's, matches GLOB; a key neither has matches nothing.
type MetaCond struct{ Key, Glob string }

// Terms are the parts of a query as given: atoms, and the values of the
// options ("" or nil when absent).
type Terms struct {
	Atoms                         []string
	Use, Older, Newer             string
	Chost, Keywords, Arch, Cflags string
	Meta                          []string // KEY=GLOB, each as given
	Keep                          string
	PerUse                        bool
}

// New reads terms; durations count back from now.
func New(t Terms, now time.Time) (*Selection, error) {
	s := &Selection{}
	for _, a := range t.Atoms {
		atom, err := ParseAtom(a)
		if err != nil {
			return nil, err
		}
		s.Atoms = append(s.Atoms, atom)
	}
	if t.Use != "" {
		reqs, err := layout.ParseUseReqs(t.Use)
		if err != nil {
			return nil, fmt.Errorf("--use: %v", err)
		}
		s.Use = reqs
	}
	if t.Older != "" {
		d, err := ParseAge(t.Older)
		if err != nil {
			return nil, fmt.Errorf("--older-than: %v", err)
		}
		s.Before = now.Add(-d).Unix()
	}
	if t.Newer != "" {
		d, err := ParseAge(t.Newer)
		if err != nil {
			return nil, fmt.Errorf("--newer-than: %v", err)
		}
		s.After = now.Add(-d).Unix()
	}
	for _, g := range []struct {
		name, glob string
		dst        *string
	}{{"--chost", t.Chost, &s.Chost}, {"--cflags", t.Cflags, &s.Cflags}} {
		if g.glob == "" {
			continue
		}
		if err := CheckGlob(g.glob); err != nil {
			return nil, fmt.Errorf("%s: %v", g.name, err)
		}
		*g.dst = g.glob
	}
	if t.Keywords != "" {
		for _, kw := range strings.Split(t.Keywords, ",") {
			if kw == "" || strings.ContainsAny(kw, " \t\n") {
				return nil, fmt.Errorf("--keywords %q: want KEYWORD[,KEYWORD...], e.g. amd64,~arm64", t.Keywords)
			}
			s.Keywords = append(s.Keywords, kw)
		}
	}
	if t.Arch != "" {
		if !archName(t.Arch) {
			return nil, fmt.Errorf("--arch %q: want an architecture as KEYWORDS names it, e.g. amd64 (for ~amd64 alone: --keywords ~amd64)", t.Arch)
		}
		s.Arch = t.Arch
	}
	for _, m := range t.Meta {
		c, err := parseMetaCond(m)
		if err != nil {
			return nil, err
		}
		s.Meta = append(s.Meta, c)
	}
	if t.Keep != "" {
		n, err := strconv.Atoi(t.Keep)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--keep %q: want a number N >= 1", t.Keep)
		}
		s.Keep = n
	}
	if t.PerUse {
		if s.Keep == 0 {
			return nil, fmt.Errorf("--per-use needs --keep N")
		}
		s.PerUse = true
	}
	return s, nil
}

// archName is an architecture as keywords name one (amd64, arm64,
// x64-macos): without the ~ or - a keyword may carry.
func archName(s string) bool {
	for i, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' && i > 0) {
			return false
		}
	}
	return s != ""
}

// parseMetaCond reads KEY=GLOB; KEY has the shape of Portage's metadata
// keys, so a typo such as a lower-case key is an error, not a selection
// of nothing.
func parseMetaCond(term string) (MetaCond, error) {
	key, glob, ok := strings.Cut(term, "=")
	if !ok {
		return MetaCond{}, fmt.Errorf("--meta %q: want KEY=GLOB, e.g. PROFILE='default/linux/amd64/23.0*'", term)
	}
	if !metaKey(key) {
		return MetaCond{}, fmt.Errorf("--meta %q: KEY %q is not a metadata key (upper-case letters, digits and _, e.g. CXXFLAGS)", term, key)
	}
	if err := CheckGlob(glob); err != nil {
		return MetaCond{}, fmt.Errorf("--meta %q: %v", term, err)
	}
	return MetaCond{Key: key, Glob: glob}, nil
}

func metaKey(s string) bool {
	for _, c := range []byte(s) {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return s != ""
}

// Parse reads a query written as `pkgdirfs query` takes it on its command
// line, in one string split as a shell splits words (single and double
// quotes, backslash): 'app-misc/* >=dev-lang/python-3.11 --use ssl,-X
// --newer-than 30d --keep 2'. The empty string selects every build.
func Parse(q string, now time.Time) (*Selection, error) {
	t, err := ParseTerms(q)
	if err != nil {
		return nil, err
	}
	return New(t, now)
}

// ParseTerms splits q into its terms without checking them.
func ParseTerms(q string) (Terms, error) {
	var t Terms
	words, err := Split(q)
	if err != nil {
		return t, err
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			t.Atoms = append(t.Atoms, words[i+1:]...)
			break
		}
		if !strings.HasPrefix(w, "-") || w == "-" {
			t.Atoms = append(t.Atoms, w)
			continue
		}
		name, val, hasVal := strings.Cut(w, "=")
		if name == "--per-use" {
			if hasVal {
				return t, fmt.Errorf("--per-use takes no value")
			}
			t.PerUse = true
			continue
		}
		var dst *string
		switch name {
		case "--use":
			dst = &t.Use
		case "--older-than":
			dst = &t.Older
		case "--newer-than":
			dst = &t.Newer
		case "--chost":
			dst = &t.Chost
		case "--keywords":
			dst = &t.Keywords
		case "--arch":
			dst = &t.Arch
		case "--cflags":
			dst = &t.Cflags
		case "--keep":
			dst = &t.Keep
		case "--meta":
			// Repeatable: every one must hold.
			t.Meta = append(t.Meta, "")
			dst = &t.Meta[len(t.Meta)-1]
		default:
			return t, fmt.Errorf("unknown option %q in the query (it takes atoms, --use, --older-than, --newer-than, --chost, --keywords, --arch, --cflags, --meta, --keep and --per-use)", name)
		}
		if !hasVal {
			if i+1 == len(words) {
				return t, fmt.Errorf("%s needs a value", name)
			}
			i++
			val = words[i]
		}
		if val == "" {
			return t, fmt.Errorf("%s needs a value", name)
		}
		*dst = val
	}
	return t, nil
}

// Split splits s into words as a POSIX shell does, without expansions:
// blanks separate words; 'single quotes' keep everything; "double quotes"
// keep everything but \" and \\; a backslash outside quotes keeps the
// next character.
func Split(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inW   bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inW {
				words = append(words, cur.String())
				cur.Reset()
				inW = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("query ends with a backslash")
			}
			i++
			cur.WriteByte(s[i])
			inW = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in the query")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inW = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated \" in the query")
			}
			inW = true
		default:
			cur.WriteByte(c)
			inW = true
		}
	}
	if inW {
		words = append(words, cur.String())
	}
	return words, nil
}

// ParseAtom is layout.ParseAtom, with a hint for a package name written
// without its category (hello): Gentoo's tools take one, our atoms a
// wildcard (*/hello).
func ParseAtom(s string) (*layout.Atom, error) {
	atom, err := layout.ParseAtom(s)
	if err != nil && !strings.Contains(s, "/") {
		if _, werr := layout.ParseAtom("*/" + s); werr == nil {
			return nil, fmt.Errorf("%v; a package name without its category is written '*/%s'", err, s)
		}
	}
	return atom, err
}

// ParseAge reads a Go duration ("36h", "90m") or days, alone or before
// one ("30d", "1.5d", "2d12h"): ages of builds are counted in days.
func ParseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration (e.g. 30d, 2d12h, 36h, 90m)", s)
	var d time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || days < 0 || days > 1e5 {
			return 0, bad
		}
		d = time.Duration(days * float64(24*time.Hour))
		rest = s[i+1:]
	}
	if rest != "" {
		x, err := time.ParseDuration(rest)
		if err != nil || x < 0 {
			return 0, bad
		}
		d += x
	}
	if s == "" {
		return 0, bad
	}
	return d, nil
}

// Globs (--chost, --cflags, --meta) are path.Match's patterns -- *, ?,
// [class], [^class], \ quoting -- except that * and ? match '/' too: the
// values are no paths (PROFILE holds slashes, CFLAGS blanks), and
// '*-march=x86-64-v3*' must find the flag anywhere in the value. A
// pattern matches the whole value.

// CheckGlob says what is wrong with pattern, if anything.
func CheckGlob(pattern string) error {
	// path.Match checks the whole pattern, also when it does not match.
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("bad glob %q (an unclosed [ or a \\ at the end)", pattern)
	}
	return nil
}

// MatchGlob tells whether s matches the glob pattern (false for a bad
// pattern).
func MatchGlob(pattern, s string) bool {
	if CheckGlob(pattern) != nil {
		return false
	}
	// Every item but * takes one character, so on a mismatch only the
	// last * seen needs to take one more and the match go on after it.
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			if pattern[p] == '*' {
				starP, starI = p, i
				p++
				continue
			}
			if np, ni, ok := matchOne(pattern, p, s, i); ok {
				p, i = np, ni
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starI:])
		starI += w
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchOne matches the pattern item at pattern[p] (not *) against the
// character at s[i], and returns where both go on.
func matchOne(pattern string, p int, s string, i int) (int, int, bool) {
	r, w := utf8.DecodeRuneInString(s[i:])
	switch pattern[p] {
	case '?':
		return p + 1, i + w, true
	case '\\':
		pr, pw := utf8.DecodeRuneInString(pattern[p+1:])
		return p + 1 + pw, i + w, pr == r
	case '[':
		// The class up to its closing ], which CheckGlob made sure of;
		// path.Match reads it, '/' being nothing special in a class.
		e := p + 1
		if pattern[e] == '^' {
			e++
		}
		for pattern[e] != ']' {
			if pattern[e] == '\\' {
				e++
			}
			e++
		}
		ok, _ := path.Match(pattern[p:e+1], s[i:i+w])
		return e + 1, i + w, ok
	}
	pr, pw := utf8.DecodeRuneInString(pattern[p:])
	return p + pw, i + w, pr == r
}

// Scopes narrows a catalog read to the packages the atoms name; nil is
// the whole catalog.
func (s *Selection) Scopes() []catalog.Scope {
	var out []catalog.Scope
	for _, a := range s.Atoms {
		if a.Category == "*" {
			return nil
		}
		sc := catalog.Scope{Category: a.Category}
		if a.PN != "*" {
			sc.PN = a.PN
		}
		out = append(out, sc)
	}
	return out
}

func buildOf(inst *catalog.Instance) *layout.Build {
	return &layout.Build{
		Category: inst.Category, PN: inst.PN, PF: inst.PF, BuildID: inst.BuildID,
		Slot: inst.Meta["SLOT"], Repo: inst.Meta["repository"], Use: inst.Meta["USE"], IUse: inst.Meta["IUSE"],
	}
}

// MatchAtoms tells whether any atom names inst (false without atoms).
func MatchAtoms(atoms []*layout.Atom, inst *catalog.Instance) bool {
	var b *layout.Build
	for _, a := range atoms {
		if !a.Names(inst.Category, inst.PN) {
			continue
		}
		if b == nil {
			b = buildOf(inst)
		}
		if a.Match(b) {
			return true
		}
	}
	return false
}

// Match tells whether the conditions take inst (its Meta loaded); Keep is
// Filter's.
func (s *Selection) Match(inst *catalog.Instance) bool {
	if len(s.Atoms) > 0 && !MatchAtoms(s.Atoms, inst) {
		return false
	}
	if !layout.MatchUse(s.Use, inst.Meta["USE"], inst.Meta["IUSE"]) {
		return false
	}
	if s.Before != 0 && inst.BuildTime >= s.Before {
		return false
	}
	if s.After != 0 && inst.BuildTime < s.After {
		return false
	}
	if s.Chost != "" && !s.metaMatches(inst, "CHOST", s.Chost) {
		return false
	}
	if s.Cflags != "" && !s.metaMatches(inst, "CFLAGS", s.Cflags) {
		return false
	}
	kw := inst.Meta["KEYWORDS"]
	for _, k := range s.Keywords {
		if !hasWord(kw, k, false) {
			return false
		}
	}
	// No build carries an ARCH of its own (Portage writes ARCH in the
	// header only): the build's keywords say which arches it is for.
	if s.Arch != "" && !hasWord(kw, s.Arch, true) {
		return false
	}
	for _, c := range s.Meta {
		if !s.metaMatches(inst, c.Key, c.Glob) {
			return false
		}
	}
	return true
}

// metaMatches tells whether the value of key, the build's or else the
// header's, matches glob; a key neither has matches nothing.
func (s *Selection) metaMatches(inst *catalog.Instance, key, glob string) bool {
	v, ok := lookup(inst.Meta, key)
	if !ok {
		v, ok = lookup(s.Header, key)
	}
	return ok && MatchGlob(glob, v)
}

// lookup reads key from m, REPO also under the name the catalog keeps it
// by (repository), as Portage's reader renames it.
func lookup(m map[string]string, key string) (string, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	if key == "REPO" {
		v, ok := m["repository"]
		return v, ok
	}
	// The build's compiler flags, kept beside the index keys.
	if v, ok := m[layout.BuildFlagPrefix+key]; ok {
		return v, true
	}
	return "", false
}

// hasWord tells whether w is one of the blank-separated words of list
// (also as ~w with tilde); it allocates nothing, as Filter promises.
func hasWord(list, w string, tilde bool) bool {
	for f := range strings.FieldsSeq(list) {
		if f == w || tilde && len(f) == len(w)+1 && f[0] == '~' && f[1:] == w {
			return true
		}
	}
	return false
}

// Grouped tells whether the selection chooses among the builds of a CPV
// (Keep): callers must then hand Filter whole CPVs, not Match single
// builds.
func (s *Selection) Grouped() bool { return s.Keep > 0 }

// All tells whether the selection takes every build: no atom, no
// condition, no Keep.
func (s *Selection) All() bool {
	return len(s.Atoms) == 0 && len(s.Use) == 0 && s.Before == 0 && s.After == 0 &&
		s.Chost == "" && len(s.Keywords) == 0 && s.Arch == "" && s.Cflags == "" && len(s.Meta) == 0 &&
		s.Keep <= 0
}

// Filter returns the builds of group that the selection takes: group is
// every build of one CPV in build id order with Meta (placeholders, which
// are no builds, are never taken). Those Match takes, and with Keep only
// the Keep newest of them (of each USE set with PerUse), newest as
// `pkgdirfs prune --keep` decides: BUILD_TIME, then BUILD_ID
// (catalog.SelectPrune). The result keeps group's order; group is not
// modified, and is itself the result when every build is taken. That
// costs no allocation when Keep is 0 or no less than the builds; with
// PerUse and more builds than Keep, counting the USE sets allocates even
// if each build has its own.
func (s *Selection) Filter(group []catalog.Instance) []catalog.Instance {
	// The common case, everything taken, costs no allocation.
	first := len(group) // the first build not taken
	for i := range group {
		if group[i].Placeholder || !s.Match(&group[i]) {
			first = i
			break
		}
	}
	if first == len(group) && (s.Keep <= 0 || len(group) <= s.Keep) {
		return group
	}
	taken := make([]bool, len(group))
	n := 0
	for i := range group {
		if i < first || i > first && !group[i].Placeholder && s.Match(&group[i]) {
			taken[i] = true
			n++
		}
	}
	if s.Keep > 0 && n > s.Keep {
		n = s.dropOld(group, taken)
	}
	if n == len(group) {
		return group
	}
	out := make([]catalog.Instance, 0, n)
	for i := range group {
		if taken[i] {
			out = append(out, group[i])
		}
	}
	return out
}

// dropOld clears taken for all but the Keep newest taken builds (of each
// USE set with PerUse) and returns how many remain.
func (s *Selection) dropOld(group []catalog.Instance, taken []bool) int {
	sets := map[string][]int{}
	for i, t := range taken {
		if !t {
			continue
		}
		key := ""
		if s.PerUse {
			key = catalog.UseSet(group[i].Meta["USE"])
		}
		sets[key] = append(sets[key], i)
	}
	n := 0
	for _, idx := range sets {
		slices.SortFunc(idx, func(a, b int) int {
			x, y := &group[a], &group[b]
			switch {
			case layout.Newer(x.BuildTime, x.BuildID, y.BuildTime, y.BuildID):
				return -1
			case layout.Newer(y.BuildTime, y.BuildID, x.BuildTime, x.BuildID):
				return 1
			}
			return 0
		})
		for k, i := range idx {
			if k >= s.Keep {
				taken[i] = false
			} else {
				n++
			}
		}
	}
	return n
}
