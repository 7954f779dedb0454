package xpak

import (
	"archive/tar"
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestInspectGpkgValid(t *testing.T) {
	b := validGpkg(t)
	for _, opt := range []InspectOptions{{}, {VerifyImage: true}} {
		info, err := inspectBytes(b, opt)
		if err != nil {
			t.Fatal(err)
		}
		if info.Format != FormatGpkg || info.Compression != CompGzip || info.GpkgDir != "foo-1" || info.Signed {
			t.Fatalf("info = %+v", info)
		}
		if len(info.Metadata) != len(testMeta) {
			t.Fatalf("metadata keys %d, want %d", len(info.Metadata), len(testMeta))
		}
		for k, v := range testMeta {
			if string(info.Metadata[k]) != v {
				t.Fatalf("%s = %q, want %q", k, info.Metadata[k], v)
			}
		}
	}
}

// without returns ms minus the member whose base name is base.
func without(ms []tmember, base string) []tmember {
	var out []tmember
	for _, m := range ms {
		if !strings.HasSuffix(m.name, "/"+base) {
			out = append(out, m)
		}
	}
	return out
}

func TestInspectGpkgRejects(t *testing.T) {
	ms := stdMembers(t)
	man := manifestFor(ms)
	image := ms[2]
	tests := []struct {
		name string
		b    []byte
		opt  InspectOptions
		want string
	}{
		{"missing gpkg-1", gpkgBytes(t, without(ms, "gpkg-1"), manifestFor(without(ms, "gpkg-1"))), InspectOptions{}, "no gpkg-1 member"},
		{"missing Manifest", gpkgBytes(t, ms, nil), InspectOptions{}, "missing foo-1/Manifest"},
		{"missing image listed in Manifest", gpkgBytes(t, without(ms, "image.tar.gz"), man), InspectOptions{}, "Manifest lists image.tar.gz but the package has no member"},
		{"extra member", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "foo-1/extra", data: []byte("x")}), man), InspectOptions{}, "foo-1/extra is not listed in the Manifest"},
		{"corrupted metadata hash", gpkgBytes(t, ms, []byte(strings.Replace(string(man), "BLAKE2B ", "BLAKE2B 0", 1))), InspectOptions{}, "BLAKE2B hash does not match"},
		{"corrupted image bytes", gpkgBytes(t, append(without(ms, "image.tar.gz"), tmember{name: image.name, data: flipped(image.data)}), man), InspectOptions{VerifyImage: true}, "foo-1/image.tar.gz: "},
		{"duplicate members", gpkgBytes(t, append(append([]tmember(nil), ms...), ms[0]), man), InspectOptions{}, "duplicate member \"foo-1/gpkg-1\""},
		{"size mismatch", gpkgBytes(t, ms, []byte(strings.Replace(string(man), "DATA gpkg-1 0 ", "DATA gpkg-1 7 ", 1))), InspectOptions{}, "gpkg: member foo-1/gpkg-1: size 0 differs from Manifest size 7"},
		{"member without dir", gpkgBytes(t, append([]tmember{{name: "gpkg-1"}}, ms[1:]...), man), InspectOptions{}, "is not of the form <dir>/<name>"},
		{"nested member", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "foo-1/sub/x"}), man), InspectOptions{}, "is not of the form <dir>/<name>"},
		{"absolute member", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "/foo-1"}), man), InspectOptions{}, "is not of the form <dir>/<name>"},
		{"directory member", gpkgBytes(t, append([]tmember{{name: "foo-1/", typ: tar.TypeDir}}, ms...), man), InspectOptions{}, "directory member"},
		{"named directory member", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "foo-1/d", typ: tar.TypeDir}), man), InspectOptions{}, "directory member"},
		{"symlink member", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "foo-1/l", typ: tar.TypeSymlink}), man), InspectOptions{}, "not a regular file"},
		{"two prefixes", gpkgBytes(t, append(append([]tmember(nil), ms...), tmember{name: "bar-1/x"}), man), InspectOptions{}, "outside the common directory \"foo-1\""},
		{"Manifest line not DATA", gpkgBytes(t, ms, append([]byte("MISC x 1\n"), man...)), InspectOptions{}, "does not start with DATA"},
		{"Manifest size not integer", gpkgBytes(t, ms, []byte(strings.Replace(string(man), "DATA gpkg-1 0 ", "DATA gpkg-1 zero ", 1))), InspectOptions{}, "not an integer"},
		{"Manifest duplicate line", gpkgBytes(t, ms, append(append([]byte(nil), man...), strings.SplitAfter(string(man), "\n")[0]...)), InspectOptions{}, "lists gpkg-1 twice"},
		{"Manifest odd fields", gpkgBytes(t, ms, append([]byte("DATA gpkg-1 0 SHA512\n"), man[strings.IndexByte(string(man), '\n')+1:]...)), InspectOptions{}, "is not DATA"},
		{"Manifest no supported hash", gpkgBytes(t, ms, append([]byte("DATA gpkg-1 0 SHA256 e3b0\n"), man[strings.IndexByte(string(man), '\n')+1:]...)), InspectOptions{}, "no BLAKE2B or SHA512"},
		{"unknown metadata suffix", func() []byte {
			m2 := append(without(ms, "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar.br", data: ms[1].data})
			return gpkgBytes(t, m2, manifestFor(m2))
		}(), InspectOptions{}, "unknown compression suffix \".br\""},
		{"no metadata member", gpkgBytes(t, without(ms, "metadata.tar.gz"), manifestFor(without(ms, "metadata.tar.gz"))), InspectOptions{}, "no metadata member"},
		{"no image member", gpkgBytes(t, without(ms, "image.tar.gz"), manifestFor(without(ms, "image.tar.gz"))), InspectOptions{}, "no image member"},
		{"metadata not gzip", func() []byte {
			m2 := append(without(ms, "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar.gz", data: []byte("not gzip at all")})
			return gpkgBytes(t, m2, manifestFor(m2))
		}(), InspectOptions{}, "not valid gzip data"},
		{"metadata entry outside metadata/", func() []byte {
			inner := tarBytes(t, []tmember{{name: "CATEGORY", data: []byte("x")}})
			m2 := append(without(ms, "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar", data: inner})
			return gpkgBytes(t, m2, manifestFor(m2))
		}(), InspectOptions{}, "is not metadata/<KEY>"},
		{"truncated", validGpkg(t)[:2000], InspectOptions{}, "truncated"},
		{"gpkg-1 not first", gpkgBytes(t, append(append([]tmember(nil), ms[1:]...), ms[0]), man), InspectOptions{}, "the first member is foo-1/metadata.tar.gz, not foo-1/gpkg-1"},
		{"members under ..", func() []byte {
			var m2 []tmember
			for _, m := range ms {
				m2 = append(m2, tmember{name: "../" + filepath.Base(m.name), data: m.data, typ: m.typ})
			}
			return tarBytes(t, append(m2, tmember{name: "../Manifest", data: manifestFor(m2)}))
		}(), InspectOptions{}, "unsafe or non-UTF-8 name"},
		{"members under .", func() []byte {
			var m2 []tmember
			for _, m := range ms {
				m2 = append(m2, tmember{name: "./" + filepath.Base(m.name), data: m.data, typ: m.typ})
			}
			return tarBytes(t, append(m2, tmember{name: "./Manifest", data: manifestFor(m2)}))
		}(), InspectOptions{}, "unsafe or non-UTF-8 name"},
	}
	// (Names that are not UTF-8 cannot be written with archive/tar.)
	for _, key := range []string{"..", "."} {
		inner := tarBytes(t, []tmember{{name: "metadata/CATEGORY", data: []byte("app-misc\n")}, {name: "metadata/" + key, data: []byte("x")}})
		m2 := append(without(ms, "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar", data: inner})
		tests = append(tests, struct {
			name string
			b    []byte
			opt  InspectOptions
			want string
		}{"metadata key " + key, gpkgBytes(t, m2, manifestFor(m2)), InspectOptions{}, "key"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := inspectBytes(tc.b, tc.opt)
			if err == nil {
				t.Fatalf("accepted: %+v", info)
			}
			wantFormatError(t, err, tc.want)
		})
	}
}

