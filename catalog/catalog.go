// Package catalog is the SQLite store behind pkgdirfs: package instances,
// their index metadata, the Packages header, refused files and the
// generation counter. It knows nothing of FUSE.
//
// All writes go through DB.Tx (one BEGIN IMMEDIATE transaction, retried on
// SQLITE_BUSY); consistent multi-query reads go through DB.View.
package catalog

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// schemaVersion is the version schema.sql describes. A catalog with a
// higher version was written by a newer pkgdirfs and is refused.
const schemaVersion = 4

//go:embed schema.sql
var schemaSQL string

var (
	// ErrNotFound: no row matched.
	ErrNotFound = errors.New("not found")
	// ErrBuildIDTaken: UNIQUE(cpv, build_id) would be violated.
	ErrBuildIDTaken = errors.New("build id already taken")
)

// Tx retry policy on SQLITE_BUSY/LOCKED. busy_timeout already waits up to
// 10 s inside SQLite, so few retries are needed.
// Variables so tests can shorten them.
var (
	txMaxAttempts  = 8
	txFirstBackoff = 10 * time.Millisecond
	txMaxBackoff   = time.Second
)

// DB is an open catalog. It is safe for concurrent use.
type DB struct {
	path string
	// rw carries every write transaction. One connection: writers of this
	// process queue in database/sql (ctx-aware) instead of spinning in
	// SQLite's busy handler; other processes are handled by busy_timeout.
	rw *sql.DB
	// ro carries reads: deferred BEGIN (a plain snapshot under WAL, never
	// the write lock) and query_only as a guard.
	ro *sql.DB
	// keep is the on-the-fly prune policy every committing transaction
	// applies (Store.SetKeepPolicy); nil: none.
	keep atomic.Pointer[keepHook]
}

// busyTimeout is how long a statement waits for another process's lock.
const busyTimeout = 10 * time.Second

// Open opens the catalog at path, creating the file and schema if missing.
// The parent directory must exist.
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
		rw.Close()
		var se sqlite3.Error
		if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
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
	return db.Tx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.tx.QueryRowContext(ctx,
			`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			var v int64
			err := tx.tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case v > schemaVersion:
				return fmt.Errorf("catalog schema version %d is newer than this pkgdirfs supports (%d)", v, schemaVersion)
			}
			// Version 1 lacks only the change log, which schema.sql adds.
		}
		if _, err := tx.tx.ExecContext(ctx, schemaSQL); err != nil {
			return fmt.Errorf("apply schema: %w", err)
		}
		if err := convertInstanceMeta(tx); err != nil {
			return fmt.Errorf("converting the metadata of schema version 2: %w", err)
		}
		_, err := tx.tx.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES ('schema_version', ?)
			 ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value < excluded.value`, schemaVersion)
		return err
	})
}

// convertInstanceMeta moves the metadata of a version-2 catalog (a row per
// key in instance_meta) into instance_index (a row per instance), once.
func convertInstanceMeta(tx *Tx) error {
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
		_, err := ins.ExecContext(tx.ctx, id, encodeMeta(meta))
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
	errs = append(errs, db.rw.Close())
	return errors.Join(errs...)
}

// Path returns the path Open was given.
func (db *DB) Path() string { return db.path }

// Tx is one write transaction. It also offers every read of View, seeing
// the transaction's own writes.
type Tx struct {
	reader
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	// touched: CPVs (and HeaderChange) this transaction changed, for the
	// change log commitChange writes.
	touched map[string]struct{}
	// inserted: instances this transaction added; one it removes again
	// was never served, and needs no removal grace.
	inserted map[int64]bool
	db       *DB
	// afterCommit runs once the transaction has committed (dropping the
	// blobs of instances it removed).
	afterCommit []func()
	// beforeCommit runs after fn, before COMMIT; an error rolls back
	// (waiting for a blob's bytes to be durable: a row never names bytes a
	// power cut could take).
	beforeCommit []func() error
}

// Tx runs fn in one write transaction (BEGIN IMMEDIATE): commit if fn
// returns nil, roll back otherwise. On SQLITE_BUSY/LOCKED the whole fn is
// run again (bounded, with backoff), so fn must be re-runnable and must not
// leak effects outside the transaction before it commits. fn must not call
// db.Tx itself (the write connection is held: it would deadlock).
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	backoff := txFirstBackoff
	for attempt := 1; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || !isBusy(err) || attempt == txMaxAttempts {
			return classify(err)
		}
		// Jitter so competing processes do not retry in lockstep.
		d := backoff/2 + rand.N(backoff)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, txMaxBackoff)
	}
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	return db.tryTxOn(ctx, db.rw, fn)
}

// txBeginner is the pool, or one connection of it.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// TxWithin is Tx run once, waiting at most wait for another process's
// write lock (the catalog's own busy timeout is 10 s): for writes a reader
// would otherwise wait on.
func (db *DB) TxWithin(ctx context.Context, wait time.Duration, fn func(tx *Tx) error) error {
	conn, err := db.rw.Conn(ctx)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", wait.Milliseconds())); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
	return classify(db.tryTxOn(ctx, conn, fn))
}

