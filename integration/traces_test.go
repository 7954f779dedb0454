package integration

// End-to-end replays of the syscall sequences Portage makes on a PKGDIR
// (traced from Portage and described in its bintree.py and gpkg.py: allocate, inject, index rewrite), with the
// trace's PKGDIR mapped onto a pkgdirfs mount. Every call is made with the
// flags, order and checks Portage uses; package bytes come from the fixtures.

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// portageGID is the portage group of the traces (chown(-1, 250)).
const portageGID = 250

// ---------------------------------------------------------------- setup

// traceFixture is one extracted fixture: its PKGDIR, its Packages, and the
// files held back from the import (moved to Held, same relative paths).
type traceFixture struct {
	Dir  string
	Idx  *pkgIndex
	Held string
}

func (f *traceFixture) block(path string) []string {
	for _, b := range f.Idx.Blocks {
		if p, _ := get(b, "PATH"); p == path {
			return b
		}
	}
	return nil
}

// prepareFixture extracts a fixture and moves the files `hold` out of it.
func prepareFixture(t *testing.T, name string, hold ...string) *traceFixture {
	t.Helper()
	dir := extractFixture(t, name)
	f := &traceFixture{Dir: dir, Idx: readFixtureIndex(t, dir), Held: t.TempDir()}
	for _, h := range hold {
		if f.block(h) == nil {
			t.Fatalf("fixture %s: %s is not listed in its Packages", name, h)
		}
		dst := filepath.Join(f.Held, h)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, h), dst); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// importFixture imports a prepared fixture (all but its held files) into state.
func importFixture(t *testing.T, state string, f *traceFixture, nHeld int) {
	t.Helper()
	importOK(t, state, importSummary{len(f.Idx.Blocks) - nHeld, 0, 0}, f.Dir)
}

// ---------------------------------------------------------------- syscalls

// replay issues syscalls on paths relative to the mount, failing the test
// with the call as Portage would have made it when the result is not the
// one Portage's code path needs.
type replay struct {
	t    *testing.T
	mnt  string
	pid  int
	host string
	rng  *rand.Rand
}

func newReplay(t *testing.T, mnt string) *replay {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "vm"
	}
	return &replay{t: t, mnt: mnt, pid: os.Getpid(), host: host, rng: rand.New(rand.NewSource(time.Now().UnixNano()))}
}

func (r *replay) p(rel string) string {
	if rel == "" {
		return r.mnt
	}
	return filepath.Join(r.mnt, rel)
}

// rand8 is Python tempfile's 8 characters from [a-z0-9_].
func (r *replay) rand8() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789_"
	b := make([]byte, 8)
	for i := range b {
		b[i] = chars[r.rng.Intn(len(chars))]
	}
	return string(b)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func errName(err error) string {
	if err == nil {
		return "0"
	}
	if e := errnoOf(err); e != 0 {
		return fmt.Sprintf("-1 %s (%v)", unix.ErrnoName(e), err)
	}
	return err.Error()
}

// ok fails the test unless err is nil.
func (r *replay) ok(err error, format string, args ...any) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("%s = %s; Portage needs 0 here", fmt.Sprintf(format, args...), errName(err))
	}
}

// want fails the test unless err is exactly one of the errnos (0 = success).
func (r *replay) want(err error, call string, errs ...syscall.Errno) {
	r.t.Helper()
	got := errnoOf(err)
	if err != nil && got == 0 {
		r.t.Fatalf("%s: %v", call, err)
	}
	for _, e := range errs {
		if got == e {
			return
		}
	}
	var names []string
	for _, e := range errs {
		if e == 0 {
			names = append(names, "0")
		} else {
			names = append(names, unix.ErrnoName(e))
		}
	}
	r.t.Fatalf("%s = %s; want %s", call, errName(err), strings.Join(names, " or "))
}

func (r *replay) open(rel string, flags int, mode uint32) int {
	r.t.Helper()
	fd, err := unix.Open(r.p(rel), flags, mode)
	r.ok(err, "openat(MNT/%s, %s, %#o)", rel, flagString(flags), mode)
	return fd
}

func flagString(flags int) string {
	var s []string
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		s = append(s, "O_RDONLY")
	case unix.O_WRONLY:
		s = append(s, "O_WRONLY")
	case unix.O_RDWR:
		s = append(s, "O_RDWR")
	}
	for _, f := range []struct {
		bit  int
		name string
	}{{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_TRUNC, "O_TRUNC"}, {unix.O_APPEND, "O_APPEND"},
		{unix.O_NOFOLLOW, "O_NOFOLLOW"}, {unix.O_CLOEXEC, "O_CLOEXEC"}} {
		if flags&f.bit != 0 {
			s = append(s, f.name)
		}
	}
	return strings.Join(s, "|")
}

func (r *replay) close(fd int, what string) {
	r.t.Helper()
	r.ok(unix.Close(fd), "close(%s)", what)
}

func (r *replay) write(fd int, b []byte, what string) {
	r.t.Helper()
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		r.ok(err, "write(%s, %d bytes)", what, len(b))
		if n <= 0 {
			r.t.Fatalf("write(%s, %d bytes) = %d", what, len(b), n)
		}
		b = b[n:]
	}
}

func (r *replay) pwrite(fd int, b []byte, off int64, what string) {
	r.t.Helper()
	n, err := unix.Pwrite(fd, b, off)
	r.ok(err, "pwrite64(%s, %d bytes, %d)", what, len(b), off)
	if n != len(b) {
		r.t.Fatalf("pwrite64(%s, %d bytes, %d) = %d", what, len(b), off, n)
	}
}

func (r *replay) lseek(fd int, off int64, whence int, what string) int64 {
	r.t.Helper()
	n, err := unix.Seek(fd, off, whence)
	r.ok(err, "lseek(%s, %d, %d)", what, off, whence)
	return n
}

func (r *replay) stat(rel string) unix.Stat_t {
	r.t.Helper()
	var st unix.Stat_t
	r.ok(unix.Stat(r.p(rel), &st), "newfstatat(MNT/%s)", rel)
	return st
}

func (r *replay) lstat(rel string) unix.Stat_t {
	r.t.Helper()
	var st unix.Stat_t
	r.ok(unix.Lstat(r.p(rel), &st), "newfstatat(MNT/%s, AT_SYMLINK_NOFOLLOW)", rel)
	return st
}

func (r *replay) statErr(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Stat(r.p(rel), &st)
	return st, err
}

func (r *replay) fstat(fd int, what string) unix.Stat_t {
	r.t.Helper()
	var st unix.Stat_t
	r.ok(unix.Fstat(fd, &st), "newfstatat(%s, \"\", AT_EMPTY_PATH)", what)
	return st
}

func (r *replay) mkdir(rel string, errs ...syscall.Errno) {
	r.t.Helper()
	r.want(unix.Mkdir(r.p(rel), 0o777), fmt.Sprintf("mkdir(MNT/%s, 0777)", rel), errs...)
}

func (r *replay) rename(from, to string) {
	r.t.Helper()
	r.ok(unix.Rename(r.p(from), r.p(to)), "rename(MNT/%s, MNT/%s)", from, to)
}

func (r *replay) unlink(rel string, errs ...syscall.Errno) {
	r.t.Helper()
	r.want(unix.Unlink(r.p(rel)), fmt.Sprintf("unlink(MNT/%s)", rel), errs...)
}

func (r *replay) utime(rel string, sec int64) error {
	ts := unix.Timespec{Sec: sec}
	return unix.UtimesNanoAt(unix.AT_FDCWD, r.p(rel), []unix.Timespec{ts, ts}, 0)
}

// readAll reads a file the way Python's open().read() does (fstat, reads to EOF).
func (r *replay) readAll(rel string) []byte {
	r.t.Helper()
	fd := r.open(rel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	defer unix.Close(fd)
	st := r.fstat(fd, rel)
	var out bytes.Buffer
	buf := make([]byte, 32768)
	for {
		n, err := unix.Read(fd, buf)
		r.ok(err, "read(MNT/%s)", rel)
		if n == 0 {
			break
		}
		out.Write(buf[:n])
	}
	if int64(out.Len()) != st.Size {
		r.t.Errorf("MNT/%s: fstat st_size %d, but read gave %d bytes", rel, st.Size, out.Len())
	}
	return out.Bytes()
}

// ---------------------------------------------------------------- Portage primitives

// ensureDir is binarytree._ensure_dir / ensure_dirs(gid=pkgdir_gid,
// mode=0o2070 & pkgdir_mode, mask=0) for each component of rel (§6.0).
func (r *replay) ensureDir(rel string) {
	r.t.Helper()
	root := r.stat("")
	want := uint32(0o2070) & root.Mode & 0o7777
	parts := strings.Split(rel, "/")
	for i := range parts {
		comp := strings.Join(parts[:i+1], "/")
		r.mkdir(comp, 0, syscall.EEXIST)
		st := r.stat(comp)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			r.t.Fatalf("MNT/%s: mode %#o after mkdir, want a directory", comp, st.Mode)
		}
		if st.Gid != root.Gid {
			r.tolerable(unix.Chown(r.p(comp), -1, int(root.Gid)), "chown(MNT/%s, -1, %d)", comp, root.Gid)
		}
		if st.Mode&want != want {
			r.tolerable(unix.Chmod(r.p(comp), st.Mode&0o7777|want), "chmod(MNT/%s, %#o)", comp, st.Mode&0o7777|want)
		}
	}
}

