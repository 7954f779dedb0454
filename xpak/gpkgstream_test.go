package xpak

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"
)

// streamDigests feeds b to a GpkgHasher in chunks cut by rng (whole when
// rng is nil).
func streamDigests(b []byte, rng *rand.Rand) *MemberDigests {
	h := NewGpkgHasher()
	feed(h, b, rng)
	return h.Digests()
}

func feed(h io.Writer, b []byte, rng *rand.Rand) {
	for len(b) > 0 {
		n := len(b)
		if rng != nil {
			switch rng.IntN(4) {
			case 0:
				n = 1
			case 1:
				n = 1 + rng.IntN(600)
			case 2:
				n = 1 + rng.IntN(70000)
			}
			n = min(n, len(b))
		}
		h.Write(b[:n])
		b = b[n:]
	}
}

// refDigests hashes every regular member of the tar b by reading it with
// archive/tar, as Inspect does.
func refDigests(t testing.TB, b []byte) []MemberDigest {
	sr := io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
	tr := tar.NewReader(sr)
	var out []MemberDigest
	for {
		hdr, err := tr.Next()
		if err != nil {
			return out
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		pos, _ := sr.Seek(0, io.SeekCurrent)
		data, err := io.ReadAll(tr)
		if err != nil {
			return out
		}
		bl := blake2b.Sum512(data)
		sh := sha512.Sum512(data)
		out = append(out, MemberDigest{Name: hdr.Name, Offset: pos, Size: hdr.Size, BLAKE2B: bl[:], SHA512: sh[:]})
	}
}

// checkDigests asserts every digest describes the bytes at its offset.
func checkDigests(t testing.TB, b []byte, d *MemberDigests) {
	t.Helper()
	for _, m := range d.All() {
		if m.Offset < 0 || m.Size < 0 || m.Offset+m.Size > int64(len(b)) {
			t.Fatalf("digest of %s at %d+%d outside the %d-byte file", m.Name, m.Offset, m.Size, len(b))
		}
		data := b[m.Offset : m.Offset+m.Size]
		bl := blake2b.Sum512(data)
		sh := sha512.Sum512(data)
		if !bytes.Equal(bl[:], m.BLAKE2B) || !bytes.Equal(sh[:], m.SHA512) {
			t.Fatalf("digest of %s at %d+%d does not match its bytes", m.Name, m.Offset, m.Size)
		}
	}
}

// sameVerdict asserts Inspect says the same with the streamed digests as
// when it reads every member itself.
func sameVerdict(t testing.TB, b []byte, d *MemberDigests) {
	t.Helper()
	want, werr := inspectBytes(b, InspectOptions{VerifyImage: true})
	got, gerr := inspectBytes(b, InspectOptions{VerifyImage: true, Digests: d})
	if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
		t.Fatalf("with streamed digests: %v; reading: %v", gerr, werr)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("with streamed digests: %+v; reading: %+v", got, want)
	}
}

// streamSamples are gpkgs (and not) of the shapes the hasher must follow.
func streamSamples(t testing.TB) map[string][]byte {
	ms := stdMembers(t)
	big := make([]byte, 300<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	bigMs := []tmember{ms[0], ms[1], {name: "foo-1/image.tar", data: big}}
	long := strings.Repeat("d", 120)
	longMs := []tmember{{name: long + "/gpkg-1"}, {name: long + "/metadata.tar.gz", data: ms[1].data}, {name: long + "/image.tar.gz", data: ms[2].data}}
	out := map[string][]byte{
		"valid":             validGpkg(t),
		"big image":         gpkgBytes(t, bigMs, manifestFor(bigMs)),
		"signed manifest":   gpkgBytes(t, ms, []byte(clearSign(string(manifestFor(ms))))),
		"long names (PAX)":  paxTar(t, append(longMs, tmember{name: long + "/Manifest", data: manifestFor(longMs)}), tar.FormatPAX, false),
		"long names (GNU)":  paxTar(t, append(longMs, tmember{name: long + "/Manifest", data: manifestFor(longMs)}), tar.FormatGNU, false),
		"PAX global header": paxTar(t, append(append([]tmember(nil), ms...), tmember{name: "foo-1/Manifest", data: manifestFor(ms)}), tar.FormatPAX, true),
		"image hash wrong": func() []byte {
			bad := append([]tmember(nil), bigMs...)
			man := manifestFor(bad)
			d := append([]byte(nil), big...)
			d[1000] ^= 1
			bad[2].data = d
			return gpkgBytes(t, bad, man)
		}(),
		"gpkg-1 not first": gpkgBytes(t, []tmember{ms[1], ms[0], ms[2]}, manifestFor(ms)),
		"xpak":             append(tarBytes(t, []tmember{{name: "image/x", data: []byte("x")}}), mustTrailer(t)...),
		"garbage":          bytes.Repeat([]byte("garbage!"), 300),
	}
	v := out["big image"]
	out["truncated in the image"] = v[:len(v)/2]
	out["truncated in a header"] = v[:len(v)-1024-512-100]
	out["no end blocks"] = v[:len(v)-1024]
	return out
}

func mustTrailer(t testing.TB) []byte {
	block, err := EncodeBlock([]Entry{{"CATEGORY", []byte("app-misc\n")}, {"PF", []byte("foo-1\n")}, {"SLOT", []byte("0\n")}})
	if err != nil {
		t.Fatal(err)
	}
	return AppendTrailer(block)
}

// paxTar writes ms in the given tar format, optionally after a PAX global
// header.
func paxTar(t testing.TB, ms []tmember, format tar.Format, global bool) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if global {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
			PAXRecords: map[string]string{"comment": "made by a test"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0), Format: format}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGpkgHasherChunks(t *testing.T) {
	for name, b := range streamSamples(t) {
		t.Run(name, func(t *testing.T) {
			whole := streamDigests(b, nil)
			checkDigests(t, b, whole)
			sameVerdict(t, b, whole)
			for seed := range uint64(20) {
				d := streamDigests(b, rand.New(rand.NewPCG(seed, 7)))
				if !reflect.DeepEqual(d, whole) {
					t.Fatalf("seed %d: chunked digests %+v differ from whole %+v", seed, d.All(), whole.All())
				}
			}
		})
	}
}

// A gpkg's members are all hashed while streaming, the image included;
// nothing else is.
func TestGpkgHasherCovers(t *testing.T) {
	s := streamSamples(t)
	for _, name := range []string{"valid", "big image", "signed manifest", "long names (PAX)", "long names (GNU)", "PAX global header", "image hash wrong"} {
		b := s[name]
		got := streamDigests(b, nil).All()
		want := refDigests(t, b)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: streamed %d members, archive/tar reads %d: %+v", name, len(got), len(want), got)
		}
	}
	for _, name := range []string{"xpak", "garbage", "gpkg-1 not first"} {
		if d := streamDigests(s[name], nil); d != nil {
			t.Errorf("%s: digests %+v, want none", name, d.All())
		}
	}
	// Truncated in the image: the members before it, not the image.
	if got := streamDigests(s["truncated in the image"], nil).Len(); got != 2 {
		t.Errorf("truncated in the image: %d digests, want 2 (gpkg-1, metadata)", got)
	}
	if got := streamDigests(s["no end blocks"], nil).Len(); got != 4 {
		t.Errorf("no end blocks: %d digests, want 4", got)
	}
}

