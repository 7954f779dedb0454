package catalog

import (
	"context"
	"slices"
)

// Scope narrows a query to a category, or to one package of it (PN); an
// empty Category is the whole catalog.
type Scope struct{ Category, PN string }

// Queries of the scopes: by the (category, pn) index, never a scan.
const (
	qInCategory = `SELECT ` + instCols + ` FROM instances
		WHERE category = ? AND state = 'package' ORDER BY cpv, build_id`
	qInPackage = `SELECT ` + instCols + ` FROM instances
		WHERE category = ? AND pn = ? AND state = 'package' ORDER BY cpv, build_id`
)

// ForEachInScopes streams the package instances (no placeholders) of every
// scope, with Meta, each once, from the reader's snapshot: a query for a
// few packages reads those, not the catalog. Without scopes, or with one
// of the whole catalog, it is ForEachIndexed.
func (r reader) ForEachInScopes(scopes []Scope, fn func(inst *Instance) error) error {
	if len(scopes) == 0 || slices.ContainsFunc(scopes, func(s Scope) bool { return s.Category == "" }) {
		return r.ForEachIndexed(fn)
	}
	// A package inside a whole category of the same query is read once.
	cats := map[string]bool{}
	for _, s := range scopes {
		if s.PN == "" {
			cats[s.Category] = true
		}
	}
	seen := map[Scope]bool{}
	for _, s := range scopes {
		if seen[s] || (s.PN != "" && cats[s.Category]) {
			continue
		}
		seen[s] = true
		var insts []*Instance
		collect := func(inst *Instance) error {
			insts = append(insts, inst)
			return nil
		}
		var err error
		if s.PN == "" {
			err = r.queryInstances(collect, qInCategory, s.Category)
		} else {
			err = r.queryInstances(collect, qInPackage, s.Category, s.PN)
		}
		if err != nil {
			return err
		}
		for _, inst := range insts {
			if inst.Meta, err = r.InstanceMeta(inst.ID); err != nil {
				return err
			}
			if err := fn(inst); err != nil {
				return err
			}
		}
	}
	return nil
}

// ForEachInScopes is View.ForEachInScopes in a snapshot of its own.
func (db *DB) ForEachInScopes(ctx context.Context, scopes []Scope, fn func(inst *Instance) error) error {
	return db.View(ctx, func(v *View) error { return v.ForEachInScopes(scopes, fn) })
}
