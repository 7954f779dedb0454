package xpak

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"errors"
	"hash"
	"io"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// MemberDigest is what a streaming pass learned about one member of a gpkg's
// outer tar: where its data lies and the Manifest hashes of that data.
type MemberDigest struct {
	Name    string // as in the tar header
	Offset  int64  // of the member's data in the file
	Size    int64
	BLAKE2B []byte
	SHA512  []byte
}

// MemberDigests are the digests of the members whose data a streaming pass
// saw whole. Inspect uses one only where the member it reads has the same
// name, data offset and size; any other member it hashes itself, so the
// digests are a cache that can make no verdict differ.
type MemberDigests struct {
	list []MemberDigest
}

// Len is the number of members with digests.
func (d *MemberDigests) Len() int {
	if d == nil {
		return 0
	}
	return len(d.list)
}

// All returns the digests in file order.
func (d *MemberDigests) All() []MemberDigest {
	if d == nil {
		return nil
	}
	return d.list
}

func (d *MemberDigests) lookup(name string, off, size int64) *MemberDigest {
	if d == nil {
		return nil
	}
	for i := range d.list {
		m := &d.list[i]
		if m.Offset == off && m.Size == size && m.Name == name {
			return m
		}
	}
	return nil
}

const (
	// streamMaxMembers bounds what a hostile tar of tiny members can make us
	// keep; a gpkg has at most six members (GLEP 78).
	streamMaxMembers = 64
	// streamMaxHeader bounds the bytes of one header chain (PAX or GNU long
	// names precede the real header); archive/tar refuses special files
	// beyond 1 MiB anyway.
	streamMaxHeader = 1<<20 + 8<<10
)

type streamState uint8

const (
	stHeader streamState = iota // collecting a header chain in acc
	stData                      // hashing a member's data
	stPad                       // skipping the padding to the next block
	stDone                      // end of archive, or given up
)

// GpkgHasher digests the members of a gpkg's outer tar from the file's bytes
// written to it in order, so the Manifest check needs no second read of the
// image. Headers are parsed by archive/tar, as Inspect parses them; on
// anything it does not expect (not a tar, a first member other than
// <dir>/gpkg-1, a member that is not a plain file) it stops, and Inspect
// reads those members itself. Write never fails.
type GpkgHasher struct {
	off     int64 // bytes written so far
	state   streamState
	acc     []byte // the header chain being collected, from accOff
	accOff  int64
	cur     MemberDigest
	left    int64 // data bytes of cur still to come
	pad     int64 // padding bytes still to skip
	members int
	blake   hash.Hash
	sha     hash.Hash
	done    []MemberDigest
}

// NewGpkgHasher returns a hasher for a file's bytes from offset 0.
func NewGpkgHasher() *GpkgHasher {
	bh, _ := blake2b.New512(nil)
	return &GpkgHasher{blake: bh, sha: sha512.New()}
}

// Reset makes h ready for another file.
func (h *GpkgHasher) Reset() {
	*h = GpkgHasher{blake: h.blake, sha: h.sha, acc: h.acc[:0]}
}

// Digests returns the digests of every member seen whole so far; nil if none.
func (h *GpkgHasher) Digests() *MemberDigests {
	if len(h.done) == 0 {
		return nil
	}
	return &MemberDigests{list: append([]MemberDigest(nil), h.done...)}
}

// Write consumes the next bytes of the file.
func (h *GpkgHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && h.state != stDone {
		switch h.state {
		case stHeader:
			// Collect up to the next block boundary, then try to parse.
			need := 512 - len(h.acc)%512
			k := min(need, len(p))
			h.acc = append(h.acc, p[:k]...)
			p = p[k:]
			h.off += int64(k)
			if len(h.acc)%512 == 0 {
				p = h.parseHeader(p)
			}
		case stData:
			k := int(min(h.left, int64(len(p))))
			h.blake.Write(p[:k])
			h.sha.Write(p[:k])
			p = p[k:]
			h.off += int64(k)
			h.left -= int64(k)
			if h.left == 0 {
				h.endMember()
			}
		case stPad:
			k := int(min(h.pad, int64(len(p))))
			p = p[k:]
			h.off += int64(k)
			h.pad -= int64(k)
			if h.pad == 0 {
				h.startHeader()
			}
		}
	}
	h.off += int64(len(p)) // after the end: not looked at
	return n, nil
}

// nopSeek hides bytes.Reader's Seek: archive/tar would seek past the end of
// what arrived so far instead of reporting it short.
type nopSeek struct{ r *bytes.Reader }

func (n nopSeek) Read(p []byte) (int, error) { return n.r.Read(p) }

// parseHeader tries to read a header chain from acc. rest is the input not
// yet consumed; it returns what is left of it.
func (h *GpkgHasher) parseHeader(rest []byte) []byte {
	br := bytes.NewReader(h.acc)
	tr := tar.NewReader(nopSeek{br})
	var hdr *tar.Header
	var err error
	for {
		hdr, err = tr.Next()
		if err != nil || hdr.Typeflag != tar.TypeXGlobalHeader {
			break
		}
	}
	if err != nil {
		switch {
		case bytes.Equal(h.acc[:512], zeroBlock[:]) && len(h.acc) >= 1024:
			h.state = stDone // two zero blocks: the end of the archive
		case (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && len(h.acc) < streamMaxHeader:
			// More of the chain (or the second end block) is to come.
		default:
			h.state = stDone
		}
		return rest
	}
	consumed := len(h.acc) - br.Len()
	if !h.plainMember(hdr) {
		h.state = stDone
		return rest
	}
	h.members++
	h.cur = MemberDigest{Name: hdr.Name, Offset: h.accOff + int64(consumed), Size: hdr.Size}
	h.left = hdr.Size
	h.pad = -hdr.Size & 511
	h.blake.Reset()
	h.sha.Reset()
	h.state = stData
	// Bytes past the header (none when parsing at the first block boundary
	// that completes it) are the member's data: hand them back.
	extra := h.acc[consumed:]
	h.off -= int64(len(extra))
	if len(extra) > 0 {
		rest = append(append([]byte(nil), extra...), rest...)
	}
	h.acc = h.acc[:0]
	if h.left == 0 {
		h.endMember()
	}
	return rest
}

var zeroBlock [512]byte

// plainMember tells whether hdr is a member whose data is its Size bytes as
// stored, in a tar that can be a gpkg.
func (h *GpkgHasher) plainMember(hdr *tar.Header) bool {
	if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
		return false
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return false // stored data differs from the file's content
		}
	}
	if hdr.Size < 0 || h.members >= streamMaxMembers {
		return false
	}
	// A gpkg starts with <dir>/gpkg-1 (GLEP 78); anything else (an xpak's
	// plain tarball) is not worth hashing.
	if h.members == 0 && !strings.HasSuffix(hdr.Name, "/gpkg-1") {
		return false
	}
	return true
}

func (h *GpkgHasher) endMember() {
	h.cur.BLAKE2B = h.blake.Sum(nil)
	h.cur.SHA512 = h.sha.Sum(nil)
	h.done = append(h.done, h.cur)
	if h.pad > 0 {
		h.state = stPad
	} else {
		h.startHeader()
	}
}

func (h *GpkgHasher) startHeader() {
	h.state = stHeader
	h.acc = h.acc[:0]
	h.accOff = h.off
}
