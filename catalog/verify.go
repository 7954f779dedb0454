package catalog

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"pkgdirfs/layout"
)

// Finding is one line of a verify report. Faults make verify fail; notes
// (orphan blobs left by an interrupted commit, refused files) do not.
type Finding struct {
	Fault bool
	Text  string
}

// VerifyResult sums up a verify run.
type VerifyResult struct {
	Instances, Placeholders int
	Faults                  int
	Findings                []Finding
	Refused                 []Refused
	Held                    int // blobs held for removed builds in their grace
	// Signed, Unsigned and Xpak count the packages by signature: signed
	// gpkg, unsigned gpkg, xpak (which cannot be signed).
	Signed, Unsigned, Xpak int
}

// Verify checks the catalog against the blobs: the backend's own checks, every row's
// blob present with its size, and with deep its digests.
func (s *Store) Verify(ctx context.Context, deep bool, progress func(done, total int)) (*VerifyResult, error) {
	res := &VerifyResult{}
	fault := func(format string, a ...any) {
		res.Faults++
		res.Findings = append(res.Findings, Finding{true, fmt.Sprintf(format, a...)})
	}
	note := func(format string, a ...any) {
		res.Findings = append(res.Findings, Finding{false, fmt.Sprintf(format, a...)})
	}
	if err := s.DB.Check(ctx); err != nil {
		fault("catalog: %v", err)
	}
	insts, err := s.DB.Instances(ctx)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(insts))
	for i := range insts {
		in := &insts[i]
		if progress != nil {
			progress(i, len(insts))
		}
		name := fmt.Sprintf("%s build %d (instance %d)", in.CPV, in.BuildID, in.ID)
		if in.Placeholder {
			res.Placeholders++
			continue
		}
		res.Instances++
		switch {
		case in.Format != "gpkg":
			res.Xpak++
		case in.Signed:
			res.Signed++
		default:
			res.Unsigned++
		}
		known[in.Blob] = true
		p := s.blobs.Path(in.Blob)
		st, err := os.Stat(p)
		if err != nil {
			fault("%s: blob %s: %v", name, in.Blob, err)
			continue
		}
		if st.Size() != in.Size {
			fault("%s: blob %s has %d bytes, the catalog says %d", name, in.Blob, st.Size(), in.Size)
			continue
		}
		if !deep {
			continue
		}
		m5, s1, s256, err := digests(p)
		if err != nil {
			fault("%s: reading blob %s: %v", name, in.Blob, err)
			continue
		}
		for _, d := range [][3]string{{"MD5", m5, in.MD5}, {"SHA1", s1, in.SHA1}, {"SHA-256", s256, in.SHA256}} {
			if d[1] != d[2] {
				fault("%s: %s of blob %s is %s, the catalog says %s", name, d[0], in.Blob, d[1], d[2])
			}
		}
		// A package an older pkgdirfs accepted is judged by today's rules
		// too: reported, never removed.
		if why := s.refusedNow(in, p); why != "" {
			fault("%s: would be refused today: %s (it stays; remove it with rm through the mount if clients must not get it)", name, why)
		}
		// Its signatures as a client trusting the keyring judges them.
		if s.Signing.Trust != nil && in.Format == "gpkg" && in.Signed {
			if why, err := s.signatureFault(ctx, p, in.Size); err != nil {
				return nil, err
			} else if why != "" {
				fault("%s: %s (a client trusting %s refuses it)", name, why, s.Signing.Trust.Home)
			}
		}
	}

	if progress != nil {
		progress(len(insts), len(insts))
	}
	// Blobs of removed builds in their removal grace are held, not orphans.
	tombs, err := s.DB.Tombstones(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for i := range tombs {
		if !known[tombs[i].Blob] {
			held[tombs[i].Blob] = true
		}
	}
	res.Held = len(held)
	// Blobs of builds snapshots hold after the live catalog let them go:
	// held too, and a snapshot's missing bytes are a fault.
	snapBlobs, err := read(ctx, s.DB, func(v *View) ([]string, error) { return v.HeldBlobs() })
	if err != nil {
		return nil, err
	}
	nSnap := 0
	for _, b := range snapBlobs {
		if known[b] || held[b] {
			continue
		}
		held[b] = true
		nSnap++
		if _, err := os.Stat(s.blobs.Path(b)); err != nil {
			fault("blob %s of a build a snapshot holds: %v", b, err)
		}
	}
	orphans := 0
	err = s.blobs.Walk(func(name string, _ int64) error {
		if !known[name] && !held[name] {
			orphans++
			note("orphan blob %s (left by an interrupted commit or removal; no instance or removed build names it)", name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Held > 0 {
		note("%d blob(s) held for removed builds in their removal grace (%d removed build(s))", res.Held, len(tombs))
	}
	if nSnap > 0 {
		note("%d blob(s) held only by snapshots (builds removed from the live catalog)", nSnap)
	}
	if orphans > 0 && res.Instances == 0 && !s.OtherWriterLive() {
		// Not an interrupted commit, nor one in progress (a first import
		// places blobs before its first batch commits): every package the
		// state holds is missing from its catalog.
		fault("the catalog lists no package while %d blob(s) lie in %s: it was lost or replaced; "+
			"`pkgdirfs import --rebuild --state %s` rebuilds it from them (unmounted)", orphans, s.BlobDir(), s.Dir)
	}
	// Files live writers are staging (each writer's own directory).
	if staged := s.staging.Files(); len(staged) > 0 {
		note("staging holds %d file(s) being written: %s", len(staged), strings.Join(staged, " "))
	}
	refused, err := s.DB.Refused(ctx)
	if err != nil {
		return nil, err
	}
	// A refusal is listed while its bytes are kept in the quarantine (or
	// when none were: a name refused at create time).
	for _, r := range refused {
		if r.Size == 0 || s.quarantined(RefusedDir, r.Path) {
			res.Refused = append(res.Refused, r)
		}
	}
	recovered := filepath.Join(s.ScratchDir(), RecoveredDir)
	filepath.WalkDir(recovered, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(s.ScratchDir()), p)
			note("kept after a crash: %s (a package write that never committed; copy it back in or remove it)", filepath.ToSlash(rel))
		}
		return nil
	})
	return res, nil
}

func digests(p string) (md5hex, sha1hex, sha256hex string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", "", "", err
	}
	defer f.Close()
	hm, h1, h256 := md5.New(), sha1.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(hm, h1, h256), f); err != nil {
		return "", "", "", err
	}
	return hex.EncodeToString(hm.Sum(nil)), hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h256.Sum(nil)), nil
}

