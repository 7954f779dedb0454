//go:build tools

// Package tools pins the dependencies the packages below use, so that
// parallel work on them does not race on go.mod.
package tools

import (
	_ "github.com/dsnet/compress/bzip2"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/pierrec/lz4/v4"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/ulikunitz/xz"
	_ "golang.org/x/crypto/blake2b"
	_ "golang.org/x/term"
)
