package xpak

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/blake2b"
)

const (
	pgpSignedBegin = "-----BEGIN PGP SIGNED MESSAGE-----"
	pgpSigBegin    = "-----BEGIN PGP SIGNATURE-----"
	pgpSigEnd      = "-----END PGP SIGNATURE-----"
)

// gpkgMember is one member of the outer tar as verification needs it.
type gpkgMember struct {
	base   string
	size   int64
	hashed bool
	blake  []byte
	sha    []byte
}

// manifestRecord is one "DATA name size HASH hex ..." line.
type manifestRecord struct {
	size   int64
	hashes map[string]string
}

// inspectGpkg runs the checks Portage's _verify_binpkg runs before any
// metadata read, then reads the metadata member.
func inspectGpkg(r io.ReaderAt, size int64, opt InspectOptions) (*Info, error) {
	var magic [8]byte
	if err := readFull(r, magic[:], 257); err != nil {
		return nil, err
	}
	// Portage accepts only these at offset 0x101 (ustar, PAX is ustar too, GNU).
	if string(magic[:]) != "ustar\x0000" && string(magic[:]) != "ustar  \x00" {
		return nil, formatErr("gpkg: outer tar is not ustar, PAX or GNU format")
	}

	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	var (
		members  []*gpkgMember
		byBase   = make(map[string]*gpkgMember)
		prefix   string
		manifest []byte
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, tarErr(err, "gpkg: reading tar header after %d members", len(members))
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // a PAX global header is not a member
		}
		name := hdr.Name
		if strings.HasPrefix(name, "/") || strings.Count(name, "/") != 1 {
			return nil, formatErr("gpkg: member %q is not of the form <dir>/<name>", name)
		}
		dir, base, _ := strings.Cut(name, "/")
		if dir == "" || dir == "." || dir == ".." || base == "." || base == ".." || !utf8.ValidString(name) {
			return nil, formatErr("gpkg: member %q: an unsafe or non-UTF-8 name", name)
		}
		if hdr.Typeflag == tar.TypeDir || base == "" {
			return nil, formatErr("gpkg: directory member %q", name)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			return nil, formatErr("gpkg: member %q is not a regular file (tar type %q)", name, hdr.Typeflag)
		}
		if prefix == "" {
			prefix = dir
		} else if dir != prefix {
			return nil, formatErr("gpkg: member %q is outside the common directory %q", name, prefix)
		}
		if byBase[base] != nil {
			return nil, formatErr("gpkg: duplicate member %q", name)
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, wrapErr(err, "read error: %v", err)
		}
		if hdr.Size > size-pos {
			return nil, formatErr("truncated: gpkg member %s: %d bytes at offset %d run past file size %d", name, hdr.Size, pos, size)
		}
		m := &gpkgMember{base: base, size: hdr.Size}
		members = append(members, m)
		byBase[base] = m
		streamed := opt.Digests.lookup(name, pos, hdr.Size)
		switch {
		case base == "Manifest":
			if hdr.Size > metadataLimit {
				return nil, formatErr("gpkg: Manifest of %d bytes exceeds the %d-byte metadata limit", hdr.Size, metadataLimit)
			}
			manifest = make([]byte, hdr.Size)
			if _, err := io.ReadFull(tr, manifest); err != nil {
				return nil, tarErr(err, "gpkg: reading %s", name)
			}
		case isImageMember(base) && !opt.VerifyImage:
			// Metadata reads only size-check the image, as Portage does.
		case streamed != nil:
			// Hashed as the bytes came in: not read a second time.
			m.hashed, m.blake, m.sha = true, streamed.BLAKE2B, streamed.SHA512
		default:
			bh, _ := blake2b.New512(nil)
			sh := sha512.New()
			if _, err := io.Copy(io.MultiWriter(bh, sh), tr); err != nil {
				return nil, tarErr(err, "gpkg: reading %s", name)
			}
			m.hashed, m.blake, m.sha = true, bh.Sum(nil), sh.Sum(nil)
		}
	}
	if len(members) == 0 {
		return nil, formatErr("gpkg: tar archive has no members")
	}
	if byBase["gpkg-1"] == nil {
		return nil, formatErr("gpkg: no gpkg-1 member (and no XPAK trailer)")
	}
	if members[0].base != "gpkg-1" {
		// GLEP 78: the format is told by its first member.
		return nil, formatErr("gpkg: the first member is %s/%s, not %s/gpkg-1", prefix, members[0].base, prefix)
	}
	if byBase["Manifest"] == nil {
		return nil, formatErr("gpkg: missing %s/Manifest", prefix)
	}
	records, signed, err := parseManifest(manifest)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.base == "Manifest" {
			continue
		}
		if err := checkMember(prefix, m, records[m.base]); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(records)) {
		if byBase[name] == nil {
			return nil, formatErr("gpkg: Manifest lists %s but the package has no member %s/%s", name, prefix, name)
		}
	}

	info := &Info{Format: FormatGpkg, GpkgDir: prefix, Signed: signed}
	var metaName string
	var metaComp Compression
	for _, m := range members {
		if strings.HasSuffix(m.base, ".sig") {
			info.Signed = true
			continue
		}
		for _, kind := range []string{"metadata", "image"} {
			suffix, ok := strings.CutPrefix(m.base, kind+".tar")
			if !ok {
				continue
			}
			c, ok := SuffixCompression(suffix)
			if !ok {
				return nil, formatErr("gpkg: member %s/%s: unknown compression suffix %q", prefix, m.base, suffix)
			}
			if kind == "metadata" {
				if metaName != "" {
					return nil, formatErr("gpkg: two metadata members %s and %s", metaName, m.base)
				}
				metaName, metaComp = m.base, c
			} else {
				if info.Compression != "" {
					return nil, formatErr("gpkg: more than one image member (%s)", m.base)
				}
				info.Compression = c
			}
		}
	}
	if metaName == "" {
		return nil, formatErr("gpkg: no metadata member (%s/metadata.tar[.ext])", prefix)
	}
	if info.Compression == "" {
		return nil, formatErr("gpkg: no image member (%s/image.tar[.ext])", prefix)
	}
	info.Metadata, err = readGpkgMetadata(r, size, prefix+"/"+metaName, metaComp)
	if err != nil {
		return nil, err
	}
	return info, nil
}

