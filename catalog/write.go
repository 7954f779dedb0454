package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SetInstanceAttrs records a chmod or utimensat on an instance (the bytes stay).
func (tx *Tx) SetInstanceAttrs(id int64, mode uint32, mtimeNs int64) error {
	var cpv string
	err := tx.tx.QueryRowContext(tx.ctx, `UPDATE instances SET mode = ?, mtime_ns = ? WHERE id = ? RETURNING cpv`, mode, mtimeNs, id).Scan(&cpv)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("instance %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return err
	}
	tx.touch(cpv)
	return nil
}

// commitChange ends every transaction that changes what the mount shows.
// TIMESTAMP is not advanced here but when a generation is first rendered
// (StampGeneration): a bulk import of N packages must not push it N seconds
// ahead of the clock, where clients (If-Modified-Since = TIMESTAMP + 5 s)
// would stop seeing changes.
func commitChange(tx *Tx) error {
	// The on-the-fly prune policy (mount --keep) acts in the transaction
	// that changed a CPV, so no reader ever sees more builds than it allows.
	if err := tx.applyKeepPolicy(); err != nil {
		return err
	}
	_, err := tx.BumpGeneration()
	return err
}

// ErrStaleGeneration says the catalog moved past the generation being rendered.
var ErrStaleGeneration = errors.New("catalog generation moved on")

// StampGeneration returns the TIMESTAMP of generation gen, assigning it on
// first use as max(now, previous TIMESTAMP + 1): it increases with every
// published change, and every renderer of one generation (the mount,
// pkgdirfs index) uses the same value.
func (db *DB) StampGeneration(ctx context.Context, gen, now int64) (int64, error) {
	return db.stampGeneration(ctx, gen, now, 0)
}

// StampGenerationWithin is StampGeneration waiting at most wait for another
// process's write lock (serving the index must not wait for long).
func (db *DB) StampGenerationWithin(ctx context.Context, gen, now int64, wait time.Duration) (int64, error) {
	return db.stampGeneration(ctx, gen, now, wait)
}