// tolerable: apply_permissions turns EPERM/EACCES/EROFS/ENOENT into a
// PortageException that is ignored; any other errno fails the operation.
func (r *replay) tolerable(err error, format string, args ...any) {
	r.t.Helper()
	switch errnoOf(err) {
	case 0:
		if err != nil {
			r.t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
		}
	case syscall.EPERM, syscall.EACCES, syscall.EROFS, syscall.ENOENT:
		r.t.Logf("%s = %s (tolerated by Portage)", fmt.Sprintf(format, args...), errName(err))
	default:
		r.t.Fatalf("%s = %s; Portage's apply_permissions raises on this errno and the operation fails", fmt.Sprintf(format, args...), errName(err))
	}
}

// filePermissions is binarytree._file_permissions(path).
func (r *replay) filePermissions(rel string) {
	r.t.Helper()
	root := r.stat("")
	want := uint32(0o060) & root.Mode & 0o7777
	st := r.stat(rel)
	if st.Gid != root.Gid {
		r.tolerable(unix.Chown(r.p(rel), -1, int(root.Gid)), "chown(MNT/%s, -1, %d)", rel, root.Gid)
	}
	if st.Mode&want != want {
		r.tolerable(unix.Chmod(r.p(rel), st.Mode&0o7777|want), "chmod(MNT/%s, %#o)", rel, st.Mode&0o7777|want)
	}
}

// allocateMulti is _allocate_filename_multi's last step for a free name:
// stat (ENOENT), mkdir $CAT/$PN (EEXIST ok), O_EXCL placeholder, close;
// then _ensure_dir. The placeholder must then be a 0-byte file, and a second
// O_EXCL create at that name must fail with EEXIST (Portage's loop relies on it).
func (r *replay) allocateMulti(rel string) {
	r.t.Helper()
	_, err := r.statErr(rel)
	r.want(err, fmt.Sprintf("newfstatat(MNT/%s) before allocation", rel), syscall.ENOENT)
	dir := filepath.Dir(rel)
	if _, err := r.statErr(filepath.Dir(dir)); err != nil {
		r.ensureDir(filepath.Dir(dir))
	}
	r.mkdir(dir, 0, syscall.EEXIST)
	fd := r.open(rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o666)
	if st := r.fstat(fd, rel); st.Size != 0 {
		r.t.Errorf("fstat of the fresh placeholder MNT/%s: st_size %d, want 0", rel, st.Size)
	}
	r.close(fd, "placeholder "+rel)
	r.ensureDir(dir)
	st := r.stat(rel)
	if st.Size != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		r.t.Errorf("placeholder MNT/%s after close: mode %#o size %d, want a 0-byte regular file", rel, st.Mode, st.Size)
	}
	_, err = unix.Open(r.p(rel), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o666)
	r.want(err, fmt.Sprintf("openat(MNT/%s, O_WRONLY|O_CREAT|O_EXCL) on the existing placeholder", rel), syscall.EEXIST)
}

// namedTemp is tempfile.NamedTemporaryFile + fchmod(0644) + close
// (EbuildBinpkg._start): returns the name.
func (r *replay) namedTemp(rel string) {
	r.t.Helper()
	fd := r.open(rel, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	st := r.fstat(fd, rel)
	if st.Size != 0 || st.Mode&0o777 != 0o600 {
		r.t.Errorf("fstat(MNT/%s) after O_EXCL create 0600: mode %#o size %d, want 0600 and 0", rel, st.Mode&0o7777, st.Size)
	}
	r.ok(unix.Fchmod(fd, 0o644), "fchmod(MNT/%s, 0644)", rel)
	if st := r.fstat(fd, rel); st.Mode&0o777 != 0o644 {
		r.t.Errorf("fstat(MNT/%s) after fchmod 0644: mode %#o", rel, st.Mode&0o7777)
	}
	r.close(fd, rel)
}

// portageLock is one locks.lockfile() lock.
type portageLock struct {
	fd  int
	rel string
}

// lock is locks.lockfile(path, wantnewlockfile=1) (§6.4): the lock file is
// dirname/.<basename>.portage_lockfile; the hardlink check must conclude
// "not removed" (same inode through the fd and the link, st_nlink 2).
func (r *replay) lock(target string) *portageLock {
	r.t.Helper()
	dir, base := filepath.Dir(target), filepath.Base(target)
	if dir == "." {
		dir = ""
	}
	rel := filepath.Join(dir, "."+base+".portage_lockfile")
	if _, err := r.statErr(rel); err == nil {
		r.t.Errorf("lock file MNT/%s exists before lockfile() (left over by an earlier unlock?)", rel)
	}
	fd := r.open(rel, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o660)
	r.stat(rel)
	r.ok(unix.Chown(r.p(rel), -1, portageGID), "chown(MNT/%s, -1, %d)", rel, portageGID)
	fl := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	r.ok(unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &fl), "fcntl(MNT/%s, F_SETLK, F_WRLCK whole file)", rel)
	// _lockfile_was_removed
	fst := r.fstat(fd, rel)
	link := filepath.Join(dir, "."+filepath.Base(rel)+".hardlock-"+r.host+"-"+strconv.Itoa(r.pid))
	r.unlink(link, syscall.ENOENT)
	r.ok(unix.Link(r.p(rel), r.p(link)), "link(MNT/%s, MNT/%s)", rel, link)
	lst := r.stat(link)
	if lst.Ino != fst.Ino || lst.Dev != fst.Dev {
		r.t.Errorf("lock check: stat(MNT/%s) st_dev:st_ino %d:%d != fstat(lock fd) %d:%d — Portage concludes the lock file was removed and retries forever",
			link, lst.Dev, lst.Ino, fst.Dev, fst.Ino)
	}
	if lst.Nlink != 2 {
		r.t.Errorf("lock check: stat(MNT/%s).st_nlink = %d after link(), want 2", link, lst.Nlink)
	}
	if st2 := r.fstat(fd, rel); st2.Nlink != 2 {
		r.t.Errorf("lock check: fstat(lock fd).st_nlink = %d after link(), want 2", st2.Nlink)
	}
	r.unlink(link, 0)
	if st := r.fstat(fd, rel); st.Nlink != 1 {
		r.t.Errorf("lock file: fstat(lock fd).st_nlink = %d after unlinking the hardlink, want 1", st.Nlink)
	}
	return &portageLock{fd: fd, rel: rel}
}

// unlock is locks.unlockfile: F_UNLCK, re-lock, and unlink the lock file
// (st_nlink == 1) while it is open and locked, then F_UNLCK and close.
func (r *replay) unlock(l *portageLock) {
	r.t.Helper()
	r.stat(l.rel)
	un := unix.Flock_t{Type: unix.F_UNLCK}
	wr := unix.Flock_t{Type: unix.F_WRLCK}
	r.ok(unix.FcntlFlock(uintptr(l.fd), unix.F_SETLKW, &un), "fcntl(MNT/%s, F_SETLKW, F_UNLCK)", l.rel)
	r.ok(unix.FcntlFlock(uintptr(l.fd), unix.F_SETLK, &wr), "fcntl(MNT/%s, F_SETLK, F_WRLCK)", l.rel)
	st := r.fstat(l.fd, l.rel)
	if st.Nlink != 1 {
		r.t.Errorf("unlockfile: fstat(MNT/%s).st_nlink = %d, want 1 (else Portage leaves the lock file behind)", l.rel, st.Nlink)
	}
	r.unlink(l.rel, 0)
	r.ok(unix.FcntlFlock(uintptr(l.fd), unix.F_SETLKW, &un), "fcntl(MNT/%s (deleted), F_SETLKW, F_UNLCK)", l.rel)
	r.close(l.fd, l.rel+" (deleted)")
	if _, err := r.statErr(l.rel); err == nil {
		r.t.Errorf("MNT/%s still exists after unlink", l.rel)
	}
}

