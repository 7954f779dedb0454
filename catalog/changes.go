package catalog

import (
	"errors"
	"maps"
	"slices"
)

// HeaderChange is the change-log name of a change to the Packages header:
// every index entry renders against the header, so all of them are affected.
const HeaderChange = ""

// changeLogKeep is how many generations of change rows are kept. A reader
// further behind than that (a mount stopped for a long time is not a reader:
// it loads in full when it starts) reloads everything.
const changeLogKeep = 100_000

// ErrChangesPruned says the change log no longer reaches back to the
// generation asked for: the reader must load everything.
var ErrChangesPruned = errors.New("change log pruned past the generation asked for")

// touch records that the transaction changed the instances of cpv (or the
// header, HeaderChange); BumpGeneration logs it.
func (tx *Tx) touch(cpv string) {
	if tx.touched == nil {
		tx.touched = make(map[string]struct{})
	}
	tx.touched[cpv] = struct{}{}
}

// BumpGeneration increments the generation and returns the new value.
// Every committed change calls it exactly once, last. The change log row of
// each CPV the transaction touched is written with it, in the same
// transaction: a mount (this process's or another's) applies exactly those
// CPVs instead of reloading the catalog.
func (tx *Tx) BumpGeneration() (int64, error) {
	g, err := tx.WriteTx.BumpGeneration(slices.Sorted(maps.Keys(tx.touched)), changeLogKeep)
	if err != nil {
		return 0, err
	}
	tx.touched = nil
	return g, nil
}
