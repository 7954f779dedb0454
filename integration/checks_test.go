package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// readFixtureIndex parses PKGDIR/Packages of an extracted fixture.
func readFixtureIndex(t *testing.T, pkgdir string) *pkgIndex {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pkgdir, "Packages"))
	if err != nil {
		t.Fatalf("fixture Packages: %v", err)
	}
	x, err := parseIndex(data)
	if err != nil {
		t.Fatalf("fixture %s/Packages: %v", pkgdir, err)
	}
	return x
}

// checkIndexFiles judges MNT/Packages and MNT/Packages.gz on a FRESH mount:
// stat first (size must be exact before the first read), then read;
// Packages.gz must gunzip (zcat) to Packages; both mtimes == TIMESTAMP;
// `pkgdirfs index [--gz]` must print the same bytes (when withIndexCmd: the
// CLI has no --layouts, so a narrowed mount may list fewer instances).
// Returns the parsed index and its bytes.
func checkIndexFiles(t *testing.T, mnt, state string, withIndexCmd bool) (*pkgIndex, []byte) {
	t.Helper()
	st, missing, stderr := statPaths(t, mnt, []string{"Packages", "Packages.gz"})
	if len(missing) > 0 {
		t.Fatalf("stat %v in the mount failed: %s", missing, stderr)
	}
	raw, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatalf("read MNT/Packages: %v", err)
	}
	gz, err := os.ReadFile(filepath.Join(mnt, "Packages.gz"))
	if err != nil {
		t.Fatalf("read MNT/Packages.gz: %v", err)
	}
	if st["Packages"].Size != int64(len(raw)) {
		t.Errorf("stat -c %%s Packages (before the first read) = %d, but reading it gave %d bytes", st["Packages"].Size, len(raw))
	}
	if st["Packages.gz"].Size != int64(len(gz)) {
		t.Errorf("stat -c %%s Packages.gz (before the first read) = %d, but reading it gave %d bytes", st["Packages.gz"].Size, len(gz))
	}
	idx, err := parseIndex(raw)
	if err != nil {
		t.Fatalf("MNT/Packages: %v\n%s", err, clip(raw, 3000))
	}
	tsStr, ok := get(idx.Header, "TIMESTAMP")
	ts, perr := strconv.ParseInt(tsStr, 10, 64)
	if !ok || perr != nil || ts <= 0 {
		t.Errorf("MNT/Packages header: want TIMESTAMP: <positive integer>, got %q (present=%v)", tsStr, ok)
	}
	for _, name := range []string{"Packages", "Packages.gz"} {
		if st[name].Mtime != ts {
			t.Errorf("stat -c %%Y %s = %d, want the TIMESTAMP %d", name, st[name].Mtime, ts)
		}
	}
	if v, _ := get(idx.Header, "VERSION"); v != "0" {
		t.Errorf("MNT/Packages header: want VERSION: 0, got %q", v)
	}
	if v, _ := get(idx.Header, "PACKAGES"); v != strconv.Itoa(len(idx.Blocks)) {
		t.Errorf("MNT/Packages header: PACKAGES: %q but the file has %d package blocks", v, len(idx.Blocks))
	}
	// zcat through the mount (real gzip): same bytes as Packages.
	z := run(t, mnt, toolTimeout, "zcat", "Packages.gz")
	if z.Code != 0 {
		t.Errorf("zcat MNT/Packages.gz failed: %s", z)
	} else if !bytes.Equal(z.Stdout, raw) {
		t.Errorf("zcat MNT/Packages.gz differs from MNT/Packages (%d vs %d bytes): %s",
			len(z.Stdout), len(raw), firstDiff(strings.Split(string(raw), "\n"), strings.Split(string(z.Stdout), "\n"), nil))
	}
	if !withIndexCmd {
		return idx, raw
	}
	// pkgdirfs index prints the same bytes.
	ix := runCLI(t, "index", "--state", state)
	if ix.Code != 0 {
		t.Errorf("pkgdirfs index: want exit 0: %s", ix)
	} else if !bytes.Equal(ix.Stdout, raw) {
		t.Errorf("`pkgdirfs index --state S` stdout (%d bytes) != MNT/Packages (%d bytes): %s", len(ix.Stdout), len(raw),
			firstDiff(strings.Split(string(raw), "\n"), strings.Split(string(ix.Stdout), "\n"), nil))
	}
	ixgz := runCLI(t, "index", "--state", state, "--gz")
	if ixgz.Code != 0 {
		t.Errorf("pkgdirfs index --gz: want exit 0: %s", ixgz)
	} else if !bytes.Equal(ixgz.Stdout, gz) {
		t.Errorf("`pkgdirfs index --gz` stdout (%d bytes) != MNT/Packages.gz (%d bytes)", len(ixgz.Stdout), len(gz))
	}
	return idx, raw
}

