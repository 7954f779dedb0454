package sign

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/blake2b"

	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/xpak"
)

// testKeys is a signer's GnuPG home with one key, and client keyrings as
// Portage's /etc/portage/gnupg: one trusting that key, one trusting another
// key only, one holding the key without trusting it.
type testKeys struct {
	signer, trustingH             *pkgtest.GPGHome
	fpr, otherFpr                 string
	trusting, otherKey, untrusted *Keyring
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	k := &testKeys{signer: pkgtest.NewGPGHome(t)}
	k.fpr = k.signer.GenKey("Binhost <binhost@example.org>")
	pub := k.signer.Export(k.fpr)
	other := pkgtest.NewGPGHome(t)
	k.otherFpr = other.GenKey("Another <another@example.org>")
	keyring := func(h *pkgtest.GPGHome) *Keyring {
		kr, err := OpenKeyring(h.Dir)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	k.trustingH = pkgtest.NewGPGHome(t).Trusting(pub)
	k.trusting = keyring(k.trustingH)
	k.otherKey = keyring(pkgtest.NewGPGHome(t).Trusting(other.Export(k.otherFpr)))
	k.untrusted = keyring(pkgtest.NewGPGHome(t).Holding(pub))
	return k
}

func (k *testKeys) sign(t *testing.T, in []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	fpr, err := (&Signer{Key: k.fpr, Home: k.signer.Dir}).SignGpkg(context.Background(), &out, bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatalf("SignGpkg: %v", err)
	}
	if fpr != k.fpr {
		t.Errorf("SignGpkg says key %s signed, want %s", fpr, k.fpr)
	}
	return out.Bytes()
}

// tmember is one member of a tar as the tests read it: header and data.
type tmember struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) []tmember {
	t.Helper()
	var out []tmember
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tmember{h, d})
	}
}

