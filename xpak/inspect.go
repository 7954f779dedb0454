package xpak

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// FormatError says in plain words why bytes are not an acceptable package.
type FormatError struct {
	Reason string
	// cause lets errors.Is see sentinels such as ErrNotXpak or
	// ErrUnsupportedCompression through the FormatError.
	cause error
}

func (e *FormatError) Error() string { return e.Reason }

// Unwrap returns the underlying sentinel or I/O error, if any.
func (e *FormatError) Unwrap() error { return e.cause }

func formatErr(format string, args ...any) *FormatError {
	return &FormatError{Reason: fmt.Sprintf(format, args...)}
}

func wrapErr(cause error, format string, args ...any) *FormatError {
	return &FormatError{Reason: fmt.Sprintf(format, args...), cause: cause}
}

// Info describes a parsed binary package.
type Info struct {
	Format      Format
	Compression Compression       // xpak: tarball's, by magic; gpkg: image member's, by suffix
	Signed      bool              // gpkg: a .sig member or a PGP-signed Manifest
	Metadata    map[string][]byte // key -> raw value bytes as stored
	GpkgDir     string            // gpkg: common directory of the members
}

// InspectOptions tunes Inspect.
type InspectOptions struct {
	// VerifyImage also hashes image members against the gpkg Manifest (slow; off for metadata reads).
	VerifyImage bool
	// Digests are member digests a GpkgHasher took from these same bytes as
	// they streamed in: the members they cover are not read again.
	Digests *MemberDigests
}

// Inspect decides the format by content and parses the package. Every error
// it returns is a *FormatError.
func Inspect(r io.ReaderAt, size int64, opt InspectOptions) (*Info, error) {
	if size < 0 {
		return nil, formatErr("negative file size %d", size)
	}
	hasTrailer, err := hasXpakTrailer(r, size)
	if err != nil {
		return nil, err
	}
	var head [512]byte
	isTar := false
	if size >= int64(len(head)) {
		if err := readFull(r, head[:], 0); err != nil {
			return nil, err
		}
		// The whole first header chain, not the first block alone: a GNU
		// long name or a PAX header (Portage writes the outer tar in GNU
		// format when the directory name is 154 characters or longer)
		// puts the first member's header after its own data.
		_, terr := tar.NewReader(io.NewSectionReader(r, 0, size)).Next()
		isTar = terr == nil
	}
	switch {
	case isTar && !hasTrailer:
		return inspectGpkg(r, size, opt)
	case isTar && bytes.Contains(head[:100], []byte("/gpkg-1\x00")):
		// Both shapes match (an xpak's tarball may be a plain tar); the
		// first member being <dir>/gpkg-1 is Portage's own gpkg sniff.
		return inspectGpkg(r, size, opt)
	case hasTrailer:
		return inspectXpak(r, size)
	}
	return nil, formatErr("file is neither xpak (no XPAKSTOP/STOP trailer) nor gpkg (not a tar archive)")
}

func hasXpakTrailer(r io.ReaderAt, size int64) (bool, error) {
	if size < trailerLen {
		return false, nil
	}
	var tr [trailerLen]byte
	if err := readFull(r, tr[:], size-trailerLen); err != nil {
		return false, err
	}
	return string(tr[0:8]) == magicStop && string(tr[12:16]) == trailerStop, nil
}

func inspectXpak(r io.ReaderAt, size int64) (*Info, error) {
	entries, tarLen, err := ReadXpak(r, size)
	if err != nil {
		return nil, err
	}
	info := &Info{Format: FormatXpak, Compression: CompNone, Metadata: make(map[string][]byte, len(entries))}
	for _, e := range entries {
		info.Metadata[e.Key] = e.Value
	}
	if tarLen == 0 {
		// Portage reads the metadata of such a file, but installing it
		// fails ("File compression header unrecognized"): every client
		// would download a package it cannot merge.
		return nil, formatErr("xpak: no tarball before the XPAK block (nothing a client could unpack)")
	}
	head := make([]byte, min(tarLen, 512))
	if err := readFull(r, head, 0); err != nil {
		return nil, err
	}
	if c, ok := Probe(head); ok {
		info.Compression = c
		return info, nil
	}
	if isPlainTar(head) {
		return info, nil
	}
	return nil, formatErr("xpak: tarball compression not recognised (first bytes % x)", head[:min(len(head), probeLen)])
}

// isPlainTar accepts a ustar/GNU/PAX header, or an all-zero first block
// (an empty archive), at the start of an xpak's tarball.
func isPlainTar(head []byte) bool {
	if len(head) < 512 {
		return false
	}
	if string(head[257:262]) == "ustar" {
		return true
	}
	for _, c := range head[:512] {
		if c != 0 {
			return false
		}
	}
	return true
}

// PayloadRange is where a package's payload lies: an xpak's tarball (before
// its XPAK block), a gpkg's image member. Portage's metadata updates
// (aux_update, update_metadata) rewrite the metadata and keep the payload's
// bytes, so two packages with equal payloads are one build.
func PayloadRange(r io.ReaderAt, size int64) (off, n int64, err error) {
	if ok, err := hasXpakTrailer(r, size); err != nil {
		return 0, 0, err
	} else if ok {
		_, tarLen, err := ReadXpak(r, size)
		return 0, tarLen, err
	}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return 0, 0, formatErr("gpkg: no image member")
		}
		if err != nil {
			return 0, 0, tarErr(err, "gpkg: reading tar header")
		}
		if _, base, _ := strings.Cut(hdr.Name, "/"); isImageMember(base) {
			pos, err := sr.Seek(0, io.SeekCurrent)
			if err != nil {
				return 0, 0, err
			}
			return pos, hdr.Size, nil
		}
	}
}
