package catalog

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"pkgdirfs/blobs"
	"pkgdirfs/layout"
	"pkgdirfs/sign"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ImportOptions tunes Store.Import. The zero value copies bytes with
// GOMAXPROCS workers, 2,048 packages or 500 ms per transaction.
type ImportOptions struct {
	// Link takes the source files over without copying their bytes: a hard
	// link when the source is on the state's filesystem (the blob and the
	// source file are then one inode), else a reflink (FICLONE), else a copy
	// (announced once through Notice).
	Link bool
	// Workers read, hash, stage and parse files in parallel; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// BatchSize and BatchDelay bound one catalog transaction: it commits
	// after BatchSize packages or once its first package waited BatchDelay.
	BatchSize  int
	BatchDelay time.Duration
	// Progress is called for every file, in order, once its transaction
	// committed (or it was found invalid), from a single goroutine.
	Progress func(f ImportFile)
	// Notice receives messages meant for the user (a --link fallback), each
	// once; it may be called from several goroutines.
	Notice func(msg string)
}

// How the bytes of a file reached staging.
type byteMethod uint8

const (
	byCopy byteMethod = iota
	byLink
	byClone
)

// importItem is one source file on its way through an import.
type importItem struct {
	idx      int
	file     ImportFile
	invalid  string    // why the file is not imported; "" if it is a package
	inst     *Instance // identify's result (build id from the name only)
	staged   string    // the staging file while it is there
	blobPath string
	// placed: the bytes are at blobPath (renamed from staging, or linked
	// there). A worker places them when the blob name is free; otherwise
	// the transaction decides.
	placed bool
	// latePlaced: renamed there by the transaction (the blob name was taken
	// by bytes no row named), which must then make it durable itself.
	latePlaced bool
	how        byteMethod
	err        error  // our own failure (disk): the import stops at this file
	linkErr    error  // why --link did not link it
	existed    bool   // set by the committing transaction: the same bytes were there
	content    string // signed here: the build's sign.ContentKey
	// unmark removes the marker of a blob placed for it (a shared
	// catalog's session: sessions.go) once its batch is decided.
	unmark func()
}

// mark writes the marker of the blob about to be placed from src (the
// inode it will have), replacing an earlier one of the item.
func (it *importItem) mark(s *Store, src string) {
	if it.unmark != nil {
		it.unmark()
	}
	it.unmark = s.markPlacing(src, it.inst.Blob)
}

// importer is the state one Import shares between its goroutines.
type importer struct {
	ctx      context.Context
	s        *Store
	opt      ImportOptions
	stateDev uint64
	dirs     sync.Map // blob subdirectories known to exist

	mu      sync.Mutex
	devs    map[uint64]*devCaps
	noticed map[uint64]bool
}

// devCaps remembers what failed for the files of one source device, so
// that a link or clone known to fail is not tried for every file.
type devCaps struct{ noLink, noClone bool }

