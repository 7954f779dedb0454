package layout

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// fixturesDir is testdata/fixtures at the repository root (the test runs in
// the package directory, one level below it); PKGDIRFS_FIXTURES overrides it.
func fixturesDir() string {
	if d := os.Getenv("PKGDIRFS_FIXTURES"); d != "" {
		return d
	}
	return filepath.Join("..", "testdata", "fixtures")
}

// fixtureFile is one extracted member of a fixture PKGDIR.
type fixtureFile struct {
	rel     string // relative to the PKGDIR root
	abs     string
	mtime   time.Time
	size    int64
	symlink bool
}

// extractFixture unpacks a fixture tarball into dir and returns the PKGDIR
// root and its files. Each tarball holds one top-level directory.
func extractFixture(t *testing.T, tarPath, dir string) (string, []fixtureFile) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var files []fixtureFile
	root := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := path.Clean(h.Name)
		if strings.HasPrefix(name, "..") || path.IsAbs(name) {
			t.Fatalf("unsafe member %q", h.Name)
		}
		top, rel, _ := strings.Cut(name, "/")
		if root == "" {
			root = top
		} else if top != root {
			t.Fatalf("%s: more than one top-level directory", tarPath)
		}
		abs := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(abs, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.Create(abs)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(abs, h.ModTime, h.ModTime); err != nil {
				t.Fatal(err)
			}
			files = append(files, fixtureFile{rel: rel, abs: abs, mtime: h.ModTime, size: h.Size})
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(h.Linkname, abs); err != nil {
				t.Fatal(err)
			}
			files = append(files, fixtureFile{rel: rel, abs: abs, symlink: true})
		}
	}
	return filepath.Join(dir, root), files
}

// readXpakMetadata decodes the XPAK trailer of a .tbz2/.xpak file.
func readXpakMetadata(b []byte) (map[string]string, error) {
	if len(b) < 16 || string(b[len(b)-16:len(b)-8]) != "XPAKSTOP" || string(b[len(b)-4:]) != "STOP" {
		return nil, errors.New("no xpak trailer")
	}
	l := int(binary.BigEndian.Uint32(b[len(b)-8:]))
	start := len(b) - 8 - l
	if start < 0 || l < 24 {
		return nil, errors.New("bad xpak length")
	}
	blk := b[start : len(b)-8]
	if string(blk[:8]) != "XPAKPACK" {
		return nil, errors.New("no XPAKPACK")
	}
	il := int(binary.BigEndian.Uint32(blk[8:]))
	dl := int(binary.BigEndian.Uint32(blk[12:]))
	if 16+il+dl > len(blk) {
		return nil, errors.New("bad xpak sizes")
	}
	index, data := blk[16:16+il], blk[16+il:16+il+dl]
	meta := map[string]string{}
	for p := 0; p+8 < il; {
		n := int(binary.BigEndian.Uint32(index[p:]))
		if p+4+n+8 > il {
			return nil, errors.New("bad xpak index")
		}
		name := string(index[p+4 : p+4+n])
		off := int(binary.BigEndian.Uint32(index[p+4+n:]))
		ln := int(binary.BigEndian.Uint32(index[p+8+n:]))
		if off+ln > dl {
			return nil, errors.New("bad xpak data offset")
		}
		if _, dup := meta[name]; !dup {
			meta[name] = decodeReplace(data[off : off+ln])
		}
		p += 12 + n
	}
	return meta, nil
}

