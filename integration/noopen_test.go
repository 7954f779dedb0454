package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// noOpenEnv is the daemon's environment of a no-open follower (PKGDIRFS_NO_OPEN,
// docs/performance.md).
var noOpenEnv = []string{"PKGDIRFS_NO_OPEN=1"}

// TestFollowerNoOpen: a read-only follower in no-open mode (the kernel opens
// regular files without asking the daemon; reads come without a handle)
// serves the bytes a normal follower serves, at every name and in the
// index, before and after the writer adds a build and removes one; a name
// whose target changed shows the new bytes although the kernel keeps pages
// across opens.
func TestFollowerNoOpen(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	writer := mountFSInfo(t, state)
	normal := mountFSInfo(t, state, "--read-only")
	noOpen := mountFSInfoEnv(t, noOpenEnv, state, "--read-only")
	if !pollFor(5*time.Second, func() bool { return strings.Contains(readLog(noOpen.Log), "no-open mode") }) {
		t.Fatalf("the no-open follower's log does not say it runs in no-open mode:\n%s", readLog(noOpen.Log))
	}

	// A symlink to the newest build (by BUILD_TIME): the one removed below.
	flatName := "app-misc/hello-2.10.tbz2"
	removed := "app-misc/hello/hello-2.10-2.xpak"
	// Read twice: the second read of a file comes from the pages the
	// first left (FOPEN_KEEP_CACHE under no_open).
	for range 2 {
		sameTrees(t, normal.Dir, noOpen.Dir)
	}
	oldHello, err := os.ReadFile(filepath.Join(noOpen.Dir, flatName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(noOpen.Dir, removed)); err != nil {
		t.Fatal(err)
	}

	// A new build of tree and a removed one of hello (the flat name's
	// target changes).
	flat := extractFixture(t, "xpak-bzip2-flat")
	added := "app-text/tree-2.1.1.tbz2"
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, added), filepath.Join(writer.Dir, added)); r.Code != 0 {
		t.Fatal(r)
	}
	if err := os.Remove(filepath.Join(writer.Dir, removed)); err != nil {
		t.Fatal(err)
	}
	for _, fo := range []*mountInfo{normal, noOpen} {
		if !pollFor(10*time.Second, func() bool {
			want, err := os.ReadFile(filepath.Join(writer.Dir, "Packages"))
			if err != nil || bytes.Count(want, []byte("CPV: app-text/tree-2.1.1\n")) != 2 || bytes.Count(want, []byte("CPV: app-misc/hello-2.10\n")) != 1 {
				return false
			}
			got, err := os.ReadFile(filepath.Join(fo.Dir, "Packages"))
			return err == nil && bytes.Equal(maskStamp(got), maskStamp(want))
		}) {
			t.Fatalf("follower %s: Packages is not the writer's 10 s after its change", fo.Dir)
		}
	}
	newHello, err := os.ReadFile(filepath.Join(noOpen.Dir, flatName))
	if err != nil {
		t.Fatal(err)
	}
	if byWriter, _ := os.ReadFile(filepath.Join(writer.Dir, flatName)); !bytes.Equal(newHello, byWriter) {
		t.Errorf("no-open follower: %s after the new build: %d bytes, not the writer's %d", flatName, len(newHello), len(byWriter))
	}
	if bytes.Equal(newHello, oldHello) {
		t.Errorf("no-open follower: %s shows the removed build's bytes", flatName)
	}
	if _, err := os.Stat(filepath.Join(noOpen.Dir, removed)); !os.IsNotExist(err) {
		t.Errorf("no-open follower: the removed %s: %v, want ENOENT", removed, err)
	}
	sameTrees(t, normal.Dir, noOpen.Dir)
}

// sameTrees reads every name under a and b: the same names, the same
// symlink targets, the same bytes.
func sameTrees(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := treeDigest(t, a), treeDigest(t, b)
	for name, d := range ta {
		if tb[name] != d {
			t.Errorf("%s: %q under %s, %q under %s", name, d, a, tb[name], b)
		}
	}
	for name := range tb {
		if _, ok := ta[name]; !ok {
			t.Errorf("%s: under %s only", name, b)
		}
	}
	for _, idx := range []string{"Packages", "Packages.gz"} {
		if _, ok := ta[idx]; !ok {
			t.Errorf("no %s under %s", idx, a)
		}
	}
}

// maskStamp blanks an index's TIMESTAMP. A follower that reads a new
// generation before the writer has stored the TIMESTAMP it served renders
// its own, a second apart.
func maskStamp(idx []byte) []byte {
	return stampLine.ReplaceAll(idx, []byte("TIMESTAMP: -"))
}

var stampLine = regexp.MustCompile(`(?m)^TIMESTAMP: [0-9]+$`)

// treeDigest maps each name under root to what it shows: a directory, a
// symlink's target, or a regular file's SHA-1 and size (of an index, of
// its text with the TIMESTAMP masked).
func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			m[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if rel == "Packages.gz" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err != nil {
					return fmt.Errorf("%s: %v", p, err)
				}
				if b, err = io.ReadAll(zr); err != nil {
					return fmt.Errorf("%s: %v", p, err)
				}
			}
			if rel == "Packages" || rel == "Packages.gz" {
				b = maskStamp(b)
			}
			sum := sha1.Sum(b)
			m[rel] = fmt.Sprintf("%x %d", sum, len(b))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return m
}
