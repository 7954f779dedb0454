package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pkgdirfs/integration/binhost"
	"pkgdirfs/layout"
)

// Channels (pkgdirfs channel set|list|delete): every mount serves each
// channel read-only at MNT/.pkgdirfs/channels/NAME as a binhost of its own,
// or one channel as the whole of a `mount --read-only --channel` mount.

const chArea = ".pkgdirfs/channels"

// chCLI runs `pkgdirfs CMD --state STATE ARGS...`.
func chCLI(t *testing.T, state, cmd string, args ...string) cmdResult {
	t.Helper()
	return runCLI(t, append([]string{cmd, "--state", state}, args...)...)
}

// chOK is chCLI that must exit 0.
func chOK(t *testing.T, state, cmd string, args ...string) cmdResult {
	t.Helper()
	r := chCLI(t, state, cmd, args...)
	if r.Code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// chReadIndex reads and parses a Packages file.
func chReadIndex(t *testing.T, path string) (*pkgIndex, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	idx, err := parseIndex(raw)
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, clip(raw, 3000))
	}
	return idx, raw
}

// chTryIndex is chReadIndex for polls: nil when it cannot be read.
func chTryIndex(path string) (*pkgIndex, []byte) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	idx, err := parseIndex(raw)
	if err != nil {
		return nil, nil
	}
	return idx, raw
}

// chBuild names a build as index and catalog both do.
func chBuild(cpv string, buildID int64) string { return fmt.Sprintf("%s build %d", cpv, buildID) }

// chBuilds is the sorted set of builds an index lists.
func chBuilds(idx *pkgIndex) []string {
	out := []string{}
	for _, in := range instances(idx) {
		out = append(out, chBuild(in.CPV, in.BuildID))
	}
	sort.Strings(out)
	return out
}

// chSnapRow is a row of `snapshot show --format json`.
type chSnapRow struct {
	CPV     string `json:"cpv"`
	BuildID int64  `json:"build_id"`
	Size    int64  `json:"size"`
	Path    string `json:"path"`
}

// chSnapshot is what the catalog says snapshot name holds, by build.
func chSnapshot(t *testing.T, state, name string) map[string]chSnapRow {
	t.Helper()
	r := chOK(t, state, "snapshot", "show", name, "--format", "json")
	var rows []chSnapRow
	if err := json.Unmarshal(r.Stdout, &rows); err != nil {
		t.Fatalf("snapshot show %s: %v: %s", name, err, r)
	}
	out := map[string]chSnapRow{}
	for _, row := range rows {
		out[chBuild(row.CPV, row.BuildID)] = row
	}
	return out
}

func chKeys[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// chChannelJSON is a channel as `channel list --format json` prints it.
type chChannelJSON struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
	Live     bool   `json:"live"`
	Query    string `json:"query"`
	TTL      int64  `json:"ttl"`
	URI      string `json:"uri"`
	Version  int64  `json:"version"`
	Floor    int64  `json:"timestamp_floor"`
	Served   int64  `json:"timestamp_served"`
}

// chList is `channel list --format json`: its bytes and the channels by name.
func chList(t *testing.T, state string) ([]byte, map[string]chChannelJSON) {
	t.Helper()
	r := chOK(t, state, "channel", "list", "--format", "json")
	var list []chChannelJSON
	if err := json.Unmarshal(r.Stdout, &list); err != nil {
		t.Fatalf("channel list --format json: %v: %s", err, r)
	}
	out := map[string]chChannelJSON{}
	for _, c := range list {
		out[c.Name] = c
	}
	return r.Stdout, out
}

// chWaitDirs waits (10 s at most) until the mount serves the channels.
func chWaitDirs(t *testing.T, mnt string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(mnt, chArea, n, "Packages")
		if !pollFor(10*time.Second, func() bool { _, err := os.Stat(p); return err == nil }) {
			t.Fatalf("%s does not appear within 10 s of the mount", p)
		}
	}
}

// chCheckFiles checks that every PATH idx lists is a regular file under
// dir with the SIZE, MTIME, SHA1 and MD5 listed (stat, sha1sum, md5sum).
func chCheckFiles(t *testing.T, what, dir string, idx *pkgIndex) {
	t.Helper()
	insts := instances(idx)
	if len(insts) == 0 {
		t.Errorf("%s: the index lists no build", what)
		return
	}
	paths := pathsOf(insts, func(in instance) string { return in.Path })
	st, missing, stderr := statPaths(t, dir, paths)
	if len(missing) > 0 {
		t.Errorf("%s: PATHs listed but not served: %v\n%s", what, missing, stderr)
		return
	}
	sha1s := digestPaths(t, "sha1sum", dir, paths)
	md5s := digestPaths(t, "md5sum", dir, paths)
	for _, in := range insts {
		md5, _ := get(in.Block, "MD5")
		switch s := st[in.Path]; {
		case s.Size != in.Size:
			t.Errorf("%s: %s: stat says %d bytes, SIZE %d", what, in.Path, s.Size, in.Size)
		case s.Mtime != in.Mtime:
			t.Errorf("%s: %s: stat says mtime %d, MTIME %d", what, in.Path, s.Mtime, in.Mtime)
		case sha1s[in.Path] != in.SHA1:
			t.Errorf("%s: %s: sha1sum %s, SHA1 %s", what, in.Path, sha1s[in.Path], in.SHA1)
		case md5 == "" || md5s[in.Path] != md5:
			t.Errorf("%s: %s: md5sum %s, MD5 %q", what, in.Path, md5s[in.Path], md5)
		}
	}
}

// chFind lists dir with find: one line per name, `TYPE PATH [TARGET]`,
// sorted; regular files with their size.
func chFind(t *testing.T, dir string) []string {
	t.Helper()
	out := mustRun(t, dir, "find", ".", "-mindepth", "1", "(", "-type", "f", "-printf", "f %P %s\n", ")", "-o",
		"(", "-type", "l", "-printf", "l %P %l\n", ")", "-o", "(", "-type", "d", "-printf", "d %P\n", ")", "-o", "-printf", "? %P\n")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return lines
}

// chBlockOf is the block of build key in idx (nil if absent).
func chBlockOf(idx *pkgIndex, key string) []string {
	for _, in := range instances(idx) {
		if chBuild(in.CPV, in.BuildID) == key {
			return in.Block
		}
	}
	return nil
}

// chWithSHA1 is the build of idx whose SHA1 is sha (ok false if none).
func chWithSHA1(idx *pkgIndex, sha string) (instance, bool) {
	if idx == nil {
		return instance{}, false
	}
	for _, in := range instances(idx) {
		if in.SHA1 == sha {
			return in, true
		}
	}
	return instance{}, false
}