func (db *DB) stampGeneration(ctx context.Context, gen, now int64, wait time.Duration) (int64, error) {
	var ts int64
	run := db.Tx
	if wait > 0 {
		run = func(ctx context.Context, fn func(tx *Tx) error) error { return db.TxWithin(ctx, wait, fn) }
	}
	err := run(ctx, func(tx *Tx) error {
		cur, err := tx.Generation()
		if err != nil {
			return err
		}
		if cur != gen {
			return ErrStaleGeneration
		}
		var stamped sql.NullInt64
		err = tx.tx.QueryRowContext(tx.ctx, `SELECT value FROM meta WHERE key = 'timestamp_generation'`).Scan(&stamped)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if stamped.Valid && stamped.Int64 == gen {
			ts, err = tx.LastTimestamp()
			return err
		}
		var floor sql.NullInt64
		err = tx.tx.QueryRowContext(tx.ctx, `SELECT value FROM meta WHERE key = 'min_timestamp'`).Scan(&floor)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if floor.Valid && floor.Int64 > now {
			now = floor.Int64
		}
		if ts, err = tx.NextTimestamp(now); err != nil {
			return err
		}
		_, err = tx.tx.ExecContext(tx.ctx, `INSERT INTO meta (key, value) VALUES ('timestamp_generation', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, gen)
		return err
	})
	return ts, err
}

// SetAttrs changes the mode and mtime an instance shows under all its names.
func (s *Store) SetAttrs(ctx context.Context, id int64, mode uint32, mtimeNs int64) error {
	return s.DB.Tx(ctx, func(tx *Tx) error {
		if err := tx.SetInstanceAttrs(id, mode, mtimeNs); err != nil {
			return err
		}
		return commitChange(tx)
	})
}

// Reserve records a placeholder: an empty file a builder created at a
// multi-instance name to hold (CPV, BUILD_ID) (Portage's O_EXCL allocation).
func (s *Store) Reserve(ctx context.Context, category, pn, pf, format string, buildID int64, mode uint32, mtimeNs int64) (*Instance, error) {
	in := &Instance{
		Category: category, PN: pn, PF: pf, CPV: category + "/" + pf, BuildID: buildID,
		Format: format, Mode: mode, MtimeNs: mtimeNs, Placeholder: true, CreatedNs: time.Now().UnixNano(),
	}
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.InsertInstance(in); err != nil {
			return err
		}
		return commitChange(tx)
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// Remove deletes an instance (the name a client unlinked shows it). Its blob
// goes once the row is gone: open handles keep reading the unlinked file.
func (s *Store) Remove(ctx context.Context, id int64) error {
	blob, err := s.RemoveKeepBlob(ctx, id)
	if err == nil {
		s.DropBlob(ctx, blob)
	}
	return err
}

// RemoveKeepBlob deletes an instance's row and returns its blob, which the
// caller drops (DropBlob) when nothing may read it any more.
func (s *Store) RemoveKeepBlob(ctx context.Context, id int64) (string, error) {
	var blob string
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		old, err := tx.RemoveInstance(id)
		if err != nil {
			return err
		}
		blob = old.Blob
		return commitChange(tx)
	})
	return blob, err
}

// RemoveInstance deletes an instance's row, remembering the build id of its
// bytes (removed_builds), and returns it: every removal (unlink, prune, the
// keep policy) goes this way. Its blob is the caller's to drop.
func (tx *Tx) RemoveInstance(id int64) (*Instance, error) {
	old, err := tx.InstanceByID(id)
	if err != nil {
		return nil, err
	}
	if err := tx.DeleteInstance(id); err != nil {
		return nil, err
	}
	if !old.Placeholder && old.SHA256 != "" {
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO removed_builds (cpv, sha256, build_id) VALUES (?, ?, ?)
			ON CONFLICT (cpv, sha256) DO UPDATE SET build_id = excluded.build_id`, old.CPV, old.SHA256, old.BuildID); err != nil {
			return nil, err
		}
	}
	return old, nil
}

// DropBlob removes a blob no row names any more. A crash before this leaves
// an orphan blob, which verify reports; never a row without bytes.
func (s *Store) DropBlob(ctx context.Context, blob string) {
	if blob == "" {
		return
	}
	used, err := s.DB.BlobInUse(ctx, blob)
	if err != nil || used {
		return
	}
	if err := os.Remove(filepath.Join(s.BlobDir(), blob)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing blob", "blob", blob, "err", err)
	}
}

// BlobInUse tells whether any instance row names blob.
func (db *DB) BlobInUse(ctx context.Context, blob string) (bool, error) {
	var n int
	// Blobs are named by their SHA-256: the indexed column finds them.
	err := db.ro.QueryRowContext(ctx, `SELECT count(*) FROM instances WHERE sha256 = ? AND blob = ?`, filepath.Base(blob), blob).Scan(&n)
	return n > 0, err
}

// Refuse records that bytes at path were not accepted, and why.
func (s *Store) Refuse(ctx context.Context, path, reason string, size int64) error {
	return s.DB.Tx(ctx, func(tx *Tx) error {
		return tx.AddRefused(path, reason, size, time.Now().UnixNano())
	})
}

// Restore puts back an instance removed a moment ago (its blob still kept),
// with its build id if still free; if the same bytes came back meanwhile,
// that instance is it.
func (s *Store) Restore(ctx context.Context, old *Instance) (*Instance, error) {
	in := *old
	in.ID = 0
	var same *Instance
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		same = nil
		if x, err := tx.FindByDigest(in.CPV, old.SHA256); err == nil {
			same = x
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if taken, err := tx.BuildIDTaken(in.CPV, old.BuildID); err != nil {
			return err
		} else if taken {
			if in.BuildID, err = tx.NextBuildID(in.CPV); err != nil {
				return err
			}
		} else {
			in.BuildID = old.BuildID
		}
		if _, err := tx.InsertInstance(&in); err != nil {
			return err
		}
		return commitChange(tx)
	})
	if err != nil {
		return nil, err
	}
	if same != nil {
		return same, nil
	}
	return &in, nil
}

// Settle publishes the current content once more, with a TIMESTAMP of at
// least minTS. Portage clients ask with If-Modified-Since = their TIMESTAMP
// + 5 s, so after a burst of changes less than 6 s apart some clients would
// keep their index for ever; a later TIMESTAMP makes them all fetch again.
func (s *Store) Settle(ctx context.Context, minTS int64) error {
	return s.DB.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO meta (key, value) VALUES ('min_timestamp', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, minTS); err != nil {
			return err
		}
		return commitChange(tx)
	})
}

// removedBuildID is the build id the same bytes of cpv had before they were
// removed, 0 if none.
func (tx *Tx) removedBuildID(cpv, sha256 string) (int64, error) {
	var id int64
	err := tx.reader.q.QueryRowContext(tx.ctx, `SELECT build_id FROM removed_builds WHERE cpv = ? AND sha256 = ?`, cpv, sha256).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}
