// Package ingest is the commit state machine of the mount, without FUSE:
// bytes a client wrote at a package name become an instance in one catalog
// transaction, or a reservation (Portage's empty placeholder), or are kept
// in the quarantine with the reason; a removed build comes back only on
// proof that it is the same build. The fs package feeds it what the kernel
// sends and makes its outcome visible.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// The quarantine: bytes that never became a package are kept below the
// hidden .pkgdirfs directory, at the path they were written to, never at a
// package name (Portage's walk, tar and nginx would meet them there). The
// user reads them and empties it with rm.
const (
	RefusedDir   = catalog.RefusedDir   // bytes refused at a package name
	RecoveredDir = catalog.RecoveredDir // package writes that never committed
)

// Committer commits the packages written through one mount.
type Committer struct {
	Store *catalog.Store
	// Scratch is where a mount path lives in the scratch tree (files that
	// are not packages, the quarantine).
	Scratch func(rel string) string
	Log     *slog.Logger
}

// File is bytes written at a package name, ready to commit.
type File struct {
	Name     string // the mount path they were written at
	Path     string // where they are (staging; consumed by a commit)
	Size     int64
	Mode     uint32
	MtimeNs  int64
	Replaces int64    // the instance whose name was opened for an in-place rewrite; 0 for none
	Hash     *SeqHash // digests taken while written; nil: read again
	// Client tells who wrote them (ClientOf); asked only when a build
	// was removed at the name (reading /proc costs a few system calls).
	Client func() string
	// Renamed: the bytes were renamed onto the name. An empty file is
	// then no reservation, and refused bytes are kept by a copy (the
	// kernel still holds the source name, which must not alias them).
	Renamed bool
	// Reserved: the name's build id was reserved in the catalog when the
	// file was created (Committer.Reserve): an empty file needs no other.
	Reserved *catalog.Instance
}

// Outcome is what a commit did.
type Outcome struct {
	Inst     *catalog.Instance // the instance (or reservation) the bytes are
	Existed  bool              // the same bytes were there already
	Reserved bool              // an empty file at a multi-instance name: a reservation
	Plain    bool              // an empty file at another package name, kept as a plain file at it
	Kept     string            // refused bytes: their mount path in the quarantine
	Restored *catalog.Instance // a build the writer removed at the name, back
}

// Reserve reserves the build id of the multi-instance name at create, in
// the catalog: with a catalog several hosts share, Portage's O_EXCL
// allocation must be decided there, not by one host's view of the names.
// ErrBuildIDTaken if another host (or an earlier build) holds it.
func (c *Committer) Reserve(ctx context.Context, name string, mode uint32, mtimeNs int64) (*catalog.Instance, error) {
	p := layout.ParsePath(name)
	if p.Kind != layout.KindMulti {
		return nil, fmt.Errorf("reserve %s: not a multi-instance name", name)
	}
	return c.Store.Reserve(ctx, p.Category, p.PN, p.PF, string(p.Format), p.BuildID, mode, mtimeNs)
}