// TestChannelServesSnapshotAndLive: a mount serves a snapshot channel and
// a live one with a query, TTL and URI at .pkgdirfs/channels/NAME: each
// its own Packages listing exactly its builds (the snapshot's, as the
// catalog says; the query's), the files at the PATHs listed with the
// SIZE, MTIME and digests listed, through ls, find, stat, sha1sum and tar;
// writes into them fail with EROFS and change nothing.
func TestChannelServesSnapshotAndLive(t *testing.T) {
	t.Parallel()
	src, state, _ := importedFixture(t, "xpak-zstd-multi")
	chOK(t, state, "snapshot", "create", "s1")
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s1")
	const uri = "http://example.invalid/apps"
	chOK(t, state, "channel", "set", "apps", "--live", "--query", "'app-misc/*'", "--ttl", "1h", "--uri", uri)
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	chWaitDirs(t, mnt, "prod", "apps")
	prod, apps := filepath.Join(mnt, chArea, "prod"), filepath.Join(mnt, chArea, "apps")

	if out := string(mustRun(t, "", "ls", "-A", filepath.Join(mnt, chArea))); out != "apps\nprod\n" {
		t.Errorf("ls -A %s: %q, want apps and prod", chArea, out)
	}
	mainIdx, mainRaw := wReadIndex(t, mnt)
	prodIdx, prodRaw := chReadIndex(t, filepath.Join(prod, "Packages"))
	appsIdx, appsRaw := chReadIndex(t, filepath.Join(apps, "Packages"))

	for dir, raw := range map[string][]byte{prod: prodRaw, apps: appsRaw} {
		if gz, err := os.ReadFile(filepath.Join(dir, "Packages.gz")); err != nil || !bytes.Equal(gunzipAll(t, gz), raw) {
			t.Errorf("%s/Packages.gz is not Packages gzipped (%v)", dir, err)
		}
	}

	// prod: exactly what the catalog says s1 holds, and while nothing
	// changed, the main index but for its TIMESTAMP.
	s1 := chSnapshot(t, state, "s1")
	if got, want := chBuilds(prodIdx), chKeys(s1); !slices.Equal(got, want) {
		t.Errorf("prod's Packages lists %v\nsnapshot show s1: %v", got, want)
	}
	for _, in := range instances(prodIdx) {
		if row := s1[chBuild(in.CPV, in.BuildID)]; row.Path != in.Path || row.Size != in.Size {
			t.Errorf("prod lists %s at %s, %d bytes; snapshot show s1: %s, %d bytes", in.CPV, in.Path, in.Size, row.Path, row.Size)
		}
	}
	if !bytes.Equal(stripTimestamp(prodRaw), stripTimestamp(mainRaw)) {
		t.Errorf("prod's Packages differs from the main one beyond TIMESTAMP: %s",
			firstDiff(strings.Split(string(mainRaw), "\n"), strings.Split(string(prodRaw), "\n"), ignoreTimestamp))
	}
	if getInt(prodIdx.Header, "TIMESTAMP") == 0 || getInt(appsIdx.Header, "TIMESTAMP") == 0 {
		t.Errorf("a channel's index without TIMESTAMP: prod %q, apps %q", prodIdx.Header, appsIdx.Header)
	}

	// apps: the main index's app-misc builds, block for block, under its
	// own TTL and URI.
	var wantApps []string
	for _, in := range instances(mainIdx) {
		if strings.HasPrefix(in.CPV, "app-misc/") {
			wantApps = append(wantApps, chBuild(in.CPV, in.BuildID))
		}
	}
	sort.Strings(wantApps)
	if got := chBuilds(appsIdx); len(wantApps) == 0 || !slices.Equal(got, wantApps) {
		t.Errorf("apps' Packages lists %v, want the app-misc builds %v", got, wantApps)
	}
	for _, key := range wantApps {
		if d := firstDiff(chBlockOf(mainIdx, key), chBlockOf(appsIdx, key), nil); d != "" {
			t.Errorf("apps' block of %s differs from the main one: %s", key, d)
		}
	}
	if v, _ := get(appsIdx.Header, "TTL"); v != "3600" {
		t.Errorf("apps' header TTL %q, want 3600 (--ttl 1h)", v)
	}
	if v, _ := get(appsIdx.Header, "URI"); v != uri {
		t.Errorf("apps' header URI %q, want %q", v, uri)
	}
	for _, k := range []string{"TTL", "URI"} {
		if v, ok := get(prodIdx.Header, k); ok {
			t.Errorf("prod was set without --ttl and --uri, but its header has %s: %s", k, v)
		}
	}
	if n := getInt(appsIdx.Header, "PACKAGES"); n != int64(len(appsIdx.Blocks)) {
		t.Errorf("apps' header PACKAGES: %d, it lists %d", n, len(appsIdx.Blocks))
	}
	if d := firstDiff(without(mainIdx.Header, "TIMESTAMP", "PACKAGES"), without(appsIdx.Header, "TIMESTAMP", "PACKAGES", "TTL", "URI"), nil); d != "" {
		t.Errorf("apps' header differs from the main one beyond TIMESTAMP, PACKAGES, TTL and URI: %s", d)
	}

	// Every PATH listed, with what the index says of it; find sees the
	// index files and the PATHs as the channel's regular files.
	for name, idx := range map[string]*pkgIndex{"prod": prodIdx, "apps": appsIdx} {
		dir := filepath.Join(mnt, chArea, name)
		chCheckFiles(t, name, dir, idx)
		var files, want []string
		for _, l := range chFind(t, dir) {
			if f := strings.Fields(l); f[0] == "f" {
				files = append(files, f[1])
			}
		}
		want = append(pathsOf(instances(idx), func(in instance) string { return in.Path }), "Packages", "Packages.gz")
		sort.Strings(want)
		if !slices.Equal(files, want) {
			t.Errorf("find %s -type f: %v\nwant Packages, Packages.gz and the PATHs listed: %v", name, files, want)
		}
		// Flat and All/ names: symlinks that resolve to a listed build
		// (find -L shows a dangling one as -type l).
		if out := mustRun(t, dir, "find", "-L", ".", "-type", "l"); len(out) != 0 {
			t.Errorf("%s: dangling symlinks: %s", name, out)
		}
		var links []string
		for _, l := range chFind(t, dir) {
			if f := strings.Fields(l); f[0] == "l" {
				links = append(links, f[1])
			}
		}
		if len(links) == 0 {
			t.Errorf("%s: no flat or All/ name (the mount serves every layout)", name)
		}
		for p, got := range sha1Paths(t, dir, links) {
			if !slices.ContainsFunc(instances(idx), func(in instance) bool { return in.SHA1 == got }) {
				t.Errorf("%s: %s resolves to bytes (SHA1 %s) of no build listed", name, p, got)
			}
		}
	}
	// Directories of the channels and of the main tree are apart (find
	// and tar tell directories by st_ino), and the channel's are read-only.
	out := mustRun(t, mnt, "find", ".", "-type", "d", "-printf", "%i %m %P\n")
	dirIno := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		if other, ok := dirIno[f[0]]; ok {
			t.Errorf("directories %s and %s share st_ino %s", other, f[2], f[0])
		}
		dirIno[f[0]] = f[2]
		if strings.HasPrefix(f[2], chArea+"/") && f[1] != "555" {
			t.Errorf("channel directory %s has mode %s, want 555", f[2], f[1])
		}
	}
	for _, p := range []string{filepath.Join(prod, "Packages"), filepath.Join(apps, "Packages.gz"), filepath.Join(prod, "app-misc/hello/hello-2.10-1.xpak")} {
		if m := strings.TrimSpace(string(mustRun(t, "", "stat", "-c", "%a %F", p))); m != "444 regular file" {
			t.Errorf("stat %s: %q, want a read-only regular file (444)", p, m)
		}
	}

	// tar of a channel: what it lists, byte for byte, with the MTIMEs
	// listed, and its symlinks as symlinks.
	out2 := filepath.Join(t.TempDir(), "prod")
	if err := os.Mkdir(out2, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := shell(t, "", "tar -C "+shQuote(prod)+" -cf - . | tar -C "+shQuote(out2)+" -xf -"); r.Code != 0 || len(r.Stderr) != 0 {
		t.Fatalf("tar of a channel: %s", r)
	}
	if got, want := chFind(t, out2), chFind(t, prod); !slices.Equal(got, want) {
		t.Errorf("tar extracted %v\nthe channel has %v", got, want)
	}
	chCheckFiles(t, "prod extracted by tar", out2, prodIdx)
	for _, row := range s1 {
		if st := statOne(t, filepath.Join(out2, row.Path)); st.Size != row.Size {
			t.Errorf("%s extracted from prod: %d bytes, snapshot show s1 says %d", row.Path, st.Size, row.Size)
		}
	}
	if b, err := os.ReadFile(filepath.Join(out2, "Packages")); err != nil || !bytes.Equal(b, prodRaw) {
		t.Errorf("Packages extracted from prod differs from the one read before (%v)", err)
	}

	// Writes into a channel: EROFS, and nothing changes.
	shown := func() string {
		var b strings.Builder
		for _, d := range []string{prod, apps} {
			fmt.Fprintln(&b, strings.Join(chFind(t, d), "\n"))
		}
		mainNow, _ := wReadIndex(t, mnt)
		fmt.Fprintln(&b, strings.Join(mainNow.lines(), "\n"))
		fmt.Fprintln(&b, strings.Join(chFind(t, filepath.Join(mnt, "app-misc")), "\n"))
		return b.String()
	}
	snap0 := shown()
	pkg := filepath.Join(src, "app-misc/hello/hello-2.10-1.xpak")
	in := func(p string) string { return shQuote(filepath.Join(prod, p)) }
	for _, script := range []string{
		"cp " + shQuote(pkg) + " " + in("app-misc/hello/hello-2.10-9.xpak"),
		"cp " + shQuote(pkg) + " " + in("newfile"),
		"echo x >> " + in("Packages"),
		"rm " + in("app-misc/hello/hello-2.10-1.xpak"),
		"rm " + in("Packages"),
		"rm " + in("app-misc/hello-2.10.tbz2"),
		"rm -r " + shQuote(apps),
		"mkdir " + in("x"),
		"mkdir " + shQuote(filepath.Join(mnt, chArea, "new")),
		"mv " + in("app-misc/hello/hello-2.10-1.xpak") + " " + in("app-misc/hello/hello-2.10-7.xpak"),
		"mv " + shQuote(prod) + " " + shQuote(filepath.Join(mnt, chArea, "prod2")),
		"mv " + shQuote(filepath.Join(mnt, "app-misc/hello/hello-2.10-2.xpak")) + " " + in("app-misc/hello/hello-2.10-8.xpak"),
		"touch " + in("Packages"),
		"touch " + in("app-misc/hello/hello-2.10-1.xpak"),
		"touch " + in("new"),
		"chmod 600 " + in("app-misc/hello/hello-2.10-1.xpak"),
		"ln -s x " + in("y"),
		"ln " + in("Packages") + " " + in("P2"),
		"touch -h " + in("app-misc/hello-2.10.tbz2"),
		"rmdir " + in("All"),
		"rmdir " + shQuote(apps),
		"touch " + shQuote(filepath.Join(mnt, chArea)),
		"ln -s x " + shQuote(filepath.Join(mnt, chArea, "y")),
		"ln " + in("Packages") + " " + shQuote(filepath.Join(mnt, chArea, "P")),
		"cp " + shQuote(pkg) + " " + shQuote(filepath.Join(mnt, chArea, "f")),
	} {
		r := shell(t, "", script)
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
			t.Errorf("a write into a channel must fail with EROFS: %s", r)
		}
	}
	if after := shown(); after != snap0 {
		t.Errorf("writes refused in a channel changed what the mount shows: %s",
			firstDiff(strings.Split(snap0, "\n"), strings.Split(after, "\n"), nil))
	}
}

