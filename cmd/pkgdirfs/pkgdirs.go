package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"pkgdirfs/layout"
)

// What a directory is to a mount or an import: a PKGDIR, a directory of
// PKGDIRs, or neither.

// firstPackage is the first file under dir named as a package of a PKGDIR
// rooted at dir (flat, All/ or multi-instance: at most three levels down),
// "" if none. The walk stops there, and skips hidden directories.
func firstPackage(dir string) string {
	found := ""
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel != "." && (strings.Count(rel, string(filepath.Separator)) >= 2 || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if layout.ParsePath(filepath.ToSlash(rel)).Kind != layout.KindOther {
			found = rel
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// isPKGDIR tells whether dir holds a Packages index or a package file.
func isPKGDIR(dir string) bool {
	return isFile(filepath.Join(dir, "Packages")) || firstPackage(dir) != ""
}

// pkgdirsIn lists the subdirectories of dir that are PKGDIRs when dir
// itself is none (nil otherwise): its packages are named relative to those,
// so taken as one PKGDIR, every file of dir is "not a package file name".
func pkgdirsIn(dir string) []string {
	if isPKGDIR(dir) {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && isPKGDIR(sub) {
			out = append(out, sub)
		}
	}
	sort.Strings(out)
	return out
}

// pkgdirsHint says what to do with a directory holding the PKGDIRs below.
func pkgdirsHint(dir string, below []string, state string) string {
	return fmt.Sprintf("%s is not a PKGDIR: it holds the PKGDIRs %s. Import one of them (`pkgdirfs import --state %s %s`), "+
		"or mount each separately, each with a state of its own (`make mount PKGDIR=%s STATE=...`)",
		dir, strings.Join(below, ", "), state, below[0], below[0])
}
