package postgres

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"pkgdirfs/catalog"
)

// instRowCols are the columns instances and held_instances share.
const instRowCols = `id, category, pn, pf, cpv, build_id, build_time, format, compression, size,
	mtime_ns, mode, md5, sha1, sha256, blob, signed, state, created_ns`

// A reader of a catalog older than version 6 (snap.preSnapshots) sees no
// snapshots: the catalog has none before a writer of this version opens it.
// (ForEachSnapshotMember needs a snapshot, which it then cannot have.)

// qHold copies live row $1 and its metadata to held_instances, as it was
// up to the current generation, when a snapshot of a later generation than
// its newest copy (if any) holds it: only such a snapshot still reads the
// live row. Run before the row is deleted or changed.
const qHold = `INSERT INTO held_instances (held_gen, meta, ` + instRowCols + `)
	SELECT (SELECT value FROM meta WHERE key = 'generation'),
		(SELECT x.meta FROM instance_index x WHERE x.instance_id = i.id), ` + instRowCols + `
	FROM instances i WHERE i.id = $1 AND EXISTS (
		SELECT 1 FROM snapshot_members m JOIN snapshots s ON s.id = m.snapshot_id
		WHERE m.instance_id = $1
		AND s.generation > coalesce((SELECT max(h.held_gen) FROM held_instances h WHERE h.id = $1), -1))
	ON CONFLICT (id, held_gen) DO NOTHING`

func (tx *wtx) hold(id int64) error {
	if _, err := tx.q.Exec(tx.ctx, qHold, id); err != nil {
		return fmt.Errorf("catalog: holding instance %d for its snapshots: %w", id, err)
	}
	return nil
}

// qMembers is the packages of snapshot $1 (of generation $2), each from
// its held copy of the least held_gen >= $2, else from its live row.
var qMembers = `SELECT ` + cols("") + `, meta FROM (
	SELECT h.meta, h.id, h.category, h.pn, h.pf, h.cpv, h.build_id, h.build_time, h.format,
		h.compression, h.size, h.mtime_ns, h.mode, h.md5, h.sha1, h.sha256, h.blob, h.signed, h.state,
		h.created_ns
	FROM snapshot_members m JOIN held_instances h ON h.id = m.instance_id
	WHERE m.snapshot_id = $1 AND h.held_gen = (
		SELECT min(h2.held_gen) FROM held_instances h2 WHERE h2.id = m.instance_id AND h2.held_gen >= $2)
	UNION ALL
	SELECT x.meta, i.id, i.category, i.pn, i.pf, i.cpv, i.build_id, i.build_time, i.format,
		i.compression, i.size, i.mtime_ns, i.mode, i.md5, i.sha1, i.sha256, i.blob, i.signed, i.state,
		i.created_ns
	FROM snapshot_members m JOIN instances i ON i.id = m.instance_id
	LEFT JOIN instance_index x ON x.instance_id = i.id
	WHERE m.snapshot_id = $1 AND NOT EXISTS (
		SELECT 1 FROM held_instances h WHERE h.id = m.instance_id AND h.held_gen >= $2)
) u ORDER BY cpv, build_id`

const snapCols = `id, name, created_ns, query, generation, packages`

func scanSnapshot(row pgx.Row) (catalog.SnapshotInfo, error) {
	var s catalog.SnapshotInfo
	err := row.Scan(&s.ID, &s.Name, &s.CreatedNs, &s.Query, &s.Generation, &s.Packages)
	return s, err
}