func isImageMember(base string) bool {
	return strings.HasPrefix(base, "image.tar") && !strings.HasSuffix(base, ".sig")
}

// tarErr turns an archive/tar error into a FormatError; running out of bytes
// is reported as truncation.
func tarErr(err error, format string, args ...any) *FormatError {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fe
	}
	e := formatErr(format, args...)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		e.Reason = "truncated: " + e.Reason
	}
	e.Reason += ": " + err.Error()
	e.cause = err
	return e
}

func checkMember(prefix string, m *gpkgMember, rec *manifestRecord) error {
	name := prefix + "/" + m.base
	if rec == nil {
		return formatErr("gpkg: member %s is not listed in the Manifest", name)
	}
	if rec.size != m.size {
		return formatErr("gpkg: member %s: size %d differs from Manifest size %d", name, m.size, rec.size)
	}
	supported := 0
	// A fixed order, so the same file always gets the same message. Portage
	// knows more hashes; we check the defaults it writes.
	for _, algo := range []string{"BLAKE2B", "SHA512"} {
		want, ok := rec.hashes[algo]
		if !ok {
			continue
		}
		got := m.blake
		if algo == "SHA512" {
			got = m.sha
		}
		supported++
		if !m.hashed {
			continue
		}
		w, err := hex.DecodeString(want)
		if err != nil || !bytes.Equal(w, got) {
			return formatErr("gpkg: member %s: %s hash does not match the Manifest", name, algo)
		}
	}
	if supported == 0 {
		return formatErr("gpkg: Manifest entry for %s has no BLAKE2B or SHA512 hash", name)
	}
	return nil
}

// ManifestEntry is one DATA line of a gpkg Manifest: a member's size and
// its hashes by name (BLAKE2B, SHA512, ...), hex as written.
type ManifestEntry struct {
	Size   int64
	Hashes map[string]string
}

// ParseManifest parses a gpkg Manifest by Inspect's rules, unwrapping a
// clear-signed one (whose signature it does not check), and returns its
// entries by member base name; signed tells whether it was clear-signed.
func ParseManifest(b []byte) (entries map[string]ManifestEntry, signed bool, err error) {
	records, signed, err := parseManifest(b)
	if err != nil {
		return nil, signed, err
	}
	entries = make(map[string]ManifestEntry, len(records))
	for name, r := range records {
		entries[name] = ManifestEntry{Size: r.size, Hashes: r.hashes}
	}
	return entries, signed, nil
}

