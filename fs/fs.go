// Package fs is the go-fuse node layer of pkgdirfs: it serves the tree snapshot
// and the synthesized index, and maps every error to an errno.
package fs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"pkgdirfs/blobs"
	"pkgdirfs/catalog"
	"pkgdirfs/ingest"
	"pkgdirfs/tree"
	"pkgdirfs/tree/pieces"
	"pkgdirfs/view"
)

// Config is what a mount needs.
type Config struct {
	Store      *catalog.Store
	Layouts    tree.Layouts
	ReadOnly   bool
	AllowOther bool
	// XAttrs answers xattr requests (refusal reasons, scratch files' own
	// xattrs); without it the kernel never asks, which keeps ls -l fast.
	XAttrs bool
	Debug  bool
	Log    *slog.Logger
	// FsName is the mount's source in mountinfo, df and findmnt (the state
	// directory, so that mounts of two states can be told apart).
	FsName string
	// RemovedGrace is how long a removed build stays readable under
	// RemovedDir (for binhost clients holding the previous index); 0: not
	// at all. Kept in the catalog: every process's removals follow it.
	RemovedGrace time.Duration
	// PollInterval is how often the catalog generation is checked for changes
	// made by other processes (pkgdirfs import into a mounted state).
	PollInterval time.Duration
	// Incarnation tells this mount from the state's previous one in every
	// instance's inode number (tree.Model.Ino); 0: the catalog's numbers.
	Incarnation uint16
	// NoOpen, honoured only with ReadOnly, answers every OPEN with ENOSYS:
	// the kernel then opens regular files without asking (no_open, for the
	// whole connection), keeps their pages across opens, and reads come
	// without a handle (noopen.go). It loses passthrough for large
	// packages. A measurement knob (PKGDIRFS_NO_OPEN=1, docs/performance.md).
	NoOpen bool
	// Channel, if set, makes the whole mount that channel's tree (a
	// front-end serving one fleet); else channels are served at
	// view.ChannelsDir.
	Channel string
	// CompileChannel gives a live channel's filter from its query (the
	// query language is not the fs layer's); nil: every build.
	CompileChannel func(c *catalog.ChannelInfo) (tree.GroupFilter, []catalog.Scope, error)
}

// FS is one mounted PKGDIR.
type FS struct {
	cfg   Config
	log   *slog.Logger
	model *tree.Model
	root  *dirNode

	// idxReady is closed once the first index build has ended: the tree
	// serves lookups before that. stopBuild cancels that build (unmount).
	idxReady  chan struct{}
	buildCtx  context.Context
	stopBuild context.CancelFunc

	// cacheMu: one index cache write at a time; cacheBusy: one queued by
	// the poll loop; cacheNext: no periodic write before then.
	cacheMu   sync.Mutex
	cacheBusy atomic.Bool
	cacheNext atomic.Int64

	idxMu sync.Mutex
	idx   *tree.IndexView
	// idxOwn: idx's TIMESTAMP is this mount's choice, not (yet) the one the
	// catalog holds for its generation.
	idxOwn bool
	// storeFailed: freezing the index failed (its store's file could not
	// be written): it is built in memory from then on.
	storeFailed atomic.Bool
	// stamps of the last two rendered generations and when the last was
	// rendered, for settling after bursts
	prevTS, lastTS int64
	// stamps carries TIMESTAMPs served to the recorder (recordStamps).
	stamps     chan [2]int64
	stampsDone chan struct{}
	// catalogDown: the catalog's server was found unreachable (logged once).
	catalogDown atomic.Bool
	lastRender  time.Time
	settledTS   int64

	// channels: every channel of the catalog, as this mount serves it;
	// chanKick wakes the worker that applies changes to the live ones,
	// chanSync also has it read their definitions.
	channels *view.Channels
	treeRoot *gofs.Inode // the mount's root: f.root, or a channel's
	chanKick chan struct{}
	chanSync chan struct{}
	chanDone chan struct{} // closed when the channel worker returns

	loop   *gofs.LoopbackRoot // serves scratch files from the scratch tree
	names  *view.Names        // the one resolver of names
	commit *ingest.Committer  // the commit state machine

	notes    *noteQueue // kernel invalidations, sent by the notifiers
	listings *listings  // directory listings being read

	server *fuse.Server
	dir    string
	stop   chan struct{}
	done   chan struct{}
}

