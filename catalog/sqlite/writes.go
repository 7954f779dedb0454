package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mattn/go-sqlite3"

	"pkgdirfs/catalog"
)

var _ catalog.WriteTx = (*wtx)(nil)

// InsertInstance inserts inst and its Meta under a new id (the table's
// AUTOINCREMENT: never reused).
func (tx *wtx) InsertInstance(inst *catalog.Instance) (int64, error) {
	state := "package"
	if inst.Placeholder {
		state = "placeholder"
	}
	ins, err := tx.stmt(`INSERT INTO instances (category, pn, pf, cpv, build_id, build_time, format,
		compression, size, mtime_ns, mode, md5, sha1, sha256, blob, signed, state, created_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("catalog: insert %s: %w", inst.CPV, err)
	}
	res, err := ins.ExecContext(tx.ctx, inst.Category, inst.PN, inst.PF, inst.CPV, inst.BuildID,
		inst.BuildTime, inst.Format, inst.Compression, inst.Size, inst.MtimeNs, int64(inst.Mode),
		inst.MD5, inst.SHA1, inst.SHA256, inst.Blob, inst.Signed, state, inst.CreatedNs)
	if err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique &&
			strings.Contains(se.Error(), "instances.cpv") {
			return 0, fmt.Errorf("catalog: insert %s build id %d: %w", inst.CPV, inst.BuildID, catalog.ErrBuildIDTaken)
		}
		return 0, fmt.Errorf("catalog: insert %s build id %d: %w", inst.CPV, inst.BuildID, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("catalog: insert %s: %w", inst.CPV, err)
	}
	if len(inst.Meta) > 0 {
		ins, err := tx.stmt(`INSERT INTO instance_index (instance_id, meta) VALUES (?, ?)`)
		if err == nil {
			_, err = ins.ExecContext(tx.ctx, id, catalog.EncodeMeta(inst.Meta))
		}
		if err != nil {
			return 0, fmt.Errorf("catalog: insert %s: meta: %w", inst.CPV, err)
		}
	}
	return id, nil
}

// RaiseBuildIDHigh raises cpv's high-water mark to id.
func (tx *wtx) RaiseBuildIDHigh(cpv string, id int64) error {
	_, err := tx.q.ExecContext(tx.ctx, `INSERT INTO build_id_high (cpv, high) VALUES (?, ?)
		ON CONFLICT (cpv) DO UPDATE SET high = max(high, excluded.high)`, cpv, id)
	if err != nil {
		return fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return nil
}

// DeleteInstance deletes an instance and (by cascade) its Meta.
func (tx *wtx) DeleteInstance(id int64) (string, error) {
	if err := tx.hold(id); err != nil {
		return "", err
	}
	var cpv string
	err := tx.tx.QueryRowContext(tx.ctx, `DELETE FROM instances WHERE id = ? RETURNING cpv`, id).Scan(&cpv)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("catalog: delete %d: %w", id, catalog.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("catalog: delete %d: %w", id, err)
	}
	return cpv, nil
}

// SetInstanceAttrs sets an instance's mode and mtime.
func (tx *wtx) SetInstanceAttrs(id int64, mode uint32, mtimeNs int64) (string, error) {
	if err := tx.hold(id); err != nil {
		return "", err
	}
	var cpv string
	err := tx.tx.QueryRowContext(tx.ctx, `UPDATE instances SET mode = ?, mtime_ns = ? WHERE id = ? RETURNING cpv`, mode, mtimeNs, id).Scan(&cpv)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("instance %d: %w", id, catalog.ErrNotFound)
	}
	return cpv, err
}

// BuildIDTaken reports whether any row (placeholders included) holds
// (cpv, id).
func (tx *wtx) BuildIDTaken(cpv string, id int64) (bool, error) {
	var taken bool
	err := tx.q.QueryRowContext(tx.ctx, qBuildIDTaken, cpv, id).Scan(&taken)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return taken, nil
}

// MaxBuildID is the highest build id over cpv's rows and its high-water
// mark, 0 if none.
func (tx *wtx) MaxBuildID(cpv string) (int64, error) {
	var next int64
	if err := tx.q.QueryRowContext(tx.ctx, qNextBuildID, cpv).Scan(&next); err != nil {
		return 0, fmt.Errorf("catalog: next build id %s: %w", cpv, err)
	}
	var high int64
	err := tx.q.QueryRowContext(tx.ctx, `SELECT high FROM build_id_high WHERE cpv = ?`, cpv).Scan(&high)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("catalog: next build id %s: %w", cpv, err)
	}
	return max(next-1, high), nil
}

// ReplaceHeader replaces the whole stored Packages header.
func (tx *wtx) ReplaceHeader(h map[string]string) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM header`); err != nil {
		return fmt.Errorf("catalog: set header: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if _, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO header (key, value) VALUES (?, ?)`, k, h[k]); err != nil {
			return fmt.Errorf("catalog: set header %s: %w", k, err)
		}
	}
	return nil
}

// SetSetting sets one row of the meta table.
func (tx *wtx) SetSetting(key string, v int64) error {
	_, err := tx.q.ExecContext(tx.ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, v)
	if err != nil {
		return fmt.Errorf("catalog: meta %s: %w", key, err)
	}
	return nil
}

