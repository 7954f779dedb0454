package catalog

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"pkgdirfs/blobs"
	"pkgdirfs/layout"
	"pkgdirfs/xpak"
)

// Store is a state directory: the catalog and the bytes it describes.
//
//	the catalog  the truth (its backend's files, catalog/sqlite)
//	blobs/       one immutable file per instance, named by its SHA-256
//	staging/     bytes on their way in; same filesystem as blobs/ so commit is a rename
//	scratch/     files clients create that are not packages, at their paths
//	recovered/   interrupted writes whose path is unknown, kept for the user
type Store struct {
	Dir string   // the host's state directory
	Loc Location // where its catalog and blobs are
	DB  *DB
	log *slog.Logger
	// StampBuildID writes the assigned BUILD_ID into the XPAK block of a new
	// xpak package that has none, as Portage does for its own builds. Never
	// for gpkg (it would break the Manifest and signatures).
	StampBuildID bool
	// Signing signs unsigned gpkgs on arrival and checks signed ones
	// (signing.go); the zero value keeps packages as they come.
	Signing Signing

	blobs   blobs.Dir      // the package bytes
	staging *blobs.Staging // this process's staging (its own directory)
	session *session       // in a shared catalog (sessions.go), else nil
}

// OpenStore opens (creating if needed) a state directory. Staging files left
// by a dead writer never reached the catalog: they are kept in the mount's
// quarantine (RecoveredDir) at the path they were written to (logged).
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	return openStore(Location{State: dir}, log, nil)
}

// OpenStoreAt is OpenStore of a state whose catalog or blobs are elsewhere.
func OpenStoreAt(loc Location, log *slog.Logger) (*Store, error) { return openStore(loc, log, nil) }

// OpenStoreLocked opens a state whose lock the caller holds (the mount
// daemon): files an older pkgdirfs staged directly in staging/ are a dead
// owner's too, and recovered.
func OpenStoreLocked(loc Location, log *slog.Logger, lk *StateLock) (*Store, error) {
	return openStore(loc, log, lk)
}

// OpenStoreReadOnly opens a state to read it: nothing in it is created,
// recovered or changed, so a user who may only read the state can query,
// verify and render it; every write fails with ErrReadOnly.
func OpenStoreReadOnly(loc Location, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	db, err := OpenReadOnly(loc)
	if err != nil {
		return nil, err
	}
	return &Store{Dir: loc.State, Loc: loc, DB: db, log: log, blobs: blobs.Dir{Root: loc.BlobDir()},
		staging: blobs.NewStaging(loc.StagingDir(), log)}, nil
}

func openStore(loc Location, log *slog.Logger, lk *StateLock) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	dir := loc.State
	for _, d := range []string{dir, loc.BlobDir(), loc.StagingDir(), filepath.Join(dir, "scratch")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	db, err := Open(loc)
	if err != nil {
		return nil, err
	}
	s := &Store{Dir: dir, Loc: loc, DB: db, log: log, blobs: blobs.Dir{Root: loc.BlobDir()},
		staging: blobs.NewStaging(loc.StagingDir(), log)}
	// Caches of the catalog (the rendered index) name it by this identity.
	// Without one they are not used, which costs time, never correctness.
	if _, err := db.EnsureID(context.Background()); err != nil {
		log.Warn("giving the catalog its identity; index caches stay unused", "err", err)
	}
	if loc.Shared() {
		// Other hosts' writers are alive while their sessions are: dead
		// ones are collected by session expiry, not by file locks (which a
		// shared filesystem may not keep).
		if err := s.startSession(context.Background()); err != nil {
			db.Close()
			return nil, fmt.Errorf("starting this host's session in the catalog: %w", err)
		}
		if s.session != nil {
			return s, nil
		}
	}
	// Dead writers' staging directories are recovered by whoever opens the
	// state; files staged directly in staging/ (an older pkgdirfs) only by
	// the holder of the state's lock, when no other writer can be live.
	if err := s.staging.RecoverDead(lk != nil, s.recoverStaged); err != nil {
		if lk != nil {
			db.Close()
			return nil, err
		}
		// Left for the next opener; nothing is lost.
		log.Warn("recovering staging files of a dead writer", "err", err)
	}
	return s, nil
}

