package view

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree"
	"pkgdirfs/tree/pieces"
)

// ChannelsDir is where the mount serves each channel as a binhost of its
// own: ChannelsDir/NAME/Packages, and the files at the PATHs it lists.
const ChannelsDir = AreaDir + "/channels"

// InChannels tells whether p is ChannelsDir or below it, and the channel
// name and the path inside the channel's tree.
func InChannels(p string) (name, rest string, ok bool) {
	switch {
	case p == ChannelsDir:
		return "", "", true
	case len(p) > len(ChannelsDir)+1 && p[:len(ChannelsDir)+1] == ChannelsDir+"/":
		name, rest = p[len(ChannelsDir)+1:], ""
		for i := 0; i < len(name); i++ {
			if name[i] == '/' {
				name, rest = name[:i], name[i+1:]
				break
			}
		}
		return name, rest, true
	}
	return "", "", false
}

// Channel is one version of a channel as a mount serves it: a tree of its
// builds and their index, kept like the mount's own. A move (channel set)
// is a new Channel; a live one follows the catalog change by change.
type Channel struct {
	Info  catalog.ChannelInfo
	Model *tree.Model
	// Serial tells this version from every other Channel of the process
	// (the fs layer's node identity: no node of an older version is
	// reused for a newer one).
	Serial uint32

	src    catalog.Source
	record func(name string, ts int64)

	mu     sync.Mutex
	closed bool // replaced by a newer version, or deleted (close)
	// idx is the index served, rendered at content generation idxContent,
	// with TIMESTAMP lastTS at renderedAt; prevTS is the TIMESTAMP served
	// before it (Settle).
	idx        *tree.IndexView
	idxContent int64
	lastTS     int64
	prevTS     int64
	renderedAt time.Time
}

// settleSeconds: Portage asks for an index with If-Modified-Since = the
// TIMESTAMP of its copy + 5 s, so a client holding an index less than this
// older than the one served keeps its copy (Settle).
const settleSeconds = 6

// Live tells whether the channel follows the catalog.
func (c *Channel) Live() bool { return c.Info.Live() }

// Index is the channel's Packages and Packages.gz: rendered again only
// when what the channel shows changed, each time with a TIMESTAMP above
// every one this channel served (and, after a move, above the channel's
// floor), so that Portage clients refetch it; a snapshot's TIMESTAMP is
// its floor.
func (c *Channel) Index(ctx context.Context) (*tree.IndexView, error) {
	if c.Live() {
		// What a client committed before reading the index is in it.
		if _, err := c.Catchup(ctx); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// A move replaced this version while the caller held it: what it
		// served last is still its index; never served, the caller asks
		// for the channel again.
		if c.idx != nil {
			return c.idx, nil
		}
		return nil, ErrChannelMoved
	}
	for attempt := 0; attempt < 50; attempt++ {
		content := c.Model.ContentGen()
		if c.idx != nil && c.idxContent == content {
			return c.idx, nil
		}
		ts := c.Info.Stamp
		if c.Live() {
			ts = max(ts, c.lastTS+1, time.Now().Unix())
			if c.idx == nil {
				// Above what any mount served under this name before.
				ts = max(ts, c.Info.Served+1)
			}
		}
		// A snapshot's version never changes: its floor is its TIMESTAMP,
		// so every mount, on every host and after a restart, serves the
		// same bytes (channel set put the floor above all served before).
		v, err := c.Model.FreezeIndex(c.Model.Gen(), ts)
		if errors.Is(err, tree.ErrStale) {
			continue // a catchup moved it meanwhile
		}
		if err != nil {
			return nil, err
		}
		// The previous view is not released: handles opened on it read
		// on (the store's chunks are dropped when unreferenced).
		if c.idx == nil {
			// What a client may hold from before this version.
			c.lastTS = c.Info.Served
		}
		c.idx, c.idxContent, c.prevTS, c.lastTS, c.renderedAt = v, content, c.lastTS, ts, time.Now()
		if c.record != nil {
			c.record(c.Info.Name, ts)
		}
		return v, nil
	}
	return nil, errors.New("channel: the catalog keeps changing while its index is rendered")
}

