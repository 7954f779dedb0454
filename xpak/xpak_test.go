package xpak

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestBE32RoundTrip(t *testing.T) {
	vals := []uint32{1<<32 - 1}
	for i := uint32(0); i < 1000; i++ {
		vals = append(vals, i)
	}
	for _, v := range vals {
		b := appendBE32(nil, v)
		if len(b) != 4 || be32(b) != v {
			t.Fatalf("%d: encoded % x decodes to %d", v, b, be32(b))
		}
	}
	if got := appendBE32(nil, 257); !bytes.Equal(got, []byte{0, 0, 1, 1}) {
		t.Fatalf("257 encodes to % x, want big-endian 00 00 01 01", got)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
	}{
		{"empty", nil},
		{"one", []Entry{{"CATEGORY", []byte("app-misc\n")}}},
		{"empty value", []Entry{{"PKGUSE", nil}, {"SLOT", []byte("0\n")}}},
		{"unsorted order kept", []Entry{{"SLOT", []byte("0")}, {"CATEGORY", []byte("a")}, {"BUILD_ID", []byte("3")}}},
		{"binary value", []Entry{{"environment.bz2", []byte{0, 1, 2, 0xff, 'B', 'Z', 'h'}}}},
		{"long key", []Entry{{strings.Repeat("k", maxKeyLen), []byte("v")}}},
		{"many", func() []Entry {
			var es []Entry
			for i := 0; i < 300; i++ {
				es = append(es, Entry{strings.Repeat("K", i%40+1) + string(rune('a'+i%26)) + strings.Repeat("x", i/26), bytes.Repeat([]byte{byte(i)}, i)})
			}
			return es
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeBlock(tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBlock(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.entries) {
				t.Fatalf("%d entries, want %d", len(got), len(tc.entries))
			}
			for i := range got {
				if got[i].Key != tc.entries[i].Key || !bytes.Equal(got[i].Value, tc.entries[i].Value) {
					t.Fatalf("entry %d = %q=%q, want %q=%q", i, got[i].Key, got[i].Value, tc.entries[i].Key, tc.entries[i].Value)
				}
			}
			again, err := EncodeBlock(got)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs (err %v)", err)
			}
			// Through a file, with and without a tarball in front.
			for _, tarball := range [][]byte{nil, []byte("BZh91AY&SY-not-really")} {
				file := append(append([]byte(nil), tarball...), AppendTrailer(b)...)
				es, tarLen, err := ReadXpak(bytes.NewReader(file), int64(len(file)))
				if err != nil {
					t.Fatal(err)
				}
				if tarLen != int64(len(tarball)) || len(es) != len(tc.entries) {
					t.Fatalf("tarLen %d entries %d, want %d and %d", tarLen, len(es), len(tarball), len(tc.entries))
				}
			}
		})
	}
}

