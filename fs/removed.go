package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
)

// RemovedDir is where removed builds stay readable for their grace: the
// catalog's tombstones, as the tree shows them (tree.RemovedDir).
const RemovedDir = tree.RemovedDir

// expireRemoved collects the tombstones whose grace ended: their names go
// from the removed area and their blobs are dropped (the tree learns it
// through the change log, like any change).
func (f *FS) expireRemoved(now time.Time) {
	if f.cfg.ReadOnly {
		return
	}
	n, err := f.cfg.Store.ExpireTombstones(context.Background(), now)
	if err != nil {
		f.log.Error("collecting removed builds whose grace ended", "err", err)
		return
	}
	if n > 0 {
		f.log.Info("removal grace ended", "builds", n)
		f.changed(context.Background())
	}
}

// restoreByLink restores the build last removed under the alias name rel
// if target (a symlink's target, resolved inside the mount) names exactly
// that build: a copy of a PKGDIR (cp -a, rsync -a, tar -x) removes the
// name before it puts its own symlink there, meaning to keep the build.
func (f *FS) restoreByLink(ctx context.Context, rel, target string) *catalog.Instance {
	t, err := f.cfg.Store.DB.TombstoneRemovedAs(ctx, rel)
	if err != nil {
		if !errors.Is(err, catalog.ErrNotFound) {
			f.log.Error("reading tombstones", "path", rel, "err", err)
		}
		return nil
	}
	if target != t.Path() && !sameInstanceName(target, &t.Instance) {
		return nil
	}
	inst := f.revive(ctx, t)
	if inst != nil {
		f.log.Info("restored a removed build: a symlink at its name points at it", "path", rel, "target", target, "cpv", inst.CPV, "build_id", inst.BuildID)
	}
	return inst
}

// restoreReplaced restores the build that client removed at name to put
// the package committed there (committed) in its place: tar -x and rsync -a
// unlink a name before they create their own file there, and a copy adds
// builds, it drops none. A removal by another client (another command), or
// a file refused at the name, brings nothing back. It reports whether a
// build came back.
func (f *FS) restoreReplaced(ctx context.Context, name, client string, committed *catalog.Instance) bool {
	if client == "" {
		return false
	}
	t, err := f.cfg.Store.DB.TombstoneRemovedAs(ctx, name)
	if err != nil {
		if !errors.Is(err, catalog.ErrNotFound) {
			f.log.Error("reading tombstones", "path", name, "err", err)
		}
		return false
	}
	if !sameClient(client, t.RemovedBy) {
		return false
	}
	if committed != nil && t.CPV == committed.CPV && t.SHA256 == committed.SHA256 {
		return false // the same bytes: the commit was the build itself
	}
	inst := f.revive(ctx, t)
	if inst != nil {
		f.log.Info("restored the build a copy removed to put another package at its name", "path", name,
			"cpv", inst.CPV, "build_id", inst.BuildID, "put", committed.CPV, "put_build_id", committed.BuildID)
	}
	return inst != nil
}

// revive commits a tombstone's bytes again: the build comes back under its
// own build id (its bytes spent it) and its tombstone goes.
func (f *FS) revive(ctx context.Context, t *catalog.Tombstone) *catalog.Instance {
	tmp, err := os.CreateTemp(f.cfg.Store.StagingDir(), "r-")
	if err != nil {
		f.log.Error("restoring a removed build", "path", t.Path(), "err", err)
		return nil
	}
	tmp.Close()
	if err := copyFile(f.blobPath(t.Blob), tmp.Name()); err != nil {
		os.Remove(tmp.Name())
		f.log.Error("restoring a removed build", "path", t.Path(), "err", err)
		return nil
	}
	staged, err := hashFile(tmp.Name(), t.Size)
	if err == nil && staged.SHA256 != t.SHA256 {
		err = fmt.Errorf("its blob %s no longer holds its bytes", t.Blob)
	}
	var inst *catalog.Instance
	if err == nil {
		inst, _, err = f.cfg.Store.Ingest(ctx, &catalog.Candidate{Staged: staged, Name: t.Path(), MtimeNs: t.MtimeNs, Mode: t.Mode})
	}
	if err != nil {
		os.Remove(tmp.Name())
		f.log.Error("restoring a removed build", "path", t.Path(), "err", err)
		return nil
	}
	return inst
}

// sameInstanceName tells whether rel is a package name of inst (its multi,
// flat or All/ name).
func sameInstanceName(rel string, inst *catalog.Instance) bool {
	return samePackageName(rel, inst.Category, inst.PF, inst.Format)
}

// samePackageName tells whether rel is a package name (multi, flat or All/)
// of category/pf in format.
func samePackageName(rel, category, pf, format string) bool {
	p := layout.ParsePath(rel)
	if p.Kind == layout.KindOther || p.PF != pf || string(p.Format) != format {
		return false
	}
	return p.Kind == layout.KindLegacy || p.Category == category
}

// resolveLink resolves a relative symlink target against the link's
// directory; "" if it leaves the mount or is absolute.
func resolveLink(linkRel, target string) string {
	if path.IsAbs(target) {
		return ""
	}
	dir, _ := tree.SplitPath(linkRel)
	r := path.Clean(path.Join(dir, target))
	if r == ".." || strings.HasPrefix(r, "../") {
		return ""
	}
	return r
}
