package integration

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nginx in front of a daemon that dies: its open_file_cache holds
// descriptors of the dead mount, which read nothing once the watchdog has
// aborted the connection (issue 21, item 4).

// download is one GET of a package through nginx, read to the end.
type download struct {
	Status     int
	Length     int64 // Content-Length, -1 if absent
	Got        int64 // body bytes received
	SHA1       string
	Err        string // transport error, e.g. the body ended early
	Truncation bool   // Got < Length
}

func (d download) String() string {
	return fmt.Sprintf("status %d, %d of %d bytes, sha1 %s, err %q", d.Status, d.Got, d.Length, d.SHA1, d.Err)
}

// fetchAll downloads every path once through url, with a fresh client per
// call (no connection carries over a crash).
func fetchAll(url string, paths []string) map[string]download {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()
	res := map[string]download{}
	for _, p := range paths {
		var d download
		resp, err := c.Get(url + "/" + p)
		if err != nil {
			d.Err = err.Error()
			res[p] = d
			continue
		}
		d.Status, d.Length = resp.StatusCode, resp.ContentLength
		h := sha1.New()
		d.Got, err = io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil {
			d.Err = err.Error()
		}
		d.SHA1 = hex.EncodeToString(h.Sum(nil))
		d.Truncation = d.Length >= 0 && d.Got < d.Length
		res[p] = d
	}
	return res
}

// evictPages drops the page cache of the file at path (the test's
// descriptor is closed again before the daemon is killed).
func evictPages(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise(DONTNEED) %s: %v", path, err)
	}
}

// crashPKGDIR writes a PKGDIR of synthetic multi-instance packages whose
// sizes straddle what matters to a download from a dead mount: a few
// pages, just under the 1 MiB passthrough threshold (the 925 KiB
// file), and over it.
func crashPKGDIR(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sizes := [][]int64{{20 << 10}, {300 << 10}, {900 << 10}, {3 << 20}}
	for i, files := range sizes {
		p := benchPkg{Cat: "app-misc", PN: fmt.Sprintf("crashfetch%d", i), Ver: "1.0", BuildID: 1, Files: files, Seed: uint64(i + 1)}
		if _, err := benchWritePackage(dir, p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestNginxCrashRemount: nginx, configured as shipped, serves complete
// files again as soon as the daemon killed with kill -9 is mounted again,
// without a reload. Every package name is fetched twice (nginx then holds
// its descriptor in open_file_cache), the pages nginx read are evicted (as
// memory pressure does with time: a descriptor of a dead mount still reads
// what is cached), the daemon is killed: until the remount no download may
// be complete with the wrong bytes; after it, every download by every name
// must be complete and byte-identical. (Before per-mount inode numbers and
// open_file_cache_valid 0s, nginx kept the dead descriptors, whose inode
// numbers the remount gave again, and cut every download short until
// `nginx -s reload`.)
func TestNginxCrashRemount(t *testing.T) {
	needBinary(t)
	needNginx(t)
	site, err := os.ReadFile(filepath.Join(repoRoot, "contrib/nginx/pkgdirfs-binhost.conf"))
	if err != nil {
		t.Fatal(err)
	}
	checkSiteMatchesTemplate(t, string(site)) // the configuration under test is the shipped one
	state := filepath.Join(t.TempDir(), "state")
	importOK(t, state, importSummary{4, 0, 0}, crashPKGDIR(t))
	importOK(t, state, importSummary{20, 0, 0}, extractFixture(t, "xpak-bzip2-flat"))
	mnt, err := os.MkdirTemp("", "pkgdirfs-it-ngcrash-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	var cur *crashDaemon
	t.Cleanup(func() {
		if cur != nil {
			_ = cur.cmd.Process.Signal(syscall.SIGTERM)
			cur.wait(t, "cleanup SIGTERM")
		}
		if _, ok := mountedFSType(mnt); ok {
			run(t, "", toolTimeout, "umount", "-l", mnt)
		}
		os.Remove(mnt)
		// The watchdog's ERROR after the kill -9 is the one expected.
		checkDaemonLog(t, &mountInfo{Log: logPath, AllowErrors: []string{"the daemon died without unmounting"}})
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", tailFile(logPath, 8000))
		}
	})
	cur = startCrashDaemon(t, state, mnt, logPath, "first mount", "--allow-other")
	ng := startNginx(t, mnt) // after the daemon's cleanup: stopped first

	// Every package name the mount shows (multi-instance, flat and All/:
	// nginx caches a descriptor per URI), with its sha1 read from the mount.
	var paths []string
	for p := range mountFiles(t, mnt) {
		if !strings.HasPrefix(p, "Packages") {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	want := sha1Paths(t, mnt, paths)
	if len(want) != len(paths) || len(paths) < 3*24 {
		t.Fatalf("want the sha1 of at least 72 package names (24 instances in three layouts), got %d of %d", len(want), len(paths))
	}
	check := func(label string, got map[string]download) {
		t.Helper()
		bad := 0
		for _, p := range paths {
			if d := got[p]; d.Status != 200 || d.Err != "" || d.Truncation || d.SHA1 != want[p] {
				if bad++; bad <= 10 {
					t.Errorf("%s: GET /%s: want 200 and sha1 %s, got %s", label, p, want[p], d)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d downloads incomplete or wrong", label, bad, len(paths))
		}
	}
	check("before the crash", fetchAll(ng.URL, paths))
	check("before the crash, again (nginx's cached descriptors)", fetchAll(ng.URL, paths))

	for _, p := range paths {
		evictPages(t, filepath.Join(mnt, p))
	}
	if err := syscall.Kill(cur.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	cur.wait(t, "kill -9")
	cur = nil
	if !pollFor(mountTimeout, func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte("the daemon died without unmounting"))
	}) {
		t.Fatalf("the watchdog did not abort the dead mount's connection within %v", mountTimeout)
	}
	// Down: a 404 where the kernel must ask the dead daemon, a body cut
	// short where it answers stat() from its cache (the client sees it end
	// before Content-Length), but never one that is complete and wrong.
	statuses := map[string]int{}
	for p, d := range fetchAll(ng.URL, paths) {
		switch {
		case d.Status != 200:
			statuses[fmt.Sprint(d.Status)]++
		case d.Err != "" || d.Truncation:
			statuses["200 cut short"]++
		case d.SHA1 != want[p]:
			t.Errorf("with the daemon dead: GET /%s: a complete body with the wrong bytes: %s", p, d)
		default:
			statuses["200 complete"]++
		}
	}
	t.Logf("with the daemon dead, nginx answered %v", statuses)

	cur = startCrashDaemon(t, state, mnt, logPath, "remount after kill -9", "--allow-other")
	marker := "===== remount after kill -9"
	if !pollFor(mountTimeout, func() bool {
		b, _ := os.ReadFile(logPath)
		i := bytes.LastIndex(b, []byte(marker))
		return i >= 0 && bytes.Contains(b[i:], []byte("msg=mounted"))
	}) {
		t.Fatalf("the remount did not log msg=mounted within %v", mountTimeout)
	}
	check("after kill -9 and remount", fetchAll(ng.URL, paths))
	check("after kill -9 and remount, again", fetchAll(ng.URL, paths))
}
