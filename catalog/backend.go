package catalog

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The seam between the catalog's rules and the database that keeps its
// rows. A backend (catalog/sqlite; a server database later) stores and
// finds rows and classifies its errors (ErrBusy, ErrFull, ErrCorrupt,
// ErrConflict, ErrBuildIDTaken); everything that decides — build ids,
// tombstones, the keep policy, ingest, TIMESTAMP — is in this package, over
// these interfaces. Nothing outside a backend names its database, its files
// or its error codes.

// TreeReads are the reads a mount's tree and index make of one snapshot,
// common to a backend's Snapshot and to Reader.
type TreeReads interface {
	Header() (map[string]string, error)
	// InstanceIDHigh is at least the number of instances (a size hint).
	InstanceIDHigh() (int64, error)
	// CategoryNear is "cat/" of the instance at about position n in cpv
	// order ("" if none): a split point for loading in two halves.
	CategoryNear(n int64) (string, error)
	// Instances: every instance, placeholders included, without Meta.
	Instances() ([]Instance, error)
	// The tree reads stream instances in (cpv, build id) byte order with
	// what a mount's tree needs (no digests); inst may be reused per row.
	ForEachInstance(fn func(inst *Instance) error) error
	ForEachInstanceBelow(cpv string, fn func(inst *Instance) error) error
	ForEachInstanceFrom(cpv string, fn func(inst *Instance) error) error
	// ForEachIndexed streams the packages (no placeholders) with Meta.
	ForEachIndexed(fn func(inst *Instance) error) error
	// Changes names the CPVs (or HeaderChange) changed after generation
	// since, each once, in byte order.
	Changes(since int64) ([]string, error)
	Tombstones() ([]Tombstone, error)
	// AnyTombstones tells whether any removed build is in its grace.
	AnyTombstones() (bool, error)
	TombstonesOf(cpv string) ([]Tombstone, error)
}

// Snapshot is every read of one consistent snapshot of the catalog.
type Snapshot interface {
	TreeReads
	// Setting is a catalog-wide integer (generation, last_timestamp,
	// removal grace, ...); ok false if it was never set.
	Setting(key string) (v int64, ok bool, err error)
	// ForEachInScope streams the packages of one category (PN "") or
	// package, with Meta, in (cpv, build id) order.
	ForEachInScope(s Scope, fn func(inst *Instance) error) error
	InstancesByCPV(cpv string) ([]Instance, error)
	// InstanceByID is one instance with its Meta, or ErrNotFound.
	InstanceByID(id int64) (*Instance, error)
	// FindByDigest is the package of cpv with these bytes (lowest build id),
	// or ErrNotFound; HasDigest only tells whether there is one.
	FindByDigest(cpv, sha256 string) (*Instance, error)
	HasDigest(cpv, sha256 string) (bool, error)
	// InstanceMeta is the index values of one instance (empty if none);
	// MetaValue one of them, without decoding the rest.
	InstanceMeta(id int64) (map[string]string, error)
	MetaValue(id int64, key string) (string, error)
	// CountMetaValues counts the packages by the value of one index key.
	CountMetaValues(key string) (map[string]int, error)
	Refused() ([]Refused, error)
	// RefusalReason is the newest refusal of path, "" if none.
	RefusalReason(path string) (string, error)
	Stats() (instances, placeholders int64, bytes int64, err error)
	Summary(topCategories, topCPVs int) (*Summary, error)
	// Empty: no instance and no tombstone at all.
	Empty() (bool, error)
	// TombstoneRemovedAs is the newest tombstone removed under name, or
	// ErrNotFound.
	TombstoneRemovedAs(name string) (*Tombstone, error)
	// TombstonesDue tells whether any grace ended by nowNs.
	TombstonesDue(nowNs int64) (bool, error)
	// BlobInUse tells whether an instance, a tombstone or a copy a
	// snapshot holds names blob.
	BlobInUse(blob string) (bool, error)
	SnapshotReads
}

// SnapshotReads are the reads of the catalog's snapshots (frozen sets of
// instances; see snapshots.go).
type SnapshotReads interface {
	// Snapshots lists every snapshot, by name.
	Snapshots() ([]SnapshotInfo, error)
	// SnapshotByName is one snapshot, or ErrNotFound.
	SnapshotByName(name string) (*SnapshotInfo, error)
	// ForEachSnapshotMember streams the packages snapshot s froze, with
	// Meta, in (cpv, build id) order: each as it was when s was made (the
	// copy held when its live row was removed or changed since, else the
	// live row). fn may keep inst.
	// Without meta, Meta is nil and not read (a tree's load).
	ForEachSnapshotMember(s *SnapshotInfo, meta bool, fn func(inst *Instance) error) error
	// SnapshotsHolding names, for each of ids that snapshots hold, the
	// snapshots holding it (by name, sorted).
	SnapshotsHolding(ids []int64) (map[int64][]string, error)
	// HeldBlobs lists the blobs of the held copies, each once.
	HeldBlobs() ([]string, error)
	ChannelReads
}

