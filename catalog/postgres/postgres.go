// Package postgres is the catalog's backend for a catalog several hosts
// share: one PostgreSQL database (≥ 15). It stores and finds rows and
// classifies PostgreSQL's errors; the rules are package catalog's. Import
// it for its side effect: it registers itself for postgres:// URLs.
//
// Writers are serialised by a transaction-scoped advisory lock, taken
// first in every write transaction: the catalog's rules (build-id choice,
// one generation per commit, a gap-free change log) assume one writer at a
// time, as SQLite gives them, and a commit holds it for milliseconds.
package postgres

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pkgdirfs/catalog"
)

// schemaVersion is the catalog's: catalog/sqlite's version 4 (the same
// rows), the hosts' sessions (5) and snapshots (6, catalog/sqlite's 5). A
// database of a newer one is refused; an older one is brought up to date
// by the first writer that opens it (migrations).
const schemaVersion = 7

//go:embed schema.sql
var schemaSQL string

//go:embed sessions.sql
var sessionsSQL string

//go:embed snapshots.sql
var snapshotsSQL string

//go:embed channels.sql
var channelsSQL string

// migrations bring a catalog of an older version up to date: each one
// whose version is above the catalog's runs, in order, in one transaction.
// Each is idempotent; a new catalog gets schema.sql and then every one.
var migrations = []struct {
	version int64
	sql     string
}{
	{5, sessionsSQL},
	{6, snapshotsSQL},
	{7, channelsSQL},
}

// writeLock is the advisory lock key every write transaction takes
// ("pkgdirfs" in ASCII).
const writeLock = 0x706b676469726673

// connectWait bounds how long an unreachable server holds a command or a
// write: the mount keeps serving what it has meanwhile.
const connectWait = 5 * time.Second

func init() { catalog.Register("postgres", driver{}) }

type driver struct{}

func (driver) Open(loc catalog.Location) (catalog.Backend, error) { return Open(loc.Catalog, false) }

func (driver) OpenReadOnly(loc catalog.Location) (catalog.Backend, error) {
	return Open(loc.Catalog, true)
}

func (driver) Present(loc catalog.Location) string {
	db, err := Open(loc.Catalog, true)
	if err != nil {
		return err.Error()
	}
	db.Close()
	return ""
}

// Unreadable: a server's catalog is never set aside by us; it is restored
// from the server's backups.
func (driver) Unreadable(catalog.Location) bool { return false }

func (driver) SetAside(loc catalog.Location, _ string) ([]string, error) {
	return nil, fmt.Errorf("catalog %s: a catalog on PostgreSQL is restored from the server's backups, not set aside", redact(loc.Catalog))
}

// DB is an open catalog database. It is safe for concurrent use.
type DB struct {
	pool     *pgxpool.Pool
	name     string // the URL without its password
	readOnly bool
	// preSnapshots: a reader of a catalog older than version 6, which has
	// no snapshot tables and so no snapshots (until a writer of this
	// version opens it).
	preSnapshots bool
	// preChannels: likewise, older than version 7 (no channels).
	preChannels bool
}

var _ catalog.Backend = (*DB)(nil)

func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "the catalog URL"
}

// Open connects to the catalog at rawURL. Unless readOnly, an empty
// database gets the catalog's schema; a database that holds other tables,
// or a catalog of a newer pkgdirfs, is refused.
func Open(rawURL string, readOnly bool) (*DB, error) {
	name := redact(rawURL)
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %v", name, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > connectWait {
		cfg.ConnConfig.ConnectTimeout = connectWait
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "pkgdirfs"
	ctx, cancel := context.WithTimeout(context.Background(), 2*connectWait)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %v", name, err)
	}
	db := &DB{pool: pool, name: name, readOnly: readOnly}
	if err := db.init(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("catalog %s: %w", name, err)
	}
	return db, nil
}

