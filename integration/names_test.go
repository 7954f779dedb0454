package integration

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The names tests judge the mount the way Portage and file tools see it:
// every instance is exactly one regular file (its multi-instance PATH); the
// flat ($CAT/$PF.tbz2, $CAT/$PF.gpkg.tar) and legacy (All/...) names are
// relative symlinks to the newest instance of that CPV and format; copying a
// PKGDIR in (cp -a, rsync -a, tar -x), merging two, or a rename of a
// different build onto an existing name never loses a build.

// ---------------------------------------------------------------- Portage's walk

// walkedPkg is one package file Portage's reindex walk
// (binarytree._populate_local, portage-facts.md §5.2-5.4) would accept by
// its name and place, without reading its metadata.
type walkedPkg struct {
	Rel     string // path relative to the walked root, '/'-separated
	Cat     string // category = first path component ("" under All/: only the metadata knows it)
	PF      string
	Format  string // "xpak" (.tbz2, .xpak) or "gpkg" (.gpkg.tar)
	Multi   bool   // $CAT/$PN/$PF-$BUILD_ID.{xpak,gpkg.tar}
	BuildID int    // parsed from the name; 0 unless Multi
}

// CPV is CAT/PF, or "" for a package under All/.
func (w walkedPkg) CPV() string {
	if w.Cat == "" {
		return ""
	}
	return w.Cat + "/" + w.PF
}

// nmCategoryRE is dbapi._category_re (ASCII \w in Go).
var nmCategoryRE = regexp.MustCompile(`^\w[-.+\w]*$`)

// nmPortageExt is the supported extension name ends in ("" if none).
func nmPortageExt(name string) string {
	for _, ext := range []string{".tbz2", ".xpak", ".gpkg.tar"} {
		if strings.HasSuffix(name, ext) {
			return ext
		}
	}
	return ""
}

// nmParseBuildID is binarytree._parse_build_id on a name without its
// extension: split once from the right at '-'; when the left part is a
// valid PN-PV[-rN] and the right part an integer, that integer (and the
// left part, the PF), else -1.
func nmParseBuildID(stem string) (int, string) {
	i := strings.LastIndexByte(stem, '-')
	if i < 0 {
		return -1, ""
	}
	left, right := stem[:i], stem[i+1:]
	if right == "" || strings.Trim(right, "0123456789") != "" || !pfRE.MatchString(left) {
		return -1, ""
	}
	n, err := strconv.Atoi(right)
	if err != nil {
		return -1, ""
	}
	return n, left
}

// nmClassify applies _populate_local's name and directory rules to the
// path rel of a regular file: .xpak is always multi-instance (build id >= 1
// in canonical form, in exactly $CAT/$PN); .gpkg.tar is multi-instance when
// the name carries a build id > 0, else flat; .tbz2 is never multi-instance.
// Non-multi files must sit directly in $CAT or All/.
func nmClassify(rel string) (walkedPkg, bool) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	ext := nmPortageExt(name)
	if ext == "" || strings.HasPrefix(name, ".") {
		return walkedPkg{}, false
	}
	w := walkedPkg{Rel: rel, Format: formatOfPath(name)}
	stem := strings.TrimSuffix(name, ext)
	id, pf := nmParseBuildID(stem)
	multi := ext == ".xpak" || (ext == ".gpkg.tar" && id > 0)
	if multi {
		if id < 1 || stem != pf+"-"+strconv.Itoa(id) {
			return walkedPkg{}, false // "Binary package name is invalid"
		}
		m := pfRE.FindStringSubmatch(pf)
		parts := strings.Split(dir, "/")
		if m == nil || len(parts) != 2 || parts[1] != m[1] || !nmCategoryRE.MatchString(parts[0]) {
			return walkedPkg{}, false // not in $CAT/$PN: silently ignored
		}
		w.Cat, w.PF, w.Multi, w.BuildID = parts[0], pf, true, id
		return w, true
	}
	if dir == "" || strings.Contains(dir, "/") || !pfRE.MatchString(stem) {
		return walkedPkg{}, false // non-multi outside $CAT and All/
	}
	if dir != "All" {
		if !nmCategoryRE.MatchString(dir) {
			return walkedPkg{}, false
		}
		w.Cat = dir
	}
	w.PF = stem
	return w, true
}

