package query_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
	_ "pkgdirfs/catalog/postgres"
	"pkgdirfs/catalog/query"
	_ "pkgdirfs/catalog/sqlite"
	"pkgdirfs/internal/pgtest"
	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/xpak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// TestSnapshotQuery: a snapshot made with a query holds exactly the
// builds the query selects in the live catalog (on the backend
// PKGDIRFS_TEST_CATALOG names).
func TestSnapshotQuery(t *testing.T) {
	ctx := context.Background()
	loc := catalog.Location{State: t.TempDir()}
	if os.Getenv("PKGDIRFS_TEST_CATALOG") == "postgres" {
		loc.Catalog = pgtest.Shared(t).NewDB(t)
	}
	s, err := catalog.OpenStoreAt(loc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	day := int64(24 * 3600)
	for i, p := range []struct {
		cat, pf string
		age     int64 // days
		use     string
		kw      string
	}{
		{"app-misc", "hello-2.10", 40, "ssl nls", "amd64 arm64 ~ppc64 ~riscv x86"},
		{"app-misc", "hello-2.10", 10, "ssl X", "amd64 arm64 ~ppc64 ~riscv x86"},
		{"app-misc", "hello-2.9", 2, "", "~amd64 ~arm64 ~x86"},
		{"dev-lang", "python-3.12.4", 5, "ssl", "~amd64 ~arm64 ~x86"},
		{"dev-lang", "python-3.10.14", 50, "ssl X", "amd64 arm64 ~ppc64 ~riscv x86"},
		{"dev-libs", "glib-2.80.5", 1, "X", "amd64 arm64 ~ppc64 ~riscv x86"},
	} {
		b := pkgtest.Xpak(t, p.cat, p.pf, now.Unix()-p.age*day-int64(i),
			xpak.Entry{Key: "USE", Value: []byte(p.use + "\n")}, xpak.Entry{Key: "IUSE", Value: []byte("ssl X nls\n")},
			xpak.Entry{Key: "KEYWORDS", Value: []byte(p.kw + "\n")}, xpak.Entry{Key: "CHOST", Value: []byte("x86_64-pc-linux-gnu\n")})
		staged, err := s.Stage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Ingest(ctx, &catalog.Candidate{Staged: staged, Name: p.cat + "/" + p.pf + ".tbz2", MtimeNs: 1, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	key := func(in *catalog.Instance) string { return fmt.Sprintf("%s-%d", in.CPV, in.BuildID) }
	for i, c := range []struct{ q, want string }{
		{"", "app-misc/hello-2.10-1 app-misc/hello-2.10-2 app-misc/hello-2.9-1 dev-lang/python-3.10.14-1 dev-lang/python-3.12.4-1 dev-libs/glib-2.80.5-1"},
		{"'app-misc/*' '>=dev-lang/python-3.11'", "app-misc/hello-2.10-1 app-misc/hello-2.10-2 app-misc/hello-2.9-1 dev-lang/python-3.12.4-1"},
		{"--use ssl,-X", "app-misc/hello-2.10-1 dev-lang/python-3.12.4-1"},
		{"--use=X --newer-than 30d", "app-misc/hello-2.10-2 dev-libs/glib-2.80.5-1"},
		{"dev-lang/python --older-than \"30d\"", "dev-lang/python-3.10.14-1"},
		{"=app-misc/hello-2.10-2", "app-misc/hello-2.10-2"},
		{"sys-apps/*", ""},
		{"--keywords ~amd64", "app-misc/hello-2.9-1 dev-lang/python-3.12.4-1"},
		{"--arch ppc64 --chost 'x86_64-*-linux-gnu'", "app-misc/hello-2.10-1 app-misc/hello-2.10-2 dev-lang/python-3.10.14-1 dev-libs/glib-2.80.5-1"},
		{"--meta 'CHOST=*-musl'", ""},
		{"--keep 1", "app-misc/hello-2.10-2 app-misc/hello-2.9-1 dev-lang/python-3.10.14-1 dev-lang/python-3.12.4-1 dev-libs/glib-2.80.5-1"},
		{"'app-misc/*' --keep 1 --per-use", "app-misc/hello-2.10-1 app-misc/hello-2.10-2 app-misc/hello-2.9-1"},
		{"--keep 1 --use ssl,-X", "app-misc/hello-2.10-1 dev-lang/python-3.12.4-1"},
	} {
		sel, err := query.Parse(c.q, time.Now())
		if err != nil {
			t.Fatalf("%q: %v", c.q, err)
		}
		// What query selects in the live catalog, independently: per
		// build, or per CPV with --keep.
		var live []string
		err = catalog.EachCPV(func(each func(*catalog.Instance) error) error {
			return s.DB.ForEachInScopes(ctx, nil, each)
		}, func(g []catalog.Instance) error {
			if sel.Grouped() {
				for _, in := range sel.Filter(g) {
					live = append(live, key(&in))
				}
				return nil
			}
			for i := range g {
				if sel.Match(&g[i]) {
					live = append(live, key(&g[i]))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(live)
		name := fmt.Sprint("q", i)
		info, err := s.DB.CreateSnapshot(ctx, name, c.q, sel)
		if err != nil {
			t.Fatalf("%q: %v", c.q, err)
		}
		var got []string
		if err := s.DB.SnapshotMembers(ctx, name, func(_ *catalog.SnapshotInfo, in *catalog.Instance) error {
			got = append(got, key(in))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != c.want || !slices.Equal(got, live) || info.Packages != int64(len(got)) || info.Query != c.q {
			t.Errorf("snapshot of %q holds [%s] (%d, query %q), want [%s], query selects [%s]",
				c.q, strings.Join(got, " "), info.Packages, info.Query, c.want, strings.Join(live, " "))
		}
	}
}