// Commit commits f. A refusal returns a *catalog.RefusedError, with the
// bytes kept in the quarantine (Outcome.Kept); a reservation of an id that
// named a build before returns catalog.ErrBuildIDTaken (Portage's
// allocation then tries the next id).
func (c *Committer) Commit(ctx context.Context, f File) (Outcome, error) {
	p := layout.ParsePath(f.Name)
	if f.Size == 0 && !f.Renamed {
		if f.Reserved != nil {
			os.Remove(f.Path)
			return Outcome{Inst: f.Reserved, Reserved: true}, nil
		}
		if p.Kind == layout.KindMulti && f.Replaces == 0 {
			inst, err := c.Store.Reserve(ctx, p.Category, p.PN, p.PF, string(p.Format), p.BuildID, f.Mode, f.MtimeNs)
			if err != nil {
				return Outcome{}, err
			}
			os.Remove(f.Path)
			return Outcome{Inst: inst, Reserved: true}, nil
		}
		// An empty file at any other package name is kept as a plain file.
		if err := c.keepPlain(f.Path, f.Name); err != nil {
			return Outcome{}, err
		}
		return Outcome{Plain: true}, nil
	}
	staged := f.Hash.Staged(f.Path, f.Size)
	if staged == nil {
		var err error
		if staged, err = HashFile(f.Path); err != nil {
			return Outcome{}, err
		}
	}
	cand := &catalog.Candidate{Staged: staged, Name: f.Name, MtimeNs: f.MtimeNs, Mode: f.Mode, Replaces: f.Replaces}
	inst, existed, err := c.Store.Ingest(ctx, cand)
	var rerr *catalog.RefusedError
	if errors.As(err, &rerr) {
		kept, kerr := c.Quarantine(RefusedDir, cand.File, f.Name, f.Renamed)
		if kerr != nil {
			c.Log.Error("keeping refused bytes", "path", f.Name, "from", cand.File, "err", kerr)
			return Outcome{}, kerr
		}
		c.Log.Warn("refused a file written at a package name", "path", f.Name, "reason", rerr.Reason, "kept", kept)
		if err := c.Store.Refuse(ctx, f.Name, rerr.Reason, f.Size); err != nil {
			c.Log.Error("recording a refusal", "path", f.Name, "err", err)
		}
		return Outcome{Kept: kept}, err
	}
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Inst: inst, Existed: existed}
	c.logCommit(f.Name, inst, existed)
	out.Restored = c.RestoreReplaced(ctx, f.Name, f.Client, inst)
	return out, nil
}

// logCommit logs a commit.
func (c *Committer) logCommit(name string, in *catalog.Instance, existed bool) {
	if existed {
		c.Log.Info("same bytes already present", "path", name, "cpv", in.CPV, "build_id", in.BuildID)
		return
	}
	c.Log.Info("committed", "path", name, "cpv", in.CPV, "build_id", in.BuildID, "size", in.Size)
	if p := layout.ParsePath(name); p.Kind == layout.KindMulti && p.BuildID != in.BuildID {
		c.Log.Info("the name held another build, which is kept: these bytes are a new build",
			"path", name, "cpv", in.CPV, "build_id", in.BuildID, "at", layout.MultiPath(in.Category, in.PF, in.BuildID, layout.Format(in.Format)))
	}
}

// keepPlain puts bytes at rel in the scratch tree (a plain file there).
func (c *Committer) keepPlain(from, rel string) error {
	to := c.Scratch(rel)
	if from == to {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.Rename(from, to)
}

// Quarantine keeps the bytes at from (moved, or copied with copy) in area
// at rel, or beside it with a number if that name is taken (nothing kept
// before is replaced), and returns the mount path they are at.
func (c *Committer) Quarantine(area, from, rel string, copy bool) (string, error) {
	kept := area + "/" + rel
	to := c.Scratch(kept)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return "", err
	}
	if copy {
		tmp, err := os.CreateTemp(c.Store.StagingDir(), "q-")
		if err != nil {
			return "", err
		}
		tmp.Close()
		if err := CopyFile(from, tmp.Name()); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
		from = tmp.Name()
		defer os.Remove(tmp.Name()) // a no-op once moved
	}
	for i := 1; ; i++ {
		err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
		if err != unix.EEXIST {
			return kept, err
		}
		kept = area + "/" + rel + "." + strconv.Itoa(i)
		to = c.Scratch(kept)
	}
}

// RestoreByLink restores the build last removed under the alias name rel
// if target (a symlink's target, resolved inside the mount) names exactly
// that build: a copy of a PKGDIR (cp -a, rsync -a, tar -x) removes the
// name before it puts its own symlink there, meaning to keep the build.
func (c *Committer) RestoreByLink(ctx context.Context, rel, target string) *catalog.Instance {
	t, err := c.Store.DB.TombstoneRemovedAs(ctx, rel)
	if err != nil {
		if !errors.Is(err, catalog.ErrNotFound) {
			c.Log.Error("reading tombstones", "path", rel, "err", err)
		}
		return nil
	}
	if target != t.Path() && !SamePackageName(target, t.Category, t.PF, t.Format) {
		return nil
	}
	inst := c.Revive(ctx, t)
	if inst != nil {
		c.Log.Info("restored a removed build: a symlink at its name points at it", "path", rel, "target", target, "cpv", inst.CPV, "build_id", inst.BuildID)
	}
	return inst
}