// New loads the first snapshot; Mount serves it.
func New(ctx context.Context, cfg Config) (*FS, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	f := &FS{cfg: cfg, log: cfg.Log, stop: make(chan struct{}), done: make(chan struct{}), idxReady: make(chan struct{}),
		notes: newNoteQueue(), listings: newListings(), stamps: make(chan [2]int64, 1), stampsDone: make(chan struct{})}
	if cfg.Channel != "" && !cfg.ReadOnly {
		return nil, errors.New("a mount of one channel is read-only")
	}
	model := tree.NewModel(cfg.Layouts)
	model.SetIncarnation(cfg.Incarnation)
	model.OnConflict(func(msg string) { f.log.Warn("legacy name conflict", "detail", msg) })
	model.OnIndexError(func(err error) { f.log.Error("keeping the index; it is rendered again when next read", "err", err) })
	if cfg.Channel == "" {
		// The rendered index is kept beside the blobs, where the next mount of
		// this catalog finds it, whichever host or follower it is; it is read
		// while the tree loads. (A mount of one channel neither shows the
		// main tree nor keeps its index: its model stays empty.)
		model.SetIndexCache(filepath.Join(cfg.Store.BlobDir(), blobs.IndexCacheDir), f.log)
		model.PreloadIndexCache(cfg.Store.DB, f.pieceOptions())
	}
	ok := false
	defer func() {
		if !ok {
			model.Close() // the preloaded index, if any
		}
	}()
	// The load allocates mostly what it keeps: collecting while the heap
	// grows would mark it again and again (seconds at 1,000,000 instances).
	if cfg.Channel == "" {
		gc := debug.SetGCPercent(-1)
		err := model.Load(ctx, cfg.Store.DB)
		debug.SetGCPercent(gc)
		if err != nil {
			return nil, err
		}
	}
	// What the load allocated and dropped goes back to the system; not on
	// the way to mounting (a full collection takes a while at 1,000,000),
	// nor to the first reads of an index from the cache, ready at once:
	// returning the heap holds the allocator (15-20 ms at 100,000).
	time.AfterFunc(freeAfterLoad, debug.FreeOSMemory)
	f.model = model
	f.names = view.New(model, cfg.Store.ScratchDir())
	f.commit = &ingest.Committer{Store: cfg.Store, Scratch: f.names.ScratchPath, Log: f.log}
	if !cfg.ReadOnly {
		// Every removal from now on, by any process on this catalog,
		// keeps its build for this long (tombstones).
		if err := cfg.Store.SetRemovedGrace(ctx, cfg.RemovedGrace); err != nil {
			return nil, err
		}
		// Graces that ended while nothing served the state.
		f.expireRemoved(time.Now())
	}
	f.channels = &view.Channels{DB: cfg.Store.DB, Layouts: cfg.Layouts, Pieces: f.pieceOptions(),
		Incarnation: cfg.Incarnation, Log: f.log, Compile: cfg.CompileChannel}
	if !cfg.ReadOnly {
		f.channels.Record = f.recordChannelStamp
	}
	f.chanKick, f.chanSync, f.chanDone = make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{})
	f.buildCtx, f.stopBuild = context.WithCancel(context.Background())
	f.root = &dirNode{fs: f, path: ""}
	var st syscall.Stat_t
	if err := syscall.Stat(cfg.Store.ScratchDir(), &st); err != nil {
		return nil, err
	}
	f.loop = &gofs.LoopbackRoot{Path: cfg.Store.ScratchDir(), Dev: uint64(st.Dev), RootNode: f.root}
	ok = true
	return f, nil
}

