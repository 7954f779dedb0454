package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

func cmdImport(args []string) int {
	fl := newFlags("import")
	state := stateFlag(fl)
	quiet := fl.BoolP("quiet", "q", false, "no progress bar")
	link := fl.Bool("link", false, "take the source files over without copying their bytes: hard link on the state's filesystem, else reflink (FICLONE), else copy")
	keepInvalid := fl.Bool("keep-invalid", false, "keep each invalid file in the state's quarantine (hard-linked with --link): a mount over SRC shows it at .pkgdirfs/refused/PATH, never at its package name; verify lists it with its reason")
	rebuild := fl.Bool("rebuild", false, "rebuild a lost or damaged catalog from the state's own blobs (no SRC; the state must not be mounted)")
	sig := addSigningFlags(fl)
	srcs, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if u := sig.usage(); u != "" {
		return usageError(fl, "%s", u)
	}
	if *rebuild != (len(srcs) == 0) {
		if *rebuild {
			return usageError(fl, "--rebuild takes no SRC directory")
		}
		return usageError(fl, "need at least one SRC directory")
	}
	if *rebuild && (*sig.key != "" || *sig.trust != "") {
		return usageError(fl, "--rebuild takes the state's blobs as they are: no --sign-key or --trust-keyring")
	}
	// Before the state is touched: taken as one PKGDIR, a directory of
	// PKGDIRs has every file refused (names are read relative to SRC), and
	// kept in the quarantine with --keep-invalid. 2: make mount stops.
	for _, src := range srcs {
		if below := pkgdirsIn(src); len(below) > 0 {
			fmt.Fprintf(os.Stderr, "pkgdirfs: import: %s\n", pkgdirsHint(src, below, *state))
			return 2
		}
	}
	log := newLogger(os.Stderr)
	var lk *catalog.StateLock
	if *rebuild {
		var err error
		if lk, err = prepareRebuild(location(*state)); err != nil {
			return fail("import --rebuild: %v", err)
		}
		defer lk.Release()
	}
	store, err := openForImport(location(*state), log, lk)
	if err != nil {
		return fail("import: %v", err)
	}
	defer store.Close()
	ctx := background()
	if store.Signing, _, err = sig.signing(ctx); err != nil {
		return fail("import: %v", err)
	}

	var files []catalog.ImportFile
	var total int64
	if *rebuild {
		if n, _, _, err := store.DB.Stats(ctx); err != nil {
			return fail("import --rebuild: %v", err)
		} else if n > 0 {
			return fail("import --rebuild: the catalog of %s lists %d packages: --rebuild only fills an empty or lost catalog", store.Dir, n)
		}
		found, unknown, err := store.RebuildFiles()
		if err != nil {
			return fail("import --rebuild: reading %s: %v", store.BlobDir(), err)
		}
		for _, u := range unknown {
			fmt.Fprintf(os.Stderr, "skipped: %s: %s\n", u.Path, u.Reason)
		}
		*link = true // the blobs stay where they are
		files = found
		for _, f := range found {
			total += f.Size
		}
	}
	for _, src := range srcs {
		if st, err := os.Stat(src); err != nil {
			return fail("import: %v", unwrapPath(err))
		} else if !st.IsDir() {
			return fail("import: %s is not a directory (SRC is a PKGDIR)", src)
		}
		found, err := catalog.ScanPKGDIR(src)
		if err != nil {
			return fail("import: scanning %s: %v", src, err)
		}
		if _, err := store.ImportHeader(ctx, src); err != nil {
			return fail("import: header of %s/Packages: %v", src, err)
		}
		files = append(files, found...)
		for _, f := range found {
			total += f.Size
		}
	}

	var bar *progressbar.ProgressBar
	if !*quiet && term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(fmt.Sprintf("importing %d files", len(files))),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	// The bar and the --link notices share stderr.
	var mu sync.Mutex
	opt := catalog.ImportOptions{
		Link: *link,
		Notice: func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			if bar != nil {
				bar.Clear()
			}
			fmt.Fprintln(os.Stderr, msg)
		},
	}
	if bar != nil {
		opt.Progress = func(f catalog.ImportFile) {
			mu.Lock()
			defer mu.Unlock()
			bar.Add64(f.Size)
		}
	}
	// Every file allocates a little and keeps nothing: fewer collections
	// leave more CPU to hashing.
	debug.SetGCPercent(400)
	var res catalog.ImportResult
	if err := store.Import(ctx, files, opt, &res); err != nil {
		if bar != nil {
			bar.Clear()
		}
		return fail("import: %v (imported %d before it)", err, res.Imported)
	}
	if bar != nil {
		bar.Finish()
	}
	if err := store.FillHeaderCHOST(ctx); err != nil {
		return fail("import: %v", err)
	}
	for _, inv := range res.Invalid {
		fmt.Fprintf(os.Stderr, "invalid: %s: %s\n", inv.Path, inv.Reason)
	}
	if res.Imported == 0 && res.Present == 0 && len(res.Invalid) > 0 {
		for _, src := range srcs {
			if h := levelHint(src); h != "" {
				fmt.Fprintf(os.Stderr, "hint: %s\n", h)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "imported %d, already present %d, invalid %d (linked %d, cloned %d, copied %d)\n",
		res.Imported, res.Present, len(res.Invalid), res.Linked, res.Cloned, res.Copied)
	if *keepInvalid && len(res.Invalid) > 0 {
		kept, err := keepInvalidFiles(store, res.Invalid, *link)
		if err != nil {
			return fail("import: keeping the invalid files: %v (kept %d before it)", err, kept)
		}
		fmt.Fprintf(os.Stderr, "kept %d invalid %s in the quarantine (a mount shows %s under %s/, never at a package name; verify lists %s)\n",
			kept, plural(kept, "file", "files"), plural(kept, "it", "them"), catalog.RefusedDir, plural(kept, "it", "them"))
	}
	if len(res.Invalid) > 0 {
		return 1
	}
	return 0
}

// keepInvalidFiles puts the invalid files into the quarantine at their
// names in the PKGDIR and records why they were refused: mounted over its
// PKGDIR, the state then still shows them under .pkgdirfs/refused/ (never
// at a package name, where Portage's walk, tar and nginx would meet them),
// as it keeps a refused write. A name the quarantine already has is left
// as it is.
func keepInvalidFiles(store *catalog.Store, invalid []catalog.Invalid, link bool) (int, error) {
	kept := 0
	type rec struct {
		rel, reason string
		size        int64
	}
	var recs []rec
	for _, inv := range invalid {
		if inv.Rel == "" || !filepath.IsLocal(inv.Rel) {
			continue
		}
		dst := filepath.Join(store.ScratchDir(), catalog.RefusedDir, filepath.FromSlash(inv.Rel))
		st, err := os.Lstat(inv.Path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return kept, err
		}
		if !link || os.Link(inv.Path, dst) != nil {
			if err := copyFile(inv.Path, dst, st); err != nil {
				return kept, err
			}
		}
		recs = append(recs, rec{filepath.ToSlash(inv.Rel), inv.Reason, st.Size()})
		kept++
	}
	now := time.Now().UnixNano()
	err := store.DB.Tx(background(), func(tx *catalog.Tx) error {
		for _, r := range recs {
			if err := tx.ClearRefused(r.rel); err != nil {
				return err
			}
			if err := tx.AddRefused(r.rel, r.reason, r.size, now); err != nil {
				return err
			}
		}
		return nil
	})
	return kept, err
}

// copyFile copies src to a new file dst with src's mode and mtime, synced.
func copyFile(src, dst string, st os.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}

// openForImport opens the state; a rebuild holds its lock already.
func openForImport(loc catalog.Location, log *slog.Logger, lk *catalog.StateLock) (*catalog.Store, error) {
	if lk != nil {
		return catalog.OpenStoreLocked(loc, log, lk)
	}
	return catalog.OpenStoreAt(loc, log)
}

// prepareRebuild takes the state (no daemon may serve it meanwhile) and
// sets a catalog that cannot be opened, or is 0 bytes, aside, so that a new
// one is made; the old files are kept under their names plus .lost-TIME.
func prepareRebuild(loc catalog.Location) (*catalog.StateLock, error) {
	if loc.Shared() {
		return nil, fmt.Errorf("--rebuild makes the state's own catalog anew; a shared catalog (%s) is restored from the database server's backups", loc.Describe())
	}
	state := loc.State
	if st, err := os.Stat(loc.BlobDir()); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s has no blobs/ directory to rebuild from", state)
	}
	lk, err := catalog.LockState(state, fmt.Sprintf("pid %d, pkgdirfs import --rebuild", os.Getpid()))
	if err != nil {
		return nil, err
	}
	if catalog.Unreadable(loc) {
		suffix := ".lost-" + time.Now().UTC().Format("20060102T150405")
		moved, err := catalog.SetAside(loc, suffix)
		if err != nil {
			lk.Release()
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "moved the unreadable catalog aside: %s\n", strings.Join(moved, ", "))
	}
	return lk, nil
}

// levelHint says which directory to import when src, whose files were all
// refused, is a directory inside a PKGDIR: package names are judged
// relative to SRC, so every file is then "not a package file name". (A
// directory of PKGDIRs is refused before the import: pkgdirsIn.)
func levelHint(src string) string {
	clean := filepath.Clean(src)
	// A category, $PN or All/ directory: the PKGDIR is the nearest
	// ancestor with a Packages index, else the parent of a category.
	for dir, up := filepath.Dir(clean), 0; up < 3 && dir != filepath.Dir(dir); dir, up = filepath.Dir(dir), up+1 {
		if isFile(filepath.Join(dir, "Packages")) {
			return fmt.Sprintf("%s is a directory inside the PKGDIR %s (which has the Packages index): import %s", src, dir, dir)
		}
	}
	if base := filepath.Base(clean); base == "All" || (layout.ValidCategory(base) && strings.Contains(base, "-")) {
		return fmt.Sprintf("%s looks like a category directory (or All/) of a PKGDIR: import its parent, %s", src, filepath.Dir(clean))
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
