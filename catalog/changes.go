package catalog

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// HeaderChange is the change-log name of a change to the Packages header:
// every index entry renders against the header, so all of them are affected.
const HeaderChange = ""

// changeLogKeep is how many generations of change rows are kept. A reader
// further behind than that (a mount stopped for a long time is not a reader:
// it loads in full when it starts) reloads everything.
const changeLogKeep = 100_000

// touch records that the transaction changed the instances of cpv (or the
// header, HeaderChange); commitChange logs it.
func (tx *Tx) touch(cpv string) {
	if tx.touched == nil {
		tx.touched = make(map[string]struct{})
	}
	tx.touched[cpv] = struct{}{}
}

// logChanges writes one change row per touched name for generation gen and,
// now and then, drops rows no reader can need any more.
func (tx *Tx) logChanges(gen int64) error {
	ins, err := tx.stmt(`INSERT OR IGNORE INTO changes (gen, cpv) VALUES (?, ?)`)
	if err != nil {
		return fmt.Errorf("catalog: change log: %w", err)
	}
	for _, cpv := range slices.Sorted(maps.Keys(tx.touched)) {
		if _, err := ins.ExecContext(tx.ctx, gen, cpv); err != nil {
			return fmt.Errorf("catalog: change log: %w", err)
		}
	}
	if gen%1024 == 0 && gen > changeLogKeep {
		floor := gen - changeLogKeep
		if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM changes WHERE gen <= ?`, floor); err != nil {
			return fmt.Errorf("catalog: change log: %w", err)
		}
		if _, err := tx.tx.ExecContext(tx.ctx, `UPDATE meta SET value = ? WHERE key = 'changes_floor'`, floor); err != nil {
			return fmt.Errorf("catalog: change log: %w", err)
		}
	}
	return nil
}

// ErrChangesPruned says the change log no longer reaches back to the
// generation asked for: the reader must load everything.
var ErrChangesPruned = errors.New("change log pruned past the generation asked for")

// Changes returns the names (CPVs, or HeaderChange) changed by the
// generations after since, up to and including the view's generation, each
// once, in byte order. ErrChangesPruned if those rows are gone.
func (r reader) Changes(since int64) ([]string, error) {
	floor, err := r.metaInt("changes_floor")
	if err != nil {
		return nil, err
	}
	if since < floor {
		return nil, ErrChangesPruned
	}
	rows, err := r.q.QueryContext(r.ctx, `SELECT DISTINCT cpv FROM changes WHERE gen > ? ORDER BY cpv`, since)
	if err != nil {
		return nil, fmt.Errorf("catalog: changes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var cpv string
		if err := rows.Scan(&cpv); err != nil {
			return nil, fmt.Errorf("catalog: changes: %w", err)
		}
		out = append(out, cpv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: changes: %w", err)
	}
	return out, nil
}

// GroupWithMeta returns the instances of one cpv (placeholders included) with
// their Meta, by build_id: what a mount needs to re-render that CPV.
func (r reader) GroupWithMeta(cpv string) ([]Instance, error) {
	insts, err := r.InstancesByCPV(cpv)
	if err != nil {
		return nil, err
	}
	for i := range insts {
		if insts[i].Placeholder {
			continue
		}
		if insts[i].Meta, err = r.InstanceMeta(insts[i].ID); err != nil {
			return nil, err
		}
	}
	return insts, nil
}
