package postgres

import (
	"fmt"

	"pkgdirfs/catalog"
)

// Channels lists every channel by name, with its snapshot's name.
func (r snap) Channels() ([]catalog.ChannelInfo, error) {
	if r.preChannels {
		return nil, nil
	}
	rows, err := r.q.Query(r.ctx, `SELECT c.name, coalesce(s.name, ''), coalesce(c.snapshot_id, 0), c.query,
		c.ttl, c.uri, c.stamp, c.served, c.version, c.updated_ns
		FROM channels c LEFT JOIN snapshots s ON s.id = c.snapshot_id ORDER BY c.name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: channels: %w", err)
	}
	defer rows.Close()
	var out []catalog.ChannelInfo
	for rows.Next() {
		var c catalog.ChannelInfo
		if err := rows.Scan(&c.Name, &c.Snapshot, &c.SnapshotID, &c.Query, &c.TTL, &c.URI, &c.Stamp, &c.Served, &c.Version, &c.UpdatedNs); err != nil {
			return nil, fmt.Errorf("catalog: channels: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: channels: %w", err)
	}
	return out, nil
}

// PutChannel stores c under its name.
func (tx *wtx) PutChannel(c *catalog.ChannelInfo) error {
	var snapID any
	if c.SnapshotID != 0 {
		snapID = c.SnapshotID
	}
	_, err := tx.q.Exec(tx.ctx, `INSERT INTO channels (name, snapshot_id, query, ttl, uri, stamp, served, version, updated_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (name) DO UPDATE SET snapshot_id = excluded.snapshot_id, query = excluded.query, ttl = excluded.ttl,
			uri = excluded.uri, stamp = excluded.stamp, served = excluded.served, version = excluded.version,
			updated_ns = excluded.updated_ns`,
		c.Name, snapID, c.Query, c.TTL, c.URI, c.Stamp, c.Served, c.Version, c.UpdatedNs)
	if err != nil {
		return fmt.Errorf("catalog: channel %s: %w", c.Name, err)
	}
	return nil
}

// DeleteChannel deletes channel name.
func (tx *wtx) DeleteChannel(name string) error {
	tag, err := tx.q.Exec(tx.ctx, `DELETE FROM channels WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("catalog: channel %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return catalog.ErrNotFound
	}
	return nil
}

// RaiseChannelServed keeps the higher of ts and the recorded one.
func (tx *wtx) RaiseChannelServed(name string, ts int64) error {
	if _, err := tx.q.Exec(tx.ctx, `UPDATE channels SET served = $1 WHERE name = $2 AND served < $1`, ts, name); err != nil {
		return fmt.Errorf("catalog: channel %s: %w", name, err)
	}
	return nil
}
