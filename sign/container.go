package sign

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"pkgdirfs/xpak"
)

// manifestLimit bounds the Manifest read into memory: a real one is a few
// lines.
const manifestLimit = 1 << 20

// member is one member of a gpkg's outer tar and where its bytes lie.
type member struct {
	name  string // as in its header: <dir>/<base>
	base  string
	start int64 // its first header block (a PAX or GNU long-name chain, or a global header, included)
	data  int64 // its data
	size  int64
}

// end is the offset after its data's padding.
func (m *member) end() int64 { return m.data + (m.size+511)&^511 }

// container is a gpkg's outer tar as signing and verification read it.
type container struct {
	dir      string
	members  []*member
	byBase   map[string]*member
	gnu      bool   // the outer tar is GNU format (else ustar or PAX)
	manifest []byte // the Manifest member's bytes
}

// readContainer reads the member headers of the gpkg in r (seeking past the
// data) and the Manifest. Packages come here after Inspect checked them, so
// it checks only what it relies on.
func readContainer(r io.ReaderAt, size int64) (*container, error) {
	var magic [8]byte
	if _, err := r.ReadAt(magic[:], 257); err != nil {
		return nil, fmt.Errorf("gpkg: reading the first tar header: %w", err)
	}
	c := &container{byBase: map[string]*member{}, gnu: string(magic[:]) == "ustar  \x00"}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	var next int64 // where the next member's header chain starts
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("gpkg: reading tar header: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // copied with the header chain that follows it
		}
		dir, base, ok := strings.Cut(hdr.Name, "/")
		if !ok || dir == "" || base == "" || strings.Contains(base, "/") {
			return nil, fmt.Errorf("gpkg: member %q is not of the form <dir>/<name>", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			return nil, fmt.Errorf("gpkg: member %q is not a regular file", hdr.Name)
		}
		if c.dir == "" {
			c.dir = dir
		} else if dir != c.dir {
			return nil, fmt.Errorf("gpkg: member %q is outside the common directory %q", hdr.Name, c.dir)
		}
		if c.byBase[base] != nil {
			return nil, fmt.Errorf("gpkg: duplicate member %q", hdr.Name)
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		if hdr.Size < 0 || hdr.Size > size-pos {
			return nil, fmt.Errorf("gpkg: member %q runs past the end of the file", hdr.Name)
		}
		m := &member{name: hdr.Name, base: base, start: next, data: pos, size: hdr.Size}
		next = m.end()
		c.members = append(c.members, m)
		c.byBase[base] = m
		if base == "Manifest" {
			if hdr.Size > manifestLimit {
				return nil, fmt.Errorf("gpkg: Manifest of %d bytes is larger than %d", hdr.Size, manifestLimit)
			}
			c.manifest = make([]byte, hdr.Size)
			if _, err := io.ReadFull(tr, c.manifest); err != nil {
				return nil, fmt.Errorf("gpkg: reading the Manifest: %w", err)
			}
		}
	}
	if c.byBase["gpkg-1"] == nil || c.byBase["Manifest"] == nil {
		return nil, errors.New("gpkg: no gpkg-1 or no Manifest member")
	}
	return c, nil
}

// signed tells whether the container carries any signature: a .sig member
// or a clear-signed Manifest (Portage's own test).
func (c *container) signed() bool {
	for _, m := range c.members {
		if strings.HasSuffix(m.base, ".sig") {
			return true
		}
	}
	return bytes.Contains(c.manifest, []byte("-----BEGIN PGP SIGNATURE-----"))
}

// Signed tells whether the gpkg in r carries a signature (a .sig member or
// a clear-signed Manifest), reading only its headers and Manifest.
func Signed(r io.ReaderAt, size int64) (bool, error) {
	c, err := readContainer(r, size)
	if err != nil {
		return false, err
	}
	return c.signed(), nil
}

// ContentKey names the build a gpkg carries, whatever its signatures: its
// members other than gpkg-1, the Manifest and the .sig files, each with its
// size and Manifest hashes. An unsigned gpkg and the same package signed on
// arrival have the same key, so bytes written again are known as the build
// already held although signing them again would give other bytes. The
// Manifest is trusted: Inspect checked the members against it when the
// package came in.
func ContentKey(r io.ReaderAt, size int64) (string, error) {
	c, err := readContainer(r, size)
	if err != nil {
		return "", err
	}
	entries, _, err := xpak.ParseManifest(c.manifest)
	if err != nil {
		return "", err
	}
	var lines []string
	for name, e := range entries {
		if name == "gpkg-1" || name == "Manifest" || strings.HasSuffix(name, ".sig") {
			continue
		}
		lines = append(lines, name+" "+entryText(e))
	}
	if len(lines) == 0 {
		return "", errors.New("gpkg: the Manifest lists no content")
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// entryText renders a Manifest entry after its name: size, then BLAKE2B and
// SHA512 (the order Portage's defaults print in), then any other hashes by
// name; hex in lower case.
func entryText(e xpak.ManifestEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", e.Size)
	names := make([]string, 0, len(e.Hashes))
	for h := range e.Hashes {
		names = append(names, h)
	}
	rank := func(h string) int { return slices.Index([]string{"BLAKE2B", "SHA512"}, h) + 1 }
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if (ri == 0) != (rj == 0) {
			return ri != 0
		}
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	for _, h := range names {
		b.WriteString(" " + h + " " + strings.ToLower(e.Hashes[h]))
	}
	return b.String()
}
