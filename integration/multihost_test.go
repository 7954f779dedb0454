package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/integration/binhost"
	"pkgdirfs/internal/pgtest"
)

// hosts mounts n daemons on one PostgreSQL catalog and one blob directory,
// each with a state directory of its own, as n hosts would.
func hosts(t *testing.T, n int, opts ...string) (url, blobs string, mis []*mountInfo) {
	url, blobs, mis, _ = hostStates(t, n, opts...)
	return url, blobs, mis
}

// hostStates is hosts, with each host's state directory.
func hostStates(t *testing.T, n int, opts ...string) (url, blobs string, mis []*mountInfo, states []string) {
	t.Helper()
	url = pgtest.Shared(t).NewDB(t)
	blobs = filepath.Join(t.TempDir(), "blobs")
	for range n {
		st := t.TempDir()
		states = append(states, st)
		mis = append(mis, mountFSInfo(t, st, append([]string{"--catalog", url, "--blobs", blobs}, opts...)...))
	}
	return url, blobs, mis, states
}

// TestMultiHostVisible: three mounts and a read-only front-end on one
// PostgreSQL catalog. Packages copied into one are listed by the others
// within a second, and all four serve byte-identical Packages and
// Packages.gz with equal mtimes.
func TestMultiHostVisible(t *testing.T) {
	t.Parallel()
	url, blobs, mis := hosts(t, 3)
	// And a front-end: read-only, serving the same index. It is the first
	// to serve the new generation below: what it serves, the others must.
	fe := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs, "--read-only")
	mis = append([]*mountInfo{mis[0], fe}, mis[1:]...)
	flat := extractFixture(t, "xpak-bzip2-flat")
	names := []string{"app-misc/hello-2.10.tbz2", "app-text/tree-2.1.1.tbz2"}
	for _, n := range names {
		os.MkdirAll(filepath.Dir(filepath.Join(mis[0].Dir, n)), 0o755)
		if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, n), filepath.Join(mis[0].Dir, n)); r.Code != 0 {
			t.Fatal(r)
		}
	}
	committed := time.Now()
	want := sha1Paths(t, flat, names)
	for i, mi := range mis[1:] {
		var seen time.Duration
		ok := pollFor(10*time.Second, func() bool {
			// A walk's view (the kernel's cached listing), then the index.
			if _, err := os.Lstat(filepath.Join(mi.Dir, "app-text", "tree-2.1.1.tbz2")); err != nil {
				return false
			}
			idx, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
			if err != nil || !bytes.Contains(idx, []byte("CPV: app-text/tree-2.1.1\n")) {
				return false
			}
			seen = time.Since(committed)
			return true
		})
		if !ok {
			t.Fatalf("host %d: the packages copied into host 0 are not in its Packages after 10 s", i+1)
		}
		t.Logf("host %d lists host 0's change %v after its commit", i+1, seen.Round(time.Millisecond))
		if seen > time.Second {
			t.Errorf("host %d saw host 0's change after %v; want within a second (the doorbell)", i+1, seen)
		}
		if got := sha1Paths(t, mi.Dir, names); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("host %d serves other bytes: %v, want %v", i+1, got, want)
		}
	}
	for _, f := range []string{"Packages", "Packages.gz"} {
		var first []byte
		var firstMtime time.Time
		for i, mi := range mis {
			b, err := os.ReadFile(filepath.Join(mi.Dir, f))
			st, serr := os.Stat(filepath.Join(mi.Dir, f))
			if err != nil || serr != nil {
				t.Fatalf("host %d: %s: %v %v", i, f, err, serr)
			}
			if i == 0 {
				first, firstMtime = b, st.ModTime()
				continue
			}
			if !bytes.Equal(b, first) {
				t.Errorf("host %d serves another %s than host 0:\n%s", i, f, clip(b, 400))
			}
			if !st.ModTime().Equal(firstMtime) {
				t.Errorf("host %d: %s mtime %v, host 0's %v", i, f, st.ModTime(), firstMtime)
			}
		}
	}
}

