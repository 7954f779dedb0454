package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The command line as a Gentoo admin meets it: GNU-style options, --help on
// stdout, usage errors in one line, and docs that list what --help lists.

var cliCommands = []string{"mount", "import", "index", "verify", "query", "prune", "snapshot", "channel", "stats", "status"}

// quotedRE is a single- or double-quoted word of a command line.
var quotedRE = regexp.MustCompile(`"[^"]*"|'[^']*'`)

// cliOption is one option of a command's --help.
type cliOption struct{ long, short string }

// optionLineRE is an option line of --help: "  -f, --foreground" or "      --state DIR".
var optionLineRE = regexp.MustCompile(`^  (?:-([a-zA-Z]), |    )--([a-z][a-z0-9-]*)\b`)

// helpOptions runs `pkgdirfs CMD --help` and returns its options (--help apart).
func helpOptions(t *testing.T, cmd string) (usage string, opts []cliOption) {
	t.Helper()
	r := runCLI(t, cmd, "--help")
	if r.Code != 0 || len(r.Stderr) != 0 {
		t.Fatalf("%s --help: want exit 0 and nothing on stderr: %s", cmd, r)
	}
	lines := strings.Split(string(r.Stdout), "\n")
	usage = lines[0]
	for _, l := range lines {
		if m := optionLineRE.FindStringSubmatch(l); m != nil && m[2] != "help" {
			opts = append(opts, cliOption{long: m[2], short: m[1]})
		}
	}
	if len(opts) == 0 {
		t.Fatalf("%s --help lists no options: %s", cmd, r)
	}
	return usage, opts
}

// TestCLIHelp: every command's --help (and -h) goes to stdout, exits 0 and
// lists GNU-style options (--name, -x), never Go's single-dash -name.
func TestCLIHelp(t *testing.T) {
	// Go's flag package printed "  -allow-other"; wrapped text is indented deeper.
	singleDashLong := regexp.MustCompile(`^  -[a-zA-Z][a-zA-Z0-9-]+`)
	for _, cmd := range append(slices.Clone(cliCommands), "watchdog") {
		for _, h := range []string{"--help", "-h"} {
			r := runCLI(t, cmd, h)
			out := string(r.Stdout)
			if r.Code != 0 || len(r.Stderr) != 0 || !strings.HasPrefix(out, "Usage: pkgdirfs "+cmd+" ") {
				t.Errorf("%s %s: want exit 0, the usage on stdout and nothing on stderr: %s", cmd, h, r)
				continue
			}
			n := 0
			for _, l := range strings.Split(out, "\n") {
				if singleDashLong.MatchString(l) {
					t.Errorf("%s %s: a single-dash long option: %q", cmd, h, l)
				}
				if optionLineRE.MatchString(l) {
					n++
				}
			}
			if n < 2 { // --help and --state at least
				t.Errorf("%s %s: %d option lines of the form `  -x, --name` or `      --name`:\n%s", cmd, h, n, out)
			}
		}
	}
	r := runCLI(t, "--help")
	if r.Code != 0 || len(r.Stderr) != 0 || !strings.Contains(string(r.Stdout), "[--allow-other]") {
		t.Errorf("pkgdirfs --help: want exit 0, the commands on stdout: %s", r)
	}
	// The flags are parsed as GNU's getopt_long does: after the operands,
	// --name=VALUE, and a short one.
	state := t.TempDir()
	if r := runCLI(t, "index", "--layouts=multi", "-h", "--state="+state); r.Code != 0 || !strings.Contains(string(r.Stdout), "--gz") {
		t.Errorf("index --layouts=multi -h --state=DIR: want the help: %s", r)
	}
}

// TestCLIUsageErrors: a usage error is one line on stderr naming the
// problem and where the options are, exit status 2; an old single-dash
// long option gets its two-dash spelling.
func TestCLIUsageErrors(t *testing.T) {
	mnt := t.TempDir()
	state := t.TempDir()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"mount", "--bogus", mnt}, []string{"unknown flag: --bogus", "'pkgdirfs mount --help'"}},
		{[]string{"mount", "-allow-other", mnt}, []string{"--allow-other", "'pkgdirfs mount --help'"}},
		{[]string{"import", "-state", state, mnt}, []string{"-state: long options take two dashes: --state"}},
		{[]string{"import", "--state", state}, []string{"need at least one SRC", "'pkgdirfs import --help'"}},
		{[]string{"mount", "--state", state}, []string{"need exactly one MOUNTPOINT", "'pkgdirfs mount --help'"}},
		{[]string{"prune", "--state", state, "--keep", "x"}, []string{`invalid argument "x" for "--keep"`}},
		{[]string{"index", "--state", state, "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"status", "--state", state, "a", "b"}, []string{"unexpected argument", "'pkgdirfs status --help'"}},
		{[]string{"stats", "--format"}, []string{"needs an argument: --format"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "'pkgdirfs --help'"}},
	} {
		r := runCLI(t, c.args...)
		msg := strings.TrimSuffix(string(r.Stderr), "\n")
		if r.Code != 2 || len(r.Stdout) != 0 || msg == "" || strings.Contains(msg, "\n") {
			t.Errorf("%v: want exit 2, no output and one line on stderr: %s", c.args, r)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: stderr lacks %q: %s", c.args, w, msg)
			}
		}
	}
}

