package catalog

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/blake2b"

	"pkgdirfs/xpak"
)

// testGpkg is a valid gpkg of app-misc/foo-1.0 with an image of imageLen
// bytes; corrupt flips one image byte after the Manifest was written.
func testGpkg(t *testing.T, imageLen int, corrupt bool) []byte {
	t.Helper()
	type member struct {
		name string
		data []byte
	}
	tarOf := func(ms []member) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, m := range ms {
			if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
				t.Fatal(err)
			}
			tw.Write(m.data)
		}
		tw.Close()
		return buf.Bytes()
	}
	var meta bytes.Buffer
	zw := gzip.NewWriter(&meta)
	zw.Write(tarOf([]member{
		{"metadata/CATEGORY", []byte("app-misc\n")}, {"metadata/PF", []byte("foo-1.0\n")},
		{"metadata/SLOT", []byte("0\n")}, {"metadata/EAPI", []byte("8\n")}, {"metadata/BUILD_TIME", []byte("1700000000\n")},
	}))
	zw.Close()
	body := make([]byte, imageLen)
	for i := range body {
		body[i] = byte(i * 7)
	}
	ms := []member{
		{"foo-1.0/gpkg-1", nil},
		{"foo-1.0/metadata.tar.gz", meta.Bytes()},
		{"foo-1.0/image.tar", tarOf([]member{{"image/usr/share/foo/data", body}})},
	}
	var man strings.Builder
	for _, m := range ms {
		bl, sh := blake2b.Sum512(m.data), sha512.Sum512(m.data)
		fmt.Fprintf(&man, "DATA %s %d BLAKE2B %s SHA512 %s\n", m.name[len("foo-1.0/"):], len(m.data), hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
	}
	if corrupt {
		img := append([]byte(nil), ms[2].data...)
		img[600] ^= 0xff
		ms[2].data = img
	}
	return tarOf(append(ms, member{"foo-1.0/Manifest", []byte(man.String())}))
}

// readLog is a ReaderAt that records the ranges read.
type readLog struct {
	r  io.ReaderAt
	mu sync.Mutex
	at [][2]int64
}

func (l *readLog) ReadAt(p []byte, off int64) (int, error) {
	l.mu.Lock()
	l.at = append(l.at, [2]int64{off, off + int64(len(p))})
	l.mu.Unlock()
	return l.r.ReadAt(p, off)
}

// readIn tells how many bytes of [from, to) were read.
func (l *readLog) readIn(from, to int64) int64 {
	var n int64
	for _, a := range l.at {
		if lo, hi := max(a[0], from), min(a[1], to); hi > lo {
			n += hi - lo
		}
	}
	return n
}

// imageRange is where the image member's data lies.
func imageRange(t *testing.T, d *xpak.MemberDigests) (int64, int64) {
	for _, m := range d.All() {
		if strings.HasSuffix(m.Name, "/image.tar") {
			return m.Offset, m.Offset + m.Size
		}
	}
	t.Fatalf("no image among the streamed digests %+v", d.All())
	return 0, 0
}

// The image of a gpkg is hashed once, as it is staged: identify checks the
// Manifest with those digests and does not read the image again, and
// refuses a wrong image with the reason it gives when it reads it.
func TestIdentifyUsesStreamedDigests(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, corrupt := range []bool{false, true} {
		b := testGpkg(t, 256<<10, corrupt)
		st, err := s.Stage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if st.Members.Len() != 4 {
			t.Fatalf("Stage streamed %d member digests, want 4", st.Members.Len())
		}
		from, to := imageRange(t, st.Members)
		verdict := func(members *xpak.MemberDigests) (string, int64) {
			rl := &readLog{r: bytes.NewReader(b)}
			c := &Candidate{Staged: &Staged{File: st.File, Size: st.Size, MD5: st.MD5, SHA1: st.SHA1, SHA256: st.SHA256, Members: members},
				Name: "app-misc/foo/foo-1.0-1.gpkg.tar"}
			_, err := identifyAt(c, rl)
			if err != nil {
				return err.Error(), rl.readIn(from, to)
			}
			return "", rl.readIn(from, to)
		}
		streamed, readStreamed := verdict(st.Members)
		reread, readAgain := verdict(nil)
		if streamed != reread {
			t.Errorf("corrupt=%v: verdict with streamed digests %q, re-reading %q", corrupt, streamed, reread)
		}
		if corrupt != strings.Contains(streamed, "hash does not match the Manifest") {
			t.Errorf("corrupt=%v: verdict %q", corrupt, streamed)
		}
		// archive/tar reads the last byte of a member it skips (it seeks to
		// just before it, to notice a truncated file).
		if readStreamed > 1 {
			t.Errorf("corrupt=%v: identify read %d image bytes although they were hashed while staged", corrupt, readStreamed)
		}
		if readAgain != to-from {
			t.Errorf("corrupt=%v: without streamed digests identify read %d of the %d image bytes", corrupt, readAgain, to-from)
		}
	}
}

// An import hashes a gpkg's members in the one read that takes its digests.
func TestImportWorkerStreamsMembers(t *testing.T) {
	w := newImportWorker()
	for _, n := range []int{1 << 10, 3 * importBufSize} { // from memory, and larger than the buffer
		b := testGpkg(t, n, false)
		st, _, err := w.hash(bytes.NewReader(b), nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Members.Len() != 4 {
			t.Fatalf("%d-byte image: %d member digests, want 4", n, st.Members.Len())
		}
		from, to := imageRange(t, st.Members)
		rl := &readLog{r: bytes.NewReader(b)}
		if _, err := identifyAt(&Candidate{Staged: st, Name: "app-misc/foo/foo-1.0-1.gpkg.tar"}, rl); err != nil {
			t.Fatal(err)
		}
		if got := rl.readIn(from, to); got > 1 { // see TestIdentifyUsesStreamedDigests
			t.Errorf("%d-byte image: identify read %d image bytes again", n, got)
		}
	}
	// The next file starts afresh: an xpak has none.
	st, _, err := w.hash(bytes.NewReader(makeXpak(t, "app-misc", "bar-1", 1700000000)), nil)
	if err != nil || st.Members != nil {
		t.Fatalf("xpak after a gpkg: members %+v, err %v", st.Members.All(), err)
	}
}
