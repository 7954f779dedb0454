package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A snapshot is a frozen set of package instances: their ids, no bytes
// copied, made in one transaction. It is immutable: whatever later
// removes or changes a member's live row (rm, prune, the keep policy, a
// move to another build id, chmod) first copies that row and its metadata
// aside (the backend's DeleteInstance and SetInstanceAttrs do, so no path
// can forget), the snapshot reads the copy, and a blob a snapshot holds is
// never deleted (BlobInUse counts the copies). Making one is O(members);
// every later change costs O(change).

// SnapshotInfo is one snapshot.
type SnapshotInfo struct {
	ID         int64
	Name       string
	CreatedNs  int64
	Query      string // the query as given ("" for every package)
	Generation int64  // the catalog generation it froze
	Packages   int64  // how many packages it holds
}

// ErrSnapshotExists: the name is taken.
var ErrSnapshotExists = errors.New("a snapshot of that name exists")

// Matcher selects the packages a snapshot takes (catalog/query's
// Selection is one): Scopes narrows the read (nil: everything), Match
// decides on each package, its Meta loaded.
type Matcher interface {
	Scopes() []Scope
	Match(inst *Instance) bool
}

// GroupMatcher is a Matcher that may choose among the builds of a CPV (a
// query's --keep N): when Grouped, Filter gets every build of one CPV, in
// build id order with Meta, and returns those taken; Match is not asked.
type GroupMatcher interface {
	Matcher
	Grouped() bool
	Filter(group []Instance) []Instance
}

// CheckSnapshotName refuses a name that could not be a file name or a
// word on a command line: letters, digits, '.', '_' and '-', not starting
// with '.', at most 128 bytes.
func CheckSnapshotName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("bad snapshot name %q: want 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("bad snapshot name %q: want 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
		}
	}
	return nil
}

// noSnapshotError says which snapshot is unknown; it is ErrNotFound.
type noSnapshotError struct{ name string }

func (e noSnapshotError) Error() string { return fmt.Sprintf("no snapshot named %q", e.name) }
func (e noSnapshotError) Unwrap() error { return ErrNotFound }

func noSnapshot(name string) error { return noSnapshotError{name} }

// snapshotByName is s's snapshot of that name, or an error naming it.
func snapshotByName(s Snapshot, name string) (*SnapshotInfo, error) {
	info, err := s.SnapshotByName(name)
	if errors.Is(err, ErrNotFound) {
		return nil, noSnapshot(name)
	}
	return info, err
}