// quarantined tells whether bytes written at name are kept in area (at the
// name, or beside it with a number).
func (s *Store) quarantined(area, name string) bool {
	p := filepath.Join(s.ScratchDir(), area, name)
	if _, err := os.Lstat(p); err == nil {
		return true
	}
	m, _ := filepath.Glob(p + ".[0-9]*")
	return len(m) > 0
}

// Forget drops the refusal records of a path whose bytes are gone or accepted.
func (s *Store) Forget(ctx context.Context, path string) error {
	return s.DB.Tx(ctx, func(tx *Tx) error { return tx.ClearRefused(path) })
}

// refusedNow is why identify would refuse the blob of in at its
// multi-instance path today, "" if it would not (or cannot tell).
func (s *Store) refusedNow(in *Instance, blob string) string {
	name := layout.MultiPath(in.Category, in.PF, in.BuildID, layout.Format(in.Format))
	f, err := os.Open(blob)
	if err != nil || name == "" {
		return ""
	}
	defer f.Close()
	_, err = identifyAt(&Candidate{Staged: &Staged{File: blob, Size: in.Size}, Name: name}, f)
	var rerr *RefusedError
	if errors.As(err, &rerr) {
		return rerr.Reason
	}
	return ""
}

// signatureFault is why the trust keyring refuses the signatures of the
// gpkg blob at p ("" if it accepts them); an error is ours (gpg not run).
func (s *Store) signatureFault(ctx context.Context, p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	err = s.checkSignatures(ctx, p, f, size)
	var rerr *RefusedError
	if errors.As(err, &rerr) {
		return rerr.Reason, nil
	}
	return "", err
}
