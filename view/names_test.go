package view

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree"
)

// world is a catalog with hello-2.10 builds 1 (removed, in its grace) and
// 2 (a package), a placeholder at build 3, and a gpkg of curl; a scratch
// tree with a lock file, a file shadowing the xpak alias and a quarantined
// refusal; and the resolver over a model of layouts lay.
func world(t *testing.T, lay tree.Layouts) *Names {
	t.Helper()
	ctx := context.Background()
	s, err := catalog.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	pkg := func(cat, pn, pf string, build int64, format, blob string, placeholder bool) catalog.Instance {
		in := catalog.Instance{Category: cat, PN: pn, PF: pf, CPV: cat + "/" + pf, BuildID: build, BuildTime: build,
			Format: format, Mode: 0o644, Placeholder: placeholder}
		if !placeholder {
			in.Size, in.SHA256, in.Blob = 10*build, blob, blob[:2]+"/"+blob
		}
		return in
	}
	var first int64
	err = s.DB.Tx(ctx, func(tx *catalog.Tx) error {
		for i, in := range []catalog.Instance{
			pkg("app-misc", "hello", "hello-2.10", 1, "xpak", strings.Repeat("a", 64), false),
			pkg("app-misc", "hello", "hello-2.10", 2, "xpak", strings.Repeat("b", 64), false),
			pkg("app-misc", "hello", "hello-2.10", 3, "xpak", "", true),
			pkg("net-misc", "curl", "curl-8.9.1", 1, "gpkg", strings.Repeat("c", 64), false),
		} {
			id, err := tx.InsertInstance(&in)
			if err != nil {
				return err
			}
			if i == 0 {
				first = id
			}
		}
		_, err := tx.BumpGeneration()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, first, "app-misc/hello/hello-2.10-1.xpak", ""); err != nil {
		t.Fatal(err)
	}
	for rel, data := range map[string]string{
		"app-misc/.lock":                  "",
		"All/hello-2.10.tbz2":             "a plain file at the All/ alias",
		RefusedDir + "/app-misc/x-1.tbz2": "junk",
	} {
		p := filepath.Join(s.ScratchDir(), rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := tree.Load(ctx, s.DB, lay)
	if err != nil {
		t.Fatal(err)
	}
	return New(m, s.ScratchDir())
}

// TestResolve: every kind a name can be, in every layout set, with the
// precedence the mount's handlers rely on.
func TestResolve(t *testing.T) {
	type want struct {
		rel  string
		kind Kind
	}
	common := []want{
		{"Packages", Index},
		{"Packages.gz", Index},
		{"packages", None},
		{".pkgdirfs", Area},
		{RemovedDir, Area},
		{".pkgdirfs/other", None},
		{RefusedDir, Scratch},
		{RefusedDir + "/app-misc/x-1.tbz2", Scratch},
		{"app-misc", Dir},
		{"app-misc/.lock", Scratch},
		{"app-misc/nothing", None},
		{"net-misc", Dir},
		{"All/hello-2.10.tbz2", Scratch}, // a scratch file shadows the catalog
	}
	for _, c := range []struct {
		lay  tree.Layouts
		more []want
	}{
		{tree.AllLayouts, []want{
			{"app-misc/hello", Dir},
			{"app-misc/hello/hello-2.10-2.xpak", Instance},
			{"app-misc/hello/hello-2.10-3.xpak", Instance}, // the placeholder
			{"app-misc/hello/hello-2.10-1.xpak", None},     // removed
			{RemovedDir + "/app-misc/hello/hello-2.10-1.xpak", Removed},
			{RemovedDir + "/app-misc/hello", Area},
			{"app-misc/hello-2.10.tbz2", Alias},
			{"net-misc/curl-8.9.1.gpkg.tar", Alias},
			{"net-misc/curl/curl-8.9.1-1.gpkg.tar", Instance},
		}},
		{tree.Layouts{Flat: true}, []want{
			{"app-misc/hello", None},
			{"app-misc/hello-2.10.tbz2", Instance},
			{RemovedDir + "/app-misc/hello-2.10.tbz2", Removed},
			{"net-misc/curl-8.9.1.gpkg.tar", Instance},
		}},
		{tree.Layouts{Multi: true}, []want{
			{"app-misc/hello/hello-2.10-2.xpak", Instance},
			{"app-misc/hello-2.10.tbz2", None},
		}},
	} {
		n := world(t, c.lay)
		for _, w := range append(slices.Clone(common), c.more...) {
			a := n.Resolve(w.rel)
			if a.Kind != w.kind {
				t.Errorf("%s: %s is %s, want %s", c.lay, w.rel, a.Kind, w.kind)
				continue
			}
			switch a.Kind {
			case Instance, Alias, Removed:
				if a.Entry.File == nil || a.Entry.Ino == 0 {
					t.Errorf("%s: %s: %s without its file: %+v", c.lay, w.rel, a.Kind, a.Entry)
				}
			case Scratch:
				if a.Stat.Ino == 0 {
					t.Errorf("%s: %s: scratch without its stat", c.lay, w.rel)
				}
			}
			if got := n.Exists(w.rel); got != (w.kind != None) {
				t.Errorf("%s: Exists(%s) = %v", c.lay, w.rel, got)
			}
		}
		if a := n.Resolve("app-misc/hello/hello-2.10-3.xpak"); c.lay.Multi && !a.Entry.File.Placeholder {
			t.Errorf("%s: the placeholder's file is not one", c.lay)
		}
	}
}

// TestResolveState: the state of names no catalog row holds — hidden
// aliases, package files being written, an unlinked index.
func TestResolveState(t *testing.T) {
	n := world(t, tree.AllLayouts)
	const alias = "app-misc/hello-2.10.tbz2"
	n.Hide(alias)
	if a := n.Resolve(alias); a.Kind != None {
		t.Errorf("hidden alias resolves to %s", a.Kind)
	}
	if e, ok := n.Catalog(alias); !ok || !e.IsLink() {
		t.Errorf("Catalog ignores hiding: %+v %v", e, ok)
	}
	if ls, _ := n.List("app-misc"); slices.ContainsFunc(ls, func(l Listed) bool { return l.Name == "hello-2.10.tbz2" }) {
		t.Errorf("a hidden alias is listed: %+v", ls)
	}
	n.Unhide(alias)
	if a := n.Resolve(alias); a.Kind != Alias {
		t.Errorf("unhidden alias resolves to %s", a.Kind)
	}

	const writing = "app-misc/hello/hello-2.10-9.xpak"
	n.Mu.Lock()
	done := n.AddPending(writing)
	pending, exists := n.Pending(writing), n.Exists(writing)
	n.Mu.Unlock()
	if !pending || !exists || n.Resolve(writing).Kind != None {
		t.Errorf("a package being written: pending %v, exists %v, resolves to %s; want true, true, none", pending, exists, n.Resolve(writing).Kind)
	}
	done()
	n.Mu.Lock()
	exists = n.Exists(writing)
	n.Mu.Unlock()
	if exists {
		t.Error("the name still exists once its write ended")
	}

	n.SetIndexAbsent("Packages.gz", true)
	if n.Resolve("Packages.gz").Kind != None || n.Resolve("Packages").Kind != Index {
		t.Error("an unlinked Packages.gz is shown, or Packages went with it")
	}
	n.SetIndexAbsent("Packages.gz", false)
	if n.Resolve("Packages.gz").Kind != Index {
		t.Error("Packages.gz created again is not shown")
	}
}

// TestList: listings show what Resolve shows, no more.
func TestList(t *testing.T) {
	n := world(t, tree.AllLayouts)
	names := func(dir string) []string {
		ls, ok := n.List(dir)
		if !ok {
			return []string{"(none)"}
		}
		var out []string
		for _, l := range ls {
			kind := map[uint32]string{syscall.S_IFDIR: "/", syscall.S_IFLNK: "@", syscall.S_IFREG: ""}[l.Mode]
			out = append(out, l.Name+kind)
			if k := n.Resolve(join(dir, l.Name)).Kind; k == None {
				t.Errorf("%s lists %s, which resolves to nothing", dir, l.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	for dir, want := range map[string][]string{
		"":                             {"All/", "Packages", "Packages.gz", "app-misc/", "net-misc/"},
		"app-misc":                     {".lock", "hello-2.10.tbz2@", "hello/"},
		"app-misc/hello":               {"hello-2.10-2.xpak", "hello-2.10-3.xpak"},
		"All":                          {"curl-8.9.1.gpkg.tar@", "hello-2.10.tbz2"}, // a scratch file shadows the alias
		".pkgdirfs":                    {"channels/", "refused/", "removed/"},
		RemovedDir:                     {"app-misc/"},
		RemovedDir + "/app-misc/hello": {"hello-2.10-1.xpak"},
		RefusedDir + "/app-misc":       {"x-1.tbz2"},
		"nothing":                      {"(none)"},
		RemovedDir + "/nothing":        {"(none)"},
	} {
		if got := names(dir); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %v, want %v", dir, got, want)
		}
	}
}

// TestListAgreesWithResolve: under random changes of the state no catalog
// row holds (scratch files and directories, at package names too; hidden
// aliases; package files being written; an unlinked index), a listing
// shows exactly the names Resolve shows, with their types, in every
// directory: the two paths of the resolver never disagree.
func TestListAgreesWithResolve(t *testing.T) {
	for _, lay := range []tree.Layouts{tree.AllLayouts, {Flat: true}, {Multi: true, Legacy: true}} {
		n := world(t, lay)
		rng := rand.New(rand.NewPCG(7, uint64(len(lay.String()))))
		names := []string{
			"app-misc/hello-2.10.tbz2", "All/hello-2.10.tbz2", "net-misc/curl-8.9.1.gpkg.tar",
			"app-misc/hello/hello-2.10-2.xpak", "app-misc/hello/hello-2.10-5.xpak", "app-misc/.lock",
			"app-misc/new-dir", "net-misc/curl/x.partial", "Packages.gz", RefusedDir + "/app-misc/y-1.tbz2",
		}
		dirs := []string{"", "app-misc", "app-misc/hello", "All", "net-misc", "net-misc/curl", AreaDir, RemovedDir,
			RemovedDir + "/app-misc/hello", RefusedDir, RefusedDir + "/app-misc"}
		var pendingDone []func()
		for step := range 300 {
			rel := names[rng.IntN(len(names))]
			switch op := rng.IntN(7); op {
			case 0, 1: // a scratch file or directory appears or goes
				p := n.ScratchPath(rel)
				if _, err := os.Lstat(p); err == nil {
					os.RemoveAll(p)
					break
				}
				os.MkdirAll(filepath.Dir(p), 0o755)
				if strings.HasSuffix(rel, "-dir") {
					os.Mkdir(p, 0o755)
				} else {
					os.WriteFile(p, []byte("x"), 0o644)
				}
			case 2:
				n.Hide(rel)
			case 3:
				n.Unhide(rel)
			case 4:
				n.Mu.Lock()
				pendingDone = append(pendingDone, n.AddPending(rel))
				n.Mu.Unlock()
			case 5:
				if len(pendingDone) > 0 {
					pendingDone[0]()
					pendingDone = pendingDone[1:]
				}
			case 6:
				n.SetIndexAbsent("Packages.gz", rng.IntN(2) == 0)
			}
			for _, dir := range dirs {
				listed, ok := n.List(dir)
				if a := n.Resolve(dir); dir != "" && ok != a.IsDir() {
					t.Fatalf("%s step %d: %q lists %v but resolves to %s", lay, step, dir, ok, a.Kind)
				}
				seen := map[string]bool{}
				for _, l := range listed {
					seen[l.Name] = true
					a := n.Resolve(join(dir, l.Name))
					mode := map[Kind]uint32{Index: syscall.S_IFREG, Area: syscall.S_IFDIR, Removed: syscall.S_IFREG,
						Dir: syscall.S_IFDIR, Instance: syscall.S_IFREG, Alias: syscall.S_IFLNK}[a.Kind]
					if a.Kind == Scratch {
						mode = a.Stat.Mode & syscall.S_IFMT
					}
					if a.Kind == None || mode != l.Mode {
						t.Fatalf("%s step %d: %s lists %s (mode %o), which resolves to %s (mode %o)", lay, step, dir, l.Name, l.Mode, a.Kind, mode)
					}
				}
				for _, rel := range append(slices.Clone(names), "Packages", ".pkgdirfs") {
					d, base := tree.SplitPath(rel)
					if d != dir || seen[base] {
						continue
					}
					if a := n.Resolve(rel); a.Kind != None && rel != AreaDir { // .pkgdirfs is never listed
						t.Fatalf("%s step %d: %s resolves to %s but %q does not list it", lay, step, rel, a.Kind, dir)
					}
				}
			}
		}
	}
}
