package tree

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Load builds the model of the catalog's current generation: the tree now,
// the index when BuildIndex is called.
func Load(ctx context.Context, db catalog.Source, lay Layouts) (*Model, error) {
	m := NewModel(lay)
	if err := m.Load(ctx, db); err != nil {
		return nil, err
	}
	return m, nil
}

// Load fills a new model (set its OnConflict first) from the catalog's
// current generation.
func (m *Model) Load(ctx context.Context, db catalog.Source) error {
	return db.Read(ctx, func(v catalog.Reader) error {
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
		m.groups = make(map[string]*group, n/2)
		if m.lay.Legacy {
			m.legacy = make(map[string]*claim, n/2)
		}
		split := ""
		if n >= splitLoadMin {
			if split, err = v.CategoryNear(n / 2); err != nil {
				return err
			}
		}
		if split == "" {
			err = m.loadFrom(v)
		} else {
			err = m.loadSplit(ctx, db, v, gen, split)
		}
		if err != nil {
			return err
		}
		tombs, err := v.Tombstones()
		if err != nil {
			return err
		}
		for i := 0; i < len(tombs); {
			j := i + 1
			for j < len(tombs) && tombs[j].CPV == tombs[i].CPV {
				j++
			}
			m.setRemoved(tombs[i].CPV, tombs[i:j])
			i = j
		}
		m.journal = journal{seq: m.journal.seq} // nothing was cached before the load
		m.gen, m.mtimeNs = gen, max(m.mtimeNs, ts*1e9)
		m.contentGen = gen
		return nil
	})
}

// splitLoadMin is the catalog size (by instance id) from which a load reads
// the catalog in two halves at once: the catalog's scan is most of a load, and it
// runs on one core per read.
var splitLoadMin int64 = 50_000

// beforeSecondView runs before a split load opens its second view (tests
// commit there, to make the views differ).
var beforeSecondView = func() {}

// loadFrom fills an empty model from every instance of v, streamed.
func (m *Model) loadFrom(v catalog.Reader) error {
	return m.loadStreams(func(send func(*catalog.Instance) error) error { return v.ForEachInstance(send) })
}

// loadSplit is loadFrom reading the CPVs from split on in a second view of
// the same generation, at the same time; when the catalog moved on between
// the two views, one reads everything.
func (m *Model) loadSplit(ctx context.Context, db catalog.Source, v catalog.Reader, gen int64, split string) error {
	genB := make(chan int64, 1)
	// The second half's reader, given the load's send; closed: not wanted.
	sendB := make(chan func(*catalog.Instance) error)
	errB := make(chan error, 1)
	go func() {
		beforeSecondView()
		errB <- db.Read(ctx, func(vb catalog.Reader) error {
			g, err := vb.Generation()
			if err != nil {
				g = -1
			}
			genB <- g
			send, ok := <-sendB
			if !ok {
				return nil
			}
			return vb.ForEachInstanceFrom(split, send)
		})
	}()
	select {
	case g := <-genB:
		if g != gen {
			close(sendB)
			if err := <-errB; err != nil {
				return err
			}
			return m.loadFrom(v)
		}
	case err := <-errB: // no second view
		if err == nil {
			err = errors.New("tree: the second view of a load ended early")
		}
		return err
	}
	return m.loadStreams(
		func(send func(*catalog.Instance) error) error { return v.ForEachInstanceBelow(split, send) },
		func(send func(*catalog.Instance) error) error {
			sendB <- send
			return <-errB
		})
}

