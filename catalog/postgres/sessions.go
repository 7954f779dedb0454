package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pkgdirfs/catalog"
)

var (
	_ catalog.Sessions      = snap{}
	_ catalog.SessionWrites = (*wtx)(nil)
)

// nowNs is the server's clock in ns: every host's heartbeat and every
// judgement of expiry use it, so a host whose clock is off neither looks
// dead nor keeps a dead one alive.
const nowNs = `(extract(epoch FROM clock_timestamp()) * 1e9)::bigint`

func (r snap) Sessions() ([]catalog.Session, int64, error) {
	rows, err := r.q.Query(r.ctx, `SELECT id, host, pid, started_ns, heartbeat_ns, `+nowNs+` FROM sessions ORDER BY id`)
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: sessions: %w", err)
	}
	defer rows.Close()
	var out []catalog.Session
	var now int64
	for rows.Next() {
		var s catalog.Session
		if err := rows.Scan(&s.ID, &s.Host, &s.PID, &s.StartedNs, &s.HeartbeatNs, &now); err != nil {
			return nil, 0, fmt.Errorf("catalog: sessions: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("catalog: sessions: %w", err)
	}
	if out == nil {
		if err := r.q.QueryRow(r.ctx, `SELECT `+nowNs).Scan(&now); err != nil {
			return nil, 0, fmt.Errorf("catalog: clock: %w", err)
		}
	}
	return out, now, nil
}

func (tx *wtx) Beat(s *catalog.Session, create bool) (bool, error) {
	var err error
	if create {
		err = tx.q.QueryRow(tx.ctx, `INSERT INTO sessions (id, host, pid, started_ns, heartbeat_ns)
			VALUES ($1, $2, $3, `+nowNs+`, `+nowNs+`)
			ON CONFLICT (id) DO UPDATE SET heartbeat_ns = excluded.heartbeat_ns
			RETURNING started_ns, heartbeat_ns`, s.ID, s.Host, s.PID).Scan(&s.StartedNs, &s.HeartbeatNs)
	} else {
		err = tx.q.QueryRow(tx.ctx, `UPDATE sessions SET heartbeat_ns = `+nowNs+` WHERE id = $1 RETURNING heartbeat_ns`,
			s.ID).Scan(&s.HeartbeatNs)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("catalog: session %s: %w", s.ID, err)
	}
	return true, nil
}

func (tx *wtx) EndSession(id string) (bool, error) {
	tag, err := tx.q.Exec(tx.ctx, `DELETE FROM sessions WHERE id = $1`, id)
	if err != nil {
		return false, fmt.Errorf("catalog: ending session %s: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}
