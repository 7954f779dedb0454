package catalog

import (
	"context"
	"slices"
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

// removedGrace is the removal grace the mount serving this catalog set
// (SetRemovedGrace); 0 if none ever did.
func removedGrace(s Snapshot) (time.Duration, error) {
	ns, _, err := s.Setting("removed_grace_ns")
	return time.Duration(ns), err
}

// SetRemovedGrace records how long a removed build stays downloadable:
// every removal from then on, by any process (rm through the mount, prune,
// the keep policy), writes a tombstone for that long.
func (s *Store) SetRemovedGrace(ctx context.Context, d time.Duration) error {
	return s.DB.SetRemovedGrace(ctx, d)
}

// SetRemovedGrace: see Store.SetRemovedGrace.
func (db *DB) SetRemovedGrace(ctx context.Context, d time.Duration) error {
	return db.Tx(ctx, func(tx *Tx) error { return tx.SetSetting("removed_grace_ns", int64(d)) })
}

// tombstone records old, just removed under name by client, for the
// removal grace.
func (tx *Tx) tombstone(old *Instance, name, client string) error {
	if old.Placeholder || old.Blob == "" {
		return nil
	}
	grace, err := removedGrace(tx)
	if err != nil || grace <= 0 {
		return err
	}
	now := time.Now().UnixNano()
	t := &Tombstone{Instance: *old, RemovedAs: name, RemovedBy: client, RemovedNs: now, UntilNs: now + int64(grace)}
	t.Meta = nil
	return tx.InsertTombstone(t)
}

// spendID records that build id of cpv named these bytes: it is never
// given to other bytes, and the same bytes coming back get it again.
func (tx *Tx) spendID(cpv string, id int64, sha256 string) error {
	if id <= 0 || sha256 == "" {
		return nil
	}
	return tx.SpendID(cpv, id, sha256)
}

// dropTombstonesOf ends the grace of the tombstones of cpv with these
// bytes: the build is back (committed again, same bytes).
func (tx *Tx) dropTombstonesOf(cpv, sha256 string) error {
	return tx.dropTombstones(cpv, sha256, 0)
}

// dropTombstonesAt ends the grace of a tombstone at build id of cpv: a
// build moved back to an id it had.
func (tx *Tx) dropTombstonesAt(cpv string, id int64) error {
	return tx.dropTombstones(cpv, "", id)
}

func (tx *Tx) dropTombstones(cpv, sha256 string, id int64) error {
	n, err := tx.DeleteTombstonesOf(cpv, sha256, id)
	if err != nil {
		return err
	}
	if n > 0 {
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
		s.DropBlobs(ctx, blobs)
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
	due, err := read(ctx, db, func(v *View) (bool, error) { return v.TombstonesDue(now.UnixNano()) })
	if err != nil || !due {
		return nil, err
	}
	var blobs []string
	err = db.Tx(ctx, func(tx *Tx) error {
		blobs = blobs[:0]
		ts, err := tx.ExpiredTombstones(now.UnixNano(), max)
		if err != nil || len(ts) == 0 {
			return err
		}
		for i := range ts {
			if err := tx.DeleteTombstone(ts[i].ID); err != nil {
				return err
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
func (s *Store) DropBlob(ctx context.Context, blob string) { s.DropBlobs(ctx, []string{blob}) }

// DropBlobs is DropBlob of several, in one transaction: the check and the
// removal hold the write lock, because a commit of the same bytes (by this
// process or another host) places the blob inside its own transaction: it
// can't be placed, and named, between the check and the removal.
func (s *Store) DropBlobs(ctx context.Context, names []string) {
	names = slices.DeleteFunc(slices.Clone(names), func(b string) bool { return b == "" })
	if len(names) == 0 {
		return
	}
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		for _, blob := range names {
			used, err := tx.BlobInUse(blob)
			if err != nil {
				return err
			}
			if used {
				continue
			}
			if err := s.blobs.Remove(blob); err != nil {
				s.log.Warn("removing blob", "blob", blob, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		// Kept: an orphan at worst, which verify reports.
		s.log.Warn("removing blobs no build names any more", "blobs", len(names), "err", err)
	}
}
