package catalog

import (
	"context"
	"errors"
	"fmt"
)

// Summary is what pkgdirfs stats reports: figures over the package
// instances (placeholders apart).
type Summary struct {
	Instances    int64
	Placeholders int64
	CPVs         int64
	Bytes        int64
	Categories   []CategoryBytes // largest first
	MostBuilds   []CPVBuilds     // most builds first
	Refused      int64
	// Oldest and Newest are by Portage's order (BUILD_TIME, then BUILD_ID)
	// among instances with a BUILD_TIME; nil if none has one.
	Oldest, Newest *Instance
}

// CategoryBytes is one category's share.
type CategoryBytes struct {
	Category  string
	Instances int64
	Bytes     int64
}

// CPVBuilds is the number of builds of one CPV.
type CPVBuilds struct {
	CPV    string
	Builds int64
	Bytes  int64
}

// Summary computes the figures in one snapshot: top categories by bytes
// (at most topCategories) and CPVs by builds (at most topCPVs, only those
// with more than one build). It scans the catalog.
func (r reader) Summary(topCategories, topCPVs int) (*Summary, error) {
	s := &Summary{}
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
		var c CategoryBytes
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
		var c CPVBuilds
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
		ORDER BY build_time, build_id LIMIT 1`); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, q("oldest", err)
	}
	if s.Newest, err = r.one(`SELECT ` + instCols + ` FROM instances WHERE state = 'package' AND build_time > 0
		ORDER BY build_time DESC, build_id DESC LIMIT 1`); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, q("newest", err)
	}
	return s, nil
}

// Summary is reader.Summary in a snapshot of its own.
func (db *DB) Summary(ctx context.Context, topCategories, topCPVs int) (*Summary, error) {
	var s *Summary
	err := db.View(ctx, func(v *View) error {
		var err error
		s, err = v.Summary(topCategories, topCPVs)
		return err
	})
	return s, err
}

// BlobUsage counts the files in blobs/ and their bytes (what the disk
// holds, orphans of interrupted commits included).
func (s *Store) BlobUsage() (files, bytes int64, err error) {
	err = s.blobs.Walk(func(_ string, size int64) error {
		files++
		bytes += size
		return nil
	})
	return files, bytes, err
}
