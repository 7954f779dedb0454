package sqlite

import (
	"context"
	"database/sql"
	"maps"
	"math/rand/v2"
	"pkgdirfs/catalog"
	"strings"
	"testing"
)

func TestMetaCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		m := map[string]string{}
		for k := r.IntN(40); k > 0; k-- {
			m[strings.Repeat("K", 1+r.IntN(300))+string(rune('A'+r.IntN(26)))] = strings.Repeat("v\x00é", r.IntN(100))
		}
		b := encodeMeta(m)
		got, err := decodeMeta(b, map[string]string{})
		if err != nil || !maps.Equal(got, m) {
			t.Fatalf("case %d: decode(encode(m)) = %v, %v", i, got, err)
		}
		for k, v := range m {
			if got, ok, err := metaValue(b, k); err != nil || !ok || got != v {
				t.Fatalf("metaValue(%q) = %q %v %v, want %q", k, got, ok, err, v)
			}
		}
		if _, ok, err := metaValue(b, "absent"); ok || err != nil {
			t.Fatalf("metaValue(absent) = %v %v", ok, err)
		}
		// Every truncation is an error, never a panic or a wrong value.
		for cut := 1; cut < len(b) && cut < 50; cut++ {
			if got, err := decodeMeta(b[:len(b)-cut], nil); err == nil && maps.Equal(got, m) {
				t.Fatalf("decode of %d of %d bytes gave the whole", len(b)-cut, len(b))
			}
		}
	}
	if _, err := decodeMeta([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil); err == nil {
		t.Error("a length beyond the bytes decoded")
	}
}

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
