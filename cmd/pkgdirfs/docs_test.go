package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocsCoverCommands: every command of the table, export among them,
// has its section in the man page, a line in the README's command list and
// its completions; the README stays short enough for users.
func TestDocsCoverCommands(t *testing.T) {
	man := readDoc(t, "contrib/man/pkgdirfs.8")
	readme := readDoc(t, "README.md")
	bash := readDoc(t, "contrib/completion/pkgdirfs.bash")
	zsh := readDoc(t, "contrib/completion/_pkgdirfs")
	if n := strings.Count(readme, "\n"); n > 250 {
		t.Errorf("README.md has %d lines, want at most 250 (the man page holds the reference)", n)
	}
	_, everyday, _ := strings.Cut(readme, "## Everyday commands")
	everyday, _, _ = strings.Cut(everyday, "\n## ")
	names := map[string]bool{}
	for _, c := range commands {
		names[c.name] = true
		if c.name == "watchdog" { // internal: started by mount
			continue
		}
		if !strings.Contains(man, `.SS "pkgdirfs `+c.name) {
			t.Errorf("the man page has no section for %s", c.name)
		}
		if !regexp.MustCompile(`\bpkgdirfs (\w+ \| )*` + c.name + `\b`).MatchString(everyday) {
			t.Errorf("README's Everyday commands do not list %s", c.name)
		}
		if !regexp.MustCompile(`commands="[^"]*\b` + c.name + `\b`).MatchString(bash) {
			t.Errorf("bash completion does not offer %s", c.name)
		}
		if !strings.Contains(zsh, "'"+c.name+":") {
			t.Errorf("zsh completion does not offer %s", c.name)
		}
	}
	if !names["export"] {
		t.Errorf("no export command")
	}
}

// TestDocsWayBack: README and man page say what import --link and umount
// mean for the user's space and builds, and how to leave with export.
func TestDocsWayBack(t *testing.T) {
	readme := readDoc(t, "README.md")
	_, back, ok := strings.Cut(readme, "\n## Unmounting, space and the way back\n")
	back, _, _ = strings.Cut(back, "\n## ")
	for _, want := range []string{"umount", "import time", "only in the state", "--link", "still held by other", "pkgdirfs export"} {
		if !ok || !strings.Contains(strings.Join(strings.Fields(back), " "), want) {
			t.Errorf("README's section on unmounting, space and the way back does not say %q", want)
		}
	}
	man := strings.Join(strings.Fields(readDoc(t, "contrib/man/pkgdirfs.8")), " ")
	for _, want := range []string{
		"after .B umount it shows what it held when it was imported",
		"frees it only when both names go",
		"still held by other hard links (imported originals or exports)",
	} {
		if !strings.Contains(man, want) {
			t.Errorf("the man page does not say %q", want)
		}
	}
}
