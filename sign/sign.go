// Package sign signs gpkg binary packages the way Portage's binpkg-signing
// signs them, and checks their signatures the way Portage's client does,
// with GnuPG itself: the key may live in gpg-agent or on a smartcard, its
// passphrase never passes through here, and a client's keyring (its trust
// model, expiry, revocation) judges exactly as Portage's gpg does. Without
// FUSE or a catalog; catalog.Store calls it on the way in.
package sign

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/blake2b"

	"pkgdirfs/xpak"
)

// DefaultDigest is Portage's BINPKG_GPG_SIGNING_DIGEST (cnf/make.globals).
const DefaultDigest = "SHA512"

// ErrSigned: the package carries signatures already. A signed package is
// never signed again: its bytes are what its builder signed.
var ErrSigned = errors.New("gpkg: already signed")

// SigningError is gpg failing to sign: the key or GnuPG, not the package.
type SigningError struct{ What string }

func (e *SigningError) Error() string { return "signing with gpg: " + e.What }

// Signer signs with one key of a GnuPG home, as Portage's
// BINPKG_GPG_SIGNING_KEY, _GPG_HOME and _DIGEST do.
type Signer struct {
	Key     string // --local-user: a key id, fingerprint or user id
	Home    string // --homedir; "" for gpg's own ($GNUPGHOME, ~/.gnupg)
	Digest  string // --digest-algo; "" for DefaultDigest
	Program string // "" for DefaultProgram
}

func (s *Signer) program() string {
	if s.Program != "" {
		return s.Program
	}
	return DefaultProgram
}

// args are Portage's BINPKG_GPG_SIGNING_BASE_COMMAND with its
// [PORTAGE_CONFIG] filled in for mode (--detach-sig or --clear-sign), plus
// a status channel for the key's fingerprint, and no prompting: a daemon has
// no terminal, so a key whose passphrase the agent does not hold fails at
// once rather than waiting on a pinentry nobody sees.
func (s *Signer) args(mode string) []string {
	a := []string{"--sign", "--armor"}
	if s.Home != "" {
		a = append(a, "--homedir", s.Home)
	}
	digest := s.Digest
	if digest == "" {
		digest = DefaultDigest
	}
	return append(a, "--digest-algo", digest, "--local-user", s.Key, mode, "--batch", "--no-tty",
		"--pinentry-mode", "error", "--status-fd", "2")
}

// Check signs an empty message, as Portage's GPG.unlock does before a
// build, so that a key gpg cannot use is found at start rather than at the
// first package. It returns the fingerprint of the key that signs.
func (s *Signer) Check(ctx context.Context) (string, error) {
	p, err := startGPG(ctx, s.program(), s.args("--detach-sig"), nil)
	if err != nil {
		return "", err
	}
	_, fpr, err := signatureOf(p)
	return fpr, err
}

// signatureOf waits for a signing gpg and returns the armoured signature
// (or clear-signed text) it wrote and the signing key's fingerprint.
func signatureOf(p *gpgRun) (out []byte, fpr string, err error) {
	if err := p.finish(); err != nil {
		return nil, "", &SigningError{p.failure(err)}
	}
	if arg, ok := statusArg(p.status(), "SIG_CREATED"); ok {
		if f := strings.Fields(arg); len(f) > 0 {
			fpr = f[len(f)-1]
		}
	}
	out = p.stdout.Bytes()
	if fpr == "" || !bytes.Contains(out, []byte("-----BEGIN PGP SIGNATURE-----")) {
		return nil, "", &SigningError{"gpg made no signature" + strings.TrimPrefix(": "+p.message(), ": ")}
	}
	return out, fpr, nil
}

// startAhead is how many detached signatures start before their member's
// turn: a gpkg's two.
const startAhead = 2

// copyBuf is the size of the chunks members are copied in.
const copyBuf = 256 << 10

// recordSize is Python's tarfile RECORDSIZE: Portage's gpkgs are padded to
// a multiple of it.
const recordSize = 20 * 512