// init checks (and, writable, makes) the schema, under the write lock so
// that two hosts starting on a new database do not both make it.
func (db *DB) init(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach the server: %w", classify(err))
	}
	var version int64
	check := func(q querier) (present bool, err error) {
		var hasMeta bool
		if err := q.QueryRow(ctx, `SELECT to_regclass('meta') IS NOT NULL`).Scan(&hasMeta); err != nil {
			return false, classify(err)
		}
		if !hasMeta {
			var others int
			if err := q.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&others); err != nil {
				return false, classify(err)
			}
			if others > 0 {
				return false, fmt.Errorf("the database holds %d tables and no pkgdirfs catalog: not ours, refusing to use it (give pkgdirfs an empty database of its own)", others)
			}
			return false, nil
		}
		var ours, v int64
		err = q.QueryRow(ctx, `SELECT (SELECT value FROM meta WHERE key = 'pkgdirfs_catalog'), (SELECT value FROM meta WHERE key = 'schema_version')`).Scan(&ours, &v)
		if err != nil {
			return false, fmt.Errorf("the database has a table meta but no pkgdirfs catalog: not ours, refusing to use it (%v)", err)
		}
		if v > schemaVersion {
			return false, fmt.Errorf("catalog schema version %d is newer than this pkgdirfs supports (%d)", v, schemaVersion)
		}
		version = v
		return true, nil
	}
	present, err := check(db.pool)
	if err != nil {
		return err
	}
	if present {
		if version < schemaVersion && !db.readOnly {
			return db.migrate(ctx, version)
		}
		// A reader of an older catalog reads what it has; snapshots are
		// there once a writer of this version opened it.
		db.preSnapshots = version < 6
		db.preChannels = version < 7
		return nil
	}
	if db.readOnly {
		return errors.New("no catalog in it (an empty database: `pkgdirfs mount --init` or `pkgdirfs import` with --catalog makes one)")
	}
	tx, err := db.lockedTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if present, err := check(tx); err != nil || present {
		return err
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("making the catalog's schema: %w", classify(err))
	}
	for _, m := range migrations {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("making the catalog's schema (version %d): %w", m.version, classify(err))
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('pkgdirfs_catalog', 1), ('schema_version', $1)`, schemaVersion); err != nil {
		return classify(err)
	}
	return classify(tx.Commit(ctx))
}

// lockedTx begins a transaction holding the write lock, for the schema's
// changes (Write's transactions take it with the time of the write).
func (db *DB) lockedTx(ctx context.Context) (pgx.Tx, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return nil, classify(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(writeLock)); err != nil {
		tx.Rollback(ctx)
		return nil, classify(err)
	}
	return tx, nil
}

// migrate brings a catalog of schema version from up to date, under the
// write lock (hosts of both versions may be writing it: version 4's never
// look at sessions; version 5's make no held copies, so run one version on
// all hosts that write a catalog with snapshots).
func (db *DB) migrate(ctx context.Context, from int64) error {
	tx, err := db.lockedTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, m := range migrations {
		if m.version <= from {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("upgrading the catalog's schema to version %d: %w", m.version, classify(err))
		}
	}
	return classify(tx.Commit(ctx))
}

// Close closes the connection pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Location is the catalog's URL without its password.
func (db *DB) Location() string { return db.name }

// Read runs fn in one REPEATABLE READ, READ ONLY transaction: a snapshot.
func (db *DB) Read(ctx context.Context, fn func(catalog.Snapshot) error) error {
	tx, err := db.begin(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return classify(fmt.Errorf("catalog %s: begin read: %w", db.name, err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return classify(fn(snap{ctx: ctx, q: tx, preSnapshots: db.preSnapshots, preChannels: db.preChannels}))
}

// Write runs fn once in a write transaction that holds the write lock.
func (db *DB) Write(ctx context.Context, fn func(catalog.WriteTx) error) error {
	if db.readOnly {
		return fmt.Errorf("catalog %s: %w", db.name, catalog.ErrReadOnly)
	}
	tx, err := db.begin(ctx, pgx.TxOptions{})
	if err != nil {
		return classify(fmt.Errorf("catalog %s: begin: %w", db.name, err))
	}
	done := false
	defer func() {
		if !done {
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// The lock and the time of this write in one round trip: a commit
	// makes a dozen, and each costs one on a server across the network.
	if _, err := tx.Exec(ctx, `WITH l AS (SELECT pg_advisory_xact_lock($1))
		INSERT INTO meta (key, value) SELECT 'last_write_ns', $2 FROM l
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, int64(writeLock), time.Now().UnixNano()); err != nil {
		return classify(fmt.Errorf("catalog %s: %w", db.name, err))
	}
	w := &wtx{snap: snap{ctx: ctx, q: tx}, tx: tx}
	if err := fn(w); err != nil {
		return classify(err)
	}
	done = true
	if err := tx.Commit(ctx); err != nil {
		return classify(fmt.Errorf("catalog %s: commit: %w", db.name, err))
	}
	return nil
}

