package ingest

import (
	"sync"

	"pkgdirfs/catalog"
)

// SeqHash digests the bytes of a file as a client writes them front to
// back, so that committing needs no second read: the whole file's digests,
// and a gpkg's member digests for its Manifest check (the image is not read
// again). A write anywhere else (seeking back to patch a header, as
// Portage's gpkg writer does) makes the commit re-read, once, for both.
type SeqHash struct {
	mu     sync.Mutex
	broken bool
	dg     *catalog.Digester
}

// NewSeqHash starts digesting at offset 0.
func NewSeqHash() *SeqHash { return &SeqHash{dg: catalog.NewDigester()} }

// Write takes the bytes written at off.
func (s *SeqHash) Write(data []byte, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return
	}
	if off != s.dg.Size() {
		s.broken = true
		return
	}
	s.dg.Write(data)
}

// Truncate takes a truncation to size.
func (s *SeqHash) Truncate(size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size != s.dg.Size() {
		s.broken = true
	}
}

// Break gives up: the commit re-reads the file.
func (s *SeqHash) Break() {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
}

// Staged returns the digests if they cover exactly size bytes, else nil.
func (s *SeqHash) Staged(file string, size int64) *catalog.Staged {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken || s.dg.Size() != size {
		return nil
	}
	return s.dg.Staged(file)
}
