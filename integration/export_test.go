package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"pkgdirfs/integration/binhost"
)

// pkgdirfs export (issue 21, item 5): the way back to a plain PKGDIR, judged
// as Portage judges a PKGDIR it did not write.

// exportSum is export's summary line.
type exportSum struct {
	Packages                          int
	Bytes                             int64
	Linked, Cloned, Copied, Unchanged int
	Removed                           int
}

var exportSumRE = regexp.MustCompile(`^exported (\d+) packages?, (\d+) bytes \([^)]*\), to (.+) in [^:]+: linked (\d+), cloned (\d+), copied (\d+), unchanged (\d+)(?:; removed (\d+) stale files?)?$`)

// runExport runs `pkgdirfs export --state STATE [ARGS...] DIR`, which must
// succeed with one summary line on stdout.
func runExport(t *testing.T, state, dir string, args ...string) exportSum {
	t.Helper()
	r := runCLI(t, append(append([]string{"export", "--state", state}, args...), dir)...)
	if r.Code != 0 {
		t.Fatalf("export: want exit 0: %s", r)
	}
	m := exportSumRE.FindStringSubmatch(strings.TrimRight(string(r.Stdout), "\n"))
	if m == nil || m[3] != dir {
		t.Fatalf("export: stdout is not one line `exported N packages, B bytes (H), to %s in T: linked A, cloned C, copied K, unchanged U[; removed R stale files]`: %s", dir, r)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	b, _ := strconv.ParseInt(m[2], 10, 64)
	return exportSum{Packages: n(m[1]), Bytes: b, Linked: n(m[4]), Cloned: n(m[5]), Copied: n(m[6]), Unchanged: n(m[7]), Removed: n(m[8])}
}

// portageCheck is what Portage finds wrong with the PKGDIR dir, nil when it
// takes it as it is: `emaint binhost --check` with FEATURES=compress-index,
// the default (portage-facts §6.5: Packages.gz there with Packages' integer
// mtime; every package the reindexing walk finds listed with MD5, SIZE and
// MTIME equal to its lstat; every entry's file found), the walk's name rules
// (§5.3: $CAT/$PN/$PF-$BUILD_ID with the entry's BUILD_ID), the fast path's
// keys (§5.2: CHOST and REPO, so that the walk need not read the files), and
// the SIZE, MD5 and SHA1 every binary merge verifies.
func portageCheck(t *testing.T, dir string) []string {
	t.Helper()
	var bad []string
	raw, err := os.ReadFile(filepath.Join(dir, "Packages"))
	if err != nil {
		return []string{err.Error()}
	}
	var st, gz unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "Packages"), &st); err != nil {
		bad = append(bad, err.Error())
	}
	if err := unix.Stat(filepath.Join(dir, "Packages.gz"), &gz); err != nil {
		bad = append(bad, "compress-index: Packages.gz: "+err.Error())
	} else if gz.Mtim.Sec != st.Mtim.Sec {
		bad = append(bad, "compress-index: Packages.gz mtime "+strconv.FormatInt(gz.Mtim.Sec, 10)+" != Packages mtime "+strconv.FormatInt(st.Mtim.Sec, 10))
	}
	ix := binhost.ParseIndex(raw)
	if err := ix.CheckVersion(); err != nil {
		bad = append(bad, err.Error())
	}
	if ts := ix.Timestamp(); ts != st.Mtim.Sec {
		bad = append(bad, "Packages mtime "+strconv.FormatInt(st.Mtim.Sec, 10)+" != its TIMESTAMP "+strconv.FormatInt(ts, 10))
	}
	if n := ix.Header["PACKAGES"]; n != strconv.Itoa(len(ix.Packages)) {
		bad = append(bad, "header PACKAGES: "+n+", but "+strconv.Itoa(len(ix.Packages))+" entries")
	}
	byPath := map[string]*binhost.Package{}
	for _, p := range ix.Packages {
		if byPath[p.Path()] != nil {
			bad = append(bad, "two entries with PATH: "+p.Path())
		}
		byPath[p.Path()] = p
	}
	walked := walkReindex(t, dir)
	found := map[string]bool{}
	for _, rel := range walked {
		found[rel] = true
		p := byPath[rel]
		if p == nil {
			bad = append(bad, "'"+rel+"' is not in Packages")
			continue
		}
		var ls unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, rel), &ls); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if p.Get("MD5") == "" || p.Get("SHA1") == "" || !p.Has("SIZE") || !p.Has("_mtime_") {
			bad = append(bad, rel+": entry lacks MD5, SHA1, SIZE or MTIME")
		}
		if ls.Size != p.Size() || ls.Mtim.Sec != p.Mtime() {
			bad = append(bad, rel+": lstat size "+strconv.FormatInt(ls.Size, 10)+" mtime "+strconv.FormatInt(ls.Mtim.Sec, 10)+
				", entry SIZE "+strconv.FormatInt(p.Size(), 10)+" MTIME "+strconv.FormatInt(p.Mtime(), 10))
		}
		if want, err := multiPath(p.CPV(), p.Get("BUILD_ID"), formatOfPath(rel)); err != nil || want != rel || p.BuildID() < 1 {
			bad = append(bad, rel+": not the multi-instance name of "+p.CPV()+" BUILD_ID "+p.Get("BUILD_ID"))
		}
		if p.Get("CHOST") == "" || p.Get("repository") == "" {
			bad = append(bad, rel+": no CHOST or REPO (the walk would read the file)")
		}
	}
	for _, p := range sortedKeys(byPath) {
		if !found[p] {
			bad = append(bad, "'"+byPath[p].CPV()+"' is not in the repository (PATH: "+p+")")
		}
	}
	sha1s, md5s := digestPaths(t, "sha1sum", dir, walked), digestPaths(t, "md5sum", dir, walked)
	for _, rel := range walked {
		if p := byPath[rel]; p != nil && (sha1s[rel] != p.Get("SHA1") || md5s[rel] != p.Get("MD5")) {
			bad = append(bad, rel+": sha1 "+sha1s[rel]+" md5 "+md5s[rel]+", entry SHA1 "+p.Get("SHA1")+" MD5 "+p.Get("MD5"))
		}
	}
	return bad
}

