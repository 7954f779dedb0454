package xpak

import (
	"bytes"
	"testing"
)

func TestPayloadRange(t *testing.T) {
	tarball := []byte("BZh91AY&SY not really a tarball")
	block, err := EncodeBlock([]Entry{{Key: "CATEGORY", Value: []byte("app-misc\n")}})
	if err != nil {
		t.Fatal(err)
	}
	pkg := append(append([]byte{}, tarball...), AppendTrailer(block)...)
	off, n, err := PayloadRange(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil || off != 0 || n != int64(len(tarball)) {
		t.Errorf("xpak: PayloadRange = %d, %d, %v; want 0, %d", off, n, err, len(tarball))
	}
	gp := validGpkg(t)
	off, n, err = PayloadRange(bytes.NewReader(gp), int64(len(gp)))
	if err != nil || n <= 0 || off%512 != 0 || off+n > int64(len(gp)) {
		t.Fatalf("gpkg: PayloadRange = %d, %d, %v", off, n, err)
	}
	// The range is the image member's data: its tar header sits just before.
	hdr := gp[off-512 : off]
	if !bytes.Contains(hdr[:100], []byte("/image.tar")) {
		t.Errorf("gpkg: the 512 bytes before offset %d are not the image member's header: %q", off, hdr[:100])
	}
	if _, _, err := PayloadRange(bytes.NewReader([]byte("junk")), 4); err == nil {
		t.Error("junk: want an error")
	}
}
