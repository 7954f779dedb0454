package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestListingFollowsChanges: the kernel keeps every directory listing of the
// mount (no OPENDIR is ever answered, so nothing re-reads a listing by
// itself). Every kind of change must reach the listings a client already
// holds: a copy and an unlink through the mount, an import and a prune by
// other processes on the mounted state, the end of a removed build's grace
// period; and a listing read while a change lands must not stay stale.
func TestListingFollowsChanges(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	mi := mountFSInfo(t, state, "--removed-grace", "2s")
	mnt := mi.Dir
	ls := func(rel string) []string {
		t.Helper()
		r := run(t, mnt, toolTimeout, "ls", "-1A", rel)
		if r.Code != 0 {
			t.Fatalf("%s", r)
		}
		return strings.Fields(string(r.Stdout))
	}
	// await lists rel with ls until ok holds; a listing the kernel kept
	// past the change never does (entries are kept for an hour).
	await := func(what, rel string, ok func([]string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			names := ls(rel)
			if ok(names) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: `ls -1A %s` still shows %v after 10 s", what, rel, names)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	has := func(name string) func([]string) bool {
		return func(n []string) bool { return slices.Contains(n, name) }
	}
	lacks := func(name string) func([]string) bool {
		return func(n []string) bool { return !slices.Contains(n, name) }
	}
	count := func(k int) func([]string) bool { return func(n []string) bool { return len(n) == k } }
	// Every listing once, so that the kernel holds them all.
	if r := run(t, mnt, toolTimeout, "ls", "-lRA", "."); r.Code != 0 {
		t.Fatalf("%s", r)
	}
	hello := "app-misc/hello"
	builds := ls(hello)
	if len(builds) != 2 {
		t.Fatalf("fixture: want 2 builds in %s, got %v", hello, builds)
	}
	pkg, err := os.ReadFile(filepath.Join(mnt, hello, builds[0]))
	if err != nil {
		t.Fatal(err)
	}

	// A new build of it each time (bytes already present are no new build).
	tarball, entries := splitXpak(t, pkg)
	entries = withEntry(entries, "BUILD_ID", nil)
	tmp := filepath.Join(t.TempDir(), "hello-2.10.tbz2")
	round := 0
	newBuild := func() {
		t.Helper()
		round++
		b := buildXpak(t, tarball, withEntry(entries, "PKGDIRFS_TEST", []byte(fmt.Sprintf("%d\n", round))))
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "", "cp", tmp, filepath.Join(mnt, "app-misc/hello-2.10.tbz2"))
	}

	// A copy through the mount: the new build shows in its package
	// directory, which the copy itself never touched.
	newBuild()
	await("after cp of a new build to the flat name", hello, has("hello-2.10-3.xpak"))

	// An unlink through the mount, in the listing's own directory, and its
	// place under the removed area until the grace period ends.
	mustRun(t, "", "rm", filepath.Join(mnt, hello, "hello-2.10-3.xpak"))
	await("after rm", hello, lacks("hello-2.10-3.xpak"))
	removed := ".pkgdirfs/removed/" + hello
	await("the removed build in its grace period", removed, has("hello-2.10-3.xpak"))
	await("the removed build after its grace period", ".pkgdirfs/removed", lacks("app-misc"))

	// Another process imports into the mounted state: new builds in
	// directories the kernel holds, new names in All/.
	all := ls("All")
	src := extractFixture(t, "xpak-gzip-flat")
	if r, _ := importDirs(t, state, src); r.Code != 0 {
		t.Fatalf("import into the mounted state: %s", r)
	}
	await("after an import by another process", "app-admin/sudo", func(n []string) bool { return len(n) > 3 })
	await("All/ after an import by another process", "All", func(n []string) bool { return len(n) >= len(all) })

	// Another process prunes: one build per CPV is left.
	if r := runCLI(t, "prune", "--state", state, "--keep", "1"); r.Code != 0 {
		t.Fatalf("prune --keep 1 on the mounted state: %s", r)
	}
	await("after prune --keep 1 by another process", "app-admin/sudo", count(1))
	await("after prune --keep 1 by another process", hello, count(1))

	// Listings read all the time while builds come and go in their
	// directory: once the writer stops, a listing shows what is there.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := os.ReadDir(filepath.Join(mnt, hello)); err != nil {
					t.Errorf("listing %s while builds change: %v", hello, err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 30; i++ {
		newBuild()
		if i%2 == 0 {
			names := ls(hello)
			mustRun(t, "", "rm", filepath.Join(mnt, hello, names[len(names)-1]))
		}
	}
	stop.Store(true)
	wg.Wait()
	want, err := os.ReadDir(filepath.Join(mnt, hello))
	if err != nil {
		t.Fatal(err)
	}
	// The catalog's own view, through a name nothing has looked up: each
	// build's multi-instance path is in Packages.
	var inIndex []string
	idx, _ := wReadIndex(t, mnt)
	for _, b := range idx.Blocks {
		if p, _ := get(b, "PATH"); strings.HasPrefix(p, hello+"/") {
			inIndex = append(inIndex, strings.TrimPrefix(p, hello+"/"))
		}
	}
	slices.Sort(inIndex)
	await("after 30 rounds of cp and rm under concurrent listings", hello, func(n []string) bool { return slices.Equal(n, inIndex) })
	t.Logf("%d concurrent listings during the rounds; %d builds at the end (%d entries)", reads.Load(), len(inIndex), len(want))
}