// readGpkgMetadata reads <dir>/metadata.tar<.ext> of a gpkg container.
func readGpkgMetadata(b []byte) (map[string]string, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("no metadata member: %w", err)
		}
		base := path.Base(h.Name)
		if !strings.HasPrefix(base, "metadata.tar") || strings.HasSuffix(base, ".sig") {
			continue
		}
		var r io.Reader
		switch strings.TrimPrefix(base, "metadata.tar") {
		case "":
			r = tr
		case ".zst":
			d, err := zstd.NewReader(tr)
			if err != nil {
				return nil, err
			}
			defer d.Close()
			r = d
		case ".xz":
			if r, err = xz.NewReader(tr); err != nil {
				return nil, err
			}
		case ".gz":
			if r, err = gzip.NewReader(tr); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unsupported metadata member %q", base)
		}
		meta := map[string]string{}
		inner := tar.NewReader(r)
		for {
			ih, err := inner.Next()
			if err == io.EOF {
				return meta, nil
			}
			if err != nil {
				return nil, err
			}
			key, ok := strings.CutPrefix(ih.Name, "metadata/")
			if !ok || ih.Typeflag != tar.TypeReg {
				continue
			}
			v, err := io.ReadAll(inner)
			if err != nil {
				return nil, err
			}
			meta[key] = decodeReplace(v)
		}
	}
}

// splitBlocks splits index text into its blocks, each with its trailing
// blank line.
func splitBlocks(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\n\n"))
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+2])
		b = b[i+2:]
	}
	return out
}

func TestFixtures(t *testing.T) {
	dir := fixturesDir()
	tars, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tars) == 0 {
		t.Fatalf("no fixtures found in %s (set PKGDIRFS_FIXTURES)", dir)
	}
	sort.Strings(tars)
	withIndex := 0
	for _, tp := range tars {
		name := strings.TrimSuffix(filepath.Base(tp), ".tar")
		t.Run(name, func(t *testing.T) {
			root, files := extractFixture(t, tp, t.TempDir())
			orig, err := os.ReadFile(filepath.Join(root, "Packages"))
			if errors.Is(err, os.ErrNotExist) {
				if name != "legacy-all" {
					t.Fatalf("%s has no Packages", name)
				}
				checkLegacy(t, files)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			withIndex++
			checkFixtureIndex(t, orig, files)
		})
	}
	if withIndex == 0 {
		t.Fatal("no fixture with a Packages file")
	}
}

// checkLegacy checks the All/ layout: real files are legacy instances,
// the category symlinks look flat, and metadata agrees with the names.
func checkLegacy(t *testing.T, files []fixtureFile) {
	n := 0
	for _, f := range files {
		p := ParsePath(f.rel)
		if _, _, ok := PackageExt(f.rel); !ok {
			continue
		}
		if f.symlink {
			if p.Kind != KindFlat {
				t.Errorf("%s: symlink classified %v", f.rel, p.Kind)
			}
			continue
		}
		if p.Kind != KindLegacy {
			t.Errorf("%s: classified %v, want legacy", f.rel, p.Kind)
			continue
		}
		b, err := os.ReadFile(f.abs)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := readXpakMetadata(b)
		if err != nil {
			t.Fatalf("%s: %v", f.rel, err)
		}
		if err := CheckIdentity(p, strings.TrimSpace(meta["CATEGORY"]), strings.TrimSpace(meta["PF"])); err != nil {
			t.Errorf("%s: %v", f.rel, err)
		}
		if _, err := IndexEntry(meta); err != nil {
			t.Errorf("%s: %v", f.rel, err)
		}
		n++
	}
	if n == 0 {
		t.Error("no legacy packages found")
	}
}