// begin starts a transaction; a pooled connection the server dropped (it
// restarted) fails before anything was sent, and the next one is tried.
func (db *DB) begin(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	for attempt := 0; ; attempt++ {
		tx, err := db.pool.BeginTx(ctx, opts)
		if err == nil || attempt == 3 || !pgconn.SafeToRetry(err) {
			return tx, err
		}
	}
}

// Bulk: the server needs no tuning per load.
func (db *DB) Bulk(context.Context) func() { return func() {} }

// Check: PostgreSQL enforces the schema's keys itself; what is left to
// check is that the catalog's own counters are there.
func (db *DB) Check(ctx context.Context) error {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM meta WHERE key IN ('generation', 'last_timestamp', 'changes_floor')`).Scan(&n)
	if err != nil {
		return classify(err)
	}
	if n != 3 {
		return fmt.Errorf("catalog %s: %d of its 3 counters are missing", db.name, 3-n)
	}
	return nil
}

// LastWrite is when a write transaction last committed, by its host's
// clock.
func (db *DB) LastWrite() (time.Time, error) {
	var ns int64
	err := db.pool.QueryRow(context.Background(), `SELECT coalesce((SELECT value FROM meta WHERE key = 'last_write_ns'), 0)`).Scan(&ns)
	if err != nil {
		return time.Time{}, classify(err)
	}
	if ns == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, ns), nil
}

// classify wraps a server error with its class.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range []error{catalog.ErrBusy, catalog.ErrFull, catalog.ErrCorrupt, catalog.ErrConflict, catalog.ErrReadOnly, catalog.ErrUnavailable} {
		if errors.Is(err, c) {
			return err
		}
	}
	var class error
	var pe *pgconn.PgError
	var ne net.Error
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &pe):
		switch {
		case pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03":
			class = catalog.ErrBusy
		case pe.Code == "53100":
			class = catalog.ErrFull
		case pe.Code == "XX001" || pe.Code == "XX002":
			class = catalog.ErrCorrupt
		case pe.Code[:2] == "23":
			class = catalog.ErrConflict
		case pe.Code == "25006":
			class = catalog.ErrReadOnly
		case pe.Code[:2] == "57" || pe.Code[:2] == "08":
			class = catalog.ErrUnavailable // shutting down, connection lost
		}
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err):
		class = catalog.ErrUnavailable
	}
	if class == nil {
		return err
	}
	return fmt.Errorf("%w: %w", class, err)
}

// Ring listens on the channel every commit notifies (BumpGeneration) on a
// connection of its own, until ctx ends, reconnecting after a failure (and
// ringing then: notifications sent meanwhile were lost).
func (db *DB) Ring(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	ring := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			err := db.listen(ctx, ring)
			if ctx.Err() != nil {
				return
			}
			_ = err // the poll logs the outage; this only tries again
			ring()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
	return ch
}

func (db *DB) listen(ctx context.Context, ring func()) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is LISTENing: it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN pkgdirfs_changes"); err != nil {
		return err
	}
	ring() // changes committed before the LISTEN
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return err
		}
		ring()
	}
}
