package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"pkgdirfs/catalog"
	"strings"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// snap holds the reads of a read or write transaction.
type snap struct {
	ctx context.Context
	q   querier
}

// instCols selects an instance for instScanner. category, pf and pn are
// not selected as strings: their byte lengths let the scanner slice them out
// of cpv (schema CHECKs guarantee the layout), saving three allocations per
// row in a 1,000,000-row tree load. Format and state come as booleans for
// the same reason.
const instCols = `id, cpv, length(CAST(category AS BLOB)), length(CAST(pn AS BLOB)),
	build_id, build_time, format = 'gpkg', compression, size, mtime_ns, mode,
	md5, sha1, sha256, blob, signed, state = 'placeholder', created_ns`

// The queries that must stay index-driven at 1,000,000 instances;
// TestQueryPlans checks each with EXPLAIN QUERY PLAN.
const (
	qInstances = `SELECT ` + instCols + ` FROM instances ORDER BY cpv, build_id`
	qByCPV     = `SELECT ` + instCols + ` FROM instances WHERE cpv = ? ORDER BY build_id`
	qByID      = `SELECT ` + instCols + ` FROM instances WHERE id = ?`
	qByDigest  = `SELECT ` + instCols + ` FROM instances
		WHERE cpv = ? AND sha256 = ? AND state = 'package' ORDER BY build_id LIMIT 1`
	qIndexed = `SELECT ` + instCols + ` FROM instances
		WHERE state = 'package' ORDER BY cpv, build_id`
	// A subquery, not a join: its lookup by rowid is the only plan, while
	// a join may be planned as a scan per instance once statistics say the
	// table was small. NULL for an instance without metadata.
	qIndexedMeta = `SELECT i.id, (SELECT x.meta FROM instance_index x WHERE x.instance_id = i.id)
		FROM instances i WHERE i.state = 'package' ORDER BY i.cpv, i.build_id`
	qMeta      = `SELECT meta FROM instance_index WHERE instance_id = ?`
	qTree      = treeSelect + ` ORDER BY cpv, build_id`
	qTreeBelow = treeSelect + ` WHERE cpv < ? ORDER BY cpv, build_id`
	qTreeFrom  = treeSelect + ` WHERE cpv >= ? ORDER BY cpv, build_id`
	treeSelect = `SELECT id, cpv, build_id, build_time, size, mtime_ns, blob,
		length(CAST(pn AS BLOB)) | ((format = 'gpkg') << 20) | ((state = 'placeholder') << 21) | (mode << 22)
		FROM instances INDEXED BY instances_tree`
	qBuildIDTaken = `SELECT EXISTS (SELECT 1 FROM instances WHERE cpv = ? AND build_id = ?)`
	qNextBuildID  = `SELECT coalesce(max(build_id), 0) + 1 FROM instances WHERE cpv = ?`
)

type instScanner struct {
	compression map[string]string // interned: a handful of distinct values
	comp        sql.RawBytes
	// int64 targets: database/sql converts int64 to int/uint32 through
	// strconv, allocating per row.
	catLen, pnLen, mode int64
	gpkg                bool
}

func (s *instScanner) scan(rows *sql.Rows, inst *catalog.Instance, extra ...any) error {
	var err error
	if len(extra) == 0 {
		err = rows.Scan(&inst.ID, &inst.CPV, &s.catLen, &s.pnLen,
			&inst.BuildID, &inst.BuildTime, &s.gpkg, &s.comp, &inst.Size, &inst.MtimeNs, &s.mode,
			&inst.MD5, &inst.SHA1, &inst.SHA256, &inst.Blob, &inst.Signed, &inst.Placeholder, &inst.CreatedNs)
	} else {
		// Columns after instCols (a snapshot member's meta).
		err = rows.Scan(append([]any{&inst.ID, &inst.CPV, &s.catLen, &s.pnLen,
			&inst.BuildID, &inst.BuildTime, &s.gpkg, &s.comp, &inst.Size, &inst.MtimeNs, &s.mode,
			&inst.MD5, &inst.SHA1, &inst.SHA256, &inst.Blob, &inst.Signed, &inst.Placeholder, &inst.CreatedNs}, extra...)...)
	}
	if err != nil {
		return err
	}
	inst.Mode = uint32(s.mode)
	if err := inst.SliceNames(s.catLen, s.pnLen, s.gpkg); err != nil {
		return err
	}
	c, ok := s.compression[string(s.comp)]
	if !ok {
		if s.compression == nil {
			s.compression = make(map[string]string)
		}
		c = string(s.comp)
		s.compression[c] = c
	}
	inst.Compression = c
	return nil
}