func TestDecodedValuesAreIndependent(t *testing.T) {
	b, _ := EncodeBlock([]Entry{{"A", []byte("xy")}, {"B", []byte("z")}})
	es, err := DecodeBlock(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	es[0].Value = append(es[0].Value, '!') // must not clobber B's value
	if string(es[1].Value) != "z" || es[1].Key != "B" {
		t.Fatalf("values alias the input or each other: %q", es)
	}
}

func TestEncodeBlockErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		es   []Entry
	}{
		{"empty key", []Entry{{"", []byte("x")}}},
		{"key too long", []Entry{{strings.Repeat("k", maxKeyLen+1), nil}}},
		{"NUL in key", []Entry{{"A\x00B", nil}}},
		{"slash in key", []Entry{{"../../etc/cron.d/x", nil}}},
		{"key a directory", []Entry{{"A/B", nil}}},
		{"key dot", []Entry{{".", nil}}},
		{"key dot-dot", []Entry{{"..", nil}}},
		{"key not UTF-8", []Entry{{"A\xff", nil}}},
		{"duplicate", []Entry{{"A", nil}, {"A", nil}}},
	} {
		if _, err := EncodeBlock(tc.es); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestEncodeBlockRefuses4GiB(t *testing.T) {
	// Values share one backing array, so this costs no memory: the size
	// check must fire before anything is allocated.
	big := make([]byte, 1<<30)
	es := []Entry{{"A", big}, {"B", big}, {"C", big}, {"D", big}}
	if _, err := EncodeBlock(es); err == nil || !strings.Contains(err.Error(), "4 GiB") {
		t.Fatalf("err = %v, want 4 GiB refusal", err)
	}
}

// TestVerifiedDump rebuilds the shape of the 476-byte .tbz2 dumped in the
// facts sheet §1.1: 9 keys, index_len 162, data_len 71, L 257, block at 211.
func TestVerifiedDump(t *testing.T) {
	keys := []string{"CATEGORY", "PF", "SLOT", "EAPI", "USE", "BUILD_TIME", "repository", "KEYWORDS", "CHOST"}
	vals := []string{"app-misc\n", "foo-1\n", "0\n", "8\n", "\n", "1700000000\n", "gentoo\n", "amd64\n", ""}
	used := 0
	for _, v := range vals {
		used += len(v)
	}
	vals[8] = strings.Repeat("x", 71-used-1) + "\n"
	var es []Entry
	for i, k := range keys {
		es = append(es, Entry{k, []byte(vals[i])})
	}
	block, err := EncodeBlock(es)
	if err != nil {
		t.Fatal(err)
	}
	if string(block[:8]) != "XPAKPACK" || be32(block[8:]) != 162 || be32(block[12:]) != 71 || len(block) != 257 {
		t.Fatalf("header %q index_len %d data_len %d total %d; want XPAKPACK 162 71 257",
			block[:8], be32(block[8:]), be32(block[12:]), len(block))
	}
	tarball := append([]byte("BZh9"), bytes.Repeat([]byte{0x5a}, 207)...)
	file := append(tarball, AppendTrailer(block)...)
	if len(file) != 476 {
		t.Fatalf("file is %d bytes, want 476", len(file))
	}
	wantTail := []byte{0x58, 0x50, 0x41, 0x4b, 0x53, 0x54, 0x4f, 0x50, 0, 0, 1, 1, 0x53, 0x54, 0x4f, 0x50}
	if !bytes.Equal(file[len(file)-16:], wantTail) {
		t.Fatalf("last 16 bytes % x, want % x", file[len(file)-16:], wantTail)
	}
	if string(file[211:219]) != "XPAKPACK" {
		t.Fatalf("block does not start at 476-8-257 = 211")
	}
	got, tarLen, err := ReadXpak(bytes.NewReader(file), int64(len(file)))
	if err != nil || tarLen != 211 || len(got) != 9 {
		t.Fatalf("ReadXpak: %d entries, tarLen %d, err %v", len(got), tarLen, err)
	}
	info, err := inspectBytes(file, InspectOptions{})
	if err != nil || info.Format != FormatXpak || info.Compression != CompBzip2 || string(info.Metadata["PF"]) != "foo-1\n" {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
}

// corrupt returns a copy of b with f applied.
func corrupt(b []byte, f func([]byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

func put32(b []byte, off int, v uint32) []byte {
	copy(b[off:], appendBE32(nil, v))
	return b
}

func TestDecodeBlockRejects(t *testing.T) {
	good, err := EncodeBlock([]Entry{{"CATEGORY", []byte("app-misc\n")}, {"PF", []byte("foo-1\n")}})
	if err != nil {
		t.Fatal(err)
	}
	// Layout: 0 XPAKPACK, 8 index_len(34), 12 data_len(15), 16 index:
	// 16 name_len(8) 20 "CATEGORY" 28 off 32 len, 36 name_len(2) 40 "PF" 42 off 46 len, 50 data, 65 XPAKSTOP.
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"short", good[:23], "truncated"},
		{"bad magic", corrupt(good, func(b []byte) []byte { b[0] = 'Y'; return b }), "XPAKPACK"},
		{"bad stop", corrupt(good, func(b []byte) []byte { b[len(b)-1] = 'Q'; return b }), "XPAKSTOP"},
		{"index_len too big", corrupt(good, func(b []byte) []byte { return put32(b, 8, 35) }), "needs"},
		{"index_len huge", corrupt(good, func(b []byte) []byte { return put32(b, 8, 1<<32-1) }), "needs"},
		{"data_len too big", corrupt(good, func(b []byte) []byte { return put32(b, 12, 1<<32-1) }), "needs"},
		{"truncated block", good[:len(good)-1], "needs"},
		{"trailing byte", append(append([]byte(nil), good...), 0), "needs"},
		{"data offset out of range", corrupt(good, func(b []byte) []byte { return put32(b, 42, 14) }), "beyond data length"},
		{"data len out of range", corrupt(good, func(b []byte) []byte { return put32(b, 46, 1<<32-1) }), "beyond data length"},
		{"offset overflow", corrupt(good, func(b []byte) []byte { put32(b, 42, 1<<32-1); return put32(b, 46, 1<<32-1) }), "beyond data length"},
		{"overlapping values", corrupt(good, func(b []byte) []byte { return put32(b, 42, 0) }), "contiguous"},
		{"gap in data", corrupt(good, func(b []byte) []byte { return put32(b, 46, 5) }), "cover"},
		{"name_len out of range", corrupt(good, func(b []byte) []byte { return put32(b, 36, 100) }), "name length"},
		{"name_len huge", corrupt(good, func(b []byte) []byte { return put32(b, 16, 1<<32-1) }), "name length"},
		{"empty name", corrupt(good, func(b []byte) []byte { return put32(b, 16, 0) }), "empty name"},
		{"NUL in name", corrupt(good, func(b []byte) []byte { b[41] = 0; return b }), "NUL"},
		{"duplicate key", func() []byte {
			b, _ := EncodeBlock([]Entry{{"A", []byte("1")}, {"B", []byte("2")}})
			b[33] = 'A' // second entry's name
			return b
		}(), "duplicate"},
		{"index entry truncated", func() []byte {
			b, _ := EncodeBlock([]Entry{{"A", nil}})
			// index_len 13 -> 15 with two stray bytes: a partial name_len.
			out := append([]byte(nil), b[:16]...)
			out = append(out, b[16:29]...)
			out = append(out, 0, 0)
			out = append(out, "XPAKSTOP"...)
			return put32(out, 8, 15)
		}(), "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es, err := DecodeBlock(tc.b)
			if err == nil {
				t.Fatalf("accepted: %q", es)
			}
			wantFormatError(t, err, tc.want)
		})
	}
}

func TestReadXpakRejects(t *testing.T) {
	block, _ := EncodeBlock([]Entry{{"PF", []byte("foo-1\n")}})
	good := append([]byte("BZh9 tarball"), AppendTrailer(block)...)
	n := len(good)
	tests := []struct {
		name     string
		b        []byte
		notXpak  bool
		want     string
		truncate bool
	}{
		{"empty file", nil, true, "too short", false},
		{"15 bytes", good[n-15:], true, "too short", false},
		{"missing STOP", corrupt(good, func(b []byte) []byte { b[n-1] = 'X'; return b }), true, "trailer", false},
		{"missing XPAKSTOP", corrupt(good, func(b []byte) []byte { b[n-16] = 'Y'; return b }), true, "trailer", false},
		{"L larger than file", corrupt(good, func(b []byte) []byte { return put32(b, n-8, uint32(n)) }), false, "exceeds file size", true},
		{"L huge", corrupt(good, func(b []byte) []byte { return put32(b, n-8, 1<<32-1) }), false, "exceeds file size", true},
		{"L too small", corrupt(good, func(b []byte) []byte { return put32(b, n-8, 23) }), false, "minimum", false},
		{"L off by one", corrupt(good, func(b []byte) []byte { return put32(b, n-8, uint32(len(block)+1)) }), false, "XPAKPACK", false},
		{"block body corrupt", corrupt(good, func(b []byte) []byte { return put32(b, n-8-len(block)+8, 99) }), false, "needs", false},
		{"only trailer", good[n-16:], false, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadXpak(bytes.NewReader(tc.b), int64(len(tc.b)))
			wantFormatError(t, err, tc.want)
			if errors.Is(err, ErrNotXpak) != tc.notXpak {
				t.Fatalf("errors.Is(err, ErrNotXpak) = %v, want %v (%v)", !tc.notXpak, tc.notXpak, err)
			}
			if tc.truncate && !strings.HasPrefix(err.Error(), "truncated") {
				t.Fatalf("error %q should say truncated", err)
			}
		})
	}
}