// TestChannelLiveFollows: a live channel with a query follows the
// catalog: a build it selects, copied into the mount, is in its Packages
// (with a newer TIMESTAMP) and at its PATH as soon as in the main index; a
// build it does not select changes neither its bytes nor its TIMESTAMP;
// the rm of the build it selected takes it out at once, and a binhost
// client (through nginx) that fetched the index listing it sees the rm
// too, however soon after its fetch it came.
func TestChannelLiveFollows(t *testing.T) {
	t.Parallel()
	needNginx(t)
	_, state, _ := importedFixture(t, "xpak-zstd-multi")
	chOK(t, state, "channel", "set", "apps", "--live", "--query", "'app-misc/*'")
	mi := mountFSInfo(t, state, "--allow-other")
	mnt := mi.Dir
	ng := startNginx(t, mnt)
	chWaitDirs(t, mnt, "apps")
	apps := filepath.Join(mnt, chArea, "apps")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, cache, base := binhost.NewClient(true), &binhost.Cache{}, ng.URL+"/channels/apps"
	flat := extractFixture(t, "xpak-bzip2-flat")
	idx0, _ := chReadIndex(t, filepath.Join(apps, "Packages"))
	ts0 := getInt(idx0.Header, "TIMESTAMP")
	flatLink := "app-misc/hello-2.10.tbz2"
	sameFlat := func(when string) {
		t.Helper()
		m, errM := os.Readlink(filepath.Join(mnt, flatLink))
		c, errC := os.Readlink(filepath.Join(apps, flatLink))
		if errM != nil || errC != nil || m != c {
			t.Errorf("%s: the flat name %s is %q (%v) in the main tree, %q (%v) in the channel", when, flatLink, m, errM, c, errC)
		}
	}
	sameFlat("before")

	// waitBoth polls main and channel Packages until seen(idx) holds for
	// each, and reports when it first did.
	waitBoth := func(what string, seen func(idx *pkgIndex, dir string) bool) (tMain, tChan time.Duration) {
		t.Helper()
		start := time.Now()
		tMain, tChan = -1, -1
		pollFor(10*time.Second, func() bool {
			if tMain < 0 {
				if idx, _ := chTryIndex(filepath.Join(mnt, "Packages")); idx != nil && seen(idx, mnt) {
					tMain = time.Since(start)
				}
			}
			if tChan < 0 {
				if idx, _ := chTryIndex(filepath.Join(apps, "Packages")); idx != nil && seen(idx, apps) {
					tChan = time.Since(start)
				}
			}
			return tMain >= 0 && tChan >= 0
		})
		t.Logf("%s: in the main Packages after %v, in the channel's after %v", what, tMain.Round(time.Millisecond), tChan.Round(time.Millisecond))
		if tMain < 0 || tChan < 0 || tMain > 2*time.Second || tChan > 2*time.Second {
			t.Errorf("%s: want it within 2 s in both the main index (%v) and the channel's (%v; -1: not within 10 s)", what, tMain, tChan)
		}
		return tMain, tChan
	}

	// A build the query selects.
	name := "app-misc/hello-2.10.tbz2"
	sha := sha1File(t, filepath.Join(flat, name))
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, name), filepath.Join(mnt, name)); r.Code != 0 {
		t.Fatal(r)
	}
	waitBoth("a new app-misc build", func(idx *pkgIndex, dir string) bool {
		in, ok := chWithSHA1(idx, sha)
		if !ok {
			return false
		}
		_, err := os.Stat(filepath.Join(dir, in.Path))
		return err == nil
	})
	mainIdx, _ := wReadIndex(t, mnt)
	idx1, raw1 := chReadIndex(t, filepath.Join(apps, "Packages"))
	ts1 := getInt(idx1.Header, "TIMESTAMP")
	added, _ := chWithSHA1(idx1, sha)
	if ts1 <= ts0 {
		t.Errorf("the channel's TIMESTAMP after a build it shows was added: %d, before %d: want a greater one", ts1, ts0)
	}
	if mainIn, ok := chWithSHA1(mainIdx, sha); !ok || firstDiff(mainIn.Block, added.Block, nil) != "" {
		t.Errorf("the new build's block in the channel differs from the main one: %s", firstDiff(mainIn.Block, added.Block, nil))
	}
	chCheckFiles(t, "apps after the copy", apps, idx1)
	sameFlat("after the copy")
	if ix, _, err := client.Fetch(ctx, base, cache); err != nil || ix.Timestamp() != ts1 {
		t.Fatalf("a client's fetch of the channel after the copy: %v, %v\n%s", ix, err, exchangesString(client.Exchanges()))
	}

	// A build the query does not select.
	other := "app-text/tree-2.1.1.tbz2"
	otherSHA := sha1File(t, filepath.Join(flat, other))
	if err := os.MkdirAll(filepath.Join(mnt, "app-text"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, other), filepath.Join(mnt, other)); r.Code != 0 {
		t.Fatal(r)
	}
	if !pollFor(10*time.Second, func() bool {
		idx, _ := chTryIndex(filepath.Join(mnt, "Packages"))
		_, ok := chWithSHA1(idx, otherSHA)
		return ok
	}) {
		t.Fatalf("%s copied into the mount is not in its Packages after 10 s", other)
	}
	// Read at once (a read catches up first), and after a poll tick (the
	// channel worker applied the change meanwhile).
	for _, wait := range []time.Duration{0, 1500 * time.Millisecond} {
		time.Sleep(wait)
		if _, raw := chReadIndex(t, filepath.Join(apps, "Packages")); !bytes.Equal(raw, raw1) {
			t.Errorf("%v after a build the channel does not show was added, its Packages changed: %s", wait,
				firstDiff(strings.Split(string(raw1), "\n"), strings.Split(string(raw), "\n"), nil))
		}
	}
	if st := statOne(t, filepath.Join(apps, "Packages")); st.Mtime != ts1 {
		t.Errorf("the channel's Packages has mtime %d, its TIMESTAMP is %d", st.Mtime, ts1)
	}

	// rm of the build it selected.
	if err := os.Remove(filepath.Join(mnt, added.Path)); err != nil {
		t.Fatal(err)
	}
	waitBoth("rm of the new app-misc build", func(idx *pkgIndex, dir string) bool {
		if _, ok := chWithSHA1(idx, sha); ok {
			return false
		}
		if dir == mnt {
			return true // the main tree keeps it in its removal grace elsewhere
		}
		_, err := os.Lstat(filepath.Join(dir, added.Path))
		return os.IsNotExist(err)
	})
	idx2, _ := chReadIndex(t, filepath.Join(apps, "Packages"))
	if ts2 := getInt(idx2.Header, "TIMESTAMP"); ts2 <= ts1 {
		t.Errorf("the channel's TIMESTAMP after its build was removed: %d, before %d: want a greater one", ts2, ts1)
	}
	if got, want := chBuilds(idx2), chBuilds(idx0); !slices.Equal(got, want) {
		t.Errorf("after the rm the channel lists %v, want what it listed first: %v", got, want)
	}
	sameFlat("after the rm")

	// The client that fetched the index listing the build: its copy must
	// not outlive the rm (it asks with If-Modified-Since = its TIMESTAMP +
	// 5 s; an index re-published once the channel is quiet reaches it).
	removed := time.Now()
	var last *binhost.Index
	if !pollFor(15*time.Second, func() bool {
		ix, _, err := client.Fetch(ctx, base, cache)
		if err != nil {
			t.Fatalf("fetch %s: %v", base, err)
		}
		last = ix
		if _, listed := chWithSHA1Pkg(ix, sha); listed {
			time.Sleep(500 * time.Millisecond)
			return false
		}
		return true
	}) {
		t.Errorf("15 s after the rm, a client that fetched the channel's index before it still holds it (TIMESTAMP %d; the channel's is %d), listing the removed build\n%s",
			last.Timestamp(), getInt(idx2.Header, "TIMESTAMP"), exchangesString(client.Exchanges()))
	} else {
		t.Logf("a client holding the index of TIMESTAMP %d fetched the one without the removed build (TIMESTAMP %d) %v after the rm",
			ts1, last.Timestamp(), time.Since(removed).Round(time.Millisecond))
		if got := chClientBuilds(last); !slices.Equal(got, chBuilds(idx0)) {
			t.Errorf("the client's index after the rm lists %v, want %v", got, chBuilds(idx0))
		}
	}
}

