package pieces

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"runtime"
)

// A cache file keeps the sealed chunks of a View, so that a process that
// starts can serve the index without rendering and compressing every entry
// again. Layout:
//
//	header   magic, version, info length, meta length, data length,
//	         CRC-32C of header and info, CRC-32C of meta (cacheHeaderLen bytes)
//	info     the caller's bytes (what the index was rendered from)
//	meta     per chunk: entries, key bytes, plain length, gzip length; then
//	         every chunk's key ends, every chunk's block ends, every key
//	data     per chunk: its plain bytes then its gzip member
//
// Loading reads header, info and meta only; the data stays in the file and
// is read like a store segment. The checksums cover everything but the data:
// a torn, truncated or foreign file is refused; the data is written before
// the file gets its name (atomic rename), so it is never half there.

var cacheMagic = [8]byte{'p', 'k', 'g', 'd', 'i', 'd', 'x', 0}

const (
	cacheVersion   = 1
	cacheHeaderLen = 40
	chunkMetaLen   = 24
	// maxCacheMeta bounds what a header may make a load allocate: far
	// above the meta of 10,000,000 entries.
	maxCacheMeta = 4 << 30
	maxCacheInfo = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCacheInvalid says a cache file is not one this package wrote, or is
// damaged; nothing of it is used.
var ErrCacheInvalid = errors.New("pieces: not a valid index cache")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCacheInvalid, fmt.Sprintf(format, a...))
}

// WriteCache writes the entries of v (not its header) and info to w in the
// cache format. The chunk bytes are copied through a small buffer: the heap
// does not grow by the index's size. ctx cancels it between chunks.
func (v *View) WriteCache(ctx context.Context, w io.Writer, info []byte) error {
	defer runtime.KeepAlive(v) // see read
	if v.refs != nil && v.refs.done.Load() {
		return ErrReleased
	}
	if len(info) > maxCacheInfo {
		return fmt.Errorf("pieces: cache info of %d bytes too large", len(info))
	}
	// Meta is streamed twice, to checksum it and to write it, so that it
	// need not be held whole either.
	mcrc := crc32.New(castagnoli)
	metaLen, err := v.writeMeta(mcrc)
	if err != nil {
		return err
	}
	if metaLen > maxCacheMeta {
		return fmt.Errorf("pieces: cache meta of %d bytes too large", metaLen)
	}
	var dataLen int64
	for _, c := range v.chunks {
		dataLen += c.plen + c.glen
	}
	var h [cacheHeaderLen]byte
	copy(h[:8], cacheMagic[:])
	binary.LittleEndian.PutUint32(h[8:], cacheVersion)
	binary.LittleEndian.PutUint32(h[12:], uint32(len(info)))
	binary.LittleEndian.PutUint64(h[16:], uint64(metaLen))
	binary.LittleEndian.PutUint64(h[24:], uint64(dataLen))
	icrc := crc32.Update(crc32.Checksum(h[:32], castagnoli), castagnoli, info)
	binary.LittleEndian.PutUint32(h[32:], icrc)
	binary.LittleEndian.PutUint32(h[36:], mcrc.Sum32())
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if _, err := w.Write(info); err != nil {
		return err
	}
	if _, err := v.writeMeta(w); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, c := range v.chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := c.plen + c.glen
		if c.seg == nil {
			if _, err := w.Write(c.mem[:n]); err != nil {
				return err
			}
			continue
		}
		for o := int64(0); o < n; {
			p := buf[:min(int64(len(buf)), n-o)]
			if _, err := c.readAt(p, o); err != nil {
				return err
			}
			if _, err := w.Write(p); err != nil {
				return err
			}
			o += int64(len(p))
		}
	}
	return nil
}

