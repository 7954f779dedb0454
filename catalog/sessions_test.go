package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/blobs"
	"pkgdirfs/internal/pgtest"
	"pkgdirfs/internal/pkgtest"
)

func sessionIDs(t *testing.T, s *Store) []string {
	t.Helper()
	var ids []string
	err := s.DB.View(context.Background(), func(v *View) error {
		list, _, err := v.Snapshot.(Sessions).Sessions()
		for _, x := range list {
			ids = append(ids, x.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// TestSessionsCollectTheDead: on a shared catalog (a real PostgreSQL), a
// host that opens the store collects what dead sessions left: staging files
// go to its quarantine (package writes) or away (import copies), blobs a
// dead session placed without a row go, unless a row names them or other
// bytes took their name; live sessions, and directories an older pkgdirfs
// holds locked, are not touched. A host whose session was collected while
// it lived goes on as a new session.
func TestSessionsCollectTheDead(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDB(t)
	shared := t.TempDir()
	loc := func() Location { return Location{State: t.TempDir(), Catalog: u, Blobs: shared} }
	// The schema, then a TTL of 3 s for the sessions to come: short, but
	// above a heartbeat late by a loaded machine's stall (with 1 s, a host
	// of the test itself could be found dead under -race on 2 cores).
	db, err := Open(loc())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	srv.Exec(t, u, `INSERT INTO meta (key, value) VALUES ('session_ttl_s', 3)`)
	logA := &pkgtest.SyncBuffer{}
	a, err := OpenStoreAt(loc(), slog.New(slog.NewTextHandler(logA, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()

	// A package in the catalog: its blob is named by a row.
	pkgPath := filepath.Join(t.TempDir(), "foo-1.tbz2")
	if err := os.WriteFile(pkgPath, pkgtest.Xpak(t, "app-misc", "foo-1", 1700000000), 0o644); err != nil {
		t.Fatal(err)
	}
	var res ImportResult
	if err := a.ImportOne(ctx, ImportFile{Path: pkgPath, Rel: "app-misc/foo-1.tbz2"}, &res); err != nil || res.Imported != 1 {
		t.Fatalf("import: %v %+v", err, res)
	}
	var insts []Instance
	err = a.DB.View(ctx, func(v *View) error {
		var err error
		insts, err = v.InstancesByCPV("app-misc/foo-1")
		return err
	})
	if err != nil || len(insts) != 1 {
		t.Fatalf("instances: %v %v", insts, err)
	}
	named := insts[0].Blob

	host := func(id string) string { return filepath.Join(shared, ".staging", filepath.FromSlash(id)) }
	mkfile := func(p, content string) uint64 {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	marker := func(dir, blob string, ino uint64) {
		mkfile(filepath.Join(dir, placingPrefix+filepath.Base(blob)), blob+"\n"+strconv.FormatUint(ino, 10)+"\n")
	}
	blobOf := func(content string) string {
		sum := sha256.Sum256([]byte(content))
		return blobs.Name(hex.EncodeToString(sum[:]))
	}

	// deadhost/1-a: a row whose heartbeat is long past.
	dead := host("deadhost/1-a")
	mkfile(filepath.Join(dead, "w-1"), "half a package")
	if err := unix.Setxattr(filepath.Join(dead, "w-1"), NameXattr, []byte("app-misc/bar/bar-1-1.xpak"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	mkfile(filepath.Join(dead, "in-1"), "an import's copy")
	orphan := blobOf("orphan bytes")
	marker(dead, orphan, mkfile(filepath.Join(shared, orphan), "orphan bytes"))
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(shared, named), &st); err != nil {
		t.Fatal(err)
	}
	marker(dead, named, st.Ino)
	replaced := blobOf("replaced bytes")
	marker(dead, replaced, mkfile(filepath.Join(shared, replaced), "replaced bytes")+1_000_000)
	srv.Exec(t, u, `INSERT INTO sessions (id, host, pid, started_ns, heartbeat_ns) VALUES ('deadhost/1-a', 'deadhost', 1, 0, 0)`)
	// deadhost/2-b: no row and no lock (a session that ended uncleanly).
	mkfile(filepath.Join(host("deadhost/2-b"), "w-2"), "bytes of unknown name")
	// deadhost/3-c: an older pkgdirfs's writer, holding its lock.
	mkfile(filepath.Join(host("deadhost/3-c"), "w-3"), "in flight")
	lk, err := os.OpenFile(filepath.Join(host("deadhost/3-c"), blobs.OwnerLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if err := unix.Flock(int(lk.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// livehost/4-d: a heartbeat that stays fresh for the test.
	mkfile(filepath.Join(host("livehost/4-d"), "w-4"), "in flight")
	srv.Exec(t, u, `INSERT INTO sessions (id, host, pid, started_ns, heartbeat_ns)
		VALUES ('livehost/4-d', 'livehost', 4, 0, (extract(epoch FROM clock_timestamp()) * 1e9)::bigint + 3600e9)`)

	bLoc := loc()
	b, err := OpenStoreAt(bLoc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	// Either host collects, once it has beaten for a whole TTL.
	if !pkgtest.PollFor(20*time.Second, func() bool { return !exists(dead) && !exists(host("deadhost/2-b")) }) {
		t.Fatal("the dead sessions were not collected within 20 s (TTL 3 s)")
	}
	var quarantined []string // by both hosts
	for _, st := range []*Store{a, b} {
		filepath.WalkDir(filepath.Join(st.ScratchDir(), RecoveredDir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				quarantined = append(quarantined, p)
			}
			return nil
		})
	}
	if len(quarantined) != 2 {
		t.Errorf("quarantined %v, want the two package writes of the dead", quarantined)
	}
	bar := filepath.Join(b.ScratchDir(), RecoveredDir, "app-misc/bar/bar-1-1.xpak")
	if !exists(bar) {
		bar = filepath.Join(a.ScratchDir(), RecoveredDir, "app-misc/bar/bar-1-1.xpak")
	}
	if got, err := os.ReadFile(bar); err != nil || string(got) != "half a package" {
		t.Errorf("the dead session's package write in the collector's quarantine: %q, %v", got, err)
	}
	for _, p := range []string{dead, host("deadhost/2-b"), filepath.Join(shared, orphan)} {
		if exists(p) {
			t.Errorf("%s left after the collection", p)
		}
	}
	for _, p := range []string{filepath.Join(shared, named), filepath.Join(shared, replaced),
		filepath.Join(host("deadhost/3-c"), "w-3"), filepath.Join(host("livehost/4-d"), "w-4")} {
		if !exists(p) {
			t.Errorf("%s was collected, want it kept", p)
		}
	}
	aID, bID := a.session.id(), b.session.id()
	want := []string{aID, bID, "livehost/4-d"}
	sort.Strings(want)
	if got := sessionIDs(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sessions after the collection: %v, want %v", got, want)
	}

	// A stalls past the TTL and is collected while it lives: its staging
	// goes; its next heartbeat starts a new session, and says so.
	if err := os.WriteFile(filepath.Join(a.StagingDir(), "w-5"), []byte("stalled"), 0o644); err != nil {
		t.Fatal(err)
	}
	aDir := a.StagingDir()
	a.session.stopBeating()
	srv.Exec(t, u, fmt.Sprintf(`UPDATE sessions SET heartbeat_ns = 0 WHERE id = '%s'`, aID))
	if !pkgtest.PollFor(20*time.Second, func() bool { return !exists(aDir) }) {
		t.Errorf("the stalled session's staging %s is still there", aDir)
	}
	a.session.beat(ctx)
	if a.session.id() == aID {
		t.Fatal("a collected session went on under its old id")
	}
	if !strings.Contains(logA.String(), "level=ERROR") || !strings.Contains(logA.String(), "session expired") {
		t.Errorf("the stalled host's log does not say its session expired:\n%s", logA)
	}
	if a.StagingDir() == aDir || !strings.Contains(a.StagingDir(), filepath.Base(a.session.id())) {
		t.Errorf("staging %s after the new session %s", a.StagingDir(), a.session.id())
	}
	want = []string{a.session.id(), bID, "livehost/4-d"}
	sort.Strings(want)
	if got := sessionIDs(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sessions after the stall: %v, want %v", got, want)
	}
	// A clean exit ends the session at once.
	a.Close()
	want = []string{"livehost/4-d", bID}
	sort.Strings(want)
	if got := sessionIDs(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sessions after a clean exit: %v", got)
	}
}