// chWithSHA1Pkg is the package of ix whose SHA1 is sha.
func chWithSHA1Pkg(ix *binhost.Index, sha string) (*binhost.Package, bool) {
	for _, p := range ix.Packages {
		if p.Get("SHA1") == sha {
			return p, true
		}
	}
	return nil, false
}

// chClientBuilds is the sorted set of builds a client's index lists.
func chClientBuilds(ix *binhost.Index) []string {
	out := []string{}
	for _, p := range ix.Packages {
		out = append(out, chBuild(p.CPV(), p.BuildID()))
	}
	sort.Strings(out)
	return out
}

// TestChannelRollbackThroughNginx (the acceptance test of channels): a
// binhost client whose sync-uri is channel prod, served by nginx, syncs
// snapshot s2; `channel set prod --snapshot s1` makes its next sync fetch
// (no 304) an index newer than s2's listing exactly s1's builds, a build
// removed from the live tree among them, and download and verify them.
// prune keeps what s1 holds, and says so; prod serves it on. snapshot
// delete refuses s1 while prod points at it.
func TestChannelRollbackThroughNginx(t *testing.T) {
	t.Parallel()
	needNginx(t)
	src, state, _ := importedFixture(t, "xpak-zstd-multi")
	// No removal grace: a removed build s1 holds stays only because it does.
	mi := mountFSInfo(t, state, "--allow-other", "--removed-grace", "0")
	mnt := mi.Dir
	ng := startNginx(t, mnt)
	chOK(t, state, "snapshot", "create", "s1")

	// The release after s1: two builds more, one less.
	flat := extractFixture(t, "xpak-bzip2-flat")
	for _, p := range []string{"app-misc/hello-2.10.tbz2", "app-text/tree-2.1.1.tbz2"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mnt, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, p), filepath.Join(mnt, p)); r.Code != 0 {
			t.Fatal(r)
		}
	}
	gone := "app-editors/nano/nano-7.2-r1-1.xpak"
	goneSHA := sha1File(t, filepath.Join(src, gone))
	if err := os.Remove(filepath.Join(mnt, gone)); err != nil {
		t.Fatal(err)
	}
	chOK(t, state, "snapshot", "create", "s2")
	s1, s2 := chSnapshot(t, state, "s1"), chSnapshot(t, state, "s2")
	if len(s2) != len(s1)+1 {
		t.Fatalf("s1 holds %d builds, s2 %d: want one more", len(s1), len(s2))
	}
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s2")
	base := ng.URL + "/channels/prod" // the nginx site's name for .pkgdirfs/channels/prod
	if !pollFor(10*time.Second, func() bool { return curlStatus(t, base+"/Packages.gz") == 200 }) {
		t.Fatalf("%s/Packages.gz is not served 10 s after channel set", base)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := binhost.NewClient(true)
	cache := &binhost.Cache{}
	// sync fetches the index with the cached copy, as Portage does, and
	// downloads and verifies every package it lists.
	sync := func(what string, want map[string]chSnapRow) *binhost.Index {
		t.Helper()
		c.ResetExchanges()
		ix, fromCache, err := c.Fetch(ctx, base, cache)
		if err != nil {
			t.Fatalf("%s: fetch %s: %v\n%s", what, base, err, exchangesString(c.Exchanges()))
		}
		if fromCache {
			t.Fatalf("%s: the client kept its cached index (TIMESTAMP %d): the server answered\n%s", what, cache.Index.Timestamp(), exchangesString(c.Exchanges()))
		}
		if got := chClientBuilds(ix); !slices.Equal(got, chKeys(want)) {
			t.Errorf("%s: the index lists %v\nwant %v", what, got, chKeys(want))
		}
		for _, p := range ix.Packages {
			if _, err := c.Download(ctx, p); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		// What emerge --getbinpkg would install of each CPV: a build of
		// the channel's snapshot, whatever the live tree holds.
		for cpv, p := range binhost.Choose(ix) {
			if _, ok := want[chBuild(cpv, p.BuildID())]; !ok {
				t.Errorf("%s: the client would install %s build %d, which the snapshot does not hold", what, cpv, p.BuildID())
			}
		}
		t.Logf("%s: index TIMESTAMP %d, Last-Modified %s, %d packages downloaded and verified", what, ix.Timestamp(), ix.LastModified, len(ix.Packages))
		return ix
	}
	ix2 := sync("sync of prod at s2", s2)

	// Roll back.
	r := chOK(t, state, "channel", "set", "prod", "--snapshot", "s1")
	moved := time.Now()
	if !pollFor(10*time.Second, func() bool {
		h := httpDo(t, "HEAD", base+"/Packages.gz")
		return h.Status == 200 && h.Header.Get("Last-Modified") != ix2.LastModified
	}) {
		t.Fatalf("10 s after `%s`, prod's Packages.gz has the Last-Modified of s2's index", strings.Join(r.Args, " "))
	}
	t.Logf("the move shows through nginx %v after channel set", time.Since(moved).Round(time.Millisecond))
	ix1 := sync("sync of prod after the rollback to s1", s1)
	if ix1.Timestamp() <= ix2.Timestamp() {
		t.Errorf("the rollback's index has TIMESTAMP %d, s2's had %d: want a newer one", ix1.Timestamp(), ix2.Timestamp())
	}
	var back *binhost.Package
	for _, p := range ix1.Packages {
		if p.Get("SHA1") == goneSHA {
			back = p
		}
	}
	if back == nil {
		t.Errorf("the rollback does not list %s, which s1 holds", gone)
	}
	if idx, _ := wReadIndex(t, mnt); slices.ContainsFunc(instances(idx), func(in instance) bool { return in.SHA1 == goneSHA }) {
		t.Errorf("the main tree lists %s again after the rollback of a channel", gone)
	}

	// prune keeps what s1 holds, says so, and prod serves it on.
	r = chOK(t, state, "prune", "--keep", "1")
	heldRE := regexp.MustCompile(`(?m)^kept (\S+) build (\d+) .*: (\S+): held by snapshots? (.+)$`)
	held := heldRE.FindAllStringSubmatch(string(r.Stdout), -1)
	forS1 := 0
	for _, m := range held {
		key := m[1] + " build " + m[2]
		_, inS1 := s1[key]
		if says := slices.Contains(strings.Split(m[4], ", "), "s1"); says != inS1 {
			t.Errorf("prune says it kept %s (%s) for %s; s1 holds it: %v", key, m[3], m[4], inS1)
		}
		if !inS1 {
			continue
		}
		forS1++
		var p *binhost.Package
		for _, q := range ix1.Packages {
			if chBuild(q.CPV(), q.BuildID()) == key {
				p = q
			}
		}
		if p == nil {
			t.Errorf("prod's index does not list %s, which prune kept for s1", key)
		} else if _, err := c.Download(ctx, p); err != nil {
			t.Errorf("after prune, through prod: %v", err)
		}
	}
	if forS1 == 0 {
		t.Errorf("prune --keep 1 names no build kept because s1 holds it: %s", r)
	}
	c.ResetExchanges()
	if ix, fromCache, err := c.Fetch(ctx, base, cache); err != nil || !fromCache || ix.Timestamp() != ix1.Timestamp() {
		t.Errorf("prune changed prod's index (a frozen snapshot): fromCache %v, err %v\n%s", fromCache, err, exchangesString(c.Exchanges()))
	}
	if back != nil {
		if _, err := c.Download(ctx, back); err != nil {
			t.Errorf("after prune, the build only s1 holds, through prod: %v", err)
		}
	}

	// s1 is served: it cannot go; once prod moves on, it can.
	d := chCLI(t, state, "snapshot", "delete", "s1")
	if d.Code != 1 || strings.Count(string(d.Stderr), "\n") != 1 || !strings.Contains(string(d.Stderr), "a channel points at the snapshot: prod") {
		t.Errorf("snapshot delete s1 while prod serves it: want exit 1 and one line naming prod: %s", d)
	}
	if _, ok := chSnapshot(t, state, "s1")[chKeys(s1)[0]]; !ok {
		t.Errorf("the refused snapshot delete changed s1")
	}
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s2")
	chOK(t, state, "snapshot", "delete", "s1")
	if !pollFor(10*time.Second, func() bool {
		h := httpDo(t, "HEAD", base+"/Packages.gz")
		return h.Status == 200 && h.Header.Get("Last-Modified") != ix1.LastModified
	}) {
		t.Fatalf("10 s after the move back to s2, prod's Packages.gz has the Last-Modified of s1's index")
	}
	if ix := sync("sync of prod back at s2", s2); ix.Timestamp() <= ix1.Timestamp() {
		t.Errorf("the move back to s2 has TIMESTAMP %d, the rollback's was %d", ix.Timestamp(), ix1.Timestamp())
	}
	if r := runCLI(t, "verify", "--state", state); r.Code != 0 {
		t.Errorf("verify after the rollback, prune and delete: %s", r)
	}
}

// TestChannelMountWhole: `mount --read-only --channel prod` beside the
// writing mount serves prod as its whole tree: the Packages of
// .pkgdirfs/channels/prod byte for byte, and a move of the channel within
// 2 s. --channel without --read-only is a usage error; an unknown channel
// a one-line error naming it.
func TestChannelMountWhole(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-zstd-multi")
	chOK(t, state, "snapshot", "create", "s1")
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s1")
	writer := mountFSInfo(t, state)
	chWaitDirs(t, writer.Dir, "prod")
	prod := filepath.Join(writer.Dir, chArea, "prod")
	_, first := chReadIndex(t, filepath.Join(prod, "Packages"))
	// The front-end mounts a while later: it must serve what was served.
	time.Sleep(1100 * time.Millisecond)
	fe := mountFSInfo(t, state, "--read-only", "--channel", "prod")
	same := func(when string) []byte {
		t.Helper()
		_, a := chReadIndex(t, filepath.Join(prod, "Packages"))
		_, b := chReadIndex(t, filepath.Join(fe.Dir, "Packages"))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the front-end's Packages differs from .pkgdirfs/channels/prod/Packages: %s", when,
				firstDiff(strings.Split(string(a), "\n"), strings.Split(string(b), "\n"), nil))
		}
		ga, _ := os.ReadFile(filepath.Join(prod, "Packages.gz"))
		gb, _ := os.ReadFile(filepath.Join(fe.Dir, "Packages.gz"))
		if !bytes.Equal(ga, gb) {
			t.Errorf("%s: the front-end's Packages.gz differs from the writer's channel's", when)
		}
		return a
	}
	if got := same("mounted"); !bytes.Equal(got, first) {
		t.Errorf("prod's Packages changed between two reads with nothing changed")
	}
	idx, _ := chReadIndex(t, filepath.Join(fe.Dir, "Packages"))
	chCheckFiles(t, "the front-end", fe.Dir, idx)
	if out := string(mustRun(t, "", "ls", "-A", fe.Dir)); strings.Contains(out, ".pkgdirfs") || !strings.Contains(out, "Packages.gz") {
		t.Errorf("ls -A of the front-end: %q", out)
	}
	r := run(t, "", toolTimeout, "touch", filepath.Join(fe.Dir, "Packages"))
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
		t.Errorf("a write into the front-end must fail with EROFS: %s", r)
	}

	// A move: s2, with one build more.
	flat := extractFixture(t, "xpak-bzip2-flat")
	name := "app-misc/hello-2.10.tbz2"
	if r := run(t, "", toolTimeout, "cp", filepath.Join(flat, name), filepath.Join(writer.Dir, name)); r.Code != 0 {
		t.Fatal(r)
	}
	chOK(t, state, "snapshot", "create", "s2")
	s2 := chSnapshot(t, state, "s2")
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s2")
	moved := time.Now()
	var seen time.Duration
	ok := pollFor(10*time.Second, func() bool {
		idx, _ := chTryIndex(filepath.Join(fe.Dir, "Packages"))
		if idx == nil || !slices.Equal(chBuilds(idx), chKeys(s2)) {
			return false
		}
		ents, err := os.ReadDir(filepath.Join(fe.Dir, "app-misc", "hello"))
		if err != nil || len(ents) != 4 {
			return false
		}
		seen = time.Since(moved)
		return true
	})
	if !ok {
		t.Fatalf("the front-end does not serve s2 10 s after channel set")
	}
	t.Logf("the front-end serves the move %v after channel set", seen.Round(time.Millisecond))
	if seen > 2*time.Second {
		t.Errorf("the front-end served the move after %v; want within 2 s", seen)
	}
	same("after the move")
	idx, _ = chReadIndex(t, filepath.Join(fe.Dir, "Packages"))
	chCheckFiles(t, "the front-end after the move", fe.Dir, idx)

	// Deleted, the channel leaves the front-end an empty directory (and
	// the writer's channel area empty); set again, it serves again.
	chOK(t, state, "channel", "delete", "prod")
	var ls cmdResult
	if !pollFor(10*time.Second, func() bool {
		ls = run(t, "", toolTimeout, "ls", "-A", fe.Dir)
		return ls.Code == 0 && len(ls.Stdout) == 0
	}) {
		t.Errorf("10 s after channel delete, ls -A of the front-end: %s", ls)
	}
	if out := string(mustRun(t, "", "ls", "-A", filepath.Join(writer.Dir, chArea))); out != "" {
		t.Errorf("ls -A %s after channel delete: %q", chArea, out)
	}
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s1")
	if !pollFor(10*time.Second, func() bool {
		idx, _ := chTryIndex(filepath.Join(fe.Dir, "Packages"))
		return idx != nil && slices.Equal(chBuilds(idx), chKeys(chSnapshot(t, state, "s1")))
	}) {
		t.Errorf("10 s after prod was set again, the front-end does not serve s1")
	}
	same("after the channel was set again")

	// Refused mounts.
	mp := t.TempDir()
	oneLine := func(r cmdResult, code int, want string) {
		t.Helper()
		if r.Code != code || strings.Count(string(r.Stderr), "\n") != 1 || !strings.Contains(string(r.Stderr), want) {
			t.Errorf("want exit %d and one line on stderr naming %q: %s", code, want, r)
		}
		if _, mounted := mountedFSType(mp); mounted {
			t.Errorf("%s is mounted after a refused mount", mp)
			run(t, "", toolTimeout, "umount", mp)
		}
	}
	oneLine(runCLI(t, "mount", "--state", state, "--channel", "prod", mp), 2, "--read-only")
	oneLine(runCLI(t, "mount", "--state", state, "--read-only", "--channel", "nosuch", "--log", filepath.Join(t.TempDir(), "log"), mp), 1, `"nosuch"`)
	oneLine(runCLI(t, "mount", "--state", state, "--read-only", "--channel", "nosuch", mp), 1, `"nosuch"`)
}