// ChannelReads are the reads of the catalog's channels (channels.go).
type ChannelReads interface {
	// Channels lists every channel, by name, with its snapshot's name.
	Channels() ([]ChannelInfo, error)
}

// WriteTx is one write transaction of a backend: the reads see its own
// writes. The writes are plain row operations; the rules are the caller's.
type WriteTx interface {
	Snapshot
	// InsertInstance stores inst (and its Meta) under a new id, never
	// reused, and returns it; a taken (cpv, build id) is ErrBuildIDTaken,
	// after which the transaction stays usable.
	InsertInstance(inst *Instance) (int64, error)
	// DeleteInstance deletes an instance and its Meta; ErrNotFound if none.
	// It, and SetInstanceAttrs, first copy the row and its Meta to the held
	// copies if a snapshot holds the instance and needs that copy: the
	// snapshot keeps what it froze, whoever changes the live row.
	DeleteInstance(id int64) (cpv string, err error)
	SetInstanceAttrs(id int64, mode uint32, mtimeNs int64) (cpv string, err error)
	BuildIDTaken(cpv string, id int64) (bool, error)
	// MaxBuildID is the highest build id cpv ever had: over its rows and
	// its high-water mark (RaiseBuildIDHigh).
	MaxBuildID(cpv string) (int64, error)
	RaiseBuildIDHigh(cpv string, id int64) error
	ReplaceHeader(h map[string]string) error
	SetSetting(key string, v int64) error
	// BumpGeneration adds one to the generation and writes the change-log
	// rows of changed (CPVs, or HeaderChange) under it; keep is how many
	// generations of rows to keep (older ones may be dropped, raising the
	// changes_floor setting).
	BumpGeneration(changed []string, keep int64) (int64, error)
	AddRefused(path, reason string, size, whenNs int64) error
	ClearRefused(path string) error
	// InsertTombstone keeps the first tombstone of an instance.
	InsertTombstone(t *Tombstone) error
	// DeleteTombstonesOf ends the tombstones of cpv with these bytes
	// (sha256 != "") or at this build id; it returns how many.
	DeleteTombstonesOf(cpv, sha256 string, buildID int64) (int64, error)
	// ExpiredTombstones are at most max tombstones whose grace ended by
	// nowNs, earliest first.
	ExpiredTombstones(nowNs int64, max int) ([]Tombstone, error)
	DeleteTombstone(instanceID int64) error
	// SpendID records that build id of cpv named these bytes.
	SpendID(cpv string, id int64, sha256 string) error
	// IDSpent: build id of cpv named bytes other than sha256 ("" any).
	IDSpent(cpv string, id int64, sha256 string) (bool, error)
	// SpentIDOf is the newest build id these bytes of cpv had, 0 if none.
	SpentIDOf(cpv, sha256 string) (int64, error)
	SnapshotWrites
}

// SnapshotWrites are the row operations of snapshots.
type SnapshotWrites interface {
	// InsertSnapshot stores s (no members yet) under a new id, never
	// reused, and returns it; a taken name is ErrConflict.
	InsertSnapshot(s *SnapshotInfo) (int64, error)
	// AddSnapshotMembers adds instances to snapshot id.
	AddSnapshotMembers(id int64, instances []int64) error
	// AddAllPackages adds every package (no placeholder) to snapshot id
	// and returns how many.
	AddAllPackages(id int64) (int64, error)
	// SetSnapshotPackages records how many packages snapshot id holds.
	SetSnapshotPackages(id, n int64) error
	// DeleteSnapshot deletes snapshot id, its members and the held copies
	// no other snapshot needs, and returns the blobs those named (the
	// caller drops those nothing else names).
	DeleteSnapshot(id int64) (blobs []string, err error)
	ChannelWrites
}

// ChannelWrites are the row operations of channels.
type ChannelWrites interface {
	// PutChannel stores c under its name, replacing the row of that name
	// (c.SnapshotID 0: a live channel).
	PutChannel(c *ChannelInfo) error
	// DeleteChannel deletes the channel of that name; ErrNotFound if none.
	DeleteChannel(name string) error
	// RaiseChannelServed records that a mount served channel name with
	// TIMESTAMP ts (kept if higher than the one recorded).
	RaiseChannelServed(name string, ts int64) error
}

// Backend is an open catalog store. It is safe for concurrent use.
type Backend interface {
	// Read runs fn on one consistent snapshot.
	Read(ctx context.Context, fn func(Snapshot) error) error
	// Write runs fn in one write transaction and commits if it returns
	// nil. It runs fn once: retrying on ErrBusy is the caller's. Errors
	// are classified (ErrBusy, ErrFull, ...).
	Write(ctx context.Context, fn func(WriteTx) error) error
	// Bulk tunes the backend for a bulk load until undo is called.
	Bulk(ctx context.Context) (undo func())
	// Check runs the backend's own consistency checks: nil, or an error
	// listing every problem.
	Check(ctx context.Context) error
	// LastWrite is when the catalog was last written to (any process).
	LastWrite() (time.Time, error)
	// Location names the catalog for messages.
	Location() string
	Close() error
}

