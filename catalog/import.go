package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"pkgdirfs/layout"
)

// ImportResult counts what an import did.
type ImportResult struct {
	Imported int
	Present  int // same bytes of the same CPV already in the catalog
	Invalid  []Invalid
	// How the bytes of the imported packages reached blobs/ (Store.Import).
	Linked, Cloned, Copied int
}

// Invalid is a file that was not imported, and why.
type Invalid struct {
	Path   string
	Rel    string // Path relative to its source PKGDIR
	Reason string
}

// ImportFile is one package file found in a source PKGDIR.
type ImportFile struct {
	Path string // the root joined with Rel
	Rel  string // relative to the PKGDIR root
	Root string // the PKGDIR root it was found under
	Size int64
}

// ScanPKGDIR lists the package files of a PKGDIR of any layout. Symlinks are
// skipped (legacy category links point into All/, where the real file is
// counted), as Portage's own scan does.
func ScanPKGDIR(src string) ([]ImportFile, error) {
	var out []ImportFile
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 || d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		// Package names, and names that look like one but that Portage
		// skips (the import lists those with the reason).
		if _, _, ok := layout.PackageExt(d.Name()); !ok && layout.SkippedName(filepath.ToSlash(rel)) == "" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, ImportFile{Path: p, Rel: filepath.ToSlash(rel), Root: src, Size: info.Size()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Rel < out[j].Rel })
	return out, err
}

// ImportHeader keeps the header keys of src/Packages for the synthesized
// header. Returns false if src has no index.
func (s *Store) ImportHeader(ctx context.Context, src string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(src, "Packages"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.KeepHeader(ctx, b)
}

// KeepHeader merges the header keys of a Packages file into the catalog's
// header (its keys win); keys that describe one rendering (TIMESTAMP,
// PACKAGES) or a client's cache (DOWNLOAD_TIMESTAMP) are not kept, and the
// package blocks are ignored: the index stays synthesized.
func (s *Store) KeepHeader(ctx context.Context, b []byte) error {
	h, _ := layout.ParseIndex(b)
	for _, k := range []string{"TIMESTAMP", "PACKAGES", "DOWNLOAD_TIMESTAMP"} {
		delete(h, k)
	}
	cur, err := s.DB.Header(ctx)
	if err != nil {
		return err
	}
	return s.DB.Tx(ctx, func(tx *Tx) error {
		merged, same := make(map[string]string, len(cur)+len(h)), true
		for k, v := range cur {
			merged[k] = v
		}
		for k, v := range h {
			same = same && cur[k] == v
			merged[k] = v
		}
		if same {
			return nil
		}
		if err := tx.SetHeader(merged); err != nil {
			return err
		}
		return commitChange(tx)
	})
}

// ImportOne copies one file in, in its own transaction (Import does many at
// once). A refused file is reported in res, not as an error; errors are our
// own failures (disk, catalog).
func (s *Store) ImportOne(ctx context.Context, f ImportFile, res *ImportResult) error {
	in, err := os.Open(f.Path)
	if err != nil {
		res.Invalid = append(res.Invalid, Invalid{f.Path, f.Rel, err.Error()})
		return nil
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	staged, err := s.Stage(in)
	if err != nil {
		return err
	}
	_, existed, err := s.Ingest(ctx, &Candidate{
		Staged: staged, Name: f.Rel,
		MtimeNs: st.ModTime().UnixNano(), Mode: uint32(st.Mode().Perm()),
	})
	var rerr *RefusedError
	switch {
	case errors.As(err, &rerr):
		os.Remove(staged.File) // the source keeps the bytes
		res.Invalid = append(res.Invalid, Invalid{f.Path, f.Rel, rerr.Reason})
		return nil
	case err != nil:
		os.Remove(staged.File)
		return err
	case existed:
		res.Present++
	default:
		res.Imported++
	}
	return nil
}

// headerCHOST gives a header without a CHOST the one of a package just
// committed (a PKGDIR copied into the mount without its Packages), in the
// committing transaction: one read, not a scan of the catalog.
func (tx *Tx) headerCHOST(chost string) error {
	if chost == "" {
		return nil
	}
	h, err := tx.Header()
	if err != nil || h["CHOST"] != "" {
		return err
	}
	h["CHOST"] = chost
	return tx.SetHeader(h)
}

// FillHeaderCHOST gives the header a CHOST when no imported index had one
// (a legacy PKGDIR without Packages): the most common CHOST of the packages,
// as Portage's header carries its own CHOST and blocks inherit it.
func (s *Store) FillHeaderCHOST(ctx context.Context) error {
	h, err := s.DB.Header(ctx)
	if err != nil || h["CHOST"] != "" {
		return err
	}
	// One value read out of each package's metadata: loading every
	// instance with all of it would cost a large import a noticeable part
	// of its time.
	count, err := read(ctx, s.DB, func(v *View) (map[string]int, error) { return v.CountMetaValues("CHOST") })
	if err != nil {
		return fmt.Errorf("catalog: CHOST of the packages: %w", err)
	}
	if len(count) == 0 {
		return nil
	}
	best := ""
	for c, n := range count {
		if best == "" || n > count[best] || (n == count[best] && c < best) {
			best = c
		}
	}
	h["CHOST"] = best
	return s.DB.Tx(ctx, func(tx *Tx) error {
		if err := tx.SetHeader(h); err != nil {
			return err
		}
		return commitChange(tx)
	})
}
