package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"pkgdirfs/integration/binhost"
)

// The binhost tests serve a pkgdirfs mount with nginx (nginx_test.go) and
// judge it with a Portage-rules client (package binhost): index fetch and
// caching, download and verification of every package, the instance the
// client chooses, tar listings over HTTP, sizes, and new generations.

// fixtureFile is one package file of an extracted fixture.
type fixtureFile struct {
	Fixture, Rel string
	Size         int64
}

// fixturePackages maps the SHA1 of every package file (regular files named
// *.tbz2, *.xpak, *.gpkg.tar; symlinks skipped as Portage skips them) of the
// given fixtures to where it was found.
func fixturePackages(t *testing.T, dirs map[string]string) map[string][]fixtureFile {
	t.Helper()
	res := map[string][]fixtureFile{}
	names := make([]string, 0, len(dirs))
	for n := range dirs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		root := dirs[name]
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if !strings.HasSuffix(p, ".tbz2") && !strings.HasSuffix(p, ".xpak") && !strings.HasSuffix(p, ".gpkg.tar") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha1.Sum(b)
			rel, _ := filepath.Rel(root, p)
			k := hex.EncodeToString(sum[:])
			res[k] = append(res[k], fixtureFile{name, rel, int64(len(b))})
			return nil
		})
		if err != nil {
			t.Fatalf("walk fixture %s: %v", name, err)
		}
	}
	return res
}

// checkIndexCoversFixtures: every package of the fixtures is in the index
// exactly once (by SHA1), nothing else is, and every entry carries what a
// remote client needs (PATH, SIZE, MD5, SHA1).
func checkIndexCoversFixtures(t *testing.T, ix *binhost.Index, want map[string][]fixtureFile) {
	t.Helper()
	seen := map[string]*binhost.Package{}
	for _, p := range ix.Packages {
		for _, k := range []string{"PATH", "SIZE", "MD5", "SHA1"} {
			if p.Get(k) == "" {
				t.Errorf("index entry %s has no %s (remote clients need PATH and SIZE, and verify MD5/SHA1)", p, k)
			}
		}
		sha := p.Get("SHA1")
		if prev, dup := seen[sha]; dup {
			t.Errorf("index lists the same bytes (SHA1 %s) twice: %s and %s", sha, prev, p)
		}
		seen[sha] = p
		if _, ok := want[sha]; !ok {
			t.Errorf("index entry %s (SHA1 %s) is none of the fixtures' package files", p, sha)
		}
	}
	for sha, where := range want {
		if _, ok := seen[sha]; !ok {
			t.Errorf("fixture package %s/%s (SHA1 %s) is not in the served index", where[0].Fixture, where[0].Rel, sha)
		}
	}
	if n := ix.Header["PACKAGES"]; n != strconv.Itoa(len(ix.Packages)) {
		t.Errorf("header PACKAGES: %q, the client read %d package blocks", n, len(ix.Packages))
	}
}

// flatName is where the flat layout shows the newest instance of p's format.
func flatName(p *binhost.Package) string {
	if strings.HasSuffix(p.Path(), ".gpkg.tar") {
		return p.CPV() + ".gpkg.tar"
	}
	return p.CPV() + ".tbz2"
}

// checkChosenIsFlat: for every CPV, the instance the client would install is
// the one inode the flat name shows.
func checkChosenIsFlat(t *testing.T, mnt string, ix *binhost.Index) {
	t.Helper()
	chosen := binhost.Choose(ix)
	var paths []string
	for _, cpv := range binhost.CPVs(ix) {
		p := chosen[cpv]
		paths = append(paths, strings.TrimLeft(p.Path(), "/"), flatName(p))
	}
	st, missing, stderr := statPaths(t, mnt, paths)
	if len(missing) > 0 {
		t.Errorf("stat on the mount failed for %v: %s", missing, stderr)
	}
	for _, cpv := range binhost.CPVs(ix) {
		p := chosen[cpv]
		a, okA := st[strings.TrimLeft(p.Path(), "/")]
		b, okB := st[flatName(p)]
		if !okA || !okB {
			continue
		}
		if a.Ino != b.Ino {
			t.Errorf("%s: the client chooses BUILD_ID %s (BUILD_TIME %s, PATH %s, ino %d) but the flat name %s shows ino %d (%s)",
				cpv, p.Get("BUILD_ID"), p.Get("BUILD_TIME"), p.Path(), a.Ino, flatName(p), b.Ino, b)
		}
	}
}

