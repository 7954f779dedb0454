package postgres

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"

	"pkgdirfs/catalog"
)

// wtx is one write transaction, holding the write lock.
type wtx struct {
	snap
	tx pgx.Tx
}

var _ catalog.WriteTx = (*wtx)(nil)

// InsertInstance inserts inst and its Meta under a new id (an identity
// column: never reused). A taken (cpv, build id) inserts nothing, so the
// transaction stays usable, and is ErrBuildIDTaken.
func (tx *wtx) InsertInstance(inst *catalog.Instance) (int64, error) {
	state := "package"
	if inst.Placeholder {
		state = "placeholder"
	}
	var meta []byte // NULL: no row in instance_index
	if len(inst.Meta) > 0 {
		meta = catalog.EncodeMeta(inst.Meta)
	}
	// One statement, one round trip: the row, then its metadata.
	var id int64
	err := tx.q.QueryRow(tx.ctx, `WITH i AS (INSERT INTO instances (category, pn, pf, cpv, build_id, build_time, format,
		compression, size, mtime_ns, mode, md5, sha1, sha256, blob, signed, state, created_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (cpv, build_id) DO NOTHING RETURNING id),
		m AS (INSERT INTO instance_index (instance_id, meta) SELECT id, $19::bytea FROM i WHERE $19::bytea IS NOT NULL)
		SELECT id FROM i`,
		inst.Category, inst.PN, inst.PF, inst.CPV, inst.BuildID, inst.BuildTime, inst.Format, inst.Compression,
		inst.Size, inst.MtimeNs, int64(inst.Mode), inst.MD5, inst.SHA1, inst.SHA256, inst.Blob, inst.Signed,
		state, inst.CreatedNs, meta).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("catalog: insert %s build id %d: %w", inst.CPV, inst.BuildID, catalog.ErrBuildIDTaken)
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: insert %s build id %d: %w", inst.CPV, inst.BuildID, err)
	}
	return id, nil
}

func (tx *wtx) RaiseBuildIDHigh(cpv string, id int64) error {
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO build_id_high (cpv, high) VALUES ($1, $2)
		ON CONFLICT (cpv) DO UPDATE SET high = greatest(build_id_high.high, excluded.high)`, cpv, id)
	if err != nil {
		return fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return nil
}

func (tx *wtx) DeleteInstance(id int64) (string, error) {
	if err := tx.hold(id); err != nil {
		return "", err
	}
	var cpv string
	err := tx.q.QueryRow(tx.ctx, `DELETE FROM instances WHERE id = $1 RETURNING cpv`, id).Scan(&cpv)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("catalog: delete %d: %w", id, catalog.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("catalog: delete %d: %w", id, err)
	}
	return cpv, nil
}

func (tx *wtx) SetInstanceAttrs(id int64, mode uint32, mtimeNs int64) (string, error) {
	if err := tx.hold(id); err != nil {
		return "", err
	}
	var cpv string
	err := tx.q.QueryRow(tx.ctx, `UPDATE instances SET mode = $1, mtime_ns = $2 WHERE id = $3 RETURNING cpv`,
		int64(mode), mtimeNs, id).Scan(&cpv)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("instance %d: %w", id, catalog.ErrNotFound)
	}
	return cpv, err
}

func (tx *wtx) BuildIDTaken(cpv string, id int64) (bool, error) {
	var taken bool
	err := tx.q.QueryRow(tx.ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE cpv = $1 AND build_id = $2)`, cpv, id).Scan(&taken)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return taken, nil
}

func (tx *wtx) MaxBuildID(cpv string) (int64, error) {
	var high int64
	err := tx.q.QueryRow(tx.ctx, `SELECT greatest(
		(SELECT coalesce(max(build_id), 0) FROM instances WHERE cpv = $1),
		(SELECT coalesce(max(high), 0) FROM build_id_high WHERE cpv = $1))`, cpv).Scan(&high)
	if err != nil {
		return 0, fmt.Errorf("catalog: next build id %s: %w", cpv, err)
	}
	return high, nil
}

func (tx *wtx) ReplaceHeader(h map[string]string) error {
	if _, err := tx.q.Exec(tx.ctx, `DELETE FROM header`); err != nil {
		return fmt.Errorf("catalog: set header: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if _, err := tx.q.Exec(tx.ctx, `INSERT INTO header (key, value) VALUES ($1, $2)`, k, h[k]); err != nil {
			return fmt.Errorf("catalog: set header %s: %w", k, err)
		}
	}
	return nil
}

func (tx *wtx) SetSetting(key string, v int64) error {
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, v)
	if err != nil {
		return fmt.Errorf("catalog: meta %s: %w", key, err)
	}
	return nil
}