// loadStreams fills an empty model from streams of instances, each in cpv
// order and holding whole categories that no other stream holds. They are
// read on their own goroutines while one more builds the tree: at 1,000,000
// instances each takes a second or two, and a mount waits for all.
func (m *Model) loadStreams(streams ...func(send func(*catalog.Instance) error) error) error {
	batches := make(chan []catalog.Instance, 8*len(streams))
	built := make(chan struct{})
	go func() {
		defer close(built)
		for batch := range batches {
			m.addGroups(batch)
		}
	}()
	errs := make(chan error, len(streams))
	for _, stream := range streams {
		go func() {
			// Batches hold whole groups; their capacity leaves room for
			// the last one, so that they are not copied while they grow.
			const batchLen = 512
			batch := make([]catalog.Instance, 0, 2*batchLen)
			err := stream(func(in *catalog.Instance) error {
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
			errs <- err
		}()
	}
	var err error
	for range streams {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	close(batches)
	<-built
	m.finishLoad()
	return err
}

// loadAll fills an empty model from every instance (ordered by cpv).
func (m *Model) loadAll(insts []catalog.Instance) {
	m.addGroups(insts)
	m.finishLoad()
}

// addGroups adds to a model being loaded the instances of whole CPVs, in cpv
// order within each category (categories may come in any order). Names are
// only counted: every top directory starts lazy (materialize).
func (m *Model) addGroups(insts []catalog.Instance) {
	for i := 0; i < len(insts); {
		j := i
		for j < len(insts) && insts[j].CPV == insts[i].CPV {
			j++
		}
		g := newGroup(insts[i].CPV, insts[i:j])
		m.register(g)
		// eachName's names in g's category: every file (multi), the
		// newest of each format (flat).
		n := 0
		if m.lay.Multi {
			n += len(g.files)
		}
		if m.lay.Flat {
			for _, f := range g.newest {
				if f != nil {
					n++
				}
			}
		}
		if n > 0 {
			m.addTop(g.cat, n)
		}
		i = j
	}
}

// finishLoad counts the All/ names, known only once every claimant is in,
// and drops what the load journaled: nothing was cached before it.
func (m *Model) finishLoad() {
	if m.lay.Legacy && len(m.legacy) > 0 {
		m.addTop("All", len(m.legacy))
	}
	m.journal = journal{seq: m.journal.seq}
}

// Catchup applies the catalog's changes since the model's generation: only
// the CPVs the change log names are read again. It reports whether anything
// changed.
func (m *Model) Catchup(ctx context.Context, db catalog.Source) (bool, error) {
	m.catchMu.Lock()
	defer m.catchMu.Unlock()
	return m.catchup(ctx, db, m.Gen(), false)
}

// catchup applies the changes since generation since. wide: the index may
// be of another generation than the tree (BuildIndex), so entries whose
// PATH depends on other CPVs (an All/ name changing hands between the
// index's generation and the tree's) are rendered again too.
func (m *Model) catchup(ctx context.Context, db catalog.Source, since int64, wide bool) (changed bool, err error) {
	err = db.Read(ctx, func(v catalog.Reader) error {
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
		tombs := make(map[string][]catalog.Tombstone, len(names))
		// One look spares a query per changed CPV when no build is in its
		// grace (the usual case; an import into a mounted state changes
		// thousands of CPVs).
		anyTombs, err := v.AnyTombstones()
		if err != nil {
			return err
		}
		for _, n := range names {
			if n == catalog.HeaderChange {
				header = true
				continue
			}
			if loaded[n], err = v.GroupWithMeta(n); err != nil {
				return err
			}
			if !anyTombs {
				continue
			}
			if tombs[n], err = v.TombstonesOf(n); err != nil {
				return err
			}
		}
		ts, err := v.LastTimestamp()
		if err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		render := map[string]bool{}
		// A header written again with the same keys changes nothing shown.
		content := false
		if header {
			h, err := v.Header()
			if err != nil {
				return err
			}
			content = m.idx == nil || !maps.Equal(h, m.idx.header)
		}
		for _, cpv := range slices.Sorted(maps.Keys(loaded)) {
			if !content && !m.sameGroupLocked(cpv, loaded[cpv]) {
				content = true
			}
			m.setRemoved(cpv, tombs[cpv])
			_, reindex := m.setGroup(cpv, loaded[cpv])
			render[cpv] = true
			for _, g := range reindex {
				render[g.cpv] = true
			}
		}
		if wide && !m.lay.Multi && !m.lay.Flat && m.lay.Legacy {
			// Every claimant of an All/ name a changed CPV may have held
			// then or holds now (its PF's, either format).
			for cpv := range loaded {
				_, pf, _ := strings.Cut(cpv, "/")
				for _, f := range []layout.Format{layout.FormatXpak, layout.FormatGpkg} {
					for _, g := range m.legacy[layout.LegacyPath(pf, f)].ownersOrNil() {
						render[g.cpv] = true
					}
				}
			}
		}
		// Entries render once every group is applied: an entry's PATH may
		// depend on other CPVs (All/ names).
		if m.idx != nil {
			var err error
			if header {
				err = m.idx.rebuild(m, v)
			} else {
				err = m.idx.reindex(m, render, loaded, v)
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
		if content {
			m.contentGen = gen
		}
		if ts*1e9 > m.mtimeNs {
			m.mtimeNs = ts * 1e9
		}
		changed = true
		return nil
	})
	return changed, err
}

func (m *Model) allNames(v catalog.Reader) ([]string, error) {
	insts, err := v.Instances()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{catalog.HeaderChange: true}
	for i := range insts {
		set[insts[i].CPV] = true
	}
	tombs, err := v.Tombstones()
	if err != nil {
		return nil, err
	}
	for i := range tombs {
		set[tombs[i].CPV] = true
	}
	m.mu.RLock()
	for cpv := range m.groups {
		set[cpv] = true
	}
	for cpv := range m.removed.byCPV {
		set[cpv] = true
	}
	m.mu.RUnlock()
	return slices.Sorted(maps.Keys(set)), nil
}