// layoutSet is the parsed --layouts value.
type layoutSet struct{ Multi, Flat, Legacy bool }

var allLayouts = layoutSet{true, true, true}

// namesOf returns the names under which inst must be reachable (primary first).
func namesOf(inst instance, isNewest bool, ls layoutSet) []string {
	var names []string
	if ls.Multi {
		names = append(names, inst.Path)
	}
	if isNewest {
		flat, all := flatNames(inst.CPV, inst.Format)
		if ls.Flat {
			names = append(names, flat)
		}
		if ls.Legacy {
			names = append(names, all)
		}
	}
	return names
}

// checkInstances checks that every instance listed in the mount's Packages
// is reachable under each of its names (layouts ls) as one inode, that
// SIZE/MTIME match stat and SHA1 matches sha1sum through the mount and of the
// source file (srcOf: PATH → absolute source file; instances absent from
// srcOf fail), and that the mount holds exactly these files and directories.
func checkInstances(t *testing.T, mnt string, idx *pkgIndex, srcOf map[string]string, ls layoutSet) {
	t.Helper()
	insts := instances(idx)
	seenPath := map[string]bool{}
	for _, in := range insts {
		if in.Format == "" {
			t.Errorf("%s: PATH %q is not a .xpak or .gpkg.tar multi-instance path", in.CPV, in.Path)
			continue
		}
		if in.BuildID < 1 {
			t.Errorf("%s PATH %s: BUILD_ID must be a positive integer, block:\n%s", in.CPV, in.Path, strings.Join(in.Block, "\n"))
		}
		want, err := multiPath(in.CPV, strconv.FormatInt(in.BuildID, 10), in.Format)
		if err != nil {
			t.Errorf("%v", err)
		} else if in.Path != want {
			t.Errorf("%s BUILD_ID %d: PATH %q, want %q", in.CPV, in.BuildID, in.Path, want)
		}
		if seenPath[in.Path] {
			t.Errorf("PATH %s listed twice in Packages", in.Path)
		}
		seenPath[in.Path] = true
	}
	nw := newest(insts)
	isNewest := func(in instance) bool { n := nw[[2]string{in.CPV, in.Format}]; return n.Path == in.Path }

	var all []string
	for _, in := range insts {
		all = append(all, namesOf(in, isNewest(in), ls)...)
	}
	st, missing, stderr := statPaths(t, mnt, all)
	if len(missing) > 0 {
		t.Errorf("%d of %d names not reachable in the mount (stat failed): %v\nstat stderr:\n%s", len(missing), len(all), missing, clip([]byte(stderr), 3000))
	}
	var primaries, sources []string
	primaryOf := map[string]string{}
	for _, in := range insts {
		names := namesOf(in, isNewest(in), ls)
		if len(names) == 0 {
			continue
		}
		p, ok := st[names[0]]
		if !ok {
			continue
		}
		if p.Size != in.Size {
			t.Errorf("%s: stat -c %%s = %d, Packages SIZE: %d", names[0], p.Size, in.Size)
		}
		if p.Mtime != in.Mtime {
			t.Errorf("%s: stat -c %%Y = %d, Packages MTIME: %d", names[0], p.Mtime, in.Mtime)
		}
		for _, other := range names[1:] {
			if o, ok := st[other]; ok && o != p {
				t.Errorf("instance %s (%s BUILD_ID %d) is not one inode under all its names: %s has %v, %s has %v",
					in.Path, in.CPV, in.BuildID, names[0], p, other, o)
			}
		}
		primaries = append(primaries, names[0])
		primaryOf[in.Path] = names[0]
		if src, ok := srcOf[in.Path]; ok {
			sources = append(sources, src)
		} else {
			t.Errorf("%s (%s SHA1 %s): no source file known for this instance", in.Path, in.CPV, in.SHA1)
		}
	}
	mntSums := sha1Paths(t, mnt, primaries)
	srcSums := sha1Paths(t, "/", sources)
	for _, in := range insts {
		name, ok := primaryOf[in.Path]
		if !ok {
			continue
		}
		got := mntSums[name]
		if got != in.SHA1 {
			t.Errorf("sha1sum MNT/%s = %s, Packages SHA1: %s", name, got, in.SHA1)
		}
		if src, ok := srcOf[in.Path]; ok && srcSums[src] != got {
			t.Errorf("sha1sum MNT/%s = %s, but the source file %s has %s", name, got, src, srcSums[src])
		}
	}
	checkTree(t, mnt, insts, isNewest, ls)
}