// queryInstances runs q (which must select instCols) and calls fn per row.
func (r snap) queryInstances(fn func(inst *catalog.Instance) error, query string, args ...any) error {
	rows, err := r.q.QueryContext(r.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var s instScanner
	for rows.Next() {
		inst := new(catalog.Instance)
		if err := s.scan(rows, inst); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if err := fn(inst); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Instances returns every instance (placeholders included) without Meta,
// ordered by cpv in byte order, then build_id.
func (r snap) Instances() ([]catalog.Instance, error) {
	var n int
	// Capacity hint only, so 1,000,000 rows do not regrow the slice.
	if err := r.q.QueryRowContext(r.ctx, `SELECT count(*) FROM instances`).Scan(&n); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	out := make([]catalog.Instance, 0, n)
	rows, err := r.q.QueryContext(r.ctx, qInstances)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var s instScanner
	for rows.Next() {
		out = append(out, catalog.Instance{})
		if err := s.scan(rows, &out[len(out)-1]); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return out, nil
}

// ForEachInstance streams every instance (placeholders included) without
// Meta, ordered by cpv in byte order, then build_id: a tree load at
// 1,000,000 instances need not hold them all at once. Only what a mount's
// tree needs is read: the digests, compression, signed and created_ns stay
// empty. inst is reused for the next row: fn must copy what it keeps.
func (r snap) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	return r.forEachTree(fn, qTree)
}

// ForEachInstanceBelow is ForEachInstance of the CPVs before cpv (in byte
// order), and ForEachInstanceFrom of the others: a load reads the two
// halves at once, each in its own view.
func (r snap) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.forEachTree(fn, qTreeBelow, cpv)
}

func (r snap) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.forEachTree(fn, qTreeFrom, cpv)
}

// CategoryNear returns the first CPV of the category of the CPV at position
// n in byte order ("" past the end): a split there leaves every category
// whole on one side.
func (r snap) CategoryNear(n int64) (string, error) {
	var cpv string
	err := r.q.QueryRowContext(r.ctx, `SELECT cpv FROM instances INDEXED BY instances_cpv_build ORDER BY cpv LIMIT 1 OFFSET ?`, n).Scan(&cpv)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("catalog: %w", err)
	}
	cat, _, _ := strings.Cut(cpv, "/")
	// Every CPV of the category sorts at or after "cat/", and every other
	// category's wholly before or after it.
	return cat + "/", nil
}