// writeMeta writes the meta section of v to w and returns its length.
func (v *View) writeMeta(w io.Writer) (int64, error) {
	var n int64
	var b [chunkMetaLen]byte
	put := func(p []byte) error {
		m, err := w.Write(p)
		n += int64(m)
		return err
	}
	for _, c := range v.chunks {
		binary.LittleEndian.PutUint32(b[0:], uint32(len(c.kend)))
		binary.LittleEndian.PutUint32(b[4:], uint32(len(c.keys)))
		binary.LittleEndian.PutUint64(b[8:], uint64(c.plen))
		binary.LittleEndian.PutUint64(b[16:], uint64(c.glen))
		if err := put(b[:]); err != nil {
			return n, err
		}
	}
	var ends []byte
	for _, c := range v.chunks {
		ends = ends[:0]
		for _, e := range c.kend {
			ends = binary.LittleEndian.AppendUint32(ends, e)
		}
		if err := put(ends); err != nil {
			return n, err
		}
	}
	for _, c := range v.chunks {
		ends = ends[:0]
		for _, e := range c.bend {
			ends = binary.LittleEndian.AppendUint32(ends, e)
		}
		if err := put(ends); err != nil {
			return n, err
		}
	}
	for _, c := range v.chunks {
		if err := put([]byte(c.keys)); err != nil {
			return n, err
		}
	}
	return n, nil
}

type cacheHeader struct {
	infoLen          int64
	metaLen, dataLen int64
	icrc, mcrc       uint32
	raw              [cacheHeaderLen]byte
}

func readCacheHeader(r io.ReaderAt) (*cacheHeader, []byte, error) {
	h := &cacheHeader{}
	if _, err := readFull(r, h.raw[:], 0); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, invalid("shorter than its header")
		}
		return nil, nil, err
	}
	if !bytes.Equal(h.raw[:8], cacheMagic[:]) {
		return nil, nil, invalid("no index cache magic")
	}
	if v := binary.LittleEndian.Uint32(h.raw[8:]); v != cacheVersion {
		return nil, nil, invalid("format version %d, want %d", v, cacheVersion)
	}
	h.infoLen = int64(binary.LittleEndian.Uint32(h.raw[12:]))
	h.metaLen = int64(binary.LittleEndian.Uint64(h.raw[16:]))
	h.dataLen = int64(binary.LittleEndian.Uint64(h.raw[24:]))
	h.icrc = binary.LittleEndian.Uint32(h.raw[32:])
	h.mcrc = binary.LittleEndian.Uint32(h.raw[36:])
	if h.infoLen > maxCacheInfo || h.metaLen > maxCacheMeta || h.metaLen < 0 || h.dataLen < 0 {
		return nil, nil, invalid("impossible lengths")
	}
	info := make([]byte, h.infoLen)
	if _, err := readFull(r, info, cacheHeaderLen); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, invalid("truncated")
		}
		return nil, nil, err
	}
	if crc32.Update(crc32.Checksum(h.raw[:32], castagnoli), castagnoli, info) != h.icrc {
		return nil, nil, invalid("header checksum mismatch")
	}
	return h, info, nil
}

// ReadCacheInfo returns the info of the cache file at path, checked, without
// reading the rest.
func ReadCacheInfo(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, info, err := readCacheHeader(f)
	return info, err
}

