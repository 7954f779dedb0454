-- Schema version 4 to 5: the sessions of the hosts writing the catalog.
CREATE TABLE IF NOT EXISTS sessions (
	id           TEXT   PRIMARY KEY,
	host         TEXT   NOT NULL,
	pid          BIGINT NOT NULL,
	started_ns   BIGINT NOT NULL,
	heartbeat_ns BIGINT NOT NULL
);
UPDATE meta SET value = 5 WHERE key = 'schema_version' AND value < 5;
