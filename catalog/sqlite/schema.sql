-- pkgdirfs catalog schema. Applied on every Open: every statement must be
-- idempotent. The version lives in meta(schema_version) and is checked by Go
-- code before this file runs; bump schemaVersion in catalog.go together with
-- any change here that older binaries could misread.

-- Small key/value store: schema_version, generation, last_timestamp.
-- value has no declared type so integers stay integers.
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY NOT NULL,
	value
) WITHOUT ROWID;

-- One row per package instance (or 0-byte placeholder reservation).
-- AUTOINCREMENT: ids are never reused, because ids name blobs and inodes
-- and a reused id could alias a blob or inode still held open.
CREATE TABLE IF NOT EXISTS instances (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	category    TEXT    NOT NULL,
	pn          TEXT    NOT NULL,
	pf          TEXT    NOT NULL,
	cpv         TEXT    NOT NULL COLLATE BINARY,
	build_id    INTEGER NOT NULL,
	build_time  INTEGER NOT NULL DEFAULT 0,
	format      TEXT    NOT NULL,
	compression TEXT    NOT NULL DEFAULT '',
	size        INTEGER NOT NULL,
	mtime_ns    INTEGER NOT NULL,
	mode        INTEGER NOT NULL,
	md5         TEXT    NOT NULL DEFAULT '',
	sha1        TEXT    NOT NULL DEFAULT '',
	sha256      TEXT    NOT NULL DEFAULT '',
	blob        TEXT    NOT NULL DEFAULT '',
	signed      INTEGER NOT NULL DEFAULT 0,
	state       TEXT    NOT NULL,
	created_ns  INTEGER NOT NULL,
	CHECK (format IN ('xpak', 'gpkg')),
	CHECK (state IN ('package', 'placeholder')),
	CHECK (signed IN (0, 1)),
	CHECK (size >= 0),
	-- Readers slice category/pf/pn out of cpv instead of allocating them.
	CHECK (cpv = category || '/' || pf),
	CHECK (substr(pf, 1, length(pn)) = pn),
	-- Allocation always gives >= 1; only a placeholder may lack an id.
	CHECK (build_id >= 1 OR (state = 'placeholder' AND build_id = 0)),
	CHECK (state = 'package' OR size = 0)
);

-- Identity of an instance, build-id allocation (max over a cpv) and the
-- byte-ordered scans for the tree and Packages all use this index; it also
-- serves every lookup by cpv alone, so no separate (cpv) index is needed.
CREATE UNIQUE INDEX IF NOT EXISTS instances_cpv_build ON instances (cpv, build_id);
CREATE INDEX IF NOT EXISTS instances_category_pn ON instances (category, pn);
-- Everything a mount's tree needs, in cpv order (ForEachInstance): the scan
-- then reads this index alone, not a table row per instance, which halves
-- mount start at 1,000,000 instances. A catalog made before it gets it on
-- its next open (once; seconds at a million instances).
CREATE INDEX IF NOT EXISTS instances_tree ON instances
	(cpv, build_id, pn, build_time, format, size, mtime_ns, mode, blob, state);
CREATE INDEX IF NOT EXISTS instances_sha256 ON instances (sha256);

-- Index values of each instance, by Portage's internal key names, encoded
-- together (encodeMeta): one row an instance is several times cheaper to
-- write and to read than one row a key. Schema version 2 had a row per key
-- (instance_meta); Open converts it.
CREATE TABLE IF NOT EXISTS instance_index (
	instance_id INTEGER PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
	meta        BLOB    NOT NULL
);

-- Packages header keys (ARCH, CHOST, ...) kept from a written or imported index.
CREATE TABLE IF NOT EXISTS header (
	key   TEXT PRIMARY KEY NOT NULL,
	value TEXT NOT NULL
) WITHOUT ROWID;

