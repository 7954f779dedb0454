package catalog

import "context"

// Reader is one consistent snapshot of the catalog: every read a mount's
// tree and index need. A backend implements it (SQLite: one WAL read
// transaction), so the tree never knows which.
type Reader interface {
	Generation() (int64, error)
	LastTimestamp() (int64, error)
	Header() (map[string]string, error)
	// InstanceIDHigh is at least the number of instances (a size hint).
	InstanceIDHigh() (int64, error)
	// CategoryNear is "cat/" of the instance at about position n in cpv
	// order ("" if none): a split point for loading in two halves.
	CategoryNear(n int64) (string, error)
	Instances() ([]Instance, error)
	// The ForEach reads stream instances in (cpv, build id) order.
	ForEachInstance(fn func(inst *Instance) error) error
	ForEachInstanceBelow(cpv string, fn func(inst *Instance) error) error
	ForEachInstanceFrom(cpv string, fn func(inst *Instance) error) error
	// ForEachIndexed streams the packages (no placeholders) with their
	// index values.
	ForEachIndexed(fn func(inst *Instance) error) error
	// Changes names the CPVs (or HeaderChange) changed after generation
	// since; ErrChangesPruned if the change log no longer reaches back.
	Changes(since int64) ([]string, error)
	// GroupWithMeta is every instance of cpv with its index values.
	GroupWithMeta(cpv string) ([]Instance, error)
	Tombstones() ([]Tombstone, error)
	// AnyTombstones tells whether any removed build is in its grace.
	AnyTombstones() (bool, error)
	TombstonesOf(cpv string) ([]Tombstone, error)
}

// Source opens snapshots of a catalog: Read runs fn on one.
type Source interface {
	Read(ctx context.Context, fn func(r Reader) error) error
}

var _ Source = (*DB)(nil)

// Read runs fn on one consistent snapshot (View).
func (db *DB) Read(ctx context.Context, fn func(r Reader) error) error {
	return db.View(ctx, func(v *View) error { return fn(v) })
}