// Import brings files into the catalog: GOMAXPROCS workers read, hash, stage
// and parse them while one goroutine commits them, many per transaction, in
// the order of files, with exactly the identity rules of Ingest (so the
// result equals ImportOne over the same files, in order). The bytes are kept
// as they are in the source: an import never stamps a BUILD_ID.
//
// Crash safety: every blob a batch names is made durable (one syncfs of the
// state's filesystem) before the transaction that inserts its rows commits,
// so a crash leaves at worst orphan blobs, never rows without bytes. Refused
// files are listed in res.Invalid and never stop the import; an error is our
// own failure (disk, catalog), after which the packages of the batches
// committed before it stay imported.
func (s *Store) Import(ctx context.Context, files []ImportFile, opt ImportOptions, res *ImportResult) error {
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 2048
	}
	if opt.BatchDelay <= 0 {
		opt.BatchDelay = 500 * time.Millisecond
	}
	var st unix.Stat_t
	if err := unix.Stat(s.StagingDir(), &st); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	blobs, err := os.Open(s.BlobDir())
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer blobs.Close()
	im := &importer{ctx: ctx, s: s, opt: opt, stateDev: st.Dev, devs: map[uint64]*devCaps{}, noticed: map[uint64]bool{}}
	// Each package's identity queries land anywhere in the catalog's
	// indexes: the backend may tune itself for the load while it runs.
	defer s.DB.b.Bulk(ctx)()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The window bounds how far workers run ahead of the committer (staged
	// files waiting for their turn). A worker takes a token before it
	// claims the next file, so the claimed files are a prefix of files and
	// the next one to commit is always among them; tokens come back in file
	// order as the committer takes items.
	window := make(chan struct{}, 2*opt.BatchSize+4*opt.Workers)
	// As deep as the window: workers go on while the committer is in a
	// transaction, instead of stopping at the first item it has not taken.
	results := make(chan *importItem, cap(window))
	var claimed atomic.Int64
	var wg sync.WaitGroup
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newImportWorker()
			for {
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				i := int(claimed.Add(1) - 1)
				if i >= len(files) || ctx.Err() != nil {
					return
				}
				it, err := im.prepare(w, i, files[i])
				if err != nil {
					im.discard(it)
					it.err = fmt.Errorf("%s: %w", files[i].Path, err)
				}
				select {
				case results <- it:
				case <-ctx.Done():
					im.discard(it)
					return
				}
			}
		}()
	}

	c := &importCommitter{im: im, blobs: blobs, res: res, stop: cancel}
	err = c.run(ctx, len(files), window, results)
	cancel()
	// Workers stop at their next file; what they staged for files that were
	// not committed goes (the sources keep the bytes).
	go func() { wg.Wait(); close(results) }()
	for it := range results {
		im.discard(it)
	}
	for _, it := range c.pending {
		im.discard(it)
	}
	return err
}

// discard removes the staging file of an item that will not be committed.
// A blob a worker already placed stays: it may be bytes a row already
// names, and an orphan is what verify reports anyway.
func (im *importer) discard(it *importItem) {
	if it != nil && it.unmark != nil {
		it.unmark()
		it.unmark = nil
	}
	if it != nil && it.staged != "" && !it.placed {
		os.Remove(it.staged)
		it.staged = ""
	}
}

// importCommitter puts items into the catalog in file order, in batches:
// it collects a batch and makes its blobs durable while the batch before
// commits on a goroutine of its own (transact), so the transactions, the
// syncs and the workers all run at once.
type importCommitter struct {
	im      *importer
	blobs   *os.File
	res     *ImportResult       // written by transact
	stop    func()              // cancels the import (workers and collect)
	pending map[int]*importItem // done by a worker, not yet in a batch
	batch   []*importItem
	synced  chan []*importItem // durable batches, in order, for transact
}

func (c *importCommitter) run(ctx context.Context, n int, window chan struct{}, results chan *importItem) error {
	c.synced = make(chan []*importItem, 1)
	txErr := make(chan error, 1)
	go func() { txErr <- c.transact(ctx) }()
	err := c.collect(ctx, n, window, results)
	close(c.synced)
	if terr := <-txErr; terr != nil {
		if errors.Is(err, context.Canceled) {
			err = nil // transact stopped the import
		}
		return errors.Join(err, terr)
	}
	return err
}

