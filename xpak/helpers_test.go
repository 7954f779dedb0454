package xpak

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/crypto/blake2b"
)

// fixturesDir finds the Portage-written fixtures (testdata/fixtures at the
// repository root; PKGDIRFS_FIXTURES overrides it); their absence is a
// test failure, never a skip, so a broken checkout cannot pass silently.
func fixturesDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("PKGDIRFS_FIXTURES")
	if dir == "" {
		// The test runs in the package directory, one level below the root.
		dir = filepath.Join("..", "testdata", "fixtures")
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	if len(m) == 0 {
		tb.Fatalf("no fixture tarballs in %s (set PKGDIRFS_FIXTURES)", dir)
	}
	return dir
}

func fixtureTarballs(tb testing.TB) []string {
	m, _ := filepath.Glob(filepath.Join(fixturesDir(tb), "*.tar"))
	sort.Strings(m)
	return m
}

func isPackageName(name string) bool {
	return strings.HasSuffix(name, ".tbz2") || strings.HasSuffix(name, ".xpak") || strings.HasSuffix(name, ".gpkg.tar")
}

// fixturePackages returns the package files of one fixture tarball, in memory.
func fixturePackages(tb testing.TB, tarball string) map[string][]byte {
	tb.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	out := make(map[string][]byte)
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("%s: %v", tarball, err)
		}
		if hdr.Typeflag != tar.TypeReg || !isPackageName(hdr.Name) {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		out[hdr.Name] = b
	}
	return out
}

// smallestFixture returns the smallest package of the given suffix over all
// fixtures, for fuzz seeds.
func smallestFixture(tb testing.TB, suffix string) []byte {
	var best []byte
	for _, tb2 := range fixtureTarballs(tb) {
		for name, b := range fixturePackages(tb, tb2) {
			if strings.HasSuffix(name, suffix) && (best == nil || len(b) < len(best)) {
				best = b
			}
		}
	}
	if best == nil {
		tb.Fatalf("no fixture package ending in %s", suffix)
	}
	return best
}

type tmember struct {
	name string
	data []byte
	typ  byte
}

// tarBytes writes members as an outer (ustar where possible) tar.
func tarBytes(tb testing.TB, ms []tmember) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: typ, Format: tar.FormatUSTAR}
		if typ == tar.TypeDir {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if typ != tar.TypeDir {
			if _, err := tw.Write(m.data); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(tb testing.TB, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

func xzBytes(tb testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var testMeta = map[string]string{
	"CATEGORY": "app-misc\n",
	"PF":       "foo-1\n",
	"SLOT":     "0\n",
	"EAPI":     "8\n",
	"BUILD_ID": "1",
}

// metadataTar builds the inner metadata tar: metadata/KEY members.
func metadataTar(tb testing.TB, kv map[string]string) []byte {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ms []tmember
	for _, k := range keys {
		ms = append(ms, tmember{name: "metadata/" + k, data: []byte(kv[k])})
	}
	return tarBytes(tb, ms)
}

// stdMembers are a minimal valid gpkg's members except the Manifest.
func stdMembers(tb testing.TB) []tmember {
	image := tarBytes(tb, []tmember{{name: "image/", typ: tar.TypeDir}, {name: "image/usr/bin/foo", data: []byte("#!/bin/sh\n")}})
	return []tmember{
		{name: "foo-1/gpkg-1"},
		{name: "foo-1/metadata.tar.gz", data: gzipBytes(tb, metadataTar(tb, testMeta))},
		{name: "foo-1/image.tar.gz", data: gzipBytes(tb, image)},
	}
}

// manifestFor writes the Manifest Portage would write for ms.
func manifestFor(ms []tmember) []byte {
	var b strings.Builder
	for _, m := range ms {
		if m.typ == tar.TypeDir {
			continue
		}
		bl := blake2b.Sum512(m.data)
		sh := sha512.Sum512(m.data)
		fmt.Fprintf(&b, "DATA %s %d BLAKE2B %s SHA512 %s\n", filepath.Base(m.name), len(m.data),
			hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
	}
	return []byte(b.String())
}

// gpkgBytes is a gpkg of ms with man as its Manifest (last, as Portage).
func gpkgBytes(tb testing.TB, ms []tmember, man []byte) []byte {
	all := append([]tmember(nil), ms...)
	if man != nil {
		all = append(all, tmember{name: "foo-1/Manifest", data: man})
	}
	return tarBytes(tb, all)
}

func validGpkg(tb testing.TB) []byte {
	ms := stdMembers(tb)
	return gpkgBytes(tb, ms, manifestFor(ms))
}

func inspectBytes(b []byte, opt InspectOptions) (*Info, error) {
	return Inspect(bytes.NewReader(b), int64(len(b)), opt)
}

// wantFormatError checks err is a *FormatError mentioning want.
func wantFormatError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if _, ok := err.(*FormatError); !ok {
		t.Fatalf("error %T (%v) is not a *FormatError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
