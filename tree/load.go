package tree

import (
	"context"
	"errors"
	"maps"
	"slices"

	"pkgdirfs/catalog"
)

// Load builds the model of the catalog's current generation: the tree now,
// the index when BuildIndex is called.
func Load(ctx context.Context, db *catalog.DB, lay Layouts) (*Model, error) {
	m := NewModel(lay)
	if err := m.Load(ctx, db); err != nil {
		return nil, err
	}
	return m, nil
}

// Load fills a new model (set its OnConflict first) from the catalog's
// current generation.
func (m *Model) Load(ctx context.Context, db *catalog.DB) error {
	return db.View(ctx, func(v *catalog.View) error {
		gen, err := v.Generation()
		if err != nil {
			return err
		}
		ts, err := v.LastTimestamp()
		if err != nil {
			return err
		}
		n, err := v.InstanceIDHigh()
		if err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		// Sized once: growing maps of a million entries step by step
		// rehashes them again and again.
		m.files = make(map[int64]*File, n)
		m.groups = make(map[string]*group, n/2)
		if err := m.loadFrom(v); err != nil {
			return err
		}
		m.gen, m.mtimeNs = gen, ts*1e9
		return nil
	})
}

// loadFrom fills an empty model from every instance of v, streamed.
// The catalog is read on one goroutine while another builds the tree: at
// 1,000,000 instances each takes seconds, and a mount waits for both.
func (m *Model) loadFrom(v *catalog.View) error {
	batches := make(chan []catalog.Instance, 8)
	built := make(chan struct{})
	go func() {
		defer close(built)
		for batch := range batches {
			m.addGroups(batch)
		}
	}()
	// Batches hold whole groups; their capacity leaves room for the last
	// one, so that they are not copied while they grow.
	const batchLen = 512
	batch := make([]catalog.Instance, 0, 2*batchLen)
	err := v.ForEachInstance(func(in *catalog.Instance) error {
		if len(batch) >= batchLen && batch[len(batch)-1].CPV != in.CPV {
			batches <- batch
			batch = make([]catalog.Instance, 0, 2*batchLen)
		}
		batch = append(batch, *in)
		return nil
	})
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	<-built
	m.forgetJournal()
	return err
}

// loadAll fills an empty model from every instance (ordered by cpv).
func (m *Model) loadAll(insts []catalog.Instance) {
	m.addGroups(insts)
	m.forgetJournal()
}

// addGroups adds to a model being loaded the instances of whole CPVs, in cpv
// order, with their names. In cpv order the first claimant of an All/ name
// keeps it, so each group's names are final when it is added.
func (m *Model) addGroups(insts []catalog.Instance) {
	for i := 0; i < len(insts); {
		j := i
		for j < len(insts) && insts[j].CPV == insts[i].CPV {
			j++
		}
		g := newGroup(insts[i].CPV, insts[i:j])
		m.register(g)
		m.eachName(g, func(p string, f *File) { m.linkPath(p, f, nil) })
		i = j
	}
}

// forgetJournal drops what a load journaled: nothing was cached before it.
func (m *Model) forgetJournal() { m.journal = journal{seq: m.journal.seq} }

// Catchup applies the catalog's changes since the model's generation: only
// the CPVs the change log names are read again. It reports whether anything
// changed.
func (m *Model) Catchup(ctx context.Context, db *catalog.DB) (bool, error) {
	m.catchMu.Lock()
	defer m.catchMu.Unlock()
	return m.catchup(ctx, db, m.Gen())
}

func (m *Model) catchup(ctx context.Context, db *catalog.DB, since int64) (changed bool, err error) {
	err = db.View(ctx, func(v *catalog.View) error {
		gen, err := v.Generation()
		if err != nil {
			return err
		}
		if gen == since && m.Gen() == gen {
			return nil
		}
		names, err := v.Changes(since)
		if errors.Is(err, catalog.ErrChangesPruned) {
			// Too far behind for the log: every CPV, ours and the catalog's.
			names, err = m.allNames(v)
		}
		if err != nil {
			return err
		}
		header := false
		loaded := make(map[string][]catalog.Instance, len(names))
		for _, n := range names {
			if n == catalog.HeaderChange {
				header = true
				continue
			}
			if loaded[n], err = v.GroupWithMeta(n); err != nil {
				return err
			}
		}
		ts, err := v.LastTimestamp()
		if err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		olds := map[string]*group{}
		render := map[string]bool{}
		for _, cpv := range slices.Sorted(maps.Keys(loaded)) {
			old, reindex := m.setGroup(cpv, loaded[cpv])
			olds[cpv] = old
			render[cpv] = true
			for _, g := range reindex {
				render[g.cpv] = true
			}
		}
		// Entries render once every group is applied: an entry's PATH may
		// depend on other CPVs (All/ names).
		if m.idx != nil {
			var err error
			if header {
				err = m.idx.rebuild(m, v)
			} else {
				err = m.idx.reindex(m, render, olds, loaded, v)
			}
			if err != nil {
				// The tree goes on: names must keep working when the
				// index's store fails (a full disk). The index is built
				// again when next asked for.
				m.idx.p.Close()
				m.idx = nil
				if m.indexErrLog != nil {
					m.indexErrLog(err)
				}
			}
		}
		m.gen = gen
		if ts*1e9 > m.mtimeNs {
			m.mtimeNs = ts * 1e9
		}
		changed = true
		return nil
	})
	return changed, err
}

func (m *Model) allNames(v *catalog.View) ([]string, error) {
	insts, err := v.Instances()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{catalog.HeaderChange: true}
	for i := range insts {
		set[insts[i].CPV] = true
	}
	m.mu.RLock()
	for cpv := range m.groups {
		set[cpv] = true
	}
	m.mu.RUnlock()
	return slices.Sorted(maps.Keys(set)), nil
}