func writeTar(t *testing.T, ms []tmember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := *m.hdr
		h.Size = int64(len(m.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	tw.Close()
	return buf.Bytes()
}

func base(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// testGpkgs are unsigned gpkgs: real ones Portage wrote (zstd, xz, one
// with a long directory name) and a synthetic one.
func testGpkgs(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"synthetic": pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, bytes.Repeat([]byte("image "), 5000))}
	for _, fx := range []string{"gpkg-zstd-multi", "gpkg-xz-flat"} {
		pkgs := pkgtest.FixturePackages(t, fx)
		names := make([]string, 0, len(pkgs))
		for n := range pkgs {
			names = append(names, n)
		}
		sort.Strings(names)
		out[names[0]] = pkgs[names[0]]
		out[names[len(names)-1]] = pkgs[names[len(names)-1]]
	}
	return out
}

// TestSignGpkgAsPortage: the signed package is laid out as Portage's
// binpkg-signing lays it out, each signature checks with gpg itself (not
// with this package), the original members are there byte for byte, and a
// keyring trusting the key accepts it.
func TestSignGpkgAsPortage(t *testing.T) {
	k := newTestKeys(t)
	for name, in := range testGpkgs(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			out := k.sign(t, in)
			if len(out)%10240 != 0 {
				t.Errorf("signed size %d is not a multiple of 10240 (Python tarfile's records)", len(out))
			}
			inM, outM := readTar(t, in), readTar(t, out)
			var want []string
			for _, m := range inM {
				b := base(m.hdr.Name)
				if b == "Manifest" {
					continue
				}
				want = append(want, b)
				if b != "gpkg-1" {
					want = append(want, b+".sig")
				}
			}
			want = append(want, "Manifest")
			var got []string
			byBase := map[string]tmember{}
			for _, m := range outM {
				got = append(got, base(m.hdr.Name))
				byBase[base(m.hdr.Name)] = m
				if dir := filepath.Dir(m.hdr.Name); dir != filepath.Dir(inM[0].hdr.Name) {
					t.Errorf("member %s is not in the package's directory %s", m.hdr.Name, filepath.Dir(inM[0].hdr.Name))
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("members: got %v, want %v", got, want)
			}
			// The original members, headers included, are there as they were.
			for _, m := range inM {
				if b := base(m.hdr.Name); b != "Manifest" && !bytes.Equal(byBase[b].data, m.data) {
					t.Errorf("member %s changed", b)
				}
			}
			if i, o := rawHeader(t, in, "gpkg-1"), rawHeader(t, out, "gpkg-1"); !bytes.Equal(i, o) {
				t.Errorf("the gpkg-1 header changed (Portage reads the tar format from it)")
			}
			dir := t.TempDir()
			write := func(n string, b []byte) string {
				p := filepath.Join(dir, n)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			var manifest strings.Builder
			for _, b := range want[:len(want)-1] {
				d := byBase[b].data
				bl, sh := blake2b.Sum512(d), sha512.Sum512(d)
				fmt.Fprintf(&manifest, "DATA %s %d BLAKE2B %s SHA512 %s\n", b, len(d), hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
				if strings.HasSuffix(b, ".sig") {
					if !bytes.HasPrefix(d, []byte("-----BEGIN PGP SIGNATURE-----")) {
						t.Errorf("%s is not an ASCII-armoured signature: %q", b, clip(d))
					}
					k.signer.GPG(nil, "--verify", write(b, d), write(strings.TrimSuffix(b, ".sig"), byBase[strings.TrimSuffix(b, ".sig")].data))
				}
			}
			man := byBase["Manifest"].data
			if !bytes.HasPrefix(man, []byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n")) {
				t.Errorf("Manifest is not clear-signed with SHA512 (BINPKG_GPG_SIGNING_DIGEST): %q", clip(man))
			}
			body := k.signer.GPG(nil, "--verify", "--output", "-", write("Manifest", man))
			if string(body) != manifest.String() {
				t.Errorf("signed Manifest text:\n%s\nwant:\n%s", body, manifest.String())
			}
			info, err := xpak.Inspect(bytes.NewReader(out), int64(len(out)), xpak.InspectOptions{VerifyImage: true})
			if err != nil || !info.Signed {
				t.Errorf("Inspect of the signed package: %v (signed %v)", err, info != nil && info.Signed)
			}
			if err := k.trusting.VerifyGpkg(context.Background(), bytes.NewReader(out), int64(len(out))); err != nil {
				t.Errorf("a keyring trusting the key refuses it: %v", err)
			}
			ki, err1 := ContentKey(bytes.NewReader(in), int64(len(in)))
			ko, err2 := ContentKey(bytes.NewReader(out), int64(len(out)))
			if err := errors.Join(err1, err2); err != nil || ki != ko {
				t.Errorf("ContentKey of the unsigned and the signed package differ (%v):\n%s\n%s", err, ki, ko)
			}
		})
	}
}

// rawHeader is the header block of member b (by base name) as stored.
func rawHeader(t *testing.T, pkg []byte, b string) []byte {
	t.Helper()
	c, err := readContainer(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	m := c.byBase[b]
	return pkg[m.start:m.data]
}

func clip(b []byte) []byte {
	if len(b) > 120 {
		return b[:120]
	}
	return b
}

// TestSignGpkgNeverResigns: a signed package is never signed again.
func TestSignGpkgNeverResigns(t *testing.T) {
	k := newTestKeys(t)
	signed := k.sign(t, pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, []byte("x")))
	_, err := (&Signer{Key: k.fpr, Home: k.signer.Dir}).SignGpkg(context.Background(), io.Discard, bytes.NewReader(signed), int64(len(signed)))
	if !errors.Is(err, ErrSigned) {
		t.Fatalf("signing a signed package: %v, want ErrSigned", err)
	}
	if ok, err := Signed(bytes.NewReader(signed), int64(len(signed))); !ok || err != nil {
		t.Errorf("Signed(signed package) = %v, %v", ok, err)
	}
}

// TestSignerCheck: a key gpg cannot sign with is found by Check.
func TestSignerCheck(t *testing.T) {
	k := newTestKeys(t)
	fpr, err := (&Signer{Key: k.fpr, Home: k.signer.Dir}).Check(context.Background())
	if err != nil || fpr != k.fpr {
		t.Fatalf("Check: %q, %v; want %s", fpr, err, k.fpr)
	}
	_, err = (&Signer{Key: k.otherFpr, Home: k.signer.Dir}).Check(context.Background())
	var se *SigningError
	if !errors.As(err, &se) {
		t.Fatalf("Check with a key the home lacks: %v, want a *SigningError", err)
	}
	in := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, []byte("x"))
	_, err = (&Signer{Key: k.otherFpr, Home: k.signer.Dir}).SignGpkg(context.Background(), io.Discard, bytes.NewReader(in), int64(len(in)))
	if !errors.As(err, &se) {
		t.Fatalf("SignGpkg with a key the home lacks: %v, want a *SigningError", err)
	}
}

// TestVerifyGpkgRefuses: what a Portage client with verify-signature
// refuses is refused, each with its reason.
func TestVerifyGpkgRefuses(t *testing.T) {
	k := newTestKeys(t)
	unsigned := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, bytes.Repeat([]byte("data "), 300))
	signed := k.sign(t, unsigned)
	edit := func(fn func(ms []tmember) []tmember) []byte { return writeTar(t, fn(readTar(t, signed))) }
	find := func(ms []tmember, b string) int {
		for i, m := range ms {
			if base(m.hdr.Name) == b {
				return i
			}
		}
		t.Fatalf("no member %s", b)
		return -1
	}
	// resign makes a Manifest over ms (without the Manifest) and
	// clear-signs it with the key, as a forger holding the key would.
	resign := func(ms []tmember) []tmember {
		var b strings.Builder
		for _, m := range ms {
			if base(m.hdr.Name) == "Manifest" {
				continue
			}
			bl, sh := blake2b.Sum512(m.data), sha512.Sum512(m.data)
			fmt.Fprintf(&b, "DATA %s %d BLAKE2B %s SHA512 %s\n", base(m.hdr.Name), len(m.data), hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
		}
		i := find(ms, "Manifest")
		ms[i].data = k.signer.GPG([]byte(b.String()), "--clear-sign", "--local-user", k.fpr)
		return ms
	}
	cases := []struct {
		name string
		pkg  []byte
		kr   *Keyring
		want string
	}{
		{"unsigned", unsigned, k.trusting, "Manifest: no OpenPGP signature"},
		{"key not in the keyring", signed, k.otherKey, "which the keyring " + k.otherKey.Home + " does not hold"},
		{"key of undefined trust", signed, k.untrusted, "does not trust (TRUST_UNDEFINED"},
		{"image changed after signing", edit(func(ms []tmember) []tmember {
			i := find(ms, "image.tar")
			ms[i].data = append([]byte(nil), ms[i].data...)
			ms[i].data[600] ^= 1
			return ms
		}), k.trusting, "image.tar: bad signature"},
		{"image and Manifest entry changed, Manifest not re-signed", edit(func(ms []tmember) []tmember {
			i := find(ms, "image.tar")
			ms[i].data = append([]byte(nil), ms[i].data...)
			ms[i].data[600] ^= 1
			m := find(ms, "Manifest")
			bl := blake2b.Sum512(ms[i].data)
			old := ms[m].data
			j := bytes.Index(old, []byte("DATA image.tar "))
			line := old[j : j+bytes.IndexByte(old[j:], '\n')]
			f := strings.Fields(string(line))
			f[4] = hex.EncodeToString(bl[:])
			ms[m].data = bytes.Replace(old, line, []byte(strings.Join(f, " ")), 1)
			return ms
		}), k.trusting, "Manifest: bad signature"},
		{"image signature dropped", edit(func(ms []tmember) []tmember {
			i := find(ms, "image.tar.sig")
			return resign(append(ms[:i:i], ms[i+1:]...))
		}), k.trusting, "member foo-1.0/image.tar has no signature (image.tar.sig)"},
		{"member not in the Manifest", edit(func(ms []tmember) []tmember {
			extra := tmember{&tar.Header{Name: "foo-1.0/extra", Mode: 0o644, Typeflag: tar.TypeReg}, []byte("x")}
			i := find(ms, "Manifest")
			return append(ms[:i:i], extra, ms[i])
		}), k.trusting, "member foo-1.0/extra is not listed in the signed Manifest"},
		{"text after the signature", edit(func(ms []tmember) []tmember {
			i := find(ms, "Manifest")
			ms[i].data = append(append([]byte(nil), ms[i].data...), "DATA extra 1 SHA512 00\n"...)
			return ms
		}), k.trusting, "Manifest: the text it shows differs from the text its signature covers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.kr.VerifyGpkg(context.Background(), bytes.NewReader(c.pkg), int64(len(c.pkg)))
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Reason, c.want) {
				t.Fatalf("VerifyGpkg: %v; want an *Error saying %q", err, c.want)
			}
			t.Logf("refused: %s", e.Reason)
		})
	}
}

