package fs

import (
	"sort"
	"strconv"
	"strings"
	"testing"

	"pkgdirfs/catalog"
)

func inst(id int64, cat, pn, pf string, buildID, buildTime int64, format string) catalog.Instance {
	return catalog.Instance{ID: id, Category: cat, PN: pn, PF: pf, CPV: cat + "/" + pf,
		BuildID: buildID, BuildTime: buildTime, Format: format, Size: 100 * id, Blob: "b"}
}

// names lists every file path of a snapshot with the instance id it shows.
func names(s *snapshot) []string {
	var out []string
	for p, d := range s.dirs {
		for n, e := range d.children {
			if e.file != nil {
				full := n
				if p != "" {
					full = p + "/" + n
				}
				out = append(out, full+"="+strconv.FormatInt(e.file.id, 10))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestSnapshotLayouts(t *testing.T) {
	insts := []catalog.Instance{
		// hello: build 2 is newest by BUILD_TIME although build 3 has the higher id.
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
		inst(3, "app-misc", "hello", "hello-2.10", 3, 200, "xpak"),
		inst(4, "app-misc", "hello", "hello-2.10", 4, 50, "gpkg"),
		// equal BUILD_TIME: the higher BUILD_ID wins.
		inst(5, "dev-libs", "foo", "foo-1", 1, 10, "gpkg"),
		inst(6, "dev-libs", "foo", "foo-1", 2, 10, "gpkg"),
		// same PF in another category: All/ can show only one of them.
		inst(7, "dev-perl", "foo", "foo-1", 1, 10, "gpkg"),
	}
	s := buildSnapshot(1, 1000, insts, AllLayouts, newInoAllocator())
	want := []string{
		"All/foo-1.gpkg.tar=6",
		"All/hello-2.10.gpkg.tar=4",
		"All/hello-2.10.tbz2=2",
		"app-misc/hello-2.10.gpkg.tar=4",
		"app-misc/hello-2.10.tbz2=2",
		"app-misc/hello/hello-2.10-1.xpak=1",
		"app-misc/hello/hello-2.10-2.xpak=2",
		"app-misc/hello/hello-2.10-3.xpak=3",
		"app-misc/hello/hello-2.10-4.gpkg.tar=4",
		"dev-libs/foo-1.gpkg.tar=6",
		"dev-libs/foo/foo-1-1.gpkg.tar=5",
		"dev-libs/foo/foo-1-2.gpkg.tar=6",
		"dev-perl/foo-1.gpkg.tar=7",
		"dev-perl/foo/foo-1-1.gpkg.tar=7",
	}
	if got := names(s); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(s.conflicts) != 1 || !strings.Contains(s.conflicts[0], "dev-perl/foo-1") {
		t.Errorf("conflicts = %q, want one naming dev-perl/foo-1", s.conflicts)
	}
	if got := s.indexPath[1]; got != "app-misc/hello/hello-2.10-1.xpak" {
		t.Errorf("index path of 1 = %q", got)
	}
	if len(s.indexPath) != len(insts) {
		t.Errorf("index lists %d instances, want %d", len(s.indexPath), len(insts))
	}
	// One inode per instance, whatever the name.
	a := s.dirs["app-misc"].children["hello-2.10.tbz2"].file
	b := s.dirs["app-misc/hello"].children["hello-2.10-2.xpak"].file
	if a != b || a.ino() != uint64(2)+instInoBase {
		t.Errorf("flat and multi names of instance 2 differ: %p %p", a, b)
	}
	if s.dirs["app-misc"].subdirs() != 1 || s.root.subdirs() != 4 {
		t.Errorf("subdirs: app-misc %d (want 1), root %d (want 4: All + 3 categories)", s.dirs["app-misc"].subdirs(), s.root.subdirs())
	}
}

func TestSnapshotNarrowLayouts(t *testing.T) {
	insts := []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
	}
	flat := buildSnapshot(1, 0, insts, Layouts{Flat: true}, newInoAllocator())
	if got := strings.Join(names(flat), " "); got != "app-misc/hello-2.10.tbz2=2" {
		t.Errorf("flat tree = %s", got)
	}
	if len(flat.indexPath) != 1 || flat.indexPath[2] != "app-misc/hello-2.10.tbz2" {
		t.Errorf("flat index paths = %v, want only the visible newest", flat.indexPath)
	}
	multi := buildSnapshot(1, 0, insts, Layouts{Multi: true}, newInoAllocator())
	if _, ok := multi.dirs["All"]; ok {
		t.Error("multi-only tree has All/")
	}
	if len(multi.dirs["app-misc"].children) != 1 {
		t.Errorf("multi-only app-misc/ holds %d entries, want just hello/", len(multi.dirs["app-misc"].children))
	}
	legacy := buildSnapshot(1, 0, insts, Layouts{Legacy: true}, newInoAllocator())
	if got := strings.Join(names(legacy), " "); got != "All/hello-2.10.tbz2=2" {
		t.Errorf("legacy tree = %s", got)
	}
	for _, bad := range []string{"mult", "flat,nope", "all,x"} {
		if _, err := ParseLayouts(bad); err == nil {
			t.Errorf("ParseLayouts(%q) accepted", bad)
		}
	}
	if l, err := ParseLayouts("flat,legacy"); err != nil || l != (Layouts{Flat: true, Legacy: true}) {
		t.Errorf("ParseLayouts(flat,legacy) = %v, %v", l, err)
	}
}

func TestChangedNames(t *testing.T) {
	inos := newInoAllocator()
	old := buildSnapshot(1, 0, []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
	}, AllLayouts, inos)
	cur := buildSnapshot(2, 0, []catalog.Instance{
		inst(1, "app-misc", "hello", "hello-2.10", 1, 100, "xpak"),
		inst(2, "app-misc", "hello", "hello-2.10", 2, 300, "xpak"),
	}, AllLayouts, inos)
	var got []string
	for _, c := range changedNames(old, cur) {
		got = append(got, c[0]+"|"+c[1])
	}
	sort.Strings(got)
	want := "All|hello-2.10.tbz2 app-misc/hello|hello-2.10-2.xpak app-misc|hello-2.10.tbz2"
	if strings.Join(got, " ") != want {
		t.Errorf("changed = %q, want %q", strings.Join(got, " "), want)
	}
	if old.dirs["app-misc"].ino != cur.dirs["app-misc"].ino {
		t.Error("directory inode changed between generations")
	}
}
