package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"golang.org/x/crypto/blake2b"

	"pkgdirfs/xpak"
)

// A deterministic generator of hostile binary packages (issue 11): every
// case is built here from nothing but a seed, so the corpus needs no
// committed files. Each class of the issue has several refused variants,
// and valid-but-odd controls must stay accepted, so that each refusal is
// the mutation's doing and not the builder's.

// Classes of cases.
const (
	hcNames       = "names and places (refused at create)"
	hcPlaces      = "places (content vs name)"
	hcXpak        = "XPAK content"
	hcMetadata    = "metadata values"
	hcGpkg        = "GPKG container"
	hcGpkgPaths   = "GPKG member paths"
	hcCompression = "GPKG metadata compression integrity"
	hcManifest    = "GPKG Manifest size/hash"
	hcControl     = "valid-but-odd controls (accepted)"
)

// hostileCase is one generated file and what pkgdirfs must do with it.
type hostileCase struct {
	Class string
	Name  string // what is special about it
	Path  string // relative to the PKGDIR root
	Data  []byte
	// Accept: a valid package that must be in the index.
	Accept bool
	// AtCreate: a name Portage skips; refused at create, before any byte.
	AtCreate bool
	Want     string // a substring of the refusal reason ("" = any)
}

// hgCPV is the package every case claims to be (unless it says otherwise).
const (
	hgCat = "app-misc"
	hgPN  = "hostile"
	hgPF  = "hostile-1.0"
)

// hgGen carries the generator's deterministic state.
type hgGen struct {
	t   testing.TB
	rng *rand.Rand
	id  int64 // the last build id handed out
	bt  int64 // the last BUILD_TIME handed out
}

func (g *hgGen) nextID() int64 { g.id++; return g.id }

// multi is a fresh multi-instance name of hgPF ("xpak" or "gpkg.tar").
func (g *hgGen) multi(ext string) string {
	return fmt.Sprintf("%s/%s/%s-%d.%s", hgCat, hgPN, hgPF, g.nextID(), ext)
}

func (g *hgGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

// meta is a complete metadata set for pf, with a BUILD_TIME of its own (so
// that no two generated packages are the same bytes), then extra.
func (g *hgGen) meta(pf string, extra ...xpak.Entry) []xpak.Entry {
	g.bt++
	es := []xpak.Entry{
		{Key: "BUILD_TIME", Value: []byte(strconv.FormatInt(1700000000+g.bt, 10) + "\n")},
		{Key: "CATEGORY", Value: []byte(hgCat + "\n")},
		{Key: "DEFINED_PHASES", Value: []byte("install\n")},
		{Key: "DESCRIPTION", Value: []byte("generated hostile-input case\n")},
		{Key: "EAPI", Value: []byte("8\n")},
		{Key: "IUSE", Value: []byte("test\n")},
		{Key: "KEYWORDS", Value: []byte("amd64\n")},
		{Key: "LICENSE", Value: []byte("MIT\n")},
		{Key: "PF", Value: []byte(pf + "\n")},
		{Key: "RDEPEND", Value: []byte("dev-libs/foo:= test? ( dev-libs/bar )\n")},
		{Key: "SLOT", Value: []byte("0\n")},
		{Key: "USE", Value: []byte("amd64 elibc_glibc kernel_linux\n")},
		{Key: "repository", Value: []byte("gentoo\n")},
	}
	for _, e := range extra {
		es = withEntry(es, e.Key, e.Value)
	}
	return es
}

// ------------------------------------------------------------ tar and compression

// hgMember is one tar member; Type 0 is a regular file.
type hgMember struct {
	Name     string
	Data     []byte
	Type     byte
	Linkname string
}

// hgTar writes members in format (0: ustar where it fits, else what Go
// picks) with fixed times, as a deterministic tar.
func (g *hgGen) tar(format tar.Format, ms []hgMember) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		typ := m.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.Name, Mode: 0o644, Typeflag: typ, Linkname: m.Linkname,
			ModTime: time.Unix(1700000000, 0), Format: format}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.Data))
		}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			g.t.Fatalf("tar header %q: %v", m.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(m.Data); err != nil {
				g.t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		g.t.Fatal(err)
	}
	return buf.Bytes()
}

// Compressors by gpkg member suffix ("" is none).
var hgSuffixes = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ""}

func (g *hgGen) compress(suffix string, b []byte) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch suffix {
	case "":
		return append([]byte(nil), b...)
	case ".gz":
		w, err = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	case ".bz2":
		w, err = bzip2.NewWriter(&buf, &bzip2.WriterConfig{Level: 9}) // "BZh9", the only level Portage sniffs
	case ".xz":
		w, err = xz.NewWriter(&buf)
	case ".zst":
		w, err = zstd.NewWriter(&buf, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	case ".lz4":
		lw := lz4.NewWriter(&buf)
		err = lw.Apply(lz4.ChecksumOption(true))
		w = lw
	default:
		g.t.Fatalf("no compressor for %q", suffix)
	}
	if err != nil {
		g.t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		g.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		g.t.Fatal(err)
	}
	return buf.Bytes()
}

// image is an image tar of a few files, as emerge packs one.
func (g *hgGen) image(n int) []byte {
	return g.tar(tar.FormatUSTAR, []hgMember{
		{Name: "image/", Type: tar.TypeDir},
		{Name: "image/usr/share/hostile/data", Data: g.bytes(n)},
		{Name: "image/usr/share/hostile/README", Data: []byte("generated\n")},
	})
}

// ------------------------------------------------------------ xpak

// xpakFile is tarball + a canonical XPAK block + trailer.
func (g *hgGen) xpakFile(tarball []byte, es []xpak.Entry) []byte {
	block, err := xpak.EncodeBlock(es)
	if err != nil {
		g.t.Fatalf("EncodeBlock: %v", err)
	}
	return append(append([]byte(nil), tarball...), xpak.AppendTrailer(block)...)
}

// tarball is a bzip2 tarball (Portage's historical default).
func (g *hgGen) tarball() []byte { return g.compress(".bz2", g.image(700)) }

