package postgres

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pkgdirfs/catalog"
)

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// snap holds the reads of a read or write transaction.
type snap struct {
	ctx context.Context
	q   querier
	// preSnapshots: the catalog has no snapshot tables (DB.preSnapshots).
	preSnapshots bool
	preChannels  bool // no channel table (DB.preChannels)
}

var _ catalog.Snapshot = snap{}

// instCols selects an instance for instScanner; category, pf and pn come
// as byte lengths and are sliced out of cpv (the schema's CHECKs).
var instCols = cols("")

// cols is instCols of the table aliased p ("i.": instances i).
func cols(p string) string {
	return strings.NewReplacer("$", p).Replace(`$id, $cpv, octet_length($category), octet_length($pn), $build_id,
	$build_time, $format = 'gpkg', $compression, $size, $mtime_ns, $mode, $md5, $sha1, $sha256, $blob,
	$signed, $state = 'placeholder', $created_ns`)
}

// instScanner scans instCols, interning the few compression values.
type instScanner struct {
	comp map[string]string
}

func (s *instScanner) scan(rows pgx.Row, inst *catalog.Instance, extra ...any) error {
	var catLen, pnLen, mode int64
	var gpkg bool
	var comp string
	dest := append([]any{&inst.ID, &inst.CPV, &catLen, &pnLen, &inst.BuildID, &inst.BuildTime, &gpkg, &comp,
		&inst.Size, &inst.MtimeNs, &mode, &inst.MD5, &inst.SHA1, &inst.SHA256, &inst.Blob, &inst.Signed,
		&inst.Placeholder, &inst.CreatedNs}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	inst.Mode = uint32(mode)
	if c, ok := s.comp[comp]; ok {
		comp = c
	} else {
		if s.comp == nil {
			s.comp = map[string]string{}
		}
		s.comp[comp] = comp
	}
	inst.Compression = comp
	return inst.SliceNames(catLen, pnLen, gpkg)
}

// each runs query (selecting instCols) and calls fn per row.
func (r snap) each(fn func(inst *catalog.Instance) error, query string, args ...any) error {
	rows, err := r.q.Query(r.ctx, query, args...)
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

func (r snap) collect(query string, args ...any) ([]catalog.Instance, error) {
	var out []catalog.Instance
	err := r.each(func(inst *catalog.Instance) error {
		out = append(out, *inst)
		return nil
	}, query, args...)
	return out, err
}

func (r snap) one(query string, args ...any) (*catalog.Instance, error) {
	out, err := r.collect(query, args...)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, catalog.ErrNotFound
	}
	return &out[0], nil
}

func (r snap) Setting(key string) (int64, bool, error) {
	var v int64
	err := r.q.QueryRow(r.ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("catalog: meta %s: %w", key, err)
	}
	return v, true, nil
}

func (r snap) Header() (map[string]string, error) {
	rows, err := r.q.Query(r.ctx, `SELECT key, value FROM header`)
	if err != nil {
		return nil, fmt.Errorf("catalog: header: %w", err)
	}
	h := map[string]string{}
	var k, v string
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		h[k] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: header: %w", err)
	}
	return h, nil
}

func (r snap) InstanceIDHigh() (int64, error) {
	var n int64
	if err := r.q.QueryRow(r.ctx, `SELECT coalesce(max(id), 0) FROM instances`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: %w", err)
	}
	return n, nil
}

func (r snap) CategoryNear(n int64) (string, error) {
	var cpv string
	err := r.q.QueryRow(r.ctx, `SELECT cpv FROM instances ORDER BY cpv LIMIT 1 OFFSET $1`, n).Scan(&cpv)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("catalog: %w", err)
	}
	cat, _, _ := strings.Cut(cpv, "/")
	return cat + "/", nil
}

const orderTree = ` ORDER BY cpv, build_id`

func (r snap) Instances() ([]catalog.Instance, error) {
	return r.collect(`SELECT ` + instCols + ` FROM instances` + orderTree)
}

func (r snap) ForEachInstance(fn func(inst *catalog.Instance) error) error {
	return r.each(fn, `SELECT `+instCols+` FROM instances`+orderTree)
}

func (r snap) ForEachInstanceBelow(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.each(fn, `SELECT `+instCols+` FROM instances WHERE cpv < $1`+orderTree, cpv)
}

func (r snap) ForEachInstanceFrom(cpv string, fn func(inst *catalog.Instance) error) error {
	return r.each(fn, `SELECT `+instCols+` FROM instances WHERE cpv >= $1`+orderTree, cpv)
}

