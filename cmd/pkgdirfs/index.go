package main

import (
	"os"

	"pkgdirfs/catalog"
	pfs "pkgdirfs/fs"
)

func cmdIndex(args []string) int {
	fl := newFlags("index")
	state := stateFlag(fl)
	layouts := fl.String("layouts", "all", "layouts whose paths the index uses (as for mount)")
	gz := fl.Bool("gz", false, "write Packages.gz instead of Packages")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) != 0 {
		fl.Usage()
		return 2
	}
	lay, err := pfs.ParseLayouts(*layouts)
	if err != nil {
		return fail("index: %v", err)
	}
	store, err := catalog.OpenStore(*state, newLogger(os.Stderr))
	if err != nil {
		return fail("index: %v", err)
	}
	defer store.Close()
	idx, err := pfs.RenderIndex(background(), store.DB, lay)
	if err != nil {
		return fail("index: %v", err)
	}
	out := idx.Plain
	if *gz {
		out = idx.Gz
	}
	if _, err := os.Stdout.Write(out); err != nil {
		return fail("index: %v", err)
	}
	return 0
}
