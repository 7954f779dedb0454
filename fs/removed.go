package fs

import (
	"context"
	"time"

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
		f.catalogError("collecting removed builds whose grace ended", err)
		return
	}
	if n > 0 {
		f.log.Info("removal grace ended", "builds", n)
		f.changed(context.Background())
	}
}
