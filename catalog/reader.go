package catalog

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
)

// Reader is one consistent snapshot of the catalog: every read a mount's
// tree and index need, so the tree never knows which backend serves them.
type Reader interface {
	TreeReads
	Generation() (int64, error)
	LastTimestamp() (int64, error)
	// GroupWithMeta is every instance of cpv with its index values.
	GroupWithMeta(cpv string) ([]Instance, error)
	// CatalogID tells this catalog from every other (0: none given yet,
	// see EnsureID).
	CatalogID() (int64, error)
}

// Source opens snapshots of a catalog: Read runs fn on one.
type Source interface {
	Read(ctx context.Context, fn func(r Reader) error) error
}

var (
	_ Source = (*DB)(nil)
	_ Reader = (*View)(nil)
	_ Reader = (*Tx)(nil)
)

// Read runs fn on one consistent snapshot (View).
func (db *DB) Read(ctx context.Context, fn func(r Reader) error) error {
	return db.View(ctx, func(v *View) error { return fn(v) })
}

// The reads made of a backend's: the same for a View and a Tx.

func settingOf(s Snapshot, key string) (int64, error) {
	v, ok, err := s.Setting(key)
	if err == nil && !ok {
		err = fmt.Errorf("catalog: setting %s missing", key)
	}
	return v, err
}

func changes(s Snapshot, since int64) ([]string, error) {
	floor, err := settingOf(s, "changes_floor")
	if err != nil {
		return nil, err
	}
	if since < floor {
		return nil, ErrChangesPruned
	}
	return s.Changes(since)
}

// catalogIDSetting names the catalog's random identity: what a mount's
// index cache is valid for (a cache found in a shared or copied blob
// directory may be another catalog's).
const catalogIDSetting = "catalog_id"

func catalogID(s Snapshot) (int64, error) {
	v, _, err := s.Setting(catalogIDSetting)
	return v, err
}

func groupWithMeta(s Snapshot, cpv string) ([]Instance, error) {
	insts, err := s.InstancesByCPV(cpv)
	if err != nil {
		return nil, err
	}
	for i := range insts {
		if insts[i].Placeholder {
			continue
		}
		if insts[i].Meta, err = s.InstanceMeta(insts[i].ID); err != nil {
			return nil, err
		}
	}
	return insts, nil
}

// forEachInScopes streams the package instances (no placeholders) of
// every scope, with Meta, each once: a query for a few packages reads
// those, not the catalog. Without scopes, or with one of the whole
// catalog, it is ForEachIndexed.
func forEachInScopes(s Snapshot, scopes []Scope, fn func(inst *Instance) error) error {
	if len(scopes) == 0 || slices.ContainsFunc(scopes, func(s Scope) bool { return s.Category == "" }) {
		return s.ForEachIndexed(fn)
	}
	// A package inside a whole category of the same query is read once.
	cats := map[string]bool{}
	for _, sc := range scopes {
		if sc.PN == "" {
			cats[sc.Category] = true
		}
	}
	seen := map[Scope]bool{}
	for _, sc := range scopes {
		if seen[sc] || (sc.PN != "" && cats[sc.Category]) {
			continue
		}
		seen[sc] = true
		if err := s.ForEachInScope(sc, fn); err != nil {
			return err
		}
	}
	return nil
}

// EachCPV cuts stream, which gives the builds of each CPV together in
// build id order (as ForEachInScopes does), into the builds of each CPV
// and calls fn with them; fn must not keep group.
func EachCPV(stream func(each func(inst *Instance) error) error, fn func(group []Instance) error) error {
	var group []Instance
	err := stream(func(inst *Instance) error {
		if len(group) > 0 && group[0].CPV != inst.CPV {
			if err := fn(group); err != nil {
				return err
			}
			group = group[:0]
		}
		group = append(group, *inst)
		return nil
	})
	if err == nil && len(group) > 0 {
		err = fn(group)
	}
	return err
}

// Generation returns the generation counter.
func (v *View) Generation() (int64, error) { return settingOf(v, "generation") }

// LastTimestamp returns the last TIMESTAMP handed out.
func (v *View) LastTimestamp() (int64, error) { return settingOf(v, "last_timestamp") }

// Changes returns the names (CPVs, or HeaderChange) changed by the
// generations after since, up to and including the view's generation, each
// once, in byte order. ErrChangesPruned if those rows are gone.
func (v *View) Changes(since int64) ([]string, error) { return changes(v.Snapshot, since) }

// GroupWithMeta returns the instances of one cpv (placeholders included)
// with their Meta, by build_id: what a mount needs to re-render that CPV.
func (v *View) GroupWithMeta(cpv string) ([]Instance, error) { return groupWithMeta(v.Snapshot, cpv) }

// CatalogID is the catalog's identity, 0 if it has none yet.
func (v *View) CatalogID() (int64, error) { return catalogID(v.Snapshot) }

// ForEachInScopes: see forEachInScopes.
func (v *View) ForEachInScopes(scopes []Scope, fn func(inst *Instance) error) error {
	return forEachInScopes(v.Snapshot, scopes, fn)
}

// Generation returns the generation counter as this transaction sees it.
func (tx *Tx) Generation() (int64, error) { return settingOf(tx, "generation") }

// LastTimestamp returns the last TIMESTAMP handed out.
func (tx *Tx) LastTimestamp() (int64, error) { return settingOf(tx, "last_timestamp") }

// Changes: see View.Changes.
func (tx *Tx) Changes(since int64) ([]string, error) { return changes(tx.WriteTx, since) }

// GroupWithMeta: see View.GroupWithMeta.
func (tx *Tx) GroupWithMeta(cpv string) ([]Instance, error) { return groupWithMeta(tx.WriteTx, cpv) }

// CatalogID is the catalog's identity, 0 if it has none yet.
func (tx *Tx) CatalogID() (int64, error) { return catalogID(tx.WriteTx) }

// EnsureID gives the catalog a random identity if it has none, and returns
// it. Set once, by the first writer that opens the catalog; a copy of the
// catalog keeps it (its caches stay valid for it).
func (db *DB) EnsureID(ctx context.Context) (int64, error) {
	// A read first: opening a catalog must not wait for its writer.
	id, err := read(ctx, db, func(v *View) (int64, error) { return v.CatalogID() })
	if err != nil || id != 0 {
		return id, err
	}
	err = db.Tx(ctx, func(tx *Tx) error {
		var err error
		if id, err = tx.CatalogID(); err != nil || id != 0 {
			return err
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = int64(binary.LittleEndian.Uint64(b[:]) >> 1) // positive
		if id == 0 {
			id = 1
		}
		return tx.SetSetting(catalogIDSetting, id)
	})
	return id, err
}