// portageWalk walks root like Portage's reindex: os.walk (symlinked
// directories are not entered), and for each file name with a supported
// extension an lstat: only regular files count (a symlink at a flat or
// All/ name is skipped), then nmClassify. Sorted by path.
func portageWalk(t *testing.T, root string) []walkedPkg {
	t.Helper()
	var out []walkedPkg
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || nmPortageExt(d.Name()) == "" {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if w, ok := nmClassify(filepath.ToSlash(rel)); ok {
			out = append(out, w)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s like Portage's _populate_local (os.walk, lstat): %v", root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rel < out[j].Rel })
	return out
}

// nmCheckWalkMatchesIndex: Portage's walk of mnt finds exactly the
// instances of the index, each once at its PATH, multi-instance (unless
// wantMulti is false: a mount without the multi layout), with the CPV and
// BUILD_ID its name implies.
func nmCheckWalkMatchesIndex(t *testing.T, mnt string, insts []instance, wantMulti bool) {
	t.Helper()
	walked := portageWalk(t, mnt)
	byPath := map[string]instance{}
	for _, in := range insts {
		byPath[in.Path] = in
	}
	seen := map[string]bool{}
	var extra, wrong []string
	for _, w := range walked {
		in, ok := byPath[w.Rel]
		if !ok {
			extra = append(extra, w.Rel)
			continue
		}
		seen[w.Rel] = true
		if w.Multi != wantMulti {
			wrong = append(wrong, fmt.Sprintf("%s: multi-instance=%v, want %v", w.Rel, w.Multi, wantMulti))
		}
		if w.Cat != "" && w.CPV() != in.CPV {
			wrong = append(wrong, fmt.Sprintf("%s: the name says CPV %s, Packages says %s", w.Rel, w.CPV(), in.CPV))
		}
		if w.Multi && int64(w.BuildID) != in.BuildID {
			wrong = append(wrong, fmt.Sprintf("%s: the name says build id %d, Packages says BUILD_ID %d", w.Rel, w.BuildID, in.BuildID))
		}
	}
	var missing []string
	for _, in := range insts {
		if !seen[in.Path] {
			missing = append(missing, in.Path)
		}
	}
	sort.Strings(missing)
	if len(walked) != len(insts) || len(extra)+len(missing)+len(wrong) > 0 {
		t.Errorf("Portage's reindex walk of MNT (os.walk + lstat S_ISREG + name rules) finds %d package files, Packages lists %d instances:\n"+
			"  not found by the walk (not a regular file at PATH?): %v\n  found but not a PATH in Packages: %v\n  wrong: %v",
			len(walked), len(insts), nmClip(missing), nmClip(extra), nmClip(wrong))
	}
}

func nmClip(l []string) string {
	if len(l) > 12 {
		return fmt.Sprintf("%v ... (%d more)", l[:12], len(l)-12)
	}
	return fmt.Sprint(l)
}

// TestPortageWalk: the walker itself, on plain directories: each fixture's
// package files are exactly the PATHs of its own Packages (legacy-all, which
// has no Packages: the All/ files of the same 20 packages as
// xpak-bzip2-flat; its $CAT/$PF.tbz2 symlinks are skipped), and a
// hand-made tree of names Portage rejects.
func TestPortageWalk(t *testing.T) {
	t.Parallel()
	for _, name := range allFixtures {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := extractFixture(t, name)
			var fix *pkgIndex
			if name == legacyFixture {
				fix = readFixtureIndex(t, extractFixture(t, "xpak-bzip2-flat"))
			} else {
				fix = readFixtureIndex(t, src)
			}
			want := map[string]string{} // path → CPV
			for _, b := range fix.Blocks {
				cpv, _ := get(b, "CPV")
				p, ok := get(b, "PATH")
				if !ok {
					p = cpv + ".tbz2"
				}
				if name == legacyFixture {
					p = "All/" + path.Base(p)
				}
				want[p] = cpv
			}
			walked := portageWalk(t, src)
			got := map[string]walkedPkg{}
			for _, w := range walked {
				got[w.Rel] = w
			}
			for _, p := range sortedKeys(want) {
				w, ok := got[p]
				if !ok {
					t.Errorf("%s: walker missed %s (listed in the fixture's Packages)", name, p)
					continue
				}
				if w.Cat != "" && w.CPV() != want[p] {
					t.Errorf("%s: walker derives CPV %q from %s, Packages says %q", name, w.CPV(), p, want[p])
				}
				multiFixture := strings.HasSuffix(name, "-multi")
				if w.Multi != multiFixture {
					t.Errorf("%s: walker says %s multi-instance=%v, want %v", name, p, w.Multi, multiFixture)
				}
			}
			for _, p := range sortedKeys(got) {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: walker found %s, which the fixture's Packages does not list", name, p)
				}
			}
			if len(walked) != len(fix.Blocks) {
				t.Errorf("%s: walker found %d packages, the fixture's Packages lists %d", name, len(walked), len(fix.Blocks))
			}
		})
	}

	t.Run("rules", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		accept := map[string]walkedPkg{
			"app-misc/hello/hello-2.10-1.xpak":           {Cat: "app-misc", PF: "hello-2.10", Format: "xpak", Multi: true, BuildID: 1},
			"app-misc/hello/hello-2.10-12.gpkg.tar":      {Cat: "app-misc", PF: "hello-2.10", Format: "gpkg", Multi: true, BuildID: 12},
			"app-misc/hello-2.10.tbz2":                   {Cat: "app-misc", PF: "hello-2.10", Format: "xpak"},
			"app-misc/hello-2.10.gpkg.tar":               {Cat: "app-misc", PF: "hello-2.10", Format: "gpkg"},
			"All/hello-2.10.tbz2":                        {PF: "hello-2.10", Format: "xpak"},
			"app-editors/nano/nano-7.2-r1-2.xpak":        {Cat: "app-editors", PF: "nano-7.2-r1", Format: "xpak", Multi: true, BuildID: 2},
			"app-editors/nano-7.2-r1.gpkg.tar":           {Cat: "app-editors", PF: "nano-7.2-r1", Format: "gpkg"},
			"dev-libs/libsigc++/libsigc++-2.12.1-3.xpak": {Cat: "dev-libs", PF: "libsigc++-2.12.1", Format: "xpak", Multi: true, BuildID: 3},
		}
		reject := []string{
			"app-misc/hello/hello-2.10.xpak",         // .xpak without a build id
			"app-misc/hello/hello-2.10-0.xpak",       // build id < 1
			"app-misc/hello/hello-2.10-01.xpak",      // not the canonical str(int)
			"app-misc/other/hello-2.10-1.xpak",       // not in $CAT/$PN
			"app-misc/hello-2.10-1.xpak",             // multi-instance outside $CAT/$PN
			"app-misc/hello-2.10-2.gpkg.tar",         // likewise
			"app-misc/hello/hello-2.10.tbz2",         // non-multi outside $CAT and All/
			"app-misc/hello/hello-2.10.gpkg.tar",     // likewise
			"hello-2.10.tbz2",                        // at the root
			"app-misc/.hello-2.10.tbz2",              // hidden (rsync temp names and the like)
			"app-misc/hello-2.10.tbz2.partial",       // not a package extension
			"app-misc/hello/.hello-2.10-1.xpak.Ab12", // rsync's temp name
			"app-misc/Packages",                      // not a package
		}
		for p := range accept {
			nmWriteFile(t, root, p)
		}
		for _, p := range reject {
			nmWriteFile(t, root, p)
		}
		// Symlinks at package names and symlinked directories are skipped.
		if err := os.MkdirAll(filepath.Join(root, "sys-apps"), 0o755); err != nil {
			t.Fatal(err)
		}
		for link, target := range map[string]string{
			"sys-apps/hello-2.10.tbz2": "../All/hello-2.10.tbz2",
			"sys-apps/hello":           "../app-misc/hello",
			"app-misc/dangling-1.tbz2": "nowhere-1.tbz2",
		} {
			if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
		}
		// A directory with a package name is not a file.
		if err := os.MkdirAll(filepath.Join(root, "app-misc", "dir-1.0.tbz2"), 0o755); err != nil {
			t.Fatal(err)
		}
		got := map[string]walkedPkg{}
		for _, w := range portageWalk(t, root) {
			got[w.Rel] = w
		}
		for p, want := range accept {
			want.Rel = p
			if g, ok := got[p]; !ok {
				t.Errorf("walker rejected %s; Portage accepts it", p)
			} else if g != want {
				t.Errorf("walker on %s: got %+v, want %+v", p, g, want)
			}
		}
		for _, p := range sortedKeys(got) {
			if _, ok := accept[p]; !ok {
				t.Errorf("walker accepted %s; Portage's _populate_local skips it", p)
			}
		}
	})
}

