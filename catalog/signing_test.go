package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/sign"
)

// signingStore is a store that signs with a throw-away key, and keyrings
// as a client's: one trusting that key, one trusting another.
type signingStore struct {
	*Store
	fpr              string
	trusting, others *sign.Keyring
	signerHome       *pkgtest.GPGHome
}

func newSigningStore(t *testing.T) *signingStore {
	t.Helper()
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := pkgtest.NewGPGHome(t)
	fpr := h.GenKey("Binhost <binhost@example.org>")
	other := pkgtest.NewGPGHome(t)
	ofpr := other.GenKey("Other <other@example.org>")
	open := func(pub []byte) *sign.Keyring {
		k, err := sign.OpenKeyring(pkgtest.NewGPGHome(t).Trusting(pub).Dir)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ss := &signingStore{Store: s, fpr: fpr, trusting: open(h.Export(fpr)), others: open(other.Export(ofpr)), signerHome: h}
	s.Signing.Signer = &sign.Signer{Key: fpr, Home: h.Dir}
	return ss
}

func (s *signingStore) blob(t *testing.T, in *Instance) []byte {
	t.Helper()
	b, err := os.ReadFile(s.blobs.Path(in.Blob))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *signingStore) count(t *testing.T) int {
	t.Helper()
	insts, err := s.DB.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(insts)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestIngestSignsOnArrival: an unsigned gpkg becomes an instance whose
// bytes are the signed package (digests, size, blob), which a client
// trusting the key accepts; the writer's unsigned bytes are gone.
func TestIngestSignsOnArrival(t *testing.T) {
	s := newSigningStore(t)
	unsigned := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, bytes.Repeat([]byte("data "), 1000))
	staged, err := s.Stage(bytes.NewReader(unsigned))
	if err != nil {
		t.Fatal(err)
	}
	in, existed, err := s.Ingest(context.Background(), &Candidate{Staged: staged, Name: "app-misc/foo/foo-1.0-1.gpkg.tar", Mode: 0o644})
	if err != nil || existed {
		t.Fatalf("Ingest: %v (existed %v)", err, existed)
	}
	if _, err := os.Stat(staged.File); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the writer's unsigned bytes are still staged: %v", err)
	}
	b := s.blob(t, in)
	if !in.Signed || in.Size != int64(len(b)) || in.SHA256 != sha256Hex(b) || in.SHA256 == sha256Hex(unsigned) {
		t.Errorf("instance: signed %v, size %d (blob %d), sha256 %s (blob %s, unsigned %s)", in.Signed, in.Size, len(b), in.SHA256, sha256Hex(b), sha256Hex(unsigned))
	}
	if err := s.trusting.VerifyGpkg(context.Background(), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Errorf("a client trusting the key refuses the instance: %v", err)
	}
	if err := s.others.VerifyGpkg(context.Background(), bytes.NewReader(b), int64(len(b))); err == nil {
		t.Errorf("a client trusting another key accepts the instance")
	}
	// A signed package keeps its bytes: never signed again.
	in2, existed, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", b, 0)
	if err != nil || !existed || in2.ID != in.ID {
		t.Errorf("the signed bytes again: %+v existed %v %v; want instance %d", in2, existed, err, in.ID)
	}
	other := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000001, []byte("another build"))
	var buf bytes.Buffer
	if _, err := (&sign.Signer{Key: s.fpr, Home: s.signerHome.Dir}).SignGpkg(context.Background(), &buf, bytes.NewReader(other), int64(len(other))); err != nil {
		t.Fatal(err)
	}
	in3, _, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", buf.Bytes(), 0)
	if err != nil || in3.SHA256 != sha256Hex(buf.Bytes()) {
		t.Errorf("a package signed by its builder: %v, sha256 %v; want its own bytes %s", err, in3, sha256Hex(buf.Bytes()))
	}
}

