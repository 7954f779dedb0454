package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Instance is one package instance or placeholder.
type Instance struct {
	ID          int64
	Category    string
	PN          string
	PF          string
	CPV         string // Category + "/" + PF
	BuildID     int64  // 0 = none (only a placeholder may have 0)
	BuildTime   int64
	Format      string // "xpak" | "gpkg"
	Compression string
	Size        int64
	MtimeNs     int64
	Mode        uint32 // permission bits, e.g. 0644
	MD5         string // lowercase hex
	SHA1        string // lowercase hex
	SHA256      string // lowercase hex
	Blob        string // file name relative to blobs/
	Signed      bool
	Placeholder bool // a 0-byte reservation, never in Packages
	CreatedNs   int64
	Meta        map[string]string // index values (internal names); nil unless loaded
}

// Refused is a file refused at ingest.
type Refused struct {
	ID     int64
	Path   string
	Reason string
	TimeNs int64
	Size   int64
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// reader holds the read queries shared by View, Tx and DB.
type reader struct {
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

func (s *instScanner) scan(rows *sql.Rows, inst *Instance) error {
	if err := rows.Scan(&inst.ID, &inst.CPV, &s.catLen, &s.pnLen,
		&inst.BuildID, &inst.BuildTime, &s.gpkg, &s.comp, &inst.Size, &inst.MtimeNs, &s.mode,
		&inst.MD5, &inst.SHA1, &inst.SHA256, &inst.Blob, &inst.Signed, &inst.Placeholder, &inst.CreatedNs); err != nil {
		return err
	}
	inst.Mode = uint32(s.mode)
	if err := inst.sliceNames(s.catLen, s.pnLen, s.gpkg); err != nil {
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

// sliceNames sets Category, PF and PN from CPV and the byte lengths of
// category and pn (schema CHECKs guarantee the layout), and Format.
func (inst *Instance) sliceNames(catLen, pnLen int64, gpkg bool) error {
	cpv := inst.CPV
	if catLen <= 0 || catLen >= int64(len(cpv)) || cpv[catLen] != '/' || pnLen > int64(len(cpv))-catLen-1 {
		return fmt.Errorf("catalog: instance %d: malformed cpv %q", inst.ID, cpv)
	}
	inst.Category, inst.PF = cpv[:catLen], cpv[catLen+1:]
	inst.PN = inst.PF[:pnLen]
	inst.Format = "xpak"
	if gpkg {
		inst.Format = "gpkg"
	}
	return nil
}

// queryInstances runs q (which must select instCols) and calls fn per row.
func (r reader) queryInstances(fn func(inst *Instance) error, query string, args ...any) error {
	rows, err := r.q.QueryContext(r.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var s instScanner
	for rows.Next() {
		inst := new(Instance)
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
func (r reader) Instances() ([]Instance, error) {
	var n int
	// Capacity hint only, so 1,000,000 rows do not regrow the slice.
	if err := r.q.QueryRowContext(r.ctx, `SELECT count(*) FROM instances`).Scan(&n); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	out := make([]Instance, 0, n)
	rows, err := r.q.QueryContext(r.ctx, qInstances)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var s instScanner
	for rows.Next() {
		out = append(out, Instance{})
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
func (r reader) ForEachInstance(fn func(inst *Instance) error) error {
	return r.forEachTree(fn, qTree)
}

// ForEachInstanceBelow is ForEachInstance of the CPVs before cpv (in byte
// order), and ForEachInstanceFrom of the others: a load reads the two
// halves at once, each in its own view.
func (r reader) ForEachInstanceBelow(cpv string, fn func(inst *Instance) error) error {
	return r.forEachTree(fn, qTreeBelow, cpv)
}

func (r reader) ForEachInstanceFrom(cpv string, fn func(inst *Instance) error) error {
	return r.forEachTree(fn, qTreeFrom, cpv)
}

// CategoryNear returns the first CPV of the category of the CPV at position
// n in byte order ("" past the end): a split there leaves every category
// whole on one side.
func (r reader) CategoryNear(n int64) (string, error) {
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

func (r reader) forEachTree(fn func(inst *Instance) error, query string, args ...any) error {
	// Served by instances_tree alone. The small fields come packed in one
	// integer: at a million rows each column costs a conversion per row.
	// (SQLite's | and << share one precedence: hence the parentheses.)
	rows, err := r.q.QueryContext(r.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var (
		inst   Instance
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
		if err := inst.sliceNames(catLen, packed&(1<<20-1), packed>>20&1 == 1); err != nil {
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
func (r reader) InstancesByCPV(cpv string) ([]Instance, error) {
	var out []Instance
	err := r.queryInstances(func(inst *Instance) error {
		out = append(out, *inst)
		return nil
	}, qByCPV, cpv)
	return out, err
}

// ForEachIndexed streams package instances (no placeholders) with Meta,
// ordered by cpv in byte order, then build_id. Two cursors in the same
// transaction, merged in step: no query per instance. fn may keep inst.
func (r reader) ForEachIndexed(fn func(inst *Instance) error) error {
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
		inst := new(Instance)
		if err := s.scan(irows, inst); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if !mPending || mID != inst.ID {
			// Both cursors share one snapshot and one order; this is a bug.
			return fmt.Errorf("catalog: metadata out of step with instance %d", inst.ID)
		}
		m, err := decodeMeta(mBlob, keys)
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
func (r reader) InstanceByID(id int64) (*Instance, error) {
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
// SHA-256 (the lowest build id if several), or ErrNotFound. Placeholders
// never match: they hold no bytes.
func (r reader) FindByDigest(cpv, sha256 string) (*Instance, error) {
	inst, err := r.one(qByDigest, cpv, sha256)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s sha256 %s: %w", cpv, sha256, err)
	}
	return inst, nil
}

// one returns the first instance of query, or ErrNotFound.
func (r reader) one(query string, args ...any) (*Instance, error) {
	var found *Instance
	err := r.queryInstances(func(inst *Instance) error {
		found = inst
		return errStop
	}, query, args...)
	if err != nil && err != errStop {
		return nil, err
	}
	if found == nil {
		return nil, ErrNotFound
	}
	return found, nil
}

var errStop = errors.New("stop")

// InstanceMeta returns the index values of one instance (empty, not nil,
// if it has none or does not exist).
func (r reader) InstanceMeta(id int64) (map[string]string, error) {
	var b []byte
	err := r.q.QueryRowContext(r.ctx, qMeta, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return make(map[string]string), nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	m, err := decodeMeta(b, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return m, nil
}

func (r reader) metaInt(key string) (int64, error) {
	var v int64
	if err := r.q.QueryRowContext(r.ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog: meta %s: %w", key, err)
	}
	return v, nil
}

// Generation returns the generation counter.
func (r reader) Generation() (int64, error) { return r.metaInt("generation") }

// LastTimestamp returns the last TIMESTAMP handed out by NextTimestamp.
func (r reader) LastTimestamp() (int64, error) { return r.metaInt("last_timestamp") }

// Header returns the stored Packages header keys.
func (r reader) Header() (map[string]string, error) {
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
func (r reader) Refused() ([]Refused, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT id, path, reason, time_ns, size FROM refused ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: refused: %w", err)
	}
	defer rows.Close()
	var out []Refused
	for rows.Next() {
		var f Refused
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
func (r reader) InstanceIDHigh() (int64, error) {
	var n int64
	err := r.q.QueryRowContext(r.ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'instances'), 0)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("catalog: %w", err)
	}
	return n, nil
}

// Stats counts package instances, placeholders and the bytes of packages.
func (r reader) Stats() (instances, placeholders int64, bytes int64, err error) {
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

// InsertInstance inserts inst and its Meta and sets inst.ID (any ID passed
// in is ignored: ids come from the table and are never reused). CPV is
// filled from Category/PF when empty; CreatedNs from the clock when 0.
// A taken (cpv, build_id) yields an error wrapping ErrBuildIDTaken; the
// transaction stays usable, so the caller may try another id.
func (tx *Tx) InsertInstance(inst *Instance) (int64, error) {
	if inst.CPV == "" {
		inst.CPV = inst.Category + "/" + inst.PF
	}
	if inst.CPV != inst.Category+"/"+inst.PF || inst.Category == "" || inst.PF == "" ||
		!strings.HasPrefix(inst.PF, inst.PN) {
		return 0, fmt.Errorf("catalog: insert: inconsistent names category=%q pn=%q pf=%q cpv=%q",
			inst.Category, inst.PN, inst.PF, inst.CPV)
	}
	if inst.Format != "xpak" && inst.Format != "gpkg" {
		return 0, fmt.Errorf("catalog: insert %s: bad format %q", inst.CPV, inst.Format)
	}
	if inst.CreatedNs == 0 {
		inst.CreatedNs = time.Now().UnixNano()
	}
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
			return 0, fmt.Errorf("catalog: insert %s build id %d: %w", inst.CPV, inst.BuildID, ErrBuildIDTaken)
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
			_, err = ins.ExecContext(tx.ctx, id, encodeMeta(inst.Meta))
		}
		if err != nil {
			return 0, fmt.Errorf("catalog: insert %s: meta: %w", inst.CPV, err)
		}
	}
	tx.touch(inst.CPV)
	if tx.inserted == nil {
		tx.inserted = make(map[int64]bool)
	}
	tx.inserted[id] = true
	if inst.BuildID > 0 {
		_, err := tx.reader.q.ExecContext(tx.ctx, `INSERT INTO build_id_high (cpv, high) VALUES (?, ?)
			ON CONFLICT (cpv) DO UPDATE SET high = max(high, excluded.high)`, inst.CPV, inst.BuildID)
		if err != nil {
			return 0, fmt.Errorf("catalog: insert %s: %w", inst.CPV, err)
		}
	}
	inst.ID = id
	return id, nil
}

// DeleteInstance deletes an instance and (by cascade) its Meta.
func (tx *Tx) DeleteInstance(id int64) error {
	var cpv string
	err := tx.tx.QueryRowContext(tx.ctx, `DELETE FROM instances WHERE id = ? RETURNING cpv`, id).Scan(&cpv)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("catalog: delete %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("catalog: delete %d: %w", id, err)
	}
	tx.touch(cpv)
	return nil
}

// BuildIDTaken reports whether any row (placeholders included) holds
// (cpv, id).
func (tx *Tx) BuildIDTaken(cpv string, id int64) (bool, error) {
	var taken bool
	err := tx.reader.q.QueryRowContext(tx.ctx,
		qBuildIDTaken, cpv, id).Scan(&taken)
	if err != nil {
		return false, fmt.Errorf("catalog: build id %s-%d: %w", cpv, id, err)
	}
	return taken, nil
}

// NextBuildID returns max(build_id)+1 over all rows of cpv (placeholders
// included), 1 when there are none. Gaps are not reused: Portage
// allocates the same way, so ids keep increasing with time.
func (tx *Tx) NextBuildID(cpv string) (int64, error) {
	var next int64
	err := tx.reader.q.QueryRowContext(tx.ctx,
		qNextBuildID, cpv).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("catalog: next build id %s: %w", cpv, err)
	}
	var high int64
	err = tx.reader.q.QueryRowContext(tx.ctx, `SELECT high FROM build_id_high WHERE cpv = ?`, cpv).Scan(&high)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("catalog: next build id %s: %w", cpv, err)
	}
	return max(next, high+1), nil
}

// SetHeader replaces the whole stored Packages header.
func (tx *Tx) SetHeader(h map[string]string) error {
	tx.touch(HeaderChange)
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

// BumpGeneration increments the generation and returns the new value.
// Every committed change calls it exactly once, last. The change log row of
// each CPV the transaction touched is written with it, in the same
// transaction: a mount (this process's or another's) applies exactly those
// CPVs instead of reloading the catalog.
func (tx *Tx) BumpGeneration() (int64, error) {
	var g int64
	err := tx.tx.QueryRowContext(tx.ctx,
		`UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value`).Scan(&g)
	if err != nil {
		return 0, fmt.Errorf("catalog: bump generation: %w", err)
	}
	if err := tx.logChanges(g); err != nil {
		return 0, err
	}
	tx.touched = nil
	return g, nil
}

// NextTimestamp stores and returns max(now, last_timestamp+1), so
// TIMESTAMP strictly increases even if the clock steps back. now is in
// whatever unit the caller uses for TIMESTAMP (seconds, as Portage).
func (tx *Tx) NextTimestamp(now int64) (int64, error) {
	last, err := tx.LastTimestamp()
	if err != nil {
		return 0, err
	}
	ts := max(now, last+1)
	if _, err := tx.tx.ExecContext(tx.ctx, `UPDATE meta SET value = ? WHERE key = 'last_timestamp'`, ts); err != nil {
		return 0, fmt.Errorf("catalog: next timestamp: %w", err)
	}
	return ts, nil
}

// AddRefused records a file refused at ingest.
func (tx *Tx) AddRefused(path, reason string, size int64, whenNs int64) error {
	_, err := tx.tx.ExecContext(tx.ctx,
		`INSERT INTO refused (path, reason, time_ns, size) VALUES (?, ?, ?, ?)`, path, reason, whenNs, size)
	if err != nil {
		return fmt.Errorf("catalog: add refused %s: %w", path, err)
	}
	return nil
}

// ClearRefused forgets the refusals recorded for path (e.g. the file was
// removed, or later accepted).
func (tx *Tx) ClearRefused(path string) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM refused WHERE path = ?`, path); err != nil {
		return fmt.Errorf("catalog: clear refused %s: %w", path, err)
	}
	return nil
}