// Mount mounts the tree at dir and returns once the kernel serves it.
func (f *FS) Mount(dir string) error {
	timeout := cacheTimeout
	opts := &gofs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		// No NegativeTimeout: a cached "no such file" could outlive the
		// invalidation that follows a commit or a refusal, which may only be
		// sent after the request that caused it has returned.
		RootStableAttr: &gofs.StableAttr{Ino: tree.RootIno},
		MountOptions: fuse.MountOptions{
			FsName:      cmp.Or(f.cfg.FsName, "pkgdirfs"),
			Name:        "pkgdirfs",
			AllowOther:  f.cfg.AllowOther,
			DirectMount: true,
			MaxWrite:    1 << 20,
			// Without --xattrs no xattr request reaches us: ls -l would
			// otherwise pay two round trips per file.
			DisableXAttrs: !f.cfg.XAttrs,
			Debug:         f.cfg.Debug,
			Options:       []string{"default_permissions"},
			// open(O_TRUNC) must reach us as one request: a separate truncate of
			// a committed instance would have nothing to act on.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			// A symlink's target never changes under its inode number (a
			// flat or All/ name gets a new symlink inode when the newest
			// instance changes; scratch symlinks are replaced, not edited),
			// so the kernel may keep targets: no READLINK per ls -l.
			EnableSymlinkCaching: true,
			// go-fuse's own lines (a failed reply, a backing file it could
			// not register; every request under --debug) go to our log.
			Logger: slog.NewLogLogger(f.log.Handler(), goFuseLevel(f.cfg.Debug)),
			PanicHandler: func(v any) fuse.Status {
				f.log.Error("panic in a FUSE handler; answered EIO", "panic", v, "stack", string(debug.Stack()))
				return fuse.EIO
			},
		},
	}
	if f.cfg.ReadOnly {
		// The kernel answers EROFS and access(W_OK) is false, so Portage never tries.
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
	}
	var root gofs.InodeEmbedder = f.root
	if f.cfg.Channel != "" {
		// The channel must exist before it is mounted: a front-end that
		// serves nothing should not start.
		ctx := context.Background()
		if _, err := f.cfg.Store.DB.Channel(ctx, f.cfg.Channel); err != nil {
			return err
		}
		if _, err := f.channels.Sync(ctx); err != nil {
			return err
		}
		ch := f.channels.Get(f.cfg.Channel)
		if ch == nil {
			return fmt.Errorf("channel %s cannot be served (see the log)", f.cfg.Channel)
		}
		root = &chanDirNode{fs: f, name: f.cfg.Channel}
		opts.RootStableAttr = &gofs.StableAttr{Ino: ch.Model.RootIno()}
		zero := time.Duration(0)
		opts.EntryTimeout, opts.AttrTimeout = &zero, &zero
	}
	raw := newRawFS(gofs.NewNodeFS(root, opts), f.log)
	f.treeRoot = root.EmbeddedInode()
	raw.noOpen = f.noOpen()
	server, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	go server.Serve()
	f.server, f.dir = server, dir
	if err := server.WaitMount(); err != nil {
		_ = server.Unmount()
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if f.cfg.Channel != "" {
		close(f.idxReady) // no main index
	} else {
		go f.buildIndex()
	}
	if f.model.IndexCacheFound() {
		// The index comes from the cache in tens of milliseconds at
		// 100,000 instances: the mount is ready when it can serve
		// Packages at once (a render, seconds long, is not waited for).
		select {
		case <-f.idxReady:
		case <-time.After(cacheReadyWait):
		}
	}
	// Category directories are made now, in the background: a change
	// then costs the same in any of them (making one takes milliseconds
	// at a million instances), and the mount is ready before.
	if f.cfg.Channel == "" {
		go f.model.MakeCategories(f.buildCtx)
	}
	go f.poll()
	go f.recordStamps()
	go f.notifier()
	go f.channelWorker()
	if f.cfg.Channel == "" {
		f.syncChannels()
	}
	return nil
}