// TestCLIQueryHint: a package name without its category is not an atom;
// the error says how to write it, and that spelling works.
func TestCLIQueryHint(t *testing.T) {
	_, state, _ := importedFixture(t, "xpak-gzip-flat")
	r := runCLI(t, "query", "--state", state, "hello")
	if r.Code != 2 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), "'*/hello'") {
		t.Errorf("query hello: want exit 2 and a hint naming '*/hello': %s", r)
	}
	r = runCLI(t, "query", "--state", state, "--format", "paths", "*/hello")
	if r.Code != 0 || !strings.Contains(string(r.Stdout), "app-misc/hello/hello-") {
		t.Errorf("query '*/hello': want app-misc/hello's builds: %s", r)
	}
	// A name with a category, or a version, gets no such hint.
	for _, atom := range []string{"app-misc/hello-2.10", "hello-2.10"} {
		if r := runCLI(t, "query", "--state", state, atom); r.Code != 2 || strings.Contains(string(r.Stderr), "*/") {
			t.Errorf("query %s: want exit 2 without a */ hint: %s", atom, r)
		}
	}
}

// manSections splits the man page into the text of each `.SS "pkgdirfs
// CMD ..."` section, and the SYNOPSIS chunk (up to .br) of each command.
func manSections(man string) (sections, synopsis map[string]string) {
	sections, synopsis = map[string]string{}, map[string]string{}
	cur := ""
	inSyn := false
	synCmd := ""
	for _, l := range strings.Split(man, "\n") {
		switch {
		case strings.HasPrefix(l, ".SH SYNOPSIS"):
			inSyn = true
			continue
		case strings.HasPrefix(l, ".SH "):
			inSyn, cur = false, ""
			continue
		case strings.HasPrefix(l, `.SS "pkgdirfs `):
			cur = strings.Fields(strings.TrimPrefix(l, `.SS "pkgdirfs `))[0]
			cur = strings.TrimSuffix(cur, `"`)
			continue
		case strings.HasPrefix(l, ".SS "):
			cur = ""
			continue
		}
		if inSyn {
			if l == ".br" {
				synCmd = ""
			} else if f := strings.Fields(l); len(f) >= 3 && f[0] == ".B" && f[1] == "pkgdirfs" {
				synCmd = f[2]
			}
			if synCmd != "" {
				synopsis[synCmd] += l + "\n"
			}
		}
		if cur != "" {
			sections[cur] += l + "\n"
		}
	}
	return sections, synopsis
}

// manFlags are the options named in roff text: \-\-name and \-x.
func manFlags(text string) (long, short map[string]bool) {
	long, short = map[string]bool{}, map[string]bool{}
	text = strings.ReplaceAll(text, `\-`, "-")
	for _, m := range regexp.MustCompile(`(^|[^-\w])--([a-z][a-z0-9-]*[a-z0-9])`).FindAllStringSubmatch(text, -1) {
		long[m[2]] = true
	}
	for _, m := range regexp.MustCompile(`(^|[^-\w])-([a-zA-Z])\b`).FindAllStringSubmatch(text, -1) {
		short[m[2]] = true
	}
	return long, short
}