// TestMultiHostAllocation: two hosts build the same CPV at once, each
// taking build ids the way Portage does (O_EXCL create of the next
// multi-instance name, the next on EEXIST): every build is kept, under
// distinct ids, and both hosts list all of them.
func TestMultiHostAllocation(t *testing.T) {
	t.Parallel()
	_, _, mis := hosts(t, 2)
	const each = 8
	dir := "app-misc/race"
	var mu sync.Mutex
	ids := map[int]int{} // build id -> host
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for h, mi := range mis {
		os.MkdirAll(filepath.Join(mi.Dir, dir), 0o755)
		wg.Go(func() {
			for b := range each {
				pkg := pubXpak("app-misc", "race-1.0", 1700000000+int64(b), fmt.Sprintf("host %d build %d", h, b))
				for id := 1; ; id++ {
					p := filepath.Join(mi.Dir, dir, fmt.Sprintf("race-1.0-%d.xpak", id))
					f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
					if errors.Is(err, os.ErrExist) {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("host %d: create %s: %w", h, p, err)
						return
					}
					_, werr := f.Write(pkg)
					if cerr := f.Close(); werr != nil || cerr != nil {
						errs <- fmt.Errorf("host %d: write %s: %v %v", h, p, werr, cerr)
						return
					}
					mu.Lock()
					if other, dup := ids[id]; dup {
						errs <- fmt.Errorf("build id %d given to host %d and host %d", id, other, h)
					}
					ids[id] = h
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, mi := range mis {
		ok := pollFor(10*time.Second, func() bool {
			idx, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
			return err == nil && bytes.Count(idx, []byte("CPV: app-misc/race-1.0\n")) == 2*each
		})
		if !ok {
			idx, _ := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
			t.Errorf("host %d lists %d builds of app-misc/race-1.0, want %d", i, bytes.Count(idx, []byte("CPV: app-misc/race-1.0\n")), 2*each)
		}
	}
	if len(ids) != 2*each {
		t.Errorf("%d distinct build ids for %d builds", len(ids), 2*each)
	}
}

// TestMultiHostServerDown: with PostgreSQL stopped, every mount keeps
// serving what it has (names, bytes, the index); a write fails within
// seconds with an error cp reports; once the server is back, writes work
// again without a remount.
func TestMultiHostServerDown(t *testing.T) {
	// Not parallel: it stops the server the other tests share.
	srv := pgtest.Shared(t)
	_, _, mis := hosts(t, 2)
	for _, mi := range mis {
		mi.AllowErrors = append(mi.AllowErrors, "catalog server unavailable")
	}
	flat := extractFixture(t, "xpak-bzip2-flat")
	hello := "app-misc/hello-2.10.tbz2"
	os.MkdirAll(filepath.Join(mis[0].Dir, "app-misc"), 0o755)
	os.MkdirAll(filepath.Join(mis[0].Dir, "app-text"), 0o755)
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, hello), filepath.Join(mis[0].Dir, hello)); r.Code != 0 {
		t.Fatal(r)
	}
	if !pollFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(mis[1].Dir, hello)); return err == nil }) {
		t.Fatal("host 1 never listed the package")
	}
	before, _ := os.ReadFile(filepath.Join(mis[1].Dir, "Packages"))

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	for i, mi := range mis {
		if got := sha1Paths(t, mi.Dir, []string{hello}); got[hello] == "" {
			t.Errorf("host %d: reading a package with the server down failed", i)
		}
		if idx, err := os.ReadFile(filepath.Join(mi.Dir, "Packages")); err != nil || !bytes.Contains(idx, []byte("CPV: app-misc/hello-2.10\n")) {
			t.Errorf("host %d: Packages with the server down: %v", i, err)
		}
	}
	if idx, _ := os.ReadFile(filepath.Join(mis[1].Dir, "Packages")); !bytes.Equal(idx, before) {
		t.Errorf("host 1's index changed while the server was down")
	}
	tree := "app-text/tree-2.1.1.tbz2"
	start := time.Now()
	r := run(t, "", toolTimeout, "cp", filepath.Join(flat, tree), filepath.Join(mis[0].Dir, tree))
	took := time.Since(start)
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "tree-2.1.1.tbz2") {
		t.Errorf("cp with the server down: want a failure cp reports: %s", r)
	}
	if took > 30*time.Second {
		t.Errorf("cp with the server down took %v; want a failure within seconds", took)
	}
	t.Logf("cp with the server down failed after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(string(r.Stderr)))
	// The kernel learns of the name's end once the file's last handle is
	// released, which follows close() without the caller waiting.
	if !pollFor(pollTimeout, func() bool {
		_, err := os.Lstat(filepath.Join(mis[0].Dir, tree))
		return errors.Is(err, os.ErrNotExist)
	}) {
		t.Errorf("a failed write left %s visible", tree)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, tree), filepath.Join(mis[0].Dir, tree)); r.Code != 0 {
		t.Fatalf("cp once the server is back: %s", r)
	}
	if !pollFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(mis[1].Dir, tree)); return err == nil }) {
		t.Error("host 1 never listed the package written after the server came back")
	}
}

