package main

import (
	"errors"
	"os"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/tree"
	"pkgdirfs/tree/pieces"
)

func cmdIndex(args []string) int {
	fl := newFlags("index")
	state := stateFlag(fl)
	layouts := fl.String("layouts", "all", "`LAYOUTS` whose paths the index uses (as for mount)")
	gz := fl.Bool("gz", false, "write Packages.gz instead of Packages")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) != 0 {
		return usageError(fl, "unexpected argument %q (index takes no operands: it writes the index to stdout (redirect it: > FILE), the state is --state)", ops[0])
	}
	lay, err := tree.ParseLayouts(*layouts)
	if err != nil {
		return fail("index: %v", err)
	}
	// Never creates a state: a mistyped --state is an error.
	if why := notAState(location(*state)); why != "" {
		return fail("index: %s is not a pkgdirfs state (%s)", *state, why)
	}
	store, stored, err := openToRender(location(*state), newLogger(os.Stderr))
	if err != nil {
		return fail("index: %v", err)
	}
	defer store.Close()
	idx, err := renderIndex(store, lay, stored)
	if err != nil {
		return fail("index: %v", err)
	}
	var out []byte
	if *gz {
		out, err = idx.GzBytes()
	} else {
		out, err = idx.Bytes()
	}
	if err != nil {
		return fail("index: %v", err)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		return fail("index: %v", err)
	}
	return 0
}

// renderIndex renders the index of the catalog's present generation, with the
// TIMESTAMP a mount serving it gives it; stored: the TIMESTAMP is stored
// (the state may be written), so every renderer of the generation uses it.
func renderIndex(store *catalog.Store, lay tree.Layouts, stored bool) (*tree.IndexView, error) {
	ctx := background()
	m, err := tree.Load(ctx, store.DB, lay)
	if err != nil {
		return nil, err
	}
	if err := m.BuildIndex(ctx, store.DB, pieces.Options{}); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var ts int64
		if stored {
			ts, err = store.DB.StampGeneration(ctx, m.Gen(), time.Now().Unix())
		} else {
			var st catalog.Stamp
			st, err = store.DB.StampOf(ctx, m.Gen())
			ts = st.Next(time.Now().Unix())
		}
		if err == nil {
			v, err := m.FreezeIndex(m.Gen(), ts)
			if !errors.Is(err, tree.ErrStale) {
				return v, err
			}
		} else if !errors.Is(err, catalog.ErrStaleGeneration) {
			return nil, err
		}
		if attempt > 50 {
			return nil, errors.New("catalog keeps changing while rendering the index")
		}
		if _, err := m.Catchup(ctx, store.DB); err != nil {
			return nil, err
		}
	}
}
