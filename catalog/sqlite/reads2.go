package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"

	"pkgdirfs/catalog"
)

// Queries of the scopes: by the (category, pn) index, never a scan.
const (
	qInCategory = `SELECT ` + instCols + ` FROM instances
		WHERE category = ? AND state = 'package' ORDER BY cpv, build_id`
	qInPackage = `SELECT ` + instCols + ` FROM instances
		WHERE category = ? AND pn = ? AND state = 'package' ORDER BY cpv, build_id`
	// qDigestPresent answers ingest's identity question without fetching
	// the instance: FindByDigest's ORDER BY makes it several times slower,
	// for each package of an import.
	qDigestPresent = `SELECT EXISTS (SELECT 1 FROM instances WHERE cpv = ? AND sha256 = ? AND state = 'package')`
)

// ForEachInScope streams the packages of one category or package, with
// Meta.
func (r snap) ForEachInScope(sc catalog.Scope, fn func(inst *catalog.Instance) error) error {
	var insts []*catalog.Instance
	collect := func(inst *catalog.Instance) error {
		insts = append(insts, inst)
		return nil
	}
	var err error
	if sc.PN == "" {
		err = r.queryInstances(collect, qInCategory, sc.Category)
	} else {
		err = r.queryInstances(collect, qInPackage, sc.Category, sc.PN)
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
	return nil
}

// HasDigest tells whether cpv has a package with these bytes.
func (r snap) HasDigest(cpv, sha256 string) (bool, error) {
	var ok bool
	if err := r.q.QueryRowContext(r.ctx, qDigestPresent, cpv, sha256).Scan(&ok); err != nil {
		return false, fmt.Errorf("catalog: %s sha256 %s: %w", cpv, sha256, err)
	}
	return ok, nil
}

// MetaValue is one metadata value of an instance, without decoding the rest.
func (r snap) MetaValue(id int64, key string) (string, error) {
	var b []byte
	err := r.q.QueryRowContext(r.ctx, qMeta, id).Scan(&b)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return "", fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	v, _, err := catalog.MetaValue(b, key)
	if err != nil {
		return "", fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return v, nil
}

// CountMetaValues counts the packages by one metadata value (non-empty).
func (r snap) CountMetaValues(key string) (map[string]int, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT x.meta FROM instance_index x
		JOIN instances i ON i.id = x.instance_id WHERE i.state = 'package'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	count := map[string]int{}
	var b sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		v, _, err := catalog.MetaValue(b, key)
		if err != nil {
			return nil, err
		}
		if v != "" {
			count[v]++
		}
	}
	return count, rows.Err()
}

// RefusalReason is the newest refusal of path, "" if none.
func (r snap) RefusalReason(path string) (string, error) {
	var reason string
	err := r.q.QueryRowContext(r.ctx, `SELECT reason FROM refused WHERE path = ? ORDER BY time_ns DESC LIMIT 1`, path).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return reason, err
}

// Empty: no instance and no tombstone, at the cost of two index probes.
func (r snap) Empty() (bool, error) {
	var empty bool
	err := r.q.QueryRowContext(r.ctx, `SELECT NOT EXISTS (SELECT 1 FROM instances) AND NOT EXISTS (SELECT 1 FROM tombstones)`).Scan(&empty)
	if err != nil {
		return false, fmt.Errorf("catalog: %w", err)
	}
	return empty, nil
}

// Summary computes pkgdirfs stats' figures: top categories by bytes (at
// most topCategories) and CPVs by builds (at most topCPVs, only those with
// more than one build). It scans the catalog.
func (r snap) Summary(topCategories, topCPVs int) (*catalog.Summary, error) {
	s := &catalog.Summary{}
	var err error
	if s.Instances, s.Placeholders, s.Bytes, err = r.Stats(); err != nil {
		return nil, err
	}
	q := func(what string, err error) error { return fmt.Errorf("catalog: stats: %s: %w", what, err) }
	// Counted along the (cpv, build_id) index: no sort.
	if err := r.q.QueryRowContext(r.ctx, `SELECT count(*) FROM (SELECT DISTINCT cpv FROM instances WHERE state = 'package')`).Scan(&s.CPVs); err != nil {
		return nil, q("cpvs", err)
	}
	rows, err := r.q.QueryContext(r.ctx, `SELECT category, count(*), sum(size) FROM instances
		WHERE state = 'package' GROUP BY category ORDER BY sum(size) DESC, category LIMIT ?`, topCategories)
	if err != nil {
		return nil, q("categories", err)
	}
	for rows.Next() {
		var c catalog.CategoryBytes
		if err := rows.Scan(&c.Category, &c.Instances, &c.Bytes); err != nil {
			rows.Close()
			return nil, q("categories", err)
		}
		s.Categories = append(s.Categories, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, q("categories", err)
	}
	rows, err = r.q.QueryContext(r.ctx, `SELECT cpv, count(*), sum(size) FROM instances
		WHERE state = 'package' GROUP BY cpv HAVING count(*) > 1 ORDER BY count(*) DESC, cpv LIMIT ?`, topCPVs)
	if err != nil {
		return nil, q("builds", err)
	}
	for rows.Next() {
		var c catalog.CPVBuilds
		if err := rows.Scan(&c.CPV, &c.Builds, &c.Bytes); err != nil {
			rows.Close()
			return nil, q("builds", err)
		}
		s.MostBuilds = append(s.MostBuilds, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, q("builds", err)
	}
	if err := r.q.QueryRowContext(r.ctx, `SELECT count(*) FROM refused`).Scan(&s.Refused); err != nil {
		return nil, q("refused", err)
	}
	if s.Oldest, err = r.one(`SELECT ` + instCols + ` FROM instances WHERE state = 'package' AND build_time > 0
		ORDER BY build_time, build_id LIMIT 1`); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, q("oldest", err)
	}
	if s.Newest, err = r.one(`SELECT ` + instCols + ` FROM instances WHERE state = 'package' AND build_time > 0
		ORDER BY build_time DESC, build_id DESC LIMIT 1`); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return nil, q("newest", err)
	}
	return s, nil
}

const tombCols = `instance_id, cpv, category, pn, pf, build_id, build_time, format, size, mtime_ns, mode,
	sha256, blob, removed_as, removed_by, removed_ns, until_ns`

func scanTombstones(rows *sql.Rows, err error) ([]catalog.Tombstone, error) {
	if err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	defer rows.Close()
	var out []catalog.Tombstone
	for rows.Next() {
		var t catalog.Tombstone
		if err := rows.Scan(&t.ID, &t.CPV, &t.Category, &t.PN, &t.PF, &t.BuildID, &t.BuildTime, &t.Format,
			&t.Size, &t.MtimeNs, &t.Mode, &t.SHA256, &t.Blob, &t.RemovedAs, &t.RemovedBy, &t.RemovedNs, &t.UntilNs); err != nil {
			return nil, fmt.Errorf("catalog: tombstones: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return out, nil
}

// Tombstones lists every tombstone (expired ones too, until collected), by
// CPV and build id.
func (r snap) Tombstones() ([]catalog.Tombstone, error) {
	return scanTombstones(r.q.QueryContext(r.ctx, `SELECT `+tombCols+` FROM tombstones ORDER BY cpv, build_id`))
}

// AnyTombstones tells whether any removed build is in its grace (one probe).
func (r snap) AnyTombstones() (bool, error) {
	var any bool
	if err := r.q.QueryRowContext(r.ctx, `SELECT EXISTS (SELECT 1 FROM tombstones)`).Scan(&any); err != nil {
		return false, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return any, nil
}

// TombstonesOf lists the tombstones of one CPV.
func (r snap) TombstonesOf(cpv string) ([]catalog.Tombstone, error) {
	return scanTombstones(r.q.QueryContext(r.ctx, `SELECT `+tombCols+` FROM tombstones WHERE cpv = ? ORDER BY build_id`, cpv))
}

// TombstoneRemovedAs is the newest tombstone of a build removed under name,
// or ErrNotFound.
func (r snap) TombstoneRemovedAs(name string) (*catalog.Tombstone, error) {
	ts, err := scanTombstones(r.q.QueryContext(r.ctx,
		`SELECT `+tombCols+` FROM tombstones WHERE removed_as = ? ORDER BY removed_ns DESC LIMIT 1`, name))
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, catalog.ErrNotFound
	}
	return &ts[0], nil
}

// TombstonesDue tells whether any grace ended by nowNs.
func (r snap) TombstonesDue(nowNs int64) (bool, error) {
	var due bool
	if err := r.q.QueryRowContext(r.ctx, `SELECT EXISTS (SELECT 1 FROM tombstones WHERE until_ns <= ?)`, nowNs).Scan(&due); err != nil {
		return false, fmt.Errorf("catalog: expired tombstones: %w", err)
	}
	return due, nil
}

// BlobInUse tells whether any instance, tombstone or held copy names blob.
func (r snap) BlobInUse(blob string) (bool, error) {
	var used bool
	// Blobs are named by their SHA-256: the indexed column finds them.
	err := r.q.QueryRowContext(r.ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE sha256 = ? AND blob = ?)
		OR EXISTS (SELECT 1 FROM tombstones WHERE blob = ?)
		OR EXISTS (SELECT 1 FROM held_instances WHERE blob = ?)`, filepath.Base(blob), blob, blob, blob).Scan(&used)
	return used, err
}

// Changes returns the names in the change-log rows after generation since.
func (r snap) Changes(since int64) ([]string, error) {
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