// TestMultiHostKill9: kill -9 of one host while it writes. Every package
// whose cp returned 0 there is listed, with its bytes, by the other host,
// which serves on throughout; the killed host, mounted again, shows them
// too.
func TestMultiHostKill9(t *testing.T) {
	t.Parallel()
	url, blobs, mis, states := hostStates(t, 2)
	a, b := mis[0], mis[1]
	a.AllowErrors = append(a.AllowErrors, "the daemon died without unmounting")
	os.MkdirAll(filepath.Join(a.Dir, "app-misc"), 0o755)
	src := t.TempDir()
	var acked []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("app-misc/k%d-1.0.tbz2", i)
			p := filepath.Join(src, fmt.Sprintf("k%d.tbz2", i))
			os.WriteFile(p, pubXpak("app-misc", fmt.Sprintf("k%d-1.0", i), 1700000000+int64(i), name), 0o644)
			if err := exec.Command("cp", p, filepath.Join(a.Dir, name)).Run(); err != nil {
				return // the host died under it
			}
			acked = append(acked, name)
		}
	}()
	time.Sleep(700 * time.Millisecond) // a few commits, then the kill mid-write
	for _, pid := range a.PIDs {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	close(stop)
	<-done
	if len(acked) == 0 {
		t.Fatal("no package was acknowledged before the kill")
	}
	t.Logf("%d packages acknowledged by the killed host", len(acked))
	check := func(who string, mnt string) {
		t.Helper()
		ok := pollFor(5*time.Second, func() bool {
			for _, n := range acked {
				if _, err := os.Lstat(filepath.Join(mnt, n)); err != nil {
					return false
				}
			}
			return true
		})
		if !ok {
			var missing []string
			for _, n := range acked {
				if _, err := os.Lstat(filepath.Join(mnt, n)); err != nil {
					missing = append(missing, n)
				}
			}
			t.Errorf("%s: %d of %d acknowledged packages missing: %v", who, len(missing), len(acked), missing)
			return
		}
		idx, err := os.ReadFile(filepath.Join(mnt, "Packages"))
		if err != nil {
			t.Fatalf("%s: Packages: %v", who, err)
		}
		for _, n := range acked {
			cpv := strings.TrimSuffix(n, ".tbz2")
			if !bytes.Contains(idx, []byte("CPV: "+cpv+"\n")) {
				t.Errorf("%s: Packages lacks the acknowledged %s", who, cpv)
			}
		}
	}
	check("the other host", b.Dir)

	// Mounted again (the dead mount is recovered), the killed host shows
	// them too.
	if !pollFor(mountTimeout, func() bool {
		bb, _ := os.ReadFile(a.Log)
		return bytes.Contains(bb, []byte("the daemon died without unmounting"))
	}) {
		t.Fatalf("the watchdog did not abort the dead mount's connection")
	}
	if r := run(t, "", mountTimeout, binPath, "mount", "--state", states[0], "--log", a.Log,
		"--catalog", url, "--blobs", blobs, a.Dir); r.Code != 0 {
		t.Fatalf("mounting the killed host again: %s", r)
	}
	a.PIDs = daemonPIDs(a.Dir)
	check("the killed host, mounted again", a.Dir)
}

