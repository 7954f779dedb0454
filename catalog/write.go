package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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

// Stamp is what a renderer reads to give a generation its TIMESTAMP.
type Stamp struct {
	Gen int64
	// Stored is the TIMESTAMP stored for Gen, 0 if none is yet.
	Stored int64
	// Last is the newest TIMESTAMP stored; Floor the least one the next
	// may have (Settle), 0 if none.
	Last, Floor int64
}

// Next is Gen's TIMESTAMP: the stored one, or max(now, Last+1, Floor) —
// it increases with every published change, and does not run ahead of
// the clock by one second per commit (a bulk import of N packages must
// not push it N seconds ahead, where clients asking with
// If-Modified-Since = TIMESTAMP + 5 s would stop seeing changes).
func (s Stamp) Next(now int64) int64 {
	if s.Stored != 0 {
		return s.Stored
	}
	return max(now, s.Last+1, s.Floor)
}

func stampOf(r Snapshot, gen int64) (Stamp, error) {
	st := Stamp{Gen: gen}
	cur, err := settingOf(r, "generation")
	if err != nil {
		return st, err
	}
	if cur != gen {
		return st, ErrStaleGeneration
	}
	if st.Last, err = settingOf(r, "last_timestamp"); err != nil {
		return st, err
	}
	if st.Floor, _, err = r.Setting("min_timestamp"); err != nil {
		return st, err
	}
	stamped, ok, err := r.Setting("timestamp_generation")
	if ok && stamped == gen {
		st.Stored = st.Last
	}
	return st, err
}

// StampOf reads, without writing, what generation gen's TIMESTAMP is or
// would be (Stamp.Next); ErrStaleGeneration if the catalog is past gen.
// Serving the index reads this and never waits on a catalog write; it
// records what it served with RecordStamp, after.
func (db *DB) StampOf(ctx context.Context, gen int64) (Stamp, error) {
	return read(ctx, db, func(v *View) (Stamp, error) { return stampOf(v, gen) })
}

// RecordStamp stores ts as generation gen's TIMESTAMP unless the catalog
// moved past gen or gen has one already; it returns the one stored.
func (db *DB) RecordStamp(ctx context.Context, gen, ts int64) (int64, error) {
	return db.storeStamp(ctx, gen, func(st Stamp) int64 { return max(ts, st.Last+1) })
}

// StampGeneration returns the TIMESTAMP of generation gen, storing it on
// first use (Stamp.Next), in one transaction: every renderer of one
// generation (the mount, pkgdirfs index) uses the same value.
func (db *DB) StampGeneration(ctx context.Context, gen, now int64) (int64, error) {
	return db.storeStamp(ctx, gen, func(st Stamp) int64 { return st.Next(now) })
}

