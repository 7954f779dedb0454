package catalog

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"pkgdirfs/sign"
	"pkgdirfs/xpak"
)

// Signing is what a store does with the OpenPGP signatures of the gpkg
// packages that arrive (written through the mount, imported). The zero
// value keeps every package as it comes.
type Signing struct {
	// Signer signs an unsigned gpkg on arrival, before it is identified
	// and committed: the signed bytes are the instance (its digests, its
	// size, what is served), and the writer's unsigned bytes never are. A
	// signed gpkg is never signed again; xpak cannot be signed.
	Signer *sign.Signer
	// Trust checks a signed gpkg as a client trusting this keyring would
	// (and verify --deep the stored ones): one it would refuse is refused.
	Trust *sign.Keyring
}

// arrival applies the signing rules to a candidate identify accepted as
// inst. It returns what to commit: c and inst themselves, or other bytes
// in a new staging file with their instance (the package signed, or the
// bytes of the same build the catalog holds already).
func (s *Store) arrival(ctx context.Context, c *Candidate, inst *Instance) (*Candidate, *Instance, error) {
	if inst.Format != "gpkg" || c.Known {
		return c, inst, nil
	}
	if inst.Signed {
		if s.Signing.Trust == nil {
			return c, inst, nil
		}
		f, err := os.Open(c.File)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		return c, inst, s.checkSignatures(ctx, c.Name, f, c.Size)
	}
	if s.Signing.Signer == nil {
		return c, inst, nil
	}
	f, err := os.Open(c.File)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return s.signedCandidate(ctx, c, inst, f)
}

// checkSignatures refuses a signed gpkg whose signatures the trust keyring
// does not accept, with the reason; other errors are ours (gpg not run).
func (s *Store) checkSignatures(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	err := s.Signing.Trust.VerifyGpkg(ctx, r, size)
	var se *sign.Error
	if errors.As(err, &se) {
		return refuse(name, "signature: %s", se.Reason)
	}
	return err
}

