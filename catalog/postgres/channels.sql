-- Schema version 6 to 7 (and part of every new catalog): channels (see
-- catalog/sqlite's schema.sql).
CREATE TABLE IF NOT EXISTS channels (
	name        TEXT   COLLATE "C" PRIMARY KEY,
	snapshot_id BIGINT REFERENCES snapshots (id),
	query       TEXT   NOT NULL DEFAULT '',
	ttl         BIGINT NOT NULL DEFAULT 0,
	uri         TEXT   NOT NULL DEFAULT '',
	stamp       BIGINT NOT NULL,
	served      BIGINT NOT NULL DEFAULT 0,
	version     BIGINT NOT NULL,
	updated_ns  BIGINT NOT NULL
);
UPDATE meta SET value = 7 WHERE key = 'schema_version' AND value < 7;