// TestCLIDocsAgree: the man page (synopsis and options of each command),
// the bash and zsh completions, the usage line of --help and the README's
// and docs' command lines name exactly the options --help lists.
func TestCLIDocsAgree(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	man := read("contrib/man/pkgdirfs.8")
	bash := read("contrib/completion/pkgdirfs.bash")
	zsh := read("contrib/completion/_pkgdirfs")
	if strings.Contains(man, "one or two dashes") {
		t.Errorf("the man page still says options may be written with one dash")
	}
	sections, synopsis := manSections(man)
	all := map[string][]cliOption{}
	for _, cmd := range cliCommands {
		usage, opts := helpOptions(t, cmd)
		all[cmd] = opts
		isLong := map[string]bool{"help": true}
		isShort := map[string]bool{"h": true}
		for _, o := range opts {
			isLong[o.long] = true
			if o.short != "" {
				isShort[o.short] = true
			}
		}

		// --help's own usage line, and the man page's synopsis and option
		// list (the line after each .TP of the command's section).
		synLong, synShort := manFlags(synopsis[cmd])
		items := ""
		lines := strings.Split(sections[cmd], "\n")
		for i, l := range lines {
			if l == ".TP" && i+1 < len(lines) {
				items += lines[i+1] + "\n"
			}
		}
		itemLong, itemShort := manFlags(items)
		for _, o := range opts {
			if !mentions(usage, "--"+o.long) && (o.short == "" || !mentions(usage, "-"+o.short)) {
				t.Errorf("%s --help: the usage line lacks --%s: %s", cmd, o.long, usage)
			}
			if !synLong[o.long] && (o.short == "" || !synShort[o.short]) {
				t.Errorf("man page SYNOPSIS of %s lacks --%s", cmd, o.long)
			}
			if !itemLong[o.long] {
				t.Errorf("man page section `pkgdirfs %s` has no .TP item for --%s", cmd, o.long)
			}
			if o.short != "" && !itemShort[o.short] {
				t.Errorf("man page section `pkgdirfs %s` has no .TP item for -%s", cmd, o.short)
			}
		}
		for l := range itemLong {
			if !isLong[l] {
				t.Errorf("man page section `pkgdirfs %s` documents --%s, which %s --help does not list", cmd, l, cmd)
			}
		}
		for s := range itemShort {
			if !isShort[s] {
				t.Errorf("man page section `pkgdirfs %s` documents -%s, which %s --help does not list", cmd, s, cmd)
			}
		}
		for l := range synLong {
			if !isLong[l] {
				t.Errorf("man page SYNOPSIS of %s names --%s, which %s --help does not list", cmd, l, cmd)
			}
		}

		// bash: the opts of the command, exactly.
		m := regexp.MustCompile(`(?m)^\s+` + cmd + `\) opts="([^"]*)"`).FindStringSubmatch(bash)
		if m == nil {
			t.Errorf("bash completion: no opts for %s", cmd)
		} else {
			checkWords(t, "bash completion of "+cmd, strings.Fields(m[1]), opts)
		}

		// zsh: the _arguments block of the command.
		m = regexp.MustCompile(`(?s)\n        ` + cmd + `\)\n(.*?);;`).FindStringSubmatch(zsh)
		if m == nil {
			t.Errorf("zsh completion: no block for %s", cmd)
		} else {
			block := m[1]
			if strings.Contains(block, "$state_opt") {
				// The options every command with --state has, defined once.
				if m := regexp.MustCompile(`(?m)^local -a state_opt=\((.*)\)$`).FindStringSubmatch(zsh); m != nil {
					block += " " + m[1]
				}
			}
			if strings.Contains(block, "$help_opt") {
				block += " --help -h"
			}
			var words []string
			for _, w := range regexp.MustCompile(`(?:^|[^-\w])(--?[a-z][a-z0-9-]*)`).FindAllStringSubmatch(block, -1) {
				words = append(words, w[1])
			}
			checkWords(t, "zsh completion of "+cmd, words, opts)
		}
	}

	// The README's and docs' command lines name only real options: what
	// follows `pkgdirfs CMD` up to the end of the code span, a comment or
	// the next command of a pipeline or list.
	cmdRE := regexp.MustCompile(`pkgdirfs (` + strings.Join(cliCommands, "|") + `)\b`)
	optRE := regexp.MustCompile(`(?:^|[\s\[|])(--?[a-zA-Z][a-z0-9-]*)`)
	for _, doc := range []string{"README.md", "docs/binhost.md", "docs/semantics.md", "docs/architecture.md", "docs/performance.md"} {
		for i, line := range strings.Split(read(doc), "\n") {
			for _, m := range cmdRE.FindAllStringSubmatchIndex(line, -1) {
				cmd, tail := line[m[2]:m[3]], line[m[1]:]
				for _, end := range []string{"`", "#", " | ", ";", "&&", "pkgdirfs "} {
					tail, _, _ = strings.Cut(tail, end)
				}
				// A quoted word is a value (a query's own options).
				tail = quotedRE.ReplaceAllString(tail, "VALUE")
				for _, f := range optRE.FindAllStringSubmatch(tail, -1) {
					if !isOption(f[1], all[cmd]) {
						t.Errorf("%s:%d: `pkgdirfs %s` with %s, which %s --help does not list: %s", doc, i+1, cmd, f[1], cmd, line)
					}
				}
			}
		}
	}
}

// mentions tells whether text holds the option word, not as the start of a
// longer one (--log in --log-level).
func mentions(text, word string) bool {
	return regexp.MustCompile(regexp.QuoteMeta(word) + `([^-a-zA-Z0-9]|$)`).MatchString(text)
}

// isOption tells whether word is --long or -s of one of opts (or --help, -h).
func isOption(word string, opts []cliOption) bool {
	if word == "--help" || word == "-h" {
		return true
	}
	for _, o := range opts {
		if word == "--"+o.long || (o.short != "" && word == "-"+o.short) {
			return true
		}
	}
	return false
}

// checkWords: the words name every option (long and short form) and nothing else.
func checkWords(t *testing.T, what string, words []string, opts []cliOption) {
	t.Helper()
	has := map[string]bool{}
	for _, w := range words {
		has[w] = true
		if !isOption(w, opts) {
			t.Errorf("%s offers %s, which --help does not list", what, w)
		}
	}
	for _, o := range opts {
		if !has["--"+o.long] {
			t.Errorf("%s lacks --%s", what, o.long)
		}
		if o.short != "" && !has["-"+o.short] {
			t.Errorf("%s lacks -%s", what, o.short)
		}
	}
	if !has["--help"] {
		t.Errorf("%s lacks --help", what)
	}
}