// SignGpkg writes to w the unsigned gpkg of size bytes in r, signed as
// Portage's binpkg-signing signs (gpkg.update_signature): each member but
// gpkg-1 and the Manifest followed by its detached, ASCII-armoured
// signature <member>.sig, and a Manifest listing every member (the .sig
// ones too) with its size, BLAKE2B and SHA512, clear-signed. The members'
// headers and bytes are copied as they are. r is read once; w is written
// in order, once. It returns the signing key's fingerprint. A package
// already signed is ErrSigned.
func (s *Signer) SignGpkg(ctx context.Context, w io.Writer, r io.ReaderAt, size int64) (string, error) {
	c, err := readContainer(r, size)
	if err != nil {
		return "", err
	}
	if c.signed() {
		return "", ErrSigned
	}
	entries, _, err := xpak.ParseManifest(c.manifest)
	if err != nil {
		return "", err
	}
	var toSign []*member
	for _, m := range c.members {
		if m.base == "Manifest" {
			continue
		}
		if _, ok := entries[m.base]; !ok {
			return "", fmt.Errorf("gpkg: member %s is not listed in the Manifest", m.name)
		}
		if m.base != "gpkg-1" {
			toSign = append(toSign, m)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The gpg runs of a Portage gpkg (metadata, image, Manifest) start
	// now, each waiting for its input: their start-ups (and the agent's)
	// overlap instead of adding up. Those of further members, which a
	// package may list in its Manifest, start when their turn comes.
	procs := make(map[*member]*gpgRun, len(toSign))
	var clear *gpgRun
	defer func() {
		for _, p := range procs {
			p.kill()
		}
		clear.kill()
	}()
	start := func(m *member) error {
		p, err := startGPG(ctx, s.program(), s.args("--detach-sig"), nil)
		procs[m] = p
		return err
	}
	for _, m := range toSign[:min(len(toSign), startAhead)] {
		if err := start(m); err != nil {
			return "", err
		}
	}
	if clear, err = startGPG(ctx, s.program(), s.args("--clear-sign"), nil); err != nil {
		return "", err
	}
	signs := map[*member]bool{}
	for _, m := range toSign {
		signs[m] = true
	}

	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, copyBuf)
	buf := make([]byte, copyBuf)
	now := time.Now()
	var lines []string
	fpr := ""
	for _, m := range c.members {
		if m.base == "Manifest" {
			continue
		}
		if err := copyRange(bw, r, m.start, m.data-m.start, buf); err != nil {
			return "", err
		}
		if signs[m] && procs[m] == nil {
			if err := start(m); err != nil {
				return "", err
			}
		}
		p := procs[m]
		var dst io.Writer = bw
		var feed *feeder
		if p != nil {
			feed = newFeeder(p.stdin)
			dst = io.MultiWriter(bw, feed)
		}
		err := copyRange(dst, r, m.data, m.size, buf)
		if feed != nil {
			if ferr := feed.close(); err == nil {
				err = ferr
			}
		}
		if err != nil {
			if p != nil {
				if perr := p.finish(); perr != nil {
					return "", &SigningError{p.failure(perr)} // gpg gone: why, not the broken pipe
				}
			}
			return "", err
		}
		if _, err := bw.Write(zeros[:padding(m.size)]); err != nil {
			return "", err
		}
		lines = append(lines, "DATA "+m.base+" "+entryText(entries[m.base]))
		if p == nil {
			continue
		}
		sig, key, err := signatureOf(p)
		delete(procs, m)
		if err != nil {
			return "", err
		}
		fpr = key
		if err := writeMember(bw, c.dir+"/"+m.base+".sig", sig, now, c.gnu); err != nil {
			return "", err
		}
		lines = append(lines, "DATA "+m.base+".sig "+entryText(digestEntry(sig)))
	}
	if _, err := io.WriteString(clear.stdin, strings.Join(lines, "\n")+"\n"); err != nil {
		if perr := clear.finish(); perr != nil {
			return "", &SigningError{clear.failure(perr)}
		}
		return "", err
	}
	manifest, _, err := signatureOf(clear)
	if err != nil {
		return "", err
	}
	if err := writeMember(bw, c.dir+"/Manifest", manifest, now, c.gnu); err != nil {
		return "", err
	}
	// The end of the archive: two zero blocks, then zeros to the end of a
	// record, as Python's tarfile closes every gpkg Portage writes.
	n := cw.n + int64(bw.Buffered()) + 2*512
	if _, err := bw.Write(make([]byte, 2*512+(-n%recordSize+recordSize)%recordSize)); err != nil {
		return "", err
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	return fpr, nil
}

var zeros [512]byte

// feeder writes to a gpg's stdin from a goroutine of its own, a few chunks
// behind the caller: gpg hashes one chunk while the caller writes and
// digests the next, instead of each waiting for the other.
type feeder struct {
	w    io.Writer
	ch   chan []byte
	free chan []byte
	done chan error
}

const feederChunks = 4

func newFeeder(w io.Writer) *feeder {
	f := &feeder{w: w, ch: make(chan []byte, feederChunks), free: make(chan []byte, feederChunks), done: make(chan error, 1)}
	for range feederChunks {
		f.free <- make([]byte, 0, copyBuf)
	}
	go func() {
		var err error
		for b := range f.ch {
			if err == nil {
				_, err = f.w.Write(b)
			}
			f.free <- b[:0]
		}
		f.done <- err
	}()
	return f
}

func (f *feeder) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		b := <-f.free
		n := min(len(rest), cap(b))
		f.ch <- append(b, rest[:n]...)
		rest = rest[n:]
	}
	return len(p), nil
}

// close waits for every chunk to be written and returns the first error.
func (f *feeder) close() error {
	close(f.ch)
	return <-f.done
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func padding(n int64) int64 { return -n & 511 }

// copyRange copies n bytes of r from off to w.
func copyRange(w io.Writer, r io.ReaderAt, off, n int64, buf []byte) error {
	_, err := io.CopyBuffer(w, io.NewSectionReader(r, off, n), buf)
	return err
}

// writeMember writes one member of the outer tar: a header as Python's
// tarfile writes Portage's (mode 0644, owner 0, no user or group names) in
// the container's format, the data, the padding.
func writeMember(w io.Writer, name string, data []byte, mtime time.Time, gnu bool) error {
	var hdr bytes.Buffer
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644,
		ModTime: mtime.Truncate(time.Second), Format: tar.FormatUSTAR}
	if gnu {
		h.Format = tar.FormatGNU
	}
	if err := tar.NewWriter(&hdr).WriteHeader(h); err != nil {
		// A name too long for ustar: the extended header carries it.
		hdr.Reset()
		h.Format = tar.FormatPAX
		if err := tar.NewWriter(&hdr).WriteHeader(h); err != nil {
			return fmt.Errorf("gpkg: tar header for %s: %w", name, err)
		}
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(zeros[:padding(int64(len(data)))])
	return err
}

// digestEntry is the Manifest entry of data: its size, BLAKE2B and SHA512.
func digestEntry(data []byte) xpak.ManifestEntry {
	bl, sh := blake2b.Sum512(data), sha512.Sum512(data)
	return xpak.ManifestEntry{Size: int64(len(data)), Hashes: map[string]string{
		"BLAKE2B": hex.EncodeToString(bl[:]), "SHA512": hex.EncodeToString(sh[:])}}
}
