package integration

// Generators for BenchmarkScale (bench_scale_test.go): small packages whose
// index entries have real sizes (700 B–1.5 KiB: *DEPEND, USE, IUSE,
// PROVIDES, REQUIRES, KEYWORDS, …), spread over 160 categories with 2
// versions × 2 builds per package, and the same metadata written straight
// into a catalog for the 1,000,000-instance run. Every name here starts with
// "benchScale" so it cannot collide with the other helpers.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

// benchScalePkg is one synthetic instance.
type benchScalePkg struct {
	Cat, PN, Ver string
	BuildID      int   // 0: no BUILD_ID in the metadata (a flat-layout package)
	BuildTime    int64 // newest build of a CPV = highest BUILD_TIME
	Seed         uint64
}

func (p benchScalePkg) PF() string  { return p.PN + "-" + p.Ver }
func (p benchScalePkg) CPV() string { return p.Cat + "/" + p.PF() }

// MultiRel is $CAT/$PN/$PF-$BUILD_ID.xpak.
func (p benchScalePkg) MultiRel() string {
	return p.Cat + "/" + p.PN + "/" + p.PF() + "-" + strconv.Itoa(p.BuildID) + ".xpak"
}

// FlatRel is $CAT/$PF.tbz2.
func (p benchScalePkg) FlatRel() string { return p.Cat + "/" + p.PF() + ".tbz2" }

// benchScaleCats are 160 category names (16 groups × 10 kinds).
var benchScaleCats = func() []string {
	var out []string
	for _, g := range []string{"app", "dev", "sys", "net", "media", "x11", "games", "sci", "www", "mail", "kde", "gnome", "gui", "lxqt", "sec", "acct"} {
		for _, k := range []string{"misc", "libs", "util", "lang", "tools", "apps", "plugins", "base", "fonts", "themes"} {
			out = append(out, g+"-"+k)
		}
	}
	return out
}()

var (
	benchScaleSyl = []string{"lib", "xml", "gtk", "qt", "py", "perl", "ruby", "glib", "font", "cairo", "pango", "mesa",
		"zlib", "curl", "ssl", "ssh", "git", "vim", "nano", "tar", "xz", "zstd", "lz", "bz", "png", "jpeg", "tiff", "webp",
		"gst", "alsa", "pulse", "pipe", "wire", "dbus", "udev", "poly", "kit", "net", "work", "man", "doc", "box", "view",
		"edit", "term", "shell", "core", "utils", "data", "base"}
	benchScaleFlags = []string{"ssl", "nls", "test", "doc", "static-libs", "debug", "X", "wayland", "gtk", "qt5", "qt6",
		"python", "perl", "lua", "zlib", "bzip2", "lzma", "zstd", "unicode", "ipv6", "pam", "systemd", "udev", "dbus",
		"pulseaudio", "alsa", "jpeg", "png", "gif", "tiff", "webp", "svg", "truetype", "fontconfig", "opengl", "vulkan",
		"vaapi", "vdpau", "ffmpeg", "gstreamer", "introspection", "vala", "xml", "json", "sqlite", "postgres", "mysql",
		"ldap", "kerberos", "curl", "http2", "brotli", "lz4", "caps", "seccomp", "selinux", "threads", "openmp", "rust"}
	benchScaleKeywords = []string{"amd64 arm64 ~ppc64 ~riscv x86", "~alpha amd64 arm arm64 hppa ~loong ~m68k ~mips ppc ppc64 ~riscv ~s390 sparc x86",
		"amd64 ~arm64 x86", "~amd64", "amd64 arm arm64 ~loong ppc ppc64 ~riscv x86"}
	benchScaleLicenses = []string{"GPL-2+", "LGPL-2.1+ GPL-2+", "MIT", "BSD", "|| ( MIT Apache-2.0 )", "ZLIB", "0BSD LGPL-2.1+ GPL-2+"}
	benchScalePhases   = []string{"compile configure install prepare test", "compile configure install postinst prepare setup test unpack", "install", "compile install"}
)