// BumpGeneration increments the generation, writes the change-log rows of
// changed under it, and rings the doorbell other hosts listen on (NOTIFY
// is delivered at commit).
func (tx *wtx) BumpGeneration(changed []string, keep int64) (int64, error) {
	var g int64
	err := tx.q.QueryRow(tx.ctx, `UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value`).Scan(&g)
	if err != nil {
		return 0, fmt.Errorf("catalog: bump generation: %w", err)
	}
	if len(changed) > 0 {
		if _, err := tx.q.Exec(tx.ctx, `INSERT INTO changes (gen, cpv) SELECT $1, unnest($2::text[])
			ON CONFLICT DO NOTHING`, g, changed); err != nil {
			return 0, fmt.Errorf("catalog: change log: %w", err)
		}
	}
	if g%1024 == 0 && g > keep {
		floor := g - keep
		if _, err := tx.q.Exec(tx.ctx, `DELETE FROM changes WHERE gen <= $1`, floor); err != nil {
			return 0, fmt.Errorf("catalog: change log: %w", err)
		}
		if err := tx.SetSetting("changes_floor", floor); err != nil {
			return 0, err
		}
	}
	if _, err := tx.q.Exec(tx.ctx, `SELECT pg_notify('pkgdirfs_changes', $1)`, strconv.FormatInt(g, 10)); err != nil {
		return 0, fmt.Errorf("catalog: notify: %w", err)
	}
	return g, nil
}

func (tx *wtx) AddRefused(path, reason string, size, whenNs int64) error {
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO refused (path, reason, time_ns, size) VALUES ($1, $2, $3, $4)`,
		path, reason, whenNs, size)
	if err != nil {
		return fmt.Errorf("catalog: add refused %s: %w", path, err)
	}
	return nil
}

func (tx *wtx) ClearRefused(path string) error {
	if _, err := tx.q.Exec(tx.ctx, `DELETE FROM refused WHERE path = $1`, path); err != nil {
		return fmt.Errorf("catalog: clear refused %s: %w", path, err)
	}
	return nil
}

func (tx *wtx) InsertTombstone(t *catalog.Tombstone) error {
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO tombstones (`+tombCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
		ON CONFLICT (instance_id) DO NOTHING`,
		t.ID, t.CPV, t.Category, t.PN, t.PF, t.BuildID, t.BuildTime, t.Format, t.Size, t.MtimeNs,
		int64(t.Mode), t.SHA256, t.Blob, t.RemovedAs, t.RemovedBy, t.RemovedNs, t.UntilNs)
	if err != nil {
		return fmt.Errorf("catalog: tombstone of %s build %d: %w", t.CPV, t.BuildID, err)
	}
	return nil
}

func (tx *wtx) DeleteTombstonesOf(cpv, sha256 string, buildID int64) (int64, error) {
	q, arg := `DELETE FROM tombstones WHERE cpv = $1 AND build_id = $2`, any(buildID)
	if sha256 != "" {
		q, arg = `DELETE FROM tombstones WHERE cpv = $1 AND sha256 = $2`, sha256
	}
	tag, err := tx.q.Exec(tx.ctx, q, cpv, arg)
	if err != nil {
		return 0, fmt.Errorf("catalog: tombstones of %s: %w", cpv, err)
	}
	return tag.RowsAffected(), nil
}

func (tx *wtx) ExpiredTombstones(nowNs int64, max int) ([]catalog.Tombstone, error) {
	return tx.tombstones(`WHERE until_ns <= $1 ORDER BY until_ns LIMIT $2`, nowNs, max)
}

func (tx *wtx) DeleteTombstone(instanceID int64) error {
	if _, err := tx.q.Exec(tx.ctx, `DELETE FROM tombstones WHERE instance_id = $1`, instanceID); err != nil {
		return fmt.Errorf("catalog: expire tombstone: %w", err)
	}
	return nil
}

func (tx *wtx) SpendID(cpv string, id int64, sha256 string) error {
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO spent_ids (cpv, build_id, sha256) VALUES ($1, $2, $3)
		ON CONFLICT (cpv, build_id) DO UPDATE SET sha256 = excluded.sha256`, cpv, id, sha256)
	if err != nil {
		return fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return nil
}

func (tx *wtx) IDSpent(cpv string, id int64, sha256 string) (bool, error) {
	var spent bool
	err := tx.q.QueryRow(tx.ctx, `SELECT EXISTS (SELECT 1 FROM spent_ids WHERE cpv = $1 AND build_id = $2 AND sha256 <> $3)`,
		cpv, id, sha256).Scan(&spent)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return spent, nil
}

func (tx *wtx) SpentIDOf(cpv, sha256 string) (int64, error) {
	var id int64
	err := tx.q.QueryRow(tx.ctx, `SELECT build_id FROM spent_ids WHERE cpv = $1 AND sha256 = $2
		ORDER BY build_id DESC LIMIT 1`, cpv, sha256).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return id, err
}