// buildIndex renders the index once, in the background: the mount serves
// names meanwhile, and the first read of Packages waits for it. Its pieces
// live in a file under the state directory, so the rendered index is in the
// page cache, not the daemon's heap.
func (f *FS) buildIndex() {
	defer close(f.idxReady)
	// Not under idxMu: index() waits for idxReady anyway, and the poll
	// loop (settle) must not wait for a render.
	if err := f.renderIndex(f.buildCtx); err != nil && f.buildCtx.Err() == nil {
		f.log.Error("rendering the index", "err", err)
		return
	}
	// A full render is kept for the next mount at once; an index from the
	// cache when it has moved on far enough (maybeCacheIndex).
	if changed, entries := f.model.IndexCacheLag(); changed > 0 && changed >= entries {
		f.cacheIndexInBackground("rendered at mount")
	}
}

// freeAfterLoad: how long after the tree's load its garbage is returned
// to the system (see New).
const freeAfterLoad = 2 * time.Second

// Index cache writes: when the index moved on by cacheEvery of its entries
// and cacheMinGap passed since the last write, so that a host killed with
// -9 still finds a recent cache; a failed write waits cacheRetryGap.
const (
	cacheEvery    = 100 // 1%
	cacheMinGap   = time.Minute
	cacheRetryGap = 10 * time.Minute
	// cacheReadyWait bounds how long a mount waits for an index loaded
	// from the cache before it reports itself ready.
	cacheReadyWait = 2 * time.Second
	// cacheUnmountWait bounds the write at unmount (more than a second at
	// 1,000,000 entries): an unmount must not hang on it.
	cacheUnmountWait = 15 * time.Second
)

// maybeCacheIndex writes the index cache in the background when it is due.
func (f *FS) maybeCacheIndex(now time.Time) {
	changed, entries := f.model.IndexCacheLag()
	if changed == 0 || changed*cacheEvery < entries || now.UnixNano() < f.cacheNext.Load() {
		return
	}
	f.cacheIndexInBackground("the index moved on")
}

func (f *FS) cacheIndexInBackground(why string) {
	if !f.cacheBusy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer f.cacheBusy.Store(false)
		f.cacheIndex(f.buildCtx, why)
	}()
}

// cacheIndex writes the index cache now. A failure is a warning: the next
// mount renders the index, as without a cache.
func (f *FS) cacheIndex(ctx context.Context, why string) {
	f.cacheMu.Lock()
	defer f.cacheMu.Unlock()
	start := time.Now()
	gen, err := f.model.WriteIndexCache(ctx, f.pieceOptions())
	switch {
	case err != nil && ctx.Err() != nil:
		f.log.Info("index cache not written: stopped", "why", why)
	case err != nil:
		f.cacheNext.Store(start.Add(cacheRetryGap).UnixNano())
		f.log.Warn("could not write the index cache; the next mount renders the index", "err", err)
	case gen >= 0:
		f.cacheNext.Store(start.Add(cacheMinGap).UnixNano())
		f.log.Info("index cache written", "generation", gen, "why", why, "seconds", time.Since(start).Seconds())
	}
}

// pieceOptions are the index pieces' options of this mount's store.
func (f *FS) pieceOptions() pieces.Options { return pieces.Options{Dir: f.cfg.Store.Dir} }

// renderIndex builds the index: at mount (buildIndex), and again, under
// idxMu, after its store failed. If the store's file cannot be written (a full disk), the
// pieces are kept in memory instead: Packages stays readable.
func (f *FS) renderIndex(ctx context.Context) error {
	start := time.Now()
	// The build ends by applying the catalog's changes since the tree's
	// generation (tree.BuildIndex): those need invalidations too.
	seq := f.model.Seq()
	defer f.noteSince(seq, false)
	opts := f.pieceOptions()
	if f.storeFailed.Load() {
		// The store's file could not be written: an index loaded from the
		// cache would fail the same way at its first freeze.
		opts = pieces.Options{}
	}
	err := f.model.BuildIndex(ctx, f.cfg.Store.DB, opts)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		f.log.Warn("rendering the index into the state directory failed; keeping it in memory", "err", err)
		err = f.model.BuildIndex(ctx, f.cfg.Store.DB, pieces.Options{})
	}
	if err == nil {
		f.log.Info("index ready", "seconds", time.Since(start).Seconds())
	}
	// Rendering leaves a heap's worth of garbage behind; give it back, but
	// not on the way to serving (a collection takes a while at 1,000,000).
	// An index from the cache left none: a collection would only slow the
	// first reads.
	if changed, entries := f.model.IndexCacheLag(); changed >= entries {
		go debug.FreeOSMemory()
	}
	return err
}