// CreateSnapshot freezes the packages m selects (every package when m is
// nil; a Grouped GroupMatcher chooses among each CPV's builds) under name, in one write transaction, and records query, the text
// m was read from. A taken name is ErrSnapshotExists, and changes nothing;
// of two commands making one name at once, one wins and the other hears
// ErrSnapshotExists (the name is UNIQUE in the catalog).
func (db *DB) CreateSnapshot(ctx context.Context, name, query string, m Matcher) (*SnapshotInfo, error) {
	if err := CheckSnapshotName(name); err != nil {
		return nil, err
	}
	var info *SnapshotInfo
	err := db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.SnapshotByName(name); err == nil {
			return fmt.Errorf("snapshot %q: %w", name, ErrSnapshotExists)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		gen, err := tx.Generation()
		if err != nil {
			return err
		}
		info = &SnapshotInfo{Name: name, CreatedNs: time.Now().UnixNano(), Query: query, Generation: gen}
		if info.ID, err = tx.InsertSnapshot(info); err != nil {
			if errors.Is(err, ErrConflict) {
				return fmt.Errorf("snapshot %q: %w", name, ErrSnapshotExists)
			}
			return err
		}
		if m == nil {
			info.Packages, err = tx.AddAllPackages(info.ID)
			if err != nil {
				return err
			}
		} else {
			// Collected, then written: a server connection runs one
			// statement at a time. 8 bytes a package.
			var ids []int64
			stream := func(each func(*Instance) error) error { return forEachInScopes(tx, m.Scopes(), each) }
			var err error
			if gm, ok := m.(GroupMatcher); ok && gm.Grouped() {
				err = EachCPV(stream, func(group []Instance) error {
					for _, in := range gm.Filter(group) {
						ids = append(ids, in.ID)
					}
					return nil
				})
			} else {
				err = stream(func(inst *Instance) error {
					if m.Match(inst) {
						ids = append(ids, inst.ID)
					}
					return nil
				})
			}
			if err != nil {
				return err
			}
			if err := tx.AddSnapshotMembers(info.ID, ids); err != nil {
				return err
			}
			info.Packages = int64(len(ids))
		}
		return tx.SetSnapshotPackages(info.ID, info.Packages)
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

// Snapshots lists every snapshot by name.
func (db *DB) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	return read(ctx, db, func(v *View) ([]SnapshotInfo, error) { return v.Snapshots() })
}

// SnapshotMembers streams the packages of snapshot name as it froze them,
// with Meta, in (cpv, build id) order, from one read snapshot of the
// catalog; info is the snapshot's row.
func (db *DB) SnapshotMembers(ctx context.Context, name string, fn func(info *SnapshotInfo, inst *Instance) error) error {
	return db.View(ctx, func(v *View) error {
		info, err := snapshotByName(v, name)
		if err != nil {
			return err
		}
		return v.ForEachSnapshotMember(info, true, func(inst *Instance) error { return fn(info, inst) })
	})
}

// SnapshotsHolding names, for each of ids a snapshot holds, the snapshots
// holding it.
func (db *DB) SnapshotsHolding(ctx context.Context, ids []int64) (map[int64][]string, error) {
	return read(ctx, db, func(v *View) (map[int64][]string, error) { return v.SnapshotsHolding(ids) })
}

// CPVDiff is what changed of one CPV from snapshot A to B: builds only B
// holds (Added), only A holds (Removed), and builds of one build id in
// both whose bytes differ (Changed: A's, then B's).
type CPVDiff struct {
	CPV            string
	Added, Removed []Instance
	Changed        [][2]Instance
}

// SnapshotDiff is the difference of two snapshots, by CPV in byte order.
type SnapshotDiff struct {
	A, B SnapshotInfo
	CPVs []CPVDiff
}

// DiffSnapshots compares snapshots a and b (read in one snapshot of the
// catalog); Meta is not kept.
func (db *DB) DiffSnapshots(ctx context.Context, a, b string) (*SnapshotDiff, error) {
	type key struct {
		cpv string
		id  int64
	}
	var d *SnapshotDiff
	err := db.View(ctx, func(v *View) error {
		ia, err := snapshotByName(v, a)
		if err != nil {
			return err
		}
		ib, err := snapshotByName(v, b)
		if err != nil {
			return err
		}
		d = &SnapshotDiff{A: *ia, B: *ib}
		inA := map[key]Instance{}
		var order []key // A's, in (cpv, build id) order
		err = v.ForEachSnapshotMember(ia, true, func(inst *Instance) error {
			inst.Meta = nil
			k := key{inst.CPV, inst.BuildID}
			inA[k] = *inst
			order = append(order, k)
			return nil
		})
		if err != nil {
			return err
		}
		byCPV := map[string]*CPVDiff{}
		at := func(cpv string) *CPVDiff {
			c := byCPV[cpv]
			if c == nil {
				c = &CPVDiff{CPV: cpv}
				byCPV[cpv] = c
			}
			return c
		}
		seen := map[key]bool{}
		err = v.ForEachSnapshotMember(ib, true, func(inst *Instance) error {
			inst.Meta = nil
			k := key{inst.CPV, inst.BuildID}
			old, ok := inA[k]
			switch {
			case !ok:
				at(k.cpv).Added = append(at(k.cpv).Added, *inst)
			case old.SHA256 != inst.SHA256 || old.Size != inst.Size:
				at(k.cpv).Changed = append(at(k.cpv).Changed, [2]Instance{old, *inst})
			}
			seen[k] = true
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range order {
			if !seen[k] {
				at(k.cpv).Removed = append(at(k.cpv).Removed, inA[k])
			}
		}
		for _, c := range byCPV {
			d.CPVs = append(d.CPVs, *c)
		}
		sortCPVDiffs(d.CPVs)
		return nil
	})
	return d, err
}

func sortCPVDiffs(cs []CPVDiff) {
	slices.SortFunc(cs, func(a, b CPVDiff) int { return strings.Compare(a.CPV, b.CPV) })
}

// DeleteSnapshot deletes snapshot name in one transaction, and then the
// blobs only its held copies named (DropBlobs checks each again under the
// write lock: a tombstone in its grace, another snapshot's copy or a live
// build keeps it). Unknown, it is an error wrapping ErrNotFound.
func (s *Store) DeleteSnapshot(ctx context.Context, name string) error {
	var blobs []string
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		info, err := snapshotByName(tx, name)
		if err != nil {
			return err
		}
		// Clients follow a channel: its snapshot goes only after it moves.
		chans, err := channelsOn(tx, info.ID)
		if err != nil {
			return err
		}
		if len(chans) > 0 {
			return fmt.Errorf("snapshot %q: %w: %s (move or delete the channel first)", name, ErrSnapshotInUse, strings.Join(chans, ", "))
		}
		blobs, err = tx.DeleteSnapshot(info.ID)
		return err
	})
	if err != nil {
		return err
	}
	s.DropBlobs(ctx, blobs)
	return nil
}