func (db *DB) tryTxOn(ctx context.Context, b txBeginner, fn func(tx *Tx) error) (err error) {
	stx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: begin: %w", err)
	}
	tx := &Tx{tx: stx, db: db}
	// Reads in a write transaction go through statements it prepares once:
	// an ingest or an import batch asks the same few queries per package.
	tx.reader = reader{ctx: ctx, q: stmtQuerier{tx}}
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
	for _, f := range tx.beforeCommit {
		if err := f(); err != nil {
			done = true
			if rerr := stx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
				return errors.Join(err, rerr)
			}
			return err
		}
	}
	done = true
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("catalog: commit: %w", err)
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}

// stmt returns a statement prepared once per transaction; ingest inserts
// many meta rows with the same SQL.
func (tx *Tx) stmt(query string) (*sql.Stmt, error) {
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

func isBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

// View is a read-only snapshot: every query in it sees the same committed
// state (WAL read transaction).
type View struct {
	reader
}

// View runs fn in one read transaction. Use it when several reads must
// agree, e.g. Instances and Generation for one tree snapshot.
func (db *DB) View(ctx context.Context, fn func(v *View) error) error {
	stx, err := db.ro.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: begin read: %w", err)
	}
	defer stx.Rollback() // read-only: nothing to commit
	return fn(&View{reader{ctx: ctx, q: stx}})
}

// single-query reads need no explicit transaction.
func (db *DB) r(ctx context.Context) reader { return reader{ctx: ctx, q: db.ro} }

// Generation returns the committed generation counter.
func (db *DB) Generation(ctx context.Context) (int64, error) { return db.r(ctx).Generation() }

// Header returns the stored Packages header keys.
func (db *DB) Header(ctx context.Context) (map[string]string, error) { return db.r(ctx).Header() }

// LastTimestamp returns the last TIMESTAMP handed out by NextTimestamp.
func (db *DB) LastTimestamp(ctx context.Context) (int64, error) { return db.r(ctx).LastTimestamp() }

// Instances returns every instance (placeholders included) without Meta,
// ordered by cpv in byte order, then build_id.
func (db *DB) Instances(ctx context.Context) ([]Instance, error) { return db.r(ctx).Instances() }

// ForEachIndexed streams package instances (no placeholders) with Meta,
// ordered by cpv in byte order, then build_id, from one snapshot.
func (db *DB) ForEachIndexed(ctx context.Context, fn func(inst *Instance) error) error {
	return db.View(ctx, func(v *View) error { return v.ForEachIndexed(fn) })
}

// InstanceMeta returns the index values of one instance (empty map if none).
func (db *DB) InstanceMeta(ctx context.Context, id int64) (map[string]string, error) {
	return db.r(ctx).InstanceMeta(id)
}

// Refused lists the files refused at ingest, oldest first.
func (db *DB) Refused(ctx context.Context) ([]Refused, error) { return db.r(ctx).Refused() }

// Stats counts package instances, placeholders and package bytes.
func (db *DB) Stats(ctx context.Context) (instances, placeholders int64, bytes int64, err error) {
	return db.r(ctx).Stats()
}

// Empty tells whether the catalog lists no instance at all (placeholders
// included) and no removed build in its grace, at the cost of two index
// probes, not a count.
func (db *DB) Empty(ctx context.Context) (bool, error) {
	var empty bool
	err := db.ro.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM instances) AND NOT EXISTS (SELECT 1 FROM tombstones)`).Scan(&empty)
	if err != nil {
		return false, fmt.Errorf("catalog: %w", err)
	}
	return empty, nil
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
type stmtQuerier struct{ tx *Tx }

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

// The classes of a catalog failure callers act on; the backend's own error
// stays wrapped beside it for the log.
var (
	// ErrBusy: another writer held the catalog past the waits.
	ErrBusy = errors.New("catalog busy")
	// ErrFull: no space left for the catalog (a writer hears ENOSPC).
	ErrFull = errors.New("no space left for the catalog")
	// ErrCorrupt: the catalog's file is damaged or not a catalog.
	ErrCorrupt = errors.New("catalog damaged")
	// ErrConflict: a write broke a rule of the schema (a concurrent writer
	// took the row first).
	ErrConflict = errors.New("catalog conflict")
)

// classify wraps a backend error with its class (ErrBusy, ErrFull, ...).
func classify(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	var class error
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		class = ErrBusy
	case sqlite3.ErrFull:
		class = ErrFull
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		class = ErrCorrupt
	case sqlite3.ErrConstraint:
		class = ErrConflict
	default:
		return err
	}
	if errors.Is(err, class) {
		return err
	}
	return fmt.Errorf("%w: %w", class, err)
}