// hgBlock assembles an XPAK block from a raw index and data, unchecked.
func hgBlock(index, data []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte("XPAKPACK"), uint32(len(index)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(append(append(b, index...), data...), "XPAKSTOP"...)
}

// hgIndexEntry is one raw index entry.
func hgIndexEntry(name string, off, n int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(off))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// rawXpakFile is tarball + an XPAK block built from es without any check
// (keys a hostile builder chooses), with cumulative offsets.
func rawXpakFile(tarball []byte, es []xpak.Entry) []byte {
	var index, data []byte
	for _, e := range es {
		index = append(index, hgIndexEntry(e.Key, len(data), len(e.Value))...)
		data = append(data, e.Value...)
	}
	return append(append([]byte(nil), tarball...), xpak.AppendTrailer(hgBlock(index, data))...)
}

func hgPatch(b []byte, off int, p []byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], p)
	return c
}

// ------------------------------------------------------------ gpkg

// gpkgParts are a gpkg's members but the Manifest.
type gpkgParts struct {
	Dir     string
	Members []hgMember
}

// gpkg returns the standard members of a gpkg of es: gpkg-1, metadata and
// image, compressed by suffix.
func (g *hgGen) gpkg(dir, suffix string, es []xpak.Entry) *gpkgParts {
	return &gpkgParts{Dir: dir, Members: []hgMember{
		{Name: dir + "/gpkg-1"},
		{Name: dir + "/metadata.tar" + suffix, Data: g.compress(suffix, g.metaTar(es))},
		{Name: dir + "/image.tar" + suffix, Data: g.compress(suffix, g.image(1500))},
	}}
}

// metaTar is the inner metadata tar: metadata/KEY per entry.
func (g *hgGen) metaTar(es []xpak.Entry) []byte {
	var ms []hgMember
	for _, e := range es {
		ms = append(ms, hgMember{Name: "metadata/" + e.Key, Data: e.Value})
	}
	return g.tar(tar.FormatUSTAR, ms)
}