func checkFixtureIndex(t *testing.T, orig []byte, files []fixtureFile) {
	header, pkgs := ParseIndex(orig)
	if header["VERSION"] != "0" || len(pkgs) == 0 {
		t.Fatalf("header %v, %d packages", header, len(pkgs))
	}
	if strconv.Itoa(len(pkgs)) != header["PACKAGES"] {
		t.Errorf("PACKAGES %s, parsed %d", header["PACKAGES"], len(pkgs))
	}

	// Round trip of the whole file.
	var out bytes.Buffer
	out.Write(RenderHeader(header))
	for _, p := range pkgs {
		out.Write(RenderPackage(p, header))
	}
	if !bytes.Equal(out.Bytes(), orig) {
		t.Fatalf("re-rendered index differs:\n%s", firstDiff(out.Bytes(), orig))
	}

	blocks := splitBlocks(orig)
	byPath := map[string][]byte{}
	for i, p := range pkgs {
		byPath[p["PATH"]] = blocks[i+1]
	}

	// Every index entry rebuilt from its package file alone.
	seen := 0
	for _, f := range files {
		p := ParsePath(f.rel)
		if p.Kind == KindOther || f.symlink {
			continue
		}
		want, ok := byPath[f.rel]
		if !ok {
			t.Errorf("%s: not in Packages", f.rel)
			continue
		}
		seen++
		b, err := os.ReadFile(f.abs)
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]string
		if p.Format == FormatGpkg {
			meta, err = readGpkgMetadata(b)
		} else {
			meta, err = readXpakMetadata(b)
		}
		if err != nil {
			t.Fatalf("%s: %v", f.rel, err)
		}
		cat, pf := normalizeSpace(meta["CATEGORY"]), normalizeSpace(meta["PF"])
		if err := CheckIdentity(p, cat, pf); err != nil {
			t.Errorf("%s: %v", f.rel, err)
		}
		entry, err := IndexEntry(meta)
		if err != nil {
			t.Fatalf("%s: %v", f.rel, err)
		}
		if p.Kind == KindMulti && entry["BUILD_ID"] != strconv.FormatInt(p.BuildID, 10) {
			t.Errorf("%s: BUILD_ID %q, name says %d", f.rel, entry["BUILD_ID"], p.BuildID)
		}
		md := md5.Sum(b)
		sh := sha1.Sum(b)
		entry["CPV"] = cat + "/" + pf
		entry["MD5"] = hex.EncodeToString(md[:])
		entry["SHA1"] = hex.EncodeToString(sh[:])
		entry["SIZE"] = strconv.Itoa(len(b))
		entry["_mtime_"] = strconv.FormatInt(f.mtime.Unix(), 10)
		entry["PATH"] = f.rel
		if got := RenderPackage(entry, header); !bytes.Equal(got, want) {
			t.Errorf("%s: block from package differs:\n%s", f.rel, firstDiff(got, want))
		}
	}
	if seen != len(pkgs) {
		t.Errorf("%d package files, %d index entries", seen, len(pkgs))
	}
}

func firstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n got  %q\n want %q", i+1, gl, wl)
		}
	}
	return "(equal lines, different bytes)"
}