func (s *Store) Close() error {
	if s.session != nil {
		s.session.end()
	}
	s.staging.Close()
	return s.DB.Close()
}

// BlobDir is the directory Instance.Blob names are relative to.
func (s *Store) BlobDir() string { return s.blobs.Root }

// StagingDir holds bytes on their way in (same filesystem as blobs/).

// ScratchDir mirrors the mount for files that are not packages (lock files,
// temp files, .partial downloads, refused packages), which clients create
// next to packages.
func (s *Store) ScratchDir() string { return filepath.Join(s.Dir, "scratch") }

// RecoveredDir is where, in the mount (below the scratch tree), the bytes
// of package writes a crash interrupted are kept.
const RecoveredDir = ".pkgdirfs/recovered"

// RefusedDir is where, in the mount, bytes refused at a package name are kept.
const RefusedDir = ".pkgdirfs/refused"

// NameXattr records, on a staging file, the path its writer gave it, so that
// bytes interrupted by a crash come back at that path.
const NameXattr = "user.pkgdirfs.name"

// Staged is a file in staging/ with the digests of its bytes.
type Staged struct {
	File              string
	Size              int64
	MD5, SHA1, SHA256 string
	// Members are a gpkg's member digests taken while the bytes streamed
	// in (xpak.GpkgHasher), so the Manifest check need not read the image
	// again; nil: it reads what it must.
	Members *xpak.MemberDigests
}

// Digester takes what a Staged carries from bytes written to it in file
// order: the size, MD5, SHA1 and SHA-256 of the whole, and a gpkg's member
// digests. Every path bytes come in by (a write through the mount, a
// re-read, an import, Stage) uses one.
type Digester struct {
	n                 int64
	md5, sha1, sha256 hash.Hash
	gpkg              *xpak.GpkgHasher
}

func NewDigester() *Digester {
	return &Digester{md5: md5.New(), sha1: sha1.New(), sha256: sha256.New(), gpkg: xpak.NewGpkgHasher()}
}

