package xpak

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dsnet/compress/bzip2"
	"github.com/pierrec/lz4/v4"
)

func bzip2Bytes(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := bzip2.NewWriter(&buf, &bzip2.WriterConfig{Level: 9})
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func lz4Bytes(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(lz4.ChecksumOption(true)); err != nil {
		tb.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// xzCheckAt is the offset of the (one) block's check field in an xz stream:
// just before the index, which the footer's backward size locates.
func xzCheckAt(b []byte) int {
	backward := (int(b[len(b)-8]) | int(b[len(b)-7])<<8 | int(b[len(b)-6])<<16 | int(b[len(b)-5])<<24 + 1) * 4
	return len(b) - 12 - backward - 8 // CRC64, xz's default
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x55
	return c
}

// Compressed metadata is read to the end of its stream, so a bad checksum
// or a stream cut short is refused by every compressor, even when the tar
// inside is whole.
func TestInspectGpkgMetadataIntegrity(t *testing.T) {
	inner := metadataTar(t, testMeta)
	type variant struct {
		name string
		data []byte
	}
	for _, c := range []struct {
		suffix, comp string
		enc          func(testing.TB, []byte) []byte
		checksumAt   func([]byte) int
	}{
		{".gz", "gzip", gzipBytes, func(b []byte) int { return len(b) - 8 }},
		{".bz2", "bzip2", bzip2Bytes, func([]byte) int { return 10 }}, // the block CRC, after BZh9 and the block magic
		{".xz", "xz", xzBytes, xzCheckAt},
		{".zst", "zstd", func(tb testing.TB, b []byte) []byte { return zstdBytes(tb, b) }, func(b []byte) int { return len(b) - 1 }},
		{".lz4", "lz4", lz4Bytes, func(b []byte) int { return len(b) - 1 }},
	} {
		good := c.enc(t, inner)
		gm := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar" + c.suffix, data: good})
		if _, err := inspectBytes(gpkgBytes(t, gm, manifestFor(gm)), InspectOptions{}); err != nil {
			t.Fatalf("%s: the good one: %v", c.comp, err)
		}
		vs := []variant{
			{"checksum", flip(good, c.checksumAt(good))},
			{"cut by 4 bytes", good[:len(good)-4]},
			{"cut in half", good[:len(good)/2]},
		}
		if c.comp == "gzip" {
			vs = append(vs, variant{"size", flip(good, len(good)-2)})
		}
		for _, v := range vs {
			ms := append(without(stdMembers(t), "metadata.tar.gz"), tmember{name: "foo-1/metadata.tar" + c.suffix, data: v.data})
			_, err := inspectBytes(gpkgBytes(t, ms, manifestFor(ms)), InspectOptions{})
			if err == nil {
				t.Errorf("%s, %s: accepted", c.comp, v.name)
				continue
			}
			if !strings.Contains(err.Error(), "metadata member foo-1/metadata.tar"+c.suffix) {
				t.Errorf("%s, %s: %v", c.comp, v.name, err)
			}
			t.Logf("%s, %s: %v", c.comp, v.name, err)
		}
	}
}