// TestKeyringAsNobody: run as root, gpg verifies as nobody (as Portage's
// does): a keyring only root can read is found out by Check.
func TestKeyringAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks the drop to nobody")
	}
	k := newTestKeys(t)
	if k.trusting.As == nil || k.trusting.As.Uid == 0 {
		t.Fatalf("a keyring opened as root runs gpg as %+v, want nobody", k.trusting.As)
	}
	if n, err := k.trusting.Check(context.Background()); err != nil || n != 2 {
		t.Fatalf("Check of a readable keyring: %d keys, %v; want 2", n, err)
	}
	if err := os.Chmod(k.trustingH.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := k.trusting.Check(context.Background()); err == nil {
		t.Fatalf("Check of a keyring nobody cannot read: no error")
	}
}

// TestSignGpkgExtraMembers: members beyond metadata and image that the
// Manifest lists are signed too, each after its own data, as Portage's
// update_signature signs every member but gpkg-1.
func TestSignGpkgExtraMembers(t *testing.T) {
	k := newTestKeys(t)
	ms := readTar(t, pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, []byte("data")))
	var body []tmember
	for _, m := range ms {
		if base(m.hdr.Name) != "Manifest" {
			body = append(body, m)
		}
	}
	for i := range 4 {
		body = append(body, tmember{&tar.Header{Name: fmt.Sprintf("foo-1.0/extra%d", i), Mode: 0o644, Typeflag: tar.TypeReg}, []byte(strings.Repeat("x", i))})
	}
	var man strings.Builder
	for _, m := range body {
		bl, sh := blake2b.Sum512(m.data), sha512.Sum512(m.data)
		fmt.Fprintf(&man, "DATA %s %d BLAKE2B %s SHA512 %s\n", base(m.hdr.Name), len(m.data), hex.EncodeToString(bl[:]), hex.EncodeToString(sh[:]))
	}
	in := writeTar(t, append(body, tmember{&tar.Header{Name: "foo-1.0/Manifest", Mode: 0o644, Typeflag: tar.TypeReg}, []byte(man.String())}))
	out := k.sign(t, in)
	var got []string
	for _, m := range readTar(t, out) {
		got = append(got, base(m.hdr.Name))
	}
	want := "gpkg-1 metadata.tar.gz metadata.tar.gz.sig image.tar image.tar.sig extra0 extra0.sig extra1 extra1.sig extra2 extra2.sig extra3 extra3.sig Manifest"
	if strings.Join(got, " ") != want {
		t.Errorf("members:\n%s\nwant:\n%s", strings.Join(got, " "), want)
	}
	if err := k.trusting.VerifyGpkg(context.Background(), bytes.NewReader(out), int64(len(out))); err != nil {
		t.Errorf("a keyring trusting the key refuses it: %v", err)
	}
}
