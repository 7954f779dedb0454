package sqlite

import (
	"context"
	"database/sql"
	"maps"
	"pkgdirfs/catalog"
	"testing"
)

// TestConvertsVersion2Meta: a catalog of schema version 2 (a row per key
// in instance_meta) opens with every instance's metadata unchanged, in
// instance_index, and the old table gone.
func TestConvertsVersion2Meta(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	a, b, c := pkg("a/b-1", 1), pkg("a/b-1", 2), pkg("x/y-2", 1)
	c.Meta = nil
	insert(t, db, a, b, c)
	db.Close()

	// Turn it back into version 2.
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE instance_meta (instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
		key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (instance_id, key)) WITHOUT ROWID`)
	for _, in := range []*catalog.Instance{a, b} {
		for k, v := range in.Meta {
			exec(`INSERT INTO instance_meta (instance_id, key, value) VALUES (?, ?, ?)`, in.ID, k, v)
		}
	}
	exec(`DROP TABLE instance_index`)
	exec(`UPDATE meta SET value = 2 WHERE key = 'schema_version'`)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db, err = openAt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, in := range []*catalog.Instance{a, b, c} {
		got, err := db.InstanceMeta(ctx, in.ID)
		want := in.Meta
		if want == nil {
			want = map[string]string{}
		}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("%s build %d after conversion: %v, %v; want %v", in.CPV, in.BuildID, got, err, want)
		}
	}
	var n int
	if err := db.ro.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'instance_meta'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("instance_meta still there (%d, %v)", n, err)
	}
	var v int
	if err := db.ro.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil || v != schemaVersion {
		t.Errorf("schema_version %d (%v), want %d", v, err, schemaVersion)
	}
	if err := db.Check(ctx); err != nil {
		t.Error(err)
	}
}
