package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------- helpers

// wReadIndex reads and parses MNT/Packages.
func wReadIndex(t *testing.T, mnt string) (*pkgIndex, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatalf("read MNT/Packages: %v", err)
	}
	idx, err := parseIndex(raw)
	if err != nil {
		t.Fatalf("MNT/Packages: %v\n%s", err, clip(raw, 3000))
	}
	return idx, raw
}

// wInstKey is the identity of an instance as the index shows it.
func wInstKey(in instance) string {
	return fmt.Sprintf("%s build_id=%d sha1=%s size=%d mtime=%d", in.CPV, in.BuildID, in.SHA1, in.Size, in.Mtime)
}

func wInstSet(idx *pkgIndex) map[string]bool {
	s := map[string]bool{}
	for _, in := range instances(idx) {
		s[wInstKey(in)] = true
	}
	return s
}

// wSetDiff describes what want has that got lacks and vice versa ("" if equal).
func wSetDiff(want, got map[string]bool) string {
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	clipList := func(l []string) string {
		if len(l) > 12 {
			return strings.Join(l[:12], "\n    ") + fmt.Sprintf("\n    ... (%d more)", len(l)-12)
		}
		return strings.Join(l, "\n    ")
	}
	return fmt.Sprintf("%d missing, %d extra (want %d, got %d)\n  missing:\n    %s\n  extra:\n    %s",
		len(missing), len(extra), len(want), len(got), clipList(missing), clipList(extra))
}

// wErrno extracts the errno of an os/syscall error (0 if none).
func wErrno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// wWantErrno fails unless err carries errno want.
func wWantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: want %v (%d), got success", what, want, int(want))
		return
	}
	if got := wErrno(err); got != want {
		t.Errorf("%s: want %v (%d), got %v (errno %d)", what, want, int(want), err, int(got))
	}
}

func wOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wLstat(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func wReadAt(t *testing.T, f *os.File, n int, off int64) string {
	t.Helper()
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		t.Fatalf("pread %s (%d bytes at %d): %v", f.Name(), n, off, err)
	}
	return string(buf[:m])
}

func wFileContent(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func wSHA1(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// wDaemonLog is the daemon log without its routine lines (mounted,
// committed, removed), for failure messages: the harness prints its start.
func wDaemonLog(mi *mountInfo) string {
	b, err := os.ReadFile(mi.Log)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	var keep []string
	routine := 0
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(l, "level=INFO") && (strings.Contains(l, "msg=committed") || strings.Contains(l, "msg=mounted") || strings.Contains(l, "msg=removed")) {
			routine++
			continue
		}
		keep = append(keep, l)
	}
	return fmt.Sprintf("daemon log %s (%d routine INFO lines left out):\n%s", mi.Log, routine, clip([]byte(strings.Join(keep, "\n")), 6000))
}

// ---------------------------------------------------------------- xpak builder

// wXpakBlock builds an XPAK block (portage-facts §1): "XPAKPACK", BE32
// index length, BE32 data length, the index entries (BE32 name length, name,
// BE32 data offset, BE32 data length), the data, "XPAKSTOP".
func wXpakBlock(meta map[string]string) []byte {
	keys := sortedKeys(meta)
	var index, data bytes.Buffer
	be := func(w *bytes.Buffer, n int) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n))
		w.Write(b[:])
	}
	for _, k := range keys {
		v := meta[k]
		be(&index, len(k))
		index.WriteString(k)
		be(&index, data.Len())
		be(&index, len(v))
		data.WriteString(v)
	}
	var out bytes.Buffer
	out.WriteString("XPAKPACK")
	be(&out, index.Len())
	be(&out, data.Len())
	out.Write(index.Bytes())
	out.Write(data.Bytes())
	out.WriteString("XPAKSTOP")
	return out.Bytes()
}

// wBuild is build i of app-misc/PN-1.0, an xpak package of its own bytes
// whose BUILD_TIME grows with i.
func wBuild(t *testing.T, pn string, i int) []byte {
	t.Helper()
	meta := map[string]string{
		"CATEGORY":   "app-misc\n",
		"PF":         pn + "-1.0\n",
		"SLOT":       "0\n",
		"EAPI":       "8\n",
		"BUILD_TIME": strconv.Itoa(1700000000+i) + "\n",
		"USE":        "amd64 elibc_glibc kernel_linux\n",
	}
	return wXpakPackage(t, meta, "usr/share/"+pn+"/build", fmt.Sprintf("build %d\n", i))
}

// wXpakPackage builds an xpak binary package: a plain tar with one small
// file, the XPAK block, BE32(len(block)) and "STOP".
func wXpakPackage(t *testing.T, meta map[string]string, fileName, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: fileName, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	block := wXpakBlock(meta)
	buf.Write(block)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(block)))
	buf.Write(n[:])
	buf.WriteString("STOP")
	return buf.Bytes()
}

// ---------------------------------------------------------------- 1. migration by copy

type wCopyTool struct {
	name   string
	script func(src, mnt string) string
}

var wCopyTools = []wCopyTool{
	{"cp", func(src, mnt string) string { return "cp -a " + shQuote(src+"/.") + " " + shQuote(mnt+"/") }},
	{"rsync", func(src, mnt string) string { return "rsync -a " + shQuote(src+"/") + " " + shQuote(mnt+"/") }},
	{"tar", func(src, mnt string) string {
		return "tar -C " + shQuote(src) + " -cf - . | tar -C " + shQuote(mnt) + " -xf -"
	}},
}

// TestWriteMigration: copying a PKGDIR into a fresh mount with cp -a, rsync
// -a or a tar pipe gives the same index (header and instances, but
// TIMESTAMP) as `pkgdirfs import` of it; copying again adds nothing.
func TestWriteMigration(t *testing.T) {
	t.Parallel()
	for _, fx := range allFixtures {
		t.Run(fx, func(t *testing.T) {
			t.Parallel()
			src := extractFixture(t, fx)
			refState := t.TempDir()
			r, sum := importDirs(t, refState, src)
			if r.Code != 0 || sum.Invalid != 0 {
				t.Fatalf("reference import of %s: want exit 0 and invalid 0: %s", fx, r)
			}
			ix := runCLI(t, "index", "--state", refState)
			if ix.Code != 0 {
				t.Fatalf("reference `pkgdirfs index`: %s", ix)
			}
			ref, err := parseIndex(ix.Stdout)
			if err != nil {
				t.Fatalf("reference index: %v", err)
			}
			refSet := wInstSet(ref)
			if len(refSet) == 0 {
				t.Fatalf("reference import of %s has no instances", fx)
			}
			for _, tool := range wCopyTools {
				t.Run(tool.name, func(t *testing.T) {
					t.Parallel()
					state := t.TempDir()
					mi := mountFSInfo(t, state)
					mnt := mi.Dir
					script := tool.script(src, mnt)
					defer func() {
						if t.Failed() {
							t.Logf("%s", wDaemonLog(mi))
						}
					}()

					cr, timedOut := wRunTool(t, script)
					if timedOut {
						t.Errorf("%s into a fresh mount did not finish within %v (killed): %s", tool.name, wToolTimeout, cr)
					} else if cr.Code != 0 {
						t.Errorf("%s into a fresh mount: want exit 0, got %s", tool.name, cr)
					}
					got, _ := wReadIndex(t, mnt)
					if d := firstDiff(ref.lines(), got.lines(), ignoreTimestamp); d != "" {
						t.Errorf("after `%s`: MNT/Packages differs from the index of `pkgdirfs import` (want) at %s", script, d)
					}
					if d := wSetDiff(refSet, wInstSet(got)); d != "" {
						t.Errorf("after `%s`: instances (CPV, BUILD_ID, SHA1, SIZE, MTIME) differ from import's: %s", script, d)
					}
					// The bytes behind each listed instance are the listed ones.
					wCheckSHA1s(t, mnt, got)

					if timedOut {
						return // a second run would hang the same way
					}
					// Again: nothing added.
					cr2, timedOut := wRunTool(t, script)
					if timedOut {
						t.Errorf("%s again did not finish within %v (killed): %s", tool.name, wToolTimeout, cr2)
					} else if cr2.Code != 0 {
						t.Errorf("%s again into the same mount: want exit 0, got %s", tool.name, cr2)
					}
					again, _ := wReadIndex(t, mnt)
					if d := firstDiff(got.lines(), again.lines(), ignoreTimestamp); d != "" {
						t.Errorf("repeating `%s` changed MNT/Packages (first copy = want) at %s", script, d)
					}
					if d := wSetDiff(wInstSet(got), wInstSet(again)); d != "" {
						t.Errorf("repeating `%s` changed the instance set: %s", script, d)
					}
				})
			}
		})
	}
}