func TestReadXpakMetadataLimit(t *testing.T) {
	defer func(old int64) { metadataLimit = old }(metadataLimit)
	block, _ := EncodeBlock([]Entry{{"PF", bytes.Repeat([]byte("x"), 200)}})
	file := AppendTrailer(block)
	metadataLimit = 100
	_, _, err := ReadXpak(bytes.NewReader(file), int64(len(file)))
	wantFormatError(t, err, "metadata limit")
}

// shortReaderAt claims a size larger than its data: a file that shrank.
type shortReaderAt struct{ b []byte }

func (s shortReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestReadXpakShortRead(t *testing.T) {
	block, _ := EncodeBlock([]Entry{{"PF", []byte("foo-1\n")}})
	file := AppendTrailer(block)
	_, _, err := ReadXpak(shortReaderAt{file[:len(file)-3]}, int64(len(file)))
	wantFormatError(t, err, "truncated")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v does not wrap io.ErrUnexpectedEOF", err)
	}
}

func TestInspectXpak(t *testing.T) {
	block, _ := EncodeBlock([]Entry{{"CATEGORY", []byte("app-misc\n")}, {"PF", []byte("foo-1\n")}, {"SLOT", []byte("0\n")}})
	plainTar := tarBytes(t, []tmember{{name: "image/x", data: []byte("x")}})
	tests := []struct {
		name    string
		tarball []byte
		want    Compression
		err     string
	}{
		{"xpak only", nil, "", "no tarball before the XPAK block"},
		{"plain tar", plainTar, CompNone, ""},
		{"empty tar", make([]byte, 1024), CompNone, ""},
		{"bzip2", []byte("BZh91AY&SY"), CompBzip2, ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, CompGzip, ""},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}, CompXz, ""},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, CompZstd, ""},
		{"lz4", []byte{0x04, 0x22, 0x4d, 0x18}, CompLz4, ""},
		{"lzip", []byte("LZIP\x01"), CompLzip, ""},
		{"lzop", []byte{0x89, 'L', 'Z', 'O', 0, '\r', '\n', 0x1a, '\n'}, CompLzop, ""},
		{"bzip2 level 1 is not recognised", []byte("BZh11AY&SY"), "", "tarball compression not recognised"},
		{"garbage", []byte("hello world"), "", "tarball compression not recognised"},
		{"short garbage", []byte("h"), "", "tarball compression not recognised"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := append(append([]byte(nil), tc.tarball...), AppendTrailer(block)...)
			info, err := inspectBytes(file, InspectOptions{})
			if tc.err != "" {
				wantFormatError(t, err, tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != FormatXpak || info.Compression != tc.want || info.Signed || info.GpkgDir != "" {
				t.Fatalf("info = %+v", info)
			}
			if string(info.Metadata["SLOT"]) != "0\n" || len(info.Metadata) != 3 {
				t.Fatalf("metadata = %q", info.Metadata)
			}
		})
	}
}

