package fs

import "time"

// The time windows of the mount, in one place. None of them decides what a
// name means (that is the catalog's state); each is a fact about a client
// or the kernel, or bounds how long a request waits.

// cacheTimeout is how long the kernel may keep entries and attributes.
// They change only through the catalog, and every change is followed by an
// explicit invalidation, so the kernel may cache long.
const cacheTimeout = time.Hour

// releaseWait bounds how long an open for writing waits for readers'
// RELEASEs. A fact about the kernel: it sends RELEASE after close() has
// returned, so a client that reads a package, closes it and opens it for
// writing (Portage's XPAK recompose reads the trailer first) can reach us
// before its own release.
const releaseWait = time.Second

// indexUnlinkWindow is how long an unlinked Packages or Packages.gz stays
// absent. A fact about tar -x: it removes a file, then creates it with
// O_EXCL, and that create must reach us. The index itself is synthesized
// and never gone for long.
const indexUnlinkWindow = 2 * time.Second

// invalidationWait bounds how long unlink and rename wait for the kernel to
// take the invalidations of names in other directories. A fact about the
// kernel: it may need a directory lock that only the returning request
// releases; then the invalidation completes after it.
const invalidationWait = 200 * time.Millisecond

// settleSeconds: Portage's client asks for the index with If-Modified-Since
// = its TIMESTAMP + 5 s, so after generations less than this apart some
// clients would keep a stale index; once the catalog has been quiet this
// long the index is re-published with a later TIMESTAMP (catalog.Store.Settle).
const settleSeconds = 6

// stampRecordWait bounds how long the mount tries to store a TIMESTAMP it
// served (another process may hold the catalog's write lock): past it the
// next generation's is stored above it, and an unmount does not hang.
const stampRecordWait = 30 * time.Second

// sharedStampWait bounds how long serving the index of a catalog several
// hosts share waits to agree on its TIMESTAMP with them (RecordStamp); a
// single host's mount never waits (it records after).
const sharedStampWait = 2 * time.Second
