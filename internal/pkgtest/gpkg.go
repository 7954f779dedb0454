package pkgtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"
)

// Gpkg is a valid unsigned gpkg of cat/pf built at buildTime, laid out as
// Portage's gpkg.compress writes one: <pf>/gpkg-1, metadata.tar.gz
// (CATEGORY, PF, SLOT, EAPI, BUILD_TIME), image.tar holding image as
// image/usr/share/<pf>/data, and a Manifest with each member's size,
// BLAKE2B and SHA512; the file padded to tarfile's 10240-byte records.
func Gpkg(t testing.TB, cat, pf string, buildTime int64, image []byte) []byte {
	t.Helper()
	var meta bytes.Buffer
	zw := gzip.NewWriter(&meta)
	zw.Write(tarOf(t, []tarMember{
		{"metadata/CATEGORY", []byte(cat + "\n")}, {"metadata/PF", []byte(pf + "\n")},
		{"metadata/SLOT", []byte("0\n")}, {"metadata/EAPI", []byte("8\n")},
		{"metadata/BUILD_TIME", []byte(strconv.FormatInt(buildTime, 10) + "\n")},
	}, false))
	zw.Close()
	ms := []tarMember{
		{pf + "/gpkg-1", nil},
		{pf + "/metadata.tar.gz", meta.Bytes()},
		{pf + "/image.tar", tarOf(t, []tarMember{{"image/usr/share/" + pf + "/data", image}}, false)},
	}
	var man strings.Builder
	for _, m := range ms {
		bl, sh := blake2b.Sum512(m.data), sha512.Sum512(m.data)
		fmt.Fprintf(&man, "DATA %s %d BLAKE2B %s SHA512 %s\n", filepath.Base(m.name), len(m.data),
			hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
	}
	return tarOf(t, append(ms, tarMember{pf + "/Manifest", []byte(man.String())}), true)
}

type tarMember struct {
	name string
	data []byte
}

// tarOf is a ustar archive of ms; records pads it as Python's tarfile does.
func tarOf(t testing.TB, ms []tarMember, records bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if records {
		buf.Write(make([]byte, (10240-buf.Len()%10240)%10240))
	}
	return buf.Bytes()
}

// FixturePackages are the package files of the Portage-written fixture
// tarball name (testdata/fixtures/NAME.tar, or $PKGDIRFS_FIXTURES), by
// path inside it; the test runs one directory below the repository root.
// A missing fixture fails the test: a broken checkout never passes.
func FixturePackages(t testing.TB, name string) map[string][]byte {
	t.Helper()
	dir := os.Getenv("PKGDIRFS_FIXTURES")
	if dir == "" {
		dir = filepath.Join("..", "testdata", "fixtures")
	}
	f, err := os.Open(filepath.Join(dir, name+".tar"))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Typeflag != tar.TypeReg || !(strings.HasSuffix(hdr.Name, ".gpkg.tar") ||
			strings.HasSuffix(hdr.Name, ".xpak") || strings.HasSuffix(hdr.Name, ".tbz2")) {
			continue
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = b.Bytes()
	}
	if len(out) == 0 {
		t.Fatalf("fixture %s holds no package", name)
	}
	return out
}