// TestIngestSameBuildAgain: the same unsigned package written again adds
// nothing, though signing it again would give other bytes; once removed,
// it comes back as the same build (its build id and signed bytes).
func TestIngestSameBuildAgain(t *testing.T) {
	s := newSigningStore(t)
	ctx := context.Background()
	if err := s.SetRemovedGrace(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	unsigned := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, []byte("data"))
	in, _, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", unsigned, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, existed, err := ingestBytes(t, s.Store, "app-misc/foo/foo-1.0-5.gpkg.tar", unsigned, 0)
	if err != nil || !existed || again.ID != in.ID {
		t.Fatalf("the same unsigned bytes again: %+v existed %v %v; want instance %d", again, existed, err, in.ID)
	}
	if n := s.count(t); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
	if _, err := s.Remove(ctx, in.ID, "app-misc/foo/foo-1.0-1.gpkg.tar", "rm"); err != nil {
		t.Fatal(err)
	}
	// It comes back as the build the catalog held, not signed anew (which
	// gives the same bytes only when it happens in the same second).
	var logs pkgtest.SyncBuffer
	s.Store.log = slog.New(slog.NewTextHandler(&logs, nil))
	back, existed, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", unsigned, 0)
	if strings.Contains(logs.String(), "signed on arrival") {
		t.Errorf("the removed build's bytes were signed anew instead of taken back:\n%s", logs.String())
	}
	if err != nil || existed || back.BuildID != in.BuildID || back.SHA256 != in.SHA256 {
		t.Fatalf("after its removal: %+v %v; want build %d back with sha256 %s", back, err, in.BuildID, in.SHA256)
	}
	if tombs, _ := s.DB.Tombstones(ctx); len(tombs) != 0 {
		t.Errorf("its tombstone is still there: %v", tombs)
	}
	staged, _ := filepath.Glob(filepath.Join(s.StagingDir(), "*"))
	for _, f := range staged {
		if filepath.Base(f) != ".owner" {
			t.Errorf("left in staging: %s", f)
		}
	}
}

// TestIngestTrustKeyring: a signed upload a client trusting the keyring
// would refuse is refused with the reason, its bytes left to the caller.
func TestIngestTrustKeyring(t *testing.T) {
	s := newSigningStore(t)
	unsigned := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, bytes.Repeat([]byte("data "), 200))
	var buf bytes.Buffer
	if _, err := s.Signing.Signer.SignGpkg(context.Background(), &buf, bytes.NewReader(unsigned), int64(len(unsigned))); err != nil {
		t.Fatal(err)
	}
	signed := buf.Bytes()
	s.Signing.Trust = s.others
	staged, err := s.Stage(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Ingest(context.Background(), &Candidate{Staged: staged, Name: "app-misc/foo-1.0.gpkg.tar"})
	var rerr *RefusedError
	if !errors.As(err, &rerr) || !strings.Contains(rerr.Reason, "signature: Manifest: signed by key") {
		t.Fatalf("signed by a key the keyring lacks: %v; want a refusal naming the key", err)
	}
	if _, err := os.Stat(staged.File); err != nil {
		t.Errorf("the refused bytes are not left to the caller: %v", err)
	}
	s.Signing.Trust = s.trusting
	if _, _, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", signed, 0); err != nil {
		t.Errorf("signed by the trusted key: %v", err)
	}
	res, err := s.Verify(context.Background(), true, nil)
	if err != nil || res.Faults != 0 || res.Signed != 1 {
		t.Errorf("verify --deep trusting the key: %+v %v", res, err)
	}
	s.Signing.Trust = s.others
	res, err = s.Verify(context.Background(), true, nil)
	if err != nil || res.Faults != 1 || !strings.Contains(res.Findings[0].Text, "a client trusting") {
		t.Errorf("verify --deep trusting another key: %+v %v; want one fault", res, err)
	}
}

