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
// PKGDIRs, or neither; and which PKGDIR a state serves.

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
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// A category's (or All/'s) name says dir is a PKGDIR whose files
		// are all misnamed, not a directory of PKGDIRs: only an index
		// makes such a directory a PKGDIR of its own.
		if categoryLike(e.Name()) && !isFile(filepath.Join(sub, "Packages")) {
			continue
		}
		if isPKGDIR(sub) {
			out = append(out, sub)
		}
	}
	sort.Strings(out)
	return out
}

// categoryLike: a directory name a PKGDIR has for a category, or All.
func categoryLike(name string) bool {
	return name == "All" || (layout.ValidCategory(name) && strings.Contains(name, "-"))
}

// pkgdirsHint says what to do with a directory holding the PKGDIRs below.
func pkgdirsHint(dir string, below []string, state string) string {
	return fmt.Sprintf("%s is not a PKGDIR: it holds the PKGDIRs %s. Import one of them (`pkgdirfs import --state %s %s`), "+
		"or mount each separately, each with a state of its own (`make mount PKGDIR=%s STATE=...`)",
		dir, strings.Join(below, ", "), state, below[0], below[0])
}

// servedFile, in the state directory, holds the PKGDIR the state serves:
// where it was first mounted (or, with --other-pkgdir, last). A mount over
// another PKGDIR would show this one's packages and refused files there.
const servedFile = "pkgdirfs.pkgdir"

// servedPKGDIR is the PKGDIR state serves, "" if none is recorded (a state
// not mounted yet, or by a version that did not record it).
func servedPKGDIR(state string) string {
	b, err := os.ReadFile(filepath.Join(state, servedFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recordServed records dir as the PKGDIR state serves.
func recordServed(state, dir string) error {
	p := filepath.Join(state, servedFile)
	if err := os.WriteFile(p+".tmp", []byte(dir+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// realDir is dir with symlinks resolved, as mountinfo and realpath(1)
// show it (dir itself if it cannot be resolved).
func realDir(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return dir
}