func (d *Digester) Write(p []byte) (int, error) {
	d.md5.Write(p)
	d.sha1.Write(p)
	d.sha256.Write(p)
	d.gpkg.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

// Size is how many bytes were written.
func (d *Digester) Size() int64 { return d.n }

// Reset makes d new, for the next file.
func (d *Digester) Reset() {
	d.n = 0
	d.md5.Reset()
	d.sha1.Reset()
	d.sha256.Reset()
	d.gpkg.Reset()
}

// Staged is what was written, as the file at file.
func (d *Digester) Staged(file string) *Staged {
	return &Staged{File: file, Size: d.n, MD5: hex.EncodeToString(d.md5.Sum(nil)),
		SHA1: hex.EncodeToString(d.sha1.Sum(nil)), SHA256: hex.EncodeToString(d.sha256.Sum(nil)), Members: d.gpkg.Digests()}
}

// Stage copies r into staging/, hashing while it copies, and syncs it.
func (s *Store) Stage(r io.Reader) (*Staged, error) {
	f, err := os.CreateTemp(s.StagingDir(), "in-")
	if err != nil {
		return nil, err
	}
	d := NewDigester()
	_, err = io.Copy(io.MultiWriter(f, d), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	return d.Staged(f.Name()), nil
}

// RefusedError is bytes that are not an acceptable package under the name they
// arrived with. Reason is meant for the user.
type RefusedError struct {
	Path   string
	Reason string
}

func (e *RefusedError) Error() string { return e.Path + ": " + e.Reason }

func refuse(path, format string, a ...any) error {
	return &RefusedError{Path: path, Reason: fmt.Sprintf(format, a...)}
}

// Candidate is staged bytes plus what the client said about them.
type Candidate struct {
	*Staged
	Name    string // path relative to the PKGDIR root it arrived under
	MtimeNs int64
	Mode    uint32
	// Replaces is the instance whose file these bytes were written over (a
	// rename onto its name, or an in-place rewrite); 0 for none. They take
	// its place only if they are the same build (sameBuild: Portage's own
	// metadata updates keep CPV, BUILD_TIME and BUILD_ID); another build is added
	// next to it under the next build id, so no write drops a build.
	Replaces int64
	// Known: bytes the catalog held before (a removed build's blob coming
	// back): their signatures were judged when they first came, and they
	// come back as they were, never signed anew.
	Known   bool
	stamped bool   // the file's XPAK block was rewritten with BUILD_ID
	content string // signed on arrival: the build's sign.ContentKey
}

// Ingest turns a candidate into an instance in one catalog transaction, or
// refuses it. existed is true when the same bytes of the same CPV were already
// there (then nothing changes but that). Either way a refusal recorded at the
// name is forgotten. The staged file is consumed either way, except when
// refused: the caller keeps the bytes.
func (s *Store) Ingest(ctx context.Context, c *Candidate) (inst *Instance, existed bool, err error) {
	inst, err = s.identify(c)
	if err != nil {
		return nil, false, err
	}
	nc, ninst, err := s.arrival(ctx, c, inst)
	if err != nil {
		return nil, false, err
	}
	if nc == c {
		return s.commit(ctx, c, inst)
	}
	// The bytes committed are not the writer's (they were signed, or are
	// the same build held already): the writer's go once those are in; a
	// crash before leaves them to the quarantine, never at a name.
	inst, existed, err = s.commit(ctx, nc, ninst)
	os.Remove(nc.File) // what a commit did not take (or a link renamed onto its own blob left)
	if err != nil {
		return nil, false, err
	}
	os.Remove(c.File)
	return inst, existed, nil
}

// commit is Ingest's transaction for identified bytes.
func (s *Store) commit(ctx context.Context, c *Candidate, inst *Instance) (_ *Instance, existed bool, err error) {
	inst.Blob = blobs.Name(c.SHA256)
	// Whether the bytes are an update of the build they were written over
	// is decided before the transaction: it reads both payloads.
	var updates int64
	if c.Replaces > 0 {
		if prev, err := s.DB.InstanceByID(ctx, c.Replaces); err == nil && sameBuild(prev, inst) &&
			samePayload(s.blobs.Path(prev.Blob), c.File) {
			updates = prev.ID
		}
	}
	var pending *blobs.Pending
	var dropped string // blob of a replaced instance
	unmark := func() {}
	defer func() { unmark() }()
	err = s.DB.Tx(ctx, func(tx *Tx) error {
		dropped = ""
		// A package at the name ends what a refusal there recorded, in
		// this transaction (not one more of its own).
		if err := tx.ClearRefused(c.Name); err != nil {
			return err
		}
		old, err := tx.FindByDigest(inst.CPV, c.SHA256)
		if err == nil {
			inst, existed = old, true
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		if c.content != "" {
			// Signed here: another writer may have brought the same build
			// in meanwhile, signed into other bytes.
			if old, err := tx.heldIn(s, inst.CPV, c.content); err != nil || old != nil {
				if old != nil {
					inst, existed = old, true
				}
				return err
			}
		}
		if updates > 0 {
			prev, err := tx.InstanceByID(updates)
			if err == nil {
				dropped = prev.Blob
				if err := tx.DeleteInstance(prev.ID); err != nil {
					return err
				}
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if inst.BuildID, err = tx.buildIDFor(inst, c.SHA256); err != nil {
			return err
		}
		if s.StampBuildID && inst.Format == string(xpak.FormatXpak) && c.unstamped(inst) {
			if err := stampBuildID(c, inst); err != nil {
				return err
			}
			inst.Blob = blobs.Name(c.SHA256)
		}
		if pending == nil {
			// The blob is in place before the row that names it: a crash in
			// between leaves an orphan blob that verify reports (and, in a
			// shared catalog, the collector of this dead session removes),
			// never a row without bytes. Its syncs run while the statements
			// below do; the commit waits for them (every attempt: a retry
			// of fn does not move the bytes again).
			unmark = s.markPlacing(c.File, inst.Blob)
			pending = s.blobs.Commit(c.File, inst.Blob)
		}
		tx.beforeCommit = append(tx.beforeCommit, pending.Wait)
		if _, err := tx.InsertInstance(inst); err != nil {
			return err
		}
		// The same build back (its bytes committed again) ends its removal
		// grace: the tree shows it again instead.
		if err := tx.dropTombstonesOf(inst.CPV, c.SHA256); err != nil {
			return err
		}
		if err := tx.headerCHOST(inst.Meta["CHOST"]); err != nil {
			return err
		}
		return commitChange(tx)
	})
	if err != nil {
		if pending != nil {
			pending.Wait() // its error, if any, is err's cause or beside the point now
			if blobPath := s.blobs.Path(inst.Blob); pending.Renamed {
				// Put the bytes back where the client left them: a link,
				// since the blob's name may be another's too (a removed
				// build of the same bytes in its grace). The blob goes
				// only when nothing is known to name it; kept otherwise,
				// it is an orphan at worst, which verify reports.
				if rerr := os.Link(blobPath, c.File); rerr != nil {
					s.log.Error("restoring bytes after a failed commit", "from", blobPath, "to", c.File, "err", rerr)
				} else if used, uerr := s.DB.BlobInUse(ctx, inst.Blob); uerr == nil && !used {
					os.Remove(blobPath)
				}
			}
		}
		return nil, false, err
	}
	if existed {
		os.Remove(c.File)
	}
	if dropped != "" && dropped != inst.Blob {
		s.DropBlob(ctx, dropped)
	}
	return inst, existed, nil
}

// sameBuild tells an update of a build's metadata (Portage's aux_update and
// gpkg update_metadata keep CPV, BUILD_TIME and the BUILD_ID they carry, and
// the payload: samePayload) from another build of the same CPV.
func sameBuild(prev, next *Instance) bool {
	return prev.CPV == next.CPV && prev.BuildTime == next.BuildTime && prev.Format == next.Format &&
		strings.TrimSpace(prev.Meta["BUILD_ID"]) == strings.TrimSpace(next.Meta["BUILD_ID"])
}

// samePayload tells whether two package files carry byte-identical payloads
// (xpak tarball, gpkg image member); false when either cannot be read.
func samePayload(a, b string) bool {
	fa, pa, err := payload(a)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, pb, err := payload(b)
	if err != nil {
		return false
	}
	defer fb.Close()
	if pa.Size() != pb.Size() {
		return false
	}
	ba, bb := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		n, errA := io.ReadFull(pa, ba)
		m, errB := io.ReadFull(pb, bb)
		if n != m || !bytes.Equal(ba[:n], bb[:m]) {
			return false
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == errA
		}
		if errA != nil || errB != nil {
			return false
		}
	}
}

// payload opens a package file and returns its payload's section.
func payload(path string) (*os.File, *io.SectionReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	off, n, err := xpak.PayloadRange(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, io.NewSectionReader(f, off, n), nil
}

// unstamped tells whether the received bytes carried no BUILD_ID (a retried
// transaction sees the id it stamped before, which it may restamp).
func (c *Candidate) unstamped(inst *Instance) bool {
	if c.stamped {
		return true
	}
	return strings.TrimSpace(inst.Meta["BUILD_ID"]) == ""
}

// stampBuildID rewrites the XPAK block of the candidate's file with BUILD_ID
// set (truncate after the tarball, append the new block and trailer, as
// Portage's recompose does) and takes the new digests.
func stampBuildID(c *Candidate, inst *Instance) error {
	f, err := os.OpenFile(c.File, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	entries, tarLen, err := xpak.ReadXpak(f, c.Size)
	if err != nil {
		return err
	}
	id := []byte(strconv.FormatInt(inst.BuildID, 10))
	found := false
	for i := range entries {
		if entries[i].Key == "BUILD_ID" {
			entries[i].Value, found = id, true
		}
	}
	if !found {
		entries = append(entries, xpak.Entry{Key: "BUILD_ID", Value: id})
	}
	block, err := xpak.EncodeBlock(entries)
	if err != nil {
		return err
	}
	if err := f.Truncate(tarLen); err != nil {
		return err
	}
	if _, err := f.WriteAt(xpak.AppendTrailer(block), tarLen); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	d := NewDigester()
	if _, err := io.Copy(d, f); err != nil {
		return err
	}
	*c.Staged = *d.Staged(c.File) // the rewritten bytes'
	c.Members = nil               // an xpak has none
	c.stamped = true
	inst.Size, inst.MD5, inst.SHA1, inst.SHA256 = c.Size, c.MD5, c.SHA1, c.SHA256
	inst.Meta["BUILD_ID"] = string(id)
	return nil
}

// buildIDFor is the build id a new instance with these bytes gets: the one
// in its name (inst.BuildID), else the one the same bytes had before a
// removal, under chooseBuildID's rules.
func (tx *Tx) buildIDFor(inst *Instance, sha256 string) (int64, error) {
	fromName := inst.BuildID
	if fromName == 0 {
		var err error
		if fromName, err = tx.SpentIDOf(inst.CPV, sha256); err != nil {
			return 0, err
		}
	}
	return chooseBuildID(tx, inst.CPV, sha256, fromName, inst.Meta["BUILD_ID"])
}

// chooseBuildID applies the identity rules: the id in the name (reserved by the
// writer, possibly with a placeholder, which the package now replaces), else
// the metadata BUILD_ID, each only while free; else the next one.
//
// An id that named other bytes before (removed or moved since) is never
// free: a multi-instance PATH, once served, always names the same bytes.
func chooseBuildID(tx *Tx, cpv, sha256 string, fromName int64, fromMeta string) (int64, error) {
	if fromName > 0 {
		// Only a taken id can be a placeholder's: a free one (the common
		// case of an import) needs no look at the CPV's instances.
		taken, err := tx.BuildIDTaken(cpv, fromName)
		if err != nil {
			return 0, err
		}
		if !taken {
			spent, err := tx.IDSpent(cpv, fromName, sha256)
			if err != nil || !spent {
				return fromName, err
			}
		}
		insts, err := tx.InstancesByCPV(cpv)
		if err != nil {
			return 0, err
		}
		for i := range insts {
			if insts[i].BuildID == fromName && insts[i].Placeholder {
				if err := tx.DeleteInstance(insts[i].ID); err != nil {
					return 0, err
				}
				return fromName, nil
			}
		}
	}
	cands := []int64{fromName}
	if id, err := strconv.ParseInt(fromMeta, 10, 64); err == nil {
		cands = append(cands, id)
	}
	for _, id := range cands {
		if id <= 0 {
			continue
		}
		taken, err := tx.BuildIDTaken(cpv, id)
		if err != nil {
			return 0, err
		}
		if taken {
			continue
		}
		spent, err := tx.IDSpent(cpv, id, sha256)
		if err != nil {
			return 0, err
		}
		if !spent {
			return id, nil
		}
	}
	return tx.NextBuildID(cpv)
}

// identify parses the staged bytes and checks them against the name they came
// under, the way Portage validates a package in a PKGDIR.
func (s *Store) identify(c *Candidate) (*Instance, error) {
	if err := checkPackageName(c.Name); err != nil {
		return nil, err
	}
	f, err := os.Open(c.File)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return identifyAt(c, f)
}

func checkPackageName(name string) error {
	if layout.ParsePath(name).Kind == layout.KindOther {
		if why := layout.SkippedName(name); why != "" {
			return refuse(name, "not a package file name Portage indexes: %s", why)
		}
		return refuse(name, "not a package file name (want CATEGORY/PN/PF-BUILD_ID.xpak|.gpkg.tar, CATEGORY/PF.tbz2|.gpkg.tar or All/PF.tbz2)")
	}
	return nil
}

// identifyAt is identify reading the candidate's bytes from r (an import
// reads them from the file or buffer it just hashed, not from c.File again).
func identifyAt(c *Candidate, r io.ReaderAt) (*Instance, error) {
	p := layout.ParsePath(c.Name)
	if p.Kind == layout.KindOther {
		return nil, checkPackageName(c.Name)
	}
	// The image too is checked against the Manifest: a gpkg whose image
	// does not match fails on every client that installs it. Members hashed
	// as the bytes came in are not read again.
	info, err := xpak.Inspect(r, c.Size, xpak.InspectOptions{VerifyImage: true, Digests: c.Members})
	if err != nil {
		var fe *xpak.FormatError
		if errors.As(err, &fe) {
			return nil, refuse(c.Name, "%s", fe.Reason)
		}
		return nil, err
	}
	if string(info.Format) != string(p.Format) {
		return nil, refuse(c.Name, "the name says %s but the content is %s", p.Format, info.Format)
	}
	meta := make(map[string]string, len(info.Metadata))
	for k, v := range info.Metadata {
		if utf8Text(k) {
			meta[k] = strings.ToValidUTF8(string(v), "\uFFFD")
		}
	}
	cat, pf, slot := field(meta, "CATEGORY"), field(meta, "PF"), field(meta, "SLOT")
	var missing []string
	for k, v := range map[string]string{"CATEGORY": cat, "PF": pf, "SLOT": slot} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, refuse(c.Name, "missing metadata key(s) %s", strings.Join(sorted(missing), ", "))
	}
	if !layout.ValidCategory(cat) {
		return nil, refuse(c.Name, "unrecognized category %q", cat)
	}
	pn, _, _, ok := layout.PkgSplit(pf)
	if !ok {
		return nil, refuse(c.Name, "PF %q is not a valid package name and version", pf)
	}
	if err := layout.CheckIdentity(p, cat, pf); err != nil {
		return nil, refuse(c.Name, "%v", err)
	}
	var metaID string
	if v, ok := meta["BUILD_ID"]; ok {
		metaID = strings.TrimSpace(v)
		if metaID != "" && !validBuildID(metaID) {
			return nil, refuse(c.Name, "invalid BUILD_ID %q in metadata (not a positive decimal without leading zeros that fits 64 bits)", metaID)
		}
	}
	entry, err := layout.IndexEntry(meta)
	if err != nil {
		return nil, refuse(c.Name, "invalid metadata: %v", err)
	}
	var buildTime int64
	if bt := field(meta, "BUILD_TIME"); bt != "" {
		if buildTime, err = strconv.ParseInt(bt, 10, 64); err != nil {
			buildTime = -1 // as Portage reads a non-integer number
		}
	}
	mode := c.Mode & 0o7777
	if mode == 0 {
		mode = 0o644
	}
	var nameID int64
	if p.Kind == layout.KindMulti {
		nameID = p.BuildID
	}
	return &Instance{
		Category: cat, PN: pn, PF: pf, CPV: cat + "/" + pf,
		BuildID: nameID, BuildTime: buildTime,
		Format: string(info.Format), Compression: string(info.Compression),
		Size: c.Size, MtimeNs: c.MtimeNs, Mode: mode,
		MD5: c.MD5, SHA1: c.SHA1, SHA256: c.SHA256,
		Signed: info.Signed, CreatedNs: time.Now().UnixNano(),
		Meta: entry,
	}, nil
}

func field(meta map[string]string, k string) string {
	return strings.Join(strings.Fields(meta[k]), " ")
}

// utf8Text keeps metadata keys that are names, not binary members such as
// environment.bz2.
func utf8Text(k string) bool { return !strings.HasSuffix(k, ".bz2") }

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// validBuildID tells a build id as Portage writes one: a positive decimal,
// no sign, no leading zero, within 64 bits.
func validBuildID(s string) bool {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