// Wait blocks until the filesystem is unmounted.
func (f *FS) Wait() {
	f.server.Wait()
	f.stopBuild() // an index still being rendered is not needed any more
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.notes.close()
	<-f.done
	<-f.stampsDone
	<-f.idxReady
	// The next mount starts from what this one served last. A background
	// write was stopped with the build (stopBuild) and ends first.
	if changed, _ := f.model.IndexCacheLag(); changed > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), cacheUnmountWait)
		f.cacheIndex(ctx, "unmount")
		cancel()
	}
	<-f.chanDone
	f.channels.Close()
	f.model.Close()
}

// Unmount detaches the mount; if it is busy, it is detached lazily so that the
// daemon can still exit.
func (f *FS) Unmount() error {
	err := f.server.Unmount()
	if err != nil {
		f.log.Warn("unmount failed, detaching lazily", "err", err)
		if err2 := syscall.Unmount(f.dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("unmount: %v; lazy unmount: %v", err, err2)
		}
	}
	return nil
}

// poll picks up catalog changes made by other processes.
func (f *FS) poll() {
	defer close(f.done)
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	// Where others write the catalog — other hosts of a shared one, the
	// writing daemon of a follower — their commits ring the doorbell and
	// are applied at once instead of at the next tick. A writing mount of
	// its own state applies its own commits itself; another process's
	// (import, prune) wait for the tick, as before.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bell <-chan struct{}
	if f.cfg.ReadOnly || f.cfg.Store.Loc.Shared() {
		bell = f.cfg.Store.DB.Ring(ctx)
	}
	for {
		select {
		case <-f.stop:
			return
		case <-bell:
			if err := f.Refresh(context.Background()); err != nil {
				f.catalogError("reading catalog changes", err)
			}
		case now := <-t.C:
			if err := f.Refresh(context.Background()); err != nil {
				f.catalogError("reading catalog changes", err)
			} else if f.catalogDown.CompareAndSwap(true, false) {
				f.log.Info("catalog server reachable again")
			}
			f.syncChannels()
			f.expireRemoved(now)
			f.settle(now)
			f.maybeCacheIndex(now)
		}
	}
}

// Refresh applies the catalog's changes since the generation the tree shows
// (the change log names the CPVs: O(change)) and invalidates exactly the
// kernel entries whose target changed.
func (f *FS) Refresh(ctx context.Context) error {
	if f.cfg.Channel != "" {
		// A mount of one channel follows the catalog through it alone.
		f.kickChannels()
		return nil
	}
	seq := f.model.Seq()
	changed, err := f.model.Catchup(ctx, f.cfg.Store.DB)
	if err != nil {
		return err
	}
	f.noteSince(seq, changed)
	if changed {
		f.kickChannels()
	}
	return nil
}

// noteSince queues the invalidations of what the tree changed after seq,
// whoever applied it: the index build applies the changes that landed
// while it rendered, and a Catchup that finds nothing left to do after it
// must still tell the kernel.
func (f *FS) noteSince(seq uint64, changed bool) {
	if !changed && f.model.Seq() == seq {
		return
	}
	for _, c := range f.changedSince(seq) {
		f.notifyEntry(c.Dir, c.Name)
	}
	// The index names point at the next generation's inodes (IndexIno).
	f.notifyEntry("", "Packages")
	f.notifyEntry("", "Packages.gz")
	f.notifyEntry("", "")
}