// xpakTarLen returns the tarball length of an xpak from its last 16 bytes:
// "XPAKSTOP", the XPAK block length (big-endian u32), "STOP".
func xpakTarLen(data []byte) (int, error) {
	n := len(data)
	if n < 16 || string(data[n-16:n-8]) != "XPAKSTOP" || string(data[n-4:]) != "STOP" {
		return 0, fmt.Errorf("no XPAKSTOP<len>STOP trailer in the last 16 bytes (%q)", data[max(0, n-16):])
	}
	l := int(binary.BigEndian.Uint32(data[n-8 : n-4]))
	if l+8 >= n {
		return 0, fmt.Errorf("XPAK length %d >= file size %d", l, n)
	}
	return n - l - 8, nil
}

// pkgClass is "xpak/<compression>" or "gpkg/<compression of image.tar.*>".
func pkgClass(p *binhost.Package, data []byte) string {
	if strings.HasSuffix(p.Path(), ".gpkg.tar") {
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				return "gpkg/?"
			}
			if i := strings.Index(h.Name, "/image.tar"); i >= 0 {
				ext := strings.TrimPrefix(h.Name[i+len("/image.tar"):], ".")
				if ext == "" {
					ext = "none"
				}
				return "gpkg/" + ext
			}
		}
	}
	if tool := bhMagic(data); tool != "" {
		return "xpak/" + tool
	}
	return "xpak/?"
}

// decompressor for an xpak tarball's magic.
func decompressor(class string) string {
	switch class {
	case "xpak/bzip2":
		return "bzip2 -dc"
	case "xpak/xz":
		return "xz -dc"
	case "xpak/zstd":
		return "zstd -dc"
	case "xpak/gzip":
		return "gzip -dc"
	case "xpak/lz4":
		return "lz4 -dc"
	}
	return ""
}

// lsSizes parses `ls -lRn --time-style=+%s DIR` into relative path -> size
// for regular files.
func lsSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := mustRun(t, "", "ls", "-lRnL", "--time-style=+%s", dir) // -L: flat and All/ names are symlinks
	res := map[string]int64{}
	cur := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(l, ":") && strings.HasPrefix(l, dir) {
			cur = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSuffix(l, ":"), dir), "/")
			continue
		}
		if !strings.HasPrefix(l, "-") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 7 {
			continue
		}
		size, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			t.Fatalf("ls -lR line %q: size %q: %v", l, f[4], err)
		}
		name := strings.Join(f[6:], " ")
		res[filepath.Join(cur, name)] = size
	}
	return res
}

