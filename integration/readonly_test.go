package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyCommandsAsUser: a user who may read a state, and no more,
// runs query, stats, status, verify, index and prune --dry-run on it —
// unmounted and mounted — with the answers root gets, and changes
// nothing in it. Without read access to the catalog, the error names the
// file and what to do.
func TestReadOnlyCommandsAsUser(t *testing.T) {
	nobody, dir, bin := asNobody(t)
	src := extractFixture(t, "xpak-bzip2-multi")
	state := filepath.Join(dir, "state")
	importOK(t, state, importSummary{len(readFixtureIndex(t, src).Blocks), 0, 0}, src)
	if err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	commands := [][]string{
		{"query", "--state", state, "*/*"},
		{"query", "--state", state, "--format", "json", "app-misc/*"},
		{"stats", "--state", state},
		{"status", "--state", state},
		{"verify", "--state", state},
		{"index", "--state", state},
		{"prune", "--state", state, "--keep", "1", "--dry-run"},
	}
	runAsNobody := func(args []string) cmdResult {
		return run(t, "", toolTimeout, "setpriv", append([]string{"--reuid=" + nobody.Uid, "--regid=" + nobody.Gid, "--clear-groups", bin}, args...)...)
	}
	check := func(when string) {
		t.Helper()
		var roots []cmdResult
		for _, args := range commands {
			root := runCLI(t, args...)
			if root.Code != 0 && (args[0] != "status" || root.Code != 3) { // 3: no daemon
				t.Fatalf("%s: as root: %s", when, root)
			}
			roots = append(roots, root)
		}
		before := treeSnapshot(t, state)
		for i, args := range commands {
			r := runAsNobody(args)
			if r.Code != roots[i].Code || len(r.Stderr) != 0 {
				t.Errorf("%s: as nobody: %s", when, r)
				continue
			}
			if args[0] == "status" || args[0] == "stats" {
				continue // they report times and sizes of the moment
			}
			if !bytes.Equal(r.Stdout, roots[i].Stdout) {
				t.Errorf("%s: %s as nobody answers otherwise than as root:\n%s", when, strings.Join(args, " "),
					firstDiff(strings.Split(string(roots[i].Stdout), "\n"), strings.Split(string(r.Stdout), "\n"), nil))
			}
		}
		if after := treeSnapshot(t, state); after != before {
			t.Errorf("%s: the read-only commands changed the state:\nbefore:\n%s\nafter:\n%s", when, before, after)
		}
	}
	check("unmounted")

	mi := mountFSInfo(t, state)
	// A package more, through the mount, and its index served.
	flat := extractFixture(t, "xpak-bzip2-flat")
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, "app-misc", "hello-2.10.tbz2"), filepath.Join(mi.Dir, "app-misc", "hello-2.10.tbz2")); r.Code != 0 {
		t.Fatal(r)
	}
	if _, err := os.ReadFile(filepath.Join(mi.Dir, "Packages")); err != nil {
		t.Fatal(err)
	}
	check("mounted")

	// No read access to the catalog: the file and the way out, in one line.
	db := catalogFile(state)
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	r := runAsNobody([]string{"query", "--state", state, "*/*"})
	msg := strings.TrimSpace(string(r.Stderr))
	if r.Code == 0 || strings.Contains(msg, "\n") || !strings.Contains(msg, db) || !strings.Contains(msg, "permission denied") ||
		!strings.Contains(msg, "read access") {
		t.Errorf("query as nobody without read access to the catalog: want one line naming %s and what to do: %s", db, r)
	}
}

// treeSnapshot lists every file under root with its size, mode and mtime,
// leaving out the live daemon's own files.
func treeSnapshot(t *testing.T, root string) string {
	t.Helper()
	var out strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, "staging") || strings.HasSuffix(rel, "-shm") || strings.HasSuffix(rel, "-wal") {
			return nil // the mount's own, moving while it serves
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&out, "%s %o %d %d\n", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}