// withMeta streams packages of query (instCols plus x.meta) with Meta.
func (r snap) withMeta(fn func(inst *catalog.Instance) error, where string, args ...any) error {
	rows, err := r.q.Query(r.ctx, `SELECT `+cols("i.")+`, x.meta FROM instances i
		LEFT JOIN instance_index x ON x.instance_id = i.id
		WHERE i.state = 'package'`+where+` ORDER BY i.cpv, i.build_id`, args...)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var s instScanner
	keys := map[string]string{}
	for rows.Next() {
		inst := new(catalog.Instance)
		var meta []byte
		if err := s.scan(rows, inst, &meta); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if inst.Meta, err = catalog.DecodeMeta(meta, keys); err != nil {
			return fmt.Errorf("catalog: instance %d: %w", inst.ID, err)
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

func (r snap) ForEachIndexed(fn func(inst *catalog.Instance) error) error { return r.withMeta(fn, "") }

func (r snap) ForEachInScope(sc catalog.Scope, fn func(inst *catalog.Instance) error) error {
	if sc.PN == "" {
		return r.withMeta(fn, ` AND i.category = $1`, sc.Category)
	}
	return r.withMeta(fn, ` AND i.category = $1 AND i.pn = $2`, sc.Category, sc.PN)
}

func (r snap) Changes(since int64) ([]string, error) {
	rows, err := r.q.Query(r.ctx, `SELECT DISTINCT cpv FROM changes WHERE gen > $1 ORDER BY cpv`, since)
	if err != nil {
		return nil, fmt.Errorf("catalog: changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("catalog: changes: %w", err)
	}
	return out, nil
}

func (r snap) InstancesByCPV(cpv string) ([]catalog.Instance, error) {
	return r.collect(`SELECT `+instCols+` FROM instances WHERE cpv = $1 ORDER BY build_id`, cpv)
}

func (r snap) InstanceByID(id int64) (*catalog.Instance, error) {
	inst, err := r.one(`SELECT `+instCols+` FROM instances WHERE id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("catalog: instance %d: %w", id, err)
	}
	if inst.Meta, err = r.InstanceMeta(id); err != nil {
		return nil, err
	}
	return inst, nil
}

func (r snap) FindByDigest(cpv, sha256 string) (*catalog.Instance, error) {
	inst, err := r.one(`SELECT `+instCols+` FROM instances WHERE cpv = $1 AND sha256 = $2 AND state = 'package'
		ORDER BY build_id LIMIT 1`, cpv, sha256)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s sha256 %s: %w", cpv, sha256, err)
	}
	return inst, nil
}

func (r snap) HasDigest(cpv, sha256 string) (bool, error) {
	var ok bool
	err := r.q.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE cpv = $1 AND sha256 = $2 AND state = 'package')`,
		cpv, sha256).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("catalog: %s sha256 %s: %w", cpv, sha256, err)
	}
	return ok, nil
}

func (r snap) metaBytes(id int64) ([]byte, error) {
	var b []byte
	err := r.q.QueryRow(r.ctx, `SELECT meta FROM instance_index WHERE instance_id = $1`, id).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return b, nil
}

func (r snap) InstanceMeta(id int64) (map[string]string, error) {
	b, err := r.metaBytes(id)
	if err != nil {
		return nil, err
	}
	m, err := catalog.DecodeMeta(b, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return m, nil
}

func (r snap) MetaValue(id int64, key string) (string, error) {
	b, err := r.metaBytes(id)
	if err != nil {
		return "", err
	}
	v, _, err := catalog.MetaValue(b, key)
	if err != nil {
		return "", fmt.Errorf("catalog: meta of %d: %w", id, err)
	}
	return v, nil
}

func (r snap) CountMetaValues(key string) (map[string]int, error) {
	rows, err := r.q.Query(r.ctx, `SELECT x.meta FROM instance_index x
		JOIN instances i ON i.id = x.instance_id WHERE i.state = 'package'`)
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	var b []byte
	_, err = pgx.ForEachRow(rows, []any{&b}, func() error {
		v, _, err := catalog.MetaValue(b, key)
		if err == nil && v != "" {
			count[v]++
		}
		return err
	})
	return count, err
}

func (r snap) Refused() ([]catalog.Refused, error) {
	rows, err := r.q.Query(r.ctx, `SELECT id, path, reason, time_ns, size FROM refused ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: refused: %w", err)
	}
	var out []catalog.Refused
	var f catalog.Refused
	_, err = pgx.ForEachRow(rows, []any{&f.ID, &f.Path, &f.Reason, &f.TimeNs, &f.Size}, func() error {
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: refused: %w", err)
	}
	return out, nil
}

func (r snap) RefusalReason(path string) (string, error) {
	var reason string
	err := r.q.QueryRow(r.ctx, `SELECT reason FROM refused WHERE path = $1 ORDER BY time_ns DESC LIMIT 1`, path).Scan(&reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return reason, err
}

func (r snap) Stats() (instances, placeholders int64, bytes int64, err error) {
	err = r.q.QueryRow(r.ctx, `SELECT
		count(*) FILTER (WHERE state = 'package'),
		count(*) FILTER (WHERE state = 'placeholder'),
		coalesce(sum(size) FILTER (WHERE state = 'package'), 0)
		FROM instances`).Scan(&instances, &placeholders, &bytes)
	if err != nil {
		err = fmt.Errorf("catalog: stats: %w", err)
	}
	return
}

func (r snap) Summary(topCategories, topCPVs int) (*catalog.Summary, error) {
	s := &catalog.Summary{}
	var err error
	if s.Instances, s.Placeholders, s.Bytes, err = r.Stats(); err != nil {
		return nil, err
	}
	q := func(what string, err error) error { return fmt.Errorf("catalog: stats: %s: %w", what, err) }
	if err := r.q.QueryRow(r.ctx, `SELECT count(DISTINCT cpv) FROM instances WHERE state = 'package'`).Scan(&s.CPVs); err != nil {
		return nil, q("cpvs", err)
	}
	rows, err := r.q.Query(r.ctx, `SELECT category, count(*), sum(size) FROM instances WHERE state = 'package'
		GROUP BY category ORDER BY sum(size) DESC, category LIMIT $1`, topCategories)
	if err != nil {
		return nil, q("categories", err)
	}
	var c catalog.CategoryBytes
	if _, err := pgx.ForEachRow(rows, []any{&c.Category, &c.Instances, &c.Bytes}, func() error {
		s.Categories = append(s.Categories, c)
		return nil
	}); err != nil {
		return nil, q("categories", err)
	}
	rows, err = r.q.Query(r.ctx, `SELECT cpv, count(*), sum(size) FROM instances WHERE state = 'package'
		GROUP BY cpv HAVING count(*) > 1 ORDER BY count(*) DESC, cpv LIMIT $1`, topCPVs)
	if err != nil {
		return nil, q("builds", err)
	}
	var b catalog.CPVBuilds
	if _, err := pgx.ForEachRow(rows, []any{&b.CPV, &b.Builds, &b.Bytes}, func() error {
		s.MostBuilds = append(s.MostBuilds, b)
		return nil
	}); err != nil {
		return nil, q("builds", err)
	}
	if err := r.q.QueryRow(r.ctx, `SELECT count(*) FROM refused`).Scan(&s.Refused); err != nil {
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

func (r snap) Empty() (bool, error) {
	var empty bool
	err := r.q.QueryRow(r.ctx, `SELECT NOT EXISTS (SELECT 1 FROM instances) AND NOT EXISTS (SELECT 1 FROM tombstones)`).Scan(&empty)
	if err != nil {
		return false, fmt.Errorf("catalog: %w", err)
	}
	return empty, nil
}

const tombCols = `instance_id, cpv, category, pn, pf, build_id, build_time, format, size, mtime_ns, mode,
	sha256, blob, removed_as, removed_by, removed_ns, until_ns`

func (r snap) tombstones(query string, args ...any) ([]catalog.Tombstone, error) {
	rows, err := r.q.Query(r.ctx, `SELECT `+tombCols+` FROM tombstones `+query, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	var out []catalog.Tombstone
	var t catalog.Tombstone
	var mode int64
	_, err = pgx.ForEachRow(rows, []any{&t.ID, &t.CPV, &t.Category, &t.PN, &t.PF, &t.BuildID, &t.BuildTime, &t.Format,
		&t.Size, &t.MtimeNs, &mode, &t.SHA256, &t.Blob, &t.RemovedAs, &t.RemovedBy, &t.RemovedNs, &t.UntilNs}, func() error {
		t.Mode = uint32(mode)
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return out, nil
}

func (r snap) Tombstones() ([]catalog.Tombstone, error) {
	return r.tombstones(`ORDER BY cpv, build_id`)
}

func (r snap) AnyTombstones() (bool, error) {
	var any bool
	if err := r.q.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM tombstones)`).Scan(&any); err != nil {
		return false, fmt.Errorf("catalog: tombstones: %w", err)
	}
	return any, nil
}

func (r snap) TombstonesOf(cpv string) ([]catalog.Tombstone, error) {
	return r.tombstones(`WHERE cpv = $1 ORDER BY build_id`, cpv)
}

func (r snap) TombstoneRemovedAs(name string) (*catalog.Tombstone, error) {
	ts, err := r.tombstones(`WHERE removed_as = $1 ORDER BY removed_ns DESC LIMIT 1`, name)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, catalog.ErrNotFound
	}
	return &ts[0], nil
}

func (r snap) TombstonesDue(nowNs int64) (bool, error) {
	var due bool
	if err := r.q.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM tombstones WHERE until_ns <= $1)`, nowNs).Scan(&due); err != nil {
		return false, fmt.Errorf("catalog: expired tombstones: %w", err)
	}
	return due, nil
}

func (r snap) BlobInUse(blob string) (bool, error) {
	var used bool
	if r.preSnapshots {
		err := r.q.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE sha256 = $2 AND blob = $1)
			OR EXISTS (SELECT 1 FROM tombstones WHERE blob = $1)`, blob, path.Base(blob)).Scan(&used)
		return used, err
	}
	// Blobs are named by their SHA-256: the indexed column finds them.
	err := r.q.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM instances WHERE sha256 = $2 AND blob = $1)
		OR EXISTS (SELECT 1 FROM tombstones WHERE blob = $1)
		OR EXISTS (SELECT 1 FROM held_instances WHERE blob = $1)`, blob, path.Base(blob)).Scan(&used)
	return used, err
}