// Settle re-publishes a live channel's index with a TIMESTAMP settleSeconds
// above the last once nothing changed for settleSeconds after two indexes
// less than that apart: a client holding the older one would keep it until
// the next change (the main tree settles likewise). It tells whether it
// did.
func (c *Channel) Settle(now time.Time) (bool, error) {
	if !c.Live() {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.idx == nil || c.lastTS-c.prevTS >= settleSeconds || now.Sub(c.renderedAt) < settleSeconds*time.Second ||
		c.Model.ContentGen() != c.idxContent {
		return false, nil // a pending change renders with a new TIMESTAMP anyway
	}
	ts := max(c.lastTS+settleSeconds, now.Unix())
	v, err := c.Model.FreezeIndex(c.Model.Gen(), ts)
	if errors.Is(err, tree.ErrStale) {
		return false, nil // a catchup moved it: the next tick
	}
	if err != nil {
		return false, err
	}
	c.idx, c.prevTS, c.lastTS, c.renderedAt = v, c.lastTS, ts, now
	if c.record != nil {
		c.record(c.Info.Name, ts)
	}
	return true, nil
}

// close releases what the version holds; open index views stay readable.
func (c *Channel) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.Model.Close()
}

// ErrChannelMoved: the version asked was replaced before it served an index.
var ErrChannelMoved = errors.New("channel: moved while asked")

// ChannelInoBase numbers channels' Packages and Packages.gz apart from the
// mount's (tree.IndexIno) and from every other inode of the mount.
const ChannelInoBase = 1 << 61

// IndexIno is the inode number of the channel's Packages (Packages.gz if
// gz) with TIMESTAMP ts: each index a channel serves is an inode of its
// own, of fixed content, as the mount's are (nginx's open_file_cache
// keeps a descriptor while st_ino stays).
func (c *Channel) IndexIno(ts int64, gz bool) uint64 {
	ino := uint64(ChannelInoBase) + uint64(c.Serial&(1<<26-1))<<34 + uint64(ts&(1<<33-1))<<1
	if gz {
		ino++
	}
	return ino
}

// Channels is every channel of the catalog as this mount serves it.
type Channels struct {
	DB          *catalog.DB
	Layouts     tree.Layouts
	Pieces      pieces.Options
	Incarnation uint16
	Log         *slog.Logger
	// Compile gives a live channel's filter and the scopes it may show
	// from its definition (the catalog knows no query language); nil:
	// every build.
	Compile func(c *catalog.ChannelInfo) (tree.GroupFilter, []catalog.Scope, error)
	// Record, if set, stores a TIMESTAMP served (a writing mount's).
	Record func(name string, ts int64)

	mu     sync.RWMutex
	byName map[string]*Channel
	spaces map[string]uint16
	serial uint32
	failed map[string]int64 // the version whose load last failed, logged once
	ready  chan struct{}
	once   sync.Once
}

func (cs *Channels) init() {
	cs.once.Do(func() {
		cs.byName, cs.spaces, cs.failed = map[string]*Channel{}, map[string]uint16{}, map[string]int64{}
		cs.ready = make(chan struct{})
	})
}

// Get is the channel of that name as last synced (nil if none). It waits
// for the first Sync, at most a few seconds.
func (cs *Channels) Get(name string) *Channel {
	cs.waitReady()
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return cs.byName[name]
}

// waitReady waits for the first Sync, at most channelReadyWait.
func (cs *Channels) waitReady() {
	cs.init()
	select {
	case <-cs.ready:
	case <-time.After(channelReadyWait):
	}
}

// channelReadyWait bounds how long a lookup waits for the channels to load
// when the mount has just started.
const channelReadyWait = 10 * time.Second