// samefile is os.path.samefile (two stats, st_dev and st_ino).
func (r *replay) samefile(a, b string) bool {
	r.t.Helper()
	sa, sb := r.stat(a), r.stat(b)
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// readMetadata stands in for the metadata reads of inject/_read_metadata:
// several opens, a head read, the trailer and a read back in the middle.
func (r *replay) readMetadata(rel string, want []byte) {
	r.t.Helper()
	for i := 0; i < 2; i++ {
		fd := r.open(rel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		st := r.fstat(fd, rel)
		if st.Size != int64(len(want)) {
			r.t.Fatalf("fstat(MNT/%s).st_size = %d, want %d (the bytes written)", rel, st.Size, len(want))
		}
		head := make([]byte, 4096)
		n, err := unix.Read(fd, head)
		r.ok(err, "read(MNT/%s, 4096)", rel)
		if !bytes.Equal(head[:n], want[:min(len(want), 4096)]) {
			r.t.Fatalf("read(MNT/%s, 4096) at 0 returned other bytes than were written", rel)
		}
		end := r.lseek(fd, -16, io.SeekEnd, rel)
		tail := make([]byte, 4096)
		n, err = unix.Read(fd, tail)
		r.ok(err, "read(MNT/%s) at %d", rel, end)
		if !bytes.Equal(tail[:n], want[len(want)-16:]) {
			r.t.Fatalf("read(MNT/%s) at SEEK_END-16 returned %q, want %q", rel, tail[:n], want[len(want)-16:])
		}
		mid := int64(len(want) / 2)
		n, err = unix.Pread(fd, tail, mid)
		r.ok(err, "pread64(MNT/%s, 4096, %d)", rel, mid)
		if !bytes.Equal(tail[:n], want[mid:min(int64(len(want)), mid+4096)]) {
			r.t.Fatalf("pread64(MNT/%s, 4096, %d) returned other bytes than were written", rel, mid)
		}
		r.close(fd, rel)
	}
}

// pkgindexWrite is binarytree._pkgindex_write (§6.3) with compress-index:
// both atomic_ofstream temps exist at once; each is written, closed,
// chmod'ed to the old mode, renamed over the target, unlinked (ENOENT), and
// the target gets utimensat(TIMESTAMP), which must succeed.
func (r *replay) pkgindexWrite(current []byte) {
	r.t.Helper()
	ts := time.Now().Unix()
	body := regexp.MustCompile(`(?m)^TIMESTAMP: \d+$`).ReplaceAll(current, []byte("TIMESTAMP: "+strconv.FormatInt(ts, 10)))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(body)
	zw.Close()

	type tmp struct {
		target, rel string
		fd          int
		data        []byte
	}
	var tmps []*tmp
	for _, target := range []string{"Packages", "Packages.gz"} {
		r.lstat("")
		r.lstat(target)
		x := &tmp{target: target, rel: target + r.rand8()}
		x.fd = r.open(x.rel, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		r.fstat(x.fd, x.rel)
		r.lseek(x.fd, 0, io.SeekCurrent, x.rel)
		tmps = append(tmps, x)
	}
	tmps[0].data, tmps[1].data = body, gz.Bytes()
	for _, x := range tmps {
		r.write(x.fd, x.data, "MNT/"+x.rel)
		r.close(x.fd, "MNT/"+x.rel)
		old := r.stat(x.target)
		st := r.stat(x.rel)
		if st.Size != int64(len(x.data)) {
			r.t.Errorf("stat(MNT/%s).st_size = %d after writing %d bytes", x.rel, st.Size, len(x.data))
		}
		r.ok(unix.Chmod(r.p(x.rel), old.Mode&0o7777), "chmod(MNT/%s, %#o)", x.rel, old.Mode&0o7777)
		r.rename(x.rel, x.target)
		r.unlink(x.rel, syscall.ENOENT)
		r.stat("")
		r.stat(x.target)
		r.ok(r.utime(x.target, ts), "utimensat(MNT/%s, [%d, %d]) — a failing utime fails Portage's index write", x.target, ts, ts)
	}
	// What every Portage client then checks (emaint binhost --check): the
	// two files have the same integer mtime.
	if a, b := r.stat("Packages"), r.stat("Packages.gz"); a.Mtim.Sec != b.Mtim.Sec {
		r.t.Errorf("after the index rewrite: mtime(Packages) %d != mtime(Packages.gz) %d", a.Mtim.Sec, b.Mtim.Sec)
	}
}

// injected is what inject learned of the final file.
type injected struct {
	size  int64
	mtime int64
	ino   uint64
}

// inject is binarytree.inject(cpv, current_pkg_path=cur, allocated_pkg_path=dst)
// (§6.2) from the lock on; cur == "" is inject(cpv) without a current path
// (aux_update). placeholder: dst is an allocated 0-byte placeholder.
func (r *replay) inject(cur, dst string, pkg []byte, placeholder bool) injected {
	r.t.Helper()
	if cur != "" {
		if st := r.stat(cur); st.Size != int64(len(pkg)) {
			r.t.Fatalf("stat(MNT/%s).st_size = %d, want %d", cur, st.Size, len(pkg))
		}
		r.readMetadata(cur, pkg)
	}
	r.mkdir("", syscall.EEXIST)
	r.stat("")
	r.stat("")
	lk := r.lock("Packages")
	if cur != "" {
		r.stat(cur)
		dstSt, err := r.statErr(dst)
		switch {
		case placeholder:
			r.ok(err, "newfstatat(MNT/%s) (the placeholder)", dst)
			if dstSt.Size != 0 {
				r.t.Errorf("placeholder MNT/%s: st_size %d, want 0", dst, dstSt.Size)
			}
			if r.samefile(cur, dst) {
				r.t.Fatalf("os.path.samefile(MNT/%s, MNT/%s) is True: Portage would skip the move and index the placeholder", cur, dst)
			}
		case err == nil:
			if r.samefile(cur, dst) {
				r.t.Fatalf("os.path.samefile(MNT/%s, MNT/%s) is True", cur, dst)
			}
		default:
			r.want(err, fmt.Sprintf("newfstatat(MNT/%s)", dst), syscall.ENOENT)
		}
		r.ensureDir(filepath.Dir(dst))
		// movefile: lstat(src), lstat(dest) or its directory; same st_dev → rename.
		src := r.lstat(cur)
		dd, err := r.statErr(dst)
		if err != nil {
			dd = r.lstat(filepath.Dir(dst))
		}
		if src.Dev != dd.Dev {
			r.t.Fatalf("movefile: st_dev of MNT/%s (%d) != st_dev of the destination (%d): Portage would copy instead of rename", cur, src.Dev, dd.Dev)
		}
		r.rename(cur, dst)
		_, err = r.statErr(cur)
		r.want(err, fmt.Sprintf("newfstatat(MNT/%s) after the rename", cur), syscall.ENOENT)
	}
	r.filePermissions(dst)
	index := r.readAll("Packages")
	// _inject_file: MD5+SHA1 of the whole final file, lstat for MTIME/SIZE.
	st := r.stat(dst)
	if st.Size != int64(len(pkg)) {
		r.t.Errorf("stat(MNT/%s).st_size = %d after inject, want %d (the package)", dst, st.Size, len(pkg))
	}
	got := r.readAll(dst)
	if md5.Sum(got) != md5.Sum(pkg) {
		r.t.Errorf("MD5 of MNT/%s after inject = %x, want %x (%d bytes read, %d written)", dst, md5.Sum(got), md5.Sum(pkg), len(got), len(pkg))
	}
	lst := r.lstat(dst)
	if isAlias(dst, allLayouts) {
		// A flat name is a symlink to the instance's one file: Portage's
		// inject records the symlink's lstat in the index it writes, which
		// the mount does not keep (PATH, SIZE and MTIME are the catalog's).
		if lst.Mode&unix.S_IFMT != unix.S_IFLNK {
			r.t.Errorf("lstat(MNT/%s) after inject: mode %#o, want a symlink to the instance's file", dst, lst.Mode)
		}
		lst = st
	}
	if lst.Size != int64(len(pkg)) || lst.Mode&unix.S_IFMT != unix.S_IFREG {
		r.t.Errorf("lstat(MNT/%s) after inject: mode %#o size %d, want a regular file of %d bytes", dst, lst.Mode, lst.Size, len(pkg))
	}
	r.pkgindexWrite(index)
	r.unlock(lk)
	return injected{size: lst.Size, mtime: lst.Mtim.Sec, ino: lst.Ino}
}

// copyfile is portage.util.file_copy.copyfile: O_TRUNC open, FICLONE,
// copy_file_range, then sendfile, then read/write. Returns the method used.
func (r *replay) copyfile(srcAbs, dst string) string {
	r.t.Helper()
	in, err := unix.Open(srcAbs, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	r.ok(err, "openat(%s, O_RDONLY)", srcAbs)
	defer unix.Close(in)
	var st unix.Stat_t
	r.ok(unix.Fstat(in, &st), "fstat(%s)", srcAbs)
	out := r.open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
	method := "FICLONE"
	if err := unix.IoctlFileClone(out, in); err != nil {
		method = "copy_file_range"
		var off int64
		for off < st.Size {
			n, err := unix.CopyFileRange(in, nil, out, nil, int(st.Size-off), 0)
			if err != nil || n == 0 {
				if off != 0 {
					r.t.Fatalf("copy_file_range(%s → MNT/%s) failed after %d bytes: %s", srcAbs, dst, off, errName(err))
				}
				method = ""
				break
			}
			off += int64(n)
		}
		if method == "" {
			method = "sendfile"
			r.lseek(in, 0, io.SeekStart, srcAbs)
			var off int64
			for off < st.Size {
				n, err := unix.Sendfile(out, in, nil, int(st.Size-off))
				if err != nil || n == 0 {
					if off != 0 {
						r.t.Fatalf("sendfile(%s → MNT/%s) failed after %d bytes: %s", srcAbs, dst, off, errName(err))
					}
					method = ""
					break
				}
				off += int64(n)
			}
		}
		if method == "" {
			method = "read/write"
			data, err := os.ReadFile(srcAbs)
			if err != nil {
				r.t.Fatal(err)
			}
			r.write(out, data, "MNT/"+dst)
		}
	}
	r.close(out, "MNT/"+dst)
	return method
}

// ---------------------------------------------------------------- package writers

// tarMembers returns the header offsets of the members of an uncompressed
// tar and the offset of its end-of-archive marker.
func tarMembers(t *testing.T, data []byte) (hdrs []int64, end int64) {
	t.Helper()
	var off int64
	for off+512 <= int64(len(data)) {
		h := data[off : off+512]
		if bytes.Equal(h, make([]byte, 512)) {
			return hdrs, off
		}
		var size int64
		if h[124]&0x80 != 0 {
			for _, c := range h[125:136] {
				size = size<<8 | int64(c)
			}
		} else {
			s := strings.Trim(string(h[124:136]), " \x00")
			n, err := strconv.ParseInt(s, 8, 64)
			if err != nil {
				t.Fatalf("tar header at %d: size field %q: %v", off, h[124:136], err)
			}
			size = n
		}
		hdrs = append(hdrs, off)
		off += 512 + (size+511)/512*512
	}
	t.Fatalf("tar of %d bytes has no end-of-archive marker", len(data))
	return nil, 0
}

// writeGpkg writes a gpkg container as gpkg's tar_stream_writer does (§3.6):
// for each member a placeholder header, the member's data streamed in
// uneven chunks, then back to the header offset to overwrite it with the
// real header — with lseek+write, or with pwrite when usePwrite — and on to
// the end; finally the end blocks and padding.
func (r *replay) writeGpkg(fd int, data []byte, what string, usePwrite bool) {
	r.t.Helper()
	hdrs, end := tarMembers(r.t, data)
	for i, h := range hdrs {
		next := end
		if i+1 < len(hdrs) {
			next = hdrs[i+1]
		}
		if pos := r.lseek(fd, 0, io.SeekEnd, what); pos != h {
			r.t.Fatalf("lseek(%s, 0, SEEK_END) = %d before member %d, want %d (file size so far)", what, pos, i, h)
		}
		placeholder := append([]byte{}, data[h:h+512]...)
		for j := 124; j < 136; j++ { // size unknown yet
			placeholder[j] = '0'
		}
		for j := 148; j < 156; j++ { // checksum
			placeholder[j] = ' '
		}
		r.write(fd, placeholder, what)
		body := data[h+512 : next]
		for len(body) > 0 { // a compressor's output: uneven pieces
			n := min(len(body), 1000+r.rng.Intn(7000))
			r.write(fd, body[:n], what)
			body = body[n:]
		}
		if usePwrite {
			r.pwrite(fd, data[h:h+512], h, what)
		} else {
			r.lseek(fd, h, io.SeekStart, what)
			r.write(fd, data[h:h+512], what)
			if pos := r.lseek(fd, 0, io.SeekEnd, what); pos != next {
				r.t.Fatalf("lseek(%s, 0, SEEK_END) = %d after member %d, want %d", what, pos, i, next)
			}
		}
	}
	r.lseek(fd, 0, io.SeekEnd, what)
	r.write(fd, data[end:], what)
}

// xpakSplit returns the tarball length of an xpak file and its XPAK block
// (XPAKPACK…XPAKSTOP, without the 8-byte trailer).
func xpakSplit(t *testing.T, path string) ([]byte, int64, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := xpakTarLength(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, n, data[n : len(data)-8]
}

// xpakEntry is one key of an XPAK block.
type xpakEntry struct {
	Key string
	Val []byte
}

func parseXpakBlock(t *testing.T, b []byte) []xpakEntry {
	t.Helper()
	if len(b) < 24 || string(b[:8]) != "XPAKPACK" || string(b[len(b)-8:]) != "XPAKSTOP" {
		t.Fatalf("not an XPAK block (%d bytes)", len(b))
	}
	il := int(binary.BigEndian.Uint32(b[8:12]))
	dl := int(binary.BigEndian.Uint32(b[12:16]))
	index, data := b[16:16+il], b[16+il:16+il+dl]
	var out []xpakEntry
	for len(index) > 0 {
		nl := int(binary.BigEndian.Uint32(index[:4]))
		name := string(index[4 : 4+nl])
		off := int(binary.BigEndian.Uint32(index[4+nl : 8+nl]))
		l := int(binary.BigEndian.Uint32(index[8+nl : 12+nl]))
		out = append(out, xpakEntry{name, append([]byte{}, data[off:off+l]...)})
		index = index[12+nl:]
	}
	return out
}

// xpakBlockWithTrailer is xpak_mem(...) + BE32(len) + "STOP", what recompose writes.
func xpakBlockWithTrailer(entries []xpakEntry) []byte {
	var index, data bytes.Buffer
	for _, e := range entries {
		binary.Write(&index, binary.BigEndian, uint32(len(e.Key)))
		index.WriteString(e.Key)
		binary.Write(&index, binary.BigEndian, uint32(data.Len()))
		binary.Write(&index, binary.BigEndian, uint32(len(e.Val)))
		data.Write(e.Val)
	}
	var b bytes.Buffer
	b.WriteString("XPAKPACK")
	binary.Write(&b, binary.BigEndian, uint32(index.Len()))
	binary.Write(&b, binary.BigEndian, uint32(data.Len()))
	b.Write(index.Bytes())
	b.Write(data.Bytes())
	b.WriteString("XPAKSTOP")
	n := b.Len()
	binary.Write(&b, binary.BigEndian, uint32(n))
	b.WriteString("STOP")
	return b.Bytes()
}

// recompose is xpak.tbz2.recompose_mem on rel (§1.3): scan the trailer, open
// O_RDWR|O_CREAT|O_APPEND, ftruncate to the tarball length (may shrink),
// one write of block+trailer (lands at EOF), close.
func (r *replay) recompose(rel string, tarLen int64, blockWithTrailer []byte) {
	r.t.Helper()
	fd := r.open(rel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	r.lseek(fd, -16, io.SeekEnd, rel)
	tail := make([]byte, 16)
	_, err := unix.Read(fd, tail)
	r.ok(err, "read(MNT/%s, 16) at SEEK_END-16", rel)
	r.close(fd, rel)
	fd = r.open(rel, unix.O_RDWR|unix.O_CREAT|unix.O_APPEND|unix.O_CLOEXEC, 0o666)
	r.ok(unix.Ftruncate(fd, tarLen), "ftruncate(MNT/%s, %d)", rel, tarLen)
	if st := r.fstat(fd, rel); st.Size != tarLen {
		r.t.Errorf("fstat(MNT/%s).st_size = %d after ftruncate(%d)", rel, st.Size, tarLen)
	}
	r.write(fd, blockWithTrailer, "MNT/"+rel+" (O_APPEND)")
	r.close(fd, "MNT/"+rel+" after the XPAK append")
}

// ---------------------------------------------------------------- end checks

// wantPkg is an instance a trace must have produced (or left in place).
type wantPkg struct {
	Path    string // multi-instance PATH
	CPV     string
	BuildID int64
	Src     string // a file holding exactly its bytes
	// Block: the block it must show (expectedBlock is applied against the
	// mount's header), compared but for the Ignore keys.
	Block, BlockHeader []string
	Ignore             []string
	Mtime              int64 // the MTIME it must have (0: == st_mtime only)
}

// checkTraceEnd parses MNT/Packages and checks every instance: the wanted
// ones (CPV, BUILD_ID, PATH, SIZE/MD5/SHA1 of their bytes, block), the gone
// ones (absent from Packages and from the tree), all others unchanged from
// their fixture (block and bytes); then every name of every instance is
// stat'ed (one inode) and the bytes read back, and the tree is exact.
func checkTraceEnd(t *testing.T, mnt, state string, fixtures []*traceFixture, wants []wantPkg, gone []string) {
	t.Helper()
	idx, _ := checkIndexFiles(t, mnt, state, true)
	byPath := map[string]instance{}
	for _, in := range instances(idx) {
		byPath[in.Path] = in
	}
	srcOf := map[string]string{}
	wanted := map[string]bool{}
	for _, w := range wants {
		wanted[w.Path] = true
		in, ok := byPath[w.Path]
		if !ok {
			t.Errorf("MNT/Packages has no entry with PATH: %s (want %s BUILD_ID %d); PATHs: %v", w.Path, w.CPV, w.BuildID, sortedKeys(byPath))
			continue
		}
		srcOf[w.Path] = w.Src
		data, err := os.ReadFile(w.Src)
		if err != nil {
			t.Fatal(err)
		}
		if in.CPV != w.CPV {
			t.Errorf("PATH %s: CPV %q, want %q", w.Path, in.CPV, w.CPV)
		}
		if in.BuildID != w.BuildID {
			t.Errorf("PATH %s: BUILD_ID %d, want %d", w.Path, in.BuildID, w.BuildID)
		}
		if in.Size != int64(len(data)) {
			t.Errorf("PATH %s: SIZE %d, want %d", w.Path, in.Size, len(data))
		}
		if s := fmt.Sprintf("%x", sha1.Sum(data)); in.SHA1 != s {
			t.Errorf("PATH %s: SHA1 %s, want %s (of the bytes written)", w.Path, in.SHA1, s)
		}
		if m, _ := get(in.Block, "MD5"); m != fmt.Sprintf("%x", md5.Sum(data)) {
			t.Errorf("PATH %s: MD5 %s, want %x", w.Path, m, md5.Sum(data))
		}
		if w.Mtime != 0 && in.Mtime != w.Mtime {
			t.Errorf("PATH %s: MTIME %d, want %d", w.Path, in.Mtime, w.Mtime)
		}
		if w.Block != nil {
			exp := expectedBlock(w.Block, w.BlockHeader, idx.Header, strconv.FormatInt(w.BuildID, 10), w.Path)
			if d := firstDiff(without(exp, w.Ignore...), without(in.Block, w.Ignore...), nil); d != "" {
				t.Errorf("Packages block of %s (ignoring %v) differs from the expected one at %s", w.Path, w.Ignore, d)
			}
		}
	}
	for _, g := range gone {
		if _, ok := byPath[g]; ok {
			t.Errorf("MNT/Packages still lists PATH: %s", g)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(mnt, g), &st); !errors.Is(err, unix.ENOENT) {
			t.Errorf("lstat(MNT/%s) = %s, want ENOENT (the instance was removed)", g, errName(err))
		}
	}
	// Every other instance is a fixture instance, unchanged.
	for p, in := range byPath {
		if wanted[p] {
			continue
		}
		found := false
		for _, f := range fixtures {
			if _, err := os.Stat(filepath.Join(f.Dir, p)); err != nil {
				continue
			}
			fb := f.block(p)
			if fb == nil {
				continue
			}
			found = true
			srcOf[p] = filepath.Join(f.Dir, p)
			exp := expectedBlock(fb, f.Idx.Header, idx.Header, strconv.FormatInt(in.BuildID, 10), p)
			if d := firstDiff(exp, in.Block, nil); d != "" {
				t.Errorf("Packages block of the untouched instance %s differs from its fixture's at %s", p, d)
			}
			break
		}
		if !found {
			t.Errorf("MNT/Packages lists an unexpected instance PATH: %s (%s BUILD_ID %d)", p, in.CPV, in.BuildID)
		}
	}
	checkInstances(t, mnt, idx, srcOf, allLayouts)
	// Read the wanted packages under every name they have.
	insts := instances(idx)
	nw := newest(insts)
	for _, in := range insts {
		if !wanted[in.Path] {
			continue
		}
		isNew := nw[[2]string{in.CPV, in.Format}].Path == in.Path
		want, _ := os.ReadFile(srcOf[in.Path])
		for _, name := range namesOf(in, isNew, allLayouts) {
			got, err := os.ReadFile(filepath.Join(mnt, name))
			if err != nil {
				t.Errorf("read MNT/%s: %v", name, err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("MNT/%s: %d bytes with sha1 %x, want the %d bytes written (sha1 %x)", name, len(got), sha1.Sum(got), len(want), sha1.Sum(want))
			}
		}
	}
}

// walkReindex is populate(reindex=True)'s walk: os.walk of the mount and
// lstat of every package-named regular file.
func walkReindex(t *testing.T, mnt string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if d.Type().IsRegular() && (strings.HasSuffix(n, ".tbz2") || strings.HasSuffix(n, ".xpak") || strings.HasSuffix(n, ".gpkg.tar")) {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return fmt.Errorf("lstat %s: %w", p, err)
			}
			rel, _ := filepath.Rel(mnt, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("os.walk(MNT): %v", err)
	}
	return names
}

// indexTimestamp is the header TIMESTAMP of a Packages file.
func indexTimestamp(t *testing.T, data []byte) int64 {
	t.Helper()
	x, err := parseIndex(data)
	if err != nil {
		t.Fatalf("MNT/Packages: %v", err)
	}
	return getInt(x.Header, "TIMESTAMP")
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// traceSetup prepares the fixture name with the files hold moved out
// (prepareFixture), imports the rest into a fresh state and mounts it.
func traceSetup(t *testing.T, name string, hold ...string) (fx *traceFixture, state, mnt string) {
	t.Helper()
	fx = prepareFixture(t, name, hold...)
	state = t.TempDir()
	importFixture(t, state, fx, len(hold))
	return fx, state, mountFS(t, state)
}

// startupPopulate is the trace's startup + populate phases: stat All,
// stat PKGDIR, read Packages.
func (r *replay) startupPopulate() []byte {
	r.t.Helper()
	r.statErr("All")
	r.stat("")
	return r.readAll("Packages")
}

// ---------------------------------------------------------------- the traces

// TestTraceBuildpkgGpkg replays portage-inject-syscalls.txt: emerge
// --buildpkg of app-misc/hello-2.10 into a multi-instance gpkg PKGDIR that
// holds build 1: allocation of build 2 with an O_EXCL placeholder, the
// NamedTemporaryFile, gpkg's writer (lseek back and overwrite each member
// header), inject under the Packages lock, the Packages rewrite.
func TestTraceBuildpkgGpkg(t *testing.T) {
	t.Parallel()
	const (
		cpv   = "app-misc/hello-2.10"
		alloc = "app-misc/hello/hello-2.10-2.gpkg.tar"
	)
	fx, state, mnt := traceSetup(t, "gpkg-zstd-multi", alloc)
	r := newReplay(t, mnt)
	pkg := readFile(t, filepath.Join(fx.Held, alloc))

	ts0 := indexTimestamp(t, r.startupPopulate())
	// allocate.file1
	r.allocateMulti(alloc)
	// tmpfile.file1
	tmp := alloc + r.rand8() + "." + strconv.Itoa(r.pid)
	r.namedTemp(tmp)
	// The reservation and the temp file are listed in $CAT/$PN (the
	// placeholder as a 0-byte file) but never in Packages.
	ents, err := os.ReadDir(r.p(filepath.Dir(alloc)))
	r.ok(err, "getdents64(MNT/%s)", filepath.Dir(alloc))
	var listed []string
	for _, e := range ents {
		listed = append(listed, e.Name())
	}
	for _, n := range []string{filepath.Base(alloc), filepath.Base(tmp)} {
		if !has(listed, n) {
			t.Errorf("readdir(MNT/%s) = %v: %s missing", filepath.Dir(alloc), listed, n)
		}
	}
	if idx := r.readAll("Packages"); bytes.Contains(idx, []byte("PATH: "+alloc+"\n")) || bytes.Contains(idx, []byte(filepath.Base(tmp))) {
		t.Errorf("MNT/Packages lists the placeholder %s or the temp file %s before the package is injected", alloc, tmp)
	}
	// package-phase.file1: tarfile opens by name with O_TRUNC.
	fd := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
	if st := r.fstat(fd, tmp); st.Size != 0 || st.Mode&0o777 != 0o644 {
		r.t.Errorf("fstat(MNT/%s) after the O_TRUNC reopen: mode %#o size %d, want 0644 and 0", tmp, st.Mode&0o7777, st.Size)
	}
	r.lseek(fd, 0, io.SeekCurrent, tmp)
	r.writeGpkg(fd, pkg, "MNT/"+tmp, false)
	r.close(fd, "MNT/"+tmp)
	// inject.file1
	inj := r.inject(tmp, alloc, pkg, true)
	// done.file1
	if st := r.stat(alloc); st.Size != int64(len(pkg)) {
		t.Errorf("stat(MNT/%s).st_size = %d at the end, want %d", alloc, st.Size, len(pkg))
	}
	if ts1 := indexTimestamp(t, r.readAll("Packages")); ts1 <= ts0 {
		t.Errorf("Packages TIMESTAMP %d after the inject, was %d before: it must increase with every change", ts1, ts0)
	}
	checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
		Path: alloc, CPV: cpv, BuildID: 2, Src: filepath.Join(fx.Held, alloc),
		Block: fx.block(alloc), BlockHeader: fx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: inj.mtime,
	}}, nil)
}

// TestTraceXpakClassic replays the xpak package phase (tarball written with
// O_TRUNC, then xpak recompose: O_RDWR|O_APPEND, ftruncate, one write of
// XPAK block + trailer) on a temp file, then inject: "multi" into an
// allocated $CAT/$PN/$PF-$N.xpak (fetch-update trace B-xpak), "flat" exactly
// as portage-inject-syscalls-xpak-classic.txt (-binpkg-multi-instance:
// $CAT/$PF.tbz2, no placeholder) into a PKGDIR holding a gpkg build 1 of the
// same CPV: the new instance gets BUILD_ID 2 and its multi-instance path.
func TestTraceXpakClassic(t *testing.T) {
	t.Parallel()
	t.Run("multi", func(t *testing.T) {
		t.Parallel()
		const (
			cpv   = "app-misc/hello-2.10"
			alloc = "app-misc/hello/hello-2.10-2.xpak"
		)
		fx, state, mnt := traceSetup(t, "xpak-bzip2-multi", alloc)
		r := newReplay(t, mnt)
		src := filepath.Join(fx.Held, alloc)
		pkg, tarLen, _ := xpakSplit(t, src)

		r.startupPopulate()
		r.allocateMulti(alloc)
		tmp := alloc + r.rand8() + "." + strconv.Itoa(r.pid)
		r.namedTemp(tmp)
		fd := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
		r.write(fd, pkg[:tarLen], "MNT/"+tmp)
		r.close(fd, "MNT/"+tmp)
		if st := r.stat(tmp); st.Size != tarLen {
			t.Fatalf("stat(MNT/%s).st_size = %d after the tarball, want %d", tmp, st.Size, tarLen)
		}
		r.recompose(tmp, tarLen, pkg[tarLen:])
		if got := r.readAll(tmp); md5.Sum(got) != md5.Sum(pkg) { // md5sum in __dyn_package
			t.Fatalf("md5sum MNT/%s after recompose = %x, want %x (%d bytes, want %d)", tmp, md5.Sum(got), md5.Sum(pkg), len(got), len(pkg))
		}
		inj := r.inject(tmp, alloc, pkg, true)
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: alloc, CPV: cpv, BuildID: 2, Src: src,
			Block: fx.block(alloc), BlockHeader: fx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
	t.Run("flat", func(t *testing.T) {
		t.Parallel()
		const (
			cpv  = "app-text/tree-2.1.1"
			flat = "app-text/tree-2.1.1.tbz2"
			want = "app-text/tree/tree-2.1.1-2.xpak"
		)
		srcFx := prepareFixture(t, "xpak-bzip2-flat")
		fx, state, mnt := traceSetup(t, "gpkg-zstd-multi")
		r := newReplay(t, mnt)
		src := filepath.Join(srcFx.Dir, flat)
		pkg, tarLen, _ := xpakSplit(t, src)

		r.startupPopulate()
		// allocate.file1 (non-multi): only _ensure_dir($CAT).
		r.ensureDir("app-text")
		tmp := flat + r.rand8() + "." + strconv.Itoa(r.pid)
		r.namedTemp(tmp)
		fd := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
		r.write(fd, pkg[:tarLen], "MNT/"+tmp)
		r.close(fd, "MNT/"+tmp)
		r.recompose(tmp, tarLen, pkg[tarLen:])
		inj := r.inject(tmp, flat, pkg, false)
		// done.file1: getname + getsize of the flat name.
		if st := r.stat(flat); st.Size != int64(len(pkg)) {
			t.Errorf("stat(MNT/%s).st_size = %d at the end, want %d", flat, st.Size, len(pkg))
		}
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: want, CPV: cpv, BuildID: 2, Src: src,
			Block: srcFx.block(flat), BlockHeader: srcFx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
}

// TestTraceGpkgWriterRename: gpkg's writer alone (placeholder headers,
// streamed data, then pwrite of the real headers at their offsets) into
// doebuild's temp name $CAT/$PF<rand>.tbz2.<pid>, then a rename across
// directories onto a free multi-instance name, with no placeholder.
func TestTraceGpkgWriterRename(t *testing.T) {
	t.Parallel()
	const (
		cpv  = "net-misc/openssh-9.8_p1-r3"
		dest = "net-misc/openssh/openssh-9.8_p1-r3-3.gpkg.tar"
	)
	fx, state, mnt := traceSetup(t, "gpkg-zstd-multi", dest)
	r := newReplay(t, mnt)
	pkg := readFile(t, filepath.Join(fx.Held, dest))

	r.startupPopulate()
	r.ensureDir("net-misc")
	tmp := "net-misc/openssh-9.8_p1-r3" + r.rand8() + ".tbz2." + strconv.Itoa(r.pid)
	r.namedTemp(tmp)
	fd := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
	r.writeGpkg(fd, pkg, "MNT/"+tmp, true)
	r.close(fd, "MNT/"+tmp)
	if got := r.readAll(tmp); !bytes.Equal(got, pkg) {
		t.Fatalf("MNT/%s after the writer: %d bytes sha1 %x, want %d bytes sha1 %x", tmp, len(got), sha1.Sum(got), len(pkg), sha1.Sum(pkg))
	}
	inj := r.inject(tmp, dest, pkg, false)
	checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
		Path: dest, CPV: cpv, BuildID: 3, Src: filepath.Join(fx.Held, dest),
		Block: fx.block(dest), BlockHeader: fx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: inj.mtime,
	}}, nil)
}

// TestTraceQuickpkg: bin/quickpkg writes $CAT/$PF.tbz2.<pid> with "wb"
// (O_WRONLY|O_CREAT|O_TRUNC) plus recompose_mem, then inject allocates under
// the lock: "multi" the VDB's build id (placeholder $CAT/$PN/$PF-$ID.xpak,
// rename across directories), "flat" (-binpkg-multi-instance) the flat
// $CAT/$PF.tbz2 of a CPV that has gpkg builds 1 and 2: the package gets the
// next free BUILD_ID, 3, and appears at its multi-instance path.
func TestTraceQuickpkg(t *testing.T) {
	t.Parallel()
	quickpkg := func(t *testing.T, r *replay, src, cat, pf string) (tmp string, pkg []byte) {
		pkg, tarLen, _ := xpakSplit(t, src)
		r.ok(unix.Access(r.p(""), unix.W_OK), "access(MNT, W_OK) — quickpkg refuses a read-only PKGDIR")
		r.ensureDir(cat)
		tmp = cat + "/" + pf + ".tbz2." + strconv.Itoa(r.pid)
		// open(tmp, "wb") under quickpkg's default --umask 0077: mode 0600.
		fd := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
		r.write(fd, pkg[:tarLen], "MNT/"+tmp)
		r.close(fd, "MNT/"+tmp)
		r.recompose(tmp, tarLen, pkg[tarLen:])
		return tmp, pkg
	}
	t.Run("multi", func(t *testing.T) {
		t.Parallel()
		const (
			cpv   = "dev-libs/libxml2-2.12.9"
			alloc = "dev-libs/libxml2/libxml2-2.12.9-2.xpak"
		)
		fx, state, mnt := traceSetup(t, "xpak-bzip2-multi", alloc)
		r := newReplay(t, mnt)
		src := filepath.Join(fx.Held, alloc)
		tmp, pkg := quickpkg(t, r, src, "dev-libs", "libxml2-2.12.9")
		// inject: metadata read, lock, then the allocation happens under the lock.
		r.readMetadata(tmp, pkg)
		r.mkdir("", syscall.EEXIST)
		lk := r.lock("Packages")
		r.allocateMulti(alloc)
		if r.samefile(tmp, alloc) {
			t.Fatalf("os.path.samefile(MNT/%s, MNT/%s) is True", tmp, alloc)
		}
		r.ensureDir(filepath.Dir(alloc))
		r.lstat(tmp)
		r.lstat(alloc)
		r.rename(tmp, alloc)
		r.filePermissions(alloc)
		index := r.readAll("Packages")
		if got := r.readAll(alloc); !bytes.Equal(got, pkg) {
			t.Errorf("MNT/%s after the rename: %d bytes sha1 %x, want %d bytes sha1 %x", alloc, len(got), sha1.Sum(got), len(pkg), sha1.Sum(pkg))
		}
		lst := r.lstat(alloc)
		r.pkgindexWrite(index)
		r.unlock(lk)
		if st := r.stat(alloc); st.Size != int64(len(pkg)) { // quickpkg: stat(final)
			t.Errorf("stat(MNT/%s).st_size = %d, want %d", alloc, st.Size, len(pkg))
		}
		// _file_permissions added PKGDIR's group read bit to the 0600 file.
		if root, st := r.stat(""), r.stat(alloc); st.Mode&0o777 != 0o600|(0o060&root.Mode) {
			t.Errorf("stat(MNT/%s) mode %#o after inject's _file_permissions, want %#o (0600 | 0060 & PKGDIR mode %#o)",
				alloc, st.Mode&0o7777, 0o600|(0o060&root.Mode), root.Mode&0o7777)
		}
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: alloc, CPV: cpv, BuildID: 2, Src: src,
			Block: fx.block(alloc), BlockHeader: fx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: lst.Mtim.Sec,
		}}, nil)
	})
	t.Run("flat", func(t *testing.T) {
		t.Parallel()
		const (
			cpv  = "app-misc/hello-2.10"
			flat = "app-misc/hello-2.10.tbz2"
			want = "app-misc/hello/hello-2.10-3.xpak"
		)
		srcFx := prepareFixture(t, "xpak-bzip2-flat")
		fx, state, mnt := traceSetup(t, "gpkg-zstd-multi")
		r := newReplay(t, mnt)
		src := filepath.Join(srcFx.Dir, flat)
		tmp, pkg := quickpkg(t, r, src, "app-misc", "hello-2.10")
		inj := r.inject(tmp, flat, pkg, false)
		if st := r.stat(flat); st.Size != int64(len(pkg)) {
			t.Errorf("stat(MNT/%s).st_size = %d, want %d", flat, st.Size, len(pkg))
		}
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: want, CPV: cpv, BuildID: 3, Src: src,
			Block: srcFx.block(flat), BlockHeader: srcFx.Idx.Header, Ignore: []string{"MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
}

// TestTraceFetch replays part A of portage-pkgdir-syscalls-fetch-update.txt:
// a binhost package with build id 1 fetched into a PKGDIR holding builds 2
// and 3: placeholder at the remote build id, per-download lock with the
// hardlink check, <name>.partial written by copyfile, utime to the remote
// MTIME, verification, rename .partial over the placeholder, index rewrite.
// The package keeps BUILD_ID 1 (bug 921208) and the binhost's MTIME: its
// block is the binhost's, byte for byte.
func TestTraceFetch(t *testing.T) {
	t.Parallel()
	const (
		cpv   = "app-admin/sudo-1.9.15_p5"
		alloc = "app-admin/sudo/sudo-1.9.15_p5-1.gpkg.tar"
	)
	fx, state, mnt := traceSetup(t, "gpkg-zstd-multi", alloc)
	r := newReplay(t, mnt)
	remote := filepath.Join(fx.Held, alloc)
	pkg := readFile(t, remote)
	remoteBlock := fx.block(alloc)
	remoteMtime := getInt(remoteBlock, "MTIME")
	partial := alloc + ".partial"

	r.statErr("All")
	walkReindex(t, mnt) // FEATURES=-pkgdir-index-trusted: os.walk
	r.readAll("Packages")
	r.allocateMulti(alloc)
	// BinpkgFetcher: ensure_dirs, distlocks lock on the .partial, unlink it.
	r.ensureDir(filepath.Dir(alloc))
	plk := r.lock(partial)
	r.unlink(partial, syscall.ENOENT)
	method := r.copyfile(remote, partial)
	t.Logf("copyfile into MNT/%s used %s", partial, method)
	if st := r.stat(partial); st.Size != int64(len(pkg)) {
		t.Fatalf("stat(MNT/%s).st_size = %d after the download, want %d", partial, st.Size, len(pkg))
	}
	if err := r.utime(partial, remoteMtime); err != nil { // sync_timestamp: errors ignored by Portage
		t.Errorf("utimensat(MNT/%s, MTIME %d) = %s (Portage ignores it, but the package then loses the binhost's MTIME)", partial, remoteMtime, errName(err))
	}
	r.unlock(plk)
	// BinpkgVerifier: size, then MD5/SHA1 of the whole file.
	if got := r.readAll(partial); !bytes.Equal(got, pkg) {
		t.Fatalf("MNT/%s: %d bytes sha1 %x, want the binhost's %d bytes sha1 %x", partial, len(got), sha1.Sum(got), len(pkg), sha1.Sum(pkg))
	}
	if st := r.stat(partial); st.Mtim.Sec != remoteMtime {
		t.Errorf("stat(MNT/%s).st_mtime = %d after utime, want %d", partial, st.Mtim.Sec, remoteMtime)
	}
	inj := r.inject(partial, alloc, pkg, true)
	if inj.mtime != remoteMtime {
		t.Errorf("lstat(MNT/%s).st_mtime = %d after the rename, want the binhost's MTIME %d (the rename must keep the .partial's mtime)", alloc, inj.mtime, remoteMtime)
	}
	// The merge verifies the local copy: stat + digests.
	r.readMetadata(alloc, pkg)
	checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
		Path: alloc, CPV: cpv, BuildID: 1, Src: remote,
		Block: remoteBlock, BlockHeader: fx.Idx.Header, Mtime: remoteMtime,
	}}, nil)
}

// TestTraceUpdate replays the metadata rewrites of §6.6 (fetch-update trace
// parts B-gpkg/B-xpak "aux_update", and move_ent).
func TestTraceUpdate(t *testing.T) {
	t.Parallel()
	// gpkg.update_metadata: NamedTemporaryFile <basename>.<pid><rand>, a
	// second fd by name with O_TRUNC while the first is open, fchmod on the
	// first, a new container through the second, rename over the original,
	// then inject(cpv). The instance at that name is replaced: same
	// BUILD_ID, the new bytes.
	t.Run("gpkg-update-metadata", func(t *testing.T) {
		t.Parallel()
		const (
			cpv    = "app-misc/hello-2.10"
			target = "app-misc/hello/hello-2.10-1.gpkg.tar"
		)
		fx, state, mnt := traceSetup(t, "gpkg-zstd-multi")
		r := newReplay(t, mnt)
		// The same build with one more metadata key: what update_metadata
		// writes (BUILD_TIME and BUILD_ID kept, the metadata member new).
		pkg := gpkgWithMetadataKey(t, readFile(t, filepath.Join(fx.Dir, target)), "PKGDIRFS_TRACE", "update_metadata\n")
		src := filepath.Join(t.TempDir(), "hello-2.10-1.gpkg.tar")
		if err := os.WriteFile(src, pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		old := r.stat(target)
		r.stat(target)
		r.stat(target)
		tmp := target + "." + strconv.Itoa(r.pid) + r.rand8()
		fd3 := r.open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		fd4 := r.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o666)
		r.ok(unix.Fchmod(fd3, 0o644), "fchmod(MNT/%s (first fd), 0644)", tmp)
		r.writeGpkg(fd4, pkg, "MNT/"+tmp+" (second fd)", false)
		if st := r.fstat(fd3, tmp+" (first fd)"); st.Size != int64(len(pkg)) || st.Mode&0o777 != 0o644 {
			t.Errorf("fstat(first fd of MNT/%s) after writing through the second: size %d mode %#o, want %d and 0644", tmp, st.Size, st.Mode&0o7777, len(pkg))
		}
		r.close(fd4, "MNT/"+tmp+" (second fd)")
		r.stat(target)
		r.rename(tmp, target)
		if st := r.fstat(fd3, tmp+" (first fd, after the rename)"); st.Size != int64(len(pkg)) {
			t.Errorf("fstat(first fd of the temp file) after rename onto MNT/%s: st_size %d, want %d", target, st.Size, len(pkg))
		}
		r.close(fd3, "MNT/"+tmp+" (first fd, after the rename)")
		st := r.stat(target)
		if st.Size != int64(len(pkg)) {
			t.Errorf("stat(MNT/%s).st_size = %d after the rename, want %d (was %d)", target, st.Size, len(pkg), old.Size)
		}
		inj := r.inject("", target, pkg, false)
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: target, CPV: cpv, BuildID: 1, Src: src,
			Block: fx.block(target), BlockHeader: fx.Idx.Header, Ignore: []string{"MD5", "SHA1", "SIZE", "MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
	// A different build renamed over an instance's name (rsync or mv of
	// another PKGDIR's package: here another build of the same CPV) does
	// not replace it: it becomes the next build of the CPV, and the name
	// keeps the build it had.
	t.Run("rename-other-build", func(t *testing.T) {
		t.Parallel()
		const (
			cpv    = "app-misc/hello-2.10"
			target = "app-misc/hello/hello-2.10-1.gpkg.tar"
			newSrc = "app-misc/hello-2.10.gpkg.tar"
		)
		newFx := prepareFixture(t, "gpkg-xz-flat")
		fx, state, mnt := traceSetup(t, "gpkg-zstd-multi")
		src := filepath.Join(newFx.Dir, newSrc)
		before := readFile(t, filepath.Join(mnt, target))
		tmp := filepath.Join(mnt, "app-misc/hello/.hello-2.10-1.gpkg.tar.tmp")
		if err := os.WriteFile(tmp, readFile(t, src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mnt, target)); err != nil {
			t.Fatalf("rename of another build onto MNT/%s: %v", target, err)
		}
		if got := readFile(t, filepath.Join(mnt, target)); !bytes.Equal(got, before) {
			t.Errorf("MNT/%s changed (%d bytes, were %d) after another build was renamed onto it; want the build it held", target, len(got), len(before))
		}
		next := "app-misc/hello/hello-2.10-3.gpkg.tar"
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: next, CPV: cpv, BuildID: 3, Src: src,
			Block: newFx.block(newSrc), BlockHeader: newFx.Idx.Header, Ignore: []string{"MTIME", "PATH", "BUILD_ID"},
		}}, nil)
	})
	// bindbapi.aux_update on an xpak: recompose in place on the package name
	// (O_RDWR|O_CREAT|O_APPEND, ftruncate to the tarball, append a new XPAK
	// with one more key); on close those are the instance's new bytes.
	t.Run("xpak-aux-update", func(t *testing.T) {
		t.Parallel()
		const (
			cpv    = "app-misc/hello-2.10"
			target = "app-misc/hello/hello-2.10-1.xpak"
		)
		fx, state, mnt := traceSetup(t, "xpak-bzip2-multi")
		r := newReplay(t, mnt)
		orig, tarLen, block := xpakSplit(t, filepath.Join(fx.Dir, target))
		entries := append(parseXpakBlock(t, block), xpakEntry{"PKGDIRFS_TRACE", []byte("aux_update\n")})
		pkg := append(append([]byte{}, orig[:tarLen]...), xpakBlockWithTrailer(entries)...)
		src := filepath.Join(t.TempDir(), "hello-2.10-1.xpak")
		if err := os.WriteFile(src, pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		r.stat(target)
		r.stat(target)
		if st := r.stat(target); st.Nlink != 1 {
			t.Errorf("stat(MNT/%s).st_nlink = %d; with st_nlink > 1 recompose breaks hard links first", target, st.Nlink)
		}
		r.recompose(target, tarLen, pkg[tarLen:])
		if st := r.stat(target); st.Size != int64(len(pkg)) {
			t.Errorf("stat(MNT/%s).st_size = %d after the in-place recompose, want %d (was %d)", target, st.Size, len(pkg), len(orig))
		}
		inj := r.inject("", target, pkg, false)
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: target, CPV: cpv, BuildID: 1, Src: src,
			Block: fx.block(target), BlockHeader: fx.Idx.Header, Ignore: []string{"MD5", "SHA1", "SIZE", "MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
	// binarytree.move_ent (package move app-misc/hello → app-moved/greeting):
	// allocate the new name (new category: directories created), lock the
	// .partial, copyfile old → .partial, recompose the copy with the new
	// CATEGORY, inject (rename .partial over the placeholder), unlink the
	// .partial (ENOENT), unlock. The old instance stays.
	t.Run("move-ent", func(t *testing.T) {
		t.Parallel()
		const (
			oldPath = "app-misc/hello/hello-2.10-2.xpak"
			newCPV  = "app-moved/greeting-2.10"
			newPath = "app-moved/greeting/greeting-2.10-2.xpak"
		)
		fx, state, mnt := traceSetup(t, "xpak-bzip2-multi")
		r := newReplay(t, mnt)
		orig, tarLen, block := xpakSplit(t, filepath.Join(fx.Dir, oldPath))
		entries := parseXpakBlock(t, block)
		// update_dbentry for the move: CATEGORY, PF and the ebuild's key.
		renamed := map[string]bool{}
		for i := range entries {
			switch entries[i].Key {
			case "CATEGORY":
				entries[i].Val = []byte("app-moved\n")
			case "PF":
				entries[i].Val = []byte("greeting-2.10\n")
			case "hello-2.10.ebuild":
				entries[i].Key = "greeting-2.10.ebuild"
			default:
				continue
			}
			renamed[entries[i].Key] = true
		}
		if len(renamed) != 3 {
			t.Fatalf("%s: expected keys CATEGORY, PF and hello-2.10.ebuild, renamed only %v", oldPath, renamed)
		}
		pkg := append(append([]byte{}, orig[:tarLen]...), xpakBlockWithTrailer(entries)...)
		src := filepath.Join(t.TempDir(), "moved.xpak")
		if err := os.WriteFile(src, pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		r.stat(oldPath)
		r.ok(unix.Access(r.p(oldPath), unix.W_OK), "access(MNT/%s, W_OK) — else \"Cannot update readonly binary\"", oldPath)
		r.readMetadata(oldPath, orig)
		r.allocateMulti(newPath)
		r.ensureDir(filepath.Dir(newPath))
		partial := newPath + ".partial"
		plk := r.lock(partial)
		method := r.copyfile(filepath.Join(mnt, oldPath), partial)
		t.Logf("copyfile MNT/%s → MNT/%s used %s", oldPath, partial, method)
		if got := r.readAll(partial); !bytes.Equal(got, orig) {
			t.Fatalf("MNT/%s after copyfile: %d bytes sha1 %x, want %d bytes sha1 %x", partial, len(got), sha1.Sum(got), len(orig), sha1.Sum(orig))
		}
		r.recompose(partial, tarLen, pkg[tarLen:])
		inj := r.inject(partial, newPath, pkg, true)
		r.unlink(partial, syscall.ENOENT)
		r.unlock(plk)
		checkTraceEnd(t, mnt, state, []*traceFixture{fx}, []wantPkg{{
			Path: newPath, CPV: newCPV, BuildID: 2, Src: src,
			Block: fx.block(oldPath), BlockHeader: fx.Idx.Header, Ignore: []string{"CPV", "PATH", "MD5", "SHA1", "SIZE", "MTIME"}, Mtime: inj.mtime,
		}}, nil)
	})
}

// TestTraceRemove: binarytree.remove (fetch-update trace "remove": lock,
// index rewrite, unlink of the multi path, unlock) of the newest of three
// builds, then eclean-pkg's path (reindex walk, stat, unlink, rmdir of the
// directory with errors ignored, emaint fix) on a CPV's only build. Each
// instance disappears from Packages and from every name; flat and All/
// names fall back to the next newest build.
func TestTraceRemove(t *testing.T) {
	t.Parallel()
	const (
		victim1 = "app-admin/sudo/sudo-1.9.15_p5-3.xpak"
		victim2 = "dev-db/sqlite/sqlite-3.46.1-1.xpak"
	)
	fx, state, mnt := traceSetup(t, "xpak-bzip2-multi")
	r := newReplay(t, mnt)

	// binarytree.remove(cpv)
	r.mkdir("", syscall.EEXIST)
	r.stat("")
	lk := r.lock("Packages")
	index := r.readAll("Packages")
	r.pkgindexWrite(index)
	r.unlink(victim1, 0)
	r.unlock(lk)
	if _, err := r.statErr(victim1); !errors.Is(err, unix.ENOENT) {
		t.Errorf("stat(MNT/%s) right after unlink = %s, want ENOENT", victim1, errName(err))
	}
	if bytes.Contains(r.readAll("Packages"), []byte("PATH: "+victim1+"\n")) {
		t.Errorf("MNT/Packages still lists %s right after its unlink", victim1)
	}

	// eclean-pkg
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatalf("listdir(MNT): %v", err)
	}
	names := walkReindex(t, mnt)
	if !has(names, victim2) {
		t.Fatalf("os.walk(MNT) did not find %s (found %d package files)", victim2, len(names))
	}
	r.stat(victim2)
	r.unlink(victim2, 0)
	err := unix.Rmdir(r.p(filepath.Dir(victim2))) // errors ignored
	t.Logf("rmdir(MNT/%s) = %s (eclean ignores errors)", filepath.Dir(victim2), errName(err))
	// Directories outlive their last package, as on any filesystem: eclean
	// removes the emptied category directory too.
	err = unix.Rmdir(r.p(filepath.Dir(filepath.Dir(victim2))))
	t.Logf("rmdir(MNT/%s) = %s", filepath.Dir(filepath.Dir(victim2)), errName(err))
	// emaint binhost --fix
	before := r.stat("Packages")
	lk = r.lock("Packages")
	walkReindex(t, mnt)
	r.pkgindexWrite(r.readAll("Packages"))
	r.unlock(lk)
	after := r.stat("Packages")
	t.Logf("stat(Packages) mtime before/after emaint fix: %d/%d", before.Mtim.Sec, after.Mtim.Sec)
	for _, n := range walkReindex(t, mnt) {
		if n == victim1 || n == victim2 {
			t.Errorf("os.walk(MNT) still finds %s after its removal", n)
		}
	}
	checkTraceEnd(t, mnt, state, []*traceFixture{fx}, nil, []string{victim1, victim2, "dev-db/sqlite-3.46.1.tbz2", "All/sqlite-3.46.1.tbz2"})
}

// gpkgWithMetadataKey is gp with one more file in its metadata member (key,
// value), recompressed with the member's own compressor and the Manifest
// rewritten: a metadata update of the same build, as update_metadata makes.
func gpkgWithMetadataKey(t *testing.T, gp []byte, key, value string) []byte {
	t.Helper()
	tools := map[string]string{".zst": "zstd", ".xz": "xz", ".gz": "gzip", ".bz2": "bzip2", ".lz4": "lz4"}
	pipe := func(data []byte, name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return out
	}
	found := false
	out := editGpkg(t, gp, true, func(ms []tarMember) []tarMember {
		for i, m := range ms {
			base := filepath.Base(m.Name)
			if !strings.HasPrefix(base, "metadata.tar") {
				continue
			}
			tool := tools[filepath.Ext(base)]
			if tool == "" {
				t.Fatalf("gpkg metadata member %s: unknown compression", m.Name)
			}
			inner := readTarMembers(t, pipe(m.Data, tool, "-dc"))
			dir := "metadata"
			if len(inner) > 0 {
				dir = filepath.Dir(inner[0].Name)
			}
			inner = append(inner, tarMember{dir + "/" + key, []byte(value)})
			ms[i].Data = pipe(writeTar(t, inner), tool, "-c")
			found = true
		}
		return ms
	})
	if !found {
		t.Fatal("gpkg has no metadata member")
	}
	return out
}