func exchangesString(ex []binhost.Exchange) string {
	var b strings.Builder
	for _, e := range ex {
		fmt.Fprintf(&b, "  %s %s -> %d", e.Method, e.URL, e.Status)
		if ims := e.RequestHeader.Get("If-Modified-Since"); ims != "" {
			fmt.Fprintf(&b, " (If-Modified-Since: %s)", ims)
		}
		if e.ResponseHeader != nil {
			fmt.Fprintf(&b, " Last-Modified: %s ETag: %s", e.ResponseHeader.Get("Last-Modified"), e.ResponseHeader.Get("ETag"))
		}
		if e.Err != nil {
			fmt.Fprintf(&b, " error: %v", e.Err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestBinhostFixtures serves all eight fixtures from one state and judges
// the binhost with the Portage-rules client.
func TestBinhostFixtures(t *testing.T) {
	sv := setupServed(t, allFixtures...)
	mnt, ng := sv.Mnt, sv.NG
	want := fixturePackages(t, sv.Dirs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := binhost.NewClient(true)
	cache := &binhost.Cache{}

	// 1. The index, as Packages.gz (what the client asks first) and as Packages.
	ix, fromCache, err := c.Fetch(ctx, ng.URL+"/", cache)
	if err != nil {
		t.Fatalf("client fetch of %s/: %v\n%s", ng.URL, err, exchangesString(c.Exchanges()))
	}
	ex := c.Exchanges()
	if fromCache || len(ex) != 1 || !strings.HasSuffix(ex[0].URL, "/Packages.gz") || ex[0].Status != 200 {
		t.Fatalf("first fetch: want one 200 for Packages.gz and a fresh index, got fromCache=%v\n%s", fromCache, exchangesString(ex))
	}
	if ce := ex[0].ResponseHeader.Get("Content-Encoding"); ce != "" {
		t.Errorf("Packages.gz sent with Content-Encoding %q (re-encoded)", ce)
	}
	if ims := ex[0].RequestHeader.Get("If-Modified-Since"); ims != "" {
		t.Errorf("first fetch sent If-Modified-Since %q without a cached index", ims)
	}
	plainIx, _, err := c.FetchFile(ctx, ng.URL, "Packages", nil)
	if err != nil {
		t.Fatalf("fetch %s/Packages: %v", ng.URL, err)
	}
	if !bytes.Equal(ix.Raw, plainIx.Raw) {
		t.Errorf("Packages.gz decompressed (%d bytes) and Packages (%d bytes) differ: %s", len(ix.Raw), len(plainIx.Raw), bhFirstDiff(string(ix.Raw), string(plainIx.Raw)))
	}
	if d := binhost.SameContent(binhost.ParseIndex(ix.Raw), binhost.ParseIndex(plainIx.Raw)); d != "" {
		t.Errorf("parsed Packages.gz and Packages differ: %s", d)
	}
	if onMount, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil || !bytes.Equal(onMount, ix.Raw) {
		t.Errorf("served index (%d bytes) != the mount's Packages (%d bytes, err %v)", len(ix.Raw), len(onMount), err)
	}
	if ix.Timestamp() != ix.RemoteTimestamp {
		t.Errorf("Last-Modified of Packages.gz (%s = %d) != its TIMESTAMP %d", ix.LastModified, ix.RemoteTimestamp, ix.Timestamp())
	}
	checkIndexCoversFixtures(t, ix, want)

	// 2. Download every package (SIZE + MD5 + SHA1 verified by the client).
	downloaded, err := c.Sync(ctx, cache, ix.Packages)
	if err != nil {
		t.Errorf("downloading the packages: %v", err)
	}
	if len(downloaded) != len(ix.Packages) {
		t.Errorf("downloaded %d of %d packages", len(downloaded), len(ix.Packages))
	}

	// 3. The instance the client would install is the flat view's.
	t.Run("choice", func(t *testing.T) { checkChosenIsFlat(t, mnt, ix) })

	// 4. Again with the cached index: 304, nothing downloaded.
	t.Run("cached", func(t *testing.T) {
		c.ResetExchanges()
		ix2, fromCache, err := c.Fetch(ctx, ng.URL+"/", cache)
		ex := c.Exchanges()
		if err != nil {
			t.Fatalf("second fetch: %v\n%s", err, exchangesString(ex))
		}
		if !fromCache || ix2 != ix {
			t.Errorf("second fetch: want the cached index, got fromCache=%v", fromCache)
		}
		if len(ex) != 1 || ex[0].Status != 304 || !strings.HasSuffix(ex[0].URL, "/Packages.gz") {
			t.Errorf("second fetch: want exactly one request, Packages.gz answered 304, got\n%s", exchangesString(ex))
		} else if ims, wantIMS := ex[0].RequestHeader.Get("If-Modified-Since"), binhost.IfModifiedSince(ix.Timestamp()); ims != wantIMS {
			t.Errorf("If-Modified-Since: want %q (TIMESTAMP %d + 5 s), sent %q", wantIMS, ix.Timestamp(), ims)
		}
		again, err := c.Sync(ctx, cache, ix2.Packages)
		if err != nil || len(again) != 0 {
			t.Errorf("sync with every instance cached: want no download, got %d (err %v)", len(again), err)
		}
		if ex := c.Exchanges(); len(ex) != 1 {
			t.Errorf("want no request besides the 304, got\n%s", exchangesString(ex))
		}
	})

	// 5. tar -t over the mount and over nginx, one sample per format+compression.
	t.Run("tar", func(t *testing.T) {
		samples := map[string]*binhost.Package{}
		var classes []string
		for _, p := range ix.Packages {
			lp := cache.Local[p.Key()]
			if lp == nil {
				continue
			}
			cl := pkgClass(p, lp.Data)
			if samples[cl] == nil {
				samples[cl] = p
				classes = append(classes, cl)
			}
		}
		sort.Strings(classes)
		for _, need := range []string{"gpkg/xz", "gpkg/zst", "xpak/bzip2", "xpak/gzip", "xpak/xz", "xpak/zstd"} {
			if samples[need] == nil {
				t.Errorf("no downloaded package of class %s (found %v)", need, classes)
			}
		}
		for _, cl := range classes {
			p := samples[cl]
			data := cache.Local[p.Key()].Data
			file := filepath.Join(mnt, strings.TrimLeft(p.Path(), "/"))
			var local, remote string
			if strings.HasPrefix(cl, "gpkg/") {
				local = "tar -tf " + shQuote(file)
				remote = "curl -sf --max-time 30 " + shQuote(p.URL()) + " | { tar -t; rc=$?; cat >/dev/null; exit $rc; }"
			} else {
				n, err := xpakTarLen(data)
				if err != nil {
					t.Errorf("%s (%s): %v", p, cl, err)
					continue
				}
				dec := decompressor(cl)
				if dec == "" {
					t.Errorf("%s: no decompressor for %s", p, cl)
					continue
				}
				local = fmt.Sprintf("head -c %d %s | %s | tar -t", n, shQuote(file), dec)
				remote = fmt.Sprintf("curl -sf --max-time 30 %s | { head -c %d; cat >/dev/null; } | %s | tar -t", shQuote(p.URL()), n, dec)
			}
			a, b := shell(t, "", local), shell(t, "", remote)
			if a.Code != 0 || b.Code != 0 {
				t.Errorf("%s (%s): listing failed:\nmount: %s\nnginx: %s", p, cl, a, b)
				continue
			}
			if len(bytes.TrimSpace(a.Stdout)) == 0 {
				t.Errorf("%s (%s): `%s` lists no members", p, cl, local)
			}
			if !bytes.Equal(a.Stdout, b.Stdout) {
				t.Errorf("%s (%s): members differ between the mount and nginx: %s\nmount: %s\nnginx: %s",
					p, cl, bhFirstDiff(string(a.Stdout), string(b.Stdout)), local, remote)
			}
		}
	})

	// 6. ls -lR sizes == Content-Length.
	t.Run("sizes", func(t *testing.T) {
		sizes := lsSizes(t, mnt)
		if len(sizes) == 0 {
			t.Fatalf("ls -lR %s shows no files", mnt)
		}
		// Every file: HEAD through Go.
		var names []string
		for p := range sizes {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			h := httpDo(t, "HEAD", ng.URL+"/"+p)
			if h.Status != 200 || h.Header.Get("Content-Length") != strconv.FormatInt(sizes[p], 10) {
				t.Errorf("HEAD /%s: want 200 with Content-Length %d (ls -lR), got %d with %q", p, sizes[p], h.Status, h.Header.Get("Content-Length"))
			}
		}
		// curl -sI: the index files and, per fixture, its first package at
		// its multi-instance, flat and (xpak) All/ names.
		sample := []string{"Packages", "Packages.gz"}
		bySHA := map[string]*binhost.Package{}
		for _, p := range ix.Packages {
			bySHA[p.Get("SHA1")] = p
		}
		firstOf := map[string]string{}
		var shas []string
		for sha := range want {
			shas = append(shas, sha)
		}
		sort.Strings(shas)
		for _, sha := range shas {
			for _, f := range want[sha] {
				if _, ok := firstOf[f.Fixture]; !ok {
					firstOf[f.Fixture] = sha
				}
			}
		}
		for _, name := range allFixtures {
			p := bySHA[firstOf[name]]
			if p == nil {
				t.Errorf("fixture %s: none of its packages found in the index", name)
				continue
			}
			sample = append(sample, strings.TrimLeft(p.Path(), "/"))
		}
		if chosen := binhost.Choose(ix); len(chosen) > 0 {
			for _, cpv := range binhost.CPVs(ix)[:3] {
				p := chosen[cpv]
				sample = append(sample, flatName(p))
				if !strings.HasSuffix(p.Path(), ".gpkg.tar") {
					_, pf, _ := strings.Cut(p.CPV(), "/")
					sample = append(sample, "All/"+pf+".tbz2")
				}
			}
		}
		for _, p := range sample {
			size, ok := sizes[p]
			if !ok {
				t.Errorf("%s is not in ls -lR %s", p, mnt)
				continue
			}
			code, hdr := curlHead(t, ng.URL+"/"+p)
			if code != 200 || hdr["content-length"] != strconv.FormatInt(size, 10) {
				t.Errorf("curl -sI /%s: want 200 and Content-Length %d (ls -lR), got %d and %q", p, size, code, hdr["content-length"])
			}
		}
	})
}

// TestBinhostNewGeneration: while mounted and served, imports into the same
// state must reach a client holding a cached index: new Last-Modified and
// ETag of Packages and Packages.gz within a few seconds, then the new
// packages through the client's ordinary fetch.
func TestBinhostNewGeneration(t *testing.T) {
	const late = "xpak-zstd-multi"
	var early []string
	for _, f := range allFixtures {
		if f != late {
			early = append(early, f)
		}
	}
	sv := setupServed(t, early...)
	mnt, ng := sv.Mnt, sv.NG
	lateDir := extractFixture(t, late)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := binhost.NewClient(true)
	cache := &binhost.Cache{}
	ix, _, err := c.Fetch(ctx, ng.URL, cache)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if _, err := c.Sync(ctx, cache, ix.Packages); err != nil {
		t.Fatalf("download: %v", err)
	}

	validators := func() [4]string {
		a := httpDo(t, "HEAD", ng.URL+"/Packages")
		b := httpDo(t, "HEAD", ng.URL+"/Packages.gz")
		return [4]string{a.Header.Get("Last-Modified"), a.Header.Get("ETag"), b.Header.Get("Last-Modified"), b.Header.Get("ETag")}
	}

	// step imports srcs, waits for new validators, and fetches with the
	// cached index; it returns the packages the client then downloads.
	step := func(t *testing.T, what string, wantImported int, srcs ...string) []*binhost.Package {
		t.Helper()
		prev := cache.Index
		cachedTS := prev.Timestamp()
		// A Portage client sends If-Modified-Since = TIMESTAMP + 5 s. Portage
		// itself writes TIMESTAMP = now, so any change made more than 5 s
		// after the cached index reaches the client; wait for that point of
		// the wall clock (when it is near) so that only a TIMESTAMP not
		// following the clock can fail.
		if d := time.Until(time.Unix(cachedTS+6, 0)); d > 0 && d < 10*time.Second {
			time.Sleep(d)
		}
		before := validators()
		r, sum := importDirs(t, sv.State, srcs...)
		if r.Code != 0 || sum.Imported != wantImported || sum.Invalid != 0 {
			t.Fatalf("%s: import: want exit 0 and %d imported, got exit %d %+v: %s", what, wantImported, r.Code, sum, r)
		}
		imported := time.Now()
		var after [4]string
		for {
			after = validators()
			if after[0] != before[0] && after[1] != before[1] && after[2] != before[2] && after[3] != before[3] {
				break
			}
			if time.Since(imported) > 5*time.Second {
				t.Fatalf("%s: 5 s after the import, Packages/Packages.gz still have Last-Modified/ETag %q (before the import: %q)", what, after, before)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("%s: validators %q -> %q after %v", what, before, after, time.Since(imported).Round(time.Millisecond))
		c.ResetExchanges()
		ix2, fromCache, err := c.Fetch(ctx, ng.URL, cache)
		ex := c.Exchanges()
		if err != nil {
			t.Fatalf("%s: fetch with the cached index: %v\n%s", what, err, exchangesString(ex))
		}
		if fromCache {
			lead := ""
			if plain, err := os.ReadFile(filepath.Join(mnt, "Packages")); err == nil {
				if pi, err := parseIndex(plain); err == nil {
					newTS := getInt(pi.Header, "TIMESTAMP")
					lead = fmt.Sprintf("; the new TIMESTAMP is %d = cached %d %+d s, %+d s ahead of the wall clock (%d)",
						newTS, cachedTS, newTS-cachedTS, newTS-time.Now().Unix(), time.Now().Unix())
				}
			}
			t.Fatalf("%s: a Portage client holding the cached index (TIMESTAMP %d) does not see the new generation: it sent "+
				"If-Modified-Since = TIMESTAMP + 5 s and kept its cache%s. A new index must carry a TIMESTAMP (Last-Modified) "+
				"more than 5 s above any TIMESTAMP a client may hold, i.e. follow the clock.\n%s",
				what, cachedTS, lead, exchangesString(ex))
		}
		if ix2.Timestamp() <= cachedTS {
			t.Errorf("%s: new index TIMESTAMP %d not above the cached %d", what, ix2.Timestamp(), cachedTS)
		}
		if ix2.LastModified == prev.LastModified || ix2.ETag == "" || ix2.ETag == prev.ETag {
			t.Errorf("%s: the fresh index kept Last-Modified %q / ETag %q (previous %q / %q)", what, ix2.LastModified, ix2.ETag, prev.LastModified, prev.ETag)
		}
		got, err := c.Sync(ctx, cache, ix2.Packages)
		if err != nil {
			t.Errorf("%s: downloading the new packages: %v", what, err)
		}
		checkChosenIsFlat(t, mnt, ix2)
		return got
	}

	// One package first: the smallest change a binhost sees.
	var one string
	err = filepath.WalkDir(lateDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && one == "" && d.Type().IsRegular() && strings.HasSuffix(p, ".xpak") {
			one = p
		}
		return err
	})
	if err != nil || one == "" {
		t.Fatalf("no .xpak in %s: %v", lateDir, err)
	}
	rel, _ := filepath.Rel(lateDir, one)
	oneDir := filepath.Join(t.TempDir(), "one")
	if err := os.MkdirAll(filepath.Dir(filepath.Join(oneDir, rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "cp", "-a", one, filepath.Join(oneDir, rel))
	sumOne := sha1File(t, one)

	t.Run("one-package", func(t *testing.T) {
		got := step(t, "import of "+rel, 1, oneDir)
		if len(got) != 1 || got[0].Get("SHA1") != sumOne {
			t.Errorf("want exactly the new package %s (SHA1 %s) downloaded, got %v", rel, sumOne, got)
		}
	})
	t.Run("fixture", func(t *testing.T) {
		want := fixturePackages(t, map[string]string{late: lateDir})
		got := step(t, "import of "+late, len(want)-1, lateDir)
		gotSHA := map[string]bool{}
		for _, p := range got {
			gotSHA[p.Get("SHA1")] = true
		}
		for sha, where := range want {
			if !gotSHA[sha] && sha != sumOne {
				t.Errorf("new package %s/%s (SHA1 %s) was not downloaded", late, where[0].Rel, sha)
			}
		}
		if len(got) > len(want) {
			t.Errorf("downloaded %d packages, the fixture adds at most %d", len(got), len(want))
		}
		all := map[string]string{late: lateDir}
		for k, v := range sv.Dirs {
			all[k] = v
		}
		checkIndexCoversFixtures(t, cache.Index, fixturePackages(t, all))
	})
}

func sha1File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// bhFirstDiff describes the first differing line of two texts.
func bhFirstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q vs %q", i+1, x, y)
		}
	}
	return "no line differs"
}

// bhMagic names the compressor of an xpak's tarball by its magic bytes.
func bhMagic(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("BZh")):
		return "bzip2"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case bytes.HasPrefix(head, []byte{0x04, 0x22, 0x4d, 0x18}):
		return "lz4"
	}
	return ""
}