// signedCandidate is the candidate c (the unsigned gpkg inst, its bytes in
// r) signed: the bytes of the same build if the catalog holds it signed
// already (an instance, or a removed build in its grace, hard-linked into
// staging: copying or importing a package again adds nothing, although
// signing it again would give other bytes), else the package signed into
// a new staging file. Its errors are ours: the package itself was accepted.
func (s *Store) signedCandidate(ctx context.Context, c *Candidate, inst *Instance, r io.ReaderAt) (*Candidate, *Instance, error) {
	key, err := sign.ContentKey(r, c.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	held, err := s.heldBuilds(ctx, inst.CPV)
	if err != nil {
		return nil, nil, err
	}
	if h := s.carrying(held, key); h != nil {
		if name, err := s.linkStaged(h.Blob); err == nil {
			nc := &Candidate{Staged: &Staged{File: name, Size: h.Size, MD5: h.MD5, SHA1: h.SHA1, SHA256: h.SHA256},
				Name: c.Name, MtimeNs: c.MtimeNs, Mode: c.Mode, Replaces: c.Replaces, Known: true, content: key}
			ni := *inst
			ni.Size, ni.MD5, ni.SHA1, ni.SHA256, ni.Signed = h.Size, h.MD5, h.SHA1, h.SHA256, h.Signed
			return nc, &ni, nil
		}
		// Its blob went meanwhile (a grace ended): sign these bytes.
	}
	f, err := newStagingFile(s.StagingDir())
	if err != nil {
		return nil, nil, err
	}
	d := newWholeDigest()
	fpr, err := s.Signing.Signer.SignGpkg(ctx, io.MultiWriter(f, d), r, c.Size)
	if err == nil {
		err = s.checkSigned(f, d.n, inst)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		// Never a refusal: the writer's bytes were accepted, signing failed.
		return nil, nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	nc := &Candidate{Staged: d.staged(f.Name()), Name: c.Name, MtimeNs: c.MtimeNs, Mode: c.Mode, Replaces: c.Replaces, content: key}
	ni := *inst
	ni.Size, ni.MD5, ni.SHA1, ni.SHA256, ni.Signed = nc.Size, nc.MD5, nc.SHA1, nc.SHA256, true
	s.log.Info("signed on arrival", "path", c.Name, "cpv", inst.CPV, "key", fpr, "size", c.Size, "signed_size", nc.Size)
	return nc, &ni, nil
}

// checkSigned checks the signed package in f as Inspect checks a package,
// but for the image's hashes: its members are the unsigned package's,
// which identify checked against their Manifest entries, copied as they
// were (hashing a large image twice more would cost more than the
// signature), and the metadata is theirs, so inst describes the package.
func (s *Store) checkSigned(f io.ReaderAt, size int64, inst *Instance) error {
	info, err := xpak.Inspect(f, size, xpak.InspectOptions{})
	if err == nil && (!info.Signed || info.Format != xpak.FormatGpkg || string(info.Compression) != inst.Compression) {
		err = fmt.Errorf("the package signed is %s/%s (signed %v)", info.Format, info.Compression, info.Signed)
	}
	if err != nil {
		return fmt.Errorf("signing made a package pkgdirfs does not accept: %w", err)
	}
	return nil
}

// wholeDigest takes the digests of a whole file that a Staged carries.
type wholeDigest struct {
	n                 int64
	md5, sha1, sha256 hash.Hash
}

func newWholeDigest() *wholeDigest {
	return &wholeDigest{md5: md5.New(), sha1: sha1.New(), sha256: sha256.New()}
}

func (d *wholeDigest) Write(p []byte) (int, error) {
	d.md5.Write(p)
	d.sha1.Write(p)
	d.sha256.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *wholeDigest) staged(file string) *Staged {
	return &Staged{File: file, Size: d.n, MD5: hex.EncodeToString(d.md5.Sum(nil)),
		SHA1: hex.EncodeToString(d.sha1.Sum(nil)), SHA256: hex.EncodeToString(d.sha256.Sum(nil))}
}

// heldBuilds are the gpkg packages of cpv the catalog holds: its
// instances, then its removed builds in their grace.
func (s *Store) heldBuilds(ctx context.Context, cpv string) ([]Instance, error) {
	var out []Instance
	err := s.DB.View(ctx, func(v *View) error {
		insts, err := v.InstancesByCPV(cpv)
		if err != nil {
			return err
		}
		tombs, err := v.TombstonesOf(cpv)
		if err != nil {
			return err
		}
		out = out[:0]
		for i := range insts {
			out = append(out, insts[i])
		}
		for i := range tombs {
			out = append(out, tombs[i].Instance)
		}
		return nil
	})
	return out, err
}

// carrying is the signed package among held whose content key is key,
// nil if none: the same build, signed. An unsigned one is not what a
// signing binhost serves: the build signed is added beside it (no write
// replaces a build), and prune can drop the unsigned one.
func (s *Store) carrying(held []Instance, key string) *Instance {
	for i := range held {
		h := &held[i]
		if h.Format != "gpkg" || h.Placeholder || h.Blob == "" {
			continue
		}
		f, err := os.Open(s.blobs.Path(h.Blob))
		if err != nil {
			continue
		}
		signed := h.Signed
		if !signed {
			// A removed build's tombstone does not say whether it was
			// signed: its bytes do.
			info, err := xpak.Inspect(f, h.Size, xpak.InspectOptions{})
			signed = err == nil && info.Signed
		}
		var k string
		if signed {
			k, err = sign.ContentKey(f, h.Size)
		}
		f.Close()
		if signed && err == nil && k == key {
			h.Signed = true
			return h
		}
	}
	return nil
}

// linkStaged hard-links a blob into this process's staging directory (an
// "in-" name: recovery drops it, the blob keeps its bytes).
func (s *Store) linkStaged(blob string) (string, error) {
	for {
		name := stagingName(s.StagingDir())
		err := os.Link(s.blobs.Path(blob), name)
		if !errors.Is(err, os.ErrExist) {
			return name, err
		}
	}
}

// newStagingFile creates a new "in-" file in dir: after a crash, recovery
// drops it (the writer's own staged bytes are what it keeps).
func newStagingFile(dir string) (*os.File, error) {
	for {
		f, err := os.OpenFile(stagingName(dir), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
}

// heldIn is, in a transaction, the instance of cpv carrying the build key
// names: a package signed on arrival by two writers at once is one
// instance, as the same bytes are.
func (tx *Tx) heldIn(s *Store, cpv, key string) (*Instance, error) {
	insts, err := tx.InstancesByCPV(cpv)
	if err != nil {
		return nil, err
	}
	return s.carrying(insts, key), nil
}

// SignatureCounts counts the packages by what a client with
// verify-signature (Portage's default since 3.0.78) makes of them: signed
// gpkg, unsigned gpkg (refused) and xpak (cannot be signed; skipped).
func (db *DB) SignatureCounts(ctx context.Context) (signed, unsigned, xpak int64, err error) {
	insts, err := db.Instances(ctx)
	for i := range insts {
		in := &insts[i]
		switch {
		case in.Placeholder:
		case in.Format != "gpkg":
			xpak++
		case in.Signed:
			signed++
		default:
			unsigned++
		}
	}
	return signed, unsigned, xpak, err
}

// UnsignedNote says what clients make of the unsigned packages among
// total (unsigned gpkg, xpak); "" when there are none.
func UnsignedNote(unsigned, xpak, total int64) string {
	if unsigned+xpak == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d packages are not signed (%d gpkg, %d xpak, which cannot be signed): a client with verify-signature "+
		"(Portage's default since 3.0.78) refuses unsigned gpkg and skips xpak", unsigned+xpak, total, unsigned, xpak)
}
