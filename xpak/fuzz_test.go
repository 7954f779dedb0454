package xpak

import (
	"bytes"
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
	f.Add(validGpkg(f))
	ms := stdMembers(f)
	f.Add(gpkgBytes(f, ms, []byte(clearSign(string(manifestFor(ms))))))
	zm := []tmember{
		{name: "p/gpkg-1"},
		{name: "p/metadata.tar.zst", data: zstdBytes(f, metadataTar(f, testMeta))},
		{name: "p/image.tar", data: tarBytes(f, []tmember{{name: "image/x", data: []byte("x")}})},
	}
	f.Add(gpkgBytes(f, zm, manifestFor(zm)))
	for _, b := range sampleBlocks(f) {
		f.Add(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, AppendTrailer(b)...))
	}
	f.Add(smallestFixture(f, ".gpkg.tar"))
	f.Add(smallestFixture(f, ".tbz2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, opt := range []InspectOptions{{}, {VerifyImage: true}} {
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
