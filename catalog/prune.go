package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"pkgdirfs/layout"
)

// PrunePolicy says which builds go: all but the Keep newest of each CPV
// (newest as Portage chooses: BUILD_TIME, then BUILD_ID), counted per
// distinct USE set with PerUse, and of those only the ones built before
// Before (unix seconds) when it is set. Keep 0 with Before set removes
// every build older than Before; Keep 0 without Before removes nothing.
type PrunePolicy struct {
	Keep   int
	PerUse bool
	Before int64
}

func (p PrunePolicy) active() bool { return p.Keep > 0 || p.Before != 0 }

// UseSet is the USE value of an instance as a set, written in one canonical
// way: the key --per-use groups by.
func UseSet(use string) string {
	f := strings.Fields(use)
	slices.Sort(f)
	return strings.Join(slices.Compact(f), " ")
}

// SelectPrune returns the package instances the policy removes from insts
// (any CPVs, in any order; placeholders are neither counted nor removed),
// sorted by CPV, then oldest first. useOf gives an instance's USE value
// (only asked with PerUse); protected instances are never removed, though
// they count among the newest.
func SelectPrune(insts []Instance, p PrunePolicy, useOf func(*Instance) string, protected func(*Instance) bool) []Instance {
	if !p.active() {
		return nil
	}
	groups := map[string][]*Instance{}
	for i := range insts {
		in := &insts[i]
		if in.Placeholder {
			continue
		}
		key := in.CPV
		if p.PerUse {
			key += "\x00" + UseSet(useOf(in))
		}
		groups[key] = append(groups[key], in)
	}
	var out []Instance
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		sort.Slice(g, func(i, j int) bool {
			return layout.Newer(g[i].BuildTime, g[i].BuildID, g[j].BuildTime, g[j].BuildID)
		})
		for i := len(g) - 1; i >= p.Keep; i-- {
			in := g[i]
			if p.Before != 0 && in.BuildTime >= p.Before {
				continue
			}
			if protected != nil && protected(in) {
				continue
			}
			out = append(out, *in)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CPV != out[j].CPV {
			return out[i].CPV < out[j].CPV
		}
		return layout.Newer(out[j].BuildTime, out[j].BuildID, out[i].BuildTime, out[i].BuildID)
	})
	return out
}

// RemoveBatch removes the instances with these ids in one transaction (a
// mount shows the whole batch at once) and returns those it removed; ids
// no longer present are skipped, and so are those a snapshot holds (held
// names their snapshots): prune is a policy, and a snapshot says the build
// is wanted, also one made since the caller chose. Their blobs are the
// caller's to drop (DropBlob) once nothing may read them.
func (s *Store) RemoveBatch(ctx context.Context, ids []int64) (removed []Instance, held map[int64][]string, err error) {
	err = s.DB.Tx(ctx, func(tx *Tx) error {
		removed = removed[:0]
		var err error
		if held, err = tx.SnapshotsHolding(ids); err != nil {
			return err
		}
		for _, id := range ids {
			if len(held[id]) > 0 {
				continue
			}
			old, err := tx.RemoveInstance(id)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					continue
				}
				return err
			}
			removed = append(removed, *old)
		}
		if len(removed) == 0 {
			return nil
		}
		return commitChange(tx)
	})
	if err != nil {
		return nil, nil, err
	}
	return removed, held, nil
}

// keepHook is the policy mount --keep sets, with what to do with the
// instances it removed once their transaction committed.
type keepHook struct {
	policy  PrunePolicy
	removed func([]Instance)
}

// SetKeepPolicy makes every transaction of this store that changes a CPV
// apply the policy (Keep > 0; Before is ignored) to that CPV before it
// commits: a PKGDIR served this way never holds more builds of a CPV than it
// allows. What it removes is logged and stays downloadable for the removal
// grace (its tombstone), as after rm; a build the same transaction added
// was never served and goes at once.
// Keep 0 turns it off.
func (s *Store) SetKeepPolicy(p PrunePolicy) {
	if p.Keep <= 0 {
		s.DB.keep.Store(nil)
		return
	}
	p.Before = 0
	s.DB.keep.Store(&keepHook{policy: p, removed: func(insts []Instance) {
		for i := range insts {
			in := &insts[i]
			s.log.Info("removed by the keep policy", "cpv", in.CPV, "build_id", in.BuildID,
				"path", layout.MultiPath(in.Category, in.PF, in.BuildID, layout.Format(in.Format)), "size", in.Size)
			// Kept while its tombstone names it (a build never served
			// has none).
			s.DropBlob(context.Background(), in.Blob)
		}
	}})
}

// applyKeepPolicy prunes, by the store's keep policy, the CPVs this
// transaction touched. It reads only those CPVs, through the (cpv,
// build_id) index: its cost is that of the change, not of the catalog.
func (tx *Tx) applyKeepPolicy() error {
	if tx.db == nil {
		return nil
	}
	h := tx.db.keep.Load()
	if h == nil || len(tx.touched) == 0 {
		return nil
	}
	var removed []Instance
	for _, cpv := range slices.Sorted(maps.Keys(tx.touched)) {
		if cpv == HeaderChange {
			continue
		}
		insts, err := tx.InstancesByCPV(cpv)
		if err != nil {
			return err
		}
		n := 0
		for i := range insts {
			if !insts[i].Placeholder {
				n++
			}
		}
		if n <= h.policy.Keep {
			continue
		}
		var metaErr error
		useOf := func(in *Instance) string {
			v, err := tx.MetaValue(in.ID, "USE")
			if err != nil && metaErr == nil {
				metaErr = err
			}
			return v
		}
		drop := SelectPrune(insts, h.policy, useOf, nil)
		if metaErr != nil {
			return metaErr
		}
		for _, in := range drop {
			old, err := tx.RemoveInstance(in.ID)
			if err != nil {
				return fmt.Errorf("catalog: keep policy: %w", err)
			}
			removed = append(removed, *old)
		}
	}
	if len(removed) > 0 {
		tx.afterCommit = append(tx.afterCommit, func() { h.removed(removed) })
	}
	return nil
}
