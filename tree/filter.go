package tree

import (
	"context"

	"pkgdirfs/catalog"
)

// A channel's tree is a Model like the mount's, loaded from a Source that
// shows only the channel's builds: the model, its index and its catchup
// stay one code, and a change reaches a live channel as it reaches the
// main tree, CPV by CPV (O(change)).

// GroupFilter decides which builds of one CPV a view shows: group is every
// package of the CPV (no placeholders) with Meta, in build-id order; it
// returns those shown, in that order.
type GroupFilter func(group []catalog.Instance) []catalog.Instance

// HeaderFilter gives the view's Packages header from the catalog's.
type HeaderFilter func(h map[string]string) map[string]string

// Filtered is src as a view shows it: only the builds filter keeps, no
// placeholders, no removed builds in their grace, and the header hf gives.
// A CPV is loaded whole before filter decides (a keep-N view needs its
// group), and the tree loads in one stream.
func Filtered(src catalog.Source, filter GroupFilter, hf HeaderFilter) catalog.Source {
	return &filteredSource{src: src, filter: filter, header: hf}
}

type filteredSource struct {
	src    catalog.Source
	filter GroupFilter
	header HeaderFilter
}

func (s *filteredSource) Read(ctx context.Context, fn func(r catalog.Reader) error) error {
	return s.src.Read(ctx, func(r catalog.Reader) error {
		return fn(&filteredReader{Reader: r, s: s})
	})
}

type filteredReader struct {
	catalog.Reader
	s *filteredSource
}

func (r *filteredReader) keep(group []catalog.Instance) []catalog.Instance {
	pkgs := group[:0:0]
	for i := range group {
		if !group[i].Placeholder {
			pkgs = append(pkgs, group[i])
		}
	}
	if len(pkgs) == 0 || r.s.filter == nil {
		return pkgs
	}
	return r.s.filter(pkgs)
}

func (r *filteredReader) Header() (map[string]string, error) {
	h, err := r.Reader.Header()
	if err != nil || r.s.header == nil {
		return h, err
	}
	return r.s.header(h), nil
}

// CategoryNear gives no split point: one stream, grouped by CPV.
func (r *filteredReader) CategoryNear(int64) (string, error) { return "", nil }

// InstanceIDHigh gives no size hint: the model sizes its maps by it, and a
// view may show a small part of the catalog.
func (r *filteredReader) InstanceIDHigh() (int64, error) { return 0, nil }

func (r *filteredReader) Instances() ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := r.ForEachIndexed(func(inst *catalog.Instance) error {
		out = append(out, *inst)
		return nil
	})
	return out, err
}

func (r *filteredReader) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(fn)
}

func (r *filteredReader) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(func(inst *catalog.Instance) error {
		if inst.CPV >= cpv {
			return nil
		}
		return fn(inst)
	})
}

func (r *filteredReader) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(func(inst *catalog.Instance) error {
		if inst.CPV < cpv {
			return nil
		}
		return fn(inst)
	})
}

// ForEachIndexed streams the kept builds, a CPV's group at a time.
func (r *filteredReader) ForEachIndexed(fn func(inst *catalog.Instance) error) error {
	var group []catalog.Instance
	flush := func() error {
		for _, in := range r.keep(group) {
			if err := fn(&in); err != nil {
				return err
			}
		}
		group = group[:0]
		return nil
	}
	err := r.Reader.ForEachIndexed(func(inst *catalog.Instance) error {
		if len(group) > 0 && group[0].CPV != inst.CPV {
			if err := flush(); err != nil {
				return err
			}
		}
		group = append(group, *inst)
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

func (r *filteredReader) GroupWithMeta(cpv string) ([]catalog.Instance, error) {
	g, err := r.Reader.GroupWithMeta(cpv)
	if err != nil {
		return nil, err
	}
	return r.keep(g), nil
}

// A view serves no removal grace: a build it drops is gone from it.
func (r *filteredReader) Tombstones() ([]catalog.Tombstone, error)             { return nil, nil }
func (r *filteredReader) AnyTombstones() (bool, error)                         { return false, nil }
func (r *filteredReader) TombstonesOf(cpv string) ([]catalog.Tombstone, error) { return nil, nil }

// SnapshotSource shows the builds snapshot info froze, as it froze them, at
// the fixed generation gen (it never changes: a model of it never catches
// up), with the header hf gives (from the catalog's present one).
func SnapshotSource(db *catalog.DB, info catalog.SnapshotInfo, gen int64, hf HeaderFilter) catalog.Source {
	return &snapshotSource{db: db, info: info, gen: gen, header: hf}
}

type snapshotSource struct {
	db     *catalog.DB
	info   catalog.SnapshotInfo
	gen    int64
	header HeaderFilter
}

func (s *snapshotSource) Read(ctx context.Context, fn func(r catalog.Reader) error) error {
	return s.db.View(ctx, func(v *catalog.View) error { return fn(&snapshotReader{View: v, s: s}) })
}

type snapshotReader struct {
	*catalog.View
	s *snapshotSource
}

func (r *snapshotReader) Header() (map[string]string, error) {
	h, err := r.View.Header()
	if err != nil || r.s.header == nil {
		return h, err
	}
	return r.s.header(h), nil
}

func (r *snapshotReader) Generation() (int64, error)            { return r.s.gen, nil }
func (r *snapshotReader) Changes(since int64) ([]string, error) { return nil, nil }
func (r *snapshotReader) CategoryNear(int64) (string, error)    { return "", nil }

func (r *snapshotReader) ForEachIndexed(fn func(inst *catalog.Instance) error) error {
	return r.View.ForEachSnapshotMember(&r.s.info, fn)
}

func (r *snapshotReader) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(fn)
}

func (r *snapshotReader) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(func(inst *catalog.Instance) error {
		if inst.CPV >= cpv {
			return nil
		}
		return fn(inst)
	})
}

func (r *snapshotReader) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachIndexed(func(inst *catalog.Instance) error {
		if inst.CPV < cpv {
			return nil
		}
		return fn(inst)
	})
}

func (r *snapshotReader) Instances() ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := r.ForEachIndexed(func(inst *catalog.Instance) error {
		out = append(out, *inst)
		return nil
	})
	return out, err
}

func (r *snapshotReader) GroupWithMeta(cpv string) ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := r.ForEachIndexed(func(inst *catalog.Instance) error {
		if inst.CPV == cpv {
			out = append(out, *inst)
		}
		return nil
	})
	return out, err
}

func (r *snapshotReader) Tombstones() ([]catalog.Tombstone, error)             { return nil, nil }
func (r *snapshotReader) AnyTombstones() (bool, error)                         { return false, nil }
func (r *snapshotReader) TombstonesOf(cpv string) ([]catalog.Tombstone, error) { return nil, nil }