// changedSince lists the names the tree changed after seq. If the journal no
// longer reaches back (a change of more names than it keeps), every
// directory the kernel knows is invalidated instead.
func (f *FS) changedSince(seq uint64) []tree.Name {
	names, ok := f.model.ChangedSince(seq)
	if ok {
		return names
	}
	f.log.Warn("a change touched more names than the journal keeps; invalidating every cached directory")
	var all []tree.Name
	var walkDirs func(n *gofs.Inode, p string)
	walkDirs = func(n *gofs.Inode, p string) {
		for name, c := range n.Children() {
			all = append(all, tree.Name{Dir: p, Name: name})
			if c.IsDir() {
				walkDirs(c, joinPath(p, name))
			}
		}
	}
	walkDirs(f.root.EmbeddedInode(), "")
	return all
}

// walk finds the kernel-known inode of a directory path, nil if the kernel never
// looked it up (then nothing of it is cached).
func walk(n *gofs.Inode, p string) *gofs.Inode {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			n = n.GetChild(p[start:i])
			if n == nil {
				return nil
			}
			start = i + 1
		}
	}
	return n
}

// index returns the rendered index of the current snapshot, rendering it on the
// first access after a change. The render is shared by every caller, so it does
// not run under one request's context: an interrupted request (Go programs get
// FUSE INTERRUPTs from runtime preemption signals) must not fail it.
func (f *FS) index() (*tree.IndexView, error) {
	<-f.idxReady
	ctx := context.Background()
	f.idxMu.Lock()
	defer f.idxMu.Unlock()
	if !f.model.IndexReady() {
		if err := f.renderIndex(ctx); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		if attempt > 50 {
			return nil, errors.New("catalog keeps changing while rendering the index")
		}
		gen := f.model.Gen()
		if f.idx != nil && f.idx.Generation == gen {
			if f.idxOwn {
				f.takeRecordedStamp(ctx)
			}
			return f.idx, nil
		}
		// The TIMESTAMP is read, never written, here: a read of Packages
		// does not wait on a catalog write, nor fail because one fails (a
		// full disk, a read-only state filesystem, a writer holding the
		// lock). What is served is recorded after (recordStamp).
		var ts int64
		st, err := f.cfg.Store.DB.StampOf(ctx, gen)
		switch {
		case err == nil:
			ts = st.Next(time.Now().Unix())
			if st.Stored == 0 {
				// Above every one this mount served, whether or not it was
				// recorded.
				ts = max(ts, f.lastTS+1)
				if f.cfg.ReadOnly && !f.cfg.Store.Loc.Shared() {
					// A follower of a state records nothing: the
					// writer's mount stores the TIMESTAMP it serves, and a
					// later read here takes it.
					break
				}
				if f.cfg.Store.Loc.Shared() {
					// Every host serves one generation with one TIMESTAMP
					// (nginx's Last-Modified and ETag behind a load
					// balancer): the first to serve it records it, the
					// others take that. Writers hold a shared catalog for
					// milliseconds; past sharedStampWait the index is served
					// with this host's and recorded after.
					sctx, cancel := context.WithTimeout(ctx, sharedStampWait)
					stored, serr := f.cfg.Store.DB.RecordStamp(sctx, gen, ts)
					cancel()
					if serr == nil {
						ts = max(stored, f.lastTS+1)
						break
					}
				}
				f.recordStamp(gen, ts)
			}
		case !errors.Is(err, catalog.ErrStaleGeneration):
			ts = max(time.Now().Unix(), f.lastTS+1)
			f.log.Warn("could not read the index TIMESTAMP; serving the index with one kept in memory", "timestamp", ts, "err", err)
			err = nil
		}
		if err == nil {
			idx, ferr := f.model.FreezeIndex(gen, ts)
			if ferr == nil {
				f.setIndex(idx, ts != st.Stored)
				return idx, nil
			}
			if !errors.Is(ferr, tree.ErrStale) {
				if f.model.IndexReady() {
					return nil, ferr
				}
				// Recovered below (a full disk under the state ends in an
				// index kept in memory), so not an error of the daemon.
				f.log.Warn("freezing the index failed; rendering it again, in memory", "err", ferr)
				f.storeFailed.Store(true)
				if err := f.renderIndex(ctx); err != nil {
					return nil, err
				}
				continue
			}
		} else if !errors.Is(err, catalog.ErrStaleGeneration) {
			return nil, err
		}
		// The catalog moved past the tree: catch up, then render that.
		if err := f.Refresh(ctx); err != nil {
			return nil, err
		}
	}
}

