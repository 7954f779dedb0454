// Package xpak reads and writes the metadata of Gentoo Portage binary
// packages: the XPAK block appended to .tbz2/.xpak tarballs, and the GPKG
// (.gpkg.tar, GLEP 78) container. Everything here treats its input as
// untrusted: every length is checked against the data actually present before
// it is used, and memory use is bounded by MaxMetadataBytes.
package xpak

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Entry is one XPAK key with its raw value.
type Entry struct {
	Key   string
	Value []byte
}

// ErrNotXpak says the 16-byte XPAK trailer is absent.
var ErrNotXpak = errors.New("no XPAK trailer")

// MaxMetadataBytes bounds any metadata held in memory: the XPAK block and the
// decompressed gpkg metadata tar.
const MaxMetadataBytes = 64 << 20

// metadataLimit is MaxMetadataBytes, variable so tests can exercise the limit
// without producing 64 MiB inputs.
var metadataLimit int64 = MaxMetadataBytes

// maxKeyLen bounds key names; keys are file names in Portage's build-info
// directory, so anything longer is corruption, not data.
const maxKeyLen = 1024

const (
	magicPack   = "XPAKPACK"
	magicStop   = "XPAKSTOP"
	trailerStop = "STOP"
	// blockOverhead is "XPAKPACK" + index_len + data_len + "XPAKSTOP".
	blockOverhead = 8 + 4 + 4 + 8
	// trailerLen is the tail Portage checks: "XPAKSTOP" + L + "STOP".
	trailerLen = 16
	// indexEntryOverhead is name_len + data_offset + data_len.
	indexEntryOverhead = 12
	// maxBlock: XPAK integers are 32-bit, so the block must stay below 4 GiB.
	maxBlock = 1 << 32
)

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case len(k) > maxKeyLen:
		return fmt.Errorf("key of %d bytes exceeds %d", len(k), maxKeyLen)
	case bytes.IndexByte([]byte(k), 0) >= 0:
		return fmt.Errorf("key %q contains NUL", k)
	// Portage's xpand writes each key as a file name in a directory on
	// every client that unpacks the block: a key must be one plain name.
	case strings.IndexByte(k, '/') >= 0:
		return fmt.Errorf("key %q contains '/'", k)
	case k == "." || k == "..":
		return fmt.Errorf("key %q is not a file name", k)
	case !utf8.ValidString(k):
		return fmt.Errorf("key %q is not UTF-8", k)
	}
	return nil
}

// EncodeBlock builds an XPAK block holding entries in the given order, with
// data offsets cumulative as Portage's xpak_mem writes them.
func EncodeBlock(entries []Entry) ([]byte, error) {
	var indexLen, dataLen uint64
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if err := checkKey(e.Key); err != nil {
			return nil, fmt.Errorf("xpak: entry %d: %w", i, err)
		}
		// DecodeBlock refuses duplicates, so refusing them here keeps
		// every block we write readable by ourselves.
		if seen[e.Key] {
			return nil, fmt.Errorf("xpak: entry %d: duplicate key %q", i, e.Key)
		}
		seen[e.Key] = true
		indexLen += indexEntryOverhead + uint64(len(e.Key))
		dataLen += uint64(len(e.Value))
		if blockOverhead+indexLen+dataLen >= maxBlock {
			return nil, errors.New("xpak: block would reach 4 GiB")
		}
	}
	total := blockOverhead + indexLen + dataLen
	b := make([]byte, 0, total)
	b = append(b, magicPack...)
	b = appendBE32(b, uint32(indexLen))
	b = appendBE32(b, uint32(dataLen))
	var off uint64
	for _, e := range entries {
		b = appendBE32(b, uint32(len(e.Key)))
		b = append(b, e.Key...)
		b = appendBE32(b, uint32(off))
		b = appendBE32(b, uint32(len(e.Value)))
		off += uint64(len(e.Value))
	}
	for _, e := range entries {
		b = append(b, e.Value...)
	}
	b = append(b, magicStop...)
	return b, nil
}

// AppendTrailer returns block + BE32(len(block)) + "STOP", the bytes Portage
// appends to a tarball. block must come from EncodeBlock (< 4 GiB).
func AppendTrailer(block []byte) []byte {
	out := make([]byte, 0, len(block)+8)
	out = append(out, block...)
	out = appendBE32(out, uint32(len(block)))
	return append(out, trailerStop...)
}

