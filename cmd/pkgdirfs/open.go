package main

import (
	"errors"
	"log/slog"
	"os"

	"pkgdirfs/catalog"
)

// openToRead opens a state for a command that only reads it (query, stats,
// status, verify, prune --dry-run): nothing in it is created or changed, so
// a user who may read the state, and no more, can run them.
func openToRead(loc catalog.Location, log *slog.Logger) (*catalog.Store, error) {
	return catalog.OpenStoreReadOnly(loc, log)
}

// openToRender opens a state to render its index: read-write when this
// user may write it (the TIMESTAMP given to the generation is stored, so a
// mount serving it later serves the same bytes), read-only otherwise.
func openToRender(loc catalog.Location, log *slog.Logger) (store *catalog.Store, stored bool, err error) {
	store, err = catalog.OpenStoreAt(loc, log)
	if err == nil {
		return store, true, nil
	}
	if !errors.Is(err, catalog.ErrReadOnly) && !errors.Is(err, os.ErrPermission) {
		return nil, false, err
	}
	store, err = catalog.OpenStoreReadOnly(loc, log)
	return store, false, err
}