// Names lists the channels served, sorted.
func (cs *Channels) Names() []string {
	cs.waitReady()
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	out := make([]string, 0, len(cs.byName))
	for n := range cs.byName {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Sync makes the served channels what the catalog defines: a new or moved
// channel is loaded (its tree and index rendered once), a deleted one
// goes. It returns the names that changed.
func (cs *Channels) Sync(ctx context.Context) ([]string, error) {
	cs.init()
	defer func() {
		select {
		case <-cs.ready:
		default:
			close(cs.ready)
		}
	}()
	defs, err := cs.DB.Channels(ctx)
	if err != nil {
		return nil, err
	}
	var changed []string
	want := map[string]bool{}
	for i := range defs {
		d := defs[i]
		want[d.Name] = true
		cs.mu.RLock()
		cur := cs.byName[d.Name]
		cs.mu.RUnlock()
		if cur != nil && cur.Info.Version == d.Version {
			continue
		}
		ch, err := cs.load(ctx, &d)
		if err != nil {
			if ctx.Err() != nil {
				return changed, ctx.Err()
			}
			// Tried again at every sync (the catalog's server may be
			// back), said once per version.
			if cs.failed[d.Name] != d.Version {
				cs.failed[d.Name] = d.Version
				cs.Log.Error("cannot serve channel", "channel", d.Name, "version", d.Version, "err", err)
			}
			continue
		}
		delete(cs.failed, d.Name)
		cs.mu.Lock()
		cs.byName[d.Name] = ch
		cs.mu.Unlock()
		if cur != nil {
			cur.close()
		}
		what := "live"
		if !d.Live() {
			what = "snapshot " + d.Snapshot
		}
		cs.Log.Info("serving channel", "channel", d.Name, "version", d.Version, "of", what, "packages", ch.Model.Packages())
		changed = append(changed, d.Name)
	}
	cs.mu.Lock()
	for name, ch := range cs.byName {
		if !want[name] {
			delete(cs.byName, name)
			ch.close()
			cs.Log.Info("channel deleted", "channel", name)
			changed = append(changed, name)
		}
	}
	cs.mu.Unlock()
	return changed, nil
}

// load builds a channel's version: its tree and its index.
func (cs *Channels) load(ctx context.Context, d *catalog.ChannelInfo) (*Channel, error) {
	cs.mu.Lock()
	space, ok := cs.spaces[d.Name]
	if !ok {
		space = uint16(len(cs.spaces) + 1)
		cs.spaces[d.Name] = space
	}
	cs.serial++
	serial := cs.serial
	cs.mu.Unlock()
	hf := headerOf(d)
	var src catalog.Source
	if d.Live() {
		spec := tree.ViewSpec{Header: hf}
		if cs.Compile != nil {
			var err error
			if spec.Filter, spec.Scopes, err = cs.Compile(d); err != nil {
				return nil, fmt.Errorf("its query %q: %w", d.Query, err)
			}
		}
		src = tree.Filtered(cs.DB, spec)
	} else {
		snaps, err := cs.DB.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		var info *catalog.SnapshotInfo
		for i := range snaps {
			if snaps[i].ID == d.SnapshotID {
				info = &snaps[i]
			}
		}
		if info == nil {
			return nil, fmt.Errorf("its snapshot %q is gone", d.Snapshot)
		}
		src = tree.SnapshotSource(cs.DB, *info, int64(d.Version), hf)
	}
	m := tree.NewModel(cs.Layouts)
	m.SetIncarnation(cs.Incarnation)
	m.SetInoSpace(space)
	m.OnConflict(func(msg string) { cs.Log.Warn("legacy name conflict", "channel", d.Name, "detail", msg) })
	if err := m.Load(ctx, src); err != nil {
		return nil, err
	}
	if err := m.BuildIndex(ctx, src, cs.Pieces); err != nil {
		m.Close()
		return nil, err
	}
	return &Channel{Info: *d, Model: m, Serial: serial, src: src, record: cs.Record}, nil
}

// headerOf sets the channel's TTL and URI header keys over the catalog's.
func headerOf(d *catalog.ChannelInfo) tree.HeaderFilter {
	if d.TTL == 0 && d.URI == "" {
		return nil
	}
	ttl, uri := d.TTL, d.URI
	return func(h map[string]string) map[string]string {
		out := maps.Clone(h)
		if out == nil {
			out = map[string]string{}
		}
		if ttl > 0 {
			out["TTL"] = strconv.FormatInt(ttl, 10)
		}
		if uri != "" {
			out["URI"] = uri
		}
		return out
	}
}

// Live lists the live channels served.
func (cs *Channels) Live() []*Channel {
	cs.init()
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	live := make([]*Channel, 0, len(cs.byName))
	for _, ch := range cs.byName {
		if ch.Live() {
			live = append(live, ch)
		}
	}
	return live
}

// Catchup brings a live channel to the catalog's present: O(change), the
// CPVs the change log names.
func (c *Channel) Catchup(ctx context.Context) (bool, error) {
	return c.Model.Catchup(ctx, c.src)
}

// Close releases every channel.
func (cs *Channels) Close() {
	cs.init()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for name, ch := range cs.byName {
		ch.close()
		delete(cs.byName, name)
	}
}