// DecodeBlock parses a whole XPAK block. It is stricter than Portage, which
// checks almost nothing: it accepts exactly the blocks EncodeBlock produces
// (cumulative offsets, no gaps, no duplicate keys), so a file we accept
// means the same thing to every reader. Values alias one private copy of b.
func DecodeBlock(b []byte) ([]Entry, error) {
	n := uint64(len(b))
	if n < blockOverhead {
		return nil, formatErr("truncated: xpak block of %d bytes is shorter than the %d-byte minimum", n, blockOverhead)
	}
	if string(b[:8]) != magicPack {
		return nil, formatErr("xpak: block does not start with XPAKPACK")
	}
	indexLen := uint64(be32(b[8:12]))
	dataLen := uint64(be32(b[12:16]))
	if want := blockOverhead + indexLen + dataLen; want != n {
		return nil, formatErr("xpak: index_len %d + data_len %d + %d needs %d bytes, block has %d",
			indexLen, dataLen, blockOverhead, want, n)
	}
	if string(b[n-8:]) != magicStop {
		return nil, formatErr("xpak: block does not end with XPAKSTOP")
	}
	// One copy, so callers may keep values while b is reused, and overlapping
	// index entries cannot multiply memory use (they are rejected anyway).
	buf := make([]byte, n)
	copy(buf, b)
	index := buf[16 : 16+indexLen]
	data := buf[16+indexLen : 16+indexLen+dataLen]

	var entries []Entry
	seen := make(map[string]bool)
	var pos, next uint64
	for i := 1; pos < indexLen; i++ {
		if indexLen-pos < 4 {
			return nil, formatErr("xpak: index entry %d: name length truncated at index offset %d of %d", i, pos, indexLen)
		}
		nameLen := uint64(be32(index[pos:]))
		if nameLen == 0 {
			return nil, formatErr("xpak: index entry %d: empty name", i)
		}
		if nameLen > maxKeyLen {
			return nil, formatErr("xpak: index entry %d: name length %d exceeds %d", i, nameLen, maxKeyLen)
		}
		if indexLen-pos-4 < nameLen+8 {
			return nil, formatErr("xpak: index entry %d: name length %d runs past index length %d", i, nameLen, indexLen)
		}
		name := string(index[pos+4 : pos+4+nameLen])
		if err := checkKey(name); err != nil {
			return nil, formatErr("xpak: index entry %d: %v", i, err)
		}
		p := pos + 4 + nameLen
		off := uint64(be32(index[p:]))
		ln := uint64(be32(index[p+4:]))
		if off+ln > dataLen {
			return nil, formatErr("xpak: index entry %d data offset %d+%d beyond data length %d", i, off, ln, dataLen)
		}
		if off != next {
			return nil, formatErr("xpak: index entry %d data offset %d, expected %d (values must be contiguous)", i, off, next)
		}
		if seen[name] {
			return nil, formatErr("xpak: index entry %d: duplicate key %q", i, name)
		}
		seen[name] = true
		entries = append(entries, Entry{Key: name, Value: data[off : off+ln : off+ln]})
		next = off + ln
		pos = p + 8
	}
	if next != dataLen {
		return nil, formatErr("xpak: values cover %d of %d data bytes", next, dataLen)
	}
	return entries, nil
}

// ReadXpak locates the XPAK at the end of a file of the given size, decodes
// it, and returns the entries and the length of the tarball before it.
func ReadXpak(r io.ReaderAt, size int64) (entries []Entry, tarLen int64, err error) {
	if size < trailerLen {
		return nil, 0, wrapErr(ErrNotXpak, "xpak: file of %d bytes is too short for the XPAK trailer", size)
	}
	var tr [trailerLen]byte
	if err := readFull(r, tr[:], size-trailerLen); err != nil {
		return nil, 0, err
	}
	if string(tr[0:8]) != magicStop || string(tr[12:16]) != trailerStop {
		return nil, 0, wrapErr(ErrNotXpak, "xpak: no XPAKSTOP/STOP trailer")
	}
	l := int64(be32(tr[8:12]))
	// The block ends at size-8 (its XPAKSTOP is the trailer's first half).
	if l < blockOverhead {
		return nil, 0, formatErr("xpak: block length %d in trailer is below the %d-byte minimum", l, blockOverhead)
	}
	if l > size-8 {
		return nil, 0, formatErr("truncated: xpak block length %d in trailer exceeds file size %d - 8", l, size)
	}
	if l > metadataLimit {
		return nil, 0, formatErr("xpak: block of %d bytes exceeds the %d-byte metadata limit", l, metadataLimit)
	}
	block := make([]byte, l)
	start := size - 8 - l
	if err := readFull(r, block, start); err != nil {
		return nil, 0, err
	}
	entries, err = DecodeBlock(block)
	if err != nil {
		return nil, 0, err
	}
	return entries, start, nil
}

// appendBE32 and be32 are Portage's encodeint/decodeint: unsigned 32-bit
// big-endian.
func appendBE32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// readFull reads exactly len(p) bytes at off; a short read is truncation.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return wrapErr(io.ErrUnexpectedEOF, "truncated: read %d of %d bytes at offset %d", n, len(p), off)
	}
	return wrapErr(err, "read error at offset %d: %v", off, err)
}