// chRunAsync runs a command from a goroutine other than the test's (no
// t.Fatal there).
func chRunAsync(name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cmdResult{Args: append([]string{name}, args...), Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Code: cmd.ProcessState.ExitCode()}
	if err != nil && cmd.ProcessState == nil {
		r.Code, r.Stderr = -1, []byte(err.Error()+"\n")
	}
	return r
}

// TestChannelBadInput: every bad request of `pkgdirfs channel` (and
// snapshot delete of a snapshot a channel serves) is one line on stderr,
// a non-zero exit, and changes no channel; sets of one name racing are
// applied one after the other.
func TestChannelBadInput(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	chOK(t, state, "snapshot", "create", "s1")
	chOK(t, state, "channel", "set", "prod", "--snapshot", "s1")
	chOK(t, state, "channel", "set", "apps", "--live", "--query", "'app-misc/*'", "--ttl", "60")
	list0, _ := chList(t, state)
	snaps0 := chOK(t, state, "snapshot", "list", "--format", "json").Stdout

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"channel", "set", "x", "--snapshot", "nosuch"}, 1, `"nosuch"`},
		{[]string{"channel", "set", "prod", "--snapshot", "nosuch"}, 1, `"nosuch"`},
		{[]string{"channel", "delete", "nosuch"}, 1, `"nosuch"`},
		{[]string{"channel", "set", "x", "--live", "--query", "'app-misc/*"}, 2, "query"},
		{[]string{"channel", "set", "x", "--live", "--query", "--bogus"}, 2, "--bogus"},
		{[]string{"channel", "set", "x", "--snapshot", "s1", "--query", "app-misc/*"}, 2, "--query"},
		{[]string{"channel", "set", "x", "--snapshot", "s1", "--live"}, 2, "--live"},
		{[]string{"channel", "set", "x"}, 2, "--snapshot"},
		{[]string{"channel", "set", "x", "--live", "--ttl", "-5"}, 2, "--ttl"},
		{[]string{"channel", "set", ".x", "--live"}, 2, `".x"`},
		{[]string{"channel", "set", "a/b", "--live"}, 2, `"a/b"`},
		{[]string{"channel", "delete", "a/b"}, 2, `"a/b"`},
		{[]string{"snapshot", "delete", "s1"}, 1, "a channel points at the snapshot: prod"},
	} {
		r := chCLI(t, state, c.args[0], c.args[1:]...)
		if r.Code != c.code || strings.Count(string(r.Stderr), "\n") != 1 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), c.want) {
			t.Errorf("want exit %d, nothing on stdout and one line on stderr naming %q: %s", c.code, c.want, r)
		}
		if list, _ := chList(t, state); !bytes.Equal(list, list0) {
			t.Errorf("%s changed the channels:\nbefore %s\nafter %s", strings.Join(c.args, " "), list0, list)
		}
		if snaps := chOK(t, state, "snapshot", "list", "--format", "json").Stdout; !bytes.Equal(snaps, snaps0) {
			t.Errorf("%s changed the snapshots", strings.Join(c.args, " "))
		}
	}

	// Two writers setting one name, ten times each, at once.
	var wg sync.WaitGroup
	results := make(chan cmdResult, 20)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				args := []string{"channel", "--state", state, "set", "race", "--snapshot", "s1"}
				if (w+i)%2 == 1 {
					args = []string{"channel", "--state", state, "set", "race", "--live", "--query", "'app-misc/*'"}
				}
				results <- chRunAsync(binPath, args...)
			}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.Code != 0 || len(r.Stderr) != 0 {
			t.Errorf("a racing channel set: %s", r)
		}
	}
	_, list := chList(t, state)
	if got := list["race"].Version; got != 20 {
		t.Errorf("after 20 sets of channel race its version is %d, want 20", got)
	}
	if got := list["prod"]; got.Snapshot != "s1" || got.Version != 1 {
		t.Errorf("the race changed channel prod: %+v", got)
	}
	chOK(t, state, "channel", "delete", "race")
	if l, _ := chList(t, state); !bytes.Equal(l, list0) {
		t.Errorf("after channel delete race the channels are not what they were:\nbefore %s\nafter %s", list0, l)
	}
}

