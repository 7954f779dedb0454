package layout

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The USE reduction below follows the behaviour of Portage's
// use_reduce(deps, uselist=USE, eapi=None) followed by paren_enclose, which
// is what binarytree._eval_use_flags applies to the dependency keys of the
// index. The group-collapsing rules are intricate (they decide where
// brackets survive) and are reproduced step by step; see the tests for the
// cases checked against Portage itself.

type depKind int

const (
	depLeaf  depKind = iota // a plain token (str mode)
	depAtom                 // a validated package atom (atom mode)
	depAnyOf                // "||"
	depCond                 // "flag?" or "!flag?"
	depList                 // a bracketed group
)

type depNode struct {
	kind depKind
	tok  string
	list []depNode
}

// isStr tells whether Portage would hold this element as a Python str: the
// operators, conditionals and, without a token class, every token. Some
// collapsing decisions look only at str elements.
func (n depNode) isStr() bool {
	return n.kind == depLeaf || n.kind == depAnyOf || n.kind == depCond
}

// emptyAnyOf stands for an any-of group left empty by USE conditionals
// (Portage's placeholder when empty groups are not "always true").
const emptyAnyOf = "__const__/empty-any-of"

// isUseFlag tells the USE flag syntax Portage accepts in conditionals,
// ^[A-Za-z0-9][A-Za-z0-9+_@-]*$, without a regexp (it runs for every USE
// conditional of every package indexed).
func isUseFlag(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isUseFlagChar(s[i], i == 0) {
			return false
		}
	}
	return true
}

func isUseFlagChar(c byte, first bool) bool {
	alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	return alnum || !first && (c == '+' || c == '_' || c == '@' || c == '-')
}

// UseReduce evaluates USE conditionals in deps against use and renders the
// result with Portage's spacing ("a || ( b c ) ( d e )"). Tokens are not
// validated as atoms; use UseReduceAtoms for *DEPEND values.
func UseReduce(deps string, use map[string]bool) (string, error) {
	return useReduce(deps, use, false)
}

// UseReduceAtoms is UseReduce for dependency keys (BDEPEND, DEPEND, IDEPEND,
// PDEPEND, RDEPEND): every token must be a valid package atom, and USE
// conditionals inside atoms ("foo[bar?]", "foo[bar=]") are evaluated too.
func UseReduceAtoms(deps string, use map[string]bool) (string, error) {
	return useReduce(deps, use, true)
}

func useReduce(deps string, use map[string]bool, atoms bool) (string, error) {
	tree, err := reduceTree(deps, use, atoms)
	if err != nil {
		return "", err
	}
	return encloseParens(tree), nil
}

func encloseParens(nodes []depNode) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n.kind == depList {
			parts = append(parts, "( "+encloseParens(n.list)+" )")
		} else {
			parts = append(parts, n.tok)
		}
	}
	return strings.Join(parts, " ")
}

func isActive(cond string, use map[string]bool) (bool, error) {
	flag, negated := strings.TrimSuffix(cond, "?"), false
	if strings.HasPrefix(flag, "!") {
		flag, negated = flag[1:], true
	}
	if !isUseFlag(flag) {
		return false, fmt.Errorf("invalid use flag %q in conditional %q", flag, cond)
	}
	return use[flag] != negated, nil
}