func TestInspectGpkgImageHashOnlyWithVerifyImage(t *testing.T) {
	ms := stdMembers(t)
	man := manifestFor(ms)
	bad := append(without(ms, "image.tar.gz"), tmember{name: "foo-1/image.tar.gz", data: flipped(ms[2].data)})
	b := gpkgBytes(t, bad, man)
	if _, err := inspectBytes(b, InspectOptions{}); err != nil {
		t.Fatalf("metadata read hashed the image: %v", err)
	}
	if _, err := inspectBytes(b, InspectOptions{VerifyImage: true}); err == nil {
		t.Fatal("VerifyImage accepted a corrupted image")
	}
}

func TestInspectGpkgUnsupportedMetadataCompression(t *testing.T) {
	ms := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar.lz", data: []byte("LZIP\x01")})
	_, err := inspectBytes(gpkgBytes(t, ms, manifestFor(ms)), InspectOptions{})
	wantFormatError(t, err, "unsupported compression: lzip")
	if !errors.Is(err, ErrUnsupportedCompression) {
		t.Fatalf("%v does not wrap ErrUnsupportedCompression", err)
	}
}

func TestInspectGpkgZstdAndPlainMembers(t *testing.T) {
	image := tarBytes(t, []tmember{{name: "image/x", data: []byte("x")}})
	for _, tc := range []struct {
		meta, img string
		enc       func([]byte) []byte
		want      Compression
	}{
		{"metadata.tar.zst", "image.tar.zst", func(b []byte) []byte { return zstdBytes(t, b) }, CompZstd},
		{"metadata.tar", "image.tar", func(b []byte) []byte { return b }, CompNone},
	} {
		ms := []tmember{
			{name: "foo-1/gpkg-1"},
			{name: "foo-1/" + tc.meta, data: tc.enc(metadataTar(t, testMeta))},
			{name: "foo-1/" + tc.img, data: tc.enc(image)},
		}
		info, err := inspectBytes(gpkgBytes(t, ms, manifestFor(ms)), InspectOptions{VerifyImage: true})
		if err != nil {
			t.Fatal(err)
		}
		if info.Compression != tc.want || string(info.Metadata["PF"]) != "foo-1\n" {
			t.Fatalf("info = %+v", info)
		}
	}
}

