package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkgdirfs/catalog"
)

// testDB is a catalog on this backend, with the backend's connections at
// hand for the checks only SQL can make.
type testDB struct {
	*catalog.DB
	ro, rw *sql.DB
}

func openAt(path string) (*testDB, error) {
	raw, err := Open(path)
	if err != nil {
		return nil, err
	}
	return &testDB{DB: catalog.New(raw), ro: raw.ro, rw: raw.rw}, nil
}

func openTest(t testing.TB) (*testDB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := openAt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// pkg builds a valid package instance for cpv ("cat/pf").
func pkg(cpv string, buildID int64) *catalog.Instance {
	cat, pf, _ := strings.Cut(cpv, "/")
	pn := pf
	if i := strings.LastIndexByte(pf, '-'); i > 0 {
		pn = pf[:i]
	}
	return &catalog.Instance{
		Category: cat, PN: pn, PF: pf, CPV: cpv, BuildID: buildID,
		BuildTime: 1700000000, Format: "xpak", Compression: "zstd",
		Size: 1234, MtimeNs: 1700000000123456789, Mode: 0o644,
		MD5: strings.Repeat("a", 32), SHA1: strings.Repeat("b", 40),
		SHA256: fmt.Sprintf("%064x", rand.Uint64()), Blob: fmt.Sprintf("b%d", rand.Uint64()),
		Meta: map[string]string{"SLOT": "0", "USE": "amd64"},
	}
}

func insert(t testing.TB, db *testDB, insts ...*catalog.Instance) {
	t.Helper()
	err := db.Tx(context.Background(), func(tx *catalog.Tx) error {
		for _, inst := range insts {
			if _, err := tx.InsertInstance(inst); err != nil {
				return err
			}
		}
		_, err := tx.BumpGeneration()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenReopen(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	insert(t, db, pkg("dev-lang/go-1.22", 1))
	db.Close()

	for range 2 { // schema applied again, data and version kept
		db2, err := openAt(path)
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := db2.ro.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != schemaVersion {
			t.Errorf("schema_version = %d", v)
		}
		if g, err := db2.Generation(ctx); err != nil || g != 1 {
			t.Errorf("generation = %d, %v", g, err)
		}
		if insts, err := db2.Instances(ctx); err != nil || len(insts) != 1 {
			t.Errorf("instances = %d, %v", len(insts), err)
		}
		var mode string
		if err := db2.ro.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v", mode, err)
		}
		var sync, fk int
		if err := db2.rw.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
			t.Errorf("synchronous = %d, %v", sync, err)
		}
		if err := db2.rw.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Errorf("foreign_keys = %d, %v", fk, err)
		}
		if err := db2.Check(ctx); err != nil {
			t.Error(err)
		}
		if db2.Path() != path {
			t.Errorf("Path = %q", db2.Path())
		}
		db2.Close()
	}
}

func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%d&e f")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := openAt(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	insert(t, db, pkg("a/b-1", 1))
	if _, err := os.Stat(filepath.Join(dir, "catalog.db")); err != nil {
		t.Fatalf("catalog not created where asked: %v", err)
	}
}

func TestNewerSchemaRejected(t *testing.T) {
	db, path := openTest(t)
	if _, err := db.rw.Exec(`UPDATE meta SET value = 99 WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := openAt(path)
	want := fmt.Sprintf("catalog schema version 99 is newer than this pkgdirfs supports (%d)", schemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open = %v, want %q", err, want)
	}
}

// TestQueryPlans guards the 1,000,000-instance design: every hot query is
// served by an index, with no full-table sort.
func TestQueryPlans(t *testing.T) {
	db, _ := openTest(t)
	insert(t, db, pkg("a/b-1", 1))
	if _, err := db.rw.Exec(`ANALYZE`); err != nil { // plans must hold with statistics too
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, query string
		args        []any
		want        []string
	}{
		{"Instances", qInstances, nil, []string{"USING INDEX instances_cpv_build"}},
		// Either cpv-ordered index serves the index scans (instances_tree
		// covers what IndexedMeta takes from instances).
		{"Indexed", qIndexed, nil, []string{"INDEX instances_"}},
		{"IndexedMeta", qIndexedMeta, nil, []string{"SCAN i USING COVERING INDEX instances_tree", "SEARCH x USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"Tree", qTree, nil, []string{"SCAN instances USING COVERING INDEX instances_tree"}},
		{"TreeBelow", qTreeBelow, []any{"m/"}, []string{"SEARCH instances USING COVERING INDEX instances_tree (cpv<?)"}},
		{"TreeFrom", qTreeFrom, []any{"m/"}, []string{"SEARCH instances USING COVERING INDEX instances_tree (cpv>?)"}},
		{"ByCPV", qByCPV, []any{"a/b-1"}, []string{"instances_cpv_build (cpv=?)"}},
		{"ByID", qByID, []any{1}, []string{"USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"ByDigest", qByDigest, []any{"a/b-1", "x"}, []string{"SEARCH"}},
		{"Meta", qMeta, []any{1}, []string{"USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"BuildIDTaken", qBuildIDTaken, []any{"a/b-1", 1}, []string{"instances_cpv_build (cpv=? AND build_id=?)"}},
		{"NextBuildID", qNextBuildID, []any{"a/b-1"}, []string{"instances_cpv_build (cpv=?)"}},
	} {
		plan := queryPlan(t, db, c.name, c.query, c.args...)
		all := strings.Join(plan, "; ")
		for _, w := range c.want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: plan %q lacks %q", c.name, all, w)
			}
		}
		for _, line := range plan {
			// A SCAN is fine only along an index (ordered walk, no sort).
			if strings.Contains(line, "TEMP B-TREE") ||
				strings.HasPrefix(line, "SCAN") && !strings.Contains(line, "INDEX") && line != "SCAN CONSTANT ROW" {
				t.Errorf("%s: plan %q has %q", c.name, all, line)
			}
		}
		t.Logf("%s: %s", c.name, all)
	}
}

func TestCheckReportsProblems(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	raw, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO instance_index (instance_id, meta) VALUES (999, x'')`); err != nil {
		t.Fatal(err)
	}
	err = db.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "foreign key: instance_index") {
		t.Errorf("Check = %v", err)
	}
}

