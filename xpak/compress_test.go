package xpak

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

func TestProbe(t *testing.T) {
	tests := []struct {
		head []byte
		want Compression
	}{
		{[]byte("BZh91AY&SY"), CompBzip2},
		{[]byte{0x1f, 0x8b}, CompGzip},
		{[]byte{0x04, 0x22, 0x4d, 0x18, 0x64}, CompLz4},
		{[]byte{0x02, 0x21, 0x4c, 0x18}, CompLz4},
		{[]byte("LZIP\x01"), CompLzip},
		{[]byte{0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a}, CompLzop},
		{[]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00}, CompXz},
		{[]byte{0x22, 0xb5, 0x2f, 0xfd}, CompZstd},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, CompZstd},
		{[]byte{0x25, 0xb5, 0x2f, 0xfd}, CompZstd},
		// Negatives.
		{nil, ""},
		{[]byte("BZh1"), ""}, // Portage recognises only block size 9
		{[]byte("BZh"), ""},
		{[]byte{0x1f}, ""},
		{[]byte{0x21, 0xb5, 0x2f, 0xfd}, ""},
		{[]byte{0x29, 0xb5, 0x2f, 0xfd}, ""},
		{[]byte{0x28, 0xb5, 0x2f}, ""},
		{[]byte{0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a}, ""}, // lzop magic cut short
		{[]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a}, ""},
		{[]byte{0x04, 0x22, 0x4d}, ""},
		{[]byte("LZI"), ""},
		{[]byte("ustar"), ""},
		{make([]byte, 512), ""},
	}
	for _, tc := range tests {
		c, ok := Probe(tc.head)
		if ok != (tc.want != "") || c != tc.want {
			t.Errorf("Probe(% x) = %q, %v; want %q", tc.head, c, ok, tc.want)
		}
	}
}

func TestSuffixCompression(t *testing.T) {
	for suffix, want := range map[string]Compression{
		".zst": CompZstd, ".xz": CompXz, ".bz2": CompBzip2, ".gz": CompGzip,
		".lz4": CompLz4, ".lz": CompLzip, ".lzo": CompLzop, "": CompNone,
	} {
		if c, ok := SuffixCompression(suffix); !ok || c != want {
			t.Errorf("SuffixCompression(%q) = %q, %v; want %q", suffix, c, ok, want)
		}
	}
	for _, bad := range []string{".br", ".zstd", "zst", ".ZST", ".tar", ".sig"} {
		if c, ok := SuffixCompression(bad); ok {
			t.Errorf("SuffixCompression(%q) = %q, want not ok", bad, c)
		}
	}
}

func compressWith(t *testing.T, c Compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch c {
	case CompZstd:
		w, err = zstd.NewWriter(&buf)
	case CompXz:
		w, err = xz.NewWriter(&buf)
	case CompBzip2:
		// Level 9 writes "BZh9", the only bzip2 header Portage probes.
		w, err = bzip2.NewWriter(&buf, &bzip2.WriterConfig{Level: 9})
	case CompGzip:
		w = gzip.NewWriter(&buf)
	case CompLz4:
		w = lz4.NewWriter(&buf)
	default:
		t.Fatalf("no compressor for %s", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNewReaderRoundTrip(t *testing.T) {
	data := []byte(strings.Repeat("usr/bin/foo\x00some tar-ish payload ", 5000))
	for _, c := range []Compression{CompZstd, CompXz, CompBzip2, CompGzip, CompLz4} {
		t.Run(string(c), func(t *testing.T) {
			z := compressWith(t, c, data)
			if got, ok := Probe(z); !ok || got != c {
				t.Fatalf("Probe of our own %s output = %q, %v", c, got, ok)
			}
			rc, err := NewReader(c, bytes.NewReader(z))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("round trip lost data: %d bytes, want %d", len(out), len(data))
			}
		})
	}
	rc, err := NewReader(CompNone, strings.NewReader("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "plain" {
		t.Fatalf("none = %q", b)
	}
}

func TestNewReaderGzipMultistream(t *testing.T) {
	// pigz and concatenated gzip members must read as one stream, like gzip -d.
	z := append(compressWith(t, CompGzip, []byte("one ")), compressWith(t, CompGzip, []byte("two"))...)
	rc, err := NewReader(CompGzip, bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || string(b) != "one two" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestNewReaderUnsupported(t *testing.T) {
	for _, c := range []Compression{CompLzip, CompLzop, "brotli"} {
		_, err := NewReader(c, strings.NewReader("x"))
		if !errors.Is(err, ErrUnsupportedCompression) {
			t.Fatalf("%s: err = %v, want ErrUnsupportedCompression", c, err)
		}
		if !strings.Contains(err.Error(), "unsupported compression: "+string(c)) {
			t.Fatalf("%s: message %q does not name the compressor", c, err)
		}
	}
}

func TestNewReaderCorrupt(t *testing.T) {
	for _, c := range []Compression{CompZstd, CompXz, CompBzip2, CompGzip, CompLz4} {
		z := compressWith(t, c, bytes.Repeat([]byte("abc"), 1000))
		z = z[:len(z)/2]
		rc, err := NewReader(c, bytes.NewReader(z))
		if err == nil {
			_, err = io.ReadAll(rc)
		}
		if err == nil {
			t.Errorf("%s: truncated stream read without error", c)
		}
	}
}

func TestXzMaxDict(t *testing.T) {
	one := compressWith(t, CompXz, []byte("hello"))
	two := append(append(append([]byte(nil), one...), 0, 0, 0, 0), compressWith(t, CompXz, bytes.Repeat([]byte("x"), 100000))...)
	for name, b := range map[string][]byte{"one": one, "two streams with padding": two, "trailing padding": append(append([]byte(nil), one...), 0, 0, 0, 0, 0, 0, 0, 0)} {
		d, err := xzMaxDict(b)
		if err != nil || d != 8<<20 {
			t.Errorf("%s: dict %d, err %v; want 8 MiB (the writer's default)", name, d, err)
		}
	}
	for n := 0; n < len(one); n++ {
		if _, err := xzMaxDict(one[:n]); err == nil && n > 0 {
			t.Errorf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := xzMaxDict(append([]byte("junk"), one...)); err == nil {
		t.Error("junk before the stream header accepted")
	}
	// Patch the LZMA2 dictionary byte (stream header 12, block header size,
	// flags, filter id 0x21, props size 1, props) to 4 GiB - 1.
	big := withXzDict(t, one, 40)
	if d, err := xzMaxDict(big); err != nil || d != 1<<32-1 {
		t.Fatalf("patched dict %d, err %v", d, err)
	}
}

// withXzDict returns a one-block xz stream with its LZMA2 dictionary byte
// replaced and the block header CRC fixed.
func withXzDict(t *testing.T, xzb []byte, dictByte byte) []byte {
	b := append([]byte(nil), xzb...)
	h := b[12:]
	hsize := (int(h[0]) + 1) * 4
	p := 2
	if h[1]&0x40 != 0 {
		readVLI(h, &p)
	}
	if h[1]&0x80 != 0 {
		readVLI(h, &p)
	}
	if h[p] != 0x21 || h[p+1] != 1 {
		t.Fatalf("unexpected filter flags % x", h[:hsize])
	}
	h[p+2] = dictByte
	binary.LittleEndian.PutUint32(h[hsize-4:], crc32.ChecksumIEEE(h[:hsize-4]))
	return b
}
