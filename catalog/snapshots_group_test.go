package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pkgdirfs/xpak"
)

// keepMatcher is what a query's --keep N is to CreateSnapshot: grouped, it
// takes the keep newest builds of each CPV (as prune decides), and records
// the groups it was given.
type keepMatcher struct {
	keep    int
	grouped bool
	scopes  []Scope
	groups  []string // "cpv:id,id" each
	matched int
}

func (m *keepMatcher) Scopes() []Scope { return m.scopes }
func (m *keepMatcher) Match(*Instance) bool {
	m.matched++
	return true
}
func (m *keepMatcher) Grouped() bool { return m.grouped }
func (m *keepMatcher) Filter(group []Instance) []Instance {
	var ids []string
	for _, in := range group {
		if in.Placeholder || in.Meta["BUILD_TIME"] == "" || in.CPV != group[0].CPV {
			ids = append(ids, "bad")
		}
		ids = append(ids, fmt.Sprint(in.BuildID))
	}
	m.groups = append(m.groups, group[0].CPV+":"+strings.Join(ids, ","))
	drop := SelectPrune(group, PrunePolicy{Keep: m.keep}, nil, nil)
	var out []Instance
	for _, in := range group {
		if !slices.ContainsFunc(drop, func(d Instance) bool { return d.ID == in.ID }) {
			out = append(out, in)
		}
	}
	return out
}

// TestSnapshotGrouped: CreateSnapshot hands a grouped matcher each CPV's
// builds once, whole, in build id order with their metadata (no
// placeholder), and freezes what it keeps: with keep 1, the newest build
// of each CPV; a matcher that is not grouped is asked per build.
func TestSnapshotGrouped(t *testing.T) {
	ctx := context.Background()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ing := func(cat, pf string, bt int64, use string) {
		t.Helper()
		b := makeXpak(t, cat, pf, bt, xpak.Entry{Key: "USE", Value: []byte(use + "\n")})
		if _, existed, err := ingestBytes(t, s, cat+"/"+pf+".tbz2", b, 0); err != nil || existed {
			t.Fatalf("ingest %s/%s: existed %v, %v", cat, pf, existed, err)
		}
	}
	// foo: the newest is build 2; bar: one BUILD_TIME, the higher build
	// id wins; baz: one build.
	ing("app-misc", "foo-1.0", 100, "")
	ing("app-misc", "foo-1.0", 300, "")
	ing("app-misc", "foo-1.0", 200, "")
	ing("dev-libs", "bar-1", 50, "")
	ing("dev-libs", "bar-1", 50, "ssl")
	ing("app-misc", "baz-2", 7, "")
	if _, err := s.Reserve(ctx, "dev-libs", "bar", "bar-1", "xpak", 5, 0o644, 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		m          *keepMatcher
		want       string
		wantGroups string
	}{
		{"keep1", &keepMatcher{keep: 1, grouped: true},
			"app-misc/baz-2-1:644 app-misc/foo-1.0-2:644 dev-libs/bar-1-2:644",
			"app-misc/baz-2:1 app-misc/foo-1.0:1,2,3 dev-libs/bar-1:1,2"},
		{"keep2", &keepMatcher{keep: 2, grouped: true},
			"app-misc/baz-2-1:644 app-misc/foo-1.0-2:644 app-misc/foo-1.0-3:644 dev-libs/bar-1-1:644 dev-libs/bar-1-2:644",
			"app-misc/baz-2:1 app-misc/foo-1.0:1,2,3 dev-libs/bar-1:1,2"},
		{"keep1-app-misc", &keepMatcher{keep: 1, grouped: true, scopes: []Scope{{Category: "app-misc"}}},
			"app-misc/baz-2-1:644 app-misc/foo-1.0-2:644",
			"app-misc/baz-2:1 app-misc/foo-1.0:1,2,3"},
		{"keep1-two-scopes", &keepMatcher{keep: 1, grouped: true, scopes: []Scope{{Category: "dev-libs", PN: "bar"}, {Category: "app-misc", PN: "foo"}}},
			"app-misc/foo-1.0-2:644 dev-libs/bar-1-2:644",
			"dev-libs/bar-1:1,2 app-misc/foo-1.0:1,2,3"},
		{"not-grouped", &keepMatcher{keep: 1},
			"app-misc/baz-2-1:644 app-misc/foo-1.0-1:644 app-misc/foo-1.0-2:644 app-misc/foo-1.0-3:644 dev-libs/bar-1-1:644 dev-libs/bar-1-2:644",
			""},
	} {
		info, err := s.DB.CreateSnapshot(ctx, c.name, "--keep 1", c.m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := members(t, s, c.name); got != c.want || info.Packages != int64(strings.Count(c.want, " ")+1) {
			t.Errorf("%s: snapshot holds %s (%d), want %s", c.name, got, info.Packages, c.want)
		}
		if got := strings.Join(c.m.groups, " "); got != c.wantGroups {
			t.Errorf("%s: Filter was given %s, want %s", c.name, got, c.wantGroups)
		}
		if c.m.grouped && c.m.matched != 0 || !c.m.grouped && c.m.matched != 6 {
			t.Errorf("%s: Match asked %d times", c.name, c.m.matched)
		}
	}

	// EachCPV stops at fn's error, and passes the stream's on.
	stop := errors.New("stop")
	n := 0
	err = EachCPV(func(each func(*Instance) error) error { return s.DB.ForEachInScopes(ctx, nil, each) },
		func([]Instance) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachCPV with fn failing: %v after %d groups", err, n)
	}
	err = EachCPV(func(each func(*Instance) error) error { return stop }, func([]Instance) error { n++; return nil })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachCPV with the stream failing: %v, fn called %d times", err, n-1)
	}
}