// hgManifestLine is the Manifest record Portage writes for one member.
func hgManifestLine(base string, data []byte) string {
	bl := blake2b.Sum512(data)
	sh := sha512.Sum512(data)
	return fmt.Sprintf("DATA %s %d BLAKE2B %s SHA512 %s\n", base, len(data), hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
}

func hgBase(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// manifest is the Manifest for p's members (directories and links left out).
func (p *gpkgParts) manifest() string {
	var b strings.Builder
	for _, m := range p.Members {
		if m.Type == 0 || m.Type == tar.TypeReg {
			b.WriteString(hgManifestLine(hgBase(m.Name), m.Data))
		}
	}
	return b.String()
}

// file is the gpkg with man as its Manifest, last, in an outer tar of format.
func (g *hgGen) file(p *gpkgParts, man string, format tar.Format) []byte {
	ms := append(append([]hgMember(nil), p.Members...), hgMember{Name: p.Dir + "/Manifest", Data: []byte(man)})
	return g.tar(format, ms)
}

// ok is p with its correct Manifest.
func (g *hgGen) ok(p *gpkgParts) []byte { return g.file(p, p.manifest(), tar.FormatUSTAR) }

// find returns the index of the member whose base name starts with prefix.
func (p *gpkgParts) find(prefix string) int {
	for i, m := range p.Members {
		if strings.HasPrefix(hgBase(m.Name), prefix) {
			return i
		}
	}
	panic("no member " + prefix)
}

func (p *gpkgParts) clone() *gpkgParts {
	return &gpkgParts{Dir: p.Dir, Members: append([]hgMember(nil), p.Members...)}
}

// hgEditManifest rewrites the Manifest line of base with edit(fields).
func hgEditManifest(man, base string, edit func(f []string)) string {
	lines := strings.SplitAfter(man, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) > 2 && f[1] == base {
			edit(f)
			lines[i] = strings.Join(f, " ") + "\n"
		}
	}
	return strings.Join(lines, "")
}

// hgFlipHex changes one hex digit.
func hgFlipHex(h string) string {
	b := []byte(h)
	if b[7] == '0' {
		b[7] = '1'
	} else {
		b[7] = '0'
	}
	return string(b)
}

// hgHeaders returns the offsets of the outer tar's headers (no PAX or GNU
// extensions in the tars this is used on).
func hgHeaders(b []byte) []int {
	var out []int
	for off := 0; off+512 <= len(b); {
		h := b[off : off+512]
		if bytes.Equal(h, make([]byte, 512)) {
			break
		}
		out = append(out, off)
		size, err := strconv.ParseInt(strings.Trim(string(h[124:136]), " \x00"), 8, 64)
		if err != nil {
			break
		}
		off += 512 + int(size+511)&^511
	}
	return out
}

// hgRetar patches the header at off and recomputes its checksum.
func hgRetar(b []byte, off int, edit func(h []byte)) []byte {
	c := append([]byte(nil), b...)
	h := c[off : off+512]
	edit(h)
	copy(h[148:156], "        ")
	sum := 0
	for _, x := range h {
		sum += int(x)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return c
}

// ------------------------------------------------------------ the corpus

// hostileCorpus generates every case. Same seed, same bytes.
func hostileCorpus(t testing.TB) []hostileCase {
	g := &hgGen{t: t, rng: rand.New(rand.NewPCG(11, 2025))}
	var cs []hostileCase
	add := func(class, name, path string, data []byte, want string) {
		cs = append(cs, hostileCase{Class: class, Name: name, Path: path, Data: data, Want: want})
	}
	accept := func(name, path string, data []byte) {
		cs = append(cs, hostileCase{Class: hcControl, Name: name, Path: path, Data: data, Accept: true})
	}
	goodXpak := func() []byte { return g.xpakFile(g.tarball(), g.meta(hgPF)) }
	goodGpkg := func() []byte { return g.ok(g.gpkg(hgPF, ".zst", g.meta(hgPF))) }

	// ---- valid-but-odd controls
	for _, sfx := range hgSuffixes {
		what := strings.TrimPrefix(sfx, ".")
		if what == "" {
			what = "none (image.tar)"
		}
		accept("gpkg, metadata and image compressed with "+what, g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, sfx, g.meta(hgPF))))
	}
	{
		// Mixed: metadata and image need not share a compressor.
		p := g.gpkg(hgPF, ".xz", g.meta(hgPF))
		p.Members[2] = hgMember{Name: hgPF + "/image.tar.lz4", Data: g.compress(".lz4", g.image(900))}
		accept("gpkg with xz metadata and an lz4 image", g.multi("gpkg.tar"), g.ok(p))
	}
	for _, sfx := range []string{".gz", ".xz", ".zst", ".lz4", ""} {
		what := strings.TrimPrefix(sfx, ".")
		if what == "" {
			what = "a plain tar"
		}
		accept("xpak whose tarball is "+what, g.multi("xpak"), g.xpakFile(g.compress(sfx, g.image(600)), g.meta(hgPF)))
	}
	{
		// Signed: .sig members and a clear-signed Manifest (signatures are
		// the clients' to check; pkgdirfs keeps them byte for byte).
		p := g.gpkg(hgPF, ".gz", g.meta(hgPF))
		sig := func(what string) []byte {
			return []byte("-----BEGIN PGP SIGNATURE-----\n\niHUEABYKAB0WIQ" + what + "AAoJEAAAAAAAAAAA\n=AAAA\n-----END PGP SIGNATURE-----\n")
		}
		p.Members = []hgMember{p.Members[0], p.Members[1], {Name: hgPF + "/metadata.tar.gz.sig", Data: sig("meta")},
			p.Members[2], {Name: hgPF + "/image.tar.gz.sig", Data: sig("image")}}
		body := p.manifest()
		man := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + body +
			"-----BEGIN PGP SIGNATURE-----\n\niHUEARYKAB0WIQmanifestAAoJEAAAAAAAAAAA\n=AAAA\n-----END PGP SIGNATURE-----\n"
		accept("signed gpkg (.sig members, clear-signed Manifest)", g.multi("gpkg.tar"), g.file(p, man, tar.FormatUSTAR))
	}
	accept("gpkg with unknown extra metadata keys", g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, ".zst", g.meta(hgPF,
		xpak.Entry{Key: "PKGDIRFS_UNKNOWN", Value: []byte("whatever\n")},
		xpak.Entry{Key: "QA_PREBUILT", Value: []byte("*\n")},
		xpak.Entry{Key: "x-vendor.note", Value: []byte("odd but a plain file name\n")}))))
	accept("xpak with unknown extra keys", g.multi("xpak"), g.xpakFile(g.tarball(), g.meta(hgPF,
		xpak.Entry{Key: "PKGDIRFS_UNKNOWN", Value: []byte("1\n")}, xpak.Entry{Key: "COUNTER", Value: []byte("12345\n")})))
	{
		var dep strings.Builder
		for i := 0; i < 30000; i++ {
			fmt.Fprintf(&dep, ">=dev-libs/lib%05d-1.%d:= ", i, i%7)
			if i%1000 == 999 {
				dep.WriteString("test? ( || ( dev-libs/a dev-libs/b ) ) ")
			}
		}
		accept("gpkg with a huge but valid DEPEND (~900 KB)", g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, ".zst", g.meta(hgPF,
			xpak.Entry{Key: "DEPEND", Value: []byte(dep.String() + "\n")}))))
	}
	accept("xpak with binary values (environment.bz2, NUL and 0xff bytes)", g.multi("xpak"), g.xpakFile(g.tarball(), g.meta(hgPF,
		xpak.Entry{Key: "environment.bz2", Value: append([]byte("BZh9"), g.bytes(3000)...)},
		xpak.Entry{Key: "QA_BINARY", Value: []byte("\x00\x01\xff\xfe text \x00")},
		xpak.Entry{Key: "DESCRIPTION", Value: []byte("non-UTF-8 \xff\xfe and UTF-8 ünïcödé\n")})))
	{
		pn := "long" + strings.Repeat("-name", 30)
		pf := pn + "-1.2.3.4.5.6.7.8_alpha20240101_p3-r12"
		es := g.meta(pf)
		p := g.gpkg(pf+"-1", ".zst", es)
		id := g.nextID()
		// A directory name of 154 characters or more: Portage writes the
		// outer tar in GNU format.
		accept("gpkg with a long name (GNU outer tar)", fmt.Sprintf("%s/%s/%s-%d.gpkg.tar", hgCat, pn, pf, id), g.file(p, p.manifest(), tar.FormatGNU))
		accept("xpak with a long name", fmt.Sprintf("%s/%s/%s-%d.xpak", hgCat, pn, pf, g.nextID()), g.xpakFile(g.tarball(), g.meta(pf)))
	}
	accept("flat .tbz2 with a zstd tarball", hgCat+"/"+hgPF+".tbz2", g.xpakFile(g.compress(".zst", g.image(500)), g.meta(hgPF)))
	accept("legacy All/ .tbz2", "All/hostile-2.0.tbz2", g.xpakFile(g.tarball(), g.meta("hostile-2.0")))
	accept("flat .gpkg.tar", hgCat+"/hostile-3.0.gpkg.tar", g.ok(g.gpkg("hostile-3.0", ".zst", g.meta("hostile-3.0"))))
	accept("gpkg whose directory is not its PF (Portage only warns)", g.multi("gpkg.tar"), g.ok(g.gpkg("some-other-dir", ".zst", g.meta(hgPF))))
	{
		p := g.gpkg(hgPF, ".zst", g.meta(hgPF))
		b := g.ok(p)
		// Python's tarfile pads the archive to 10240-byte records.
		accept("gpkg padded to 10240 bytes as Python writes it", g.multi("gpkg.tar"), append(b, make([]byte, 10240-len(b)%10240)...))
	}
	{
		p := g.gpkg(hgPF, ".zst", g.meta(hgPF))
		var man strings.Builder
		for i, m := range p.Members {
			bl := blake2b.Sum512(m.Data)
			sh := sha512.Sum512(m.Data)
			if i == 1 { // the hash order is not fixed (a frozenset in Portage)
				fmt.Fprintf(&man, "DATA %s %d SHA512 %s BLAKE2B %s\n", hgBase(m.Name), len(m.Data), hex.EncodeToString(sh[:]), hex.EncodeToString(bl[:]))
			} else {
				fmt.Fprintf(&man, "DATA %s %d BLAKE2B %s\n", hgBase(m.Name), len(m.Data), hex.EncodeToString(bl[:]))
			}
		}
		accept("gpkg Manifest with SHA512 first and BLAKE2B-only lines", g.multi("gpkg.tar"), g.file(p, man.String(), tar.FormatUSTAR))
	}
	{
		id := g.nextID()
		accept("xpak with a metadata BUILD_ID equal to its name's", fmt.Sprintf("%s/%s/%s-%d.xpak", hgCat, hgPN, hgPF, id),
			g.xpakFile(g.tarball(), g.meta(hgPF, xpak.Entry{Key: "BUILD_ID", Value: []byte(strconv.FormatInt(id, 10))})))
	}
	accept("gpkg with an empty image tar", g.multi("gpkg.tar"), func() []byte {
		p := g.gpkg(hgPF, ".zst", g.meta(hgPF))
		p.Members[2].Data = g.compress(".zst", make([]byte, 1024))
		return g.ok(p)
	}())

	// ---- names and places Portage skips (refused at create)
	named := func(name, path string) {
		cs = append(cs, hostileCase{Class: hcNames, Name: name, Path: path, Data: goodXpak(), AtCreate: true,
			Want: "not a package file name Portage indexes"})
	}
	named(".XPAK in upper case", fmt.Sprintf("%s/%s/%s-%d.XPAK", hgCat, hgPN, hgPF, g.nextID()))
	named(".Xpak in mixed case", fmt.Sprintf("%s/%s/%s-%d.Xpak", hgCat, hgPN, hgPF, g.nextID()))
	named(".TBZ2 in upper case", hgCat+"/hostile-4.0.TBZ2")
	named(".GPKG.TAR in upper case", fmt.Sprintf("%s/%s/%s-%d.GPKG.TAR", hgCat, hgPN, hgPF, g.nextID()))
	named(".gpkg cut short, flat", hgCat+"/hostile-4.1.gpkg")
	named(".gpkg cut short, multi-instance", fmt.Sprintf("%s/%s/%s-%d.gpkg", hgCat, hgPN, hgPF, g.nextID()))
	named(".xpak outside its PN directory", hgCat+"/hostile-4.2.xpak")
	named(".xpak in All/", "All/hostile-4.3.xpak")
	named(".xpak without a build id", hgCat+"/"+hgPN+"/hostile-4.4.xpak")
	named(".tbz2 inside a PN directory", hgCat+"/"+hgPN+"/hostile-4.5.tbz2")
	named("flat .gpkg.tar inside a PN directory", hgCat+"/"+hgPN+"/hostile-4.6.gpkg.tar")
	named("multi-instance .gpkg.tar outside its PN directory", hgCat+"/hostile-4.7-3.gpkg.tar")
	named("multi-instance name in another package's directory", hgCat+"/other/hostile-4.8-3.xpak")
	named("build id 0", hgCat+"/"+hgPN+"/hostile-4.9-0.xpak")
	named("build id with leading zeros", hgCat+"/"+hgPN+"/hostile-5.0-007.xpak")
	named("build id beyond 64 bits", hgCat+"/"+hgPN+"/hostile-5.1-99999999999999999999.gpkg.tar")
	named("build id with a sign (+5: Python's int() reads 5)", hgCat+"/"+hgPN+"/hostile-5.2-+5.xpak")
	named("build id with an underscore (1_0: Python's int() reads 10)", hgCat+"/"+hgPN+"/hostile-5.3-1_0.xpak")
	named("build id with a space", hgCat+"/"+hgPN+"/hostile-5.4- 5.xpak")
	named("category failing [\\w][-+.\\w]* (leading '-')", "-bad/hostile-5.5.tbz2")
	named("category that is not ASCII", "app-mïsc/hostile-5.6.tbz2")
	named("PF without a version", hgCat+"/hostile.tbz2")
	named("PF with an invalid version suffix", hgCat+"/hostile-5.7_foo.tbz2")
	named("name that is not UTF-8", hgCat+"/hostile-5.8\xff.tbz2")
	named("double extension .xpak.gpkg.tar", hgCat+"/"+hgPN+"/hostile-5.9-5.xpak.gpkg.tar")

	// ---- places: the content disagrees with the name it arrives under
	add(hcPlaces, "CATEGORY disagrees with the directory", g.multi("xpak"),
		g.xpakFile(g.tarball(), g.meta(hgPF, xpak.Entry{Key: "CATEGORY", Value: []byte("app-text\n")})), "")
	add(hcPlaces, "PF disagrees with the multi-instance name", g.multi("gpkg.tar"), g.ok(g.gpkg("hostile-1.1", ".zst", g.meta("hostile-1.1"))), "")
	add(hcPlaces, "PF disagrees with the flat name", hgCat+"/hostile-6.0.tbz2", goodXpak(), "")
	add(hcPlaces, "PF disagrees with the All/ name", "All/hostile-6.1.gpkg.tar", goodGpkg(), "")
	add(hcPlaces, "flat package in another category's directory", "app-text/hostile-1.0.tbz2", goodXpak(), "")
	add(hcPlaces, "PF of another package in this PN directory", g.multi("xpak"), g.xpakFile(g.tarball(), g.meta("other-1.0")), "")
	add(hcPlaces, "gpkg content under an .xpak name", g.multi("xpak"), goodGpkg(), "")
	add(hcPlaces, "xpak content under a .gpkg.tar name", g.multi("gpkg.tar"), goodXpak(), "")
	add(hcPlaces, "gpkg content under a .tbz2 name", hgCat+"/hostile-6.2.tbz2", goodGpkg(), "the name says xpak")
	add(hcPlaces, "CATEGORY failing Portage's pattern", "app-misc/hostile/hostile-1.0-"+strconv.FormatInt(g.nextID(), 10)+".xpak",
		g.xpakFile(g.tarball(), g.meta(hgPF, xpak.Entry{Key: "CATEGORY", Value: []byte("../etc\n")})), "category")
	add(hcPlaces, "PF that is not a package name and version", g.multi("xpak"),
		g.xpakFile(g.tarball(), g.meta(hgPF, xpak.Entry{Key: "PF", Value: []byte("hostile\n")})), "PF")

	// ---- XPAK content
	tb := g.tarball()
	rawKey := func(name, key string, want string) {
		add(hcXpak, name, g.multi("xpak"), rawXpakFile(tb, append(g.meta(hgPF), xpak.Entry{Key: key, Value: []byte("x\n")})), want)
	}
	rawKey("XPAK key empty", "", "empty")
	rawKey("XPAK key with '/'", "a/b", "contains '/'")
	rawKey("XPAK key climbing out (../../etc/cron.d/evil)", "../../etc/cron.d/evil", "contains '/'")
	rawKey("XPAK key absolute (/etc/passwd)", "/etc/passwd", "contains '/'")
	rawKey("XPAK key .", ".", "not a file name")
	rawKey("XPAK key ..", "..", "not a file name")
	rawKey("XPAK key with NUL", "KEY\x00x", "NUL")
	rawKey("XPAK key not UTF-8", "KEY\xff\xfe", "not UTF-8")
	rawKey("XPAK key of 1025 bytes", strings.Repeat("K", 1025), "exceeds")
	add(hcXpak, "XPAK duplicate key", g.multi("xpak"), rawXpakFile(tb, append(g.meta(hgPF), xpak.Entry{Key: "SLOT", Value: []byte("1\n")})), "duplicate")
	{
		es := g.meta(hgPF)
		var index, data []byte
		for i, e := range es {
			off := len(data)
			if i == 3 {
				data = append(data, "gap"...) // bytes no key owns
				off = len(data)
			}
			index = append(index, hgIndexEntry(e.Key, off, len(e.Value))...)
			data = append(data, e.Value...)
		}
		add(hcXpak, "XPAK values with a gap", g.multi("xpak"), append(append([]byte(nil), tb...), xpak.AppendTrailer(hgBlock(index, data))...), "contiguous")
		index, data = nil, nil
		for i, e := range es {
			off := len(data)
			if i == 4 {
				off = 0 // two keys sharing bytes
			}
			index = append(index, hgIndexEntry(e.Key, off, len(e.Value))...)
			if i != 4 {
				data = append(data, e.Value...)
			}
		}
		add(hcXpak, "XPAK values overlapping", g.multi("xpak"), append(append([]byte(nil), tb...), xpak.AppendTrailer(hgBlock(index, data))...), "")
	}
	{
		xb := g.xpakFile(tb, g.meta(hgPF))
		l := int(binary.BigEndian.Uint32(xb[len(xb)-8:]))
		bs := len(xb) - 8 - l
		be := func(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
		add(hcXpak, "trailer length 3 too large", g.multi("xpak"), hgPatch(xb, len(xb)-8, be(l+3)), "")
		add(hcXpak, "trailer length beyond the file", g.multi("xpak"), hgPatch(xb, len(xb)-8, be(len(xb)+100)), "")
		add(hcXpak, "trailer length below the minimum", g.multi("xpak"), hgPatch(xb, len(xb)-8, be(10)), "minimum")
		add(hcXpak, "XPAKPACK magic corrupted", g.multi("xpak"), hgPatch(xb, bs, []byte("XPAKPICK")), "XPAKPACK")
		add(hcXpak, "STOP of the trailer corrupted", g.multi("xpak"), hgPatch(xb, len(xb)-4, []byte("STOQ")), "neither")
		add(hcXpak, "index_len too large", g.multi("xpak"), hgPatch(xb, bs+8, be(0xFFFFFF00)), "")
		add(hcXpak, "data_len one too large", g.multi("xpak"), hgPatch(xb, bs+12, be(int(binary.BigEndian.Uint32(xb[bs+12:]))+1)), "")
		add(hcXpak, "first key's name length past the index", g.multi("xpak"), hgPatch(xb, bs+16, be(0x00FFFFFF)), "")
		add(hcXpak, "data offset out of range", g.multi("xpak"), hgPatch(xb, bs+16+4+int(binary.BigEndian.Uint32(xb[bs+16:])), be(0x7FFFFFF0)), "")
		add(hcXpak, "truncated in the XPAK block", g.multi("xpak"), xb[:bs+l/2], "")
		add(hcXpak, "truncated in the trailer", g.multi("xpak"), xb[:len(xb)-6], "")
		add(hcXpak, "truncated in the tarball (no XPAK left)", g.multi("xpak"), xb[:bs/2], "neither")
	}
	add(hcXpak, "no tarball before the XPAK block", g.multi("xpak"), g.xpakFile(nil, g.meta(hgPF)), "no tarball")
	add(hcXpak, "tarball of unknown compression", g.multi("xpak"), g.xpakFile(g.bytes(3000), g.meta(hgPF)), "not recognised")
	add(hcXpak, "bzip2 tarball of block size 1 (BZh1: Portage sniffs BZh9 only)", g.multi("xpak"),
		g.xpakFile(append([]byte("BZh1"), tb[4:]...), g.meta(hgPF)), "not recognised")
	add(hcXpak, "random bytes at an .xpak name", g.multi("xpak"), g.bytes(8192), "")

	// ---- metadata values
	for _, k := range []string{"CATEGORY", "PF", "SLOT"} {
		add(hcMetadata, "xpak missing "+k, g.multi("xpak"), g.xpakFile(tb, withEntry(g.meta(hgPF), k, nil)), k)
	}
	add(hcMetadata, "xpak SLOT of whitespace", g.multi("xpak"), g.xpakFile(tb, g.meta(hgPF, xpak.Entry{Key: "SLOT", Value: []byte(" \n")})), "SLOT")
	for _, id := range []string{"0", "-3", "007", "abc", "99999999999999999999", "+5", "0x10", "1 2"} {
		add(hcMetadata, fmt.Sprintf("xpak BUILD_ID %q", id), g.multi("xpak"), g.xpakFile(tb, g.meta(hgPF, xpak.Entry{Key: "BUILD_ID", Value: []byte(id + "\n")})), "BUILD_ID")
	}
	add(hcMetadata, "xpak RDEPEND with an unbalanced parenthesis", g.multi("xpak"), g.xpakFile(tb, g.meta(hgPF, xpak.Entry{Key: "RDEPEND", Value: []byte("test? ( dev-libs/bar\n")})), "RDEPEND")
	add(hcMetadata, "xpak DEPEND with an invalid atom", g.multi("xpak"), g.xpakFile(tb, g.meta(hgPF, xpak.Entry{Key: "DEPEND", Value: []byte("dev-libs/foo !!!>=bar\n")})), "DEPEND")
	add(hcMetadata, "gpkg missing SLOT", g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, ".zst", withEntry(g.meta(hgPF), "SLOT", nil))), "SLOT")
	add(hcMetadata, "gpkg BUILD_ID abc", g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, ".zst", g.meta(hgPF, xpak.Entry{Key: "BUILD_ID", Value: []byte("abc")}))), "BUILD_ID")
	add(hcMetadata, "gpkg RDEPEND with a dangling ||", g.multi("gpkg.tar"), g.ok(g.gpkg(hgPF, ".zst", g.meta(hgPF, xpak.Entry{Key: "RDEPEND", Value: []byte("|| (\n")}))), "RDEPEND")

	// ---- GPKG container
	base := func() *gpkgParts { return g.gpkg(hgPF, ".zst", g.meta(hgPF)) }
	gadd := func(class, name string, data []byte, want string) { add(class, name, g.multi("gpkg.tar"), data, want) }
	{
		p := base()
		p.Members[0], p.Members[1] = p.Members[1], p.Members[0]
		gadd(hcGpkg, "gpkg-1 not the first member", g.ok(p), "first member")
	}
	{
		p := base()
		p.Members = p.Members[1:]
		gadd(hcGpkg, "no gpkg-1", g.ok(p), "gpkg-1")
	}
	{
		p := base()
		gadd(hcGpkg, "no Manifest", g.tar(tar.FormatUSTAR, p.Members), "Manifest")
	}
	{
		p := base()
		man := p.manifest()
		p.Members = append(p.Members, hgMember{Name: hgPF + "/extra.txt", Data: []byte("not in the Manifest\n")})
		gadd(hcGpkg, "a member the Manifest does not list", g.file(p, man, tar.FormatUSTAR), "not listed")
	}
	{
		p := base()
		man := p.manifest() + hgManifestLine("ghost.txt", []byte("x"))
		gadd(hcGpkg, "the Manifest lists a member that is absent", g.file(p, man, tar.FormatUSTAR), "ghost.txt")
	}
	{
		p := base()
		man := p.manifest()
		p.Members = append(p.Members, p.Members[1])
		gadd(hcGpkg, "a duplicate member", g.file(p, man, tar.FormatUSTAR), "duplicate")
	}
	{
		p := base()
		p.Members[2].Name = "elsewhere/" + hgBase(p.Members[2].Name)
		gadd(hcGpkg, "a member outside the common directory", g.ok(p), "outside the common directory")
	}
	for _, typ := range []struct {
		name, want string
		m          hgMember
	}{
		{"a directory member", "directory member", hgMember{Name: hgPF + "/docs", Type: tar.TypeDir}},
		{"a symlink member", "not a regular file", hgMember{Name: hgPF + "/link", Type: tar.TypeSymlink, Linkname: "/etc/shadow"}},
		{"a hard link member", "not a regular file", hgMember{Name: hgPF + "/hard", Type: tar.TypeLink, Linkname: hgPF + "/image.tar.zst"}},
		{"a character device member", "not a regular file", hgMember{Name: hgPF + "/dev", Type: tar.TypeChar}},
		{"a FIFO member", "not a regular file", hgMember{Name: hgPF + "/fifo", Type: tar.TypeFifo}},
	} {
		p := base()
		p.Members = append(p.Members[:2:2], typ.m, p.Members[2])
		gadd(hcGpkg, typ.name, g.ok(p), typ.want)
	}
	{
		p := base()
		p.Members = append(p.Members, hgMember{Name: hgPF + "/metadata.tar.gz", Data: g.compress(".gz", g.metaTar(g.meta(hgPF)))})
		gadd(hcGpkg, "two metadata members", g.ok(p), "two metadata members")
		p = base()
		p.Members = append(p.Members, hgMember{Name: hgPF + "/image.tar", Data: g.image(100)})
		gadd(hcGpkg, "two image members", g.ok(p), "more than one image")
		p = base()
		p.Members = p.Members[:2]
		gadd(hcGpkg, "no image member", g.ok(p), "no image")
		p = base()
		p.Members = append(p.Members[:1:1], p.Members[2])
		gadd(hcGpkg, "no metadata member", g.ok(p), "no metadata")
		p = base()
		p.Members[1].Name = hgPF + "/metadata.tar.br"
		gadd(hcGpkg, "metadata with an unknown compression suffix (.br)", g.ok(p), "suffix")
		p = base()
		p.Members[2].Name = hgPF + "/image.tar.zstd"
		gadd(hcGpkg, "image with an unknown compression suffix (.zstd)", g.ok(p), "suffix")
		p = base()
		p.Members[1] = hgMember{Name: hgPF + "/metadata.tar.lz", Data: append([]byte("LZIP\x01"), g.bytes(200)...)}
		gadd(hcGpkg, "lzip metadata (no decoder: cannot be checked)", g.ok(p), "unsupported compression")
	}
	{
		b := g.ok(base())
		hs := hgHeaders(b)
		gadd(hcGpkg, "outer tar in v7 format (no ustar magic)", hgRetar(b, hs[0], func(h []byte) { copy(h[257:265], make([]byte, 8)) }), "ustar")
		c := append([]byte(nil), b...)
		c[hs[1]+150] ^= 0x11 // in the checksum field
		gadd(hcGpkg, "a member header with a wrong checksum", c, "")
		gadd(hcGpkg, "the image's size field running past the end", hgRetar(b, hs[2], func(h []byte) {
			copy(h[124:136], fmt.Sprintf("%011o\x00", len(b)))
		}), "truncated")
		gadd(hcGpkg, "truncated in half", b[:len(b)/2], "")
		gadd(hcGpkg, "truncated inside the Manifest", b[:hs[3]+512+100], "truncated")
	}
	gadd(hcGpkg, "random bytes at a .gpkg.tar name", g.bytes(10240), "")
	gadd(hcGpkg, "a tar that is not a gpkg", g.tar(tar.FormatUSTAR, []hgMember{{Name: "notes/a.txt", Data: []byte("a\n")}, {Name: "notes/b.txt", Data: []byte("b\n")}}), "")

	// ---- GPKG member paths: the outer tar's and the metadata tar's
	rename := func(name string, to func(base string) string, want string) {
		p := base()
		for i := range p.Members {
			p.Members[i].Name = to(hgBase(p.Members[i].Name))
		}
		// Format left to the writer: a name that is not UTF-8 needs PAX.
		gadd(hcGpkgPaths, name, g.file(p, p.manifest(), 0), want)
	}
	rename("absolute member paths (/dir/name)", func(b string) string { return "/" + hgPF + "/" + b }, "")
	rename("members under .. (../name)", func(b string) string { return "../" + b }, "unsafe")
	rename("members under . (./name)", func(b string) string { return "./" + b }, "unsafe")
	rename("members with a .. component (dir/../name)", func(b string) string { return hgPF + "/../" + b }, "")
	rename("members without a directory", func(b string) string { return b }, "")
	rename("members one directory deeper (dir/sub/name)", func(b string) string { return hgPF + "/sub/" + b }, "")
	rename("member directory not UTF-8", func(b string) string { return "hostile\xff/" + b }, "UTF-8")
	{
		p := base()
		p.Members = append(p.Members, hgMember{Name: hgPF + "/..", Data: []byte("x")})
		gadd(hcGpkgPaths, "a member named dir/..", g.ok(p), "unsafe")
	}
	metaMembers := func(name string, extra []hgMember, want string) {
		es := g.meta(hgPF)
		var ms []hgMember
		for _, e := range es {
			ms = append(ms, hgMember{Name: "metadata/" + e.Key, Data: e.Value})
		}
		ms = append(ms, extra...)
		p := base()
		p.Members[1].Data = g.compress(".zst", g.tar(0, ms))
		gadd(hcGpkgPaths, name, g.ok(p), want)
	}
	metaMembers("metadata entry metadata/../../etc/passwd", []hgMember{{Name: "metadata/../../etc/passwd", Data: []byte("root::0:0\n")}}, "")
	metaMembers("metadata entry ../metadata/X (outside metadata/)", []hgMember{{Name: "../metadata/X", Data: []byte("x")}}, "metadata/<KEY>")
	metaMembers("metadata entry with an absolute path", []hgMember{{Name: "/metadata/X", Data: []byte("x")}}, "metadata/<KEY>")
	metaMembers("metadata entry one directory deeper", []hgMember{{Name: "metadata/sub/X", Data: []byte("x")}}, "metadata/<KEY>")
	metaMembers("metadata entry metadata/..", []hgMember{{Name: "metadata/..", Data: []byte("x")}}, "not a file name")
	metaMembers("metadata entry metadata/.", []hgMember{{Name: "metadata/.", Data: []byte("x")}}, "not a file name")
	metaMembers("metadata key not UTF-8", []hgMember{{Name: "metadata/K\xff", Data: []byte("x")}}, "UTF-8")
	metaMembers("metadata entry outside metadata/ (other/X)", []hgMember{{Name: "other/X", Data: []byte("x")}}, "metadata/<KEY>")
	metaMembers("metadata symlink entry", []hgMember{{Name: "metadata/LINK", Type: tar.TypeSymlink, Linkname: "/etc/shadow"}}, "not a regular file")
	metaMembers("metadata hard link entry", []hgMember{{Name: "metadata/HARD", Type: tar.TypeLink, Linkname: "metadata/PF"}}, "not a regular file")
	metaMembers("metadata directory other than metadata/", []hgMember{{Name: "metadata/sub/", Type: tar.TypeDir}}, "unexpected directory")
	metaMembers("metadata duplicate key", []hgMember{{Name: "metadata/SLOT", Data: []byte("1\n")}}, "duplicate key")

	// ---- GPKG metadata compression integrity (the Manifest is correct for
	// the damaged bytes: only the compression format's own checks see it)
	withMeta := func(name, suffix string, data []byte, want string) {
		p := base()
		p.Members[1] = hgMember{Name: hgPF + "/metadata.tar" + suffix, Data: data}
		gadd(hcCompression, name, g.ok(p), want)
	}
	inner := g.metaTar(g.meta(hgPF))
	for _, c := range []struct {
		suffix, name string
		checksum     func(b []byte) int // offset of a byte of the format's checksum
	}{
		{".gz", "gzip", func(b []byte) int { return len(b) - 8 }},  // CRC-32 in the trailer
		{".bz2", "bzip2", func([]byte) int { return 10 }},          // the block CRC, after "BZh9" and the block magic
		{".xz", "xz", hgXzCheck},                                   // the block's CRC64
		{".zst", "zstd", func(b []byte) int { return len(b) - 1 }}, // the frame's content checksum
		{".lz4", "lz4", func(b []byte) int { return len(b) - 1 }},  // the frame's content checksum
	} {
		good := g.compress(c.suffix, inner)
		flip := func(at int) []byte { return hgPatch(good, at, []byte{good[at] ^ 0x55}) }
		withMeta(c.name+" metadata with a wrong checksum", c.suffix, flip(c.checksum(good)), "metadata.tar"+c.suffix)
		withMeta(c.name+" metadata cut by 4 bytes", c.suffix, good[:len(good)-4], "metadata.tar"+c.suffix)
		withMeta(c.name+" metadata cut in half", c.suffix, good[:len(good)/2], "metadata.tar"+c.suffix)
		withMeta(c.name+" metadata with a byte changed mid-stream", c.suffix, flip(len(good)/2), "metadata.tar"+c.suffix)
	}
	{
		gz := g.compress(".gz", inner)
		withMeta("gzip metadata with a wrong length (ISIZE)", ".gz", hgPatch(gz, len(gz)-2, []byte{gz[len(gz)-2] ^ 1}), "gzip")
		withMeta("gzip metadata followed by garbage", ".gz", append(append([]byte(nil), gz...), "garbage"...), "gzip")
		withMeta("gzip data under .zst", ".zst", gz, "magic number mismatch")
		withMeta("xz data under .bz2", ".bz2", g.compress(".xz", inner), "bzip2")
		withMeta("zstd data under .gz", ".gz", g.compress(".zst", inner), "gzip")
		withMeta("plain tar under .lz4", ".lz4", inner, "lz4")
		withMeta("empty metadata member (.zst)", ".zst", nil, "")
	}
	{
		// A decompression bomb: ~70 MiB of tar in a few KiB of zstd, past
		// the 64 MiB limit (Portage reads all of it into memory).
		var big bytes.Buffer
		tw := tar.NewWriter(&big)
		for _, e := range g.meta(hgPF) {
			tw.WriteHeader(&tar.Header{Name: "metadata/" + e.Key, Mode: 0o644, Size: int64(len(e.Value)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR})
			tw.Write(e.Value)
		}
		tw.WriteHeader(&tar.Header{Name: "metadata/environment", Mode: 0o644, Size: 70 << 20, ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR})
		tw.Write(make([]byte, 70<<20))
		tw.Close()
		withMeta("zstd metadata bomb (70 MiB)", ".zst", g.compress(".zst", big.Bytes()), "limit")
	}

	// ---- GPKG Manifest: size and both hashes of every member
	for _, member := range []string{"gpkg-1", "metadata.tar.zst", "image.tar.zst"} {
		p := base()
		man := p.manifest()
		gadd(hcManifest, "Manifest size wrong for "+member, g.file(p, hgEditManifest(man, member, func(f []string) {
			n, _ := strconv.Atoi(f[2])
			f[2] = strconv.Itoa(n + 1)
		}), tar.FormatUSTAR), "size")
		for _, algo := range []string{"BLAKE2B", "SHA512"} {
			gadd(hcManifest, "Manifest "+algo+" wrong for "+member, g.file(p, hgEditManifest(man, member, func(f []string) {
				for i := 3; i+1 < len(f); i += 2 {
					if f[i] == algo {
						f[i+1] = hgFlipHex(f[i+1])
					}
				}
			}), tar.FormatUSTAR), algo+" hash does not match")
		}
	}
	{
		p := base()
		man := p.manifest()
		img := append([]byte(nil), p.Members[2].Data...)
		img[len(img)/2] ^= 0x20
		p.Members[2].Data = img
		gadd(hcManifest, "image bytes changed, Manifest kept", g.file(p, man, tar.FormatUSTAR), "hash does not match")
	}
	{
		p := base()
		man := p.manifest()
		p.Members[2].Data = p.Members[2].Data[:len(p.Members[2].Data)-100]
		gadd(hcManifest, "image shortened, Manifest kept", g.file(p, man, tar.FormatUSTAR), "size")
	}
	{
		p := base()
		p.Members = append(p.Members, hgMember{Name: hgPF + "/image.tar.zst.sig", Data: []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")})
		man := hgEditManifest(p.manifest(), "image.tar.zst.sig", func(f []string) { f[4] = hgFlipHex(f[4]) })
		gadd(hcManifest, "Manifest hash wrong for a .sig member", g.file(p, man, tar.FormatUSTAR), "hash does not match")
	}
	manEdit := func(name string, edit func(man string) string, want string) {
		p := base()
		gadd(hcManifest, name, g.file(p, edit(p.manifest()), tar.FormatUSTAR), want)
	}
	manEdit("Manifest line not starting with DATA", func(m string) string { return m + "DIST foo 1 SHA512 00\n" }, "DATA")
	manEdit("Manifest lists a member twice", func(m string) string { return m + strings.SplitAfter(m, "\n")[1] }, "twice")
	manEdit("Manifest size not an integer", func(m string) string {
		return hgEditManifest(m, "gpkg-1", func(f []string) { f[2] = "zero" })
	}, "not an integer")
	manEdit("Manifest line with a hash name but no value", func(m string) string {
		return hgEditManifest(m, "gpkg-1", func(f []string) { f[len(f)-1] = "" })
	}, "")
	manEdit("Manifest entry with no BLAKE2B or SHA512", func(m string) string {
		return hgEditManifest(m, "image.tar.zst", func(f []string) { f[3], f[5] = "FOO", "BAR" })
	}, "no BLAKE2B or SHA512")
	manEdit("Manifest hash not hex", func(m string) string {
		return hgEditManifest(m, "image.tar.zst", func(f []string) { f[4] = strings.Repeat("zz", 64) })
	}, "hash does not match")
	manEdit("empty Manifest", func(string) string { return "" }, "not listed")
	manEdit("signed Manifest without its signature", func(m string) string {
		return "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + m
	}, "signed Manifest")
	manEdit("signed Manifest with text after the signature", func(m string) string {
		return "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + m +
			"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\nDATA evil 1 SHA512 00\n"
	}, "after its signature")
	return cs
}

// hgXzCheck is the offset of the one block's check (CRC64) in an xz
// stream: right before the index, which the footer's backward size finds.
func hgXzCheck(b []byte) int {
	backward := (int(binary.LittleEndian.Uint32(b[len(b)-8:])) + 1) * 4
	return len(b) - 12 - backward - 8
}
