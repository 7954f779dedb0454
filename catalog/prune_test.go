package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

func TestPruneSelect(t *testing.T) {
	// b: an instance of cpv with a build id, a BUILD_TIME and a USE value.
	type b struct {
		cpv   string
		id    int64
		time  int64
		use   string
		place bool
	}
	mk := func(bs []b) ([]Instance, map[int64]string) {
		var out []Instance
		use := map[int64]string{}
		for i, x := range bs {
			in := *pkg(x.cpv, x.id)
			in.ID = int64(i + 1)
			in.BuildTime = x.time
			in.Placeholder = x.place
			use[in.ID] = x.use
			out = append(out, in)
		}
		return out, use
	}
	names := func(insts []Instance) string {
		var s []string
		for _, in := range insts {
			s = append(s, fmt.Sprintf("%s-%d", in.CPV, in.BuildID))
		}
		return strings.Join(s, " ")
	}
	hello := []b{
		{"app-misc/hello-2.10", 1, 100, "nls", false},
		{"app-misc/hello-2.10", 2, 300, "nls ssl", false},
		{"app-misc/hello-2.10", 3, 200, "ssl nls", false},
		{"app-misc/hello-2.10", 4, 300, "nls", false}, // same time as 2: the higher build id is newer
		{"app-misc/hello-2.10", 5, 0, "", true},       // a placeholder: never counted, never removed
		{"app-misc/hello-2.9", 1, 50, "", false},
		{"dev-libs/glib-2.80.5", 7, 10, "", false},
	}
	cases := []struct {
		name    string
		policy  PrunePolicy
		protect string // a CPV-build never removed
		want    string
	}{
		{"keep 1", PrunePolicy{Keep: 1}, "", "app-misc/hello-2.10-1 app-misc/hello-2.10-3 app-misc/hello-2.10-2"},
		{"keep 2", PrunePolicy{Keep: 2}, "", "app-misc/hello-2.10-1 app-misc/hello-2.10-3"},
		{"keep 4", PrunePolicy{Keep: 4}, "", ""},
		{"keep 1 per use", PrunePolicy{Keep: 1, PerUse: true}, "", "app-misc/hello-2.10-1 app-misc/hello-2.10-3"},
		{"keep 2 per use", PrunePolicy{Keep: 2, PerUse: true}, "", ""},
		{"keep 1 older than 250", PrunePolicy{Keep: 1, Before: 250}, "", "app-misc/hello-2.10-1 app-misc/hello-2.10-3"},
		{"older than 150 alone", PrunePolicy{Before: 150}, "", "app-misc/hello-2.10-1 app-misc/hello-2.9-1 dev-libs/glib-2.80.5-7"},
		{"keep 1, protected", PrunePolicy{Keep: 1}, "app-misc/hello-2.10-3", "app-misc/hello-2.10-1 app-misc/hello-2.10-2"},
		{"no rule", PrunePolicy{}, "", ""},
	}
	for _, c := range cases {
		insts, use := mk(hello)
		var protected func(*Instance) bool
		if c.protect != "" {
			protected = func(in *Instance) bool { return fmt.Sprintf("%s-%d", in.CPV, in.BuildID) == c.protect }
		}
		got := SelectPrune(insts, c.policy, func(in *Instance) string { return use[in.ID] }, protected)
		if names(got) != c.want {
			t.Errorf("%s: removes [%s], want [%s]", c.name, names(got), c.want)
		}
	}
	if UseSet(" ssl  nls ssl") != "nls ssl" {
		t.Errorf("UseSet: %q", UseSet(" ssl  nls ssl"))
	}
}

func TestPruneRemoveBatch(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []int64
	for i := int64(1); i <= 4; i++ {
		in := pkg("app-misc/foo-1", i)
		insert(t, s.DB, in)
		ids = append(ids, in.ID)
	}
	gen0, _ := s.DB.Generation(ctx)
	removed, _, err := s.RemoveBatch(ctx, []int64{ids[0], ids[2], 99999})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0].ID != ids[0] || removed[1].ID != ids[2] {
		t.Fatalf("removed %+v, want ids %d and %d", removed, ids[0], ids[2])
	}
	gen1, _ := s.DB.Generation(ctx)
	if gen1 != gen0+1 {
		t.Errorf("a batch is one transaction: generation %d -> %d", gen0, gen1)
	}
	left, _ := s.DB.Instances(ctx)
	if len(left) != 2 || left[0].BuildID != 2 || left[1].BuildID != 4 {
		t.Errorf("left %+v", left)
	}
	var changed []string
	err = s.DB.View(ctx, func(v *View) (err error) { changed, err = v.Changes(gen0); return })
	if err != nil || !slices.Equal(changed, []string{"app-misc/foo-1"}) {
		t.Errorf("change log after the batch: %v, %v", changed, err)
	}
	// The same bytes coming back get their build id again, as after an unlink.
	var id int64
	if err := s.DB.Tx(ctx, func(tx *Tx) (err error) { id, err = tx.SpentIDOf(removed[1].CPV, removed[1].SHA256); return }); err != nil || id != 3 {
		t.Errorf("spent_ids: %d, %v", id, err)
	}
	// Nothing left to remove: no transaction, no generation.
	if removed, _, err := s.RemoveBatch(ctx, []int64{ids[0]}); err != nil || len(removed) != 0 {
		t.Errorf("removing again: %v, %v", removed, err)
	}
	if g, _ := s.DB.Generation(ctx); g != gen1 {
		t.Errorf("an empty batch bumped the generation %d -> %d", gen1, g)
	}
}