// collect takes the workers' items in file order into batches.
func (c *importCommitter) collect(ctx context.Context, n int, window chan struct{}, results chan *importItem) error {
	opt := c.im.opt
	c.pending = make(map[int]*importItem)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var started time.Time
	for next := 0; next < n; {
		if it, ok := c.pending[next]; ok {
			delete(c.pending, next)
			next++
			<-window
			if it.err != nil {
				// The files before this one are committed, as a one-by-one
				// import would have done.
				if err := c.flush(ctx); err != nil {
					return errors.Join(it.err, err)
				}
				return it.err
			}
			if len(c.batch) == 0 {
				started = time.Now()
				timer.Reset(opt.BatchDelay)
			}
			c.batch = append(c.batch, it)
			if len(c.batch) >= opt.BatchSize || time.Since(started) >= opt.BatchDelay {
				timer.Stop()
				if err := c.flush(ctx); err != nil {
					return err
				}
			}
			continue
		}
		select {
		case it := <-results:
			c.pending[it.idx] = it
		case <-timer.C:
			if err := c.flush(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.flush(ctx)
}

// flush makes the current batch's blobs durable and hands it to transact.
func (c *importCommitter) flush(ctx context.Context) error {
	batch := c.batch
	c.batch = nil
	if len(batch) == 0 {
		return nil
	}
	placed := false
	for _, it := range batch {
		placed = placed || it.placed
	}
	if placed {
		// One syncfs makes every blob the workers placed durable (data,
		// inodes, the renames and links, new blob subdirectories) before any
		// row naming one commits: a crash leaves orphan blobs at worst.
		if err := unix.Syncfs(int(c.blobs.Fd())); err != nil {
			c.discardAll(batch)
			return fmt.Errorf("syncing the state filesystem: %w", err)
		}
	}
	select {
	case c.synced <- batch:
		return nil
	case <-ctx.Done():
		c.discardAll(batch)
		return ctx.Err()
	}
}

// transact commits the synced batches in order, one transaction each. After
// a failure it stops the import and discards what still comes.
func (c *importCommitter) transact(ctx context.Context) error {
	var failed error
	for batch := range c.synced {
		if failed != nil {
			c.discardAll(batch)
			continue
		}
		if failed = c.commit(ctx, batch); failed != nil {
			c.stop()
		}
	}
	return failed
}

func (c *importCommitter) discardAll(batch []*importItem) {
	for _, it := range batch {
		c.im.discard(it)
	}
}

// commit puts one durable batch into the catalog in one transaction.
func (c *importCommitter) commit(ctx context.Context, batch []*importItem) error {
	defer c.discardAll(batch)
	packages := false
	for _, it := range batch {
		packages = packages || it.inst != nil
	}
	if packages {
		// Not cancellable: a backend may pay for interruptibility per
		// statement (the embedded one runs each on a goroutine of its own,
		// several times its cost); a batch is short, and the import stops
		// between batches.
		txCtx := context.WithoutCancel(ctx)
		if err := c.im.s.DB.Tx(txCtx, func(tx *Tx) error { return c.commitBatch(tx, batch) }); err != nil {
			return fmt.Errorf("committing %d packages (%s … %s): %w", len(batch), batch[0].file.Path, batch[len(batch)-1].file.Path, err)
		}
	}
	for _, it := range batch {
		switch {
		case it.invalid != "":
			c.res.Invalid = append(c.res.Invalid, Invalid{it.file.Path, it.file.Rel, it.invalid})
		case it.existed:
			if it.content != "" && it.placed && it.inst != nil {
				// Signed here, and the same build was in, signed into other
				// bytes: the bytes placed for it are nobody's.
				c.im.s.DropBlob(ctx, it.inst.Blob)
			}
			c.res.Present++
		default:
			c.res.Imported++
			switch it.how {
			case byLink:
				c.res.Linked++
			case byClone:
				c.res.Cloned++
			default:
				c.res.Copied++
			}
		}
		if c.im.opt.Progress != nil {
			c.im.opt.Progress(it.file)
		}
	}
	return nil
}

// commitBatch is Ingest's transaction for each package of the batch, in
// order, with one commitChange. It may run again on ErrBusy: it starts
// from identify's result each time.
func (c *importCommitter) commitBatch(tx *Tx, batch []*importItem) error {
	// Bytes a worker placed in blobs/ in this batch are durable (the
	// batch's syncfs): another file of the batch with the same bytes needs
	// no blob of its own.
	durable := map[string]bool{}
	for _, it := range batch {
		if it.inst != nil && it.placed && !it.latePlaced {
			durable[it.inst.SHA256] = true
		}
	}
	lateSync := false
	// Most catalogs being imported into hold no removed build in its
	// grace: one look saves a statement per package (a round trip each
	// on a catalog server). Nothing else writes while this transaction
	// holds the write lock.
	tombstones, err := tx.AnyTombstones()
	if err != nil {
		return err
	}
	for _, it := range batch {
		if it.inst == nil {
			continue
		}
		inst := *it.inst
		var err error
		if it.existed, err = tx.HasDigest(inst.CPV, inst.SHA256); err != nil {
			return err
		}
		if !it.existed && it.content != "" {
			// Signed here: the same build may be in already, signed into
			// other bytes (by an earlier file of this import, or a mount).
			held, err := tx.heldIn(c.im.s, inst.CPV, it.content)
			if err != nil {
				return err
			}
			it.existed = held != nil
		}
		if it.existed {
			continue
		}
		if inst.BuildID, err = tx.buildIDFor(&inst, inst.SHA256); err != nil {
			return err
		}
		if !it.placed && !durable[inst.SHA256] {
			// The blob name was taken when the worker looked, by bytes no
			// row names (left by a crash, possibly incomplete, or of an
			// instance removed meanwhile): ours replace them.
			it.mark(c.im.s, it.staged)
			if err := os.Rename(it.staged, it.blobPath); err != nil {
				return err
			}
			it.placed, it.latePlaced = true, true
			if it.how == byLink {
				// A no-op rename if the orphan was this very inode.
				os.Remove(it.staged)
			}
		}
		lateSync = lateSync || it.latePlaced
		if _, err := tx.InsertInstance(&inst); err != nil {
			return err
		}
		if tombstones {
			if err := tx.dropTombstonesOf(inst.CPV, inst.SHA256); err != nil {
				return err
			}
		}
	}
	if lateSync {
		if err := unix.Syncfs(int(c.blobs.Fd())); err != nil {
			return fmt.Errorf("syncing the state filesystem: %w", err)
		}
	}
	return commitChange(tx)
}

// importWorker is one worker's reusable buffer and hashes.
type importWorker struct {
	buf []byte
	dg  *Digester
}

// importBufSize is the read size; a package up to this size is read once
// and parsed from memory.
const importBufSize = 1 << 20

func newImportWorker() *importWorker {
	return &importWorker{buf: make([]byte, importBufSize), dg: NewDigester()}
}

// prepare hashes and identifies one file and puts its bytes into blobs/
// when that name is free: with --link, the file itself, hard-linked there
// once its digest names it; else a copy or clone staged first. A file that
// is not an acceptable package comes back with invalid set; an error is our
// own failure.
func (im *importer) prepare(w *importWorker, idx int, f ImportFile) (*importItem, error) {
	it := &importItem{idx: idx, file: f}
	in, err := os.Open(f.Path)
	if err != nil {
		it.invalid = err.Error()
		return it, nil
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return it, err
	}
	if err := checkPackageName(f.Rel); err != nil {
		it.invalid = err.(*RefusedError).Reason
		return it, nil
	}
	if im.s.Signing != (Signing{}) && layout.ParsePath(f.Rel).Format == layout.FormatGpkg {
		done, err := im.prepareSigning(w, it, in, fi)
		if done || err != nil {
			return it, err
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return it, err
		}
	}
	var dev uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev = uint64(st.Dev)
	}
	var linkErr error
	if im.opt.Link && !im.caps(dev).noLink {
		done, err := im.linkPackage(w, it, in, fi)
		if done || err != nil {
			return it, err
		}
		linkErr = it.linkErr
		if errors.Is(linkErr, syscall.EXDEV) {
			im.setCaps(dev, func(c *devCaps) { c.noLink = true })
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return it, err
		}
	}
	if fi.Size() < importBufSize && (!im.opt.Link || im.caps(dev).noClone) {
		return it, im.copySmall(w, it, in, fi)
	}
	staged, r, done, err := im.stage(w, it, in, dev, linkErr)
	if err != nil {
		return it, err
	}
	inst, err := identifyAt(&Candidate{Staged: staged, Name: f.Rel,
		MtimeNs: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode().Perm())}, r)
	if cerr := done(); cerr != nil && err == nil {
		return it, cerr
	}
	if ok, err := it.identified(inst, err); !ok || err != nil {
		im.discard(it) // the source keeps the bytes
		return it, err
	}
	if err := im.blobName(it); err != nil {
		im.discard(it)
		return it, err
	}
	it.mark(im.s, it.staged)
	placed, err := blobs.RenameNoReplace(it.staged, it.blobPath)
	if err != nil {
		im.discard(it)
		return it, err
	}
	// Not placed: the name is taken; the transaction decides whether by the
	// same instance or by bytes to replace.
	it.placed = placed
	return it, nil
}

// prepareSigning is prepare for a gpkg when the store signs or checks
// signatures. A signed one is checked against the trust keyring, then
// imported as it is (done false: the caller goes on). An unsigned one is
// hashed and identified from the source, signed into staging (or found
// held already, its blob linked there), and put at its blob name: never
// linked, since its bytes are not the source's.
func (im *importer) prepareSigning(w *importWorker, it *importItem, in *os.File, fi os.FileInfo) (done bool, err error) {
	signed, err := sign.Signed(in, fi.Size())
	if err != nil {
		return false, nil // not a gpkg as signing reads it: identify says why
	}
	if signed {
		if im.s.Signing.Trust == nil {
			return false, nil
		}
		err := im.s.checkSignatures(im.ctx, it.file.Rel, in, fi.Size())
		if ok, err := it.identified(nil, err); !ok || err != nil {
			return true, err
		}
		it.inst = nil
		return false, nil
	}
	if im.s.Signing.Signer == nil {
		return false, nil
	}
	st, small, err := w.hash(in, nil)
	if err != nil {
		return true, err
	}
	var r io.ReaderAt = in
	if small != nil {
		r = bytes.NewReader(small)
	}
	c := &Candidate{Staged: st, Name: it.file.Rel, MtimeNs: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode().Perm())}
	inst, err := identifyAt(c, r)
	if ok, err := it.identified(inst, err); !ok || err != nil {
		return true, err
	}
	nc, ninst, err := im.s.signedCandidate(im.ctx, c, inst, r)
	if err != nil {
		return true, err
	}
	it.inst, it.staged, it.content, it.how = ninst, nc.File, nc.content, byCopy
	if nc.Known {
		it.how = byLink
	}
	if err := im.blobName(it); err != nil {
		im.discard(it)
		return true, err
	}
	it.mark(im.s, it.staged)
	placed, err := blobs.RenameNoReplace(it.staged, it.blobPath)
	if err != nil {
		im.discard(it)
		return true, err
	}
	it.placed = placed
	return true, nil
}

