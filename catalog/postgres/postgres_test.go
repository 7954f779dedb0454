package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// TestOpenRefusals: each way a database is not a usable catalog is one
// clear error, and changes nothing in it.
func TestOpenRefusals(t *testing.T) {
	srv := pgtest.Shared(t)

	// An empty database: read-only is refused, a writable open makes the
	// schema, and a second host joins it as it is.
	u := srv.NewDB(t)
	if _, err := Open(u, true); err == nil || !strings.Contains(err.Error(), "no catalog in it") {
		t.Errorf("read-only open of an empty database: %v", err)
	}
	a, err := Open(u, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(u, false)
	if err != nil {
		t.Fatalf("second host joining: %v", err)
	}
	b.Close()
	if strings.Contains(a.Location(), "password") {
		t.Errorf("Location shows a password: %s", a.Location())
	}

	// A database of someone else's tables.
	other := srv.NewDB(t)
	srv.Exec(t, other, `CREATE TABLE accounts (id int)`)
	if _, err := Open(other, false); err == nil || !strings.Contains(err.Error(), "not ours") {
		t.Errorf("open of a database with other tables: %v", err)
	}
	// A table called meta that is not ours.
	meta := srv.NewDB(t)
	srv.Exec(t, meta, `CREATE TABLE meta (key text primary key, value bigint)`)
	if _, err := Open(meta, false); err == nil || !strings.Contains(err.Error(), "not ours") {
		t.Errorf("open of a database with a foreign meta table: %v", err)
	}
	// A catalog of a newer pkgdirfs.
	srv.Exec(t, u, `UPDATE meta SET value = 99 WHERE key = 'schema_version'`)
	if _, err := Open(u, false); err == nil || !strings.Contains(err.Error(), "newer than this pkgdirfs supports") {
		t.Errorf("open of a newer catalog: %v", err)
	}
	// A server nobody listens for: one line, within the connect wait.
	start := time.Now()
	_, err = Open("postgres:///x?host=/nonexistent&user=u&sslmode=disable", false)
	if err == nil || strings.Contains(err.Error(), "\n") || time.Since(start) > 3*connectWait {
		t.Errorf("open of an unreachable server: %v after %v", err, time.Since(start))
	}
	// A password in the URL never shows in an error.
	_, err = Open("postgres://me:s3cret@/x?host=/nonexistent&sslmode=disable", false)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
}

// TestReadOnlyAndUnavailable: a read-only open writes nothing; a stopped
// server is ErrUnavailable for writes and reads, and the same handle works
// again once it is back.
func TestReadOnlyAndUnavailable(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDB(t)
	w, err := Open(u, false)
	if err != nil {
		t.Fatal(err)
	}
	db := catalog.New(w)
	defer db.Close()
	ro, err := Open(u, true)
	if err != nil {
		t.Fatal(err)
	}
	rdb := catalog.New(ro)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Tx(ctx, func(tx *catalog.Tx) error { _, err := tx.BumpGeneration(); return err }); !errors.Is(err, catalog.ErrReadOnly) {
		t.Errorf("write through a read-only open: %v", err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	start := time.Now()
	err = db.Tx(ctx, func(tx *catalog.Tx) error { _, err := tx.BumpGeneration(); return err })
	if !errors.Is(err, catalog.ErrUnavailable) || time.Since(start) > 3*connectWait {
		t.Errorf("write with the server stopped: %v after %v; want ErrUnavailable, fast", err, time.Since(start))
	}
	if _, err := db.Generation(ctx); !errors.Is(err, catalog.ErrUnavailable) {
		t.Errorf("read with the server stopped: %v", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if err := db.Tx(ctx, func(tx *catalog.Tx) error { _, err := tx.BumpGeneration(); return err }); err != nil {
		t.Errorf("write once the server is back: %v", err)
	}
	if g, err := rdb.Generation(ctx); err != nil || g != 1 {
		t.Errorf("generation read once the server is back: %d, %v", g, err)
	}
}

// TestMigrateSessions: a catalog of schema version 4 (no sessions, no
// snapshots, no channels) is read as it is, and brought to the current version by the
// first writer that opens it, every migration in order.
func TestMigrateSessions(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDB(t)
	db, err := Open(u, false)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	srv.Exec(t, u, `DROP TABLE channels, sessions, snapshot_members, snapshots, held_instances; UPDATE meta SET value = 4 WHERE key = 'schema_version'`)
	version := func(db *DB) (v int64, sessions bool) {
		t.Helper()
		ctx := context.Background()
		if err := db.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if err := db.pool.QueryRow(ctx, `SELECT to_regclass('sessions') IS NOT NULL AND to_regclass('held_instances') IS NOT NULL AND to_regclass('channels') IS NOT NULL`).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
		return v, sessions
	}
	ro, err := Open(u, true)
	if err != nil {
		t.Fatalf("read-only open of a version 4 catalog: %v", err)
	}
	if v, s := version(ro); v != 4 || s {
		t.Errorf("a read-only open changed the catalog: version %d, sessions %v", v, s)
	}
	// It has no snapshots, and says so without failing.
	roDB := catalog.New(ro)
	if list, err := roDB.Snapshots(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("snapshots of a version 4 catalog: %v, %v", list, err)
	}
	if list, err := roDB.Channels(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("channels of a version 4 catalog: %v, %v", list, err)
	}
	if used, err := roDB.BlobInUse(context.Background(), "ab/abc"); err != nil || used {
		t.Errorf("BlobInUse on a version 4 catalog: %v, %v", used, err)
	}
	ro.Close()
	rw, err := Open(u, false)
	if err != nil {
		t.Fatalf("writable open of a version 4 catalog: %v", err)
	}
	defer rw.Close()
	if v, s := version(rw); v != schemaVersion || !s {
		t.Errorf("after a writable open: version %d, sessions %v; want %d, true", v, s, schemaVersion)
	}
}
