package pkgtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GPGHome is a throw-away GnuPG home for a test: real gpg, keys without
// passphrases (no prompt ever), its agent killed when the test ends.
type GPGHome struct {
	Dir string
	t   testing.TB
}

// NewGPGHome makes an empty GnuPG home under /tmp (short: the agent's
// socket path has a length limit), removed with its agent at cleanup.
func NewGPGHome(t testing.TB) *GPGHome {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatalf("gpg not found (Debian: apt-get install gnupg; make deps installs it): %v", err)
	}
	dir, err := os.MkdirTemp("", "gpg-")
	if err != nil {
		t.Fatal(err)
	}
	h := &GPGHome{Dir: dir, t: t}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		os.RemoveAll(dir)
	})
	return h
}

// GPG runs gpg --homedir DIR --batch args with stdin, and fails the test
// unless it exits 0; it returns stdout.
func (h *GPGHome) GPG(stdin []byte, args ...string) []byte {
	h.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", h.Dir, "--batch", "--no-tty"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// GenKey makes a signing key (ed25519, no passphrase, never expiring) and
// returns its fingerprint.
func (h *GPGHome) GenKey(uid string) string {
	h.t.Helper()
	h.GPG(nil, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	for _, l := range strings.Split(string(h.GPG(nil, "--with-colons", "--list-secret-keys", uid)), "\n") {
		if f := strings.Split(l, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9]
		}
	}
	h.t.Fatalf("gpg made no key for %s", uid)
	return ""
}

// Export is the armoured public key fpr.
func (h *GPGHome) Export(fpr string) []byte {
	h.t.Helper()
	return h.GPG(nil, "--armor", "--export", fpr)
}

// Trusting makes h a client keyring as /etc/portage/gnupg is after getuto
// and one more key: a local key of its own (ultimately trusted, as
// getuto's "Portage Local Trust Key"), the public key pub imported and
// locally signed by it (so it is fully valid), the trustdb checked, and
// the home readable by everyone (Portage verifies as nobody). It returns h.
func (h *GPGHome) Trusting(pub []byte) *GPGHome {
	h.t.Helper()
	local := h.GenKey("Portage Local Trust Key <portage@localhost>")
	h.GPG(pub, "--import")
	for _, fpr := range h.fingerprints() {
		if fpr != local {
			h.GPG(nil, "--yes", "--default-key", local, "--quick-lsign-key", fpr)
		}
	}
	h.GPG(nil, "--check-trustdb")
	h.Readable()
	return h
}

// Holding imports pub without trusting it (a key of undefined trust), and
// makes h readable by everyone. It returns h.
func (h *GPGHome) Holding(pub []byte) *GPGHome {
	h.t.Helper()
	h.GPG(pub, "--import")
	h.GPG(nil, "--check-trustdb")
	h.Readable()
	return h
}

// fingerprints are those of the primary keys h holds.
func (h *GPGHome) fingerprints() []string {
	var out []string
	prev := ""
	for _, l := range strings.Split(string(h.GPG(nil, "--with-colons", "--list-keys")), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 9 && f[0] == "fpr" && prev == "pub" {
			out = append(out, f[9])
		}
		prev = f[0]
	}
	return out
}

// Readable makes the home readable by every user as getuto leaves
// /etc/portage/gnupg for Portage's verification as nobody: the directory
// u=rwx,go=rx, the keyring and the trustdb readable (gpg makes the trustdb
// 0600); the private keys stay root's.
func (h *GPGHome) Readable() {
	h.t.Helper()
	if err := os.Chmod(h.Dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	for _, f := range []string{"pubring.kbx", "trustdb.gpg"} {
		p := filepath.Join(h.Dir, f)
		if st, err := os.Stat(p); err == nil {
			os.Chmod(p, st.Mode().Perm()|0o444)
		}
	}
}