// pySplit splits on Python whitespace like str.split().
func pySplit(s string) []string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.FieldsFunc(s, isPySpace)
		}
	}
	// ASCII (metadata nearly always is): one pass to count, one to cut.
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		sp := asciiPySpace[s[i]]
		if !sp && !in {
			n++
		}
		in = !sp
	}
	out := make([]string, 0, n)
	start := -1
	for i := 0; i < len(s); i++ {
		switch {
		case asciiPySpace[s[i]]:
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		case start < 0:
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// asciiPySpace is isPySpace for bytes below utf8.RuneSelf.
var asciiPySpace = [256]bool{' ': true, '\t': true, '\n': true, '\v': true, '\f': true, '\r': true,
	0x1c: true, 0x1d: true, 0x1e: true, 0x1f: true}

func reduceTree(deps string, use map[string]bool, atoms bool) ([]depNode, error) {
	tokens := pySplit(deps)
	stack := [][]depNode{{}}
	level := 0
	needBracket := false

	last := func(k int) (depNode, bool) {
		if k < 0 || len(stack[k]) == 0 {
			return depNode{}, false
		}
		return stack[k][len(stack[k])-1], true
	}
	endsInAnyOf := func(k int) bool {
		n, ok := last(k)
		return ok && n.kind == depAnyOf
	}
	// lastAnyOfLevel finds the level of an "||" still in effect above k:
	// conditionals and non-str elements are looked through, a plain str
	// token stops the search.
	lastAnyOfLevel := func(k int) int {
		for ; k >= 0; k-- {
			n, ok := last(k)
			if !ok || !n.isStr() {
				continue
			}
			if n.kind == depAnyOf {
				return k
			}
			if n.kind != depCond {
				return -1
			}
		}
		return -1
	}

	for pos, tok := range tokens {
		switch {
		case tok == "(":
			if pos+1 < len(tokens) && tokens[pos+1] == ")" {
				return nil, fmt.Errorf("expected dependency string, got ')', token %d", pos+2)
			}
			needBracket = false
			stack = append(stack, nil)
			level++

		case tok == ")":
			if needBracket {
				return nil, fmt.Errorf("expected '(', got ')', token %d", pos+1)
			}
			if level == 0 {
				return nil, fmt.Errorf("no matching '(' for ')', token %d", pos+1)
			}
			level--
			l := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			isSingle := len(l) == 1 || (len(l) == 2 && l[0].kind == depAnyOf)
			ignore := false

			if n, ok := last(level); ok && n.isStr() {
				switch {
				case n.kind == depAnyOf && len(l) == 0:
					// "|| ( )" after reduction: a placeholder that never
					// matches, like Portage with EAPI-less evaluation.
					kind := depLeaf
					if atoms {
						kind = depAtom
					}
					l = append(l, depNode{kind: kind, tok: emptyAnyOf})
					stack[level] = stack[level][:len(stack[level])-1]
				case n.kind == depCond:
					active, err := isActive(n.tok, use)
					if err != nil {
						return nil, err
					}
					ignore = !active
					stack[level] = stack[level][:len(stack[level])-1]
				}
			}

			specialAppend := func() {
				if !isSingle {
					stack[level] = append(stack[level], depNode{kind: depList, list: l})
					return
				}
				switch {
				case l[0].kind == depAnyOf && endsInAnyOf(level-1):
					stack[level] = append(stack[level], l[1].list...)
				case len(l) == 1 && l[0].kind == depList:
					if lastAnyOfLevel(level-1) == -1 {
						stack[level] = append(stack[level], l[0].list...)
					} else {
						stack[level] = append(stack[level], l[0])
					}
				default:
					stack[level] = append(stack[level], l...)
				}
			}

			if len(l) == 0 || ignore {
				continue
			}
			switch {
			case !endsInAnyOf(level-1) && !endsInAnyOf(level):
				// ( ( a ) ) -> a: brackets with no "||" around are redundant.
				stack[level] = append(stack[level], l...)
			case len(stack[level]) == 0:
				specialAppend()
			case isSingle && endsInAnyOf(level):
				// || ( a ) -> a, || ( || ( ... ) ) -> || ( ... )
				stack[level] = stack[level][:len(stack[level])-1]
				specialAppend()
			case endsInAnyOf(level) && endsInAnyOf(level-1):
				// || ( a || ( b c ) ) -> || ( a b c )
				stack[level] = stack[level][:len(stack[level])-1]
				stack[level] = append(stack[level], l...)
			default:
				specialAppend()
			}

		case tok == "||":
			if needBracket {
				return nil, fmt.Errorf("expected '(', got '||', token %d", pos+1)
			}
			needBracket = true
			stack[level] = append(stack[level], depNode{kind: depAnyOf, tok: tok})

		case tok == "->":
			return nil, fmt.Errorf("SRC_URI arrows are only allowed in SRC_URI, token %d", pos+1)

		default:
			if needBracket {
				return nil, fmt.Errorf("expected '(', got %q, token %d", tok, pos+1)
			}
			if strings.HasSuffix(tok, "?") {
				needBracket = true
				stack[level] = append(stack[level], depNode{kind: depCond, tok: tok})
				continue
			}
			if !atoms {
				stack[level] = append(stack[level], depNode{kind: depLeaf, tok: tok})
				continue
			}
			a, err := evaluateAtom(tok, use)
			if err != nil {
				return nil, fmt.Errorf("invalid atom %q, token %d: %v", tok, pos+1, err)
			}
			stack[level] = append(stack[level], depNode{kind: depAtom, tok: a})
		}
	}
	if level != 0 {
		return nil, fmt.Errorf("missing ')' at end of string")
	}
	if needBracket {
		return nil, fmt.Errorf("missing '(' at end of string")
	}
	return stack[0], nil
}

type useDepTok struct {
	op, flag, dflt string // op: "", "-", "?", "=", "!=", "!?"
	text           string
}

// evaluateAtom validates one dependency atom and, if it carries USE
// conditionals, returns it with them evaluated against use (Portage's
// Atom.evaluate_conditionals, which also drops any ::repo part).
func evaluateAtom(tok string, use map[string]bool) (string, error) {
	s := tok
	if strings.HasPrefix(s, "!!") {
		s = s[2:]
	} else if strings.HasPrefix(s, "!") {
		s = s[1:]
	}
	m, ok := matchAtom(s)
	if !ok {
		return "", fmt.Errorf("bad syntax")
	}
	if m.starInner {
		return "", fmt.Errorf("version in package name")
	}
	if m.simpleInner {
		return "", fmt.Errorf("version without operator")
	}
	if m.opInner {
		// "=cat/pkg-1.0-3": the last part is a build id.
		id := m.opVer
		if (len(id) > 1 && id[0] == '0') || !allDigits(id) {
			return "", fmt.Errorf("invalid build id %q", id)
		}
	}
	var slotMain, slotSub, slotOp string
	if slot := m.slot; m.hasSlot {
		var ok bool
		if slotMain, slotSub, slotOp, ok = matchSlotDep(slot); !ok {
			return "", fmt.Errorf("invalid slot %q", slot)
		}
		if (slotMain != "" && slotOp == "*") || (slotMain == "" && slotOp == "") {
			return "", fmt.Errorf("invalid slot %q", slot)
		}
	}
	useStr := m.use
	if useStr == "" {
		return tok, nil
	}
	toks, conditional, err := parseUseDeps(useStr[1 : len(useStr)-1])
	if err != nil {
		return "", err
	}
	if !conditional {
		return tok, nil
	}
	// Rebuild as Portage does: everything before the first ':' (or '['),
	// the slot, then the evaluated USE deps.
	out := tok
	if k := strings.IndexByte(out, ':'); k >= 0 {
		out = out[:k]
	} else if k := strings.IndexByte(out, '['); k >= 0 {
		out = out[:k]
	}
	if slotMain != "" || slotOp != "" {
		out += ":" + slotMain
		if slotSub != "" {
			out += "/" + slotSub
		}
		out += slotOp
	}
	var ev []string
	for _, t := range toks {
		on := use[t.flag]
		switch t.op {
		case "?":
			if on {
				ev = append(ev, t.flag+t.dflt)
			}
		case "=":
			if on {
				ev = append(ev, t.flag+t.dflt)
			} else {
				ev = append(ev, "-"+t.flag+t.dflt)
			}
		case "!=":
			if on {
				ev = append(ev, "-"+t.flag+t.dflt)
			} else {
				ev = append(ev, t.flag+t.dflt)
			}
		case "!?":
			if !on {
				ev = append(ev, "-"+t.flag+t.dflt)
			}
		default:
			ev = append(ev, t.text)
		}
	}
	if len(ev) > 0 {
		out += "[" + strings.Join(ev, ",") + "]"
	}
	return out, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseUseDeps validates the comma-separated USE deps of an atom, including
// the consistency of (+)/(-) defaults per flag.
func parseUseDeps(s string) (toks []useDepTok, conditional bool, err error) {
	const (
		noDefault = iota + 1
		missingOn
		missingOff
	)
	seen := map[string]int{}
	for _, x := range strings.Split(s, ",") {
		prefix, flag, dflt, suffix, ok := matchUseDep(x)
		if !ok {
			return nil, false, fmt.Errorf("invalid use dep %q", x)
		}
		t := useDepTok{op: prefix + suffix, flag: flag, dflt: dflt, text: x}
		switch t.op {
		case "", "-":
		case "?", "=", "!=", "!?":
			conditional = true
		default:
			return nil, false, fmt.Errorf("invalid use dep %q", x)
		}
		prev := seen[t.flag]
		switch t.dflt {
		case "(+)":
			if prev == missingOff || prev == noDefault {
				return nil, false, fmt.Errorf("invalid use dep %q", x)
			}
			seen[t.flag] = missingOn
		case "(-)":
			if prev == missingOn || prev == noDefault {
				return nil, false, fmt.Errorf("invalid use dep %q", x)
			}
			seen[t.flag] = missingOff
		default:
			if prev == missingOn || prev == missingOff {
				return nil, false, fmt.Errorf("invalid use dep %q", x)
			}
			seen[t.flag] = noDefault
		}
		toks = append(toks, t)
	}
	return toks, conditional, nil
}