// benchScaleName is a word of two or three syllables and a number: unique
// per n, valid as a PN (no hyphen before a digit).
func benchScaleName(n int) string {
	a := benchScaleSyl[n%len(benchScaleSyl)]
	b := benchScaleSyl[(n/len(benchScaleSyl))%len(benchScaleSyl)]
	return a + b + strconv.Itoa(n)
}

// benchScaleSet is n instances (rounded up to a multiple of 4): packages of
// 2 versions × 2 builds each, round-robin over the 160 categories. PNs are
// unique across categories, so every CPV also owns its All/$PF.tbz2.
func benchScaleSet(n int) []benchScalePkg {
	out := make([]benchScalePkg, 0, n+3)
	benchScaleEach(n, func(p benchScalePkg) { out = append(out, p) })
	return out
}

// benchScaleEach calls fn for each instance of benchScaleSet(n) without
// keeping them (the catalog-only run has 1,000,000).
func benchScaleEach(n int, fn func(p benchScalePkg)) {
	npkg := (n + 3) / 4
	for i := 0; i < npkg; i++ {
		cat := benchScaleCats[i%len(benchScaleCats)]
		pn := benchScaleName(i)
		for v := 0; v < 2; v++ {
			ver := fmt.Sprintf("%d.%d.%d", 1+i%7, i%23, v)
			if v == 1 && i%3 == 0 {
				ver = fmt.Sprintf("%d.%d.%d-r1", 1+i%7, i%23, v)
			}
			for bld := 1; bld <= 2; bld++ {
				fn(benchScalePkg{Cat: cat, PN: pn, Ver: ver, BuildID: bld,
					BuildTime: 1700000000 + int64(i%100000)*10 + int64(v*2+bld), Seed: uint64(i)<<3 | uint64(v<<1|bld-1)})
			}
		}
	}
}

// benchScaleAtom is a dependency atom in one of the shapes real ebuilds use.
func benchScaleAtom(rng *rand.Rand) string {
	cat := benchScaleCats[rng.IntN(len(benchScaleCats))]
	pn := benchScaleSyl[rng.IntN(len(benchScaleSyl))] + benchScaleSyl[rng.IntN(len(benchScaleSyl))]
	switch rng.IntN(5) {
	case 0:
		return cat + "/" + pn
	case 1:
		return fmt.Sprintf(">=%s/%s-%d.%d.%d", cat, pn, rng.IntN(5), rng.IntN(20), rng.IntN(10))
	case 2:
		return fmt.Sprintf(">=%s/%s-%d.%d:0/%d=", cat, pn, 1+rng.IntN(4), rng.IntN(30), 1+rng.IntN(9))
	case 3:
		return cat + "/" + pn + ":="
	default:
		return fmt.Sprintf("%s/%s[%s(+)]", cat, pn, benchScaleFlags[rng.IntN(len(benchScaleFlags))])
	}
}

// benchScaleDeps is a dependency string of n atoms, some under a USE
// conditional on one of iuse's flags (kept in the index only when enabled).
func benchScaleDeps(rng *rand.Rand, n int, iuse []string) string {
	var parts []string
	for i := 0; i < n; i++ {
		if rng.IntN(4) == 0 && len(iuse) > 0 {
			parts = append(parts, strings.TrimPrefix(iuse[rng.IntN(len(iuse))], "+")+"? ( "+benchScaleAtom(rng)+" )")
			continue
		}
		parts = append(parts, benchScaleAtom(rng))
	}
	return strings.Join(parts, " ")
}

