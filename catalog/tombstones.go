package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"pkgdirfs/layout"
)

// Tombstone is a removed build in its removal grace: still downloadable at
// its index PATH under the mount's removed area until UntilNs, for every
// process on the catalog and across restarts.
type Tombstone struct {
	Instance         // the removed instance (ID, names, size, blob, ...; no Meta)
	RemovedAs string // the name it was removed under ("" if not by a name)
	RemovedBy string // the client that removed it (fs: clientOf)
	RemovedNs int64
	UntilNs   int64
}

// Path is the tombstone's multi-instance path.
func (t *Tombstone) Path() string {
	return layout.MultiPath(t.Category, t.PF, t.BuildID, layout.Format(t.Format))
}

const tombCols = `instance_id, cpv, category, pn, pf, build_id, build_time, format, size, mtime_ns, mode,
	sha256, blob, removed_as, removed_by, removed_ns, until_ns`

func scanTombstones(rows *sql.Rows, err error) ([]Tombstone, error) {
	if err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	defer rows.Close()
	var out []Tombstone
	for rows.Next() {
		var t Tombstone
		if err := rows.Scan(&t.ID, &t.CPV, &t.Category, &t.PN, &t.PF, &t.BuildID, &t.BuildTime, &t.Format,
			&t.Size, &t.MtimeNs, &t.Mode, &t.SHA256, &t.Blob, &t.RemovedAs, &t.RemovedBy, &t.RemovedNs, &t.UntilNs); err != nil {
			return nil, fmt.Errorf("catalog: tombstones: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return out, nil
}

// Tombstones lists every tombstone (expired ones too, until collected), by
// CPV and build id.
func (r reader) Tombstones() ([]Tombstone, error) {
	return scanTombstones(r.q.QueryContext(r.ctx, `SELECT `+tombCols+` FROM tombstones ORDER BY cpv, build_id`))
}

// AnyTombstones tells whether any removed build is in its grace (one probe).
func (r reader) AnyTombstones() (bool, error) {
	var any bool
	if err := r.q.QueryRowContext(r.ctx, `SELECT EXISTS (SELECT 1 FROM tombstones)`).Scan(&any); err != nil {
		return false, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return any, nil
}

// TombstonesOf lists the tombstones of one CPV.
func (r reader) TombstonesOf(cpv string) ([]Tombstone, error) {
	return scanTombstones(r.q.QueryContext(r.ctx, `SELECT `+tombCols+` FROM tombstones WHERE cpv = ? ORDER BY build_id`, cpv))
}

// TombstoneRemovedAs is the newest tombstone of a build removed under name,
// or ErrNotFound.
func (r reader) TombstoneRemovedAs(name string) (*Tombstone, error) {
	ts, err := scanTombstones(r.q.QueryContext(r.ctx,
		`SELECT `+tombCols+` FROM tombstones WHERE removed_as = ? ORDER BY removed_ns DESC LIMIT 1`, name))
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, ErrNotFound
	}
	return &ts[0], nil
}

// Tombstones lists every tombstone.
func (db *DB) Tombstones(ctx context.Context) ([]Tombstone, error) { return db.r(ctx).Tombstones() }

// TombstoneRemovedAs: see reader.TombstoneRemovedAs.
func (db *DB) TombstoneRemovedAs(ctx context.Context, name string) (*Tombstone, error) {
	return db.r(ctx).TombstoneRemovedAs(name)
}

// removedGrace is the removal grace the mount serving this catalog set
// (SetRemovedGrace); 0 if none ever did.
func (r reader) removedGrace() (time.Duration, error) {
	var ns int64
	err := r.q.QueryRowContext(r.ctx, `SELECT value FROM meta WHERE key = 'removed_grace_ns'`).Scan(&ns)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: removed grace: %w", err)
	}
	return time.Duration(ns), nil
}

// SetRemovedGrace records how long a removed build stays downloadable:
// every removal from then on, by any process (rm through the mount, prune,
// the keep policy), writes a tombstone for that long.
func (s *Store) SetRemovedGrace(ctx context.Context, d time.Duration) error {
	return s.DB.SetRemovedGrace(ctx, d)
}

// SetRemovedGrace: see Store.SetRemovedGrace.
func (db *DB) SetRemovedGrace(ctx context.Context, d time.Duration) error {
	return db.Tx(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO meta (key, value) VALUES ('removed_grace_ns', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, int64(d))
		return err
	})
}

// tombstone records old, just removed under name by client, for the
// removal grace.
func (tx *Tx) tombstone(old *Instance, name, client string) error {
	if old.Placeholder || old.Blob == "" {
		return nil
	}
	grace, err := tx.removedGrace()
	if err != nil || grace <= 0 {
		return err
	}
	now := time.Now().UnixNano()
	_, err = tx.reader.q.ExecContext(tx.ctx, `INSERT INTO tombstones (`+tombCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (instance_id) DO NOTHING`,
		old.ID, old.CPV, old.Category, old.PN, old.PF, old.BuildID, old.BuildTime, old.Format, old.Size, old.MtimeNs,
		old.Mode, old.SHA256, old.Blob, name, client, now, now+int64(grace))
	if err != nil {
		return fmt.Errorf("catalog: tombstone of %s build %d: %w", old.CPV, old.BuildID, err)
	}
	return nil
}

// spendID records that build id of cpv named these bytes: it is never
// given to other bytes, and the same bytes coming back get it again.
func (tx *Tx) spendID(cpv string, id int64, sha256 string) error {
	if id <= 0 || sha256 == "" {
		return nil
	}
	_, err := tx.reader.q.ExecContext(tx.ctx, `INSERT INTO spent_ids (cpv, build_id, sha256) VALUES (?, ?, ?)
		ON CONFLICT (cpv, build_id) DO UPDATE SET sha256 = excluded.sha256`, cpv, id, sha256)
	if err != nil {
		return fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return nil
}

// idSpent tells whether build id of cpv named other bytes than sha256
// before (sha256 "": any bytes).
func (tx *Tx) idSpent(cpv string, id int64, sha256 string) (bool, error) {
	var spent bool
	err := tx.reader.q.QueryRowContext(tx.ctx,
		`SELECT EXISTS (SELECT 1 FROM spent_ids WHERE cpv = ? AND build_id = ? AND sha256 <> ?)`, cpv, id, sha256).Scan(&spent)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return spent, nil
}

// dropTombstonesOf ends the grace of the tombstones of cpv with these
// bytes: the build is back (committed again, same bytes).
func (tx *Tx) dropTombstonesOf(cpv, sha256 string) error {
	return tx.dropTombstones(cpv, `sha256 = ?`, sha256)
}

// dropTombstonesAt ends the grace of a tombstone at build id of cpv: a
// build moved back to an id it had.
func (tx *Tx) dropTombstonesAt(cpv string, id int64) error {
	return tx.dropTombstones(cpv, `build_id = ?`, id)
}

func (tx *Tx) dropTombstones(cpv, cond string, arg any) error {
	res, err := tx.reader.q.ExecContext(tx.ctx, `DELETE FROM tombstones WHERE cpv = ? AND `+cond, cpv, arg)
	if err != nil {
		return fmt.Errorf("catalog: tombstones of %s: %w", cpv, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		tx.touch(cpv)
	}
	return nil
}

// tombstoneBatch is how many expired tombstones one transaction collects.
const tombstoneBatch = 500

// ExpireTombstones collects the tombstones whose grace ended by now, in
// batches of one transaction each, and drops the blobs nothing names any
// more. Whoever finds them (the mount, prune) collects them. It returns
// how many it collected.
func (s *Store) ExpireTombstones(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		blobs, err := s.DB.ExpireTombstones(ctx, now, tombstoneBatch)
		if err != nil {
			return total, err
		}
		for _, b := range blobs {
			s.DropBlob(ctx, b)
		}
		total += len(blobs)
		if len(blobs) < tombstoneBatch {
			return total, nil
		}
	}
}

// ExpireTombstones deletes at most max tombstones whose grace ended by now,
// in one transaction, and returns their blobs (the caller drops those
// nothing else names).
func (db *DB) ExpireTombstones(ctx context.Context, now time.Time, max int) ([]string, error) {
	// A look first, without the write lock: the mount asks every second,
	// and most of the time nothing is due.
	var due bool
	if err := db.ro.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tombstones WHERE until_ns <= ?)`, now.UnixNano()).Scan(&due); err != nil {
		return nil, fmt.Errorf("catalog: expired tombstones: %w", err)
	}
	if !due {
		return nil, nil
	}
	var blobs []string
	err := db.Tx(ctx, func(tx *Tx) error {
		blobs = blobs[:0]
		ts, err := scanTombstones(tx.tx.QueryContext(tx.ctx,
			`SELECT `+tombCols+` FROM tombstones WHERE until_ns <= ? ORDER BY until_ns LIMIT ?`, now.UnixNano(), max))
		if err != nil || len(ts) == 0 {
			return err
		}
		for i := range ts {
			if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM tombstones WHERE instance_id = ?`, ts[i].ID); err != nil {
				return fmt.Errorf("catalog: expire tombstone: %w", err)
			}
			tx.touch(ts[i].CPV)
			blobs = append(blobs, ts[i].Blob)
		}
		// Not commitChange: the keep policy has nothing to do here.
		_, err = tx.BumpGeneration()
		return err
	})
	return blobs, err
}

// DropBlob removes a blob no row names any more (no instance, no tombstone).
// A crash before this leaves an orphan blob, which verify reports; never a
// row without bytes.
func (s *Store) DropBlob(ctx context.Context, blob string) {
	if blob == "" {
		return
	}
	used, err := s.DB.BlobInUse(ctx, blob)
	if err != nil || used {
		return
	}
	if err := s.blobs.Remove(blob); err != nil {
		s.log.Warn("removing blob", "blob", blob, "err", err)
	}
}

// BlobInUse tells whether any instance or tombstone names blob.
func (db *DB) BlobInUse(ctx context.Context, blob string) (bool, error) {
	var used bool
	// Blobs are named by their SHA-256: the indexed column finds them.
	err := db.ro.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE sha256 = ? AND blob = ?)
		OR EXISTS (SELECT 1 FROM tombstones WHERE blob = ?)`, filepath.Base(blob), blob, blob).Scan(&used)
	return used, err
}