-- Files refused at ingest, for `pkgdirfs verify`.
CREATE TABLE IF NOT EXISTS refused (
	id      INTEGER PRIMARY KEY,
	path    TEXT    NOT NULL,
	reason  TEXT    NOT NULL,
	time_ns INTEGER NOT NULL,
	size    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refused_path ON refused (path);

INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_timestamp', 0);

-- Highest build id ever given per CPV: allocation never hands out an id
-- again after its instance was removed, since clients and HTTP caches treat
-- a multi-instance path as naming one content forever.
CREATE TABLE IF NOT EXISTS build_id_high (
	cpv  TEXT    PRIMARY KEY NOT NULL,
	high INTEGER NOT NULL
) WITHOUT ROWID;

-- Build ids of removed instances by their bytes: the same bytes of the same
-- CPV coming back (a copy repeated by a tool that unlinks first) get their
-- build id again, which is safe since the content is the same.
CREATE TABLE IF NOT EXISTS removed_builds (
	cpv      TEXT    NOT NULL,
	sha256   TEXT    NOT NULL,
	build_id INTEGER NOT NULL,
	PRIMARY KEY (cpv, sha256)
) WITHOUT ROWID;

-- Change log: one row per CPV (or '' for the Packages header) changed by each
-- generation, written in the generation's own transaction. A mount applies
-- the CPVs changed since the generation it shows instead of reloading the
-- catalog. Rows at or below meta(changes_floor) are pruned: a reader that far
-- behind loads everything.
CREATE TABLE IF NOT EXISTS changes (
	gen INTEGER NOT NULL,
	cpv TEXT    NOT NULL,
	PRIMARY KEY (gen, cpv)
) WITHOUT ROWID;
-- A catalog from before the change log has no rows for its past generations.
INSERT OR IGNORE INTO meta (key, value) SELECT 'changes_floor', value FROM meta WHERE key = 'generation';

-- Build ids of removed (or moved) builds, with their bytes: such an id is
-- spent for other bytes, since a multi-instance PATH, once served, always
-- names the same bytes; the same bytes coming back get it again. Schema
-- version 3 kept this by bytes (removed_builds, one id per digest); its rows
-- are carried over once.
CREATE TABLE IF NOT EXISTS spent_ids (
	cpv      TEXT    NOT NULL,
	build_id INTEGER NOT NULL,
	sha256   TEXT    NOT NULL,
	PRIMARY KEY (cpv, build_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_ids_sha256 ON spent_ids (cpv, sha256);
INSERT OR IGNORE INTO spent_ids (cpv, build_id, sha256) SELECT cpv, build_id, sha256 FROM removed_builds;
DELETE FROM removed_builds;

-- Tombstones: a removed build in its removal grace, written by the removing
-- transaction. The mount serves it at .pkgdirfs/removed/PATH until until_ns
-- (clients holding the previous index still download what it listed); then
-- whoever finds it expired deletes the row and, if nothing else names it,
-- the blob. instance_id is the removed instance's (ids are never reused, so
-- it keeps its inode number).
CREATE TABLE IF NOT EXISTS tombstones (
	instance_id INTEGER PRIMARY KEY,
	cpv         TEXT    NOT NULL,
	category    TEXT    NOT NULL,
	pn          TEXT    NOT NULL,
	pf          TEXT    NOT NULL,
	build_id    INTEGER NOT NULL,
	build_time  INTEGER NOT NULL,
	format      TEXT    NOT NULL,
	size        INTEGER NOT NULL,
	mtime_ns    INTEGER NOT NULL,
	mode        INTEGER NOT NULL,
	sha256      TEXT    NOT NULL,
	blob        TEXT    NOT NULL,
	removed_as  TEXT    NOT NULL DEFAULT '',
	removed_by  TEXT    NOT NULL DEFAULT '',
	removed_ns  INTEGER NOT NULL,
	until_ns    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_cpv ON tombstones (cpv, sha256);
CREATE INDEX IF NOT EXISTS tombstones_until ON tombstones (until_ns);
CREATE INDEX IF NOT EXISTS tombstones_blob ON tombstones (blob);
CREATE INDEX IF NOT EXISTS tombstones_removed_as ON tombstones (removed_as);

-- Schema version 5: snapshots. A snapshot is a frozen set of instance ids
-- (no bytes copied): its members are tiny rows, made in one transaction.
-- AUTOINCREMENT: a snapshot id, like an instance id, is never reused.
CREATE TABLE IF NOT EXISTS snapshots (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	created_ns INTEGER NOT NULL,
	query      TEXT    NOT NULL DEFAULT '',
	generation INTEGER NOT NULL,
	packages   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot_members (
	snapshot_id INTEGER NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
	instance_id INTEGER NOT NULL,
	PRIMARY KEY (snapshot_id, instance_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshot_members_instance ON snapshot_members (instance_id);
-- Held copies: an instance's row and metadata as they were up to
-- generation held_gen, copied by the transaction that deleted or changed
-- the live row (DeleteInstance, SetInstanceAttrs) when a snapshot made at
-- or before held_gen holds it. A snapshot of generation g reads a member
-- from its copy of the least held_gen >= g, else from the live row. The
-- copy names its blob: the blob stays while a snapshot needs the copy.
CREATE TABLE IF NOT EXISTS held_instances (
	id          INTEGER NOT NULL,
	held_gen    INTEGER NOT NULL,
	category    TEXT    NOT NULL,
	pn          TEXT    NOT NULL,
	pf          TEXT    NOT NULL,
	cpv         TEXT    NOT NULL COLLATE BINARY,
	build_id    INTEGER NOT NULL,
	build_time  INTEGER NOT NULL,
	format      TEXT    NOT NULL,
	compression TEXT    NOT NULL,
	size        INTEGER NOT NULL,
	mtime_ns    INTEGER NOT NULL,
	mode        INTEGER NOT NULL,
	md5         TEXT    NOT NULL,
	sha1        TEXT    NOT NULL,
	sha256      TEXT    NOT NULL,
	blob        TEXT    NOT NULL,
	signed      INTEGER NOT NULL,
	state       TEXT    NOT NULL,
	created_ns  INTEGER NOT NULL,
	meta        BLOB,
	PRIMARY KEY (id, held_gen)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS held_instances_blob ON held_instances (blob);

-- Schema version 6: channels. A channel points at a snapshot (snapshot_id)
-- or, with snapshot_id NULL, at a live query; each mount serves it as a
-- binhost of its own. stamp: a floor for its index's TIMESTAMP since its
-- last move; served: the highest TIMESTAMP a mount recorded serving it.
CREATE TABLE IF NOT EXISTS channels (
	name        TEXT    PRIMARY KEY NOT NULL,
	snapshot_id INTEGER REFERENCES snapshots (id),
	query       TEXT    NOT NULL DEFAULT '',
	ttl         INTEGER NOT NULL DEFAULT 0,
	uri         TEXT    NOT NULL DEFAULT '',
	stamp       INTEGER NOT NULL,
	served      INTEGER NOT NULL DEFAULT 0,
	version     INTEGER NOT NULL,
	updated_ns  INTEGER NOT NULL
) WITHOUT ROWID;