// TestMultiHostDeadSession: a host killed with an upload in flight is found
// dead by another host when its session expires (the catalog's TTL, 2 s
// here), never by a file's age: the other host collects its staging (the
// half-written upload lands in that host's quarantine, visible in its
// mount) and its session, and verify finds nothing left over.
func TestMultiHostDeadSession(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.NewDB(t)
	blobs := filepath.Join(t.TempDir(), "blobs")
	// The schema first, and a short TTL every host that joins takes up.
	if r := run(t, "", mountTimeout, binPath, "import", "--state", t.TempDir(), "--catalog", url, "--blobs", blobs, t.TempDir()); r.Code != 0 {
		t.Fatal(r)
	}
	srv.Exec(t, url, `INSERT INTO meta (key, value) VALUES ('session_ttl_s', 2)`)
	a := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs)
	bState := t.TempDir()
	b := mountFSInfo(t, bState, "--catalog", url, "--blobs", blobs)
	a.AllowErrors = append(a.AllowErrors, "the daemon died without unmounting")

	os.MkdirAll(filepath.Join(a.Dir, "app-misc"), 0o755)
	pkg := pubXpak("app-misc", "half-1.0", 1700000000, "app-misc/half-1.0.tbz2")
	f, err := os.Create(filepath.Join(a.Dir, "app-misc", "half-1.0.tbz2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pkg[:len(pkg)/2]); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(blobs, ".staging")
	stagedA := func() int {
		n := 0
		filepath.WalkDir(hostDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "w-") {
				n++
			}
			return nil
		})
		return n
	}
	if stagedA() != 1 {
		t.Fatalf("%d uploads staged below %s, want the one in flight", stagedA(), hostDir)
	}
	for _, pid := range a.PIDs {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	killed := time.Now()
	f.Close() // the mount is gone: an error, which the writer sees

	kept := filepath.Join(b.Dir, ".pkgdirfs", "recovered", "app-misc", "half-1.0.tbz2")
	if !pollFor(15*time.Second, func() bool { _, err := os.Stat(kept); return err == nil }) {
		t.Fatalf("the killed host's upload did not reach the other host's quarantine within 15 s; staging: %d files", stagedA())
	}
	t.Logf("collected %.1f s after the kill (TTL 2 s)", time.Since(killed).Seconds())
	if got, err := os.ReadFile(kept); err != nil || !bytes.Equal(got, pkg[:len(pkg)/2]) {
		t.Errorf("the quarantined upload holds %d bytes (%v), want the %d written", len(got), err, len(pkg)/2)
	}
	if n := stagedA(); n != 0 {
		t.Errorf("%d staging files left after the collection", n)
	}
	if !pollFor(5*time.Second, func() bool {
		bb, _ := os.ReadFile(b.Log)
		return bytes.Contains(bb, []byte("collected a dead session"))
	}) {
		t.Errorf("the collecting host's log does not say it collected a dead session")
	}
	if r := run(t, "", toolTimeout, binPath, "verify", "--state", bState, "--catalog", url, "--blobs", blobs); r.Code != 0 {
		t.Errorf("verify after the collection: %s", r)
	}
	host, _ := os.Hostname()
	if r := run(t, "", toolTimeout, binPath, "status", "--state", bState, "--catalog", url, "--blobs", blobs); r.Code != 0 ||
		!strings.Contains(string(r.Stdout), "writers:      1 live on 1 hosts: "+host+" (1)\n") {
		t.Errorf("status after the collection (want one writer, the live host):\n%s", r)
	}
}

