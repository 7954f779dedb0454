package ingest

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// seqGpkg is an outer tar shaped like a gpkg (the digests do not need a
// valid Manifest).
func seqGpkg(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		name string
		size int
	}{{"p-1/gpkg-1", 0}, {"p-1/metadata.tar", 1536}, {"p-1/image.tar", 200000}, {"p-1/Manifest", 300}} {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(m.size), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(bytes.Repeat([]byte{byte(m.size)}, m.size))
	}
	tw.Close()
	return buf.Bytes()
}

// Sequential writes give the gpkg member digests with the file's, equal to
// those of one read of the file (HashFile, the fallback); a write elsewhere
// gives none, so that commit re-reads.
func TestSeqHashMembers(t *testing.T) {
	b := seqGpkg(t)
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := HashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want.Members.Len() != 4 {
		t.Fatalf("HashFile: %d member digests, want 4", want.Members.Len())
	}
	// FUSE write sizes, and odd ones.
	for _, chunk := range []int{1, 511, 4096, 131072, 1 << 20} {
		s := NewSeqHash()
		for off := 0; off < len(b); off += chunk {
			s.Write(b[off:min(off+chunk, len(b))], int64(off))
		}
		got := s.Staged(p, int64(len(b)))
		if got == nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("chunks of %d: staged %+v, want %+v", chunk, got, want)
		}
	}
	s := NewSeqHash()
	s.Write(b[:4096], 0)
	s.Write(b[:512], 0) // Portage's gpkg writer patches a header
	s.Write(b[4096:], 4096)
	if got := s.Staged(p, int64(len(b))); got != nil {
		t.Fatalf("after a write out of order: staged %+v, want nil (re-read)", got)
	}
}
