// Package catalog is the catalog of a pkgdirfs state: package instances,
// their index metadata, the Packages header, tombstones of removed builds,
// refused files and the generation counter — and the rules that keep them
// (build-id choice, ingest, the keep policy, TIMESTAMP). It knows nothing
// of FUSE, and nothing of the database that keeps its rows: a backend
// (catalog/sqlite) does, behind the interfaces of backend.go.
//
// All writes go through DB.Tx (one transaction, re-run on ErrBusy);
// consistent multi-query reads go through DB.View.
package catalog

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

var (
	// ErrNotFound: no row matched.
	ErrNotFound = errors.New("not found")
	// ErrBuildIDTaken: the (cpv, build id) is held, or named other bytes.
	ErrBuildIDTaken = errors.New("build id already taken")
)

// The classes of a catalog failure callers act on; a backend wraps its own
// error with one of them, and keeps it beside for the log.
var (
	// ErrBusy: another writer held the catalog past the waits.
	ErrBusy = errors.New("catalog busy")
	// ErrFull: no space left for the catalog (a writer hears ENOSPC).
	ErrFull = errors.New("no space left for the catalog")
	// ErrCorrupt: the catalog is damaged or not a catalog.
	ErrCorrupt = errors.New("catalog damaged")
	// ErrConflict: a write broke a rule of the schema (a concurrent writer
	// took the row first).
	ErrConflict = errors.New("catalog conflict")
	// ErrReadOnly: the catalog was opened to read (OpenStateReadOnly).
	ErrReadOnly = errors.New("catalog opened read-only")
	// ErrUnavailable: the catalog's server cannot be reached (a shared
	// catalog): what the mount has stays served; writes fail until it is
	// back.
	ErrUnavailable = errors.New("catalog server unavailable")
)

// Tx retry policy on ErrBusy. A backend already waits for a lock itself,
// so few retries are needed. Variables so tests can shorten them.
var (
	txMaxAttempts  = 8
	txFirstBackoff = 10 * time.Millisecond
	txMaxBackoff   = time.Second
)

// DB is an open catalog. It is safe for concurrent use.
type DB struct {
	b Backend
	// keep is the on-the-fly prune policy every committing transaction
	// applies (Store.SetKeepPolicy); nil: none.
	keep atomic.Pointer[keepHook]
}

// New wraps an open backend.
func New(b Backend) *DB { return &DB{b: b} }

// OpenState opens the catalog of the state directory dir, creating it if
// missing (dir must exist). Callers that must not create one check
// StatePresent first.
func OpenState(dir string) (*DB, error) { return Open(Location{State: dir}) }

// OpenStateReadOnly is OpenReadOnly of the state directory dir's own catalog.
func OpenStateReadOnly(dir string) (*DB, error) { return OpenReadOnly(Location{State: dir}) }

// StatePresent is Present of the state directory dir's own catalog.
func StatePresent(dir string) (why string) { return Present(Location{State: dir}) }

// Open opens the catalog at loc, making an empty one where there is none.
func Open(loc Location) (*DB, error) {
	d, err := loc.driver()
	if err != nil {
		return nil, err
	}
	b, err := d.Open(loc)
	if err != nil {
		return nil, err
	}
	return New(b), nil
}

// OpenReadOnly opens the catalog at loc to read it: nothing is created or
// changed, so a user who may only read it can query it; every write fails
// with ErrReadOnly. An error says what could not be read and what to do.
func OpenReadOnly(loc Location) (*DB, error) {
	d, err := loc.driver()
	if err != nil {
		return nil, err
	}
	b, err := d.OpenReadOnly(loc)
	if err != nil {
		return nil, err
	}
	return New(b), nil
}

// Present says why loc holds no catalog ("" if it does), in words for a
// user who named it: a mistyped --state or --catalog must be refused, not
// served (or filled) as a new, empty catalog.
func Present(loc Location) (why string) {
	d, err := loc.driver()
	if err != nil {
		return err.Error()
	}
	return d.Present(loc)
}