// Location says where a host's catalog and blobs are.
type Location struct {
	// State is the host's state directory: lock, log, staging, scratch;
	// and the catalog and blobs unless Catalog and Blobs name others.
	State string
	// Catalog is "" for the state's own catalog (SQLite, STATE/catalog.db),
	// or a URL: postgres://… (or postgresql://…) for a catalog several
	// hosts share.
	Catalog string
	// Blobs is the blob directory, "" for STATE/blobs; a shared one holds
	// its hosts' staging too, so that a commit is a rename.
	Blobs string
}

// BlobDir is the directory the instances' blobs are in.
func (l Location) BlobDir() string {
	if l.Blobs != "" {
		return l.Blobs
	}
	return filepath.Join(l.State, "blobs")
}

// StagingDir is where this host stages bytes on their way in: on the
// blobs' filesystem (a commit is a rename), one directory per host when
// the blobs are shared.
func (l Location) StagingDir() string {
	if l.Blobs != "" {
		host, _ := os.Hostname()
		return filepath.Join(l.Blobs, ".staging", host)
	}
	return filepath.Join(l.State, "staging")
}

// Shared: the catalog is not the state's own, so other hosts may write it.
func (l Location) Shared() bool { return l.Catalog != "" && l.Catalog != DefaultDriver }

// Describe names the catalog for messages: its URL without a password, or
// the state directory.
func (l Location) Describe() string {
	if !l.Shared() {
		return l.State
	}
	if u, err := url.Parse(l.Catalog); err == nil {
		return u.Redacted()
	}
	return l.Catalog
}

func (l Location) driver() (Driver, error) {
	name := DefaultDriver
	if l.Shared() {
		scheme, _, ok := strings.Cut(l.Catalog, "://")
		if !ok {
			return nil, fmt.Errorf("catalog: %q is not a catalog URL (want postgres://USER@HOST/DB, or nothing for the state's own)", l.Catalog)
		}
		name = scheme
		if name == "postgresql" {
			name = "postgres"
		}
	}
	return driver(name)
}

// Doorbell is what a backend whose other writers can announce their
// commits offers (PostgreSQL's NOTIFY): Ring's channel receives soon after
// another process commits, and after a reconnect (changes may have been
// missed). It only says "look now": what changed is read from the change
// log, as by any poll.
type Doorbell interface {
	Ring(ctx context.Context) <-chan struct{}
}

// Driver opens the catalog at a Location, and handles it as a whole.
type Driver interface {
	// Open opens the catalog at loc, making an empty one if it has none
	// (the state directory must exist).
	Open(loc Location) (Backend, error)
	// OpenReadOnly opens it to read only, creating and changing nothing.
	OpenReadOnly(loc Location) (Backend, error)
	// Present says why loc holds no usable catalog, "" if it holds one.
	Present(loc Location) string
	// Unreadable: loc holds a catalog that cannot serve (damaged, empty,
	// written by a newer pkgdirfs). A missing one is not unreadable.
	Unreadable(loc Location) bool
	// SetAside moves the catalog at loc aside so the next Open makes a new
	// one; it returns where it went.
	SetAside(loc Location, suffix string) ([]string, error)
}

var (
	driversMu sync.Mutex
	drivers   = map[string]Driver{}
)

// DefaultDriver is the backend a state directory uses.
const DefaultDriver = "sqlite"

// Register makes a backend available by name; backends call it from init.
func Register(name string, d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("catalog: backend registered twice: " + name)
	}
	drivers[name] = d
}

func driver(name string) (Driver, error) {
	driversMu.Lock()
	defer driversMu.Unlock()
	d, ok := drivers[name]
	if !ok {
		known := make([]string, 0, len(drivers))
		for n := range drivers {
			known = append(known, n)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("catalog: no backend %q in this binary (have %v)", name, known)
	}
	return d, nil
}

// Session is a process that writes a catalog several hosts share: its
// staging directory is BLOBS/.staging/ID, and while its heartbeat is fresh
// (by the catalog's clock, never a file's age) nobody collects its
// leftovers.
type Session struct {
	ID          string // HOST/NAME, its staging directory below .staging
	Host        string
	PID         int64
	StartedNs   int64
	HeartbeatNs int64 // the catalog's clock at the last heartbeat
}

// Sessions is what a backend several hosts share offers: the catalog is
// the one clock they agree on. The writes run in a write transaction
// (WriteTx implements them), so a collection never overlaps a commit.
type Sessions interface {
	// Sessions lists every session and the catalog's clock now.
	Sessions() (list []Session, nowNs int64, err error)
}

// SessionWrites are the session writes of a write transaction.
type SessionWrites interface {
	Sessions
	// Beat sets s's heartbeat to the catalog's clock (and s.HeartbeatNs);
	// with create it makes the row. false: the row is gone (the session
	// expired and was collected).
	Beat(s *Session, create bool) (bool, error)
	// EndSession deletes the row; false if there was none.
	EndSession(id string) (bool, error)
}
