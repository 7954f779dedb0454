package xpak

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Format is the container format of a binary package.
type Format string

// Container formats Portage writes.
const (
	FormatXpak Format = "xpak"
	FormatGpkg Format = "gpkg"
)

// Compression names a compressor as BINPKG_COMPRESS spells it.
type Compression string

// Compressors Portage supports (plus "none" for a plain tar).
const (
	CompNone  Compression = "none" // plain tar
	CompBzip2 Compression = "bzip2"
	CompGzip  Compression = "gzip"
	CompLz4   Compression = "lz4"
	CompLzip  Compression = "lzip"
	CompLzop  Compression = "lzop"
	CompXz    Compression = "xz"
	CompZstd  Compression = "zstd"
)

// ErrUnsupportedCompression is returned (wrapped, naming the compressor) for
// compressors Portage knows but that have no pure-Go decoder here.
var ErrUnsupportedCompression = errors.New("unsupported compression")

// probeLen is how many leading bytes Probe needs at most (the lzop magic).
const probeLen = 9

var (
	magicBzip2     = []byte("BZh9")
	magicGzip      = []byte{0x1f, 0x8b}
	magicLz4       = []byte{0x04, 0x22, 0x4d, 0x18}
	magicLz4Legacy = []byte{0x02, 0x21, 0x4c, 0x18}
	magicLzip      = []byte("LZIP")
	magicLzop      = []byte{0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a}
	magicXz        = []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}
	magicZstdTail  = []byte{0xb5, 0x2f, 0xfd}
)

// Probe identifies a compressor by the magic at the start of head, with the
// same patterns as Portage's compression_probe. Notably only "BZh9" counts as
// bzip2 (other block sizes are not recognised by Portage either), and zstd is
// any of the frame magics 0x22..0x28 followed by B5 2F FD.
func Probe(head []byte) (c Compression, ok bool) {
	switch {
	case bytes.HasPrefix(head, magicBzip2):
		return CompBzip2, true
	case bytes.HasPrefix(head, magicGzip):
		return CompGzip, true
	case bytes.HasPrefix(head, magicLz4), bytes.HasPrefix(head, magicLz4Legacy):
		return CompLz4, true
	case bytes.HasPrefix(head, magicLzip):
		return CompLzip, true
	case bytes.HasPrefix(head, magicLzop):
		return CompLzop, true
	case bytes.HasPrefix(head, magicXz):
		return CompXz, true
	case len(head) >= 4 && head[0] >= 0x22 && head[0] <= 0x28 && bytes.Equal(head[1:4], magicZstdTail):
		return CompZstd, true
	}
	return "", false
}

// SuffixCompression maps a gpkg member suffix (as in "image.tar.zst") to its
// compressor; gpkg chooses the decompressor by name, not by magic.
func SuffixCompression(suffix string) (Compression, bool) {
	switch suffix {
	case "":
		return CompNone, true
	case ".zst":
		return CompZstd, true
	case ".xz":
		return CompXz, true
	case ".bz2":
		return CompBzip2, true
	case ".gz":
		return CompGzip, true
	case ".lz4":
		return CompLz4, true
	case ".lz":
		return CompLzip, true
	case ".lzo":
		return CompLzop, true
	}
	return "", false
}

// maxZstdWindow matches `zstd -d --long=31`, which Portage uses to decompress.
const maxZstdWindow = 1 << 31

// metadataZstdWindow caps the zstd window when decoding gpkg metadata. The
// decoder allocates the window the frame header declares up front, so an
// untrusted header could otherwise cost 2 GiB for a few KiB of metadata;
// 128 MiB (`--long`'s default) covers every standard zstd level.
const metadataZstdWindow = 1 << 27

// NewReader wraps r in a decompressor for c. Closing the result releases the
// decoder but never closes r.
func NewReader(c Compression, r io.Reader) (io.ReadCloser, error) {
	return newDecompressor(c, r, maxZstdWindow)
}