// Unreadable reports whether loc holds a catalog that cannot serve (empty,
// damaged, or written by a newer pkgdirfs). A missing catalog is not
// unreadable: one is made. import --rebuild sets an unreadable catalog
// aside (SetAside).
func Unreadable(loc Location) bool {
	d, err := loc.driver()
	return err == nil && d.Unreadable(loc)
}

// SetAside moves the catalog at loc aside (its files renamed with suffix,
// e.g. ".lost-20240102T030405"), so that the next open makes a new catalog
// while the old one stays for the user to inspect or restore. moved names
// where it went. The caller holds the state's lock.
func SetAside(loc Location, suffix string) (moved []string, err error) {
	d, err := loc.driver()
	if err != nil {
		return nil, err
	}
	return d.SetAside(loc, suffix)
}

// Ring is the backend's doorbell (Doorbell), nil if it has none: the caller
// then polls.
func (db *DB) Ring(ctx context.Context) <-chan struct{} {
	if d, ok := db.b.(Doorbell); ok {
		return d.Ring(ctx)
	}
	return nil
}

// Close closes the backend.
func (db *DB) Close() error { return db.b.Close() }

// Path names the catalog (for messages).
func (db *DB) Path() string { return db.b.Location() }

// LastWrite is when any process last committed to the catalog (a package,
// a removal, a stamped index TIMESTAMP).
func (db *DB) LastWrite() (time.Time, error) { return db.b.LastWrite() }

// Check runs the backend's consistency checks and returns an error listing
// every problem found, nil if none.
func (db *DB) Check(ctx context.Context) error { return db.b.Check(ctx) }

// Tx is one write transaction: the backend's rows and reads, and the rules
// that keep them (what changed, for the change log; what it added, so a
// removal of it needs no grace).
type Tx struct {
	WriteTx
	// touched: CPVs (and HeaderChange) this transaction changed, for the
	// change log BumpGeneration writes.
	touched map[string]struct{}
	// inserted: instances this transaction added; one it removes again
	// was never served, and needs no removal grace.
	inserted map[int64]bool
	db       *DB
	// afterCommit runs once the transaction has committed (dropping the
	// blobs of instances it removed).
	afterCommit []func()
	// beforeCommit runs after fn, before the commit; an error rolls back
	// (waiting for a blob's bytes to be durable: a row never names bytes a
	// power cut could take).
	beforeCommit []func() error
}

