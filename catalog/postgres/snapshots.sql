-- Schema version 5 to 6 (and part of every new catalog): snapshots. A
-- snapshot is a frozen set of instance ids, no bytes copied.
CREATE TABLE IF NOT EXISTS snapshots (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       TEXT   COLLATE "C" NOT NULL UNIQUE,
	created_ns BIGINT NOT NULL,
	query      TEXT   NOT NULL DEFAULT '',
	generation BIGINT NOT NULL,
	packages   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot_members (
	snapshot_id BIGINT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
	instance_id BIGINT NOT NULL,
	PRIMARY KEY (snapshot_id, instance_id)
);
CREATE INDEX IF NOT EXISTS snapshot_members_instance ON snapshot_members (instance_id);
-- Held copies: an instance's row and metadata as they were up to
-- generation held_gen, copied by the transaction that deleted or changed
-- the live row when a snapshot made at or before held_gen holds it (see
-- catalog/sqlite's schema.sql).
CREATE TABLE IF NOT EXISTS held_instances (
	id          BIGINT NOT NULL,
	held_gen    BIGINT NOT NULL,
	category    TEXT   COLLATE "C" NOT NULL,
	pn          TEXT   COLLATE "C" NOT NULL,
	pf          TEXT   COLLATE "C" NOT NULL,
	cpv         TEXT   COLLATE "C" NOT NULL,
	build_id    BIGINT NOT NULL,
	build_time  BIGINT NOT NULL,
	format      TEXT   NOT NULL,
	compression TEXT   NOT NULL,
	size        BIGINT NOT NULL,
	mtime_ns    BIGINT NOT NULL,
	mode        BIGINT NOT NULL,
	md5         TEXT   NOT NULL,
	sha1        TEXT   NOT NULL,
	sha256      TEXT   NOT NULL,
	blob        TEXT   NOT NULL,
	signed      BOOLEAN NOT NULL,
	state       TEXT   NOT NULL,
	created_ns  BIGINT NOT NULL,
	meta        BYTEA,
	PRIMARY KEY (id, held_gen)
);
CREATE INDEX IF NOT EXISTS held_instances_blob ON held_instances (blob);
UPDATE meta SET value = 6 WHERE key = 'schema_version' AND value < 6;