// setIndex makes idx the index this mount serves; own: its TIMESTAMP is
// this mount's choice, not the catalog's for its generation.
func (f *FS) setIndex(idx *tree.IndexView, own bool) {
	if f.idx == nil || idx.Timestamp != f.idx.Timestamp {
		f.prevTS, f.lastTS, f.lastRender = f.lastTS, idx.Timestamp, time.Now()
	}
	f.idx, f.idxOwn = idx, own
}

// takeRecordedStamp serves the TIMESTAMP the catalog now holds for the
// generation this mount serves with one of its own choosing (a follower
// records nothing; a host may have lost the race to record): every host
// ends up serving one generation with one TIMESTAMP, as nginx's
// Last-Modified and ETag behind a load balancer need. The content is that
// generation's either way. Under idxMu.
func (f *FS) takeRecordedStamp(ctx context.Context) {
	st, err := f.cfg.Store.DB.StampOf(ctx, f.idx.Generation)
	if err != nil || st.Stored == 0 {
		return // still nobody's: asked again at the next read
	}
	if st.Stored == f.idx.Timestamp {
		f.idxOwn = false
		return
	}
	idx, err := f.model.FreezeIndex(f.idx.Generation, st.Stored)
	if err != nil {
		return // the model moved on: the next read renders that
	}
	// Other bytes for the same generation: other inodes (IndexView.Ino),
	// which the names point at once the kernel looks them up again. An
	// index open, or looked up, before keeps its own bytes.
	idx.Restamped = true
	f.log.Info("serving the TIMESTAMP recorded for the generation", "generation", idx.Generation, "timestamp", idx.Timestamp, "instead_of", f.idx.Timestamp)
	f.setIndex(idx, false)
	f.notifyEntry("", "Packages")
	f.notifyEntry("", "Packages.gz")
}

// catalogError logs a failed catalog operation of the mount's own. An
// unreachable server is one warning per outage, not a line per poll: the
// mount serves what it has meanwhile, and writes fail with EIO.
func (f *FS) catalogError(what string, err error) {
	if !errors.Is(err, catalog.ErrUnavailable) {
		f.log.Error(what, "err", err)
		return
	}
	if f.catalogDown.CompareAndSwap(false, true) {
		f.log.Warn("catalog server unavailable: serving what the mount has, writes fail until it is back", "while", what, "err", err)
	}
}

// recordStamp has the TIMESTAMP ts, served for generation gen, stored in
// the catalog in the background; a newer one queued replaces it, since
// only the current generation's can be recorded.
func (f *FS) recordStamp(gen, ts int64) {
	for {
		select {
		case f.stamps <- [2]int64{gen, ts}:
			return
		default:
		}
		select {
		case <-f.stamps: // superseded
		default:
		}
	}
}