func nmWriteFile(t *testing.T, root, rel string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- helpers

// nmImportFixture extracts fixture name and imports it into a fresh state;
// n is its number of instances (legacy-all has no Packages: Portage's walk
// counts them).
func nmImportFixture(t *testing.T, name string) (src, state string, n int) {
	t.Helper()
	if name != legacyFixture {
		src, state, fix := importedFixture(t, name)
		return src, state, len(fix.Blocks)
	}
	src = extractFixture(t, name)
	n = nmFixtureCount(t, name, src)
	state = t.TempDir()
	importOK(t, state, importSummary{n, 0, 0}, src)
	return src, state, n
}

// nmFixtureCount is the number of instances in an extracted fixture.
func nmFixtureCount(t *testing.T, name, src string) int {
	t.Helper()
	if name == legacyFixture {
		n := len(portageWalk(t, src))
		if n == 0 {
			t.Fatalf("%s: Portage's walk finds no package in %s", name, src)
		}
		return n
	}
	return len(readFixtureIndex(t, src).Blocks)
}

// nmSet is a multiset of "CPV sha1=SHA1" over the instances of an index.
func nmSet(idx *pkgIndex) map[string]int {
	m := map[string]int{}
	for _, in := range instances(idx) {
		m[in.CPV+" sha1="+in.SHA1]++
	}
	return m
}

func nmCount(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// nmSetDiff describes how got differs from want ("" if equal).
func nmSetDiff(want, got map[string]int) string {
	var missing, extra []string
	for _, k := range sortedKeys(want) {
		if got[k] < want[k] {
			missing = append(missing, fmt.Sprintf("%s (want %d, got %d)", k, want[k], got[k]))
		}
	}
	for _, k := range sortedKeys(got) {
		if got[k] > want[k] {
			extra = append(extra, fmt.Sprintf("%s (want %d, got %d)", k, want[k], got[k]))
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("want %d instances, got %d\n  missing (lost builds): %s\n  extra: %s",
		nmCount(want), nmCount(got), nmClip(missing), nmClip(extra))
}

// nmImportedSet imports srcs into a fresh state and returns the instance
// multiset `pkgdirfs index` lists, and the import summary.
func nmImportedSet(t *testing.T, srcs ...string) (map[string]int, importSummary) {
	t.Helper()
	state := t.TempDir()
	r, s := importDirs(t, state, srcs...)
	if r.Code != 0 || s.Invalid != 0 {
		t.Fatalf("reference import of %v: want exit 0 and invalid 0: %s", srcs, r)
	}
	ix := runCLI(t, "index", "--state", state)
	if ix.Code != 0 {
		t.Fatalf("reference `pkgdirfs index --state %s`: %s", state, ix)
	}
	idx, err := parseIndex(ix.Stdout)
	if err != nil {
		t.Fatalf("reference `pkgdirfs index`: %v", err)
	}
	return nmSet(idx), s
}

// nmCopy is one way to copy a PKGDIR into a mount.
type nmCopy struct {
	name   string
	script func(src, mnt string) string
}

var (
	nmCp    = nmCopy{"cp", func(src, mnt string) string { return "cp -a " + shQuote(src+"/.") + " " + shQuote(mnt+"/") }}
	nmRsync = nmCopy{"rsync", func(src, mnt string) string { return "rsync -a " + shQuote(src+"/") + " " + shQuote(mnt+"/") }}
	nmTar   = nmCopy{"tar", func(src, mnt string) string {
		return "tar -C " + shQuote(src) + " -cf - . | tar -C " + shQuote(mnt) + " -xf -"
	}}
)

// nmRunCopy runs a copy script (its process group killed after
// wToolTimeout) and requires exit 0; false when it timed out.
func nmRunCopy(t *testing.T, mi *mountInfo, script string) bool {
	t.Helper()
	r, timedOut := wRunTool(t, script)
	switch {
	case timedOut:
		t.Errorf("`%s` did not finish within %v (killed): %s\n%s", script, wToolTimeout, r, wDaemonLog(mi))
		return false
	case r.Code != 0:
		t.Errorf("`%s`: want exit 0, got %s\n%s", script, r, wDaemonLog(mi))
	}
	return true
}

// nmFind runs `find MNT ARGS... -printf FORMAT` and returns its lines.
func nmFind(t *testing.T, mnt string, args ...string) []string {
	t.Helper()
	out := mustRun(t, mnt, "find", args...)
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// ---------------------------------------------------------------- 2. one file per instance

// nmCheckOneRegularFilePerInstance: `find -type f` with the package
// extensions lists each instance exactly once, at its PATH, and nothing else.
func nmCheckOneRegularFilePerInstance(t *testing.T, mnt string, insts []instance) {
	t.Helper()
	args := []string{".", "-type", "f", "(", "-name", "*.xpak", "-o", "-name", "*.tbz2", "-o", "-name", "*.gpkg.tar", ")", "-printf", "%P\n"}
	found := map[string]int{}
	for _, p := range nmFind(t, mnt, args...) {
		found[p]++
	}
	var missing, dup, extra []string
	want := map[string]bool{}
	for _, in := range insts {
		want[in.Path] = true
		switch found[in.Path] {
		case 0:
			missing = append(missing, in.Path)
		case 1:
		default:
			dup = append(dup, in.Path)
		}
	}
	for _, p := range sortedKeys(found) {
		if !want[p] {
			extra = append(extra, p)
		}
	}
	if len(missing)+len(dup)+len(extra) > 0 {
		t.Errorf("`find MNT %s` lists %d regular package files for %d instances; want each instance's PATH exactly once and no other regular file:\n"+
			"  missing: %s\n  listed twice: %s\n  regular files that are not an instance's PATH (flat/All names must be symlinks): %s",
			strings.Join(args, " "), nmCount(found), len(insts), nmClip(missing), nmClip(dup), nmClip(extra))
	}
}

// nmAlias is one flat or All/ name and the symlink target it must have.
type nmAlias struct {
	Name, Target string
	Inst         instance
}

// nmAliases are the flat and All/ names of the newest instance of each
// (CPV, format) on a mount with all layouts: $CAT/$PF.ext -> $PN/$PF-$ID.ext
// and All/$PF.ext -> ../$CAT/$PN/$PF-$ID.ext.
func nmAliases(insts []instance) []nmAlias {
	var out []nmAlias
	for _, in := range newest(insts) {
		cat, _, _ := strings.Cut(in.CPV, "/")
		flat, all := flatNames(in.CPV, in.Format)
		out = append(out,
			nmAlias{flat, strings.TrimPrefix(in.Path, cat+"/"), in},
			nmAlias{all, "../" + in.Path, in})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nmCheckAliases: each alias is a symlink (lstat) with the exact relative
// target (readlink), resolves (realpath) to the instance's file, stat
// through it is that file's inode, and sha1sum through it gives its SHA1;
// `find -type l` lists exactly the aliases.
func nmCheckAliases(t *testing.T, mnt string, aliases []nmAlias) {
	t.Helper()
	var names []string
	for _, a := range aliases {
		names = append(names, a.Name)
		p := filepath.Join(mnt, a.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("lstat MNT/%s (alias of %s, the newest %s %s): %v", a.Name, a.Inst.Path, a.Inst.CPV, a.Inst.Format, err)
			continue
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("MNT/%s is a %s (mode %v), want a symlink -> %s (the newest %s %s instance)",
				a.Name, nmKind(fi.Mode()), fi.Mode(), a.Target, a.Inst.CPV, a.Inst.Format)
		} else if tgt, err := os.Readlink(p); err != nil {
			t.Errorf("readlink MNT/%s: %v", a.Name, err)
		} else if tgt != a.Target {
			t.Errorf("readlink MNT/%s = %q, want %q (the newest %s %s instance, BUILD_ID %d)", a.Name, tgt, a.Target, a.Inst.CPV, a.Inst.Format, a.Inst.BuildID)
		}
		resolved, err := filepath.EvalSymlinks(p)
		wantReal, err2 := filepath.EvalSymlinks(filepath.Join(mnt, a.Inst.Path))
		switch {
		case err != nil || err2 != nil:
			t.Errorf("realpath MNT/%s: %v; realpath MNT/%s: %v", a.Name, err, a.Inst.Path, err2)
		case fi.Mode()&os.ModeSymlink != 0 && resolved != wantReal:
			t.Errorf("realpath MNT/%s = %s, want %s", a.Name, resolved, wantReal)
		}
		var st, want syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Errorf("stat (following) MNT/%s: %v", a.Name, err)
		} else if err := syscall.Stat(filepath.Join(mnt, a.Inst.Path), &want); err != nil {
			t.Errorf("stat MNT/%s: %v", a.Inst.Path, err)
		} else if st.Ino != want.Ino || st.Size != a.Inst.Size || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			t.Errorf("stat through MNT/%s: ino %d size %d mode %o; want the regular file MNT/%s: ino %d size %d (SIZE %d)",
				a.Name, st.Ino, st.Size, st.Mode, a.Inst.Path, want.Ino, want.Size, a.Inst.Size)
		}
	}
	sums := sha1Paths(t, mnt, names)
	for _, a := range aliases {
		if got := sums[a.Name]; got != a.Inst.SHA1 {
			t.Errorf("sha1sum MNT/%s = %q, want SHA1 %s of the newest instance %s", a.Name, got, a.Inst.SHA1, a.Inst.Path)
		}
	}
	want := map[string]string{}
	for _, a := range aliases {
		want[a.Name] = a.Target
	}
	var bad []string
	got := map[string]bool{}
	for _, l := range nmFind(t, mnt, ".", "-type", "l", "-printf", "%P\t%l\n") {
		name, tgt, _ := strings.Cut(l, "\t")
		got[name] = true
		if w, ok := want[name]; !ok {
			bad = append(bad, fmt.Sprintf("unexpected symlink %s -> %s", name, tgt))
		} else if tgt != w {
			bad = append(bad, fmt.Sprintf("%s -> %s, want -> %s", name, tgt, w))
		}
	}
	for _, n := range sortedKeys(want) {
		if !got[n] {
			bad = append(bad, "no symlink at "+n)
		}
	}
	if len(bad) > 0 {
		t.Errorf("`find MNT -type l` differs from the expected flat/All symlinks (%d expected, %d found): %s", len(want), len(got), nmClip(bad))
	}
}

func nmKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}

// nmCheckRegularBytes: the regular files of the mount but Packages and
// Packages.gz hold exactly the sum of the instances' SIZE (no file twice).
func nmCheckRegularBytes(t *testing.T, mnt string, insts []instance) {
	t.Helper()
	var total, want int64
	files := 0
	for _, l := range nmFind(t, mnt, ".", "-type", "f", "-printf", "%s\t%P\n") {
		s, name, _ := strings.Cut(l, "\t")
		if name == "Packages" || name == "Packages.gz" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("find -printf '%%s': bad size %q", l)
		}
		total += n
		files++
	}
	for _, in := range insts {
		want += in.Size
	}
	if total != want {
		t.Errorf("regular files under MNT (but Packages, Packages.gz): %d files, %d bytes; Packages lists %d instances, SIZE sum %d bytes (`find MNT -type f -printf '%%s'`)",
			files, total, len(insts), want)
	}
}

// TestNamesOneFilePerInstance: on a default mount of each fixture every
// instance is one regular file at its PATH, Portage's walk counts exactly
// the instances, flat and All/ names are relative symlinks to the newest
// instance, and the bytes of the regular files add up to the SIZEs. With
// --layouts flat,legacy the flat name is the file and All/ links to it.
func TestNamesOneFilePerInstance(t *testing.T) {
	t.Parallel()
	for _, name := range allFixtures {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, state, n := nmImportFixture(t, name)
			mnt := mountFS(t, state)
			idx, _ := checkIndexFiles(t, mnt, state, false)
			insts := instances(idx)
			if len(insts) != n {
				t.Errorf("MNT/Packages lists %d instances, the fixture has %d", len(insts), n)
			}
			nmCheckOneRegularFilePerInstance(t, mnt, insts)
			nmCheckWalkMatchesIndex(t, mnt, insts, true)
			nmCheckAliases(t, mnt, nmAliases(insts))
			nmCheckRegularBytes(t, mnt, insts)
		})
	}

	t.Run("flat+legacy", func(t *testing.T) {
		t.Parallel()
		// Several builds per CPV: the flat name is the newest's file.
		_, state, _ := nmImportFixture(t, "gpkg-zstd-multi")
		ix := runCLI(t, "index", "--state", state)
		if ix.Code != 0 {
			t.Fatalf("pkgdirfs index: %s", ix)
		}
		full, err := parseIndex(ix.Stdout)
		if err != nil {
			t.Fatalf("pkgdirfs index: %v", err)
		}
		nw := newest(instances(full))
		mnt := mountFS(t, state, "--layouts", "flat,legacy")
		idx, _ := checkIndexFiles(t, mnt, state, false)
		insts := instances(idx)
		if len(insts) != len(nw) {
			t.Errorf("--layouts flat,legacy: MNT/Packages lists %d instances, want %d (the newest per CPV and format)", len(insts), len(nw))
		}
		for _, in := range insts {
			want, ok := nw[[2]string{in.CPV, in.Format}]
			flat, all := flatNames(in.CPV, in.Format)
			if in.Path != flat {
				t.Errorf("--layouts flat,legacy: %s PATH %s, want the flat name %s", in.CPV, in.Path, flat)
				continue
			}
			if !ok || want.SHA1 != in.SHA1 {
				t.Errorf("--layouts flat,legacy: %s lists SHA1 %s, want the newest instance's %s", flat, in.SHA1, want.SHA1)
			}
			fi, err := os.Lstat(filepath.Join(mnt, flat))
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("--layouts flat,legacy: lstat MNT/%s: %v %v, want a regular file", flat, err, fi)
				continue
			}
			ai, err := os.Lstat(filepath.Join(mnt, all))
			if err != nil {
				t.Errorf("--layouts flat,legacy: lstat MNT/%s: %v", all, err)
				continue
			}
			wantTgt := "../" + flat
			if ai.Mode()&os.ModeSymlink == 0 {
				t.Errorf("--layouts flat,legacy: MNT/%s is a %s, want a symlink -> %s", all, nmKind(ai.Mode()), wantTgt)
			} else if tgt, err := os.Readlink(filepath.Join(mnt, all)); err != nil || tgt != wantTgt {
				t.Errorf("--layouts flat,legacy: readlink MNT/%s = %q (%v), want %q", all, tgt, err, wantTgt)
			}
			var a, f syscall.Stat_t
			if err := syscall.Stat(filepath.Join(mnt, all), &a); err != nil {
				t.Errorf("stat MNT/%s: %v", all, err)
			} else if err := syscall.Stat(filepath.Join(mnt, flat), &f); err != nil || a.Ino != f.Ino {
				t.Errorf("--layouts flat,legacy: stat through MNT/%s gives ino %d, MNT/%s has ino %d (%v)", all, a.Ino, flat, f.Ino, err)
			}
		}
		nmCheckOneRegularFilePerInstance(t, mnt, insts)
		nmCheckWalkMatchesIndex(t, mnt, insts, false)
		nmCheckRegularBytes(t, mnt, insts)
	})
}