// isAlias tells whether name (a flat or All/ name of an instance) is shown
// as a symlink to the instance's file under layouts ls: flat names while the
// multi-instance layout is shown, All/ names while either other one is.
func isAlias(name string, ls layoutSet) bool {
	if strings.Count(name, "/") != 1 {
		return false
	}
	if strings.HasPrefix(name, "All/") {
		return ls.Multi || ls.Flat
	}
	return ls.Multi
}

// aliasTarget is the relative symlink target of an alias name of inst.
func aliasTarget(name string, inst instance, ls layoutSet) string {
	cat, _, _ := strings.Cut(inst.CPV, "/")
	if !strings.HasPrefix(name, "All/") {
		return strings.TrimPrefix(inst.Path, cat+"/")
	}
	if ls.Multi {
		return "../" + inst.Path
	}
	flat, _ := flatNames(inst.CPV, inst.Format)
	return "../" + flat
}

// checkTree compares `find MNT` with exactly the expected files, symlinks
// and directories, and each symlink's target.
func checkTree(t *testing.T, mnt string, insts []instance, isNewest func(instance) bool, ls layoutSet) {
	t.Helper()
	want := map[string]string{"Packages": "f", "Packages.gz": "f"}
	wantLink := map[string]string{}
	for _, in := range insts {
		for _, n := range namesOf(in, isNewest(in), ls) {
			want[n] = "f"
			if isAlias(n, ls) {
				want[n] = "l"
				wantLink[n] = aliasTarget(n, in, ls)
			}
			for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
				want[d] = "d"
			}
		}
	}
	out := mustRun(t, mnt, "find", ".", "-mindepth", "1", "-printf", "%y %P\t%l\n")
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if typ, rest, ok := strings.Cut(line, " "); ok {
			name, target, _ := strings.Cut(rest, "\t")
			got[name] = typ
			if w, ok := wantLink[name]; ok && typ == "l" && target != w {
				t.Errorf("MNT/%s -> %s, want -> %s", name, target, w)
			}
		}
	}
	var miss, extra, wrong []string
	for _, n := range sortedKeys(want) {
		g, ok := got[n]
		switch {
		case !ok:
			miss = append(miss, want[n]+" "+n)
		case g != want[n]:
			wrong = append(wrong, fmt.Sprintf("%s is type %s, want %s", n, g, want[n]))
		}
	}
	for _, n := range sortedKeys(got) {
		if _, ok := want[n]; !ok {
			extra = append(extra, got[n]+" "+n)
		}
	}
	if len(miss)+len(extra)+len(wrong) > 0 {
		t.Errorf("`find MNT` (layouts %+v) differs from the expected tree:\n  missing: %v\n  unexpected: %v\n  wrong type: %v", ls, miss, extra, wrong)
	}
}