// TestMultiHostOutageLongerThanTTL: when the catalog's server is down for
// longer than the session TTL, every session looks expired once it is back,
// until its host beats again; no host may collect another meanwhile. An
// upload held open across the outage still commits after it.
func TestMultiHostOutageLongerThanTTL(t *testing.T) {
	// Not parallel: it stops the server the other tests share.
	srv := pgtest.Shared(t)
	url := srv.NewDB(t)
	blobs := filepath.Join(t.TempDir(), "blobs")
	if r := run(t, "", mountTimeout, binPath, "import", "--state", t.TempDir(), "--catalog", url, "--blobs", blobs, t.TempDir()); r.Code != 0 {
		t.Fatal(r)
	}
	srv.Exec(t, url, `INSERT INTO meta (key, value) VALUES ('session_ttl_s', 1)`)
	a := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs)
	b := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs)
	for _, mi := range []*mountInfo{a, b} {
		mi.AllowErrors = append(mi.AllowErrors, "catalog server unavailable")
	}
	os.MkdirAll(filepath.Join(a.Dir, "app-misc"), 0o755)
	name := "app-misc/across-1.0.tbz2"
	pkg := pubXpak("app-misc", "across-1.0", 1700000000, name)
	f, err := os.Create(filepath.Join(a.Dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(pkg[:len(pkg)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // both hosts steady for a TTL
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // three TTLs without a heartbeat
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a TTL and more of heartbeats on both
	if _, err := f.Write(pkg[len(pkg)/2:]); err != nil {
		t.Fatalf("writing the rest after the outage: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("the upload held open across the outage failed at close: %v", err)
	}
	if !pollFor(5*time.Second, func() bool { _, err := os.Stat(filepath.Join(b.Dir, name)); return err == nil }) {
		t.Errorf("the other host does not list %s", name)
	}
	for _, mi := range []*mountInfo{a, b} {
		if bb, _ := os.ReadFile(mi.Log); bytes.Contains(bb, []byte("collected a dead session")) || bytes.Contains(bb, []byte("session expired")) {
			t.Errorf("a host was taken for dead across the outage:\n%s", bb)
		}
	}
}

// TestMultiHostNginx: nginx in front of each of two writing hosts and a
// read-only front-end of one PostgreSQL catalog. Packages copied into one
// host are fetched through every nginx by a client that behaves as
// Portage's (Packages.gz, then each package, its SIZE, MD5 and SHA1
// checked); every nginx answers the index with the same Last-Modified,
// ETag and bytes, as a load balancer in front of them needs.
func TestMultiHostNginx(t *testing.T) {
	t.Parallel()
	url, blobs, mis, _ := hostStates(t, 2, "--allow-other")
	fe := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs, "--read-only", "--allow-other")
	mis = append(mis, fe)
	// Flat names: each host gives every build an id of its own, from the
	// one catalog, though the two PKGDIRs hold the same CPVs.
	flat := extractFixture(t, "xpak-bzip2-flat")
	gpkg := extractFixture(t, "gpkg-xz-flat")
	if r := run(t, "", toolTimeout, "cp", "-a", flat+"/.", mis[0].Dir); r.Code != 0 {
		t.Fatal(r)
	}
	if r := run(t, "", toolTimeout, "cp", "-a", gpkg+"/.", mis[1].Dir); r.Code != 0 {
		t.Fatal(r)
	}
	want := 0
	for _, dir := range []string{flat, gpkg} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && (strings.HasSuffix(p, ".tbz2") || strings.HasSuffix(p, ".gpkg.tar")) {
				want++
			}
			return nil
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var indexes [][]byte
	var heads []map[string]string
	for i, mi := range mis {
		ng := startNginx(t, mi.Dir)
		c := binhost.NewClient(true)
		var ix *binhost.Index
		if !pollFor(10*time.Second, func() bool {
			var err error
			ix, _, err = c.Fetch(ctx, ng.URL+"/", &binhost.Cache{})
			return err == nil && len(ix.Packages) == want
		}) {
			n := -1
			if ix != nil {
				n = len(ix.Packages)
			}
			t.Fatalf("mount %d: nginx serves an index of %d packages, want %d\n%s", i, n, want, exchangesString(c.Exchanges()))
		}
		got, err := c.Sync(ctx, &binhost.Cache{}, ix.Packages)
		if err != nil || len(got) != want {
			t.Errorf("mount %d: the client downloaded and verified %d of %d packages through nginx: %v", i, len(got), want, err)
		}
		indexes = append(indexes, ix.Raw)
		_, h := curlHead(t, ng.URL+"/Packages.gz")
		heads = append(heads, h)
	}
	for i := 1; i < len(mis); i++ {
		if !bytes.Equal(indexes[i], indexes[0]) {
			t.Errorf("mount %d serves another index than mount 0: %s", i, bhFirstDiff(string(indexes[0]), string(indexes[i])))
		}
		for _, k := range []string{"last-modified", "etag", "content-length"} {
			if heads[i][k] != heads[0][k] || heads[0][k] == "" {
				t.Errorf("Packages.gz through nginx: %s %q on mount %d, %q on mount 0", k, heads[i][k], i, heads[0][k])
			}
		}
	}
}