// ---------------------------------------------------------------- 3. copy in

// TestNamesCopyIn: cp -a, rsync -a and a tar pipe of each fixture into a
// fresh empty mount give the instance set (CPV, SHA1) of `pkgdirfs import`
// of it, Portage's walk of the mount matches the index, and the same copy
// again adds nothing.
func TestNamesCopyIn(t *testing.T) {
	t.Parallel()
	for _, name := range allFixtures {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := extractFixture(t, name)
			want, _ := nmImportedSet(t, src)
			if n := nmFixtureCount(t, name, src); nmCount(want) != n {
				t.Fatalf("test premise: importing %s lists %d instances, the fixture has %d", name, nmCount(want), n)
			}
			for _, c := range []nmCopy{nmCp, nmRsync, nmTar} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					mi := mountFSInfo(t, t.TempDir())
					script := c.script(src, mi.Dir)
					if !nmRunCopy(t, mi, script) {
						return
					}
					idx := readIndex(t, mi.Dir)
					if d := nmSetDiff(want, nmSet(idx)); d != "" {
						t.Errorf("after `%s` into an empty mount, MNT/Packages differs from `pkgdirfs import` of the same PKGDIR (by CPV, SHA1): %s", script, d)
					}
					nmCheckCopied(t, mi, script, idx)
				})
			}
		})
	}
}