func newDecompressor(c Compression, r io.Reader, zstdWindow uint64) (io.ReadCloser, error) {
	switch c {
	case CompNone:
		return io.NopCloser(r), nil
	case CompZstd:
		// Concurrency 1 decodes synchronously: no goroutines that could
		// leak when a caller forgets Close.
		d, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(zstdWindow),
			zstd.WithDecoderMaxMemory(zstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return d.IOReadCloser(), nil
	case CompXz:
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.NopCloser(d), nil
	case CompBzip2:
		d, err := bzip2.NewReader(r, nil)
		if err != nil {
			return nil, fmt.Errorf("bzip2: %w", err)
		}
		return d, nil
	case CompGzip:
		d, err := gzip.NewReader(r) // multistream by default, like gzip -d
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return d, nil
	case CompLz4:
		return io.NopCloser(lz4.NewReader(r)), nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedCompression, string(c))
}

// metadataXzDict caps the LZMA2 dictionary when decoding gpkg metadata: the
// xz decoder allocates the dictionary its block headers declare (up to
// 4 GiB), so they are checked first. 128 MiB is twice `xz -9`'s.
const metadataXzDict = 1 << 27

// xzMaxDict returns the largest LZMA2 dictionary declared by any block of
// the (possibly concatenated, padded) xz streams in b. It walks the streams
// from the end through their footers and indexes, per the .xz format spec,
// since blocks need not record their own compressed size.
func xzMaxDict(b []byte) (uint64, error) {
	var maxDict uint64
	end := uint64(len(b))
	for end > 0 {
		for end >= 4 && string(b[end-4:end]) == "\x00\x00\x00\x00" {
			end -= 4 // stream padding
		}
		if end < 12+12 {
			return 0, errors.New("xz: truncated stream")
		}
		footer := b[end-12 : end]
		if footer[10] != 'Y' || footer[11] != 'Z' {
			return 0, errors.New("xz: missing stream footer")
		}
		backward := (uint64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
		if backward > end-24 {
			return 0, errors.New("xz: index size out of range")
		}
		idx := b[end-12-backward : end-12]
		if idx[0] != 0 {
			return 0, errors.New("xz: bad index indicator")
		}
		p := 1
		count, ok := readVLI(idx, &p)
		if !ok || count > uint64(len(idx)) {
			return 0, errors.New("xz: bad index record count")
		}
		padded := make([]uint64, 0, count)
		var blocks uint64
		for i := uint64(0); i < count; i++ {
			unpadded, ok1 := readVLI(idx, &p)
			_, ok2 := readVLI(idx, &p)
			if !ok1 || !ok2 || unpadded > 1<<62 {
				return 0, errors.New("xz: bad index record")
			}
			sz := (unpadded + 3) &^ 3
			padded = append(padded, sz)
			blocks += sz
			if blocks > end {
				return 0, errors.New("xz: index describes more data than present")
			}
		}
		if end-12-backward < blocks+12 {
			return 0, errors.New("xz: index describes more data than present")
		}
		start := end - 12 - backward - blocks - 12
		if !bytes.HasPrefix(b[start:], magicXz) {
			return 0, errors.New("xz: stream header not where the index says")
		}
		pos := start + 12
		for _, sz := range padded {
			d, err := xzBlockDict(b[pos : pos+sz])
			if err != nil {
				return 0, err
			}
			maxDict = max(maxDict, d)
			pos += sz
		}
		end = start
	}
	return maxDict, nil
}

// xzBlockDict reads the LZMA2 dictionary size from one block's header.
func xzBlockDict(blk []byte) (uint64, error) {
	if len(blk) < 2 || blk[0] == 0 {
		return 0, errors.New("xz: bad block header")
	}
	hsize := (int(blk[0]) + 1) * 4
	if hsize > len(blk) {
		return 0, errors.New("xz: block header beyond block")
	}
	h := blk[:hsize-4] // without CRC32
	flags := h[1]
	p := 2
	if flags&0x40 != 0 {
		if _, ok := readVLI(h, &p); !ok {
			return 0, errors.New("xz: bad block header")
		}
	}
	if flags&0x80 != 0 {
		if _, ok := readVLI(h, &p); !ok {
			return 0, errors.New("xz: bad block header")
		}
	}
	var dict uint64
	for f := 0; f <= int(flags&3); f++ {
		id, ok1 := readVLI(h, &p)
		n, ok2 := readVLI(h, &p)
		if !ok1 || !ok2 || n > uint64(len(h)-p) {
			return 0, errors.New("xz: bad filter flags")
		}
		props := h[p : p+int(n)]
		p += int(n)
		if id == 0x21 { // LZMA2
			if n != 1 || props[0] > 40 {
				return 0, errors.New("xz: bad LZMA2 properties")
			}
			if props[0] == 40 {
				dict = 1<<32 - 1
			} else {
				dict = uint64(2|props[0]&1) << (props[0]/2 + 11)
			}
		}
	}
	return dict, nil
}

// readVLI decodes an xz variable-length integer (7 bits a byte, at most 9).
func readVLI(b []byte, p *int) (uint64, bool) {
	var v uint64
	for i := 0; i < 9; i++ {
		if *p >= len(b) {
			return 0, false
		}
		c := b[*p]
		*p++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}
