package catalog

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"pkgdirfs/blobs"
	"pkgdirfs/layout"
	"pkgdirfs/xpak"
)

// RebuildFiles lists the state's own blobs as files to import into an empty
// catalog (a lost or damaged one): blobs are whole packages, and their
// metadata names them (the multi-instance name when they carry a BUILD_ID,
// else the flat one, which gets the next free build id). Blobs that are not
// packages are listed in unknown, and left alone.
func (s *Store) RebuildFiles() (files []ImportFile, unknown []Invalid, err error) {
	root := s.BlobDir()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && blobs.NotBlobs(d.Name()) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, size, why := blobName(p)
		if why != "" {
			unknown = append(unknown, Invalid{Path: p, Reason: why})
			return nil
		}
		files = append(files, ImportFile{Path: p, Rel: rel, Root: root, Size: size})
		return nil
	})
	// Builds whose metadata carries their BUILD_ID first: they take it
	// back, and the others get the free ids after them.
	slices.SortStableFunc(files, func(a, b ImportFile) int {
		am, bm := layout.ParsePath(a.Rel).Kind == layout.KindMulti, layout.ParsePath(b.Rel).Kind == layout.KindMulti
		switch {
		case am == bm:
			return 0
		case am:
			return -1
		}
		return 1
	})
	return files, unknown, err
}

// blobName is the PKGDIR name a blob's metadata gives it, or why it has none.
func blobName(p string) (rel string, size int64, why string) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err.Error()
	}
	info, err := xpak.Inspect(f, st.Size(), xpak.InspectOptions{VerifyImage: true})
	if err != nil {
		return "", 0, "not a package: " + err.Error()
	}
	cat := strings.TrimSpace(string(info.Metadata["CATEGORY"]))
	pf := strings.TrimSpace(string(info.Metadata["PF"]))
	if cat == "" || pf == "" {
		return "", 0, "package metadata has no CATEGORY or PF"
	}
	format := layout.Format(info.Format)
	if id, err := strconv.ParseInt(strings.TrimSpace(string(info.Metadata["BUILD_ID"])), 10, 64); err == nil && id > 0 {
		return layout.MultiPath(cat, pf, id, format), st.Size(), ""
	}
	return layout.FlatPath(cat, pf, format), st.Size(), ""
}