// copySmall is prepare for a copy of a file that fits the buffer: read,
// hashed and parsed from memory, then written straight to its blob name
// (no staging file, no rename). A crash can leave those bytes incomplete
// under that name, but no row names them until the batch's syncfs, and a
// blob name held by bytes no row names is replaced by the transaction.
// When the name is taken, the bytes go to staging for the transaction to
// decide, as in prepare.
func (im *importer) copySmall(w *importWorker, it *importItem, in *os.File, fi os.FileInfo) error {
	small, ok, err := im.hashIdentify(w, it, in, fi, true)
	if !ok || err != nil {
		return err
	}
	f, err := os.OpenFile(it.blobPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	placed := err == nil
	if placed {
		it.mark(im.s, it.blobPath)
	}
	if errors.Is(err, fs.ErrExist) {
		f, err = im.createStaging()
		if err == nil {
			it.staged = f.Name()
		}
	}
	if err != nil {
		return err
	}
	_, err = f.Write(small)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if placed {
			os.Remove(it.blobPath) // ours, and no row names it yet
		}
		return err
	}
	it.placed = placed
	return nil
}

// hashIdentify hashes in from its start and identifies it (from memory
// when it fit the buffer), then names its blob. ok is false when it is not
// an acceptable package (it.invalid says why); small is the whole content
// when it fit the buffer, which wantSmall requires.
func (im *importer) hashIdentify(w *importWorker, it *importItem, in *os.File, fi os.FileInfo, wantSmall bool) (small []byte, ok bool, err error) {
	st, small, err := w.hash(in, nil)
	if err != nil {
		return nil, false, err
	}
	if wantSmall && small == nil { // it grew while we looked
		return nil, false, fmt.Errorf("changed while being read (%d bytes, then more than %d)", fi.Size(), len(w.buf))
	}
	var r io.ReaderAt = in
	if small != nil {
		r = bytes.NewReader(small)
	}
	inst, err := identifyAt(&Candidate{Staged: st, Name: it.file.Rel,
		MtimeNs: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode().Perm())}, r)
	if ok, err := it.identified(inst, err); !ok || err != nil {
		return nil, false, err
	}
	return small, true, im.blobName(it)
}