// magicTool returns the decompressor for the compressed stream starting with head.
func magicTool(head []byte) string {
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

func extTool(name string) string {
	switch {
	case strings.HasSuffix(name, ".zst"):
		return "zstd"
	case strings.HasSuffix(name, ".xz"):
		return "xz"
	case strings.HasSuffix(name, ".bz2"):
		return "bzip2"
	case strings.HasSuffix(name, ".gz"):
		return "gzip"
	case strings.HasSuffix(name, ".lz4"):
		return "lz4"
	}
	return ""
}

// xpakTarLength reads the XPAK trailer of file: the tarball is the first
// size - L - 8 bytes, L = big-endian u32 at size-8, followed by "STOP".
func xpakTarLength(path string) (int64, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	size := fi.Size()
	if size < 16 {
		return 0, nil, fmt.Errorf("%s: %d bytes, too small for an xpak", path, size)
	}
	trailer := make([]byte, 8)
	if _, err := f.ReadAt(trailer, size-8); err != nil {
		return 0, nil, fmt.Errorf("%s: read trailer: %v", path, err)
	}
	if string(trailer[4:]) != "STOP" {
		return 0, nil, fmt.Errorf("%s: trailer %q does not end in STOP", path, trailer)
	}
	l := int64(binary.BigEndian.Uint32(trailer[:4]))
	n := size - l - 8
	if n <= 0 {
		return 0, nil, fmt.Errorf("%s: xpak length %d >= file size %d", path, l, size)
	}
	head := make([]byte, 8)
	if _, err := f.ReadAt(head, 0); err != nil {
		return 0, nil, fmt.Errorf("%s: read head: %v", path, err)
	}
	return n, head, nil
}

// listing runs a listing pipeline and fails the check with a message if it fails or is empty.
func listing(t *testing.T, what, script string) (string, bool) {
	t.Helper()
	r := shell(t, "/", script)
	if r.Code != 0 {
		t.Errorf("%s: `%s` failed: %s", what, script, r)
		return "", false
	}
	if len(bytes.TrimSpace(r.Stdout)) == 0 {
		t.Errorf("%s: `%s` listed nothing", what, script)
		return "", false
	}
	return string(r.Stdout), true
}

// checkTarListings lists every instance's contents through the mount with
// tar and the matching decompressor and compares with the source file.
func checkTarListings(t *testing.T, mnt string, idx *pkgIndex, srcOf map[string]string) {
	t.Helper()
	for _, in := range instances(idx) {
		src, ok := srcOf[in.Path]
		if !ok {
			continue // reported by checkInstances
		}
		m := filepath.Join(mnt, in.Path)
		switch in.Format {
		case "xpak":
			n, head, err := xpakTarLength(m)
			if err != nil {
				t.Errorf("through the mount: %v", err)
				continue
			}
			sn, _, err := xpakTarLength(src)
			if err != nil || sn != n {
				t.Errorf("%s: tarball length through the mount %d, in the source %d (%v)", in.Path, n, sn, err)
				continue
			}
			tool := magicTool(head)
			if tool == "" {
				t.Errorf("%s: unknown compression magic % x through the mount", in.Path, head)
				continue
			}
			cmd := "head -c %d %s | %s -dc | tar -t"
			got, ok1 := listing(t, "mount "+in.Path, fmt.Sprintf(cmd, n, shQuote(m), tool))
			want, ok2 := listing(t, "source "+src, fmt.Sprintf(cmd, n, shQuote(src), tool))
			if ok1 && ok2 && got != want {
				t.Errorf("%s: tar -t listing through the mount differs from the source's: %s", in.Path,
					firstDiff(strings.Split(want, "\n"), strings.Split(got, "\n"), nil))
			}
		case "gpkg":
			got, ok1 := listing(t, "mount "+in.Path, "tar -tf "+shQuote(m))
			want, ok2 := listing(t, "source "+src, "tar -tf "+shQuote(src))
			if !ok1 || !ok2 {
				continue
			}
			if got != want {
				t.Errorf("%s: tar -tf through the mount differs from the source's: %s", in.Path,
					firstDiff(strings.Split(want, "\n"), strings.Split(got, "\n"), nil))
				continue
			}
			members := strings.Fields(got)
			var image string
			var bases []string
			for _, mem := range members {
				base := filepath.Base(mem)
				bases = append(bases, strings.SplitN(base, ".", 2)[0])
				if strings.HasPrefix(base, "image.tar") {
					image = mem
				}
			}
			sort.Strings(bases)
			if strings.Join(bases, " ") != "Manifest gpkg-1 image metadata" {
				t.Errorf("%s: gpkg members %v, want <dir>/gpkg-1, metadata.tar.*, image.tar.*, Manifest", in.Path, members)
			}
			tool := extTool(image)
			if image == "" || tool == "" {
				t.Errorf("%s: no compressed image member in %v", in.Path, members)
				continue
			}
			cmd := "tar -xOf %s %s | %s -dc | tar -t"
			gotImg, ok1 := listing(t, "mount "+in.Path, fmt.Sprintf(cmd, shQuote(m), shQuote(image), tool))
			wantImg, ok2 := listing(t, "source "+src, fmt.Sprintf(cmd, shQuote(src), shQuote(image), tool))
			if ok1 && ok2 && gotImg != wantImg {
				t.Errorf("%s: image listing through the mount differs from the source's: %s", in.Path,
					firstDiff(strings.Split(wantImg, "\n"), strings.Split(gotImg, "\n"), nil))
			}
		}
	}
}