// wToolTimeout bounds one copy of a fixture (a few MiB: about a second).
const wToolTimeout = 20 * time.Second

// wRunTool runs a bash pipeline in its own process group and kills the
// whole group after wToolTimeout, so that a tool spinning on the mount does
// not keep it busy (and the unmount of the cleanup can succeed).
func wRunTool(t *testing.T, script string) (cmdResult, bool) {
	t.Helper()
	cmd := exec.Command("bash", "-c", "set -o pipefail; "+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	res := cmdResult{Args: []string{"bash", "-c", script}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	done := make(chan struct{})
	var timedOut bool
	go func() {
		select {
		case <-done:
		case <-time.After(wToolTimeout):
			timedOut = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	_ = cmd.Wait()
	close(done)
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	res.Code = cmd.ProcessState.ExitCode()
	return res, timedOut
}

// wCheckSHA1s: sha1sum of every instance's PATH in the mount equals its SHA1 line.
func wCheckSHA1s(t *testing.T, mnt string, idx *pkgIndex) {
	t.Helper()
	var paths []string
	want := map[string]string{}
	for _, in := range instances(idx) {
		paths = append(paths, in.Path)
		want[in.Path] = in.SHA1
	}
	if len(paths) == 0 {
		return
	}
	r := run(t, mnt, toolTimeout, "sha1sum", append([]string{"--"}, paths...)...)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(r.Stdout), "\n"), "\n") {
		if sum, name, ok := strings.Cut(line, "  "); ok {
			got[name] = sum
		}
	}
	bad := 0
	for _, p := range paths {
		if got[p] != want[p] {
			bad++
			if bad <= 5 {
				t.Errorf("sha1sum MNT/%s = %q, Packages says SHA1: %s", p, got[p], want[p])
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d instances in all whose bytes do not match their SHA1 line (sha1sum stderr: %s)", bad, clip(r.Stderr, 1000))
	}
}

// ---------------------------------------------------------------- 2. concurrent writers

// TestWriteConcurrentFlat: 8 writers × 50 distinct packages of one CPV, all
// copied with cp onto the same flat name: 400 instances, build ids 1..400.
func TestWriteConcurrentFlat(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 8, 50
	const total = writers * perWriter
	const cpv = "app-misc/conc-1.0"
	gen := t.TempDir()
	wantSHA := map[string]bool{}
	files := make([]string, total)
	var newestSHA string // highest BUILD_TIME: the last one generated
	for i := 0; i < total; i++ {
		b := wBuild(t, "conc", i)
		files[i] = filepath.Join(gen, fmt.Sprintf("conc-%03d.tbz2", i))
		if err := os.WriteFile(files[i], b, 0o644); err != nil {
			t.Fatal(err)
		}
		wantSHA[wSHA1(b)] = true
		newestSHA = wSHA1(b)
	}
	if len(wantSHA) != total {
		t.Fatalf("generated %d distinct packages, want %d", len(wantSHA), total)
	}

	// fresh: the 8 writers start on a name that does not exist yet (the
	// first creations race, as 8 cp onto one new name race on any
	// filesystem); seeded: the first package is copied alone first, so every
	// concurrent cp opens an existing name with O_TRUNC.
	for _, seeded := range []bool{false, true} {
		name := "fresh"
		if seeded {
			name = "seeded"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			wConcurrentCopies(t, files, wantSHA, newestSHA, seeded)
		})
	}
}

// wConcurrentCopies copies files (distinct packages of app-misc/conc-1.0)
// onto MNT/app-misc/conc-1.0.tbz2 from 8 concurrent writers and checks the
// result.
func wConcurrentCopies(t *testing.T, files []string, wantSHA map[string]bool, newestSHA string, seeded bool) {
	const writers = 8
	const cpv = "app-misc/conc-1.0"
	total := len(files)
	state := t.TempDir()
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	if err := os.Mkdir(filepath.Join(mnt, "app-misc"), 0o755); err != nil {
		t.Fatalf("mkdir MNT/app-misc: %v", err)
	}
	dst := filepath.Join(mnt, "app-misc", "conc-1.0.tbz2")

	perWriter := total / writers
	first := 0
	if seeded {
		if r := run(t, "", toolTimeout, "cp", files[0], dst); r.Code != 0 {
			t.Fatalf("seeding: cp of the first package onto the new name: want exit 0: %s\n%s", r, wDaemonLog(mi))
		}
		first = 1
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	raced := 0
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < perWriter; j++ {
				i := w*perWriter + j
				if i < first {
					continue
				}
				src := files[i]
				out, err := exec.CommandContext(ctx, "cp", src, dst).CombinedOutput()
				if err != nil && !seeded && (bytes.Contains(out, []byte("File exists")) || bytes.Contains(out, []byte("dangling symlink"))) {
					// cp stats the name, sees nothing, and creates it with
					// O_EXCL; if another writer's package was committed in
					// between, the kernel answers EEXIST, as on any
					// filesystem (cp then finds the flat name's symlink and,
					// having seen nothing there a moment before, calls it
					// dangling). Only before the first commit: once the
					// name exists it never goes away in this test.
					mu.Lock()
					raced++
					mu.Unlock()
					out, err = exec.CommandContext(ctx, "cp", src, dst).CombinedOutput()
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("writer %d: cp %s %s: %v: %s", w, src, dst, err, out))
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d cp runs failed (want all exit 0); first ones:\n%s", len(failures), total,
			strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if raced >= writers {
		t.Errorf("%d cp runs met EEXIST on the flat name; the creation race can hit at most the %d writers' other first copies",
			raced, writers-1)
	} else if raced > 0 {
		t.Logf("%d cp runs raced the first creation of the name (EEXIST, copied again)", raced)
	}

	idx, _ := wReadIndex(t, mnt)
	var mine []instance
	for _, in := range instances(idx) {
		if in.CPV == cpv {
			mine = append(mine, in)
		}
	}
	if len(mine) != total {
		t.Errorf("Packages lists %d instances of %s, want %d", len(mine), cpv, total)
	}
	ids := map[int64]int{}
	gotSHA := map[string]bool{}
	var paths []string
	shaOf := map[string]string{}
	for _, in := range mine {
		ids[in.BuildID]++
		gotSHA[in.SHA1] = true
		mp, err := multiPath(cpv, strconv.FormatInt(in.BuildID, 10), "xpak")
		if err != nil {
			t.Fatal(err)
		}
		if in.Path != mp {
			t.Errorf("instance BUILD_ID %d: PATH %q, want %q", in.BuildID, in.Path, mp)
		}
		paths = append(paths, mp)
		shaOf[mp] = in.SHA1
	}
	var badIDs []string
	for id, n := range ids {
		if n != 1 || id < 1 || id > int64(total) {
			badIDs = append(badIDs, fmt.Sprintf("%d×%d", id, n))
		}
	}
	if len(ids) != total || len(badIDs) > 0 {
		sort.Strings(badIDs)
		t.Errorf("BUILD_IDs: want each of 1..%d exactly once, got %d distinct; out of range or repeated (id×count): %v",
			total, len(ids), badIDs[:min(len(badIDs), 20)])
	}
	if d := wSetDiff(wantSHA, gotSHA); d != "" {
		t.Errorf("SHA1s in Packages differ from the generated packages' SHA1s: %s", d)
	}
	if len(paths) > 0 {
		_, missing, stderr := statPaths(t, mnt, paths)
		if len(missing) > 0 {
			t.Errorf("%d multi-instance paths listed in Packages do not exist, e.g. %v: %s", len(missing), missing[:min(len(missing), 5)], clip([]byte(stderr), 500))
		} else {
			sums := sha1Paths(t, mnt, paths)
			bad := 0
			for _, p := range paths {
				if sums[p] != shaOf[p] {
					if bad++; bad <= 5 {
						t.Errorf("sha1sum MNT/%s = %s, Packages says %s", p, sums[p], shaOf[p])
					}
				}
			}
		}
	}
	// The flat and All/ names show the newest instance (highest BUILD_TIME).
	flat, all := flatNames(cpv, "xpak")
	st, missing, stderr := statPaths(t, mnt, []string{flat, all})
	if len(missing) > 0 {
		t.Errorf("after the copies: %v missing: %s", missing, stderr)
	} else {
		sums := sha1Paths(t, mnt, []string{flat, all})
		for _, n := range []string{flat, all} {
			if sums[n] != newestSHA {
				t.Errorf("MNT/%s (%s) has sha1 %s, want the newest package's (highest BUILD_TIME) %s; listed in Packages: %v",
					n, st[n], sums[n], newestSHA, gotSHA[sums[n]])
			}
		}
	}
	if t.Failed() {
		t.Logf("%s", wDaemonLog(mi))
	}

}

// ---------------------------------------------------------------- 3. scratch files

// TestWriteScratch: non-package files behave like a normal filesystem.
func TestWriteScratch(t *testing.T) {
	t.Parallel()
	_, _, mi, before, _ := setupMounted(t, "xpak-zstd-multi")
	mnt := mi.Dir

	t.Run("tempfile", func(t *testing.T) {
		f, err := os.CreateTemp(mnt, ".tmp-")
		wOK(t, "create temp file in MNT", err)
		_, err = f.WriteString("temporary bytes\n")
		wOK(t, "write", err)
		wOK(t, "close", f.Close())
		if got := wFileContent(t, f.Name()); got != "temporary bytes\n" {
			t.Errorf("read back %s: %q", f.Name(), got)
		}
		if st := wLstat(t, f.Name()); st.Size != 16 || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink != 1 {
			t.Errorf("stat %s: size=%d mode=%o nlink=%d, want 16, regular, 1", f.Name(), st.Size, st.Mode, st.Nlink)
		}
		ents, err := os.ReadDir(mnt)
		wOK(t, "readdir MNT", err)
		found := false
		for _, e := range ents {
			found = found || e.Name() == filepath.Base(f.Name())
		}
		if !found {
			t.Errorf("readdir MNT does not list the temp file %s", filepath.Base(f.Name()))
		}
		wOK(t, "unlink temp file", os.Remove(f.Name()))
		_, err = os.Lstat(f.Name())
		wWantErrno(t, "lstat after unlink", err, syscall.ENOENT)
	})

	t.Run("excl", func(t *testing.T) {
		p := filepath.Join(mnt, "lockfile.lock")
		fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
		wOK(t, "first O_CREAT|O_EXCL", err)
		syscall.Close(fd)
		fd2, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
		if err == nil {
			syscall.Close(fd2)
		}
		wWantErrno(t, "second O_CREAT|O_EXCL of "+p, err, syscall.EEXIST)
		// also in a category directory that holds instances
		cats := wCategories(t, mnt)
		if len(cats) == 0 {
			t.Fatal("no category in the index")
		}
		p2 := filepath.Join(mnt, cats[0], ".pkg.lock")
		fd, err = syscall.Open(p2, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
		wOK(t, "first O_CREAT|O_EXCL of "+p2, err)
		syscall.Close(fd)
		fd2, err = syscall.Open(p2, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
		if err == nil {
			syscall.Close(fd2)
		}
		wWantErrno(t, "second O_CREAT|O_EXCL of "+p2, err, syscall.EEXIST)
	})

	t.Run("seek-overwrite", func(t *testing.T) {
		p := filepath.Join(mnt, "seek.partial")
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		wOK(t, "create", err)
		defer f.Close()
		_, err = f.WriteString("hello world, again")
		wOK(t, "write", err)
		_, err = f.Seek(0, io.SeekStart)
		wOK(t, "seek 0", err)
		_, err = f.WriteString("HELLO")
		wOK(t, "overwrite", err)
		_, err = f.WriteAt([]byte("W"), 6)
		wOK(t, "pwrite", err)
		if got := wReadAt(t, f, 100, 0); got != "HELLO World, again" {
			t.Errorf("pread after overwrite: %q, want %q", got, "HELLO World, again")
		}
		wOK(t, "close", f.Close())
		if got := wFileContent(t, p); got != "HELLO World, again" {
			t.Errorf("content after close: %q", got)
		}
		if st := wLstat(t, p); st.Size != 18 {
			t.Errorf("size %d, want 18", st.Size)
		}
	})

	t.Run("ftruncate-append", func(t *testing.T) {
		p := filepath.Join(mnt, "append.tmp")
		wOK(t, "write", os.WriteFile(p, []byte("0123456789"), 0o644))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		wOK(t, "open O_APPEND", err)
		wOK(t, "ftruncate 4", f.Truncate(4))
		var st syscall.Stat_t
		wOK(t, "fstat", syscall.Fstat(int(f.Fd()), &st))
		if st.Size != 4 {
			t.Errorf("fstat after ftruncate(4): size %d", st.Size)
		}
		_, err = f.WriteString("XY")
		wOK(t, "append", err)
		wOK(t, "close", f.Close())
		if got := wFileContent(t, p); got != "0123XY" {
			t.Errorf("after shrink to 4 and append: %q, want %q", got, "0123XY")
		}
		// grow by truncate
		wOK(t, "truncate 8", os.Truncate(p, 8))
		if got := wFileContent(t, p); got != "0123XY\x00\x00" {
			t.Errorf("after truncate(8): %q", got)
		}
	})

	t.Run("two-fds", func(t *testing.T) {
		p := filepath.Join(mnt, "twofd.tmp")
		a, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o644)
		wOK(t, "create", err)
		defer a.Close()
		_, err = a.WriteString("aaaaaaaa")
		wOK(t, "write a", err)
		b, err := os.OpenFile(p, os.O_RDWR, 0)
		wOK(t, "open second fd", err)
		defer b.Close()
		if got := wReadAt(t, b, 100, 0); got != "aaaaaaaa" {
			t.Errorf("fd2 reads %q, want %q", got, "aaaaaaaa")
		}
		_, err = b.WriteAt([]byte("bb"), 2)
		wOK(t, "fd2 pwrite", err)
		if got := wReadAt(t, a, 100, 0); got != "aabbaaaa" {
			t.Errorf("fd1 reads %q after fd2's write, want %q", got, "aabbaaaa")
		}
		_, err = a.WriteString("cc") // fd1's offset is 8
		wOK(t, "fd1 write", err)
		wOK(t, "close fd1", a.Close())
		if got := wReadAt(t, b, 100, 0); got != "aabbaaaacc" {
			t.Errorf("fd2 reads %q after fd1 closed, want %q", got, "aabbaaaacc")
		}
		wOK(t, "close fd2", b.Close())
		if got := wFileContent(t, p); got != "aabbaaaacc" {
			t.Errorf("content %q", got)
		}
	})

	t.Run("rename", func(t *testing.T) {
		a, b := filepath.Join(mnt, "ren-a.tmp"), filepath.Join(mnt, "ren-b.tmp")
		wOK(t, "write a", os.WriteFile(a, []byte("A"), 0o644))
		wOK(t, "write b", os.WriteFile(b, []byte("BB"), 0o644))
		inoA := wLstat(t, a).Ino
		wOK(t, "rename a -> b (replacing)", os.Rename(a, b))
		_, err := os.Lstat(a)
		wWantErrno(t, "lstat a after rename", err, syscall.ENOENT)
		if got := wFileContent(t, b); got != "A" {
			t.Errorf("b after rename: %q, want %q", got, "A")
		}
		if st := wLstat(t, b); st.Ino != inoA || st.Size != 1 || st.Nlink != 1 {
			t.Errorf("b after rename: ino=%d size=%d nlink=%d, want ino %d (a's), size 1, nlink 1", st.Ino, st.Size, st.Nlink, inoA)
		}
		// across directories
		d1, d2 := filepath.Join(mnt, "dir1"), filepath.Join(mnt, "dir2")
		wOK(t, "mkdir dir1", os.Mkdir(d1, 0o755))
		wOK(t, "mkdir dir2", os.Mkdir(d2, 0o755))
		x, y := filepath.Join(d1, "x"), filepath.Join(d2, "y")
		wOK(t, "write x", os.WriteFile(x, []byte("XXX"), 0o644))
		wOK(t, "write y", os.WriteFile(y, []byte("Y"), 0o644))
		inoX := wLstat(t, x).Ino
		wOK(t, "rename dir1/x -> dir2/y (replacing)", os.Rename(x, y))
		_, err = os.Lstat(x)
		wWantErrno(t, "lstat dir1/x after rename", err, syscall.ENOENT)
		if got := wFileContent(t, y); got != "XXX" {
			t.Errorf("dir2/y after rename: %q, want %q", got, "XXX")
		}
		if st := wLstat(t, y); st.Ino != inoX {
			t.Errorf("dir2/y after rename: ino=%d, want %d (x's)", st.Ino, inoX)
		}
		ents, err := os.ReadDir(d1)
		wOK(t, "readdir dir1", err)
		if len(ents) != 0 {
			t.Errorf("dir1 after moving x out: %d entries", len(ents))
		}
		// into a category directory that holds instances, and back
		cats := wCategories(t, mnt)
		if len(cats) > 0 {
			z := filepath.Join(mnt, cats[0], ".z.tmp")
			wOK(t, "rename dir2/y -> CAT/.z.tmp", os.Rename(y, z))
			if got := wFileContent(t, z); got != "XXX" {
				t.Errorf("%s: %q", z, got)
			}
			wOK(t, "rename back", os.Rename(z, y))
		}
	})

	t.Run("link", func(t *testing.T) {
		p := filepath.Join(mnt, ".lock.host.123")
		l := filepath.Join(mnt, "pkgdir.lock")
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		wOK(t, "create", err)
		defer f.Close()
		wOK(t, "link", os.Link(p, l))
		sp, sl := wLstat(t, p), wLstat(t, l)
		if sp.Ino != sl.Ino {
			t.Errorf("link: st_ino %d vs %d, want equal", sp.Ino, sl.Ino)
		}
		if sp.Nlink != 2 || sl.Nlink != 2 {
			t.Errorf("link: st_nlink %d and %d, want 2", sp.Nlink, sl.Nlink)
		}
		var fst syscall.Stat_t
		wOK(t, "fstat", syscall.Fstat(int(f.Fd()), &fst))
		if fst.Nlink != 2 || fst.Ino != sp.Ino {
			t.Errorf("fstat of the open file after link: nlink=%d ino=%d, want 2 and %d (Portage's hardlink lock check)", fst.Nlink, fst.Ino, sp.Ino)
		}
		err = os.Link(p, l)
		wWantErrno(t, "link onto an existing name", err, syscall.EEXIST)
		_, err = f.WriteString("via p")
		wOK(t, "write", err)
		if got := wFileContent(t, l); got != "via p" {
			t.Errorf("read via the link: %q", got)
		}
		wOK(t, "unlink link", os.Remove(l))
		if st := wLstat(t, p); st.Nlink != 1 {
			t.Errorf("after unlinking the link: st_nlink=%d, want 1", st.Nlink)
		}
		wOK(t, "fstat", syscall.Fstat(int(f.Fd()), &fst))
		if fst.Nlink != 1 {
			t.Errorf("fstat after unlinking the link: st_nlink=%d, want 1", fst.Nlink)
		}
	})

	t.Run("unlink-open", func(t *testing.T) {
		p := filepath.Join(mnt, "open-unlinked.tmp")
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o644)
		wOK(t, "create", err)
		defer f.Close()
		_, err = f.WriteString("still here")
		wOK(t, "write", err)
		wOK(t, "unlink", os.Remove(p))
		_, err = os.Lstat(p)
		wWantErrno(t, "lstat after unlink", err, syscall.ENOENT)
		if got := wReadAt(t, f, 100, 0); got != "still here" {
			t.Errorf("pread of the unlinked open file: %q", got)
		}
		_, err = f.WriteAt([]byte("!"), 10)
		wOK(t, "pwrite to the unlinked open file", err)
		if got := wReadAt(t, f, 100, 0); got != "still here!" {
			t.Errorf("pread after pwrite: %q", got)
		}
		var st syscall.Stat_t
		wOK(t, "fstat", syscall.Fstat(int(f.Fd()), &st))
		if st.Size != 11 || st.Nlink != 0 {
			t.Errorf("fstat of the unlinked file: size=%d nlink=%d, want 11 and 0", st.Size, st.Nlink)
		}
	})

	t.Run("chmod-chown", func(t *testing.T) {
		p := filepath.Join(mnt, "perm.tmp")
		wOK(t, "write", os.WriteFile(p, []byte("x"), 0o644))
		wOK(t, "chmod 0640", syscall.Chmod(p, 0o640))
		if st := wLstat(t, p); st.Mode&0o7777 != 0o640 {
			t.Errorf("after chmod 0640: mode %o", st.Mode&0o7777)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		wOK(t, "open", err)
		defer f.Close()
		wOK(t, "fchmod 0600", syscall.Fchmod(int(f.Fd()), 0o600))
		if st := wLstat(t, p); st.Mode&0o7777 != 0o600 {
			t.Errorf("after fchmod 0600: mode %o", st.Mode&0o7777)
		}
		wOK(t, "chown 1234:5678", syscall.Chown(p, 1234, 5678))
		if st := wLstat(t, p); st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("after chown 1234:5678: %d:%d", st.Uid, st.Gid)
		}
		wOK(t, "fchown 0:250", syscall.Fchown(int(f.Fd()), 0, 250))
		if st := wLstat(t, p); st.Uid != 0 || st.Gid != 250 {
			t.Errorf("after fchown 0:250: %d:%d", st.Uid, st.Gid)
		}
		wOK(t, "chown -1:-1", syscall.Chown(p, -1, -1))
		// setgid directory, as Portage makes category dirs
		d := filepath.Join(mnt, "sgid-dir")
		wOK(t, "mkdir", os.Mkdir(d, 0o755))
		wOK(t, "chmod 02775 dir", syscall.Chmod(d, 0o2775))
		wOK(t, "chown dir", syscall.Chown(d, 0, 250))
		if st := wLstat(t, d); st.Mode&0o7777 != 0o2775 || st.Gid != 250 {
			t.Errorf("dir after chmod 02775/chown :250: mode %o gid %d", st.Mode&0o7777, st.Gid)
		}
		// chmod of a category directory that holds instances
		if cats := wCategories(t, mnt); len(cats) > 0 {
			cd := filepath.Join(mnt, cats[0])
			wOK(t, "chmod 02775 "+cats[0], syscall.Chmod(cd, 0o2775))
			if st := wLstat(t, cd); st.Mode&0o7777 != 0o2775 {
				t.Errorf("category dir after chmod 02775: mode %o", st.Mode&0o7777)
			}
		}
	})

	t.Run("utimensat", func(t *testing.T) {
		p := filepath.Join(mnt, "times.tmp")
		wOK(t, "write", os.WriteFile(p, []byte("t"), 0o644))
		ts := []syscall.Timespec{{Sec: 1000000000, Nsec: 123456789}, {Sec: 1500000000, Nsec: 987654321}}
		wOK(t, "utimensat", syscall.UtimesNano(p, ts))
		st := wLstat(t, p)
		if st.Mtim.Sec != 1500000000 || st.Mtim.Nsec != 987654321 {
			t.Errorf("mtime after utimensat: %d.%09d, want 1500000000.987654321", st.Mtim.Sec, st.Mtim.Nsec)
		}
		if st.Atim.Sec != 1000000000 || st.Atim.Nsec != 123456789 {
			t.Errorf("atime after utimensat: %d.%09d, want 1000000000.123456789", st.Atim.Sec, st.Atim.Nsec)
		}
		if r := run(t, "", toolTimeout, "touch", "-d", "@1234567890", p); r.Code != 0 {
			t.Errorf("touch -d: %s", r)
		} else if st := wLstat(t, p); st.Mtim.Sec != 1234567890 {
			t.Errorf("mtime after touch -d @1234567890: %d", st.Mtim.Sec)
		}
	})

	t.Run("mkdir-rmdir", func(t *testing.T) {
		d := filepath.Join(mnt, "newdir")
		wOK(t, "mkdir", os.Mkdir(d, 0o750))
		if st := wLstat(t, d); st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Mode&0o7777 != 0o750 {
			t.Errorf("mkdir 0750: mode %o", st.Mode)
		}
		wWantErrno(t, "mkdir of an existing dir", os.Mkdir(d, 0o755), syscall.EEXIST)
		sub := filepath.Join(d, "sub")
		wOK(t, "mkdir sub", os.Mkdir(sub, 0o755))
		wOK(t, "write file in sub", os.WriteFile(filepath.Join(sub, "f"), []byte("f"), 0o644))
		wWantErrno(t, "rmdir non-empty newdir", syscall.Rmdir(d), syscall.ENOTEMPTY)
		wWantErrno(t, "rmdir non-empty newdir/sub", syscall.Rmdir(sub), syscall.ENOTEMPTY)
		wWantErrno(t, "rmdir of a file", syscall.Rmdir(filepath.Join(sub, "f")), syscall.ENOTDIR)
		wOK(t, "unlink f", os.Remove(filepath.Join(sub, "f")))
		wOK(t, "rmdir sub", syscall.Rmdir(sub))
		wOK(t, "rmdir newdir", syscall.Rmdir(d))
		_, err := os.Lstat(d)
		wWantErrno(t, "lstat after rmdir", err, syscall.ENOENT)
		if cats := wCategories(t, mnt); len(cats) > 0 {
			wWantErrno(t, "rmdir of category "+cats[0]+" holding instances", syscall.Rmdir(filepath.Join(mnt, cats[0])), syscall.ENOTEMPTY)
		}
	})

	t.Run("index-unchanged", func(t *testing.T) {
		after, _ := wReadIndex(t, mnt)
		if d := wSetDiff(wInstSet(before), wInstSet(after)); d != "" {
			t.Errorf("scratch writes changed the instances in Packages: %s", d)
		}
	})
}

// wCategories lists the category directories in the index of the mount.
func wCategories(t *testing.T, mnt string) []string {
	t.Helper()
	idx, _ := wReadIndex(t, mnt)
	seen := map[string]bool{}
	for _, in := range instances(idx) {
		cat, _, _ := strings.Cut(in.CPV, "/")
		seen[cat] = true
	}
	return sortedKeys(seen)
}

// ---------------------------------------------------------------- 4. unlink

// TestWriteUnlink: rm of a multi-instance name removes that instance from
// Packages and from its flat/All names, which then show the next newest;
// an open fd keeps reading the removed bytes.
func TestWriteUnlink(t *testing.T) {
	t.Parallel()
	_, _, mi, idx, _ := setupMounted(t, "xpak-bzip2-multi")
	mnt := mi.Dir
	byCPV := map[string][]instance{}
	for _, in := range instances(idx) {
		if in.Format == "xpak" {
			byCPV[in.CPV] = append(byCPV[in.CPV], in)
		}
	}
	var cpv string
	for _, c := range sortedKeys(byCPV) {
		if len(byCPV[c]) >= 2 {
			cpv = c
			break
		}
	}
	if cpv == "" {
		t.Fatalf("no CPV with two xpak instances in xpak-bzip2-multi")
	}
	insts := byCPV[cpv]
	victim := newest(insts)[[2]string{cpv, "xpak"}]
	var rest []instance
	for _, in := range insts {
		if in.BuildID != victim.BuildID {
			rest = append(rest, in)
		}
	}
	next := newest(rest)[[2]string{cpv, "xpak"}]
	flat, all := flatNames(cpv, "xpak")
	t.Logf("CPV %s: removing newest BUILD_ID %d (%s); next newest is BUILD_ID %d", cpv, victim.BuildID, victim.Path, next.BuildID)

	// The flat and All names show the victim now.
	sums := sha1Paths(t, mnt, []string{flat, all})
	if sums[flat] != victim.SHA1 || sums[all] != victim.SHA1 {
		t.Fatalf("before rm: %s and %s have sha1 %s / %s, want the newest instance's %s", flat, all, sums[flat], sums[all], victim.SHA1)
	}

	f, err := os.Open(filepath.Join(mnt, victim.Path))
	wOK(t, "open victim", err)
	defer f.Close()
	head := make([]byte, 100)
	_, err = io.ReadFull(f, head)
	wOK(t, "read the first 100 bytes of the victim", err)

	if r := run(t, "", toolTimeout, "rm", filepath.Join(mnt, victim.Path)); r.Code != 0 {
		t.Fatalf("rm MNT/%s: want exit 0: %s", victim.Path, r)
	}
	// Reads go on through the open fd: the full, correct bytes.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Errorf("seek the open fd after rm: %v", err)
	}
	all2, err := io.ReadAll(f)
	if err != nil {
		t.Errorf("read the open fd after rm: %v", err)
	} else if int64(len(all2)) != victim.Size || wSHA1(all2) != victim.SHA1 {
		t.Errorf("reading the open fd after rm: %d bytes sha1 %s, want %d bytes sha1 %s", len(all2), wSHA1(all2), victim.Size, victim.SHA1)
	}

	_, err = os.Lstat(filepath.Join(mnt, victim.Path))
	wWantErrno(t, "lstat MNT/"+victim.Path+" after rm", err, syscall.ENOENT)
	after, _ := wReadIndex(t, mnt)
	want := wInstSet(idx)
	delete(want, wInstKey(victim))
	if d := wSetDiff(want, wInstSet(after)); d != "" {
		t.Errorf("Packages after rm MNT/%s: want exactly that instance gone: %s", victim.Path, d)
	}
	if v, _ := get(after.Header, "PACKAGES"); v != strconv.Itoa(len(idx.Blocks)-1) {
		t.Errorf("PACKAGES: %s after rm, want %d", v, len(idx.Blocks)-1)
	}
	st, missing, stderr := statPaths(t, mnt, []string{flat, all, next.Path})
	if len(missing) > 0 {
		t.Errorf("after rm: %v missing (want them to show BUILD_ID %d): %s", missing, next.BuildID, stderr)
	} else {
		sums = sha1Paths(t, mnt, []string{flat, all})
		for _, n := range []string{flat, all} {
			if sums[n] != next.SHA1 || st[n].Ino != st[next.Path].Ino || st[n].Size != next.Size {
				shows := "another instance"
				if sums[n] == victim.SHA1 {
					shows = "the removed instance"
				}
				t.Errorf("right after rm returned: MNT/%s shows %s: sha1 %s %s, want the next newest instance (BUILD_ID %d, %s) sha1 %s %s; %s",
					n, shows, sums[n], st[n], next.BuildID, next.Path, next.SHA1, st[next.Path], wConverges(t, mnt, n, next.SHA1))
			}
		}
	}

	// Remove the rest: the flat and All names go away.
	for _, in := range rest {
		if r := run(t, "", toolTimeout, "rm", filepath.Join(mnt, in.Path)); r.Code != 0 {
			t.Errorf("rm MNT/%s: %s", in.Path, r)
		}
	}
	for _, n := range []string{flat, all} {
		_, err := os.Lstat(filepath.Join(mnt, n))
		if err == nil {
			// Already failed; how long the stale entry stays tells a
			// missing invalidation from a late one.
			note := "still there 3s later"
			start := time.Now()
			var gone error
			if pollFor(3*time.Second, func() bool { _, gone = os.Lstat(filepath.Join(mnt, n)); return gone != nil }) {
				note = fmt.Sprintf("gone %v later (%v): stale kernel entry, not invalidated before unlink returned", time.Since(start).Round(10*time.Millisecond), gone)
			}
			t.Errorf("lstat MNT/%s right after the last instance of %s was removed: want ENOENT, got success; %s", n, cpv, note)
		} else {
			wWantErrno(t, "lstat MNT/"+n+" after removing every instance of "+cpv, err, syscall.ENOENT)
		}
	}
	final, _ := wReadIndex(t, mnt)
	for _, in := range instances(final) {
		if in.CPV == cpv {
			t.Errorf("Packages still lists %s BUILD_ID %d after all its instances were removed", cpv, in.BuildID)
		}
	}
	// Still reading after everything went.
	if b := wReadAt(t, f, int(victim.Size)+10, 0); wSHA1([]byte(b)) != victim.SHA1 {
		t.Errorf("pread of the open fd after all instances of the CPV were removed: %d bytes, sha1 %s, want %s", len(b), wSHA1([]byte(b)), victim.SHA1)
	}
}

// wConverges tells whether (and when) name comes to have sha1 want within 3s:
// tells a stale kernel cache from a wrong catalog (for the message of a
// check that already failed).
func wConverges(t *testing.T, mnt, name, want string) string {
	t.Helper()
	start := time.Now()
	if pollFor(3*time.Second, func() bool {
		r := run(t, mnt, toolTimeout, "sha1sum", "--", name)
		sum, _, _ := strings.Cut(string(r.Stdout), "  ")
		return r.Code == 0 && sum == want
	}) {
		return fmt.Sprintf("it shows the right bytes %v later (stale kernel cache: not invalidated before unlink returned)", time.Since(start).Round(10*time.Millisecond))
	}
	return "still wrong 3s later"
}

// ---------------------------------------------------------------- 5. placeholder

// TestWritePlaceholder: an O_EXCL-created empty multi-instance name is a
// reservation; a package renamed onto it takes its build id.
func TestWritePlaceholder(t *testing.T) {
	t.Parallel()
	src := extractFixture(t, "gpkg-zstd-multi")
	fix := readFixtureIndex(t, src)
	// Hold back one instance (of a CPV with several) from the import.
	byCPV := map[string][]instance{}
	for _, in := range instances(fix) {
		byCPV[in.CPV] = append(byCPV[in.CPV], in)
	}
	var held instance
	for _, c := range sortedKeys(byCPV) {
		if len(byCPV[c]) >= 2 {
			held = byCPV[c][len(byCPV[c])-1]
			break
		}
	}
	if held.CPV == "" {
		t.Fatal("no CPV with two instances in gpkg-zstd-multi")
	}
	heldBytes, err := os.ReadFile(filepath.Join(src, held.Path))
	wOK(t, "read held-back package", err)
	wOK(t, "remove held-back package from the source", os.Remove(filepath.Join(src, held.Path)))

	state := t.TempDir()
	r, sum := importDirs(t, state, src)
	if r.Code != 0 || sum.Imported != len(fix.Blocks)-1 {
		t.Fatalf("import: want exit 0 and %d imported: %s", len(fix.Blocks)-1, r)
	}
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	defer func() {
		if t.Failed() {
			t.Logf("%s", wDaemonLog(mi))
		}
	}()
	idx, _ := wReadIndex(t, mnt)
	var maxID int64
	for _, in := range instances(idx) {
		if in.CPV == held.CPV && in.BuildID > maxID {
			maxID = in.BuildID
		}
	}
	n := maxID + 7
	if n == held.BuildID {
		n++
	}
	ph, err := multiPath(held.CPV, strconv.FormatInt(n, 10), "gpkg")
	if err != nil {
		t.Fatal(err)
	}
	phAbs := filepath.Join(mnt, ph)
	t.Logf("placeholder %s (held back %s BUILD_ID %d)", ph, held.Path, held.BuildID)

	fd, err := syscall.Open(phAbs, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
	wOK(t, "O_EXCL create of the placeholder "+ph, err)
	wOK(t, "close placeholder", syscall.Close(fd))

	st := wLstat(t, phAbs)
	if st.Size != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("placeholder %s: size %d mode %o, want a 0-byte regular file", ph, st.Size, st.Mode)
	}
	ents, err := os.ReadDir(filepath.Dir(phAbs))
	wOK(t, "readdir", err)
	listed := false
	for _, e := range ents {
		listed = listed || e.Name() == filepath.Base(ph)
	}
	if !listed {
		t.Errorf("readdir %s does not list the placeholder %s", filepath.Dir(ph), filepath.Base(ph))
	}
	idx2, _ := wReadIndex(t, mnt)
	for _, in := range instances(idx2) {
		if in.CPV == held.CPV && in.BuildID == n {
			t.Errorf("Packages lists the placeholder %s (BUILD_ID %d): %v", ph, n, in.Block)
		}
	}
	if d := wSetDiff(wInstSet(idx), wInstSet(idx2)); d != "" {
		t.Errorf("creating a placeholder changed the instances in Packages: %s", d)
	}

	fd2, err := syscall.Open(phAbs, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
	if err == nil {
		syscall.Close(fd2)
	}
	wWantErrno(t, "second O_EXCL create of the placeholder", err, syscall.EEXIST)

	// Write the package to a temp name in the same dir, rename it onto the placeholder.
	tmp := filepath.Join(filepath.Dir(phAbs), ".tmp."+filepath.Base(ph)+".12345")
	wOK(t, "write temp package", os.WriteFile(tmp, heldBytes, 0o644))
	if err := os.Rename(tmp, phAbs); err != nil {
		t.Fatalf("rename %s onto the placeholder %s: %v", tmp, ph, err)
	}
	idx3, _ := wReadIndex(t, mnt)
	var got []instance
	for _, in := range instances(idx3) {
		if in.SHA1 == held.SHA1 {
			got = append(got, in)
		}
	}
	if len(got) != 1 {
		t.Fatalf("after rename onto the placeholder: Packages lists %d instances with SHA1 %s, want 1", len(got), held.SHA1)
	}
	if got[0].CPV != held.CPV || got[0].BuildID != n || got[0].Path != ph || got[0].Size != int64(len(heldBytes)) {
		t.Errorf("after rename onto the placeholder: CPV %s BUILD_ID %d PATH %s SIZE %d, want %s %d %s %d",
			got[0].CPV, got[0].BuildID, got[0].Path, got[0].Size, held.CPV, n, ph, len(heldBytes))
	}
	if len(instances(idx3)) != len(instances(idx))+1 {
		t.Errorf("after rename: %d instances, want %d", len(instances(idx3)), len(instances(idx))+1)
	}
	if st := wLstat(t, phAbs); st.Size != int64(len(heldBytes)) {
		t.Errorf("stat %s after rename: size %d, want %d", ph, st.Size, len(heldBytes))
	}
	if sums := sha1Paths(t, mnt, []string{ph}); sums[ph] != held.SHA1 {
		t.Errorf("sha1sum %s after rename: %s, want %s", ph, sums[ph], held.SHA1)
	}
	_, err = os.Lstat(tmp)
	wWantErrno(t, "lstat of the temp name after rename", err, syscall.ENOENT)
}

// ---------------------------------------------------------------- 6. --read-only

// TestWriteReadOnly: with --read-only every write fails with EROFS, reads work.
func TestWriteReadOnly(t *testing.T) {
	t.Parallel()
	src, _, mi, idx, raw := setupMounted(t, "xpak-gzip-flat", "--read-only")
	mnt := mi.Dir
	insts := instances(idx)
	if len(insts) == 0 {
		t.Fatal("no instances")
	}
	in := insts[0]
	flat, _ := flatNames(in.CPV, in.Format)
	cat, _, _ := strings.Cut(in.CPV, "/")
	pkgFile := filepath.Join(src, flat)

	const erofs = "Read-only file system"
	for _, c := range [][]string{
		{"cp", pkgFile, filepath.Join(mnt, flat)},
		{"cp", pkgFile, filepath.Join(mnt, cat, "new-file.tbz2")},
		{"cp", pkgFile, filepath.Join(mnt, "somefile")},
		{"mkdir", filepath.Join(mnt, "newdir")},
		{"mkdir", filepath.Join(mnt, cat, "newdir")},
		{"rm", "-f", filepath.Join(mnt, in.Path)},
		{"rm", "-f", filepath.Join(mnt, flat)},
		{"touch", filepath.Join(mnt, "newfile")},
		{"touch", filepath.Join(mnt, in.Path)},
		{"touch", filepath.Join(mnt, "Packages")},
	} {
		r := run(t, "", toolTimeout, c[0], c[1:]...)
		if r.Code == 0 || !strings.Contains(string(r.Stderr), erofs) {
			t.Errorf("on a --read-only mount: want failure with %q, got %s", erofs, r)
		}
	}
	if r := run(t, "", toolTimeout, "test", "-w", mnt); r.Code == 0 {
		t.Errorf("`test -w MNT` is true on a --read-only mount")
	}
	if err := syscall.Access(mnt, 2 /* W_OK */); err == nil {
		t.Errorf("access(MNT, W_OK) succeeds on a --read-only mount")
	} else if wErrno(err) != syscall.EROFS {
		t.Logf("access(MNT, W_OK): %v", err)
	}
	// Go-level checks of the errno.
	_, err := os.OpenFile(filepath.Join(mnt, in.Path), os.O_WRONLY, 0)
	wWantErrno(t, "open O_WRONLY of an instance", err, syscall.EROFS)
	_, err = os.OpenFile(filepath.Join(mnt, "x.tmp"), os.O_CREATE|os.O_WRONLY, 0o644)
	wWantErrno(t, "create x.tmp", err, syscall.EROFS)
	wWantErrno(t, "rename", os.Rename(filepath.Join(mnt, in.Path), filepath.Join(mnt, "moved")), syscall.EROFS)
	wWantErrno(t, "chmod", syscall.Chmod(filepath.Join(mnt, in.Path), 0o600), syscall.EROFS)
	wWantErrno(t, "rmdir", syscall.Rmdir(filepath.Join(mnt, cat)), syscall.EROFS)

	// Reads work.
	wCheckSHA1s(t, mnt, idx)
	if sums := sha1Paths(t, mnt, []string{flat}); sums[flat] != in.SHA1 {
		t.Errorf("sha1sum %s: %s, want %s", flat, sums[flat], in.SHA1)
	}
	_, raw2 := wReadIndex(t, mnt)
	if !bytes.Equal(raw, raw2) {
		t.Errorf("Packages changed on a --read-only mount after the refused writes:\n%s",
			firstDiff(strings.Split(string(raw), "\n"), strings.Split(string(raw2), "\n"), nil))
	}
}

// ---------------------------------------------------------------- 7. Packages writes

// TestWritePackagesHeader: a Packages written with temp file + rename is
// accepted: its header keys are kept, its body ignored; mtime stays TIMESTAMP.
func TestWritePackagesHeader(t *testing.T) {
	t.Parallel()
	_, _, mi, before, _ := setupMounted(t, "xpak-zstd-multi")
	mnt := mi.Dir

	body := "ARCH: amd64\nCHOST: x86_64-pc-linux-gnu\nPROFILE: foo\nVERSION: 0\n\nCPV: junk/x-1\n\n"
	tmp := filepath.Join(mnt, ".Packages.tmp.4242")
	wOK(t, "write the temp Packages", os.WriteFile(tmp, []byte(body), 0o644))
	wOK(t, "rename the temp file onto MNT/Packages", os.Rename(tmp, filepath.Join(mnt, "Packages")))
	if r := run(t, "", toolTimeout, "touch", "-d", "@1", filepath.Join(mnt, "Packages")); r.Code != 0 {
		t.Errorf("touch -d @1 MNT/Packages: want exit 0: %s", r)
	}
	_, err := os.Lstat(tmp)
	wWantErrno(t, "lstat of the temp name after rename", err, syscall.ENOENT)

	after, raw := wReadIndex(t, mnt)
	if v, ok := get(after.Header, "PROFILE"); !ok || v != "foo" {
		t.Errorf("MNT/Packages header after writing one with PROFILE: foo: PROFILE %q (present %v)\nheader: %q", v, ok, after.Header)
	}
	if v, _ := get(after.Header, "ARCH"); v != "amd64" {
		t.Errorf("header ARCH: %q, want amd64", v)
	}
	if strings.Contains(string(raw), "junk/x-1") {
		t.Errorf("MNT/Packages contains the written body's junk/x-1 block")
	}
	if d := wSetDiff(wInstSet(before), wInstSet(after)); d != "" {
		t.Errorf("writing Packages changed the instances: %s", d)
	}
	if v, _ := get(after.Header, "PACKAGES"); v != strconv.Itoa(len(before.Blocks)) {
		t.Errorf("PACKAGES: %s, want %d", v, len(before.Blocks))
	}
	ts, _ := strconv.ParseInt(func() string { v, _ := get(after.Header, "TIMESTAMP"); return v }(), 10, 64)
	for _, name := range []string{"Packages", "Packages.gz"} {
		if st := statOne(t, filepath.Join(mnt, name)); st.Mtime != ts {
			t.Errorf("stat -c %%Y MNT/%s = %d, want its TIMESTAMP %d", name, st.Mtime, ts)
		}
	}
	if st := statOne(t, filepath.Join(mnt, "Packages")); st.Size != int64(len(raw)) {
		t.Errorf("stat size of MNT/Packages %d, but it reads %d bytes", st.Size, len(raw))
	}
	// Written in place too (open O_TRUNC on the existing name).
	wOK(t, "write MNT/Packages in place", os.WriteFile(filepath.Join(mnt, "Packages"),
		[]byte("ARCH: amd64\nPROFILE: bar\nVERSION: 0\n\n"), 0o644))
	again, _ := wReadIndex(t, mnt)
	if v, _ := get(again.Header, "PROFILE"); v != "bar" {
		t.Errorf("after writing MNT/Packages in place with PROFILE: bar: header PROFILE %q", v)
	}
	if d := wSetDiff(wInstSet(before), wInstSet(again)); d != "" {
		t.Errorf("writing Packages in place changed the instances: %s", d)
	}
	// Packages.gz takes writes too (body discarded).
	wOK(t, "write MNT/Packages.gz in place", os.WriteFile(filepath.Join(mnt, "Packages.gz"), []byte("not gzip"), 0o644))
	if r := run(t, mnt, toolTimeout, "zcat", "Packages.gz"); r.Code != 0 {
		t.Errorf("zcat MNT/Packages.gz after a write to it: %s", r)
	}
}

// TestWriteReopenForWrite: the kernel sends a reader's RELEASE after its
// close() has returned, so read-close-then-open-for-writing (Portage's XPAK
// recompose reads the trailer first) must not meet that reader's late
// release as ETXTBSY. A reader that really holds a package of 1 MiB or more
// open (read through passthrough, which the kernel cannot mix with other
// handles on one inode) makes a writable open fail with ETXTBSY; a smaller
// package (read through the page cache) opens for writing as on a disk,
// and its reader keeps the bytes it opened.
func TestWriteReopenForWrite(t *testing.T) {
	t.Parallel()
	_, state, mi := mountFixture(t, "xpak-bzip2-multi")
	target := filepath.Join(mi.Dir, "app-misc/hello/hello-2.10-1.xpak")
	before, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	// A reader that holds a large package open: the writable open fails
	// with ETXTBSY (first, while no writer's release can still be on its way).
	large := wLargeBuild(t, mi, state, before)
	r, err := os.Open(large)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if w, err := os.OpenFile(large, os.O_RDWR|os.O_APPEND, 0); err == nil {
		w.Close()
		t.Errorf("open O_RDWR while a reader holds a 2 MiB package open: want ETXTBSY, got success")
	} else if !errors.Is(err, syscall.ETXTBSY) {
		t.Errorf("open O_RDWR while a reader holds a 2 MiB package open: want ETXTBSY, got %v", err)
	}
	r.Close()
	// The small one opens for writing under a reader (closed unwritten:
	// nothing changes).
	r, err = os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if w, err := os.OpenFile(target, os.O_RDWR|os.O_APPEND, 0); err != nil {
		t.Errorf("open O_RDWR of a %d-byte package while a reader holds it open: %v", len(before), err)
	} else {
		w.Close()
	}
	if rest, err := io.ReadAll(r); err != nil || !bytes.Equal(rest, before[1:]) {
		t.Errorf("the reader of the small package, after a writable open came and went, read %d bytes (err %v), want the %d it opened", len(rest), err, len(before)-1)
	}
	r.Close()
	// The kernel sends the RELEASEs of those handles after close() returned.
	waitReleased(t, mi, state, "the readers and the writer above closed")

	dirBefore := listDir(t, filepath.Dir(target))
	const rounds = 200
	busy := 0
	for i := 0; i < rounds; i++ {
		fd, err := unix.Open(target, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("round %d: open O_RDONLY: %v", i, err)
		}
		tail := make([]byte, 16)
		if _, err := unix.Pread(fd, tail, int64(len(before)-16)); err != nil {
			t.Fatalf("round %d: pread: %v", i, err)
		}
		unix.Close(fd)
		wfd, err := unix.Open(target, unix.O_RDWR|unix.O_APPEND|unix.O_CLOEXEC, 0)
		if err != nil {
			if err == unix.ETXTBSY {
				busy++
				continue
			}
			t.Fatalf("round %d: open O_RDWR|O_APPEND right after the reader closed: %v", i, err)
		}
		unix.Close(wfd) // nothing written: the instance stays as it was
	}
	if busy > 0 {
		t.Errorf("%d of %d opens for writing right after a read-only open was closed failed with ETXTBSY", busy, rounds)
	}
	if after, err := os.ReadFile(target); err != nil || !bytes.Equal(after, before) {
		t.Errorf("after %d read/reopen rounds without writes, the package changed (err %v)", rounds, err)
	}
	// An open for writing closed untouched leaves nothing behind: no plain
	// file at the name, no staging copy.
	if dirAfter := listDir(t, filepath.Dir(target)); !reflect.DeepEqual(dirAfter, dirBefore) {
		t.Errorf("listing of %s changed by opens for writing without writes:\nbefore %v\nafter  %v", filepath.Dir(target), dirBefore, dirAfter)
	}
	// The last RELEASE arrives after close() returned: polled, with a
	// deadline. A writer's staging directory holds its lock file (.owner).
	leftIn := func(d string) []string {
		var left []string
		filepath.Walk(filepath.Join(state, d), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && fi.Name() != ".owner" {
				left = append(left, p)
			}
			return nil
		})
		return left
	}
	for _, d := range []string{"staging", "scratch"} {
		var left []string
		if !pollFor(5*time.Second, func() bool { left = leftIn(d); return len(left) == 0 }) {
			t.Errorf("opens for writing without writes left files in STATE/%s: %v", d, left[:min(len(left), 5)])
		}
	}
}

// listDir is the sorted "name size" listing of dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatalf("stat %s/%s: %v", dir, e.Name(), err)
		}
		out = append(out, fmt.Sprintf("%s %d", e.Name(), fi.Size()))
	}
	sort.Strings(out)
	return out
}

// TestWriteUnderSignals: the kernel sends the daemon a FUSE INTERRUPT
// whenever the calling thread gets a signal it handles (Go's SIGURG
// preemption, Portage's SIGCHLD); that must not turn a commit into an error.
// The thread that commits packages (by rename and by close) is sent SIGUSR1
// (handled) all the while.
func TestWriteUnderSignals(t *testing.T) {
	t.Parallel()
	const n = 120
	const cpv = "app-misc/sig-1.0"
	want := map[string]bool{}
	pkgs := make([][]byte, n)
	for i := range pkgs {
		pkgs[i] = wBuild(t, "sig", i)
		want[wSHA1(pkgs[i])] = true
	}
	mi := mountFSInfo(t, t.TempDir())
	dir := filepath.Join(mi.Dir, "app-misc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// The signals go to this very thread, the one making the requests.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, tid := os.Getpid(), unix.Gettid()
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // drain
		defer wg.Done()
		for {
			select {
			case <-sigs:
			case <-stop:
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Tgkill(pid, tid, syscall.SIGUSR1)
			sent.Add(1)
			// Not synchronisation: the pace of the signal storm the
			// writes run under (the point of the test).
			time.Sleep(20 * time.Microsecond)
		}
	}()
	var failures []string
	for i, b := range pkgs {
		dst := filepath.Join(dir, "sig-1.0.tbz2")
		var err error
		if i%2 == 0 {
			tmp := filepath.Join(dir, fmt.Sprintf(".sig-%d.tmp", i))
			if err = os.WriteFile(tmp, b, 0o644); err == nil {
				err = os.Rename(tmp, dst)
			}
		} else {
			err = os.WriteFile(dst, b, 0o644) // committed by close()
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("package %d: %v", i, err))
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d packages written while %d SIGUSR1 were sent", n, sent.Load())
	if len(failures) > 0 {
		t.Errorf("%d of %d writes failed under signals (want none): %v", len(failures), n, failures[:min(len(failures), 5)])
	}
	idx, _ := wReadIndex(t, mi.Dir)
	got := map[string]bool{}
	for _, in := range instances(idx) {
		if in.CPV == cpv {
			got[in.SHA1] = true
		}
	}
	if d := wSetDiff(want, got); d != "" {
		t.Errorf("Packages after writes under signals: %s", d)
	}
	if t.Failed() {
		t.Logf("%s", wDaemonLog(mi))
	}
}

// TestWriteForkInheritedFlush: a process that forks while it writes a
// package (Portage runs helpers all the time) gives the child a copy of the
// descriptor; the child's exec closes it, and that close must not commit the
// file under the writer, whose own close commits it.
func TestWriteForkInheritedFlush(t *testing.T) {
	t.Parallel()
	mi := mountFSInfo(t, t.TempDir())
	if err := os.Mkdir(filepath.Join(mi.Dir, "app-misc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"app-misc/fork-1.0.tbz2", "app-misc/fork/fork-1.0-7.xpak"} {
		pkg := wBuild(t, "fork", i)
		if i == 1 {
			os.Mkdir(filepath.Join(mi.Dir, "app-misc/fork"), 0o755)
		}
		f, err := os.Create(filepath.Join(mi.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		half := len(pkg) / 2
		if i == 1 { // this time the child's close comes after part of the bytes
			if _, err := f.Write(pkg[:half]); err != nil {
				t.Fatalf("%s: first write: %v", name, err)
			}
		} else {
			half = 0
		}
		// exec closes the child's copy of f (O_CLOEXEC): a FLUSH from the child.
		if out, err := exec.Command("true").CombinedOutput(); err != nil {
			t.Fatalf("true: %v %s", err, out)
		}
		if _, err := f.Write(pkg[half:]); err != nil {
			t.Errorf("%s: write after a child process closed its inherited copy: %v", name, err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
		if got, err := os.ReadFile(filepath.Join(mi.Dir, name)); err != nil || !bytes.Equal(got, pkg) {
			t.Errorf("%s: after close it reads %d bytes (err %v), want the %d bytes written", name, len(got), err, len(pkg))
		}
		idx, _ := wReadIndex(t, mi.Dir)
		found := false
		for _, in := range instances(idx) {
			found = found || in.SHA1 == wSHA1(pkg)
		}
		if !found {
			t.Errorf("%s: the package is not in Packages after close", name)
		}
	}
	if t.Failed() {
		t.Logf("%s", wDaemonLog(mi))
	}
}

// wLargeBuild copies a 2 MiB build of the xpak fixture's package (its
// metadata, an uncompressed tarball) into the mount mi of state as build 9
// and returns its path once the daemon has served the writer's RELEASE.
func wLargeBuild(t *testing.T, mi *mountInfo, state string, fixture []byte) string {
	t.Helper()
	_, entries := splitXpak(t, fixture)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	payload := bytes.Repeat([]byte("pkgdirfs "), 2<<20/9)
	if err := tw.WriteHeader(&tar.Header{Name: "usr/share/hello/big", Mode: 0o644, Size: int64(len(payload)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(payload)
	tw.Close()
	path := filepath.Join(mi.Dir, "app-misc/hello/hello-2.10-9.xpak")
	if err := os.WriteFile(path, buildXpak(t, tb.Bytes(), withEntry(entries, "BUILD_ID", []byte("9\n"))), 0o644); err != nil {
		t.Fatalf("copy a 2 MiB build in at %s: %v", path, err)
	}
	// The kernel sends the writer's RELEASE after close() returned; until
	// it is served, the writer counts on the inode and a reader would not
	// get passthrough.
	waitReleased(t, mi, state, "the 2 MiB build written")
	if fi, err := os.Stat(path); err != nil || fi.Size() < 2<<20 {
		t.Fatalf("%s after the copy: %v, %v", path, fi, err)
	}
	return path
}