// The Manifest check uses the streamed digests: a wrong one is caught,
// which shows the image was not read again.
func TestInspectUsesDigests(t *testing.T) {
	b := streamSamples(t)["big image"]
	d := streamDigests(b, nil)
	if _, err := inspectBytes(b, InspectOptions{VerifyImage: true, Digests: d}); err != nil {
		t.Fatal(err)
	}
	lied := &MemberDigests{list: append([]MemberDigest(nil), d.list...)}
	for i := range lied.list {
		if strings.HasSuffix(lied.list[i].Name, "/image.tar") {
			lied.list[i].SHA512 = make([]byte, 64)
		}
	}
	_, err := inspectBytes(b, InspectOptions{VerifyImage: true, Digests: lied})
	wantFormatError(t, err, "gpkg: member foo-1/image.tar: SHA512 hash does not match the Manifest")
	// A digest for other bytes (another offset) is not used.
	moved := &MemberDigests{list: append([]MemberDigest(nil), lied.list...)}
	for i := range moved.list {
		moved.list[i].Offset++
	}
	if _, err := inspectBytes(b, InspectOptions{VerifyImage: true, Digests: moved}); err != nil {
		t.Fatalf("digests at other offsets were used: %v", err)
	}
}

func TestGpkgHasherReset(t *testing.T) {
	s := streamSamples(t)
	h := NewGpkgHasher()
	h.Write(s["garbage"])
	h.Reset()
	h.Write(s["valid"])
	if want := streamDigests(s["valid"], nil); !reflect.DeepEqual(h.Digests(), want) {
		t.Fatalf("after Reset: %+v, want %+v", h.Digests().All(), want.All())
	}
}

func TestGpkgHasherFixtures(t *testing.T) {
	for _, tb := range fixtureTarballs(t) {
		for name, b := range fixturePackages(t, tb) {
			d := streamDigests(b, rand.New(rand.NewPCG(uint64(len(b)), 3)))
			checkDigests(t, b, d)
			sameVerdict(t, b, d)
			if strings.HasSuffix(name, ".gpkg.tar") && d.Len() != len(refDigests(t, b)) {
				t.Errorf("%s: %d streamed digests, want one per member (%d)", name, d.Len(), len(refDigests(t, b)))
			}
		}
	}
}

// FuzzGpkgStream: for any bytes cut into any chunks, every streamed digest
// describes the bytes at its offset, the chunking changes nothing, and
// Inspect's verdict with the digests is the verdict without them.
func FuzzGpkgStream(f *testing.F) {
	for _, b := range streamSamples(f) {
		if len(b) < 64<<10 {
			f.Add(b, uint64(1))
		}
	}
	f.Add(trimTar(f, smallestFixture(f, ".gpkg.tar")), uint64(2))
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		whole := streamDigests(b, nil)
		checkDigests(t, b, whole)
		if d := streamDigests(b, rand.New(rand.NewPCG(seed, seed>>7))); !reflect.DeepEqual(d, whole) {
			t.Fatalf("chunked digests %+v differ from whole %+v", d.All(), whole.All())
		}
		sameVerdict(t, b, whole)
	})
}

// Portage writes the outer tar in GNU format when the directory name is
// 154 characters or longer: its first header is then a long-name record,
// and the package is still a gpkg. PAX headers likewise.
func TestInspectGpkgExtendedHeaders(t *testing.T) {
	s := streamSamples(t)
	for _, name := range []string{"long names (GNU)", "long names (PAX)", "PAX global header"} {
		info, err := inspectBytes(s[name], InspectOptions{VerifyImage: true})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if info.Format != FormatGpkg || info.GpkgDir == "" {
			t.Errorf("%s: %+v", name, info)
		}
	}
}