// LoadCache returns an Index holding the entries of the cache file at path,
// and the info it was written with. It reads the file's metadata only: the
// chunks' bytes are read from the file when served, like those of an old
// store segment, until changes or compaction (Dir mode) replace them; the
// file is never written to, and is kept open until no chunk and no View
// uses it. opts are as for New, for what changes next.
func LoadCache(path string, opts Options) (*Index, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	chunks, info, size, err := loadCache(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	x, err := New(opts)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	s := &seg{f: f}
	s.refs.Store(1)
	s.size.Store(size)
	for _, c := range chunks {
		c.seg = s
		s.live += c.plen + c.glen
		s.nchunks++
		x.n += len(c.kend)
	}
	x.chunks = chunks
	if len(chunks) == 0 {
		s.release()
	} else {
		// The file is an old segment: chunks leave it as they change, or as
		// compaction moves them into the Index's own store.
		x.old = s
	}
	return x, info, nil
}

// loadCache parses and checks a cache file's metadata; the chunks it returns
// have offsets into f but no segment yet.
func loadCache(f *os.File) (chunks []*chunk, info []byte, size int64, err error) {
	h, info, err := readCacheHeader(f)
	if err != nil {
		return nil, nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, nil, 0, err
	}
	dataOff := cacheHeaderLen + h.infoLen + h.metaLen
	if st.Size() != dataOff+h.dataLen {
		return nil, nil, 0, invalid("%d bytes, its header says %d", st.Size(), dataOff+h.dataLen)
	}
	meta := make([]byte, h.metaLen)
	if _, err := readFull(f, meta, cacheHeaderLen+h.infoLen); err != nil {
		return nil, nil, 0, err
	}
	if crc32.Checksum(meta, castagnoli) != h.mcrc {
		return nil, nil, 0, invalid("metadata checksum mismatch")
	}
	// Count the chunks: the fixed part ends where the key ends begin.
	var entries, keyBytes, nchunks int64
	rest := int64(len(meta))
	for off := int64(0); ; off += chunkMetaLen {
		// 8 bytes of ends per entry and the keys follow the fixed part.
		if rest-off == 8*entries+keyBytes {
			nchunks = off / chunkMetaLen
			break
		}
		if off+chunkMetaLen > rest {
			return nil, nil, 0, invalid("metadata does not add up")
		}
		b := meta[off:]
		n := int64(binary.LittleEndian.Uint32(b[0:]))
		if n == 0 {
			return nil, nil, 0, invalid("empty chunk")
		}
		entries += n
		keyBytes += int64(binary.LittleEndian.Uint32(b[4:]))
	}
	fixed := nchunks * chunkMetaLen
	kends := decodeU32(meta[fixed : fixed+4*entries])
	bends := decodeU32(meta[fixed+4*entries : fixed+8*entries])
	keys := string(meta[fixed+8*entries:])
	chunks = make([]*chunk, nchunks)
	var e, k, off int64
	prev := ""
	for i := range chunks {
		b := meta[int64(i)*chunkMetaLen:]
		n := int64(binary.LittleEndian.Uint32(b[0:]))
		kl := int64(binary.LittleEndian.Uint32(b[4:]))
		plen := int64(binary.LittleEndian.Uint64(b[8:]))
		glen := int64(binary.LittleEndian.Uint64(b[16:]))
		if plen > math.MaxUint32 || glen <= 0 || glen > h.dataLen || off+plen+glen > h.dataLen {
			return nil, nil, 0, invalid("chunk %d: lengths out of range", i)
		}
		c := &chunk{keys: keys[k : k+kl], kend: kends[e : e+n : e+n], bend: bends[e : e+n : e+n],
			plen: plen, glen: glen, off: dataOff + off}
		if !ascending(c.kend, uint32(kl)) || !ascending(c.bend, uint32(plen)) {
			return nil, nil, 0, invalid("chunk %d: entry ends out of order", i)
		}
		for j := range c.kend {
			key := c.key(j)
			if (i > 0 || j > 0) && key <= prev {
				return nil, nil, 0, invalid("chunk %d: keys out of order", i)
			}
			prev = key
		}
		chunks[i] = c
		e, k, off = e+n, k+kl, off+plen+glen
	}
	if off != h.dataLen {
		return nil, nil, 0, invalid("chunks hold %d bytes, the header says %d", off, h.dataLen)
	}
	return chunks, info, st.Size(), nil
}

func decodeU32(b []byte) []uint32 {
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// ascending tells whether ends never go back and the last is last.
func ascending(ends []uint32, last uint32) bool {
	var p uint32
	for _, e := range ends {
		if e < p {
			return false
		}
		p = e
	}
	return p == last
}