// recordStamps stores the TIMESTAMPs served, one at a time, until the
// mount stops (the last one served is stored before it exits). One that
// fails is logged: the mount keeps serving with the one in memory, above
// every one it served, and the next generation's is recorded above it.
func (f *FS) recordStamps() {
	defer close(f.stampsDone)
	record := func(s [2]int64) {
		// Bounded: the catalog's writer may hold it for long, and an
		// unmount waits for this.
		ctx, cancel := context.WithTimeout(context.Background(), stampRecordWait)
		defer cancel()
		stored, err := f.cfg.Store.DB.RecordStamp(ctx, s[0], s[1])
		switch {
		case errors.Is(err, catalog.ErrStaleGeneration):
		case err != nil:
			f.log.Warn("could not store the index TIMESTAMP served", "generation", s[0], "timestamp", s[1], "err", err)
		case stored != s[1]:
			// Another renderer of this state (pkgdirfs index) stored its
			// own first; ours is served until the next change.
			f.log.Info("index TIMESTAMP stored by another renderer", "generation", s[0], "served", s[1], "stored", stored)
		}
	}
	for {
		select {
		case <-f.stop:
			select {
			case s := <-f.stamps:
				record(s)
			default:
			}
			return
		case s := <-f.stamps:
			record(s)
		}
	}
}

// settle re-publishes the index once the catalog has been quiet for 6 s after
// generations less than 6 s apart were served (see catalog.Store.Settle).
func (f *FS) settle(now time.Time) {
	if f.cfg.ReadOnly {
		return // a follower publishes nothing; the writer settles
	}
	f.idxMu.Lock()
	due := f.lastTS != 0 && f.lastTS != f.settledTS && f.lastTS-f.prevTS < settleSeconds &&
		now.Sub(f.lastRender) >= settleSeconds*time.Second && f.idx != nil && f.idx.Generation == f.model.Gen()
	minTS := f.lastTS + settleSeconds
	if due {
		f.settledTS = minTS
	}
	f.idxMu.Unlock()
	if !due {
		return
	}
	if err := f.cfg.Store.Settle(context.Background(), minTS); err != nil {
		f.log.Error("settling the index timestamp", "err", err)
		return
	}
	f.log.Info("index re-published after a burst of changes", "timestamp_at_least", minTS)
	if err := f.Refresh(context.Background()); err != nil {
		f.catalogError("reading catalog changes", err)
	}
}

func (f *FS) blobPath(name string) string { return filepath.Join(f.cfg.Store.BlobDir(), name) }

func goFuseLevel(debug bool) slog.Level {
	if debug {
		return slog.LevelInfo // the trace the user asked for
	}
	return slog.LevelWarn
}

// errno maps our failures to what a client should see, logging the cause once.
func (f *FS) errno(op, path string, err error) syscall.Errno {
	en := errnoOf(err)
	switch {
	case en == syscall.ENOSPC && errors.Is(err, catalog.ErrFull):
		f.log.Warn(op+": no space left for the catalog", "path", path, "err", err)
	case en == syscall.EIO && errors.Is(err, os.ErrNotExist):
		f.log.Error(op+": blob missing", "path", path, "err", err)
	case en == syscall.EIO, en == syscall.EAGAIN:
		// Our own failure (the disk under the state, a damaged or
		// stuck catalog): say so, the client only sees the errno.
		f.log.Error(op, "path", path, "err", err)
	}
	return en
}

// errnoOf is the one mapping of an error to what a client hears: a
// syscall's own errno as it is; the domain's errors by their class.
func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	var refused *catalog.RefusedError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, catalog.ErrUnavailable):
		// Before the errno of its cause (a socket that is not there).
		return syscall.EIO
	case errors.As(err, &en):
		return en
	case errors.As(err, &refused):
		return syscall.EINVAL
	case errors.Is(err, catalog.ErrBuildIDTaken), errors.Is(err, os.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, catalog.ErrFull):
		return syscall.ENOSPC
	case errors.Is(err, catalog.ErrBusy):
		return syscall.EAGAIN
	case errors.Is(err, catalog.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, os.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, catalog.ErrReadOnly):
		return syscall.EROFS
	}
	return syscall.EIO
}

func fillTime(a *fuse.Attr, ns int64) {
	t := time.Unix(0, ns) // seconds rounded down, nanoseconds in [0, 1e9)
	a.Mtime, a.Mtimensec = uint64(t.Unix()), uint32(t.Nanosecond())
	a.Ctime, a.Ctimensec = a.Mtime, a.Mtimensec
	a.Atime, a.Atimensec = a.Mtime, a.Mtimensec
}
