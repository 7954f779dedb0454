package sign

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/blake2b"

	"pkgdirfs/xpak"
)

// Error is why a package's signatures are not acceptable: bad input, never
// our own failure.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func bad(format string, a ...any) error { return &Error{fmt.Sprintf(format, a...)} }

// sigLimit bounds a .sig member read into memory: an armoured signature
// is a few hundred bytes.
const sigLimit = 64 << 10

// Keyring is a GnuPG home that decides which signatures are trusted, as a
// Portage client's /etc/portage/gnupg (BINPKG_GPG_VERIFY_GPG_HOME) does.
type Keyring struct {
	Home    string
	Program string // "" for DefaultProgram
	// As is who gpg runs as: root drops to nobody:nogroup, as Portage's
	// GPG_VERIFY_USER_DROP and _GROUP_DROP do (untrusted input is never
	// parsed as root); nil runs it as this process.
	As *syscall.Credential
}

// OpenKeyring returns the keyring of the GnuPG home dir; run as root, gpg
// will run as nobody (and nogroup, or nobody's group).
func OpenKeyring(dir string) (*Keyring, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (a GnuPG home)", dir)
	}
	k := &Keyring{Home: dir}
	if os.Geteuid() == 0 {
		if k.As, err = dropCredential(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// dropCredential is nobody:nogroup (nobody's own group where there is no
// nogroup), with no supplementary groups.
func dropCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("gpg verifies as user nobody, as Portage's does: %w", err)
	}
	gid := u.Gid
	if g, err := user.LookupGroup("nogroup"); err == nil {
		gid = g.Gid
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(g), Groups: []uint32{}}, nil
}

func (k *Keyring) program() string {
	if k.Program != "" {
		return k.Program
	}
	return DefaultProgram
}

// verifyArgs are Portage's BINPKG_GPG_VERIFY_BASE_COMMAND with its
// [PORTAGE_CONFIG] filled in; the signature operands follow.
func (k *Keyring) verifyArgs() []string {
	return []string{"--verify", "--batch", "--no-tty", "--no-auto-check-trustdb", "--status-fd", "2", "--homedir", k.Home}
}

// Check lists the keyring's keys as the user gpg verifies as: a home that
// user cannot read, or that holds no key, is found at start.
func (k *Keyring) Check(ctx context.Context) (keys int, err error) {
	p, err := startGPG(ctx, k.program(), []string{"--batch", "--no-tty", "--homedir", k.Home, "--list-keys", "--with-colons"}, k.As)
	if err != nil {
		return 0, err
	}
	if err := p.finish(); err != nil {
		return 0, fmt.Errorf("keyring %s: gpg --list-keys: %s", k.Home, p.failure(err))
	}
	for _, l := range strings.Split(p.stdout.String(), "\n") {
		if strings.HasPrefix(l, "pub:") {
			keys++
		}
	}
	if keys == 0 {
		return 0, fmt.Errorf("keyring %s holds no public key (%s)", k.Home, p.message())
	}
	return keys, nil
}

// verdict judges the status lines of one gpg --verify as Portage's
// checksum_helper does: exit 0, a GOODSIG, and the key trusted fully or
// ultimately (TRUST_FULLY, TRUST_ULTIMATE) in the keyring. what names the
// signed thing.
func (k *Keyring) verdict(p *gpgRun, err error, what string) error {
	st := p.status()
	trusted := false
	for _, kw := range []string{"TRUST_FULLY", "TRUST_ULTIMATE"} {
		if _, ok := statusArg(st, kw); ok {
			trusted = true
		}
	}
	good, hasGood := statusArg(st, "GOODSIG")
	if err == nil && hasGood && trusted {
		return nil
	}
	key := func(arg string) string {
		f := strings.Fields(arg)
		if len(f) == 0 {
			return "?"
		}
		return strings.Join(f, " ")
	}
	if a, ok := statusArg(st, "BADSIG"); ok {
		return bad("%s: bad signature by %s: the bytes are not what was signed", what, key(a))
	}
	if a, ok := statusArg(st, "NO_PUBKEY"); ok {
		return bad("%s: signed by key %s, which the keyring %s does not hold", what, key(a), k.Home)
	}
	if a, ok := statusArg(st, "EXPKEYSIG"); ok {
		return bad("%s: signed by %s, a key that has expired", what, key(a))
	}
	if a, ok := statusArg(st, "REVKEYSIG"); ok {
		return bad("%s: signed by %s, a revoked key", what, key(a))
	}
	if a, ok := statusArg(st, "EXPSIG"); ok {
		return bad("%s: the signature by %s has expired", what, key(a))
	}
	if hasGood && !trusted {
		level := "TRUST_UNDEFINED"
		for _, kw := range []string{"TRUST_NEVER", "TRUST_MARGINAL", "TRUST_UNDEFINED"} {
			if _, ok := statusArg(st, kw); ok {
				level = kw
				break
			}
		}
		return bad("%s: signed by %s, which the keyring %s does not trust (%s; Portage needs full or ultimate trust)", what, key(good), k.Home, level)
	}
	if _, ok := statusArg(st, "NODATA"); ok {
		return bad("%s: no OpenPGP signature", what)
	}
	if err == nil {
		err = errors.New("no good signature")
	}
	return bad("%s: gpg --verify: %s", what, p.failure(err))
}