func (r snap) forEachTree(fn func(inst *catalog.Instance) error, query string, args ...any) error {
	// Served by instances_tree alone. The small fields come packed in one
	// integer: at a million rows each column costs a conversion per row.
	// (SQLite's | and << share one precedence: hence the parentheses.)
	rows, err := r.q.QueryContext(r.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var (
		inst   catalog.Instance
		packed int64
		cpv    sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&inst.ID, &cpv, &inst.BuildID, &inst.BuildTime, &inst.Size, &inst.MtimeNs, &inst.Blob, &packed); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		// Rows of one CPV share its string.
		if inst.CPV != string(cpv) {
			inst.CPV = string(cpv)
		}
		inst.Mode = uint32(packed >> 22)
		inst.Placeholder = packed>>21&1 == 1
		catLen := int64(strings.IndexByte(inst.CPV, '/'))
		if err := inst.SliceNames(catLen, packed&(1<<20-1), packed>>20&1 == 1); err != nil {
			return err
		}
		if err := fn(&inst); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// InstancesByCPV returns the instances of one cpv (placeholders included)
// without Meta, by build_id.
func (r snap) InstancesByCPV(cpv string) ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := r.queryInstances(func(inst *catalog.Instance) error {
		out = append(out, *inst)
		return nil
	}, qByCPV, cpv)
	return out, err
}

// ForEachIndexed streams package instances (no placeholders) with Meta,
// ordered by cpv in byte order, then build_id. Two cursors in the same
// transaction, merged in step: no query per instance. fn may keep inst.
func (r snap) ForEachIndexed(fn func(inst *catalog.Instance) error) error {
	irows, err := r.q.QueryContext(r.ctx, qIndexed)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer irows.Close()
	mrows, err := r.q.QueryContext(r.ctx, qIndexedMeta)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer mrows.Close()

	keys := make(map[string]string) // interned: a few dozen distinct keys
	var (
		mID      int64
		mBlob    sql.RawBytes
		mPending bool
	)
	nextMeta := func() error {
		mPending = mrows.Next()
		if !mPending {
			return mrows.Err()
		}
		return mrows.Scan(&mID, &mBlob)
	}
	if err := nextMeta(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	var s instScanner
	for irows.Next() {
		inst := new(catalog.Instance)
		if err := s.scan(irows, inst); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if !mPending || mID != inst.ID {
			// Both cursors share one snapshot and one order; this is a bug.
			return fmt.Errorf("catalog: metadata out of step with instance %d", inst.ID)
		}
		m, err := catalog.DecodeMeta(mBlob, keys)
		if err != nil {
			return fmt.Errorf("catalog: instance %d: %w", inst.ID, err)
		}
		inst.Meta = m
		if err := nextMeta(); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if err := fn(inst); err != nil {
			return err
		}
	}
	if err := irows.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if mPending {
		// Both cursors share one snapshot and one order; this is a bug.
		return fmt.Errorf("catalog: metadata of instance %d out of step with instances", mID)
	}
	return nil
}

// InstanceByID returns one instance with its Meta.
func (r snap) InstanceByID(id int64) (*catalog.Instance, error) {
	inst, err := r.one(qByID, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: instance %d: %w", id, err)
	}
	if inst.Meta, err = r.InstanceMeta(id); err != nil {
		return nil, err
	}
	return inst, nil
}

// FindByDigest returns the package instance of cpv whose bytes have this
// SHA-256 (the lowest build id if several), or catalog.ErrNotFound. Placeholders
// never match: they hold no bytes.
func (r snap) FindByDigest(cpv, sha256 string) (*catalog.Instance, error) {
	inst, err := r.one(qByDigest, cpv, sha256)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s sha256 %s: %w", cpv, sha256, err)
	}
	return inst, nil
}

// one returns the first instance of query, or catalog.ErrNotFound.
func (r snap) one(query string, args ...any) (*catalog.Instance, error) {
	var found *catalog.Instance
	err := r.queryInstances(func(inst *catalog.Instance) error {
		found = inst
		return errStop
	}, query, args...)
	if err != nil && err != errStop {
		return nil, err
	}
	if found == nil {
		return nil, catalog.ErrNotFound
	}
	return found, nil
}

var errStop = errors.New("stop")

// InstanceMeta returns the index values of one instance (empty, not nil,
// if it has none or does not exist).
func (r snap) InstanceMeta(id int64) (map[string]string, error) {
	var b []byte
	err := r.q.QueryRowContext(r.ctx, qMeta, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return make(map[string]string), nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	m, err := catalog.DecodeMeta(b, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return m, nil
}

// Setting is one row of the meta table.
func (r snap) Setting(key string) (int64, bool, error) {
	var v int64
	err := r.q.QueryRowContext(r.ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("catalog: meta %s: %w", key, err)
	}
	return v, true, nil
}

// Header returns the stored Packages header keys.
func (r snap) Header() (map[string]string, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT key, value FROM header`)
	if err != nil {
		return nil, fmt.Errorf("catalog: header: %w", err)
	}
	defer rows.Close()
	h := make(map[string]string)
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("catalog: header: %w", err)
		}
		h[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: header: %w", err)
	}
	return h, nil
}

// Refused lists the files refused at ingest, oldest first.
func (r snap) Refused() ([]catalog.Refused, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT id, path, reason, time_ns, size FROM refused ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: refused: %w", err)
	}
	defer rows.Close()
	var out []catalog.Refused
	for rows.Next() {
		var f catalog.Refused
		if err := rows.Scan(&f.ID, &f.Path, &f.Reason, &f.TimeNs, &f.Size); err != nil {
			return nil, fmt.Errorf("catalog: refused: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: refused: %w", err)
	}
	return out, nil
}

// InstanceIDHigh is the highest instance id ever given: at least the number
// of instances, read without a scan (a size hint for whoever loads them).
func (r snap) InstanceIDHigh() (int64, error) {
	var n int64
	err := r.q.QueryRowContext(r.ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'instances'), 0)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("catalog: %w", err)
	}
	return n, nil
}

// Stats counts package instances, placeholders and the bytes of packages.
func (r snap) Stats() (instances, placeholders int64, bytes int64, err error) {
	err = r.q.QueryRowContext(r.ctx, `SELECT
		coalesce(sum(state = 'package'), 0),
		coalesce(sum(state = 'placeholder'), 0),
		coalesce(sum(CASE WHEN state = 'package' THEN size END), 0)
		FROM instances`).Scan(&instances, &placeholders, &bytes)
	if err != nil {
		err = fmt.Errorf("catalog: stats: %w", err)
	}
	return
}