// TestImportSigns: import with a signing key signs the unsigned gpkgs, keeps
// signed ones and xpaks as they are, and adds nothing when run again, nor
// for a second copy of one build in the same import.
func TestImportSigns(t *testing.T) {
	s := newSigningStore(t)
	src := t.TempDir()
	write := func(rel string, b []byte) {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foo := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, bytes.Repeat([]byte("foo "), 1<<19)) // > the import's 1 MiB buffer
	write("app-misc/foo/foo-1.0-1.gpkg.tar", foo)
	write("app-misc/foo-1.0.gpkg.tar", foo) // the same build under its flat name
	write("app-misc/bar-2.gpkg.tar", pkgtest.Gpkg(t, "app-misc", "bar-2", 1700000000, []byte("bar")))
	var buf bytes.Buffer
	baz := pkgtest.Gpkg(t, "app-misc", "baz-3", 1700000000, []byte("baz"))
	if _, err := s.Signing.Signer.SignGpkg(context.Background(), &buf, bytes.NewReader(baz), int64(len(baz))); err != nil {
		t.Fatal(err)
	}
	write("app-misc/baz-3.gpkg.tar", buf.Bytes())
	xp := pkgtest.Xpak(t, "app-misc", "qux-4", 1700000000)
	write("app-misc/qux-4.tbz2", xp)
	files, err := ScanPKGDIR(src)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		var res ImportResult
		if err := s.Import(context.Background(), files, ImportOptions{Link: true}, &res); err != nil {
			t.Fatal(err)
		}
		want := ImportResult{Imported: 4, Present: 1}
		if round == 1 {
			want = ImportResult{Present: 5}
		}
		if res.Imported != want.Imported || res.Present != want.Present || len(res.Invalid) != 0 {
			t.Fatalf("round %d: imported %d, present %d, invalid %v; want %d, %d, none", round, res.Imported, res.Present, res.Invalid, want.Imported, want.Present)
		}
	}
	insts, err := s.DB.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range insts {
		in := &insts[i]
		b := s.blob(t, in)
		switch in.PF {
		case "foo-1.0", "bar-2":
			if !in.Signed || s.trusting.VerifyGpkg(context.Background(), bytes.NewReader(b), int64(len(b))) != nil {
				t.Errorf("%s: not signed as it was imported", in.CPV)
			}
		case "baz-3":
			if !bytes.Equal(b, buf.Bytes()) {
				t.Errorf("%s: a signed package's bytes changed", in.CPV)
			}
		case "qux-4":
			if !bytes.Equal(b, xp) || in.Signed {
				t.Errorf("%s: an xpak's bytes changed", in.CPV)
			}
		}
	}
	signed, unsigned, xpak, err := s.DB.SignatureCounts(context.Background())
	if err != nil || signed != 3 || unsigned != 0 || xpak != 1 {
		t.Errorf("SignatureCounts: %d signed, %d unsigned, %d xpak, %v; want 3, 0, 1", signed, unsigned, xpak, err)
	}
	checkClean(t, s.Store)
}

// TestIngestSignsBesideUnsigned: a build the catalog holds unsigned (from
// before signing was on) written again is signed and added beside it (no
// write replaces a build); written a third time it is the signed one.
func TestIngestSignsBesideUnsigned(t *testing.T) {
	s := newSigningStore(t)
	signer := s.Signing.Signer
	s.Signing.Signer = nil
	unsigned := pkgtest.Gpkg(t, "app-misc", "foo-1.0", 1700000000, []byte("data"))
	old, _, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", unsigned, 0)
	if err != nil || old.Signed {
		t.Fatalf("unsigned, without a signer: %+v %v", old, err)
	}
	s.Signing.Signer = signer
	in, existed, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", unsigned, 0)
	if err != nil || existed || !in.Signed || in.BuildID == old.BuildID {
		t.Fatalf("the same build with a signer: %+v existed %v %v; want a signed build beside build %d", in, existed, err, old.BuildID)
	}
	again, existed, err := ingestBytes(t, s.Store, "app-misc/foo-1.0.gpkg.tar", unsigned, 0)
	if err != nil || !existed || again.ID != in.ID {
		t.Fatalf("once more: %+v existed %v %v; want the signed instance %d", again, existed, err, in.ID)
	}
	if n := s.count(t); n != 2 {
		t.Errorf("%d instances, want 2", n)
	}
}
