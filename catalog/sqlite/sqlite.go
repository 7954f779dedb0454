// Package sqlite is the catalog's embedded backend: one SQLite database in
// WAL mode in the state directory. It stores and finds rows and classifies
// SQLite's errors; the rules are package catalog's. Import it for its
// side effect: it registers itself as catalog.DefaultDriver.
package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"pkgdirfs/catalog"
)

// schemaVersion is the version schema.sql describes. A catalog with a
// higher version was written by a newer pkgdirfs and is refused.
const schemaVersion = 6

//go:embed schema.sql
var schemaSQL string

// DB is an open catalog database. It is safe for concurrent use.
type DB struct {
	path string
	// rw carries every write transaction. One connection: writers of this
	// process queue in database/sql (ctx-aware) instead of spinning in
	// SQLite's busy handler; other processes are handled by busy_timeout.
	rw *sql.DB
	// ro carries reads: deferred BEGIN (a plain snapshot under WAL, never
	// the write lock) and query_only as a guard.
	ro *sql.DB
	// readOnly: opened by OpenReadOnly; rw is nil.
	readOnly bool
}

var _ catalog.Backend = (*DB)(nil)

// busyTimeout is how long a statement waits for another process's lock.
const busyTimeout = 10 * time.Second

// Open opens the catalog database at path, creating the file and schema if
// missing. The parent directory must exist.
func Open(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	common := fmt.Sprintf("_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_busy_timeout=%d", busyTimeout.Milliseconds())
	rw, err := sql.Open("sqlite3", dsn(abs, "_txlock=immediate&"+common))
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s: %w", path, err)
	}
	rw.SetMaxOpenConns(1)
	rw.SetMaxIdleConns(1)
	rw.SetConnMaxIdleTime(0)
	rw.SetConnMaxLifetime(0)

	db := &DB{path: path, rw: rw}
	if err := db.init(); err != nil {
		err = classify(err)
		rw.Close()
		if errors.Is(err, catalog.ErrCorrupt) {
			return nil, fmt.Errorf("catalog: open %s: %w (restore it from a backup, or rebuild it from the state's blobs with `pkgdirfs import --rebuild --state %s`)",
				path, err, filepath.Dir(abs))
		}
		return nil, fmt.Errorf("catalog: open %s: %w", path, err)
	}

	ro, err := sql.Open("sqlite3", dsn(abs, "_txlock=deferred&_query_only=1&"+common))
	if err != nil {
		rw.Close()
		return nil, fmt.Errorf("catalog: open %s: %w", path, err)
	}
	ro.SetMaxIdleConns(4)
	db.ro = ro
	return db, nil
}

// OpenReadOnly opens the catalog database at path to read it only: no
// schema is applied, no file created or written, so a user with read
// access alone can query a state. (SQLite reads a WAL database without
// write access to its -shm file by keeping the index in its own memory.)
func OpenReadOnly(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	// The files a reader needs: say which one is out of reach, and why.
	for _, p := range catalogFiles(filepath.Dir(abs))[:2] {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) && p != abs {
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, fmt.Errorf("catalog: cannot read %s: permission denied (run as a user who may read the state %s, e.g. root or its owner, or give this one read access to it)", p, filepath.Dir(abs))
			}
			return nil, fmt.Errorf("catalog: %w", err)
		}
		f.Close()
	}
	params := fmt.Sprintf("mode=ro&_txlock=deferred&_query_only=1&_busy_timeout=%d", busyTimeout.Milliseconds())
	db, err := openRO(path, abs, params)
	if errors.Is(err, catalog.ErrReadOnly) {
		// No process has the catalog open (it has no -wal then), and this
		// user may not create the files SQLite shares between readers:
		// read the database file as it is. A writer that starts meanwhile
		// writes its -wal, not this file, until a checkpoint.
		if _, serr := os.Stat(abs + walSuffix); errors.Is(serr, os.ErrNotExist) {
			db, err = openRO(path, abs, params+"&immutable=1")
		}
	}
	if err != nil {
		if errors.Is(err, catalog.ErrCorrupt) {
			return nil, fmt.Errorf("catalog: open %s: %w (restore it from a backup, or rebuild it from the state's blobs with `pkgdirfs import --rebuild --state %s`)", path, err, filepath.Dir(abs))
		}
		return nil, fmt.Errorf("catalog: open %s: %w", path, err)
	}
	return db, nil
}