// TestPruneKeepPolicyOnCommit: with a keep policy, the commit that adds a
// build removes the builds beyond the N newest of that CPV, in the same
// transaction, and their blobs go.
func TestPruneKeepPolicyOnCommit(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	s.SetKeepPolicy(PrunePolicy{Keep: 2})
	other, _, err := ingestBytes(t, s, "dev-libs/bar-1.tbz2", makeXpak(t, "dev-libs", "bar-1", 5), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Build times out of order: 3 arrives after 4 and is older.
	times := []int64{100, 200, 400, 300, 500, 50}
	var blobs []string
	for i, bt := range times {
		gen0, _ := s.DB.Generation(ctx)
		in, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", bt), 0)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, in.Blob)
		if g, _ := s.DB.Generation(ctx); g != gen0+1 {
			t.Errorf("build %d: generation %d -> %d, want one transaction", i, gen0, g)
		}
		insts, _ := s.DB.Instances(ctx)
		var got []int64
		for _, x := range insts {
			if x.CPV == "app-misc/foo-1.0" {
				got = append(got, x.BuildTime)
			}
		}
		slices.Sort(got)
		want := slices.Clone(times[:i+1])
		slices.Sort(want)
		want = want[max(0, len(want)-2):]
		if !slices.Equal(got, want) {
			t.Errorf("after build %d (time %d): build times %v, want the 2 newest %v", i, bt, got, want)
		}
	}
	insts, _ := s.DB.Instances(ctx)
	kept := map[string]bool{}
	for _, x := range insts {
		kept[x.Blob] = true
	}
	if !kept[other.Blob] {
		t.Errorf("another CPV's build was removed")
	}
	// The builds gone stay for their removal grace (clients holding the
	// index that listed them may still download them): their tombstones
	// keep their blobs. A build older than the 2 kept went in the
	// transaction that added it: never served, no tombstone, no blob.
	tombs, _ := s.DB.Tombstones(ctx)
	held := map[string]bool{}
	for _, x := range tombs {
		held[x.Blob] = true
	}
	if len(tombs) != 3 { // 100, 200, 300 were served, then pushed out
		t.Errorf("%d tombstones, want 3: %+v", len(tombs), tombs)
	}
	for i, b := range blobs {
		_, err := os.Stat(filepath.Join(s.BlobDir(), b))
		if want := kept[b] || held[b]; (err == nil) != want {
			t.Errorf("blob of build time %d: present %v, want %v (kept %v, tombstone %v)", times[i], err == nil, want, kept[b], held[b])
		}
	}
	// The policy off: builds accumulate again.
	s.SetKeepPolicy(PrunePolicy{})
	if _, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 10), 0); err != nil {
		t.Fatal(err)
	}
	if n, _, _, _ := s.DB.Stats(ctx); n != 4 {
		t.Errorf("without a policy: %d instances, want 4", n)
	}
}

func TestPruneKeepPolicyPerUse(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetKeepPolicy(PrunePolicy{Keep: 1, PerUse: true})
	add := func(bt int64, use string) {
		t.Helper()
		b := makeXpak(t, "app-misc", "foo-1.0", bt, xpak.Entry{Key: "USE", Value: []byte(use + "\n")})
		if _, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", b, 0); err != nil {
			t.Fatal(err)
		}
	}
	add(100, "ssl")
	add(200, "X")
	add(300, "ssl")   // replaces 100
	add(50, "X nls")  // a third set
	add(40, "nls  X") // the same set as 50, older: goes at once
	insts, _ := s.DB.Instances(ctx)
	var got []int64
	for _, x := range insts {
		got = append(got, x.BuildTime)
	}
	slices.Sort(got)
	if want := []int64{50, 200, 300}; !slices.Equal(got, want) {
		t.Errorf("per USE set: build times %v, want %v", got, want)
	}
}

func TestPruneKeepPolicySparesPlaceholders(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetKeepPolicy(PrunePolicy{Keep: 1})
	if _, err := s.Reserve(ctx, "app-misc", "foo", "foo-1.0", "xpak", 7, 0o644, 1); err != nil {
		t.Fatal(err)
	}
	for _, bt := range []int64{100, 200} {
		if _, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", bt), 0); err != nil {
			t.Fatal(err)
		}
	}
	insts, _ := s.DB.Instances(ctx)
	var ph, pk int
	for _, x := range insts {
		if x.Placeholder {
			ph++
		} else {
			pk++
			if x.BuildTime != 200 {
				t.Errorf("kept build time %d, want 200", x.BuildTime)
			}
		}
	}
	if ph != 1 || pk != 1 {
		t.Errorf("%d placeholders and %d packages, want 1 and 1", ph, pk)
	}
}