func TestInspectNeither(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("garbage!"), 200)} {
		_, err := inspectBytes(b, InspectOptions{})
		wantFormatError(t, err, "file is neither xpak (no XPAKSTOP/STOP trailer) nor gpkg (not a tar archive)")
	}
	_, err := Inspect(bytes.NewReader(nil), -1, InspectOptions{})
	wantFormatError(t, err, "negative")
}

// rawBlock is an XPAK block of keys and values written without any check,
// as a hostile builder would.
func rawBlock(kv ...string) []byte {
	var index, data []byte
	for i := 0; i+1 < len(kv); i += 2 {
		index = be32Append(index, len(kv[i]))
		index = append(index, kv[i]...)
		index = be32Append(index, len(data))
		index = be32Append(index, len(kv[i+1]))
		data = append(data, kv[i+1]...)
	}
	b := append([]byte("XPAKPACK"), be32Append(be32Append(nil, len(index)), len(data))...)
	b = append(append(append(b, index...), data...), "XPAKSTOP"...)
	return b
}

func be32Append(b []byte, n int) []byte {
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// TestDecodeBlockRefusesUnsafeKeys: keys become file names where clients
// unpack the block (Portage's xpand), so only plain UTF-8 names pass.
func TestDecodeBlockRefusesUnsafeKeys(t *testing.T) {
	if _, err := DecodeBlock(rawBlock("CATEGORY", "app-misc\n", "PF", "x-1\n")); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, k := range []string{"../../etc/cron.d/evil", "/etc/passwd", "a/b", ".", "..", "A\xff\xfe", "A\x00B", ""} {
		_, err := DecodeBlock(rawBlock("CATEGORY", "app-misc\n", k, "x"))
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("key %q: %v, want a FormatError", k, err)
		}
	}
}