// TestChannelLiveKeepAndFlags: live channels of the views fleets use —
// `--keep 1` (the newest build of each CPV) and `--cflags` (the flags the
// builds were made with, which Packages does not list) — show exactly what
// `pkgdirfs query` with the same terms selects, before and after a newer
// build arrives: the keep-1 channel then serves the new build and no longer
// the one it replaced.
func TestChannelLiveKeepAndFlags(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-bzip2-multi")
	chOK(t, state, "channel", "set", "newest", "--live", "--query", "--keep 1")
	chOK(t, state, "channel", "set", "v2", "--live", "--query", "--cflags '*-march=x86-64-v2*'")
	chOK(t, state, "channel", "set", "v3", "--live", "--query", "--cflags '*-march=x86-64-v3*'")
	mnt := mountFS(t, state)
	chWaitDirs(t, mnt, "newest", "v2", "v3")
	// What pkgdirfs query selects with the same terms, as "cpv build N".
	oracle := func(args ...string) []string {
		t.Helper()
		r := chOK(t, state, "query", append([]string{"--format", "json"}, args...)...)
		var rows []struct {
			CPV     string `json:"cpv"`
			BuildID int64  `json:"build_id"`
		}
		if err := json.Unmarshal(r.Stdout, &rows); err != nil {
			t.Fatalf("query %v: %v: %s", args, err, r.Stdout)
		}
		var out []string
		for _, row := range rows {
			out = append(out, chBuild(row.CPV, row.BuildID))
		}
		slices.Sort(out)
		return out
	}
	served := func(name string) []string {
		idx, _ := chReadIndex(t, filepath.Join(mnt, chArea, name, "Packages"))
		b := chBuilds(idx)
		slices.Sort(b)
		return b
	}
	all := oracle()
	check := func(when string) {
		t.Helper()
		keep := oracle("--keep", "1")
		if len(keep) == 0 || len(keep) >= len(oracle()) {
			t.Fatalf("%s: premise: query --keep 1 selects %d of %d builds", when, len(keep), len(oracle()))
		}
		if got := served("newest"); !slices.Equal(got, keep) {
			t.Errorf("%s: channel newest serves\n%v\nwant (query --keep 1)\n%v", when, got, keep)
		}
		if got, want := served("v2"), oracle("--cflags", "*-march=x86-64-v2*"); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s: channel v2 serves %v, want %v (not empty)", when, got, want)
		}
		if got := served("v3"); len(got) != 0 {
			t.Errorf("%s: channel v3 serves %v; no build was made with -march=x86-64-v3", when, got)
		}
	}
	check("after the import")

	// A newer build of hello: another fixture's bytes, at a new build id.
	other := extractFixture(t, "xpak-zstd-multi")
	before := served("newest")
	dst := filepath.Join(mnt, "app-misc/hello/hello-2.10-7.xpak")
	if r := run(t, "", toolTimeout, "cp", filepath.Join(other, "app-misc/hello/hello-2.10-3.xpak"), dst); r.Code != 0 {
		t.Fatal(r)
	}
	if len(oracle()) != len(all)+1 {
		t.Fatalf("premise: the cp added no build (%d builds, before %d)", len(oracle()), len(all))
	}
	check("after a new build of hello")
	after := served("newest")
	var hello []string
	for _, b := range after {
		if strings.HasPrefix(b, "app-misc/hello-2.10 ") {
			hello = append(hello, b)
		}
	}
	if len(hello) != 1 || slices.Equal(before, after) {
		t.Errorf("channel newest after a new build of hello: hello builds %v; before %v, after %v", hello, before, after)
	}
}