// Tx runs fn in one write transaction: commit if fn returns nil, roll back
// otherwise. On ErrBusy the whole fn is run again (bounded, with backoff),
// so fn must be re-runnable and must not leak effects outside the
// transaction before it commits. fn must not call db.Tx itself.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	backoff := txFirstBackoff
	for attempt := 1; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || !errors.Is(err, ErrBusy) || attempt == txMaxAttempts {
			return err
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

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) error {
	var tx *Tx
	err := db.b.Write(ctx, func(w WriteTx) error {
		tx = &Tx{WriteTx: w, db: db}
		if err := fn(tx); err != nil {
			return err
		}
		for _, f := range tx.beforeCommit {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}

// View is a read-only snapshot: every query in it sees the same committed
// state.
type View struct {
	Snapshot
}

// View runs fn in one read snapshot. Use it when several reads must agree,
// e.g. Instances and Generation for one tree snapshot.
func (db *DB) View(ctx context.Context, fn func(v *View) error) error {
	return db.b.Read(ctx, func(s Snapshot) error { return fn(&View{s}) })
}

// read runs one read in a snapshot of its own.
func read[T any](ctx context.Context, db *DB, fn func(v *View) (T, error)) (T, error) {
	var out T
	err := db.View(ctx, func(v *View) error {
		var err error
		out, err = fn(v)
		return err
	})
	return out, err
}

// Generation returns the committed generation counter.
func (db *DB) Generation(ctx context.Context) (int64, error) {
	return read(ctx, db, func(v *View) (int64, error) { return v.Generation() })
}

// Header returns the stored Packages header keys.
func (db *DB) Header(ctx context.Context) (map[string]string, error) {
	return read(ctx, db, func(v *View) (map[string]string, error) { return v.Header() })
}

// LastTimestamp returns the newest TIMESTAMP stored.
func (db *DB) LastTimestamp(ctx context.Context) (int64, error) {
	return read(ctx, db, func(v *View) (int64, error) { return v.LastTimestamp() })
}

// Instances returns every instance (placeholders included) without Meta,
// ordered by cpv in byte order, then build_id.
func (db *DB) Instances(ctx context.Context) ([]Instance, error) {
	return read(ctx, db, func(v *View) ([]Instance, error) { return v.Instances() })
}

// ForEachIndexed streams package instances (no placeholders) with Meta,
// ordered by cpv in byte order, then build_id, from one snapshot.
func (db *DB) ForEachIndexed(ctx context.Context, fn func(inst *Instance) error) error {
	return db.View(ctx, func(v *View) error { return v.ForEachIndexed(fn) })
}

// InstanceMeta returns the index values of one instance (empty map if none).
func (db *DB) InstanceMeta(ctx context.Context, id int64) (map[string]string, error) {
	return read(ctx, db, func(v *View) (map[string]string, error) { return v.InstanceMeta(id) })
}

// InstanceByID returns one instance with its Meta, or ErrNotFound.
func (db *DB) InstanceByID(ctx context.Context, id int64) (*Instance, error) {
	return read(ctx, db, func(v *View) (*Instance, error) { return v.InstanceByID(id) })
}

// Refused lists the files refused at ingest, oldest first.
func (db *DB) Refused(ctx context.Context) ([]Refused, error) {
	return read(ctx, db, func(v *View) ([]Refused, error) { return v.Refused() })
}

// RefusalReason is why the bytes at path were refused, "" if they were not.
func (db *DB) RefusalReason(ctx context.Context, path string) (string, error) {
	return read(ctx, db, func(v *View) (string, error) { return v.RefusalReason(path) })
}

// Stats counts package instances, placeholders and package bytes.
func (db *DB) Stats(ctx context.Context) (instances, placeholders int64, bytes int64, err error) {
	err = db.View(ctx, func(v *View) error {
		instances, placeholders, bytes, err = v.Stats()
		return err
	})
	return
}

// Summary computes the figures of pkgdirfs stats in one snapshot.
func (db *DB) Summary(ctx context.Context, topCategories, topCPVs int) (*Summary, error) {
	return read(ctx, db, func(v *View) (*Summary, error) { return v.Summary(topCategories, topCPVs) })
}

// Empty tells whether the catalog lists no instance at all (placeholders
// included) and no removed build in its grace.
func (db *DB) Empty(ctx context.Context) (bool, error) {
	return read(ctx, db, func(v *View) (bool, error) { return v.Empty() })
}

// Tombstones lists every tombstone.
func (db *DB) Tombstones(ctx context.Context) ([]Tombstone, error) {
	return read(ctx, db, func(v *View) ([]Tombstone, error) { return v.Tombstones() })
}

// TombstoneRemovedAs is the newest tombstone of a build removed under name,
// or ErrNotFound.
func (db *DB) TombstoneRemovedAs(ctx context.Context, name string) (*Tombstone, error) {
	return read(ctx, db, func(v *View) (*Tombstone, error) { return v.TombstoneRemovedAs(name) })
}

// BlobInUse tells whether any instance or tombstone names blob.
func (db *DB) BlobInUse(ctx context.Context, blob string) (bool, error) {
	return read(ctx, db, func(v *View) (bool, error) { return v.BlobInUse(blob) })
}

// ForEachInScopes is View.ForEachInScopes in a snapshot of its own.
func (db *DB) ForEachInScopes(ctx context.Context, scopes []Scope, fn func(inst *Instance) error) error {
	return db.View(ctx, func(v *View) error { return v.ForEachInScopes(scopes, fn) })
}