// storeStamp stores pick(the stamp read) as gen's TIMESTAMP unless gen has
// one already, in one transaction, and returns the one stored.
func (db *DB) storeStamp(ctx context.Context, gen int64, pick func(Stamp) int64) (int64, error) {
	var ts int64
	err := db.Tx(ctx, func(tx *Tx) error {
		st, err := stampOf(tx, gen)
		if err != nil || st.Stored != 0 {
			ts = st.Stored
			return err
		}
		ts = pick(st)
		if err := tx.SetSetting("last_timestamp", ts); err != nil {
			return err
		}
		return tx.SetSetting("timestamp_generation", gen)
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
		// An id given to a build before is spent: Portage's allocation
		// reads EEXIST as "taken" and tries the next id.
		if spent, err := tx.IDSpent(in.CPV, buildID, ""); err != nil {
			return err
		} else if spent {
			return fmt.Errorf("catalog: reserve %s build %d: it named a build before: %w", in.CPV, buildID, ErrBuildIDTaken)
		}
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

// Remove removes an instance, unlinked by client at name ("" if not by a
// name), in one transaction that writes its tombstone (the removal grace),
// and returns it. Its blob goes after the commit unless the tombstone keeps
// it (open handles keep reading an unlinked blob).
func (s *Store) Remove(ctx context.Context, id int64, name, client string) (*Instance, error) {
	var old *Instance
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		var err error
		if old, err = tx.RemoveInstanceAs(id, name, client); err != nil {
			return err
		}
		return commitChange(tx)
	})
	if err != nil {
		return nil, err
	}
	s.DropBlob(ctx, old.Blob)
	return old, nil
}

// RemoveInstance is RemoveInstanceAs by no name (prune, the keep policy).
func (tx *Tx) RemoveInstance(id int64) (*Instance, error) { return tx.RemoveInstanceAs(id, "", "") }

// RemoveInstanceAs deletes an instance's row, spends its build id for other
// bytes, writes its tombstone for the removal grace, and returns it: every
// removal (unlink, prune, the keep policy, a move) goes this way. Its blob is
// the caller's to drop (DropBlob keeps it while the tombstone names it).
func (tx *Tx) RemoveInstanceAs(id int64, name, client string) (*Instance, error) {
	old, err := tx.InstanceByID(id)
	if err != nil {
		return nil, err
	}
	if err := tx.DeleteInstance(id); err != nil {
		return nil, err
	}
	if !old.Placeholder {
		if err := tx.spendID(old.CPV, old.BuildID, old.SHA256); err != nil {
			return nil, err
		}
		if !tx.inserted[id] {
			if err := tx.tombstone(old, name, client); err != nil {
				return nil, err
			}
		}
	}
	return old, nil
}

// Move gives the build of instance id another free build id of its CPV (mv
// of its file to another multi-instance name): one transaction removes it
// under its old id (tombstone, spent id) and adds it under the new one, with
// the same bytes and metadata. ErrBuildIDTaken if the id is held, or was
// given to other bytes before.
func (s *Store) Move(ctx context.Context, id, buildID int64, name string) (*Instance, error) {
	var moved *Instance
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		old, err := tx.InstanceByID(id)
		if err != nil {
			return err
		}
		if old.Placeholder {
			return fmt.Errorf("catalog: move %s build %d: a reservation holds no build: %w", old.CPV, old.BuildID, ErrBuildIDTaken)
		}
		if taken, err := tx.BuildIDTaken(old.CPV, buildID); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("catalog: move %s to build %d: %w", old.CPV, buildID, ErrBuildIDTaken)
		}
		if spent, err := tx.IDSpent(old.CPV, buildID, old.SHA256); err != nil {
			return err
		} else if spent {
			return fmt.Errorf("catalog: move %s to build %d: it named other bytes before: %w", old.CPV, buildID, ErrBuildIDTaken)
		}
		if _, err := tx.RemoveInstanceAs(id, name, ""); err != nil {
			return err
		}
		in := *old
		in.ID, in.BuildID = 0, buildID
		if _, err := tx.InsertInstance(&in); err != nil {
			return err
		}
		if err := tx.dropTombstonesAt(in.CPV, buildID); err != nil {
			return err
		}
		moved = &in
		return commitChange(tx)
	})
	return moved, err
}

// Refuse records that bytes at path were not accepted, and why.
func (s *Store) Refuse(ctx context.Context, path, reason string, size int64) error {
	return s.DB.Tx(ctx, func(tx *Tx) error {
		return tx.AddRefused(path, reason, size, time.Now().UnixNano())
	})
}

// Settle publishes the current content once more, with a TIMESTAMP of at
// least minTS. Portage clients ask with If-Modified-Since = their TIMESTAMP
// + 5 s, so after a burst of changes less than 6 s apart some clients would
// keep their index for ever; a later TIMESTAMP makes them all fetch again.
func (s *Store) Settle(ctx context.Context, minTS int64) error {
	return s.DB.Tx(ctx, func(tx *Tx) error {
		if err := tx.SetSetting("min_timestamp", minTS); err != nil {
			return err
		}
		return commitChange(tx)
	})
}