// nmCheckCopied checks the tree after script copied a PKGDIR into the mount
// (its index idx: Portage's walk, one file per instance, exact symlinks),
// then runs the copy again, which must change nothing.
func nmCheckCopied(t *testing.T, mi *mountInfo, script string, idx *pkgIndex) {
	t.Helper()
	nmCheckWalkMatchesIndex(t, mi.Dir, instances(idx), true)
	nmCheckOneRegularFilePerInstance(t, mi.Dir, instances(idx))
	nmCheckAliases(t, mi.Dir, nmAliases(instances(idx)))
	if !nmRunCopy(t, mi, script) {
		return
	}
	again := readIndex(t, mi.Dir)
	if d := nmSetDiff(nmSet(idx), nmSet(again)); d != "" {
		t.Errorf("repeating `%s` changed the instances (after the first copy = want): %s", script, d)
	}
	if d := nmPathDiff(idx, again); d != "" {
		t.Errorf("repeating `%s` changed the instances' PATHs: %s", script, d)
	}
}

// nmPathDiff compares the (PATH, SHA1) pairs of two indexes.
func nmPathDiff(want, got *pkgIndex) string {
	set := func(x *pkgIndex) map[string]int {
		m := map[string]int{}
		for _, in := range instances(x) {
			m[in.Path+" sha1="+in.SHA1]++
		}
		return m
	}
	return nmSetDiff(set(want), set(got))
}