// benchScaleMeta is the XPAK metadata of p (values without the trailing
// newline Portage writes). Deterministic in p.
func benchScaleMeta(p benchScalePkg) map[string]string {
	rng := rand.New(rand.NewPCG(p.Seed, 0x5ca1e))
	flags := slices.Clone(benchScaleFlags)
	rng.Shuffle(len(flags), func(i, j int) { flags[i], flags[j] = flags[j], flags[i] })
	iuse := flags[:6+rng.IntN(16)]
	var use []string
	var iuseW []string
	for i, f := range iuse {
		on := rng.IntN(2) == 0
		if i%3 == 0 {
			iuseW = append(iuseW, "+"+f)
			on = true
		} else {
			iuseW = append(iuseW, f)
		}
		if on {
			use = append(use, f)
		}
	}
	use = append(use, "abi_x86_64", "amd64", "elibc_glibc", "kernel_linux")
	slices.Sort(use)
	var provides []string
	for i := rng.IntN(4); i > 0; i-- {
		provides = append(provides, fmt.Sprintf("lib%s%d.so.%d", p.PN, i, 1+rng.IntN(9)))
	}
	requires := []string{"libc.so.6"}
	for i := 2 + rng.IntN(12); i > 0; i-- {
		requires = append(requires, fmt.Sprintf("lib%s.so.%d", benchScaleSyl[rng.IntN(len(benchScaleSyl))], rng.IntN(12)))
	}
	m := map[string]string{
		"CATEGORY":       p.Cat,
		"PF":             p.PF(),
		"SLOT":           "0",
		"EAPI":           "8",
		"BUILD_TIME":     strconv.FormatInt(p.BuildTime, 10),
		"CHOST":          "x86_64-pc-linux-gnu",
		"repository":     "gentoo",
		"DESCRIPTION":    "synthetic package " + p.PN + " for the pkgdirfs scale benchmark",
		"KEYWORDS":       benchScaleKeywords[rng.IntN(len(benchScaleKeywords))],
		"LICENSE":        benchScaleLicenses[rng.IntN(len(benchScaleLicenses))],
		"DEFINED_PHASES": benchScalePhases[rng.IntN(len(benchScalePhases))],
		"IUSE":           strings.Join(iuseW, " "),
		"USE":            strings.Join(use, " "),
		"BDEPEND":        benchScaleDeps(rng, 2+rng.IntN(3), iuse),
		"DEPEND":         benchScaleDeps(rng, 3+rng.IntN(8), iuse),
		"RDEPEND":        benchScaleDeps(rng, 2+rng.IntN(9), iuse),
		"REQUIRES":       "x86_64: " + strings.Join(requires, " "),
	}
	if len(provides) > 0 {
		m["PROVIDES"] = "x86_64: " + strings.Join(provides, " ")
	}
	if rng.IntN(3) == 0 {
		m["SLOT"] = fmt.Sprintf("0/%d", 1+rng.IntN(9))
	}
	if rng.IntN(4) == 0 {
		m["RESTRICT"] = "test"
	}
	if p.BuildID > 0 {
		m["BUILD_ID"] = strconv.Itoa(p.BuildID)
	}
	return m
}

// benchScaleBytes is the whole package file of p: an uncompressed tar of one
// small file (128–640 B) followed by the XPAK block and its trailer, ~3–4 KiB.
func benchScaleBytes(p benchScalePkg) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rng := rand.NewChaCha8(sha256.Sum256([]byte(strconv.FormatUint(p.Seed, 16) + "/" + p.CPV() + "/" + strconv.FormatInt(p.BuildTime, 10))))
	size := 128 + int64(p.Seed%513)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "usr/share/" + p.PN + "/data.bin", Mode: 0o644, Size: size,
		ModTime: time.Unix(p.BuildTime, 0), Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, rng, size); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	meta := benchScaleMeta(p)
	entries := make([]xpak.Entry, 0, len(meta))
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		entries = append(entries, xpak.Entry{Key: k, Value: []byte(meta[k] + "\n")})
	}
	block, err := xpak.EncodeBlock(entries)
	if err != nil {
		return nil, err
	}
	buf.Write(xpak.AppendTrailer(block))
	return buf.Bytes(), nil
}

// benchScaleWriteAll writes pkgs under root at rel(p) with a few goroutines,
// with mtime = BUILD_TIME, calling progress now and then; it returns the
// total size in bytes.
func benchScaleWriteAll(tb testing.TB, root string, pkgs []benchScalePkg, rel func(benchScalePkg) string, progress func(done int)) int64 {
	tb.Helper()
	return benchWriteParallel(tb, root, len(pkgs), func(i int) (int64, error) {
		return benchScaleWriteOne(filepath.Join(root, rel(pkgs[i])), pkgs[i])
	}, progress)
}