// RestoreReplaced restores the build that client removed at name to put
// the package committed there in its place: tar -x and rsync -a unlink a
// name before they create their own file there, and a copy adds builds, it
// drops none. A removal by another client (another command), or a file
// refused at the name, brings nothing back.
func (c *Committer) RestoreReplaced(ctx context.Context, name string, client func() string, committed *catalog.Instance) *catalog.Instance {
	if client == nil {
		return nil
	}
	t, err := c.Store.DB.TombstoneRemovedAs(ctx, name)
	if err != nil {
		if !errors.Is(err, catalog.ErrNotFound) {
			c.Log.Error("reading tombstones", "path", name, "err", err)
		}
		return nil
	}
	if !SameClient(client(), t.RemovedBy) || t.CPV == committed.CPV && t.SHA256 == committed.SHA256 {
		return nil // another command's removal; or the commit was the build itself
	}
	inst := c.Revive(ctx, t)
	if inst != nil {
		c.Log.Info("restored the build a copy removed to put another package at its name", "path", name,
			"cpv", inst.CPV, "build_id", inst.BuildID, "put", committed.CPV, "put_build_id", committed.BuildID)
	}
	return inst
}

// Revive commits a tombstone's bytes again: the build comes back under its
// own build id (its bytes spent it) and its tombstone goes.
func (c *Committer) Revive(ctx context.Context, t *catalog.Tombstone) *catalog.Instance {
	inst, err := c.revive(ctx, t)
	if err != nil {
		c.Log.Error("restoring a removed build", "path", t.Path(), "err", err)
	}
	return inst
}

func (c *Committer) revive(ctx context.Context, t *catalog.Tombstone) (*catalog.Instance, error) {
	tmp, err := os.CreateTemp(c.Store.StagingDir(), "r-")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	staged, err := copyHashed(filepath.Join(c.Store.BlobDir(), t.Blob), tmp.Name())
	if err == nil && staged.SHA256 != t.SHA256 {
		err = fmt.Errorf("its blob %s no longer holds its bytes", t.Blob)
	}
	var inst *catalog.Instance
	if err == nil {
		inst, _, err = c.Store.Ingest(ctx, &catalog.Candidate{Staged: staged, Name: t.Path(), MtimeNs: t.MtimeNs, Mode: t.Mode, Known: true})
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	return inst, nil
}

// HashFile digests the file at path.
func HashFile(path string) (*catalog.Staged, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	d := catalog.NewDigester()
	if _, err := io.Copy(d, file); err != nil {
		return nil, err
	}
	return d.Staged(path), nil
}

// copyHashed copies from to to (created) and digests the bytes copied.
func copyHashed(from, to string) (*catalog.Staged, error) {
	in, err := os.Open(from)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return nil, err
	}
	d := catalog.NewDigester()
	if _, err := io.Copy(io.MultiWriter(out, d), in); err != nil {
		out.Close()
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return d.Staged(to), nil
}

// CopyFile copies from to to with from's mode and mtime.
func CopyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(to, st.ModTime(), st.ModTime())
}

// SamePackageName tells whether rel is a package name (multi, flat or
// All/) of category/pf in format.
func SamePackageName(rel, category, pf, format string) bool {
	p := layout.ParsePath(rel)
	if p.Kind == layout.KindOther || p.PF != pf || string(p.Format) != format {
		return false
	}
	return p.Kind == layout.KindLegacy || p.Category == category
}

// ResolveLink resolves a relative symlink target against the link's
// directory; "" if it leaves the mount or is absolute.
func ResolveLink(linkRel, target string) string {
	if path.IsAbs(target) {
		return ""
	}
	dir := ""
	if i := strings.LastIndexByte(linkRel, '/'); i >= 0 {
		dir = linkRel[:i]
	}
	r := path.Clean(path.Join(dir, target))
	if r == ".." || strings.HasPrefix(r, "../") {
		return ""
	}
	return r
}