// exportedFiles is every regular file below dir (relative, sorted) with
// its stat.
func exportedFiles(t *testing.T, dir string) map[string]unix.Stat_t {
	t.Helper()
	out := map[string]unix.Stat_t{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkExported judges an export against the index it must hold (raw, the
// mount's Packages): Portage takes it, Packages is byte for byte the
// mount's, every entry's file is there with its digests (sha1sum) and
// MTIME, nothing else is; linked: each file is its blob's inode.
func checkExported(t *testing.T, what, state, dir string, raw []byte, linked bool) {
	t.Helper()
	if bad := portageCheck(t, dir); len(bad) > 0 {
		t.Errorf("%s: Portage's check of the export finds %d problems:\n%s", what, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
	got, err := os.ReadFile(filepath.Join(dir, "Packages"))
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("%s: export's Packages (%v) differs from the mount's: %s", what, err,
			firstDiff(strings.Split(string(raw), "\n"), strings.Split(string(got), "\n"), nil))
	}
	idx, err := parseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	insts := instances(idx)
	files := exportedFiles(t, dir)
	var paths []string
	for _, in := range insts {
		paths = append(paths, in.Path)
	}
	sums := sha1Paths(t, dir, paths)
	sha256s := digestPaths(t, "sha256sum", dir, paths)
	want := map[string]bool{"Packages": true, "Packages.gz": true, ".pkgdirfs-export": true}
	for _, in := range insts {
		want[in.Path] = true
		st, ok := files[in.Path]
		if !ok {
			t.Errorf("%s: PATH %s (%s build %d) is not in the export", what, in.Path, in.CPV, in.BuildID)
			continue
		}
		if sums[in.Path] != in.SHA1 || st.Size != in.Size || st.Mtim.Sec != in.Mtime {
			t.Errorf("%s: %s: sha1 %s, size %d, mtime %d; want the entry's %s, %d, %d", what, in.Path, sums[in.Path], st.Size, st.Mtim.Sec, in.SHA1, in.Size, in.Mtime)
		}
		sum := sha256s[in.Path]
		var bst unix.Stat_t
		if err := unix.Stat(filepath.Join(state, "blobs", sum[:min(2, len(sum))], sum), &bst); err != nil {
			t.Errorf("%s: %s: its blob: %v", what, in.Path, err)
			continue
		}
		if same := bst.Ino == st.Ino && bst.Dev == st.Dev && st.Nlink >= 2; same != linked {
			t.Errorf("%s: %s: a hard link to its blob %v (ino %d nlink %d, blob ino %d), want %v", what, in.Path, same, st.Ino, st.Nlink, bst.Ino, linked)
		}
	}
	for _, rel := range sortedKeys(files) {
		if !want[rel] {
			t.Errorf("%s: unexpected file in the export: %s", what, rel)
		}
	}
}

// TestExportMounted: packages copied into a mount (cp -a, cp, a touch) and
// one removed, then an export while mounted is a PKGDIR Portage takes, with
// the mount's Packages, hard links to the blobs, and the same export as of
// the unmounted state; an export to another filesystem copies; exporting
// again updates; a non-empty directory that is no export is refused.
func TestExportMounted(t *testing.T) {
	t.Parallel()
	_, state, mi := mountFixture(t, "xpak-zstd-multi")
	mnt := mi.Dir
	idx0, _ := wReadIndex(t, mnt)
	// A plain cp of a multi-instance package, a touch of one imported
	// build (its catalog mtime moves, its blob's does not), an rm of another.
	insts0 := instances(idx0)
	multi := extractFixture(t, "xpak-bzip2-multi")
	var plainPath string
	for _, b := range readFixtureIndex(t, multi).Blocks {
		p, _ := get(b, "PATH")
		if !slices.ContainsFunc(insts0, func(in instance) bool { return in.Path == p }) {
			plainPath = p // a name the mount does not show yet
			break
		}
	}
	if plainPath == "" {
		t.Fatal("premise: xpak-bzip2-multi has a package at a path xpak-zstd-multi has not")
	}
	mustRun(t, "", "mkdir", "-p", filepath.Dir(filepath.Join(mnt, plainPath)))
	mustRun(t, "", "cp", filepath.Join(multi, plainPath), filepath.Join(mnt, plainPath))
	// cp -a of a flat PKGDIR's categories (build ids given at commit).
	flat := extractFixture(t, "gpkg-xz-flat")
	ents, _ := os.ReadDir(flat)
	var cats []string
	for _, e := range ents {
		if e.IsDir() {
			cats = append(cats, shQuote(filepath.Join(flat, e.Name())))
		}
	}
	if r := shell(t, "", "cp -a "+strings.Join(cats, " ")+" "+shQuote(mnt)+"/"); r.Code != 0 {
		t.Fatalf("cp -a into the mount: %s", r)
	}
	touched, gone := insts0[0], insts0[len(insts0)-1]
	mustRun(t, "", "touch", "-m", "-d", "@1600000000", filepath.Join(mnt, touched.Path))
	mustRun(t, "", "rm", filepath.Join(mnt, gone.Path))

	idx, raw := wReadIndex(t, mnt)
	byPath := map[string]instance{}
	for _, in := range instances(idx) {
		byPath[in.Path] = in
	}
	if _, ok := byPath[gone.Path]; ok {
		t.Fatalf("premise: MNT/Packages still lists the removed %s", gone.Path)
	}
	if in, ok := byPath[touched.Path]; !ok || in.Mtime != 1600000000 {
		t.Fatalf("premise: MNT/Packages gives the touched %s MTIME %d, want 1600000000", touched.Path, in.Mtime)
	}
	if _, ok := byPath[plainPath]; !ok || len(idx.Blocks) <= len(idx0.Blocks) {
		t.Fatalf("premise: the copies are in MNT/Packages (%d entries, %d before)", len(idx.Blocks), len(idx0.Blocks))
	}

	// While mounted: the state's filesystem, so hard links.
	live := filepath.Join(t.TempDir(), "binpkgs.new")
	s := runExport(t, state, live)
	if s.Packages != len(idx.Blocks) || s.Linked != s.Packages || s.Copied+s.Cloned+s.Unchanged+s.Removed != 0 {
		t.Errorf("export while mounted: %+v, want all %d packages linked", s, len(idx.Blocks))
	}
	checkExported(t, "export while mounted", state, live, raw, true)
	if _, err := os.Stat(filepath.Join(live, gone.Path)); err == nil {
		t.Errorf("the export holds the removed %s", gone.Path)
	}
	// Exporting again changes nothing, and refills what went missing.
	os.Remove(filepath.Join(live, plainPath))
	s = runExport(t, state, live)
	if s.Unchanged != s.Packages-1 || s.Linked != 1 {
		t.Errorf("export again over the first (one file deleted): %+v, want 1 linked and the rest unchanged", s)
	}
	checkExported(t, "export again", state, live, raw, true)
	// Not into a PKGDIR that is no export, nor into the mount.
	for _, dir := range []string{flat, filepath.Join(mnt, "sub")} {
		if r := runCLI(t, "export", "--state", state, dir); r.Code != 1 || !strings.Contains(string(r.Stderr), dir) {
			t.Errorf("export into %s: want exit 1 naming it: %s", dir, r)
		}
	}
	// Another filesystem: copies, the same PKGDIR.
	other := filepath.Join(smallTmpfs(t), "binpkgs")
	s = runExport(t, state, other)
	if s.Copied+s.Cloned != s.Packages || s.Linked != 0 {
		t.Errorf("export to another filesystem: %+v, want every package copied", s)
	}
	checkExported(t, "export to a tmpfs", state, other, raw, false)

	// Unmounted: the same export.
	unmountNow(t, mi)
	cold := filepath.Join(t.TempDir(), "binpkgs.cold")
	runExport(t, state, cold)
	checkExported(t, "export of the unmounted state", state, cold, raw, true)
	a, b := exportedFiles(t, live), exportedFiles(t, cold)
	if !slices.Equal(sortedKeys(a), sortedKeys(b)) {
		t.Errorf("the exports of the mounted and of the unmounted state hold other files:\n%v\n%v", sortedKeys(a), sortedKeys(b))
	}
	for rel, st := range a {
		o := b[rel]
		switch rel {
		case ".pkgdirfs-export":
		case "Packages", "Packages.gz":
			if o.Mtim != st.Mtim || o.Size != st.Size {
				t.Errorf("%s: mounted export size %d mtime %v, unmounted %d %v", rel, st.Size, st.Mtim, o.Size, o.Mtim)
			}
		default: // both the blob's inode
			if o.Mtim != st.Mtim || o.Size != st.Size || o.Ino != st.Ino {
				t.Errorf("%s: mounted export ino %d size %d mtime %v, unmounted %d %d %v", rel, st.Ino, st.Size, st.Mtim, o.Ino, o.Size, o.Mtim)
			}
		}
	}
	if pa, pb := readFile(t, filepath.Join(live, "Packages")), readFile(t, filepath.Join(cold, "Packages")); !bytes.Equal(pa, pb) {
		t.Errorf("the exports of the mounted and of the unmounted state have other Packages")
	}
	if r := runCLI(t, "verify", "--state", state, "--deep"); r.Code != 0 {
		t.Errorf("verify --deep after the exports: %s", r)
	}
}

// TestExportCheckFails: portageCheck is not blind: an export with a file's
// mtime off, a file missing, an extra package, or no Packages.gz fails it.
func TestExportCheckFails(t *testing.T) {
	t.Parallel()
	_, state, _ := importedFixture(t, "xpak-xz-multi")
	dir := filepath.Join(t.TempDir(), "export")
	runExport(t, state, dir)
	if bad := portageCheck(t, dir); len(bad) != 0 {
		t.Fatalf("premise: the export passes: %v", bad)
	}
	idx := readFixtureIndex(t, dir)
	first, _ := get(idx.Blocks[0], "PATH")
	second, _ := get(idx.Blocks[1], "PATH")
	extra := regexp.MustCompile(`-\d+\.xpak$`).ReplaceAllString(first, "-99.xpak")
	for _, c := range []struct {
		what, script, want string
	}{
		{"a touched file", "touch -m -d @1500000000 " + shQuote(first), "lstat size"},
		{"a missing file", "rm " + shQuote(first), "is not in the repository"},
		{"an extra package", "cp -p " + shQuote(first) + " " + shQuote(extra), "is not in Packages"},
		{"a changed byte, mtime kept", "m=$(stat -c %Y " + shQuote(second) + ") && printf x | dd of=" + shQuote(second) +
			" bs=1 seek=100 conv=notrunc status=none && touch -m -d @$m " + shQuote(second), ": sha1 "},
		{"no Packages.gz", "rm Packages.gz", "compress-index"},
	} {
		cp := filepath.Join(t.TempDir(), "copy")
		mustRun(t, "", "cp", "-a", dir, cp)
		if r := shell(t, cp, c.script); r.Code != 0 {
			t.Fatalf("%s: %s", c.what, r)
		}
		if bad := portageCheck(t, cp); !strings.Contains(strings.Join(bad, "\n"), c.want) {
			t.Errorf("%s: portageCheck says %v, want a problem with %q", c.what, bad, c.want)
		}
	}
}