func benchScaleWriteOne(path string, p benchScalePkg) (int64, error) {
	body, err := benchScaleBytes(p)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return 0, err
	}
	mt := time.Unix(p.BuildTime, 0)
	return int64(len(body)), os.Chtimes(path, mt, mt)
}

// benchScaleFakeDigests are stand-ins for the digests of bytes that do not
// exist (the catalog-only run): distinct per instance, well-formed hex.
func benchScaleFakeDigests(p benchScalePkg) (md5hex, sha1hex, sha256hex string) {
	key := []byte(p.CPV() + "#" + strconv.Itoa(p.BuildID))
	m := md5.Sum(key)
	s1 := sha1.Sum(key)
	s2 := sha256.Sum256(key)
	return hex.EncodeToString(m[:]), hex.EncodeToString(s1[:]), hex.EncodeToString(s2[:])
}

// ---------------------------------------------------------------- reading an index

// benchScaleIndexStats is what one pass over a Packages file found.
type benchScaleIndexStats struct {
	Header             map[string]string
	Entries            int   // blocks with a CPV line
	EntryBytes         int64 // their total size (lines + the blank line)
	MinEntry, MaxEntry int
	Size               int64
	SHA256             [32]byte
}

// benchScaleScanIndex reads a whole Packages stream: header keys, entry
// count and sizes, and the SHA-256 of the bytes (to compare with the
// decompressed Packages.gz).
func benchScaleScanIndex(r io.Reader) (*benchScaleIndexStats, error) {
	h := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, h), 1<<20)
	st := &benchScaleIndexStats{Header: map[string]string{}, MinEntry: 1 << 30}
	inHeader, cur, hasCPV := true, 0, false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("line longer than 1 MiB at byte %d", st.Size)
		}
		st.Size += int64(len(line))
		if len(line) > 0 {
			if inHeader {
				if k, v, ok := strings.Cut(strings.TrimRight(string(line), "\n"), ": "); ok {
					st.Header[k] = v
				}
			}
			cur += len(line)
			if bytes.HasPrefix(line, []byte("CPV: ")) {
				hasCPV = true
			}
			if len(line) == 1 && line[0] == '\n' { // end of a block
				if hasCPV {
					st.Entries++
					st.EntryBytes += int64(cur)
					st.MinEntry = min(st.MinEntry, cur)
					st.MaxEntry = max(st.MaxEntry, cur)
				}
				inHeader, cur, hasCPV = false, 0, false
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	copy(st.SHA256[:], h.Sum(nil))
	return st, nil
}

// benchScaleScanGz is benchScaleScanIndex of a gzip stream; it also returns
// the gzip header's mtime (Packages.gz: = TIMESTAMP).
func benchScaleScanGz(r io.Reader) (*benchScaleIndexStats, int64, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	st, err := benchScaleScanIndex(zr)
	if err != nil {
		return nil, 0, err
	}
	return st, zr.ModTime.Unix(), zr.Close()
}

// benchScaleCPVCounter counts "\nCPV: " in a stream read in chunks (the
// timed full reads check the entry count without a second pass).
type benchScaleCPVCounter struct {
	n    int
	tail []byte
}

var benchScaleCPVMark = []byte("\nCPV: ")

func (c *benchScaleCPVCounter) Write(p []byte) {
	if len(c.tail) > 0 {
		// Matches straddling the previous chunk's end.
		k := min(len(p), len(benchScaleCPVMark)-1)
		joined := append(slices.Clone(c.tail), p[:k]...)
		c.n += bytes.Count(joined, benchScaleCPVMark)
	}
	c.n += bytes.Count(p, benchScaleCPVMark)
	keep := len(benchScaleCPVMark) - 1
	if len(p) >= keep {
		c.tail = append(c.tail[:0], p[len(p)-keep:]...)
		return
	}
	c.tail = append(c.tail, p...) // the last bytes of the stream, not just of p
	c.tail = c.tail[max(0, len(c.tail)-keep):]
}
