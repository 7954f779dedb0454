package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

// Bad input written through the mount at package names: every kind must be
// refused at close() with EINVAL, logged, kept byte for byte as a plain file
// at its path, recorded for `pkgdirfs verify` and (with --xattrs) the xattr
// user.pkgdirfs.error, and must leave Packages untouched.

const refusalMsg = `msg="refused a file written at a package name"`

// badKind is one kind of bad input and where it is written.
type badKind struct {
	Name string // what is wrong
	Path string // target, relative to the mount
	Data []byte
	Want string // a substring the refusal reason must contain ("" = any non-empty reason)
}

// ------------------------------------------------------------ builders

// splitXpak returns the tarball part and the XPAK entries of an xpak file.
func splitXpak(t *testing.T, b []byte) ([]byte, []xpak.Entry) {
	t.Helper()
	entries, tarLen, err := xpak.ReadXpak(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("fixture xpak does not parse: %v", err)
	}
	return b[:tarLen], entries
}

// buildXpak is tarball + XPAK block + trailer, as Portage writes it.
func buildXpak(t *testing.T, tarball []byte, entries []xpak.Entry) []byte {
	t.Helper()
	block, err := xpak.EncodeBlock(entries)
	if err != nil {
		t.Fatalf("EncodeBlock: %v", err)
	}
	return append(append([]byte{}, tarball...), xpak.AppendTrailer(block)...)
}

// rawXpak is buildXpak without EncodeBlock's checks: the block a hostile
// builder would write.
func rawXpak(tarball []byte, entries []xpak.Entry) []byte {
	be := func(b []byte, n int) []byte { return binary.BigEndian.AppendUint32(b, uint32(n)) }
	var index, data []byte
	for _, e := range entries {
		index = be(index, len(e.Key))
		index = append(index, e.Key...)
		index = be(index, len(data))
		index = be(index, len(e.Value))
		data = append(data, e.Value...)
	}
	block := be(be([]byte("XPAKPACK"), len(index)), len(data))
	block = append(append(append(block, index...), data...), "XPAKSTOP"...)
	return append(append([]byte{}, tarball...), xpak.AppendTrailer(block)...)
}

// withEntry returns entries with key set to value (appended when absent),
// or removed when value is nil.
func withEntry(entries []xpak.Entry, key string, value []byte) []xpak.Entry {
	var out []xpak.Entry
	found := false
	for _, e := range entries {
		if e.Key == key {
			found = true
			if value == nil {
				continue
			}
			e.Value = value
		}
		out = append(out, e)
	}
	if !found && value != nil {
		out = append(out, xpak.Entry{Key: key, Value: value})
	}
	return out
}

// xpakBlockStart is the offset of "XPAKPACK" in an xpak file.
func xpakBlockStart(b []byte) int {
	l := int(binary.BigEndian.Uint32(b[len(b)-8 : len(b)-4]))
	return len(b) - 8 - l
}

// tarMember is one member of a tar archive.
type tarMember struct {
	Name string
	Data []byte
}

func readTarMembers(t *testing.T, b []byte) []tarMember {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarMember
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading fixture tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading fixture tar member %s: %v", h.Name, err)
		}
		out = append(out, tarMember{h.Name, data})
	}
}