// linkPackage is prepare for --link when the file may be hard-linked: hash
// and parse it through in, then link that inode into blobs/ under its
// digest. done is false, with it.linkErr set, when it could not be linked:
// the caller clones or copies it instead.
func (im *importer) linkPackage(w *importWorker, it *importItem, in *os.File, fi os.FileInfo) (done bool, err error) {
	if _, ok, err := im.hashIdentify(w, it, in, fi, false); !ok || err != nil {
		return true, err
	}
	// Straight into blobs/: the link fails if the name is taken, as a
	// RENAME_NOREPLACE would, and a crash leaves an orphan blob at worst.
	it.mark(im.s, it.file.Path)
	it.linkErr = linkAt(in, fi, it.file.Path, it.blobPath)
	switch {
	case it.linkErr == nil:
		it.how, it.placed = byLink, true
		return true, nil
	case errors.Is(it.linkErr, fs.ErrExist):
		// Taken: a link in staging/ for the transaction, which replaces
		// the blob with it unless the same instance is there already.
		name, err := im.linkIn(in, fi, it.file.Path)
		if err == nil {
			it.how, it.staged = byLink, name
			return true, nil
		}
		it.linkErr = err
	}
	it.inst = nil
	return false, nil
}

// identified records identify's answer: a refusal makes the item invalid
// (ok false), any other error is ours.
func (it *importItem) identified(inst *Instance, err error) (ok bool, _ error) {
	var rerr *RefusedError
	switch {
	case errors.As(err, &rerr):
		it.invalid = rerr.Reason
		return false, nil
	case err != nil:
		return false, err
	}
	it.inst = inst
	return true, nil
}

