package xpak

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
)

// fixtureBlock cuts the XPAK block out of a whole xpak file.
func fixtureBlock(tb testing.TB, file []byte) []byte {
	_, tarLen, err := ReadXpak(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		tb.Fatal(err)
	}
	return file[tarLen : len(file)-8]
}

func sampleBlocks(tb testing.TB) [][]byte {
	var out [][]byte
	for _, es := range [][]Entry{
		nil,
		{{"A", nil}},
		{{"CATEGORY", []byte("app-misc\n")}, {"PF", []byte("foo-1\n")}, {"SLOT", []byte("0/1\n")}},
		{{"environment.bz2", []byte("BZh9\x00\xff")}, {"BUILD_ID", []byte("3")}},
	} {
		b, err := EncodeBlock(es)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzDecodeBlock(f *testing.F) {
	for _, b := range sampleBlocks(f) {
		f.Add(b)
	}
	f.Add(fixtureBlock(f, smallestFixture(f, ".tbz2")))
	f.Add(fixtureBlock(f, smallestFixture(f, ".xpak")))
	f.Add([]byte("XPAKPACK\x00\x00\x00\x00\x00\x00\x00\x00XPAKSTOP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		entries, err := DecodeBlock(b)
		if !bytes.Equal(in, b) {
			t.Fatal("DecodeBlock modified its input")
		}
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %T is not a *FormatError", err)
			}
			return
		}
		// Accepted blocks are canonical: re-encoding reproduces them.
		out, err := EncodeBlock(entries)
		if err != nil {
			t.Fatalf("EncodeBlock refused decoded entries: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded block differs:\n in % x\nout % x", b, out)
		}
	})
}

func FuzzReadXpak(f *testing.F) {
	for _, b := range sampleBlocks(f) {
		f.Add(AppendTrailer(b))
		f.Add(append([]byte("BZh91AY&SY"), AppendTrailer(b)...))
	}
	f.Add(smallestFixture(f, ".xpak"))
	f.Add([]byte("XPAKSTOP\x00\x00\x00\x18STOP"))
	f.Add([]byte("XPAKSTOP\xff\xff\xff\xffSTOP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, tarLen, err := ReadXpak(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %T is not a *FormatError", err)
			}
			return
		}
		if tarLen < 0 || tarLen > int64(len(b)) {
			t.Fatalf("tarLen %d outside file of %d bytes", tarLen, len(b))
		}
		block, err := EncodeBlock(entries)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(AppendTrailer(block), b[tarLen:]) {
			t.Fatal("block + trailer do not reproduce the file's tail")
		}
	})
}

var knownCompression = map[Compression]bool{
	CompNone: true, CompBzip2: true, CompGzip: true, CompLz4: true,
	CompLzip: true, CompLzop: true, CompXz: true, CompZstd: true,
}

func FuzzInspect(f *testing.F) {
	f.Add(validGpkg(f), false)
	f.Add(validGpkg(f), true)
	ms := stdMembers(f)
	f.Add(gpkgBytes(f, ms, []byte(clearSign(string(manifestFor(ms))))), false)
	zm := []tmember{
		{name: "p/gpkg-1"},
		{name: "p/metadata.tar.zst", data: zstdBytes(f, metadataTar(f, testMeta))},
		{name: "p/image.tar", data: tarBytes(f, []tmember{{name: "image/x", data: []byte("x")}})},
	}
	f.Add(gpkgBytes(f, zm, manifestFor(zm)), false)
	for _, b := range sampleBlocks(f) {
		f.Add(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, AppendTrailer(b)...), false)
	}
	f.Add(trimTar(f, smallestFixture(f, ".gpkg.tar")), true)
	f.Add(smallestFixture(f, ".tbz2"), false)
	f.Fuzz(func(t *testing.T, b []byte, verifyImage bool) {
		// One Inspect per exec keeps the fuzzer fast; verifyImage picks the mode.
		for _, opt := range []InspectOptions{{VerifyImage: verifyImage}} {
			info, err := Inspect(bytes.NewReader(b), int64(len(b)), opt)
			if err != nil {
				if _, ok := err.(*FormatError); !ok {
					t.Fatalf("error %T is not a *FormatError", err)
				}
				continue
			}
			if info.Metadata == nil || !knownCompression[info.Compression] {
				t.Fatalf("bad info %+v", info)
			}
			switch info.Format {
			case FormatXpak:
				if info.GpkgDir != "" || info.Signed {
					t.Fatalf("xpak info with gpkg fields: %+v", info)
				}
				es, _, err := ReadXpak(bytes.NewReader(b), int64(len(b)))
				if err != nil || len(es) != len(info.Metadata) {
					t.Fatalf("Inspect accepted an xpak ReadXpak refuses: %v", err)
				}
			case FormatGpkg:
				if info.GpkgDir == "" {
					t.Fatal("gpkg without a directory")
				}
				if int64(len(info.Metadata)) > metadataLimit {
					t.Fatal("more metadata than the limit allows")
				}
			default:
				t.Fatalf("unknown format %q", info.Format)
			}
		}
	})
}

// trimTar drops the record padding after a tar's end-of-archive blocks:
// the same archive, fewer bytes for the fuzzer to minimise.
func trimTar(tb testing.TB, b []byte) []byte {
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	return b[:len(b)-r.Len()]
}

var fuzzCompressions = []Compression{CompNone, CompGzip, CompZstd, CompXz, CompBzip2, CompLz4}

// FuzzMetadata reaches the decompressors and the inner-tar reader directly;
// through Inspect, the Manifest hashes stop nearly every mutation first.
func FuzzMetadata(f *testing.F) {
	meta := metadataTar(f, testMeta)
	f.Add(meta, uint8(0))
	f.Add(gzipBytes(f, meta), uint8(1))
	f.Add(zstdBytes(f, meta), uint8(2))
	f.Add(xzBytes(f, meta), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, c uint8) {
		comp := fuzzCompressions[int(c)%len(fuzzCompressions)]
		var src io.Reader = bytes.NewReader(b)
		if comp == CompXz {
			var err error
			if src, err = xzMetadataSource(bytes.NewReader(b), int64(len(b)), "m"); err != nil {
				return
			}
		}
		m, err := decodeMetadata(src, "m", comp)
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error %T is not a *FormatError", err)
			}
			return
		}
		var total int64
		for k, v := range m {
			if k == "" || strings.Contains(k, "/") {
				t.Fatalf("bad key %q", k)
			}
			total += int64(len(v))
		}
		if total > metadataLimit {
			t.Fatalf("%d metadata bytes beyond the limit", total)
		}
	})
}

func FuzzXzMaxDict(f *testing.F) {
	f.Add(xzBytes(f, []byte("hello")))
	f.Add(append(append(xzBytes(f, []byte("a")), 0, 0, 0, 0), xzBytes(f, []byte("b"))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := xzMaxDict(b)
		if err == nil && d > 1<<32-1 {
			t.Fatalf("dictionary %d beyond the format's maximum", d)
		}
	})
}