// parseManifest parses a gpkg Manifest, unwrapping a PGP clear-signed one.
// The signature itself is not verified (no keys here).
func parseManifest(b []byte) (map[string]*manifestRecord, bool, error) {
	text := string(b)
	signed := strings.Contains(text, pgpSignedBegin)
	lines := strings.Split(text, "\n")
	if signed {
		var err error
		if lines, err = clearSignedBody(lines); err != nil {
			return nil, true, err
		}
	}
	records := make(map[string]*manifestRecord)
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "DATA" {
			return nil, signed, formatErr("gpkg: Manifest line %d does not start with DATA", i+1)
		}
		if len(f) < 3 || len(f)%2 == 0 {
			return nil, signed, formatErr("gpkg: Manifest line %d is not DATA <name> <size> {<hash> <hex>}", i+1)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			return nil, signed, formatErr("gpkg: Manifest line %d: size %q is not an integer", i+1, f[2])
		}
		if records[f[1]] != nil {
			return nil, signed, formatErr("gpkg: Manifest lists %s twice", f[1])
		}
		rec := &manifestRecord{size: size, hashes: make(map[string]string)}
		for j := 3; j < len(f); j += 2 {
			rec.hashes[f[j]] = f[j+1]
		}
		records[f[1]] = rec
	}
	return records, signed, nil
}

// clearSignedBody returns the signed text of an OpenPGP clear-signed message
// (RFC 4880 §7): after the armour header block, up to the signature, with
// dash-escaping undone.
func clearSignedBody(lines []string) ([]string, error) {
	trim := func(s string) string { return strings.TrimRight(s, " \t\r") }
	i := 0
	for i < len(lines) && trim(lines[i]) == "" {
		i++
	}
	if i == len(lines) || trim(lines[i]) != pgpSignedBegin {
		return nil, formatErr("gpkg: signed Manifest does not start with %s", pgpSignedBegin)
	}
	// Armour headers ("Hash: SHA512") end at the first blank line.
	for i++; i < len(lines) && trim(lines[i]) != ""; i++ {
		if !strings.Contains(lines[i], ": ") {
			return nil, formatErr("gpkg: signed Manifest has a malformed armour header line %d", i+1)
		}
	}
	if i == len(lines) {
		return nil, formatErr("gpkg: signed Manifest has no blank line after its armour headers")
	}
	var body []string
	for i++; i < len(lines) && trim(lines[i]) != pgpSigBegin; i++ {
		body = append(body, strings.TrimPrefix(lines[i], "- "))
	}
	if i == len(lines) {
		return nil, formatErr("gpkg: signed Manifest has no %s", pgpSigBegin)
	}
	for ; i < len(lines) && trim(lines[i]) != pgpSigEnd; i++ {
	}
	if i == len(lines) {
		return nil, formatErr("gpkg: signed Manifest has no %s", pgpSigEnd)
	}
	for i++; i < len(lines); i++ {
		if trim(lines[i]) != "" {
			return nil, formatErr("gpkg: signed Manifest has text after its signature")
		}
	}
	return body, nil
}

// errMetadataTooLarge marks decompressed metadata beyond metadataLimit.
var errMetadataTooLarge = errors.New("decompressed metadata exceeds the limit")