// blobName names the item's blob by its SHA-256 and makes its directory.
func (im *importer) blobName(it *importItem) error {
	sum := it.inst.SHA256
	it.inst.Blob = blobs.Name(sum)
	it.blobPath = im.s.blobs.Path(it.inst.Blob)
	return im.ensureDir(sum[:2])
}

func (im *importer) ensureDir(sub string) error {
	if _, ok := im.dirs.Load(sub); ok {
		return nil
	}
	if err := im.s.blobs.MakeDir(sub); err != nil {
		return err
	}
	im.dirs.Store(sub, true)
	return nil
}

// stage puts a clone (--link) or a copy of the bytes of in into staging/
// and hashes them. It returns what identify reads (the bytes in memory when
// they fit the buffer, else a file holding them) and a function that closes
// the staging file once that is done. linkErr is why --link did not link.
func (im *importer) stage(w *importWorker, it *importItem, in *os.File, dev uint64, linkErr error) (*Staged, io.ReaderAt, func() error, error) {
	var caps devCaps
	if im.opt.Link {
		caps = im.caps(dev)
	}
	f, err := im.createStaging()
	if err != nil {
		return nil, nil, nil, err
	}
	it.staged = f.Name()
	out := f
	if im.opt.Link && !caps.noClone {
		var err error
		cerr := withFd(f, func(dst int) {
			cerr := withFd(in, func(src int) { err = unix.IoctlFileClone(dst, src) })
			err = cmp.Or(cerr, err)
		})
		switch err = cmp.Or(cerr, err); {
		case err == nil:
			it.how, out = byClone, nil
		case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) ||
			errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS):
			im.setCaps(dev, func(c *devCaps) { c.noClone = true })
			im.cannotLink(dev, it.file, linkErr, err)
		default:
			f.Close()
			return nil, nil, nil, fmt.Errorf("FICLONE into staging: %w", err)
		}
	} else if im.opt.Link {
		im.cannotLink(dev, it.file, linkErr, nil)
	}
	var dst io.Writer // nil unless copying (a nil *os.File would not be)
	if out != nil {
		dst = out
	}
	st, small, err := w.hash(in, dst)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	st.File = it.staged
	var r io.ReaderAt = in // a link or clone shares the source's bytes
	switch {
	case small != nil:
		r = bytes.NewReader(small)
	case out != nil:
		r = out
	}
	return st, r, f.Close, nil
}

// hash reads r from its start to its end, writing the bytes to out unless
// nil, and returns their size and digests; small is the whole content when
// it fit in one buffer (valid until the next call).
func (w *importWorker) hash(r io.Reader, out io.Writer) (st *Staged, small []byte, err error) {
	w.dg.Reset()
	chunks := 0
	for {
		k, rerr := io.ReadFull(r, w.buf)
		if k > 0 {
			b := w.buf[:k]
			w.dg.Write(b)
			if out != nil {
				if _, err := out.Write(b); err != nil {
					return nil, nil, err
				}
			}
			chunks++
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, nil, rerr
		}
	}
	if chunks <= 1 {
		small = w.buf[:w.dg.Size()]
	}
	return w.dg.Staged(""), small, nil
}

// stagingName is a fresh name for an import's staging file: the in- prefix
// tells OpenStore that the source still has the bytes.
func stagingName(dir string) string {
	return filepath.Join(dir, "in-"+strconv.FormatUint(rand.Uint64(), 36))
}