// verifyClear checks the clear-signed text b and returns the text it signs,
// as gpg extracts it (Portage's --output -).
func (k *Keyring) verifyClear(ctx context.Context, b []byte, what string) ([]byte, error) {
	p, err := startGPG(ctx, k.program(), append(k.verifyArgs(), "--output", "-", "-"), k.As)
	if err != nil {
		return nil, err
	}
	_, werr := p.stdin.Write(b)
	err = p.finish()
	if err == nil && werr != nil {
		return nil, werr
	}
	if err := k.verdict(p, err, what); err != nil {
		return nil, err
	}
	return p.stdout.Bytes(), nil
}

// startDetached starts gpg checking the detached signature sig over what
// is then written to its stdin. The signature goes through a pipe (fd 3),
// not a file: gpg may run as another user.
func (k *Keyring) startDetached(ctx context.Context, sig []byte) (*gpgRun, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	args := append(k.verifyArgs(), "--enable-special-filenames", "--", "-&3", "-")
	p, err := startGPG(ctx, k.program(), args, k.As, pr)
	if err != nil {
		pw.Close()
		return nil, err
	}
	go func() {
		pw.Write(sig) // gpg reads it all, or exits, which ends the write
		pw.Close()
	}()
	return p, nil
}

// VerifyGpkg checks the gpkg of size bytes in r as a Portage client with
// verify-signature on checks it (gpkg._verify_binpkg): the Manifest
// clear-signed by a trusted key, every member but gpkg-1 and the .sig files
// carrying a detached signature by a trusted key, every member listed in
// the signed Manifest with its size and hashes, and nothing else listed. A
// package that is not acceptable is an *Error; any other error is ours
// (gpg could not run).
func (k *Keyring) VerifyGpkg(ctx context.Context, r io.ReaderAt, size int64) error {
	c, err := readContainer(r, size)
	if err != nil {
		return bad("%v", err)
	}
	plain, err := k.verifyClear(ctx, c.manifest, "Manifest")
	if err != nil {
		return err
	}
	entries, _, err := xpak.ParseManifest(plain)
	if err != nil {
		return bad("signed Manifest: %v", err)
	}
	// What pkgdirfs checked the members against (its own reading of the
	// clear-signed text) must be what was signed: text outside the signed
	// part must not pass.
	shown, _, err := xpak.ParseManifest(c.manifest)
	if err != nil || !reflect.DeepEqual(shown, entries) {
		return bad("Manifest: the text it shows differs from the text its signature covers")
	}
	buf := make([]byte, copyBuf)
	for _, m := range c.members {
		if m.base == "Manifest" {
			continue
		}
		e, ok := entries[m.base]
		if !ok {
			return bad("member %s is not listed in the signed Manifest", m.name)
		}
		if e.Size != m.size {
			return bad("member %s: size %d differs from the signed Manifest's %d", m.name, m.size, e.Size)
		}
		var p *gpgRun
		if m.base != "gpkg-1" && !strings.HasSuffix(m.base, ".sig") {
			sm := c.byBase[m.base+".sig"]
			if sm == nil {
				return bad("member %s has no signature (%s.sig)", m.name, m.base)
			}
			if sm.size > sigLimit {
				return bad("member %s: %d bytes are too many for a signature", sm.name, sm.size)
			}
			sig := make([]byte, sm.size)
			if _, err := r.ReadAt(sig, sm.data); err != nil {
				return err
			}
			if p, err = k.startDetached(ctx, sig); err != nil {
				return err
			}
		}
		bh, _ := blake2b.New512(nil)
		sh := sha512.New()
		var dst io.Writer = io.MultiWriter(bh, sh)
		if p != nil {
			dst = io.MultiWriter(bh, sh, p.stdin)
		}
		_, cerr := io.CopyBuffer(dst, io.NewSectionReader(r, m.data, m.size), buf)
		if p != nil {
			err := p.finish()
			if verr := k.verdict(p, err, m.base); verr != nil {
				return verr
			}
		}
		if cerr != nil {
			return cerr
		}
		if err := checkHashes(m, e, bh.Sum(nil), sh.Sum(nil)); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		if c.byBase[name] == nil {
			return bad("the signed Manifest lists %s, which the package does not hold", name)
		}
	}
	return nil
}

// checkHashes compares a member's hashes with its Manifest entry: every
// hash of the two Portage knows by default must match, and one at least be
// there.
func checkHashes(m *member, e xpak.ManifestEntry, blake, sha []byte) error {
	n := 0
	for _, h := range []struct {
		algo string
		got  []byte
	}{{"BLAKE2B", blake}, {"SHA512", sha}} {
		algo, got := h.algo, h.got
		want, ok := e.Hashes[algo]
		if !ok {
			continue
		}
		n++
		if w, err := hex.DecodeString(want); err != nil || !bytes.Equal(w, got) {
			return bad("member %s: %s differs from the signed Manifest", m.name, algo)
		}
	}
	if n == 0 {
		return bad("member %s: the signed Manifest gives no BLAKE2B or SHA512", m.name)
	}
	return nil
}