// boundedReader passes through at most n bytes and fails (rather than
// silently truncating) if the source has more.
type boundedReader struct {
	r io.Reader
	n int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		// Probe for one more byte to tell "exactly at the limit" from
		// "beyond it"; bounded, as a decoder could keep returning (0, nil).
		var one [1]byte
		for range 100 {
			n, err := b.r.Read(one[:])
			if n > 0 {
				return 0, errMetadataTooLarge
			}
			if err != nil {
				return 0, err
			}
		}
		return 0, io.ErrNoProgress
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// readGpkgMetadata decompresses the metadata member and reads its inner tar of
// metadata/KEY files, holding at most metadataLimit decompressed bytes.
func readGpkgMetadata(r io.ReaderAt, size int64, member string, comp Compression) (map[string][]byte, error) {
	tr := tar.NewReader(io.NewSectionReader(r, 0, size))
	for {
		hdr, err := tr.Next()
		if err != nil {
			// Verification already walked these headers, so this is a
			// file changing underneath us.
			return nil, tarErr(err, "gpkg: metadata member %s vanished", member)
		}
		if hdr.Name == member && hdr.Typeflag != tar.TypeXGlobalHeader {
			if comp == CompXz {
				src, err := xzMetadataSource(tr, hdr.Size, member)
				if err != nil {
					return nil, err
				}
				return decodeMetadata(src, member, comp)
			}
			return decodeMetadata(tr, member, comp)
		}
	}
}

// xzMetadataSource loads an xz metadata member and refuses dictionaries the
// decoder would have to allocate beyond metadataXzDict.
func xzMetadataSource(r io.Reader, size int64, member string) (io.Reader, error) {
	if size > metadataLimit {
		return nil, formatErr("gpkg: metadata member %s of %d bytes exceeds the %d-byte metadata limit", member, size, metadataLimit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, tarErr(err, "gpkg: reading %s", member)
	}
	d, err := xzMaxDict(b)
	if err != nil {
		return nil, wrapErr(err, "gpkg: metadata member %s: not valid xz data: %v", member, err)
	}
	if d > metadataXzDict {
		return nil, formatErr("gpkg: metadata member %s: xz dictionary of %d bytes exceeds %d", member, d, metadataXzDict)
	}
	return bytes.NewReader(b), nil
}

func decodeMetadata(src io.Reader, member string, comp Compression) (map[string][]byte, error) {
	dec, err := newDecompressor(comp, src, metadataZstdWindow)
	if err != nil {
		if errors.Is(err, ErrUnsupportedCompression) {
			return nil, wrapErr(err, "gpkg: metadata member %s: %v", member, err)
		}
		return nil, wrapErr(err, "gpkg: metadata member %s: not valid %s data: %v", member, comp, err)
	}
	defer dec.Close()
	lim := &boundedReader{r: dec, n: metadataLimit}
	itr := tar.NewReader(lim)
	meta := make(map[string][]byte)
	tooBig := func() error {
		return wrapErr(errMetadataTooLarge, "gpkg: metadata member %s decompresses to more than the %d-byte metadata limit", member, metadataLimit)
	}
	for {
		h, err := itr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errMetadataTooLarge) {
			return nil, tooBig()
		}
		if err != nil {
			return nil, tarErr(err, "gpkg: metadata member %s: inner tar", member)
		}
		switch h.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeDir:
			if strings.TrimSuffix(h.Name, "/") == "metadata" {
				continue
			}
			return nil, formatErr("gpkg: metadata member %s: unexpected directory %q", member, h.Name)
		case tar.TypeReg, tar.TypeRegA:
		default:
			return nil, formatErr("gpkg: metadata member %s: %q is not a regular file", member, h.Name)
		}
		key, ok := strings.CutPrefix(h.Name, "metadata/")
		if !ok || key == "" || strings.Contains(key, "/") {
			return nil, formatErr("gpkg: metadata member %s: entry %q is not metadata/<KEY>", member, h.Name)
		}
		// Keys become file names on clients, as an XPAK's do.
		if err := checkKey(key); err != nil {
			return nil, formatErr("gpkg: metadata member %s: %v", member, err)
		}
		if _, dup := meta[key]; dup {
			return nil, formatErr("gpkg: metadata member %s: duplicate key %q", member, key)
		}
		if h.Size > lim.n {
			return nil, tooBig()
		}
		v := make([]byte, h.Size)
		if _, err := io.ReadFull(itr, v); err != nil {
			if errors.Is(err, errMetadataTooLarge) {
				return nil, tooBig()
			}
			return nil, tarErr(err, "gpkg: metadata member %s: reading %s", member, h.Name)
		}
		meta[key] = v
	}
	// The inner tar ends before the compressed stream does: read that to
	// its end too, so that the format's own checks (gzip's CRC-32 and
	// size, bzip2's and xz's CRCs, zstd's and lz4's content checksums) and
	// a cut-off stream are noticed, not taken for good metadata.
	if _, err := io.Copy(io.Discard, lim); err != nil {
		if errors.Is(err, errMetadataTooLarge) {
			return nil, tooBig()
		}
		return nil, wrapErr(err, "gpkg: metadata member %s: not valid %s data: %v", member, comp, err)
	}
	return meta, nil
}
