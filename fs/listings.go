package fs

import (
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// listings keeps the directory listings being read. The kernel sends no
// OPENDIR (rawFS.OpenDir), so each READDIR gets a handle of its own; the
// requests that continue a read find their listing here by the id in the
// offset instead of listing the directory again (All/ takes thousands of
// requests at a million instances).
type listings struct {
	mu    sync.Mutex
	next  uint32
	byID  map[uint32]*listing
	order []*listing // oldest first
}

type listing struct {
	id   uint32
	path string
	list []fuse.DirEntry
	made time.Time
}

const (
	// A read that stops half-way leaves its listing behind: at most this
	// many are kept, none longer than listingTTL. A read that continues
	// after its listing was dropped lists the directory again.
	maxListings = 64
	listingTTL  = time.Minute
)

func newListings() *listings { return &listings{byID: map[uint32]*listing{}} }

func (ls *listings) add(path string, list []fuse.DirEntry) *listing {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.next++
	if ls.next == 0 {
		ls.next = 1 // offset 0 means "from the start"
	}
	now := time.Now()
	l := &listing{id: ls.next, path: path, list: list, made: now}
	ls.byID[l.id] = l
	ls.order = append(ls.order, l)
	for len(ls.order) > 0 {
		old := ls.order[0]
		if ls.byID[old.id] == old && len(ls.byID) <= maxListings && now.Sub(old.made) < listingTTL {
			break
		}
		if ls.byID[old.id] == old {
			delete(ls.byID, old.id)
		}
		ls.order[0] = nil
		ls.order = ls.order[1:]
	}
	return l
}

// get is the listing id of the directory at path, if it is still kept.
func (ls *listings) get(id uint32, path string) *listing {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil && l.path == path {
		return l
	}
	return nil
}

// done drops a listing read to its end.
func (ls *listings) done(l *listing) {
	ls.mu.Lock()
	if ls.byID[l.id] == l {
		delete(ls.byID, l.id)
	}
	ls.mu.Unlock()
}