// ---------------------------------------------------------------- 4. merge

// TestNamesMergeNoLoss: a PKGDIR copied (rsync -a, cp -a, tar -x) onto a mount
// holding another gives the instances of importing both: no build of
// either is lost, the first one's instances keep their PATHs, and running
// the copy again adds nothing.
func TestNamesMergeNoLoss(t *testing.T) {
	t.Parallel()
	// Every ordered pair of fixtures: one imported, the other copied in.
	var pairs [][2]string
	for _, a := range allFixtures {
		for _, b := range allFixtures {
			if a != b {
				pairs = append(pairs, [2]string{a, b})
			}
		}
	}
	for _, pair := range pairs {
		a, b := pair[0], pair[1]
		t.Run(a+"+"+b, func(t *testing.T) {
			t.Parallel()
			srcA, srcB := extractFixture(t, a), extractFixture(t, b)
			nA, nB := nmFixtureCount(t, a, srcA), nmFixtureCount(t, b, srcB)
			want, sum := nmImportedSet(t, srcA, srcB)
			if sum.Imported+sum.Present != nA+nB || nmCount(want) != sum.Imported {
				t.Fatalf("test premise: `pkgdirfs import A B` of %d+%d packages: summary %+v, index lists %d instances; want imported+already present = %d and imported = index count",
					nA, nB, sum, nmCount(want), nA+nB)
			}
			for _, c := range []nmCopy{nmRsync, nmCp, nmTar} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					state := t.TempDir()
					importOK(t, state, importSummary{nA, 0, 0}, srcA)
					mi := mountFSInfo(t, state)
					before := readIndex(t, mi.Dir)
					script := c.script(srcB, mi.Dir)
					if !nmRunCopy(t, mi, script) {
						return
					}
					after := readIndex(t, mi.Dir)
					if d := nmSetDiff(want, nmSet(after)); d != "" {
						t.Errorf("%s imported, then `%s`: MNT/Packages differs from `pkgdirfs import` of both (by CPV, SHA1): %s", a, script, d)
					}
					byPath := map[string]instance{}
					for _, in := range instances(after) {
						byPath[in.Path] = in
					}
					for _, in := range instances(before) {
						if got, ok := byPath[in.Path]; !ok || got.SHA1 != in.SHA1 {
							t.Errorf("after `%s`: %s (%s BUILD_ID %d, SHA1 %s, from %s) was replaced: PATH now lists SHA1 %q (present=%v)",
								script, in.Path, in.CPV, in.BuildID, in.SHA1, a, got.SHA1, ok)
						}
					}
					nmCheckCopied(t, mi, script, after)
				})
			}
		})
	}
}

// ---------------------------------------------------------------- 5. tar round trip

