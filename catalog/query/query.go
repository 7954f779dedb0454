// Package query selects builds the way `pkgdirfs query` does: Portage
// atoms, USE requirements and bounds on BUILD_TIME. It knows no database
// and no FUSE: a Selection matches catalog.Instance values (with Meta),
// and Parse reads the same terms from one string, so that a query stored
// in the catalog (a snapshot's, later a channel's) can be evaluated again.
package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Selection is any of the atoms (all builds without one), and every other
// condition.
type Selection struct {
	Atoms  []*layout.Atom
	Use    []layout.UseReq
	Before int64 // BUILD_TIME < Before (0: no bound)
	After  int64 // BUILD_TIME >= After (0: no bound)
}

// Terms are the parts of a query as given: atoms, and the values of
// --use, --older-than and --newer-than ("" when absent).
type Terms struct {
	Atoms             []string
	Use, Older, Newer string
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
	return s, nil
}

// Parse reads a query written as `pkgdirfs query` takes it on its command
// line, in one string split as a shell splits words (single and double
// quotes, backslash): 'app-misc/* >=dev-lang/python-3.11 --use ssl,-X
// --newer-than 30d'. The empty string selects every build.
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
		var dst *string
		switch name {
		case "--use":
			dst = &t.Use
		case "--older-than":
			dst = &t.Older
		case "--newer-than":
			dst = &t.Newer
		default:
			return t, fmt.Errorf("unknown option %q in the query (it takes atoms, --use, --older-than and --newer-than)", name)
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

// Match tells whether the selection takes inst (its Meta loaded).
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
	return true
}
