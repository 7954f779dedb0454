package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"pkgdirfs/catalog"
)

// instRowCols are the columns instances and held_instances share.
const instRowCols = `id, category, pn, pf, cpv, build_id, build_time, format, compression, size,
	mtime_ns, mode, md5, sha1, sha256, blob, signed, state, created_ns`

// qHold copies live row ?1 and its metadata to held_instances, as it was
// up to the current generation, when a snapshot of a later generation than
// its newest copy (if any) holds it: only such a snapshot still reads the
// live row. Run before the row is deleted or changed.
const qHold = `INSERT OR IGNORE INTO held_instances (held_gen, meta, ` + instRowCols + `)
	SELECT (SELECT value FROM meta WHERE key = 'generation'),
		(SELECT x.meta FROM instance_index x WHERE x.instance_id = i.id), ` + instRowCols + `
	FROM instances i WHERE i.id = ?1 AND EXISTS (
		SELECT 1 FROM snapshot_members m CROSS JOIN snapshots s ON s.id = m.snapshot_id
		WHERE m.instance_id = ?1
		AND s.generation > coalesce((SELECT max(h.held_gen) FROM held_instances h WHERE h.id = ?1), -1))`

// hold runs qHold for instance id.
func (tx *wtx) hold(id int64) error {
	if _, err := tx.q.ExecContext(tx.ctx, qHold, id); err != nil {
		return fmt.Errorf("catalog: holding instance %d for its snapshots: %w", id, err)
	}
	return nil
}

// The packages of snapshot ?1 (of generation ?2) come from two queries,
// each in (cpv, build id) order, merged: the live rows it holds that no
// held copy of its generation or later replaces (the instances walked in
// index order, no sort of a million rows with their metadata), and the
// held copies of the least held_gen >= ?2 of the others (few).
const (
	qMembersLive = `SELECT ` + instCols + `, (SELECT x.meta FROM instance_index x WHERE x.instance_id = i.id)
	` + qMembersLiveFrom
	// qMembersLiveBare is qMembersLive without the metadata.
	qMembersLiveBare = `SELECT ` + instCols + `, NULL ` + qMembersLiveFrom
	qMembersLiveFrom = `FROM instances i INDEXED BY instances_cpv_build
	WHERE EXISTS (SELECT 1 FROM snapshot_members m WHERE m.snapshot_id = ?1 AND m.instance_id = i.id)
	AND NOT EXISTS (SELECT 1 FROM held_instances h WHERE h.id = i.id AND h.held_gen >= ?2)
	ORDER BY i.cpv, i.build_id`
	qMembersHeld = `SELECT ` + instCols + `, h.meta
	FROM snapshot_members m CROSS JOIN held_instances h ON h.id = m.instance_id
	WHERE m.snapshot_id = ?1 AND h.held_gen = (
		SELECT min(h2.held_gen) FROM held_instances h2 WHERE h2.id = m.instance_id AND h2.held_gen >= ?2)
	ORDER BY h.cpv, h.build_id`
)

const snapCols = `id, name, created_ns, query, generation, packages`

func scanSnapshot(sc interface{ Scan(...any) error }) (catalog.SnapshotInfo, error) {
	var s catalog.SnapshotInfo
	err := sc.Scan(&s.ID, &s.Name, &s.CreatedNs, &s.Query, &s.Generation, &s.Packages)
	return s, err
}

// Snapshots lists every snapshot by name.
func (r snap) Snapshots() ([]catalog.SnapshotInfo, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT `+snapCols+` FROM snapshots ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: snapshots: %w", err)
	}
	defer rows.Close()
	var out []catalog.SnapshotInfo
	for rows.Next() {
		s, err := scanSnapshot(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: snapshots: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: snapshots: %w", err)
	}
	return out, nil
}