func clearSign(body string) string {
	var b strings.Builder
	b.WriteString("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n")
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.HasPrefix(line, "DATA image") {
			line = "- " + line // GnuPG may dash-escape any line
		}
		b.WriteString(line)
	}
	b.WriteString("-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
	return b.String()
}

func TestInspectGpkgSigned(t *testing.T) {
	ms := stdMembers(t)
	signed := clearSign(string(manifestFor(ms)))
	info, err := inspectBytes(gpkgBytes(t, ms, []byte(signed)), InspectOptions{VerifyImage: true})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Signed || string(info.Metadata["CATEGORY"]) != "app-misc\n" {
		t.Fatalf("info = %+v", info)
	}

	// A detached signature member alone also marks the package signed.
	withSig := append(append([]tmember(nil), ms...), tmember{name: "foo-1/metadata.tar.gz.sig", data: []byte("-----BEGIN PGP SIGNATURE-----\n")})
	info, err = inspectBytes(gpkgBytes(t, withSig, manifestFor(withSig)), InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Signed {
		t.Fatal("a .sig member did not set Signed")
	}

	// Signature members are always hashed.
	badSig := append(append([]tmember(nil), ms...), tmember{name: "foo-1/image.tar.gz.sig", data: []byte("sig")})
	man := manifestFor(badSig)
	badSig[len(badSig)-1].data = []byte("SIG")
	_, err = inspectBytes(gpkgBytes(t, badSig, man), InspectOptions{})
	wantFormatError(t, err, "image.tar.gz.sig: BLAKE2B hash does not match")

	for name, m := range map[string]string{
		"no signature block": strings.Split(signed, "-----BEGIN PGP SIGNATURE-----")[0],
		"no end":             strings.Split(signed, "-----END PGP SIGNATURE-----")[0],
		"no blank line":      "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n",
		"text before":        "DATA x\n" + signed,
		"text after":         signed + "DATA gpkg-1 0\n",
	} {
		_, err := inspectBytes(gpkgBytes(t, ms, []byte(m)), InspectOptions{})
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestClearSignedBodyUnescapes(t *testing.T) {
	body, err := clearSignedBody(strings.Split(clearSign("DATA a 1 SHA512 00\nDATA image 2 SHA512 11\n"), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The newline before the signature belongs to the armour (RFC 4880 §7).
	if got := strings.Join(body, "\n"); got != "DATA a 1 SHA512 00\nDATA image 2 SHA512 11" {
		t.Fatalf("body = %q", got)
	}
}

func TestInspectGpkgMetadataBomb(t *testing.T) {
	defer func(old int64) { metadataLimit = old }(metadataLimit)
	bomb := func(inner []byte, enc func([]byte) []byte, suffix string) []byte {
		ms := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar" + suffix, data: enc(inner)})
		return gpkgBytes(t, ms, manifestFor(ms))
	}
	gz := func(b []byte) []byte { return gzipBytes(t, b) }
	zs := func(b []byte) []byte { return zstdBytes(t, b) }

	// Lowered limit: one value larger than the limit (refused from its
	// header, before allocation), and many small values adding up past it
	// (caught by the stream guard).
	metadataLimit = 16 << 10
	big := metadataTar(t, map[string]string{"CATEGORY": "x", "BIG": strings.Repeat("A", 20<<10)})
	many := map[string]string{}
	for i := 0; i < 40; i++ {
		many["K"+strings.Repeat("x", i)] = strings.Repeat("B", 900)
	}
	for name, b := range map[string][]byte{
		"big gzip": bomb(big, gz, ".gz"), "big zstd": bomb(big, zs, ".zst"),
		"many gzip": bomb(metadataTar(t, many), gz, ".gz"), "many zstd": bomb(metadataTar(t, many), zs, ".zst"),
		// The stream is read to its end (its checksum is there), so
		// zeros past the end of the tar count too: Portage reads them all
		// into memory.
		"zeros past the end":     bomb(append(metadataTar(t, testMeta)[:512], make([]byte, 64<<10)...), gz, ".gz"),
		"few zeros past the end": bomb(append(metadataTar(t, testMeta)[:512], make([]byte, 8<<10)...), gz, ".gz"),
	} {
		_, err := inspectBytes(b, InspectOptions{})
		if name == "few zeros past the end" {
			// Python's tarfile pads to 10240 bytes: that is no bomb.
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "metadata limit") || !errors.Is(err, errMetadataTooLarge) {
			t.Errorf("%s: err = %v, want metadata limit error", name, err)
		}
	}

	// The real 64 MiB limit, with a zstd stream of ~65 MiB of tar that
	// compresses to a few KiB.
	metadataLimit = MaxMetadataBytes
	huge := tarBytes(t, func() []tmember {
		var ms []tmember
		chunk := make([]byte, 1<<20)
		for i := 0; i < 65; i++ {
			ms = append(ms, tmember{name: "metadata/K" + strings.Repeat("y", i), data: chunk})
		}
		return ms
	}())
	_, err := inspectBytes(bomb(huge, zs, ".zst"), InspectOptions{})
	if err == nil || !errors.Is(err, errMetadataTooLarge) {
		t.Fatalf("64 MiB bomb: err = %v", err)
	}
}

func TestInspectGpkgHugeDeclaredSize(t *testing.T) {
	// An inner tar header claiming a 1 TiB value must be refused before
	// any allocation.
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "metadata/X", Size: 1 << 40, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	ms := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar.gz", data: gzipBytes(t, hdr.Bytes())})
	_, err := inspectBytes(gpkgBytes(t, ms, manifestFor(ms)), InspectOptions{})
	wantFormatError(t, err, "metadata limit")
}

func TestInspectPlainTarXpakVersusGpkg(t *testing.T) {
	// An xpak whose tarball is a plain tar starts with a tar header; the
	// trailer (and no gpkg-1 first member) makes it an xpak.
	block, _ := EncodeBlock([]Entry{{"PF", []byte("foo-1\n")}})
	file := append(tarBytes(t, []tmember{{name: "image/x", data: []byte("x")}}), AppendTrailer(block)...)
	info, err := inspectBytes(file, InspectOptions{})
	if err != nil || info.Format != FormatXpak || info.Compression != CompNone {
		t.Fatalf("info %+v, err %v", info, err)
	}
	// A tar without a trailer and without gpkg-1 is reported as a bad gpkg.
	_, err = inspectBytes(tarBytes(t, []tmember{{name: "image/x", data: []byte("x")}}), InspectOptions{})
	wantFormatError(t, err, "no gpkg-1 member")
}

func TestInspectGpkgNotUstar(t *testing.T) {
	b := validGpkg(t)
	b = append([]byte(nil), b...)
	copy(b[257:265], "\x00\x00\x00\x00\x00\x00\x00\x00") // V7 header: no magic
	// Fix the header checksum so archive/tar still reads it.
	sum := 0
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(b[148:156], []byte(octal6(sum)+"\x00 "))
	_, err := inspectBytes(b, InspectOptions{})
	wantFormatError(t, err, "not ustar, PAX or GNU")
}

// flipped is b with one byte changed: same size, different hash.
func flipped(b []byte) []byte {
	out := append([]byte(nil), b...)
	out[len(out)/2] ^= 0x55
	return out
}

func octal6(v int) string {
	const digits = "01234567"
	out := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		out[i] = digits[v&7]
		v >>= 3
	}
	return string(out)
}

func TestInspectGpkgDecoderAllocationCaps(t *testing.T) {
	meta := metadataTar(t, testMeta)
	build := func(suffix string, data []byte) []byte {
		ms := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar" + suffix, data: data})
		return gpkgBytes(t, ms, manifestFor(ms))
	}
	xzMeta := compressWith(t, CompXz, meta)
	if info, err := inspectBytes(build(".xz", xzMeta), InspectOptions{}); err != nil || string(info.Metadata["PF"]) != "foo-1\n" {
		t.Fatalf("xz metadata: %+v, %v", info, err)
	}
	// A 4 GiB dictionary would be allocated up front by the decoder.
	_, err := inspectBytes(build(".xz", withXzDict(t, xzMeta, 40)), InspectOptions{})
	wantFormatError(t, err, "xz dictionary of 4294967295 bytes exceeds")

	// A zstd frame declaring a 2 GiB window (Window_Descriptor exponent
	// 21). The encoder writes a single-segment frame for small input; turn
	// it into one with a window descriptor (the frame header has no CRC).
	z := zstdBytes(t, meta)
	if z[4]&0x20 == 0 {
		t.Fatalf("expected a single-segment frame, FHD %#x", z[4])
	}
	withWindow := func(exp byte) []byte {
		out := append([]byte(nil), z[:4]...)
		out = append(out, z[4]&^0x20, exp<<3)
		return append(out, z[5:]...)
	}
	if info, err := inspectBytes(build(".zst", withWindow(10)), InspectOptions{}); err != nil || string(info.Metadata["PF"]) != "foo-1\n" {
		t.Fatalf("zstd metadata with a 1 MiB window: %+v, %v", info, err)
	}
	_, err = inspectBytes(build(".zst", withWindow(21)), InspectOptions{})
	wantFormatError(t, err, "metadata.tar.zst")
}
