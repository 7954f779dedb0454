package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"pkgdirfs/catalog"
)

func cmdImport(args []string) int {
	fl := newFlags("import")
	state := stateFlag(fl)
	quiet := fl.Bool("q", false, "no progress bar")
	link := fl.Bool("link", false, "take the source files over without copying their bytes: hard link on the state's filesystem, else reflink (FICLONE), else copy")
	srcs, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(srcs) == 0 {
		fmt.Fprintln(os.Stderr, "pkgdirfs import: need at least one SRC directory")
		fl.Usage()
		return 2
	}
	log := newLogger(os.Stderr)
	store, err := catalog.OpenStore(*state, log)
	if err != nil {
		return fail("import: %v", err)
	}
	defer store.Close()
	ctx := background()

	var files []catalog.ImportFile
	var total int64
	for _, src := range srcs {
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			return fail("import: %s is not a directory", src)
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
	fmt.Fprintf(os.Stderr, "imported %d, already present %d, invalid %d (linked %d, cloned %d, copied %d)\n",
		res.Imported, res.Present, len(res.Invalid), res.Linked, res.Cloned, res.Copied)
	if len(res.Invalid) > 0 {
		return 1
	}
	return 0
}
