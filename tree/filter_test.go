package tree

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"pkgdirfs/catalog"
	"pkgdirfs/tree/pieces"
)

// newestX86 keeps the newest x86_64 build of each CPV (by build id): a
// filter that needs the whole group, as a query's --keep does.
func newestX86(group []catalog.Instance, header map[string]string) []catalog.Instance {
	if header == nil {
		panic("no header given to the filter")
	}
	for i := len(group) - 1; i >= 0; i-- {
		if group[i].Meta["CHOST"] == "x86_64-pc-linux-gnu" {
			return group[i : i+1]
		}
	}
	return nil
}

// TestViewIncrementalEqualsReload: a view of the catalog (a live channel)
// kept by Catchup equals a fresh load of the view, tree and index, after
// any changes; it shows exactly what its filter keeps of each CPV, no
// placeholder and no removed build; and its ContentGen moves exactly when
// what it shows changed.
func TestViewIncrementalEqualsReload(t *testing.T) {
	specs := map[string]ViewSpec{
		"every":  {},
		"newest": {Filter: newestX86},
		"scoped": {Filter: newestX86, Scopes: []catalog.Scope{{Category: "dev-libs"}, {Category: "app-misc", PN: "foo-bar"}, {Category: "dev-libs", PN: "foo"}}},
		"header": {Header: func(h map[string]string) map[string]string {
			out := map[string]string{"TTL": "60"}
			for k, v := range h {
				out[k] = v
			}
			return out
		}},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, 7, uint64(len(name)), 20)
			src := Filtered(w.db, spec)
			m, err := Load(ctx, src, AllLayouts)
			if err != nil {
				t.Fatal(err)
			}
			m.SetInoSpace(3)
			if err := m.BuildIndex(ctx, src, pieces.Options{ChunkEntries: 4}); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			moved := 0
			for round := range 40 {
				before, beforeIdx, content := files(m), indexOf(t, m), m.ContentGen()
				for n := w.rng.IntN(3); n >= 0; n-- {
					w.step()
				}
				if _, err := m.Catchup(ctx, src); err != nil {
					t.Fatal(err)
				}
				fresh, err := Load(ctx, src, AllLayouts)
				if err != nil {
					t.Fatal(err)
				}
				if err := fresh.BuildIndex(ctx, src, pieces.Options{}); err != nil {
					t.Fatal(err)
				}
				got, idx := files(m), indexOf(t, m)
				if want := files(fresh); !slices.Equal(got, want) {
					t.Fatalf("round %d: tree\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if want := indexOf(t, fresh); !bytes.Equal(idx, want) {
					t.Fatalf("round %d: index\n%s\nwant\n%s", round, idx, want)
				}
				fresh.Close()
				same := slices.Equal(before, got) && bytes.Equal(beforeIdx, idx)
				if same && m.ContentGen() != content {
					t.Fatalf("round %d: nothing shown changed, but ContentGen moved %d -> %d", round, content, m.ContentGen())
				}
				if !same && m.ContentGen() != m.Gen() {
					t.Fatalf("round %d: what the view shows changed, but ContentGen is %d, not the generation %d", round, m.ContentGen(), m.Gen())
				}
				if !same {
					moved++
				}
				checkView(t, w.db, m, spec)
			}
			if moved == 0 || moved == 40 {
				t.Errorf("what the view shows changed in %d of 40 rounds: the test tells nothing apart", moved)
			}
		})
	}
}

// checkView: the view shows, per CPV, exactly what its filter keeps of the
// catalog's packages.
func checkView(t *testing.T, db *catalog.DB, m *Model, spec ViewSpec) {
	t.Helper()
	insts, err := db.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	header, err := db.Header(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][]catalog.Instance{}
	for _, in := range insts {
		if in.Placeholder {
			continue
		}
		full, err := db.InstanceByID(context.Background(), in.ID)
		if err != nil {
			t.Fatal(err)
		}
		groups[in.CPV] = append(groups[in.CPV], *full)
	}
	inScope := func(in *catalog.Instance) bool {
		if spec.Scopes == nil {
			return true
		}
		for _, sc := range spec.Scopes {
			if sc.Category == in.Category && (sc.PN == "" || sc.PN == in.PN) {
				return true
			}
		}
		return false
	}
	var want []int64
	for _, g := range groups {
		slices.SortFunc(g, func(a, b catalog.Instance) int { return int(a.BuildID - b.BuildID) })
		if !inScope(&g[0]) {
			continue
		}
		kept := g
		if spec.Filter != nil {
			kept = spec.Filter(g, header)
		}
		for _, in := range kept {
			want = append(want, in.ID)
		}
	}
	var got []int64
	for cpv := range groups {
		for _, in := range groups[cpv] {
			if m.File(cpv, in.ID) != nil {
				got = append(got, in.ID)
			}
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("view shows instances %v, want %v", got, want)
	}
}

// TestSnapshotSource: a model of a snapshot shows its members as frozen,
// whatever the catalog does after, and never catches up.
func TestSnapshotSource(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3, 4, 25)
	info, err := w.db.CreateSnapshot(ctx, "s", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	src := SnapshotSource(w.db, *info, 7, nil)
	m, err := Load(ctx, src, AllLayouts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.BuildIndex(ctx, src, pieces.Options{}); err != nil {
		t.Fatal(err)
	}
	before, idx := files(m), indexOf(t, m)
	var members []int64
	if err := w.db.SnapshotMembers(ctx, "s", func(_ *catalog.SnapshotInfo, in *catalog.Instance) error {
		members = append(members, in.ID)
		if m.File(in.CPV, in.ID) == nil {
			t.Errorf("snapshot member %s build %d not shown", in.CPV, in.BuildID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(members) == 0 || m.Packages() != len(members) {
		t.Fatalf("model shows %d packages, snapshot holds %d", m.Packages(), len(members))
	}
	for range 20 {
		w.step()
	}
	if changed, err := m.Catchup(ctx, src); err != nil || changed {
		t.Fatalf("catchup of a snapshot: %v, %v; want nothing", changed, err)
	}
	if got := files(m); !slices.Equal(got, before) || !bytes.Equal(indexOf(t, m), idx) || m.Gen() != 7 {
		t.Fatalf("the snapshot's model changed with the catalog")
	}
	fresh, err := Load(ctx, src, AllLayouts)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got := files(fresh); !slices.Equal(got, before) {
		t.Fatalf("a load of the snapshot after the changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
}