// writeTar writes members as a ustar archive (the outer gpkg format).
func writeTar(t *testing.T, members []tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", m.Name, err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manifestFor renders a gpkg Manifest (SHA512 only) for members.
func manifestFor(members []tarMember) []byte {
	var b strings.Builder
	for _, m := range members {
		sum := sha512.Sum512(m.Data)
		fmt.Fprintf(&b, "DATA %s %d SHA512 %s\n", filepath.Base(m.Name), len(m.Data), hex.EncodeToString(sum[:]))
	}
	return []byte(b.String())
}

// gpkgMembers edits a gpkg's members; fix rewrites the Manifest for the
// edited member list (else the original Manifest is kept as is).
func editGpkg(t *testing.T, gp []byte, fix bool, edit func([]tarMember) []tarMember) []byte {
	t.Helper()
	ms := edit(readTarMembers(t, gp))
	if fix {
		var body []tarMember
		idx := -1
		for i, m := range ms {
			if filepath.Base(m.Name) == "Manifest" {
				idx = i
				continue
			}
			body = append(body, m)
		}
		if idx < 0 {
			t.Fatal("editGpkg: no Manifest to fix")
		}
		ms[idx].Data = manifestFor(body)
	}
	return writeTar(t, ms)
}

// synthGpkg builds a gpkg whose metadata (gzip) holds entries, plus extra
// zero bytes in metadata/environment (a decompression bomb when large),
// and an uncompressed image tar; the Manifest is correct.
func synthGpkg(t *testing.T, dir string, entries []xpak.Entry, zeros int64) []byte {
	t.Helper()
	var meta bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&meta, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	hdr := func(name string, size int64) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		if e.Key == "environment.bz2" {
			continue
		}
		hdr("metadata/"+e.Key, int64(len(e.Value)))
		if _, err := tw.Write(e.Value); err != nil {
			t.Fatal(err)
		}
	}
	if zeros > 0 {
		hdr("metadata/environment", zeros)
		chunk := make([]byte, 1<<20)
		for left := zeros; left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := tw.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	image := writeTar(t, []tarMember{{"image/usr/share/doc/README", []byte("hello from a test image\n")}})
	body := []tarMember{
		{dir + "/gpkg-1", nil},
		{dir + "/metadata.tar.gz", meta.Bytes()},
		{dir + "/image.tar", image},
	}
	return writeTar(t, append(body, tarMember{dir + "/Manifest", manifestFor(body)}))
}

// ------------------------------------------------------------ checks

// refusalLines returns the daemon log's refusal lines naming rel.
func refusalLines(logFile, rel string) []string {
	b, _ := os.ReadFile(logFile)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, refusalMsg) &&
			(strings.Contains(l, " path="+rel+" ") || strings.Contains(l, ` path="`+rel+`"`)) {
			out = append(out, l)
		}
	}
	return out
}

func readPackagesFile(t *testing.T, mnt string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatalf("read Packages: %v", err)
	}
	return b
}

// errorXattr runs getfattr for user.pkgdirfs.error.
func errorXattr(t *testing.T, path string) cmdResult {
	t.Helper()
	return run(t, "", toolTimeout, "getfattr", "-n", "user.pkgdirfs.error", "--only-values", "--", path)
}

// checkRefused asserts everything that must hold once the bytes of src were
// refused at mnt/rel.
func checkRefused(t *testing.T, mi *mountInfo, what, src, rel, want string, pkgBefore []byte) string {
	t.Helper()
	dst := filepath.Join(mi.Dir, rel)
	if lines := refusalLines(mi.Log, rel); len(lines) == 0 {
		t.Errorf("%s: daemon log has no line `%s path=%s reason=...`", what, refusalMsg, rel)
	}
	// The bytes are kept in the quarantine, never at the package name
	// (Portage's walk, tar and nginx would meet them there).
	kept := filepath.Join(mi.Dir, ".pkgdirfs/refused", rel)
	if r := run(t, "", toolTimeout, "cmp", src, kept); r.Code != 0 {
		t.Errorf("%s: the refused bytes are not kept at .pkgdirfs/refused/%s: %s", what, rel, r)
	}
	// (A flat or All/ name may show its package's alias: a symlink.)
	if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() {
		t.Errorf("%s: a regular file is left at the package name %s after a refusal", what, rel)
	} else if err != nil && !os.IsNotExist(err) {
		t.Errorf("%s: lstat %s: %v", what, rel, err)
	}
	if after := readPackagesFile(t, mi.Dir); !bytes.Equal(after, pkgBefore) {
		t.Errorf("%s: Packages changed by a refused file:\n%s", what,
			firstDiff(strings.Split(string(pkgBefore), "\n"), strings.Split(string(after), "\n"), nil))
	}
	x := errorXattr(t, kept)
	reason := strings.TrimSpace(string(x.Stdout))
	if x.Code != 0 || reason == "" {
		t.Errorf("%s: want a non-empty user.pkgdirfs.error on .pkgdirfs/refused/%s: %s", what, rel, x)
	} else if want != "" && !strings.Contains(reason, want) {
		t.Errorf("%s: refusal reason %q does not mention %q", what, reason, want)
	}
	return reason
}

