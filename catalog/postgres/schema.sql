-- pkgdirfs catalog schema on PostgreSQL, version 1 of this backend (the
-- catalog's schema_version is shared with catalog/sqlite: the same rows).
-- Applied in one transaction, under an advisory lock, when a database has
-- no catalog yet. Text that is ordered is COLLATE "C": the tree and
-- Packages are in byte order, whatever the database's locale.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);

CREATE TABLE instances (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	category    TEXT   COLLATE "C" NOT NULL,
	pn          TEXT   COLLATE "C" NOT NULL,
	pf          TEXT   COLLATE "C" NOT NULL,
	cpv         TEXT   COLLATE "C" NOT NULL,
	build_id    BIGINT NOT NULL,
	build_time  BIGINT NOT NULL DEFAULT 0,
	format      TEXT   NOT NULL CHECK (format IN ('xpak', 'gpkg')),
	compression TEXT   NOT NULL DEFAULT '',
	size        BIGINT NOT NULL CHECK (size >= 0),
	mtime_ns    BIGINT NOT NULL,
	mode        BIGINT NOT NULL,
	md5         TEXT   NOT NULL DEFAULT '',
	sha1        TEXT   NOT NULL DEFAULT '',
	sha256      TEXT   NOT NULL DEFAULT '',
	blob        TEXT   NOT NULL DEFAULT '',
	signed      BOOLEAN NOT NULL DEFAULT false,
	state       TEXT   NOT NULL CHECK (state IN ('package', 'placeholder')),
	created_ns  BIGINT NOT NULL,
	CHECK (cpv = category || '/' || pf),
	CHECK (left(pf, length(pn)) = pn),
	CHECK (build_id >= 1 OR (state = 'placeholder' AND build_id = 0)),
	CHECK (state = 'package' OR size = 0)
);
CREATE UNIQUE INDEX instances_cpv_build ON instances (cpv, build_id);
CREATE INDEX instances_category_pn ON instances (category, pn);
CREATE INDEX instances_sha256 ON instances (sha256);

CREATE TABLE instance_index (
	instance_id BIGINT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
	meta        BYTEA  NOT NULL
);

CREATE TABLE header (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE refused (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	path    TEXT   NOT NULL,
	reason  TEXT   NOT NULL,
	time_ns BIGINT NOT NULL,
	size    BIGINT NOT NULL
);
CREATE INDEX refused_path ON refused (path);

CREATE TABLE build_id_high (
	cpv  TEXT   COLLATE "C" PRIMARY KEY,
	high BIGINT NOT NULL
);

CREATE TABLE changes (
	gen BIGINT NOT NULL,
	cpv TEXT   COLLATE "C" NOT NULL,
	PRIMARY KEY (gen, cpv)
);

CREATE TABLE spent_ids (
	cpv      TEXT   COLLATE "C" NOT NULL,
	build_id BIGINT NOT NULL,
	sha256   TEXT   NOT NULL,
	PRIMARY KEY (cpv, build_id)
);
CREATE INDEX spent_ids_sha256 ON spent_ids (cpv, sha256);

CREATE TABLE tombstones (
	instance_id BIGINT PRIMARY KEY,
	cpv         TEXT   COLLATE "C" NOT NULL,
	category    TEXT   COLLATE "C" NOT NULL,
	pn          TEXT   COLLATE "C" NOT NULL,
	pf          TEXT   COLLATE "C" NOT NULL,
	build_id    BIGINT NOT NULL,
	build_time  BIGINT NOT NULL,
	format      TEXT   NOT NULL,
	size        BIGINT NOT NULL,
	mtime_ns    BIGINT NOT NULL,
	mode        BIGINT NOT NULL,
	sha256      TEXT   NOT NULL,
	blob        TEXT   NOT NULL,
	removed_as  TEXT   NOT NULL DEFAULT '',
	removed_by  TEXT   NOT NULL DEFAULT '',
	removed_ns  BIGINT NOT NULL,
	until_ns    BIGINT NOT NULL
);
CREATE INDEX tombstones_cpv ON tombstones (cpv, sha256);
CREATE INDEX tombstones_until ON tombstones (until_ns);
CREATE INDEX tombstones_blob ON tombstones (blob);
CREATE INDEX tombstones_removed_as ON tombstones (removed_as);

-- Schema version 5: the hosts writing the catalog (sessions.sql).
CREATE TABLE sessions (
	id           TEXT   PRIMARY KEY,
	host         TEXT   NOT NULL,
	pid          BIGINT NOT NULL,
	started_ns   BIGINT NOT NULL,
	heartbeat_ns BIGINT NOT NULL
);

INSERT INTO meta (key, value) VALUES
	('generation', 0), ('last_timestamp', 0), ('changes_floor', 0);