// TestChannelMultiHost: on one PostgreSQL catalog, two writing hosts and a
// front-end of one channel (mount --read-only --channel) serve a snapshot
// channel with byte-identical Packages and Packages.gz; a live channel
// shows a build committed on the other host; a move made with
// `pkgdirfs channel set` on one host reaches all three within 2 s, its
// index newer than the one before, again identical everywhere.
func TestChannelMultiHost(t *testing.T) {
	t.Parallel()
	url, blobs, mis, states := hostStates(t, 2)
	src := extractFixture(t, "xpak-bzip2-flat")
	if r := run(t, "", toolTimeout, "cp", "-a", src+"/.", mis[0].Dir); r.Code != 0 {
		t.Fatal(r)
	}
	cli := func(args ...string) {
		t.Helper()
		full := append(args[:1:1], append([]string{"--state", states[1], "--catalog", url, "--blobs", blobs}, args[1:]...)...)
		if r := runCLI(t, full...); r.Code != 0 {
			t.Fatalf("pkgdirfs %s: %s", strings.Join(full, " "), r)
		}
	}
	cli("snapshot", "create", "s1")
	cli("channel", "set", "prod", "--snapshot", "s1")
	cli("channel", "set", "apps", "--live", "--query", "'app-misc/*'")
	fe := mountFSInfo(t, t.TempDir(), "--catalog", url, "--blobs", blobs, "--read-only", "--channel", "prod")
	paths := []string{
		filepath.Join(mis[0].Dir, chArea, "prod"),
		filepath.Join(mis[1].Dir, chArea, "prod"),
		fe.Dir,
	}
	// same waits until the three serve identical, non-empty indexes, and
	// returns Packages.
	same := func(what string, ok func(idx []byte) bool) []byte {
		t.Helper()
		var got [][]byte
		if !pollFor(10*time.Second, func() bool {
			got = got[:0]
			for _, p := range paths {
				for _, name := range []string{"Packages", "Packages.gz"} {
					b, err := os.ReadFile(filepath.Join(p, name))
					if err != nil {
						return false
					}
					got = append(got, b)
				}
			}
			for i := 2; i < len(got); i++ {
				if !bytes.Equal(got[i], got[i%2]) {
					return false
				}
			}
			return ok(got[0])
		}) {
			t.Fatalf("%s: the two hosts and the front-end do not serve one index of prod within 10 s", what)
		}
		return got[0]
	}
	stampOf := func(b []byte) int64 {
		h, _ := layout.ParseIndex(b)
		ts, _ := strconv.ParseInt(h["TIMESTAMP"], 10, 64)
		return ts
	}
	first := same("snapshot s1", func(b []byte) bool { _, p := layout.ParseIndex(b); return len(p) > 0 })

	// A live channel follows a commit made on the other host.
	other := extractFixture(t, "xpak-zstd-multi")
	dst := filepath.Join(mis[1].Dir, "app-misc/hello/hello-2.10-7.xpak")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", toolTimeout, "cp", filepath.Join(other, "app-misc/hello/hello-2.10-3.xpak"), dst); r.Code != 0 {
		t.Fatal(r)
	}
	apps := filepath.Join(mis[0].Dir, chArea, "apps", "app-misc/hello/hello-2.10-7.xpak")
	if !pollFor(5*time.Second, func() bool { _, err := os.Stat(apps); return err == nil }) {
		t.Errorf("a build committed on host 2 is not in host 1's live channel within 5 s")
	}

	// The move: after it every one serves an index with the new build,
	// newer than s1's.
	cli("snapshot", "create", "s2")
	cli("channel", "set", "prod", "--snapshot", "s2")
	moved := same("after the move to s2", func(b []byte) bool { return bytes.Contains(b, []byte("PATH: app-misc/hello/hello-2.10-7.xpak")) })
	if stampOf(moved) <= stampOf(first) {
		t.Errorf("the moved channel's TIMESTAMP %d is not above s1's %d", stampOf(moved), stampOf(first))
	}
}