// ------------------------------------------------------------ the corpus

func badInputCorpus(t *testing.T) (kinds []badKind, controls []badKind, plain []badKind) {
	xm := extractFixture(t, "xpak-bzip2-multi")
	gm := extractFixture(t, "gpkg-zstd-multi")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	xb := read(filepath.Join(xm, "app-misc/hello/hello-2.10-1.xpak"))
	gb := read(filepath.Join(gm, "app-misc/hello/hello-2.10-1.gpkg.tar"))
	curl := read(filepath.Join(gm, "net-misc/curl/curl-8.9.1-1.gpkg.tar"))
	tarball, entries := splitXpak(t, xb)
	bs := xpakBlockStart(xb)
	blockLen := len(xb) - 8 - bs
	rng := rand.New(rand.NewSource(42))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	patch := func(b []byte, off int, p []byte) []byte {
		c := append([]byte{}, b...)
		copy(c[off:], p)
		return c
	}
	be := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

	id := 100
	xname := func() string { id++; return fmt.Sprintf("app-misc/hello/hello-2.10-%d.xpak", id) }
	gname := func() string { id++; return fmt.Sprintf("app-misc/hello/hello-2.10-%d.gpkg.tar", id) }
	gdir := "hello-2.10-1"
	gmeta := "metadata.tar.zst"
	for _, m := range readTarMembers(t, gb) {
		if strings.Contains(m.Name, "/metadata.tar") {
			gdir, gmeta = filepath.Dir(m.Name), filepath.Base(m.Name)
		}
	}

	// Builders proven by controls: each must be accepted as a package.
	controls = []badKind{
		{Name: "control: fixture xpak as is", Path: "app-misc/hello/hello-2.10-90.xpak", Data: xb},
		{Name: "control: xpak re-encoded with an extra key", Path: "app-misc/hello/hello-2.10-91.xpak",
			Data: buildXpak(t, tarball, withEntry(entries, "PKGDIRFS_TEST", []byte("1\n")))},
		{Name: "control: gpkg re-tarred with a SHA512-only Manifest", Path: "app-misc/hello/hello-2.10-92.gpkg.tar",
			Data: editGpkg(t, gb, true, func(m []tarMember) []tarMember { return m })},
		{Name: "control: synthetic gpkg (gzip metadata)", Path: "app-misc/hello/hello-2.10-93.gpkg.tar",
			Data: synthGpkg(t, gdir, entries, 0)},
		// Portage unpacks lzip tarballs, and an xpak's metadata needs no
		// decompression: such a package is accepted as it is.
		{Name: "control: lzip-compressed xpak tarball", Path: "app-misc/hello/hello-2.10-94.xpak",
			Data: buildXpak(t, append([]byte("LZIP\x01"), tarball[5:]...), entries)},
	}

	kinds = []badKind{
		{Name: "random bytes at an xpak name", Path: xname(), Data: random(8192)},
		{Name: "random bytes at a gpkg name", Path: gname(), Data: random(10240)},
		{Name: "xpak truncated in the tarball", Path: xname(), Data: xb[:bs/2]},
		{Name: "xpak truncated in the XPAK block", Path: xname(), Data: xb[:bs+blockLen/2]},
		{Name: "xpak truncated in the trailer", Path: xname(), Data: xb[:len(xb)-6]},
		{Name: "XPAK trailer with a wrong L", Path: xname(), Data: patch(xb, len(xb)-8, be(uint32(blockLen+3)))},
		{Name: "XPAK trailer L beyond the file", Path: xname(), Data: patch(xb, len(xb)-8, be(uint32(len(xb))))},
		{Name: "XPAKPACK magic corrupted", Path: xname(), Data: patch(xb, bs, []byte("XPAKPICK"))},
		{Name: "XPAK index_len too large", Path: xname(), Data: patch(xb, bs+8, be(0xFFFFFF00))},
		{Name: "XPAK data offset out of range", Path: xname(), Data: patch(xb, bs+16+4+int(binary.BigEndian.Uint32(xb[bs+16:])), be(0x7FFFFFF0))},
		{Name: "missing CATEGORY", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "CATEGORY", nil)), Want: "CATEGORY"},
		{Name: "missing PF", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "PF", nil)), Want: "PF"},
		{Name: "missing SLOT", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "SLOT", nil)), Want: "SLOT"},
		{Name: "empty SLOT", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "SLOT", []byte("\n"))), Want: "SLOT"},
		{Name: "PF disagrees with the multi-instance name", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "PF", []byte("hello-2.11\n")))},
		{Name: "PF disagrees with the flat name", Path: "app-misc/hello-9.9.tbz2", Data: xb},
		{Name: "PF disagrees with the All/ name", Path: "All/hello-9.9.tbz2", Data: xb},
		{Name: "CATEGORY disagrees with the directory", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "CATEGORY", []byte("app-text\n")))},
		{Name: "invalid BUILD_ID abc in xpak metadata", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "BUILD_ID", []byte("abc"))), Want: "BUILD_ID"},
		{Name: "BUILD_ID 0 in xpak metadata", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "BUILD_ID", []byte("0\n"))), Want: "BUILD_ID"},
		{Name: "negative BUILD_ID in xpak metadata", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "BUILD_ID", []byte("-3\n"))), Want: "BUILD_ID"},
		{Name: "BUILD_ID with a leading zero in xpak metadata", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "BUILD_ID", []byte("07\n"))), Want: "BUILD_ID"},
		{Name: "BUILD_ID beyond 64 bits in xpak metadata", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "BUILD_ID", []byte("99999999999999999999\n"))), Want: "BUILD_ID"},
		{Name: "XPAK key climbing out of the directory", Path: xname(), Data: rawXpak(tarball, withEntry(entries, "../../etc/cron.d/evil", []byte("x"))), Want: "contains '/'"},
		{Name: "XPAK key with an absolute path", Path: xname(), Data: rawXpak(tarball, withEntry(entries, "/etc/passwd", []byte("x"))), Want: "contains '/'"},
		{Name: "XPAK key ..", Path: xname(), Data: rawXpak(tarball, withEntry(entries, "..", []byte("x"))), Want: "not a file name"},
		{Name: "XPAK key not UTF-8", Path: xname(), Data: rawXpak(tarball, withEntry(entries, "KEY\xff", []byte("x"))), Want: "not UTF-8"},
		{Name: "unparseable RDEPEND (unbalanced parenthesis)", Path: xname(), Data: buildXpak(t, tarball, withEntry(entries, "RDEPEND", []byte("foo? ( bar\n"))), Want: "RDEPEND"},
		{Name: "xpak tarball of unknown compression", Path: xname(), Data: buildXpak(t, random(4096), entries)},
		{Name: "gpkg content under a .tbz2 name", Path: "All/curl-8.9.1.tbz2", Data: curl},
		{Name: "gpkg content under a .xpak name", Path: xname(), Data: gb},
		{Name: "xpak content under a .gpkg.tar name", Path: "app-misc/hello-2.10.gpkg.tar", Data: xb},
		{Name: "gpkg truncated", Path: gname(), Data: gb[:len(gb)/2]},
		{Name: "gpkg missing gpkg-1", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			var out []tarMember
			for _, m := range ms {
				if filepath.Base(m.Name) != "gpkg-1" {
					out = append(out, m)
				}
			}
			return out
		}), Want: "gpkg-1"},
		{Name: "gpkg missing Manifest", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			return ms[:len(ms)-1]
		}), Want: "Manifest"},
		{Name: "gpkg Manifest hash corrupted", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			m := &ms[len(ms)-1]
			lines := strings.Split(string(m.Data), "\n")
			for i, l := range lines {
				if strings.Contains(l, " "+gmeta+" ") {
					f := strings.Fields(l)
					h := []byte(f[4])
					if h[10] == '0' {
						h[10] = '1'
					} else {
						h[10] = '0'
					}
					f[4] = string(h)
					lines[i] = strings.Join(f, " ")
				}
			}
			m.Data = []byte(strings.Join(lines, "\n"))
			return ms
		}), Want: "hash"},
		{Name: "gpkg image bytes changed, Manifest not", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			for i := range ms {
				if strings.Contains(ms[i].Name, "/image.tar") {
					d := append([]byte(nil), ms[i].Data...)
					d[len(d)/2] ^= 0x55
					ms[i].Data = d
				}
			}
			return ms
		}), Want: "hash does not match"},
		{Name: "gpkg with an extra member", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			extra := tarMember{gdir + "/extra.txt", []byte("not in the Manifest\n")}
			return append(ms[:len(ms)-1:len(ms)-1], extra, ms[len(ms)-1])
		})},
		{Name: "gpkg with a duplicate member", Path: gname(), Data: editGpkg(t, gb, false, func(ms []tarMember) []tarMember {
			return append(ms[:2:2], append([]tarMember{ms[1]}, ms[2:]...)...)
		}), Want: "duplicate"},
		{Name: "gpkg member outside the common directory", Path: gname(), Data: editGpkg(t, gb, true, func(ms []tarMember) []tarMember {
			ms[0].Name = "other-dir/" + filepath.Base(ms[0].Name)
			return ms
		})},
		{Name: "gpkg metadata with an unknown compressor suffix", Path: gname(), Data: editGpkg(t, gb, true, func(ms []tarMember) []tarMember {
			for i := range ms {
				if filepath.Base(ms[i].Name) == gmeta {
					ms[i].Name = gdir + "/metadata.tar.br"
				}
			}
			return ms
		}), Want: "suffix"},
		{Name: "gpkg metadata lzip-compressed", Path: gname(), Data: editGpkg(t, gb, true, func(ms []tarMember) []tarMember {
			for i := range ms {
				if filepath.Base(ms[i].Name) == gmeta {
					ms[i].Name = gdir + "/metadata.tar.lz"
				}
			}
			return ms
		}), Want: "unsupported compression"},
		{Name: "a tar that is not a gpkg", Path: gname(), Data: writeTar(t, []tarMember{
			{"notes/a.txt", bytes.Repeat([]byte("a"), 700)}, {"notes/b.txt", []byte("b\n")}})},
		{Name: "gzip bomb in gpkg metadata (100 MiB of zeros)", Path: gname(), Data: synthGpkg(t, gdir, entries, 100<<20), Want: "limit"},
		{Name: "invalid BUILD_ID abc in gpkg metadata", Path: gname(), Data: synthGpkg(t, gdir, withEntry(entries, "BUILD_ID", []byte("abc")), 0), Want: "BUILD_ID"},
	}

	// Names that are not package names (§5.3): kept as plain files, no refusal.
	plain = []badKind{
		{Name: "empty file at a flat name", Path: "app-misc/hello-3.0.tbz2", Data: nil},
	}
	return kinds, controls, plain
}