// SnapshotByName is one snapshot, or catalog.ErrNotFound.
func (r snap) SnapshotByName(name string) (*catalog.SnapshotInfo, error) {
	s, err := scanSnapshot(r.q.QueryRowContext(r.ctx, `SELECT `+snapCols+` FROM snapshots WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, catalog.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: snapshot %s: %w", name, err)
	}
	return &s, nil
}

// ForEachSnapshotMember streams the packages s froze, as it froze them.
func (r snap) ForEachSnapshotMember(s *catalog.SnapshotInfo, withMeta bool, fn func(inst *catalog.Instance) error) error {
	var sc instScanner
	keys := map[string]string{}
	read := func(rows *sql.Rows) (*catalog.Instance, error) {
		inst := new(catalog.Instance)
		var meta []byte
		if err := sc.scan(rows, inst, &meta); err != nil {
			return nil, err
		}
		if withMeta {
			var err error
			if inst.Meta, err = catalog.DecodeMeta(meta, keys); err != nil {
				return nil, fmt.Errorf("instance %d: %w", inst.ID, err)
			}
		}
		return inst, nil
	}
	var held []*catalog.Instance
	rows, err := r.q.QueryContext(r.ctx, qMembersHeld, s.ID, s.Generation)
	if err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	for rows.Next() {
		inst, err := read(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
		}
		held = append(held, inst)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	before := func(a, b *catalog.Instance) bool {
		return a.CPV < b.CPV || a.CPV == b.CPV && a.BuildID < b.BuildID
	}
	live := qMembersLive
	if !withMeta {
		live = qMembersLiveBare
	}
	rows, err = r.q.QueryContext(r.ctx, live, s.ID, s.Generation)
	if err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		inst, err := read(rows)
		if err != nil {
			return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
		}
		for len(held) > 0 && before(held[0], inst) {
			if err := fn(held[0]); err != nil {
				return err
			}
			held = held[1:]
		}
		if err := fn(inst); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	for _, inst := range held {
		if err := fn(inst); err != nil {
			return err
		}
	}
	return nil
}

// SnapshotsHolding names the snapshots holding each of ids.
func (r snap) SnapshotsHolding(ids []int64) (map[int64][]string, error) {
	out := map[int64][]string{}
	for chunk := range slices.Chunk(ids, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := r.q.QueryContext(r.ctx, `SELECT m.instance_id, s.name FROM snapshot_members m CROSS JOIN snapshots s ON s.id = m.snapshot_id
			WHERE m.instance_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`) ORDER BY m.instance_id, s.name`, args...)
		if err != nil {
			return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
		}
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
			}
			out[id] = append(out[id], name)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
		}
	}
	return out, nil
}

// InsertSnapshot stores s under a new id; a taken name is ErrConflict.
func (tx *wtx) InsertSnapshot(s *catalog.SnapshotInfo) (int64, error) {
	var id int64
	err := tx.tx.QueryRowContext(tx.ctx, `INSERT INTO snapshots (name, created_ns, query, generation, packages)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, s.Name, s.CreatedNs, s.Query, s.Generation, s.Packages).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("catalog: snapshot %s: %w", s.Name, classify(err))
	}
	return id, nil
}

// memberBatch is how many members one INSERT statement carries.
const memberBatch = 256

// AddSnapshotMembers adds instances to snapshot id.
func (tx *wtx) AddSnapshotMembers(id int64, instances []int64) error {
	for chunk := range slices.Chunk(instances, memberBatch) {
		args := make([]any, 0, 2*len(chunk))
		for _, in := range chunk {
			args = append(args, id, in)
		}
		q := `INSERT INTO snapshot_members (snapshot_id, instance_id) VALUES (?, ?)` + strings.Repeat(", (?, ?)", len(chunk)-1)
		if _, err := tx.q.ExecContext(tx.ctx, q, args...); err != nil {
			return fmt.Errorf("catalog: snapshot members: %w", err)
		}
	}
	return nil
}

// AddAllPackages adds every package to snapshot id.
func (tx *wtx) AddAllPackages(id int64) (int64, error) {
	res, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO snapshot_members (snapshot_id, instance_id)
		SELECT ?, id FROM instances WHERE state = 'package'`, id)
	if err != nil {
		return 0, fmt.Errorf("catalog: snapshot members: %w", err)
	}
	return res.RowsAffected()
}

// SetSnapshotPackages records how many packages snapshot id holds.
func (tx *wtx) SetSnapshotPackages(id, n int64) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `UPDATE snapshots SET packages = ? WHERE id = ?`, n, id); err != nil {
		return fmt.Errorf("catalog: snapshot %d: %w", id, err)
	}
	return nil
}

// qReleaseHeld deletes the held copies of snapshot ?1's members that no
// other snapshot reads: one reads copy (id, held_gen) when it holds id, is
// of a generation <= held_gen, and no copy of id lies between the two.
const qReleaseHeld = `DELETE FROM held_instances AS c
	WHERE c.id IN (SELECT instance_id FROM snapshot_members WHERE snapshot_id = ?1)
	AND NOT EXISTS (
		SELECT 1 FROM snapshot_members m CROSS JOIN snapshots s ON s.id = m.snapshot_id
		WHERE m.instance_id = c.id AND m.snapshot_id <> ?1 AND s.generation <= c.held_gen
		AND NOT EXISTS (SELECT 1 FROM held_instances h
			WHERE h.id = c.id AND h.held_gen >= s.generation AND h.held_gen < c.held_gen))
	RETURNING blob`

// DeleteSnapshot deletes snapshot id, its members and the held copies no
// other snapshot reads, and returns their blobs.
func (tx *wtx) DeleteSnapshot(id int64) ([]string, error) {
	rows, err := tx.tx.QueryContext(tx.ctx, qReleaseHeld, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	var blobs []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
		}
		blobs = append(blobs, b)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	// The members go by cascade.
	res, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM snapshots WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, catalog.ErrNotFound)
	}
	return blobs, nil
}

// HeldBlobs lists the blobs of the held copies, each once.
func (r snap) HeldBlobs() ([]string, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT DISTINCT blob FROM held_instances WHERE blob <> '' ORDER BY blob`)
	if err != nil {
		return nil, fmt.Errorf("catalog: held blobs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("catalog: held blobs: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