// openRO opens the read pool with params and checks the schema version.
func openRO(path, abs, params string) (*DB, error) {
	ro, err := sql.Open("sqlite3", dsn(abs, params))
	if err != nil {
		return nil, err
	}
	ro.SetMaxIdleConns(4)
	db := &DB{path: path, ro: ro, readOnly: true}
	var v int64
	err = ro.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows) || (err != nil && strings.Contains(err.Error(), "no such table")):
		err = fmt.Errorf("not a pkgdirfs catalog (no schema version): %w", catalog.ErrCorrupt)
	case err != nil:
		err = classify(err)
	case v > schemaVersion:
		err = fmt.Errorf("catalog schema version %d is newer than this pkgdirfs supports (%d)", v, schemaVersion)
	case v < schemaVersion:
		err = fmt.Errorf("catalog schema version %d is older than this pkgdirfs's (%d), and reading it may not change it: mount it (or run pkgdirfs index) once as a user who may write the state, to upgrade it", v, schemaVersion)
	}
	if err != nil {
		ro.Close()
		return nil, err
	}
	return db, nil
}

// dsn builds a SQLite URI; the path is escaped so '?', '#' and '%' in it
// are not taken as URI syntax (by SQLite or by go-sqlite3's option parser).
func dsn(abs, params string) string {
	u := url.URL{Path: abs}
	return "file:" + u.EscapedPath() + "?" + params
}