// ------------------------------------------------------------ tests

func TestBadInputRefused(t *testing.T) {
	needBinary(t)
	state := t.TempDir()
	importOK(t, state, importSummary{20, 0, 0}, extractFixture(t, "xpak-bzip2-flat"))
	mi := mountFSInfo(t, state, "--xattrs")
	mnt := mi.Dir
	kinds, controls, plain := badInputCorpus(t)
	if len(kinds) < 20 {
		t.Fatalf("corpus has %d kinds, want ≥ 20", len(kinds))
	}
	srcDir := t.TempDir()
	writeSrc := func(i int, prefix string, data []byte) string {
		p := filepath.Join(srcDir, fmt.Sprintf("%s-%02d", prefix, i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Controls: the builders make valid packages, so each refusal below is
	// the mutation's doing.
	for i, c := range controls {
		src := writeSrc(i, "control", c.Data)
		if r := run(t, "", toolTimeout, "cp", src, filepath.Join(mnt, c.Path)); r.Code != 0 {
			t.Fatalf("%s: cp to %s must succeed (a valid package): %s\ndaemon log:\n%s", c.Name, c.Path, r, readLog(mi.Log))
		}
	}
	idx, err := parseIndex(readPackagesFile(t, mnt))
	if err != nil {
		t.Fatalf("Packages after the controls: %v", err)
	}
	paths := map[string]bool{}
	for _, in := range instances(idx) {
		paths[in.Path] = true
	}
	for _, c := range controls {
		if !paths[c.Path] {
			t.Errorf("%s: committed at %s but Packages has no PATH: %s", c.Name, c.Path, c.Path)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	reasons := map[string]string{}
	accepted := 0 // kinds wrongly committed (each already reported)
	for i, k := range kinds {
		before := readPackagesFile(t, mnt)
		src := writeSrc(i, "bad", k.Data)
		dst := filepath.Join(mnt, k.Path)
		what := fmt.Sprintf("kind %d (%s) at %s", i+1, k.Name, k.Path)
		r := run(t, "", toolTimeout, "cp", src, dst)
		if r.Code == 0 {
			accepted++
			t.Errorf("%s: cp exited 0, want a failure (close() → EINVAL): %s", what, r)
		} else if !strings.Contains(string(r.Stderr), dst) || !strings.Contains(string(r.Stderr), "Invalid argument") {
			t.Errorf("%s: cp's stderr should name %s and say Invalid argument: %s", what, dst, r)
		}
		if reason := checkRefused(t, mi, what, src, k.Path, k.Want, before); len(refusalLines(mi.Log, k.Path)) > 0 {
			reasons[k.Path] = reason
		}
		t.Logf("kind %2d %-48s → %q", i+1, k.Name, reasons[k.Path])
	}

	// Names that look like packages but that Portage skips: refused at
	// create (EINVAL), nothing written, the refusal recorded (see also
	// TestBadNamesRefused).
	if err := os.Mkdir(filepath.Join(mnt, "app-misc/wrongpn"), 0o755); err != nil {
		t.Fatalf("mkdir in the mount: %v", err)
	}
	for i, rel := range []string{"app-misc/hello-2.10.xpak", "app-misc/hello/hello-2.10-01.xpak", "app-misc/wrongpn/hello-2.10-5.xpak"} {
		src := writeSrc(i, "badname", kinds[0].Data)
		if r := run(t, "", toolTimeout, "cp", src, filepath.Join(mnt, rel)); r.Code == 0 || !strings.Contains(string(r.Stderr), "Invalid argument") {
			t.Errorf("cp to %s (Portage skips the name): want \"Invalid argument\", got %s", rel, r)
		}
		reasons[rel] = "" // verify lists it; no bytes, no xattr
	}

	// Non-package names: plain files, no refusal, no xattr.
	for i, k := range plain {
		before := readPackagesFile(t, mnt)
		src := writeSrc(i, "plain", k.Data)
		dst := filepath.Join(mnt, k.Path)
		what := fmt.Sprintf("non-package name (%s) %s", k.Name, k.Path)
		if r := run(t, "", toolTimeout, "cp", src, dst); r.Code != 0 {
			t.Errorf("%s: cp must succeed (a plain file): %s", what, r)
		}
		if r := run(t, "", toolTimeout, "cmp", src, dst); r.Code != 0 {
			t.Errorf("%s: bytes differ: %s", what, r)
		}
		if lines := refusalLines(mi.Log, k.Path); len(lines) != 0 {
			t.Errorf("%s: logged as refused: %q", what, lines)
		}
		if after := readPackagesFile(t, mnt); !bytes.Equal(after, before) {
			t.Errorf("%s: Packages changed", what)
		}
		if x := errorXattr(t, dst); x.Code == 0 {
			t.Errorf("%s: has user.pkgdirfs.error %q, want none", what, x.Stdout)
		}
	}

	// Refusal via rename(2): EINVAL, bytes at the target, source gone.
	{
		before := readPackagesFile(t, mnt)
		src := writeSrc(0, "rename", kinds[0].Data)
		tmp := filepath.Join(mnt, "app-misc", ".tmp-rename-bad")
		mustRun(t, "", "cp", src, tmp)
		rel := "app-misc/hello/hello-2.10-300.xpak"
		err := os.Rename(tmp, filepath.Join(mnt, rel))
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("rename(bad bytes → %s): want EINVAL, got %v", rel, err)
		}
		reasons[rel] = checkRefused(t, mi, "rename(2) onto "+rel, src, rel, "", before)
		if _, err := os.Lstat(tmp); err == nil {
			t.Errorf("after the refused rename(2), the source %s is still visible (stale entry): the bytes moved to %s", tmp, rel)
		}
	}
	// ... and via the real mv.
	{
		before := readPackagesFile(t, mnt)
		src := writeSrc(1, "rename", kinds[1].Data)
		tmp := filepath.Join(mnt, "app-misc", "hello", ".tmp-mv-bad")
		mustRun(t, "", "cp", src, tmp)
		rel := "app-misc/hello/hello-2.10-301.gpkg.tar"
		if r := run(t, "", toolTimeout, "mv", tmp, filepath.Join(mnt, rel)); r.Code == 0 {
			t.Errorf("mv of bad bytes onto %s exited 0, want a failure (rename → EINVAL): %s", rel, r)
		} else {
			t.Logf("mv onto %s: %s", rel, r)
		}
		reasons[rel] = checkRefused(t, mi, "mv onto "+rel, src, rel, "", before)
		if r := run(t, "", toolTimeout, "stat", "-c", "%i %s", "--", tmp); r.Code == 0 {
			t.Errorf("after the refused mv, the source %s is still visible (`stat` → %s); its bytes are at %s", tmp, strings.TrimSpace(string(r.Stdout)), rel)
		}
	}

	// verify lists every refused path with its reason and exits 0, while mounted.
	for _, deep := range []bool{false, true} {
		args := []string{"verify", "--state", state}
		if deep {
			args = append(args, "--deep")
		}
		r := runCLI(t, args...)
		if r.Code != 0 {
			t.Errorf("%v: want exit 0 (refusals are not faults), got %d: %s", args, r.Code, r)
		}
		out := string(r.Stdout)
		if strings.Contains(out, "FAULT") {
			t.Errorf("%v: reports faults: %s", args, r)
		}
		sum := regexp.MustCompile(`verified (\d+) instances and (\d+) placeholders \([a-z]+\): 0 faults, (\d+) refused files?`).FindStringSubmatch(out)
		if sum == nil {
			t.Errorf("%v: no summary line `verified N instances and M placeholders (...): 0 faults, R refused files`: %s", args, r)
		} else if sum[1] != fmt.Sprint(20+len(controls)+accepted) || sum[3] != fmt.Sprint(len(reasons)) {
			t.Errorf("%v: summary %q: want %d instances and %d refused files", args, sum[0], 20+len(controls)+accepted, len(reasons))
		}
		for rel, reason := range reasons {
			line := regexp.MustCompile(`(?m)^refused: ` + regexp.QuoteMeta(rel) + `: (.+) \((\d+) bytes, [^)]+\)$`).FindStringSubmatch(out)
			if line == nil {
				t.Errorf("%v: no line `refused: %s: REASON (N bytes, TIME)`", args, rel)
				continue
			}
			if reason != "" && line[1] != reason {
				t.Errorf("%v: %s: reason %q differs from the xattr %q", args, rel, line[1], reason)
			}
		}
		for _, k := range plain {
			if strings.Contains(out, "refused: "+k.Path+":") {
				t.Errorf("%v: lists the plain file %s as refused", args, k.Path)
			}
		}
	}

	// The daemon still serves.
	if _, ok := mountedFSType(mnt); !ok {
		t.Fatalf("%s is no longer mounted", mnt)
	}
	for _, pid := range mi.PIDs {
		if pidGone(pid) {
			t.Errorf("daemon pid %d is gone", pid)
		}
	}
	mustRun(t, "", "ls", "-lR", mnt)
	if _, err := parseIndex(readPackagesFile(t, mnt)); err != nil {
		t.Errorf("Packages after the corpus: %v", err)
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", readLog(mi.Log))
	}
}

// TestBadNamesRefused: files written through the mount at names that look
// like packages but that Portage would skip are refused, EINVAL on create
// and EPERM on rename (cp and mv report them; the source keeps the bytes;
// nothing appears), and the
// same names in an imported directory are listed as invalid with the
// reason. Temp and lock names of the same shape keep working.
func TestBadNamesRefused(t *testing.T) {
	t.Parallel()
	needBinary(t)
	src := extractFixture(t, "xpak-bzip2-flat")
	pkg := filepath.Join(src, "app-misc", "hello-2.10.tbz2")
	bad := []string{
		"app-misc/hello/hello-2.10-7.XPAK",
		"app-misc/hello-2.10.TBZ2",
		"app-misc/hello-2.10.gpkg",
		"app-misc/hello-2.10.xpak",
		"app-misc/hello/hello-2.10.tbz2",
		"app-misc/hello/hello-2.10-0.xpak",
		"app-misc/hello/hello-2.10-007.xpak",
		"app-misc/other/hello-2.10-7.xpak",
	}
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	before, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range bad {
		dst := filepath.Join(mnt, rel)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if r := run(t, "", toolTimeout, "cp", pkg, dst); r.Code == 0 || !strings.Contains(string(r.Stderr), "Invalid argument") {
			t.Errorf("cp to %s: want \"Invalid argument\", got %s", rel, r)
		}
		if _, err := os.Lstat(dst); err == nil {
			t.Errorf("%s exists after the refused cp", rel)
		}
		// A temp file renamed onto the name: refused, the temp file stays.
		tmp := filepath.Join(filepath.Dir(dst), ".pkgdirfs-test.tmp")
		if r := run(t, "", toolTimeout, "cp", pkg, tmp); r.Code != 0 {
			t.Fatalf("cp to a temp name: %s", r)
		}
		if r := run(t, "", toolTimeout, "mv", tmp, dst); r.Code == 0 || !strings.Contains(string(r.Stderr), "Operation not permitted") {
			t.Errorf("mv onto %s: want \"Operation not permitted\", got %s", rel, r)
		}
		if _, err := os.Stat(tmp); err != nil {
			t.Errorf("the temp file renamed onto %s is gone: %v", rel, err)
		}
		os.Remove(tmp)
		if !strings.Contains(readLog(mi.Log), rel) {
			t.Errorf("the daemon log does not name %s", rel)
		}
	}
	// Temp names of the shapes Portage and rsync use still work.
	for _, rel := range []string{"app-misc/hello-2.10.tbz2.12345", "app-misc/.hello-2.10.tbz2.aB3xYz"} {
		if r := run(t, "", toolTimeout, "cp", pkg, filepath.Join(mnt, rel)); r.Code != 0 {
			t.Errorf("cp to the temp name %s: %s", rel, r)
		}
		os.Remove(filepath.Join(mnt, rel))
	}
	after, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil || !bytes.Equal(stripTimestamp(before), stripTimestamp(after)) {
		t.Errorf("Packages changed after the refusals (err %v)", err)
	}

	// import lists them as invalid, with the reason.
	dir := t.TempDir()
	for _, rel := range bad {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		data, _ := os.ReadFile(pkg)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, "import", "--state", filepath.Join(t.TempDir(), "st"), dir)
	if sum := parseSummary(t, r); sum.Imported != 0 || sum.Invalid != len(bad) {
		t.Errorf("import of %d badly named packages: %+v, want all invalid\n%s", len(bad), sum, r)
	}
	for _, rel := range bad {
		if !strings.Contains(string(r.Stderr), rel+": not a package file name Portage indexes") {
			t.Errorf("import does not list %s with its reason:\n%s", rel, r.Stderr)
		}
	}
}