func TestParseIndexQuirks(t *testing.T) {
	in := "VERSION: 0\nCHOST: x86_64-pc-linux-gnu\nREPO: hdr\nno colon here\n\n" +
		"CPV: a/b-1\nDESC: d\nMTIME: 5\nSHA256: dropped\nREPO_REVISIONS: {}\nPATH:a/b-1.tbz2\nEMPTY:\n\n" +
		"PATH: no/cpv.tbz2\n\n" +
		"CPV: c/d-2\nCHOST: other\nrepository: gentoo\nSLOT: 1\n\n" +
		"\n" +
		"CPV: after/blank-1\n\n"
	header, pkgs := ParseIndex([]byte(in))
	if header["VERSION"] != "0" || header["repository"] != "hdr" || len(header) != 3 {
		t.Errorf("header = %v", header)
	}
	if len(pkgs) != 2 {
		t.Fatalf("got %d packages: %v", len(pkgs), pkgs)
	}
	p := pkgs[0]
	checks := map[string]string{
		"CPV": "a/b-1", "DESCRIPTION": "d", "_mtime_": "5", "PATH": "/b-1.tbz2",
		"EAPI": "0", "SLOT": "0", "USE": "", "CHOST": "x86_64-pc-linux-gnu", "repository": "hdr",
	}
	for k, v := range checks {
		if got, ok := p[k]; !ok || got != v {
			t.Errorf("pkg[%q] = %q, %v; want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"SHA256", "REPO_REVISIONS", "EMPTY", "DESC", "MTIME"} {
		if _, ok := p[k]; ok {
			t.Errorf("pkg has %q", k)
		}
	}
	if pkgs[1]["CHOST"] != "other" || pkgs[1]["repository"] != "gentoo" || pkgs[1]["SLOT"] != "1" {
		t.Errorf("pkg 2 = %v", pkgs[1])
	}
	// Rendering drops defaults and inherited values, and orders
	// _mtime_/repository after upper-case keys.
	got := string(RenderPackage(p, header))
	want := "CPV: a/b-1\nDESC: d\nPATH: /b-1.tbz2\nMTIME: 5\n\n"
	if got != want {
		t.Errorf("RenderPackage = %q, want %q", got, want)
	}
	got = string(RenderPackage(pkgs[1], header))
	want = "CHOST: other\nCPV: c/d-2\nSLOT: 1\nREPO: gentoo\n\n"
	if got != want {
		t.Errorf("RenderPackage = %q, want %q", got, want)
	}
	got = string(RenderHeader(header))
	want = "CHOST: x86_64-pc-linux-gnu\nVERSION: 0\nREPO: hdr\n\n"
	if got != want {
		t.Errorf("RenderHeader = %q, want %q", got, want)
	}

	// CRLF: separator lines are not empty, so everything is header.
	h2, p2 := ParseIndex([]byte("VERSION: 0\r\n\r\nCPV: a/b-1\r\n\r\n"))
	if len(p2) != 0 || h2["VERSION"] != "0\r" || h2["CPV"] != "a/b-1\r" {
		t.Errorf("CRLF: header %q, %d packages", h2, len(p2))
	}
	// A leading blank line leaves the header empty and the real header
	// becomes a CPV-less block.
	h3, p3 := ParseIndex([]byte("\nVERSION: 0\nCHOST: x\n\nCPV: a/b-1\n\n"))
	if len(h3) != 0 || len(p3) != 1 {
		t.Errorf("leading blank: header %v, %d packages", h3, len(p3))
	}
	// A block of only unknown keys ends the body.
	_, p4 := ParseIndex([]byte("VERSION: 0\n\nFOO: 1\n\nCPV: a/b-1\n\n"))
	if len(p4) != 0 {
		t.Errorf("unknown-only block: %d packages", len(p4))
	}
	// Last block without trailing newline, invalid UTF-8 replaced.
	_, p5 := ParseIndex([]byte("VERSION: 0\n\nCPV: a/b-1\nUSE: \xff"))
	if len(p5) != 1 || p5[0]["USE"] != "\ufffd" {
		t.Errorf("no trailing newline: %q", p5)
	}
	// Multi-byte first character after the colon is dropped whole.
	_, p6 := ParseIndex([]byte("VERSION: 0\n\nCPV:éa/b-1\n\n"))
	if len(p6) != 1 || p6[0]["CPV"] != "a/b-1" {
		t.Errorf("multibyte: %q", p6)
	}
}

func TestIndexEntry(t *testing.T) {
	meta := map[string]string{
		"CATEGORY":    "app-misc\n",
		"PF":          "foo-1\n",
		"DESCRIPTION": "not indexed\n",
		"USE":         "  ssl\tdoc \n",
		"LICENSE":     "GPL-2 doc? ( FDL-1.3 ) !ssl? ( MIT )\n",
		"RDEPEND":     "ssl? ( dev-libs/openssl:0= ) dev-libs/x[doc?,!ssl?]\n",
		"IUSE":        "\x1cssl\u00a0doc\n",
		"BUILD_ID":    "3",
		"EAPI":        "8\n",
	}
	got, err := IndexEntry(meta)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"USE":      "ssl doc",
		"LICENSE":  "GPL-2 FDL-1.3",
		"RDEPEND":  "dev-libs/openssl:0= dev-libs/x[doc]",
		"IUSE":     "ssl doc",
		"BUILD_ID": "3",
		"EAPI":     "8",
	}
	if len(got) != len(want) {
		t.Errorf("IndexEntry = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("IndexEntry[%q] = %q, want %q", k, got[k], v)
		}
	}
	if _, err := IndexEntry(map[string]string{"DEPEND": "foo? ( bar"}); err == nil {
		t.Error("IndexEntry accepted a broken DEPEND")
	}
	if _, err := IndexEntry(map[string]string{"RDEPEND": "not-an-atom"}); err == nil {
		t.Error("IndexEntry accepted an invalid atom")
	}
}