func openState(dir string) (*testDB, error) { return openAt(catalogPath(dir)) }

// queryPlan is SQLite's EXPLAIN QUERY PLAN of query, a line a step.
func queryPlan(t *testing.T, db *testDB, name, query string, args ...any) []string {
	t.Helper()
	rows, err := db.ro.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return plan
}

// TestScopePlans: a query's scopes read along the (category, pn) index,
// not the whole table.
func TestScopePlans(t *testing.T) {
	db, _ := openTest(t)
	insert(t, db, pkg("a/b-1", 1), pkg("a/c-1", 1), pkg("d/e-1", 1))
	for _, q := range []struct {
		query string
		args  []any
	}{{qInCategory, []any{"a"}}, {qInPackage, []any{"a", "b"}}} {
		plan := queryPlan(t, db, q.query, q.query, q.args...)
		if all := strings.Join(plan, "; "); !strings.Contains(all, "SEARCH instances USING INDEX instances_category_pn") {
			t.Errorf("plan of %q: %s", q.query, all)
		}
	}
}

// TestUpgradeToSnapshots: a catalog of schema version 4 (no snapshots)
// is refused by a read-only open, saying to mount it once, and gets the
// snapshot tables at its next writable open.
func TestUpgradeToSnapshots(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	insert(t, db, pkg("dev-lang/go-1.22", 1))
	if _, err := db.rw.ExecContext(ctx, `DROP TABLE held_instances; DROP TABLE snapshot_members; DROP TABLE snapshots;
		UPDATE meta SET value = 4 WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), "mount it") {
		t.Errorf("read-only open of version 4: %v, want to be told to mount it once", err)
	}
	db2, err := openAt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var v, n int64
	db2.ro.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	db2.ro.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name IN ('snapshots', 'snapshot_members', 'held_instances')`).Scan(&n)
	if v != schemaVersion || n != 3 {
		t.Errorf("after a writable open: version %d, %d snapshot tables", v, n)
	}
	if _, err := db2.CreateSnapshot(ctx, "s", "", nil); err != nil {
		t.Error(err)
	}
}

// TestSnapshotPlans: holding a copy costs every removal and chmod an
// indexed look-up, never a scan; a snapshot's reads and its deletion walk
// its members, not the catalog.
func TestSnapshotPlans(t *testing.T) {
	db, _ := openTest(t)
	for i := range 20 {
		insert(t, db, pkg(fmt.Sprintf("a/b-%d", i+1), 1))
	}
	for i := range 10 {
		if _, err := db.CreateSnapshot(context.Background(), fmt.Sprint("s", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.rw.Exec(`ANALYZE`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, query string
		args        []any
		sortOK      bool // the members come sorted by (cpv, build id)
	}{
		{"Hold", qHold, []any{1}, false},
		{"MembersLive", qMembersLive, []any{1, 1}, false},
		{"MembersHeld", qMembersHeld, []any{1, 1}, true},
		{"ReleaseHeld", qReleaseHeld, []any{1}, false},
	} {
		plan := queryPlan(t, db, c.name, c.query, c.args...)
		for _, line := range plan {
			if strings.Contains(line, "TEMP B-TREE") && !c.sortOK ||
				strings.HasPrefix(line, "SCAN") && !strings.Contains(line, "INDEX") && !strings.HasPrefix(line, "SCAN (subquery") {
				t.Errorf("%s: plan %q has %q", c.name, strings.Join(plan, "; "), line)
			}
		}
		t.Logf("%s: %s", c.name, strings.Join(plan, "; "))
	}
}