// init checks the schema version, then applies schema.sql, all in one write
// transaction so two processes opening a new file at once do not race.
func (db *DB) init() error {
	ctx := context.Background()
	var mode string
	if err := db.rw.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	return db.Write(ctx, func(w catalog.WriteTx) error {
		tx := w.(*wtx)
		var n int
		if err := tx.tx.QueryRowContext(tx.ctx,
			`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			var v int64
			err := tx.tx.QueryRowContext(tx.ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case v > schemaVersion:
				return fmt.Errorf("catalog schema version %d is newer than this pkgdirfs supports (%d)", v, schemaVersion)
			}
			// Version 1 lacks only the change log, which schema.sql adds.
		}
		if _, err := tx.tx.ExecContext(tx.ctx, schemaSQL); err != nil {
			return fmt.Errorf("apply schema: %w", err)
		}
		if err := convertInstanceMeta(tx); err != nil {
			return fmt.Errorf("converting the metadata of schema version 2: %w", err)
		}
		_, err := tx.tx.ExecContext(tx.ctx,
			`INSERT INTO meta (key, value) VALUES ('schema_version', ?)
			 ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value < excluded.value`, schemaVersion)
		return err
	})
}

// convertInstanceMeta moves the metadata of a version-2 catalog (a row per
// key in instance_meta) into instance_index (a row per instance), once.
func convertInstanceMeta(tx *wtx) error {
	var n int
	if err := tx.tx.QueryRowContext(tx.ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'instance_meta'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	rows, err := tx.tx.QueryContext(tx.ctx, `SELECT instance_id, key, value FROM instance_meta ORDER BY instance_id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	ins, err := tx.stmt(`INSERT OR REPLACE INTO instance_index (instance_id, meta) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	var (
		id   int64 = -1
		meta map[string]string
	)
	flush := func() error {
		if len(meta) == 0 {
			return nil
		}
		_, err := ins.ExecContext(tx.ctx, id, catalog.EncodeMeta(meta))
		return err
	}
	for rows.Next() {
		var rid int64
		var k, v string
		if err := rows.Scan(&rid, &k, &v); err != nil {
			return err
		}
		if rid != id {
			if err := flush(); err != nil {
				return err
			}
			id, meta = rid, make(map[string]string)
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	rows.Close()
	_, err = tx.tx.ExecContext(tx.ctx, `DROP TABLE instance_meta`)
	return err
}

// Close closes both connection pools.
func (db *DB) Close() error {
	var errs []error
	if db.ro != nil {
		errs = append(errs, db.ro.Close())
	}
	if db.rw != nil {
		errs = append(errs, db.rw.Close())
	}
	return errors.Join(errs...)
}

// Location is the database's path.
func (db *DB) Location() string { return db.path }

// wtx is one write transaction (BEGIN IMMEDIATE).
type wtx struct {
	snap
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

// Write runs fn once in a write transaction (BEGIN IMMEDIATE).
func (db *DB) Write(ctx context.Context, fn func(catalog.WriteTx) error) error {
	if db.readOnly {
		return fmt.Errorf("catalog %s: %w", db.path, catalog.ErrReadOnly)
	}
	return classify(db.tryTx(ctx, fn))
}

func (db *DB) tryTx(ctx context.Context, fn func(catalog.WriteTx) error) (err error) {
	stx, err := db.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: begin: %w", err)
	}
	tx := &wtx{tx: stx}
	// Reads in a write transaction go through statements it prepares once:
	// an ingest or an import batch asks the same few queries per package.
	tx.snap = snap{ctx: ctx, q: stmtQuerier{tx}}
	done := false
	defer func() {
		if !done {
			// fn panicked: release the write lock, keep panicking.
			stx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		done = true
		if rerr := stx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, rerr)
		}
		return err
	}
	done = true
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("catalog: commit: %w", err)
	}
	return nil
}

// stmt returns a statement prepared once per transaction; ingest inserts
// many meta rows with the same SQL.
func (tx *wtx) stmt(query string) (*sql.Stmt, error) {
	if s, ok := tx.stmts[query]; ok {
		return s, nil
	}
	s, err := tx.tx.PrepareContext(tx.ctx, query)
	if err != nil {
		return nil, err
	}
	if tx.stmts == nil {
		tx.stmts = make(map[string]*sql.Stmt)
	}
	tx.stmts[query] = s // closed by database/sql when the transaction ends
	return s, nil
}

// Read runs fn in one read transaction: a WAL snapshot.
func (db *DB) Read(ctx context.Context, fn func(catalog.Snapshot) error) error {
	stx, err := db.ro.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("catalog: begin read: %w", err))
	}
	defer stx.Rollback() // read-only: nothing to commit
	return classify(fn(snap{ctx: ctx, q: stx}))
}

// Bulk gives the write connection a larger page cache while an import
// runs: each package's identity queries land anywhere in the indexes, and
// SQLite's 2 MiB default rereads pages.
func (db *DB) Bulk(ctx context.Context) func() {
	if db.readOnly {
		return func() {}
	}
	var cache int64
	if db.rw.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache) != nil {
		return func() {}
	}
	if _, err := db.rw.ExecContext(ctx, "PRAGMA cache_size = -65536"); err != nil {
		return func() {}
	}
	return func() {
		db.rw.ExecContext(context.Background(), "PRAGMA cache_size = "+strconv.FormatInt(cache, 10))
	}
}

// Check runs SQLite's integrity and foreign-key checks and returns an error
// listing every problem found, nil if none.
func (db *DB) Check(ctx context.Context) error {
	var problems []string
	rows, err := db.ro.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("catalog: integrity_check: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("catalog: integrity_check: %w", err)
		}
		if s != "ok" {
			problems = append(problems, "integrity: "+s)
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("catalog: integrity_check: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: integrity_check: %w", err)
	}

	rows, err = db.ro.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("catalog: foreign_key_check: %w", err)
	}
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int64
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			rows.Close()
			return fmt.Errorf("catalog: foreign_key_check: %w", err)
		}
		// WITHOUT ROWID tables report a NULL rowid.
		problems = append(problems, fmt.Sprintf("foreign key: %s row %v references missing %s (fk %d)",
			table, nullStr(rowid), parent, fkid))
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fmt.Errorf("catalog: foreign_key_check: %w", err)
	}
	rows.Close()
	if len(problems) > 0 {
		return fmt.Errorf("catalog %s: %d problem(s):\n%s", db.path, len(problems), strings.Join(problems, "\n"))
	}
	return nil
}

func nullStr(n sql.NullInt64) string {
	if !n.Valid {
		return "?"
	}
	return fmt.Sprint(n.Int64)
}

// stmtQuerier runs a transaction's queries through statements it prepares
// once (Tx.stmt).
type stmtQuerier struct{ tx *wtx }

func (q stmtQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := q.tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (q stmtQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := q.tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (q stmtQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := q.tx.stmt(query)
	if err != nil {
		return q.tx.tx.QueryRowContext(ctx, query, args...) // carries the error
	}
	return st.QueryRowContext(ctx, args...)
}

// classify wraps a backend error with its class (ErrBusy, ErrFull, ...).
func classify(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	var class error
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		class = catalog.ErrBusy
	case sqlite3.ErrFull:
		class = catalog.ErrFull
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		class = catalog.ErrCorrupt
	case sqlite3.ErrConstraint:
		class = catalog.ErrConflict
	case sqlite3.ErrReadonly:
		class = catalog.ErrReadOnly
	default:
		return err
	}
	if errors.Is(err, class) {
		return err
	}
	return fmt.Errorf("%w: %w", class, err)
}

// Exec runs statements on the write connection, outside the catalog's
// rules: for tests that damage a catalog on purpose.
func (db *DB) Exec(ctx context.Context, query string) error {
	_, err := db.rw.ExecContext(ctx, query)
	return err
}
