package tree

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"pkgdirfs/catalog"
)

// A channel's tree is a Model like the mount's, loaded from a Source that
// shows only the channel's builds: the model, its index and its catchup
// stay one code, and a change reaches a live channel as it reaches the
// main tree, CPV by CPV (O(change)).

// GroupFilter decides which builds of one CPV a view shows: group is every
// package of the CPV (no placeholders) with Meta, in build-id order, and
// header the catalog's Packages header (a query may fall back to its
// keys); it returns those shown, in that order.
type GroupFilter func(group []catalog.Instance, header map[string]string) []catalog.Instance

// HeaderFilter gives the view's Packages header from the catalog's.
type HeaderFilter func(h map[string]string) map[string]string

// ViewSpec is what a view of the catalog shows.
type ViewSpec struct {
	Filter GroupFilter  // nil: every package
	Header HeaderFilter // nil: the catalog's header
	// Scopes, if not nil, are the only categories or packages the view
	// shows (PN "": the whole category): a load reads them, not the whole
	// catalog.
	Scopes []catalog.Scope
}

// Filtered is src as a view shows it: only the builds spec keeps, no
// placeholders, no removed builds in their grace, and spec's header. A
// CPV is loaded whole before the filter decides (a keep-N view needs its
// group), and the tree loads in one stream.
func Filtered(src catalog.Source, spec ViewSpec) catalog.Source {
	return &filteredSource{src: src, spec: spec}
}

type filteredSource struct {
	src  catalog.Source
	spec ViewSpec
}

func (s *filteredSource) Read(ctx context.Context, fn func(r catalog.Reader) error) error {
	return s.src.Read(ctx, func(r catalog.Reader) error {
		return fn(&filteredReader{Reader: r, s: s})
	})
}

type filteredReader struct {
	catalog.Reader
	s *filteredSource
	// header: the catalog's, read once per snapshot for the filter.
	header  map[string]string
	hdrDone bool
}

func (r *filteredReader) keep(group []catalog.Instance) ([]catalog.Instance, error) {
	pkgs := group[:0:0]
	for i := range group {
		if !group[i].Placeholder {
			pkgs = append(pkgs, group[i])
		}
	}
	if len(pkgs) == 0 || r.s.spec.Filter == nil {
		return pkgs, nil
	}
	if !r.hdrDone {
		h, err := r.Reader.Header()
		if err != nil {
			return nil, err
		}
		r.header, r.hdrDone = h, true
	}
	return r.s.spec.Filter(pkgs, r.header), nil
}

func (r *filteredReader) Header() (map[string]string, error) {
	h, err := r.Reader.Header()
	if err != nil || r.s.spec.Header == nil {
		return h, err
	}
	return r.s.spec.Header(h), nil
}

// all tells a view of every package: the catalog's own reads serve it (a
// load without metadata, in two halves), placeholders left out.
func (r *filteredReader) all() bool { return r.s.spec.Filter == nil && r.s.spec.Scopes == nil }

func packagesOnly(fn func(inst *catalog.Instance) error) func(inst *catalog.Instance) error {
	return func(inst *catalog.Instance) error {
		if inst.Placeholder {
			return nil
		}
		return fn(inst)
	}
}

// CategoryNear gives no split point but for a view of every package: a
// filtered load is one stream, grouped by CPV.
func (r *filteredReader) CategoryNear(n int64) (string, error) {
	if r.all() {
		return r.Reader.CategoryNear(n)
	}
	return "", nil
}

// InstanceIDHigh gives no size hint but for a view of every package: the
// model sizes its maps by it, and a view may show a small part.
func (r *filteredReader) InstanceIDHigh() (int64, error) {
	if r.all() {
		return r.Reader.InstanceIDHigh()
	}
	return 0, nil
}

func (r *filteredReader) Instances() ([]catalog.Instance, error) { return collect(r.ForEachInstance) }

func (r *filteredReader) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	if r.all() {
		return r.Reader.ForEachInstance(packagesOnly(fn))
	}
	return r.ForEachIndexed(fn)
}

func (r *filteredReader) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	if r.all() {
		return r.Reader.ForEachInstanceBelow(cpv, packagesOnly(fn))
	}
	return r.ForEachIndexed(below(cpv, fn))
}