// nmTarSize is what GNU tar writes for entries (type, size, name relative
// to the archived dir, symlink target): a 512-byte header each (plus a
// ././@LongLink header and data for names or targets of 100 bytes or more),
// the data of regular files padded to 512, two zero blocks, all rounded up
// to the 10240-byte record.
func nmTarSize(typ byte, size int64, name, target string) int64 {
	pad := func(n int64) int64 { return (n + 511) / 512 * 512 }
	arcName := "./" + name
	if typ == 'd' && name != "" {
		arcName += "/"
	}
	n := int64(512)
	if len(arcName) >= 100 {
		n += 512 + pad(int64(len(arcName))+1)
	}
	if typ == 'l' && len(target) >= 100 {
		n += 512 + pad(int64(len(target))+1)
	}
	if typ == 'f' {
		n += pad(size)
	}
	return n
}

// TestNamesTarRoundTrip: `tar -c` of a mount holding two multi-instance
// PKGDIRs is about the size of the instances + Packages + Packages.gz (each
// package stored once: flat and All/ names are symlinks), and `tar -x` of it
// into an empty mount gives back the same instances.
func TestNamesTarRoundTrip(t *testing.T) {
	t.Parallel()
	a, b := extractFixture(t, "xpak-bzip2-multi"), extractFixture(t, "gpkg-zstd-multi")
	nA, nB := nmFixtureCount(t, "xpak-bzip2-multi", a), nmFixtureCount(t, "gpkg-zstd-multi", b)
	state := t.TempDir()
	r, s := importDirs(t, state, a, b)
	if r.Code != 0 || s.Invalid != 0 || s.Imported+s.Present != nA+nB {
		t.Fatalf("import of both fixtures: want exit 0, invalid 0, imported+already present = %d: %+v\n%s", nA+nB, s, r)
	}
	mnt := mountFS(t, state)
	idx, raw := checkIndexFiles(t, mnt, state, false)
	insts := instances(idx)

	// Expected size: from the instances (each once) and Packages(.gz), plus
	// the directories and symlinks `find` lists; and from what find lists.
	var fromIndex, fromFind int64
	gz, err := os.Stat(filepath.Join(mnt, "Packages.gz"))
	if err != nil {
		t.Fatalf("stat MNT/Packages.gz: %v", err)
	}
	for _, in := range insts {
		fromIndex += nmTarSize('f', in.Size, in.Path, "")
	}
	fromIndex += nmTarSize('f', int64(len(raw)), "Packages", "") + nmTarSize('f', gz.Size(), "Packages.gz", "")
	entries := nmFind(t, mnt, ".", "-printf", "%y\t%s\t%P\t%l\n")
	var nf, nd, nl int
	for _, l := range entries {
		f := strings.SplitN(l, "\t", 4)
		if len(f) != 4 || len(f[0]) != 1 {
			t.Fatalf("find -printf: cannot parse %q", l)
		}
		size, _ := strconv.ParseInt(f[1], 10, 64)
		fromFind += nmTarSize(f[0][0], size, f[2], f[3])
		switch f[0][0] {
		case 'f':
			nf++
		case 'd', 'l':
			if f[0][0] == 'd' {
				nd++
			} else {
				nl++
			}
			fromIndex += nmTarSize(f[0][0], size, f[2], f[3])
		default:
			t.Errorf("find MNT lists %s of type %s; want only files, directories, symlinks", f[2], f[0])
		}
	}
	round := func(n int64) int64 { n += 1024; return (n + 10239) / 10240 * 10240 }
	fromIndex, fromFind = round(fromIndex), round(fromFind)

	archive := filepath.Join(t.TempDir(), "mnt.tar")
	script := "tar -C " + shQuote(mnt) + " -cf - . > " + shQuote(archive)
	if tr := shell(t, "/", script); tr.Code != 0 {
		t.Fatalf("`%s`: %s", script, tr)
	}
	st, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	got := st.Size()
	t.Logf("tar of MNT: %d bytes; expected %d from the index (%d instances + Packages + Packages.gz, %d dirs, %d symlinks), %d from `find MNT` (%d files)",
		got, fromIndex, len(insts), nd, nl, fromFind, nf)
	within := func(want int64) bool { d := got - want; return d*100 <= 5*want && -d*100 <= 5*want }
	if !within(fromIndex) {
		t.Errorf("`tar -C MNT -cf - . | wc -c` = %d bytes; want %d ±5%% (%d instances of SIZE sum + Packages + Packages.gz, each stored once, plus headers of %d dirs and %d symlinks); `find MNT` lists %d regular files (%d bytes of tar by its listing)",
			got, fromIndex, len(insts), nd, nl, nf, fromFind)
	}
	if !within(fromFind) {
		t.Errorf("`tar -C MNT -cf - . | wc -c` = %d bytes, but the %d entries of `find MNT` (%d files, %d dirs, %d symlinks) make %d bytes of tar (±5%%): stat sizes and read sizes disagree?",
			got, len(entries), nf, nd, nl, fromFind)
	}

	mi := mountFSInfo(t, t.TempDir())
	x := "tar -C " + shQuote(mi.Dir) + " -xf " + shQuote(archive)
	if !nmRunCopy(t, mi, x) {
		return
	}
	back := readIndex(t, mi.Dir)
	if d := nmSetDiff(nmSet(idx), nmSet(back)); d != "" {
		t.Errorf("`%s` (the archive of a mount) into an empty mount: instances (CPV, SHA1) differ from the archived mount's: %s", x, d)
	}
	nmCheckWalkMatchesIndex(t, mi.Dir, instances(back), true)
}

// ---------------------------------------------------------------- 6. rename of a different build