func (r snap) Snapshots() ([]catalog.SnapshotInfo, error) {
	if r.preSnapshots {
		return nil, nil
	}
	rows, err := r.q.Query(r.ctx, `SELECT `+snapCols+` FROM snapshots ORDER BY name`)
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

func (r snap) SnapshotByName(name string) (*catalog.SnapshotInfo, error) {
	if r.preSnapshots {
		return nil, catalog.ErrNotFound
	}
	s, err := scanSnapshot(r.q.QueryRow(r.ctx, `SELECT `+snapCols+` FROM snapshots WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, catalog.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: snapshot %s: %w", name, err)
	}
	return &s, nil
}

func (r snap) ForEachSnapshotMember(s *catalog.SnapshotInfo, withMeta bool, fn func(inst *catalog.Instance) error) error {
	rows, err := r.q.Query(r.ctx, qMembers, s.ID, s.Generation)
	if err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	defer rows.Close()
	var sc instScanner
	keys := map[string]string{}
	for rows.Next() {
		inst := new(catalog.Instance)
		var meta []byte
		if err := sc.scan(rows, inst, &meta); err != nil {
			return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
		}
		if withMeta {
			if inst.Meta, err = catalog.DecodeMeta(meta, keys); err != nil {
				return fmt.Errorf("catalog: snapshot %s: instance %d: %w", s.Name, inst.ID, err)
			}
		}
		if err := fn(inst); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	return nil
}

func (r snap) SnapshotsHolding(ids []int64) (map[int64][]string, error) {
	if r.preSnapshots {
		return map[int64][]string{}, nil
	}
	out := map[int64][]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := r.q.Query(r.ctx, `SELECT m.instance_id, s.name FROM snapshot_members m
		JOIN snapshots s ON s.id = m.snapshot_id
		WHERE m.instance_id = ANY($1::bigint[]) ORDER BY m.instance_id, s.name`, ids)
	if err != nil {
		return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
		}
		out[id] = append(out[id], name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: snapshots holding builds: %w", err)
	}
	return out, nil
}

func (r snap) HeldBlobs() ([]string, error) {
	if r.preSnapshots {
		return nil, nil
	}
	rows, err := r.q.Query(r.ctx, `SELECT DISTINCT blob FROM held_instances WHERE blob <> '' ORDER BY blob`)
	if err != nil {
		return nil, fmt.Errorf("catalog: held blobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("catalog: held blobs: %w", err)
	}
	return out, nil
}

func (tx *wtx) InsertSnapshot(s *catalog.SnapshotInfo) (int64, error) {
	var id int64
	err := tx.q.QueryRow(tx.ctx, `INSERT INTO snapshots (name, created_ns, query, generation, packages)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING id`,
		s.Name, s.CreatedNs, s.Query, s.Generation, s.Packages).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		// Nothing inserted, so the transaction stays usable.
		return 0, fmt.Errorf("catalog: snapshot %s: name taken: %w", s.Name, catalog.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: snapshot %s: %w", s.Name, err)
	}
	return id, nil
}

// memberBatch is how many members one statement carries.
const memberBatch = 10000

func (tx *wtx) AddSnapshotMembers(id int64, instances []int64) error {
	for chunk := range slices.Chunk(instances, memberBatch) {
		_, err := tx.q.Exec(tx.ctx, `INSERT INTO snapshot_members (snapshot_id, instance_id)
			SELECT $1, unnest($2::bigint[])`, id, chunk)
		if err != nil {
			return fmt.Errorf("catalog: snapshot members: %w", err)
		}
	}
	return nil
}

func (tx *wtx) AddAllPackages(id int64) (int64, error) {
	tag, err := tx.q.Exec(tx.ctx, `INSERT INTO snapshot_members (snapshot_id, instance_id)
		SELECT $1, id FROM instances WHERE state = 'package'`, id)
	if err != nil {
		return 0, fmt.Errorf("catalog: snapshot members: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (tx *wtx) SetSnapshotPackages(id, n int64) error {
	if _, err := tx.q.Exec(tx.ctx, `UPDATE snapshots SET packages = $1 WHERE id = $2`, n, id); err != nil {
		return fmt.Errorf("catalog: snapshot %d: %w", id, err)
	}
	return nil
}

// qReleaseHeld deletes the held copies of snapshot $1's members that no
// other snapshot reads: one reads copy (id, held_gen) when it holds id, is
// of a generation <= held_gen, and no copy of id lies between the two.
const qReleaseHeld = `DELETE FROM held_instances c
	WHERE c.id IN (SELECT instance_id FROM snapshot_members WHERE snapshot_id = $1)
	AND NOT EXISTS (
		SELECT 1 FROM snapshot_members m JOIN snapshots s ON s.id = m.snapshot_id
		WHERE m.instance_id = c.id AND m.snapshot_id <> $1 AND s.generation <= c.held_gen
		AND NOT EXISTS (SELECT 1 FROM held_instances h
			WHERE h.id = c.id AND h.held_gen >= s.generation AND h.held_gen < c.held_gen))
	RETURNING blob`

func (tx *wtx) DeleteSnapshot(id int64) ([]string, error) {
	rows, err := tx.q.Query(tx.ctx, qReleaseHeld, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	blobs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	tag, err := tx.q.Exec(tx.ctx, `DELETE FROM snapshots WHERE id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("catalog: delete snapshot %d: %w", id, catalog.ErrNotFound)
	}
	return blobs, nil
}
