package xpak

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureExpect is what each fixture's README row promises.
var fixtureExpect = map[string]struct {
	format Format
	comp   Compression
	count  int
}{
	"gpkg-zstd-multi":  {FormatGpkg, CompZstd, 40},
	"gpkg-xz-flat":     {FormatGpkg, CompXz, 12},
	"xpak-bzip2-multi": {FormatXpak, CompBzip2, 30},
	"xpak-bzip2-flat":  {FormatXpak, CompBzip2, 20},
	"xpak-xz-multi":    {FormatXpak, CompXz, 10},
	"xpak-gzip-flat":   {FormatXpak, CompGzip, 8},
	"xpak-zstd-multi":  {FormatXpak, CompZstd, 8},
	"legacy-all":       {FormatXpak, CompBzip2, 20},
}

// extractFixture unpacks the regular files and directories of a fixture
// tarball into dir (symlinks are skipped: legacy-all's point at All/).
func extractFixture(t *testing.T, tarball, dir string) {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("fixture member %q escapes the directory", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func trimmed(b []byte) string { return strings.TrimSpace(string(b)) }

func TestFixtures(t *testing.T) {
	for _, tarball := range fixtureTarballs(t) {
		name := strings.TrimSuffix(filepath.Base(tarball), ".tar")
		t.Run(name, func(t *testing.T) {
			want, ok := fixtureExpect[name]
			if !ok {
				t.Fatalf("no expectation recorded for fixture %s", name)
			}
			dir := t.TempDir()
			extractFixture(t, tarball, dir)
			var pkgs []string
			err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() && isPackageName(p) {
					pkgs = append(pkgs, p)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(pkgs) != want.count {
				t.Errorf("%d package files, want %d", len(pkgs), want.count)
			}
			for _, p := range pkgs {
				rel, _ := filepath.Rel(filepath.Join(dir, name), p)
				checkFixturePackage(t, p, filepath.ToSlash(rel), want.format, want.comp)
			}
		})
	}
}

func checkFixturePackage(t *testing.T, path, rel string, format Format, comp Compression) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	opts := []InspectOptions{{}}
	if format == FormatGpkg {
		opts = append(opts, InspectOptions{VerifyImage: true})
	}
	for _, opt := range opts {
		info, err := Inspect(f, st.Size(), opt)
		if err != nil {
			t.Errorf("%s (%+v): %v", rel, opt, err)
			continue
		}
		if info.Format != format || info.Compression != comp {
			t.Errorf("%s: format %s compression %s, want %s %s", rel, info.Format, info.Compression, format, comp)
		}
		cat, pf, slot := trimmed(info.Metadata["CATEGORY"]), trimmed(info.Metadata["PF"]), trimmed(info.Metadata["SLOT"])
		if cat == "" || pf == "" || slot == "" {
			t.Errorf("%s: CATEGORY %q PF %q SLOT %q must all be present", rel, cat, pf, slot)
			continue
		}
		base := filepath.Base(rel)
		for _, ext := range []string{".gpkg.tar", ".tbz2", ".xpak"} {
			base = strings.TrimSuffix(base, ext)
		}
		buildID := trimmed(info.Metadata["BUILD_ID"])
		if base != pf && (buildID == "" || base != pf+"-"+buildID) {
			t.Errorf("%s: file name does not match PF %q (BUILD_ID %q)", rel, pf, buildID)
		}
		if top := strings.Split(rel, "/")[0]; top != "All" && top != cat {
			t.Errorf("%s: CATEGORY %q does not match its directory", rel, cat)
		}
		if format == FormatGpkg && info.GpkgDir != base && info.GpkgDir != pf {
			t.Errorf("%s: gpkg directory %q is neither the file name nor PF", rel, info.GpkgDir)
		}
		if info.Signed {
			t.Errorf("%s: unexpectedly signed", rel)
		}
		if format == FormatXpak {
			es, tarLen, err := ReadXpak(f, st.Size())
			if err != nil || tarLen <= 0 || len(es) != len(info.Metadata) {
				t.Errorf("%s: ReadXpak: %d entries tarLen %d err %v", rel, len(es), tarLen, err)
			}
		}
	}
}