// TestNamesRenameDifferentBuildAddsOne: rsync of xpak-bzip2-multi onto a
// mount of xpak-bzip2-flat renames other builds onto existing
// multi-instance names (libpng-1.6.43-1.xpak exists with BUILD_ID 1): the
// existing build stays, readable at its PATH, and each new build gets a new
// BUILD_ID, which the daemon log names.
func TestNamesRenameDifferentBuildAddsOne(t *testing.T) {
	t.Parallel()
	_, state, _ := nmImportFixture(t, "xpak-bzip2-flat")
	multi := extractFixture(t, "xpak-bzip2-multi")
	mfix := readFixtureIndex(t, multi)
	mi := mountFSInfo(t, state)
	mnt := mi.Dir
	before := instances(readIndex(t, mnt))
	if len(before) == 0 {
		t.Fatal("test premise: the mount of xpak-bzip2-flat lists no instance")
	}

	// The multi fixture's builds per CPV.
	newBuilds := map[string][]string{} // CPV → SHA1s
	for _, in := range instances(mfix) {
		newBuilds[in.CPV] = append(newBuilds[in.CPV], in.SHA1)
	}
	old := before[0]
	for _, in := range before {
		if in.Path == "media-libs/libpng/libpng-1.6.43-1.xpak" {
			old = in
		}
	}
	if len(newBuilds[old.CPV]) == 0 {
		for _, in := range before {
			if len(newBuilds[in.CPV]) > 0 {
				old = in
				break
			}
		}
	}
	if old.BuildID != 1 || len(newBuilds[old.CPV]) == 0 {
		t.Fatalf("test premise: want an instance of xpak-bzip2-flat with BUILD_ID 1 whose CPV xpak-bzip2-multi also has; picked %s BUILD_ID %d (multi builds: %d)",
			old.Path, old.BuildID, len(newBuilds[old.CPV]))
	}
	for _, sha := range newBuilds[old.CPV] {
		if sha == old.SHA1 {
			t.Fatalf("test premise: %s has the same bytes (SHA1 %s) in both fixtures", old.CPV, sha)
		}
	}
	if _, err := os.Stat(filepath.Join(multi, old.Path)); err != nil {
		t.Fatalf("test premise: xpak-bzip2-multi should hold a different build at %s: %v", old.Path, err)
	}

	script := nmRsync.script(multi, mnt)
	if !nmRunCopy(t, mi, script) {
		return
	}
	after := instances(readIndex(t, mnt))
	var kept *instance
	ids := map[int64]string{}
	bySHA := map[string]instance{}
	for i, in := range after {
		if in.CPV != old.CPV {
			continue
		}
		if other, dup := ids[in.BuildID]; dup {
			t.Errorf("%s BUILD_ID %d listed twice (%s and %s)", in.CPV, in.BuildID, other, in.Path)
		}
		ids[in.BuildID] = in.Path
		bySHA[in.SHA1] = in
		if in.SHA1 == old.SHA1 {
			kept = &after[i]
		}
	}
	if kept == nil {
		t.Errorf("after `%s` (renames a different build onto MNT/%s): the existing build (SHA1 %s, BUILD_ID %d) is gone from MNT/Packages; %s lists %v",
			script, old.Path, old.SHA1, old.BuildID, old.CPV, ids)
	} else if kept.Path != old.Path || kept.BuildID != old.BuildID {
		t.Errorf("after `%s`: the existing build (SHA1 %s) moved from %s (BUILD_ID %d) to %s (BUILD_ID %d)",
			script, old.SHA1, old.Path, old.BuildID, kept.Path, kept.BuildID)
	}
	if sums := sha1Paths(t, mnt, []string{old.Path}); sums[old.Path] != old.SHA1 {
		t.Errorf("after `%s`: sha1sum MNT/%s = %q, want the existing build's %s (it must not be replaced)", script, old.Path, sums[old.Path], old.SHA1)
	}
	if want := 1 + len(newBuilds[old.CPV]); len(ids) != want {
		t.Errorf("after `%s`: %s has %d instances %v, want %d (the existing build + %d from xpak-bzip2-multi)",
			script, old.CPV, len(ids), ids, want, len(newBuilds[old.CPV]))
	}
	logData, err := os.ReadFile(mi.Log)
	if err != nil {
		t.Fatalf("read daemon log: %v", err)
	}
	logLines := strings.Split(string(logData), "\n")
	_, pf, _ := strings.Cut(old.CPV, "/")
	for _, sha := range newBuilds[old.CPV] {
		in, ok := bySHA[sha]
		if !ok {
			t.Errorf("after `%s`: the build of %s with SHA1 %s (from xpak-bzip2-multi) is not in MNT/Packages", script, old.CPV, sha)
			continue
		}
		if in.BuildID == old.BuildID {
			t.Errorf("after `%s`: the new build SHA1 %s has the existing build's BUILD_ID %d", script, sha, in.BuildID)
		}
		if sums := sha1Paths(t, mnt, []string{in.Path}); sums[in.Path] != sha {
			t.Errorf("sha1sum MNT/%s = %q, Packages says %s", in.Path, sums[in.Path], sha)
		}
		idRE := regexp.MustCompile(`\bbuild_id=` + strconv.FormatInt(in.BuildID, 10) + `\b`)
		logged := false
		for _, l := range logLines {
			if strings.Contains(l, pf) && idRE.MatchString(l) {
				logged = true
				break
			}
		}
		if !logged {
			t.Errorf("daemon log %s has no line naming %s and build_id=%d (the new build of SHA1 %s)\n%s", mi.Log, pf, in.BuildID, sha, wDaemonLog(mi))
		}
	}
}

// readIndex reads and parses MNT/Packages.
func readIndex(t *testing.T, mnt string) *pkgIndex {
	t.Helper()
	idx, _ := wReadIndex(t, mnt)
	return idx
}