func (r *filteredReader) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	if r.all() {
		return r.Reader.ForEachInstanceFrom(cpv, packagesOnly(fn))
	}
	return r.ForEachIndexed(from(cpv, fn))
}

// ForEachIndexed streams the kept builds, a CPV's group at a time.
func (r *filteredReader) ForEachIndexed(fn func(inst *catalog.Instance) error) error {
	if r.all() {
		return r.Reader.ForEachIndexed(fn) // packages only, with Meta
	}
	var group []catalog.Instance
	flush := func() error {
		kept, err := r.keep(group)
		if err != nil {
			return err
		}
		for i := range kept {
			if err := fn(&kept[i]); err != nil {
				return err
			}
		}
		group = group[:0]
		return nil
	}
	err := r.scan(func(inst *catalog.Instance) error {
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

// scan streams every package the view may show, in (cpv, build id) order:
// the catalog's, or its scopes' (collected and sorted: scopes of one
// category and of packages in others interleave in cpv order).
func (r *filteredReader) scan(fn func(inst *catalog.Instance) error) error {
	scoped, ok := r.Reader.(interface {
		ForEachInScope(s catalog.Scope, fn func(inst *catalog.Instance) error) error
	})
	if r.s.spec.Scopes == nil || !ok {
		return r.Reader.ForEachIndexed(fn)
	}
	cats := map[string]bool{}
	for _, sc := range r.s.spec.Scopes {
		if sc.PN == "" {
			cats[sc.Category] = true
		}
	}
	seen := map[catalog.Scope]bool{}
	var all []catalog.Instance
	for _, sc := range r.s.spec.Scopes {
		if seen[sc] || (sc.PN != "" && cats[sc.Category]) {
			continue
		}
		seen[sc] = true
		err := scoped.ForEachInScope(sc, func(inst *catalog.Instance) error {
			all = append(all, *inst)
			return nil
		})
		if err != nil {
			return err
		}
	}
	slices.SortFunc(all, func(a, b catalog.Instance) int {
		return cmp.Or(strings.Compare(a.CPV, b.CPV), cmp.Compare(a.BuildID, b.BuildID))
	})
	for i := range all {
		if err := fn(&all[i]); err != nil {
			return err
		}
	}
	return nil
}

func (r *filteredReader) GroupWithMeta(cpv string) ([]catalog.Instance, error) {
	g, err := r.Reader.GroupWithMeta(cpv)
	if err != nil || len(g) == 0 || !r.inScope(&g[0]) {
		return nil, err
	}
	return r.keep(g)
}

// inScope tells whether the view may show inst's CPV (its Scopes).
func (r *filteredReader) inScope(inst *catalog.Instance) bool {
	if r.s.spec.Scopes == nil {
		return true
	}
	for _, sc := range r.s.spec.Scopes {
		if sc.Category == inst.Category && (sc.PN == "" || sc.PN == inst.PN) {
			return true
		}
	}
	return false
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
	return r.View.ForEachSnapshotMember(&r.s.info, true, fn)
}

// ForEachInstance is a tree's load: no metadata read.
func (r *snapshotReader) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	return r.View.ForEachSnapshotMember(&r.s.info, false, fn)
}

func (r *snapshotReader) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachInstance(below(cpv, fn))
}

func (r *snapshotReader) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.ForEachInstance(from(cpv, fn))
}

func (r *snapshotReader) Instances() ([]catalog.Instance, error) { return collect(r.ForEachInstance) }

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

// below and from narrow a stream to the CPVs before cpv, or from it on: a
// split load's halves (a view loads in one stream, but offers the reads).
func below(cpv string, fn func(inst *catalog.Instance) error) func(inst *catalog.Instance) error {
	return func(inst *catalog.Instance) error {
		if inst.CPV >= cpv {
			return nil
		}
		return fn(inst)
	}
}

func from(cpv string, fn func(inst *catalog.Instance) error) func(inst *catalog.Instance) error {
	return func(inst *catalog.Instance) error {
		if inst.CPV < cpv {
			return nil
		}
		return fn(inst)
	}
}

// collect gathers a stream.
func collect(stream func(fn func(inst *catalog.Instance) error) error) ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := stream(func(inst *catalog.Instance) error {
		out = append(out, *inst)
		return nil
	})
	return out, err
}
