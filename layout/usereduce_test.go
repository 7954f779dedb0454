package layout

import (
	"strings"
	"testing"
)

// errUR marks a case where Portage raises InvalidDependString.
const errUR = "\x00error"

// Expected values were produced by Portage's own use_reduce + paren_enclose
// (eapi=None, token_class=Atom for atom cases), as _eval_use_flags calls it.
var useReduceCases = []struct {
	deps, use string
	atoms     bool
	want      string
}{
	{"a? ( A ) b? ( B ) !c? ( C ) !d? ( D )", "a b c d", false, "A B"},
	{"a? ( A ) b? ( B ) !c? ( C ) !d? ( D )", "", false, "C D"},
	{"a? ( b? ( AB ) !b? ( A-B ) )", "a", false, "A-B"},
	{"|| ( A B )", "", false, "|| ( A B )"},
	{"|| ( A x? ( B ) )", "", false, "A"},
	{"|| ( x? ( A ) y? ( B ) )", "", false, "__const__/empty-any-of"},
	{"|| ( x? ( A ) y? ( B ) )", "x", false, "A"},
	{"|| ( x? ( A ) y? ( B ) )", "x y", false, "|| ( A B )"},
	{"|| ( ( A B ) C )", "", false, "|| ( ( A B ) C )"},
	{"|| ( ( A B ) )", "", false, "A B"},
	{"|| ( x? ( A B ) )", "x", false, "A B"},
	{"( A B ) ( C D )", "", false, "A B C D"},
	{"( ( A ) ) B", "", false, "A B"},
	{"|| ( A || ( B C ) )", "", false, "|| ( A B C )"},
	{"|| ( || ( A B ) )", "", false, "|| ( A B )"},
	{"|| ( ( A || ( B C ) ) D )", "", false, "|| ( ( A || ( B C ) ) D )"},
	{"x? ( || ( A B ) )", "x", false, "|| ( A B )"},
	{"|| ( x? ( || ( A B ) ) C )", "x", false, "|| ( A B C )"},
	{"A || ( B C ) ( D E )", "", false, "A || ( B C ) D E"},
	{"GPL-3+ LGPL-3+ || ( GPL-3+ libgcc libstdc++ gcc-runtime-library-exception-3.1 ) FDL-1.3+", "", false, "GPL-3+ LGPL-3+ || ( GPL-3+ libgcc libstdc++ gcc-runtime-library-exception-3.1 ) FDL-1.3+"},
	{"GPL-3+ doc? ( FDL-1.2 )", "", false, "GPL-3+"},
	{"GPL-3+ doc? ( FDL-1.2 )", "doc", false, "GPL-3+ FDL-1.2"},
	{"!test? ( test )", "", false, "test"},
	{"!test? ( test )", "test", false, ""},
	{">=sys-libs/zlib-1.2.13:0/1= virtual/libc ssl? ( >=dev-libs/openssl-3.0.0:0/3= ) test? ( dev-util/cmocka ) !app-misc/sudo-legacy", "ssl", true, ">=sys-libs/zlib-1.2.13:0/1= virtual/libc >=dev-libs/openssl-3.0.0:0/3= !app-misc/sudo-legacy"},
	{">=dev-python/setuptools-69[python_targets_python3_12(-)?]", "python_targets_python3_12", true, ">=dev-python/setuptools-69[python_targets_python3_12(-)]"},
	{">=dev-python/setuptools-69[python_targets_python3_12(-)?]", "", true, ">=dev-python/setuptools-69"},
	{"python_targets_python3_12? ( dev-lang/python:3.12 ) python_targets_python3_13? ( dev-lang/python:3.13 )", "python_targets_python3_12", true, "dev-lang/python:3.12"},
	{"a/b[x=,!y=,z?,!w?,-v]", "x", true, "a/b[x,y,-w,-v]"},
	{"a/b:1::gentoo[x?]", "x", true, "a/b:1[x]"}, // Portage drops ::repo when evaluating
	{"a/b::gentoo[x]", "x", true, "a/b::gentoo[x]"},
	{"|| ( x? ( a/b ) )", "", true, "__const__/empty-any-of"},
	{"|| ( x? ( A ) )", "", false, "__const__/empty-any-of"},
	{"", "", false, ""},
	{"   A \t\n B  ", "", false, "A B"},
	{"( )", "", false, errUR},
	{"|| A", "", false, errUR},
	{"x? A", "", false, errUR},
	{"( A", "", false, errUR},
	{"A )", "", false, errUR},
	{"x?", "", false, errUR},
	{"!? ( A )", "", false, errUR},
	{"-x? ( A )", "", false, errUR},
	{"A -> B", "", false, errUR},
	{"foo", "", true, errUR},
	{"a/b-1.0", "", true, errUR},
	{"=a/b-1.0-01", "", true, errUR},
	{"a/b[x(+),x(-)]", "", true, errUR},
	{"a/b:0*", "", true, errUR},
}

func TestUseReduce(t *testing.T) {
	for _, c := range useReduceCases {
		use := map[string]bool{}
		for _, f := range strings.Fields(c.use) {
			use[f] = true
		}
		reduce := UseReduce
		if c.atoms {
			reduce = UseReduceAtoms
		}
		got, err := reduce(c.deps, use)
		if c.want == errUR {
			if err == nil {
				t.Errorf("reduce(%q, %q) = %q, want error", c.deps, c.use, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("reduce(%q, %q) = %q, %v; want %q", c.deps, c.use, got, err, c.want)
		}
	}
}