// createStaging creates a staging file for a copy or clone, read-only from
// the start (committed bytes never change; the open fd still writes).
func (im *importer) createStaging() (*os.File, error) {
	for {
		f, err := os.OpenFile(stagingName(im.s.StagingDir()), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// linkIn hard-links the file open as in (found at src) into staging/.
func (im *importer) linkIn(in *os.File, fi os.FileInfo, src string) (string, error) {
	for {
		name := stagingName(im.s.StagingDir())
		err := linkAt(in, fi, src, name)
		if !errors.Is(err, fs.ErrExist) {
			return name, err
		}
	}
}

// noEmptyPath: linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; without it,
// links are made by name.
var noEmptyPath atomic.Bool

// errReplaced: the source name no longer names the file that was hashed.
var errReplaced = errors.New("the file was replaced while being imported")

// linkAt makes dst a hard link to the file open as in (found at src, with
// info fi): through the descriptor where allowed, so that it is the inode
// that was hashed, else by name, checked to be that inode. A linked blob
// keeps the source's mode: a chmod would change the user's file too. Tests
// replace linkAt to make linking fail.
var linkAt = func(in *os.File, fi os.FileInfo, src, dst string) error {
	if !noEmptyPath.Load() {
		var err error
		cerr := withFd(in, func(fd int) { err = unix.Linkat(fd, "", unix.AT_FDCWD, dst, unix.AT_EMPTY_PATH) })
		switch {
		case cerr != nil:
			return cerr
		case err == nil:
			return nil
		case !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EPERM):
			return &os.LinkError{Op: "link", Old: src, New: dst, Err: err}
		}
		noEmptyPath.Store(true)
	}
	if err := os.Link(src, dst); err != nil {
		return err
	}
	if st, err := os.Lstat(dst); err == nil && os.SameFile(st, fi) {
		return nil
	}
	os.Remove(dst) // just made by this link: no one else's
	return &os.LinkError{Op: "link", Old: src, New: dst, Err: errReplaced}
}

// withFd runs fn with the descriptor of f, without the blocking mode that
// f.Fd() would set.
func withFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

// unwrapLinkErr returns the reason of a failed link, without the paths.
func unwrapLinkErr(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func (im *importer) caps(dev uint64) devCaps {
	im.mu.Lock()
	defer im.mu.Unlock()
	if c := im.devs[dev]; c != nil {
		return *c
	}
	return devCaps{}
}

func (im *importer) setCaps(dev uint64, fn func(*devCaps)) {
	im.mu.Lock()
	defer im.mu.Unlock()
	c := im.devs[dev]
	if c == nil {
		c = &devCaps{}
		im.devs[dev] = c
	}
	fn(c)
}

// cannotLink tells the user, once per source filesystem, that --link is
// copying bytes and why.
func (im *importer) cannotLink(dev uint64, f ImportFile, linkErr, cloneErr error) {
	root := f.Root
	if root == "" {
		root = filepath.Dir(f.Path)
	}
	var msg string
	switch {
	case dev != im.stateDev && cloneErr != nil:
		msg = fmt.Sprintf("import --link: STATE (%s) and SRC (%s) are on different filesystems and FICLONE is not supported (%v); copying bytes instead",
			im.s.Dir, root, cloneErr)
	case cloneErr != nil:
		why := ""
		if linkErr != nil {
			why = fmt.Sprintf(" (%v)", unwrapLinkErr(linkErr))
		}
		msg = fmt.Sprintf("import --link: cannot hard-link files of %s into STATE (%s)%s and FICLONE is not supported (%v); copying bytes instead",
			root, im.s.Dir, why, cloneErr)
	case linkErr != nil:
		// Cloning is known not to work there, and linking this file failed.
		msg = fmt.Sprintf("import --link: cannot hard-link %s into STATE (%s): %v; copying bytes instead", f.Path, im.s.Dir, unwrapLinkErr(linkErr))
	default:
		return // said when cloning was found not to work
	}
	im.mu.Lock()
	seen := im.noticed[dev]
	im.noticed[dev] = true
	im.mu.Unlock()
	if !seen && im.opt.Notice != nil {
		im.opt.Notice(msg)
	}
}