// BumpGeneration increments the generation and writes the change-log rows
// of changed under it; now and then it drops rows older than keep
// generations.
func (tx *wtx) BumpGeneration(changed []string, keep int64) (int64, error) {
	var g int64
	err := tx.tx.QueryRowContext(tx.ctx,
		`UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value`).Scan(&g)
	if err != nil {
		return 0, fmt.Errorf("catalog: bump generation: %w", err)
	}
	ins, err := tx.stmt(`INSERT OR IGNORE INTO changes (gen, cpv) VALUES (?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("catalog: change log: %w", err)
	}
	for _, cpv := range changed {
		if _, err := ins.ExecContext(tx.ctx, g, cpv); err != nil {
			return 0, fmt.Errorf("catalog: change log: %w", err)
		}
	}
	if g%1024 == 0 && g > keep {
		floor := g - keep
		if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM changes WHERE gen <= ?`, floor); err != nil {
			return 0, fmt.Errorf("catalog: change log: %w", err)
		}
		if err := tx.SetSetting("changes_floor", floor); err != nil {
			return 0, err
		}
	}
	return g, nil
}

// AddRefused records a file refused at ingest.
func (tx *wtx) AddRefused(path, reason string, size int64, whenNs int64) error {
	_, err := tx.tx.ExecContext(tx.ctx,
		`INSERT INTO refused (path, reason, time_ns, size) VALUES (?, ?, ?, ?)`, path, reason, whenNs, size)
	if err != nil {
		return fmt.Errorf("catalog: add refused %s: %w", path, err)
	}
	return nil
}

// ClearRefused forgets the refusals recorded for path.
func (tx *wtx) ClearRefused(path string) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM refused WHERE path = ?`, path); err != nil {
		return fmt.Errorf("catalog: clear refused %s: %w", path, err)
	}
	return nil
}

// InsertTombstone stores t; an instance keeps its first tombstone.
func (tx *wtx) InsertTombstone(t *catalog.Tombstone) error {
	_, err := tx.q.ExecContext(tx.ctx, `INSERT INTO tombstones (`+tombCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (instance_id) DO NOTHING`,
		t.ID, t.CPV, t.Category, t.PN, t.PF, t.BuildID, t.BuildTime, t.Format, t.Size, t.MtimeNs,
		t.Mode, t.SHA256, t.Blob, t.RemovedAs, t.RemovedBy, t.RemovedNs, t.UntilNs)
	if err != nil {
		return fmt.Errorf("catalog: tombstone of %s build %d: %w", t.CPV, t.BuildID, err)
	}
	return nil
}

// DeleteTombstonesOf deletes the tombstones of cpv with these bytes
// (sha256 != "") or at this build id.
func (tx *wtx) DeleteTombstonesOf(cpv, sha256 string, buildID int64) (int64, error) {
	cond, arg := `build_id = ?`, any(buildID)
	if sha256 != "" {
		cond, arg = `sha256 = ?`, sha256
	}
	res, err := tx.q.ExecContext(tx.ctx, `DELETE FROM tombstones WHERE cpv = ? AND `+cond, cpv, arg)
	if err != nil {
		return 0, fmt.Errorf("catalog: tombstones of %s: %w", cpv, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// ExpiredTombstones are at most max tombstones whose grace ended by nowNs.
func (tx *wtx) ExpiredTombstones(nowNs int64, max int) ([]catalog.Tombstone, error) {
	return scanTombstones(tx.tx.QueryContext(tx.ctx,
		`SELECT `+tombCols+` FROM tombstones WHERE until_ns <= ? ORDER BY until_ns LIMIT ?`, nowNs, max))
}

// DeleteTombstone deletes one instance's tombstone.
func (tx *wtx) DeleteTombstone(instanceID int64) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM tombstones WHERE instance_id = ?`, instanceID); err != nil {
		return fmt.Errorf("catalog: expire tombstone: %w", err)
	}
	return nil
}

// SpendID records that build id of cpv named these bytes.
func (tx *wtx) SpendID(cpv string, id int64, sha256 string) error {
	_, err := tx.q.ExecContext(tx.ctx, `INSERT INTO spent_ids (cpv, build_id, sha256) VALUES (?, ?, ?)
		ON CONFLICT (cpv, build_id) DO UPDATE SET sha256 = excluded.sha256`, cpv, id, sha256)
	if err != nil {
		return fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return nil
}

// IDSpent tells whether build id of cpv named bytes other than sha256
// ("" : any bytes).
func (tx *wtx) IDSpent(cpv string, id int64, sha256 string) (bool, error) {
	var spent bool
	err := tx.q.QueryRowContext(tx.ctx,
		`SELECT EXISTS (SELECT 1 FROM spent_ids WHERE cpv = ? AND build_id = ? AND sha256 <> ?)`, cpv, id, sha256).Scan(&spent)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return spent, nil
}

// SpentIDOf is the newest build id these bytes of cpv had, 0 if none.
func (tx *wtx) SpentIDOf(cpv, sha256 string) (int64, error) {
	var id int64
	err := tx.q.QueryRowContext(tx.ctx, `SELECT build_id FROM spent_ids WHERE cpv = ? AND sha256 = ?
		ORDER BY build_id DESC LIMIT 1`, cpv, sha256).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}
