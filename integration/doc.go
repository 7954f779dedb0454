// Package integration holds the end-to-end tests of pkgdirfs: they build the
// binary, import real Portage PKGDIRs (the fixtures in testdata/fixtures),
// mount the filesystem for real through /dev/fuse and judge it from the
// outside with the tools users use (stat, sha1sum, tar, zcat, ls, find).
//
// Run as root: go test ./integration/ -count=1 -v
// PKGDIRFS_FIXTURES overrides the fixtures directory.
package integration