func TestQueryScopes(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for _, cpv := range []string{"app-misc/hello-2.10", "app-misc/hello-2.9", "app-misc/other-1", "dev-libs/glib-2.80", "dev-libs/glib-2.80"} {
		n, _ := db.Instances(ctx)
		insert(t, db, pkg(cpv, int64(len(n)+1)))
	}
	ph := pkg("app-misc/hello-2.10", 99)
	ph.Placeholder, ph.Size, ph.Meta = true, 0, nil
	insert(t, db, ph)
	collect := func(scopes ...Scope) string {
		var s []string
		err := db.ForEachInScopes(ctx, scopes, func(in *Instance) error {
			if in.Meta["SLOT"] != "0" {
				return errors.New("no meta")
			}
			s = append(s, fmt.Sprintf("%s-%d", in.CPV, in.BuildID))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(s)
		return strings.Join(s, " ")
	}
	all := "app-misc/hello-2.10-1 app-misc/hello-2.9-2 app-misc/other-1-3 dev-libs/glib-2.80-4 dev-libs/glib-2.80-5"
	for _, c := range []struct {
		scopes []Scope
		want   string
	}{
		{nil, all},
		{[]Scope{{}}, all},
		{[]Scope{{Category: "app-misc", PN: "hello"}}, "app-misc/hello-2.10-1 app-misc/hello-2.9-2"},
		{[]Scope{{Category: "dev-libs"}}, "dev-libs/glib-2.80-4 dev-libs/glib-2.80-5"},
		{[]Scope{{Category: "app-misc", PN: "hello"}, {Category: "app-misc"}, {Category: "app-misc", PN: "hello"}}, "app-misc/hello-2.10-1 app-misc/hello-2.9-2 app-misc/other-1-3"},
		{[]Scope{{Category: "nope"}}, ""},
	} {
		if got := collect(c.scopes...); got != c.want {
			t.Errorf("scopes %v: [%s], want [%s]", c.scopes, got, c.want)
		}
	}
}

func TestStatsSummary(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := func(cpv string, id, size, bt int64) {
		in := pkg(cpv, id)
		in.Size, in.BuildTime = size, bt
		insert(t, s.DB, in)
	}
	add("app-misc/hello-2.10", 1, 100, 50)
	add("app-misc/hello-2.10", 2, 100, 70)
	add("app-misc/hello-2.10", 3, 100, 70)
	add("dev-libs/glib-2.80", 1, 1000, 60)
	add("dev-libs/glib-2.80", 2, 10, 0) // no BUILD_TIME: neither oldest nor newest
	add("sys-apps/a-1", 1, 5, 80)
	ph := pkg("sys-apps/a-1", 9)
	ph.Placeholder, ph.Size, ph.Meta = true, 0, nil
	insert(t, s.DB, ph)
	if err := s.Refuse(ctx, "x/y.tbz2", "bad", 3); err != nil {
		t.Fatal(err)
	}
	sum, err := s.DB.Summary(ctx, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%d %d %d %d %d %v %v", sum.Instances, sum.Placeholders, sum.CPVs, sum.Bytes, sum.Refused, sum.Categories, sum.MostBuilds)
	want := "6 1 3 1315 1 [{dev-libs 2 1010} {app-misc 3 300}] [{app-misc/hello-2.10 3 300} {dev-libs/glib-2.80 2 1010}]"
	if got != want {
		t.Errorf("summary %s, want %s", got, want)
	}
	if sum.Oldest == nil || sum.Oldest.CPV != "app-misc/hello-2.10" || sum.Oldest.BuildID != 1 {
		t.Errorf("oldest %+v", sum.Oldest)
	}
	if sum.Newest == nil || sum.Newest.CPV != "sys-apps/a-1" {
		t.Errorf("newest %+v", sum.Newest)
	}
	os.MkdirAll(filepath.Join(s.BlobDir(), "ab"), 0o755)
	os.WriteFile(filepath.Join(s.BlobDir(), "ab", "abc"), make([]byte, 77), 0o644)
	if files, bytes, err := s.BlobUsage(); err != nil || files != 1 || bytes != 77 {
		t.Errorf("BlobUsage = %d, %d, %v", files, bytes, err)
	}
}

// TestRemoveBatchSparesHeld: a prune batch leaves the builds a snapshot
// holds, also one made after the builds were chosen, and names the
// snapshots.
func TestRemoveBatchSparesHeld(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := pkg("app-misc/foo-1", 1), pkg("app-misc/foo-1", 2)
	insert(t, s.DB, a)
	if _, err := s.DB.CreateSnapshot(ctx, "s1", "", nil); err != nil {
		t.Fatal(err)
	}
	insert(t, s.DB, b)
	removed, held, err := s.RemoveBatch(ctx, []int64{a.ID, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ID != b.ID || fmt.Sprint(held[a.ID]) != "[s1]" || len(held[b.ID]) != 0 {
		t.Errorf("removed %v, held %v; want b removed, a held by s1", removed, held)
	}
}
