package catalog

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/blobs"
	"pkgdirfs/xpak"
)

// importTree is a source PKGDIR for import tests and the catalog state both
// the reference import and the batch import start from.
type importTree struct {
	files map[string][]byte // relative name → bytes
	setup func(t *testing.T, s *Store)
}

// newImportTree builds a PKGDIR that exercises every identity rule: build ids
// from names, metadata BUILD_IDs free and taken, the next free id, the same
// bytes under several names (within one batch and across batches), the same
// CPV with other bytes, a placeholder replaced, removed_builds reused, bytes
// already in the catalog, and files that are not acceptable packages. Many
// more generated packages spread it over several batches; the Portage-written
// fixtures (xpak and gpkg) are added when present.
func newImportTree(t *testing.T) *importTree {
	t.Helper()
	a := makeXpak(t, "app-misc", "foo-1.0", 100)
	old := makeXpak(t, "app-misc", "old-1.0", 50)
	qux := makeXpak(t, "app-misc", "qux-1.0", 60)
	tr := &importTree{files: map[string][]byte{
		"app-misc/foo/foo-1.0-1.xpak":   a,
		"All/foo-1.0.tbz2":              a, // same bytes, earlier in the order
		"app-misc/foo/foo-1.0-9.xpak":   a, // same bytes, another build id
		"app-misc/foo/foo-1.0-2.xpak":   makeXpak(t, "app-misc", "foo-1.0", 200),
		"app-misc/foo-1.0.tbz2":         makeXpak(t, "app-misc", "foo-1.0", 300), // next free id
		"app-misc/foo/foo-1.0-5.xpak":   makeXpak(t, "app-misc", "foo-1.0", 400, xpak.Entry{Key: "BUILD_ID", Value: []byte("2\n")}),
		"dev-libs/bar-2.0.tbz2":         makeXpak(t, "dev-libs", "bar-2.0", 100, xpak.Entry{Key: "BUILD_ID", Value: []byte("7\n")}),
		"dev-libs/bar/bar-2.0-7.xpak":   makeXpak(t, "dev-libs", "bar-2.0", 200), // 7 taken just before
		"app-misc/baz/baz-1.0-3.xpak":   makeXpak(t, "app-misc", "baz-1.0", 100), // onto the placeholder
		"app-misc/baz-1.0.tbz2":         makeXpak(t, "app-misc", "baz-1.0", 200), // past it
		"app-misc/qux-1.0.tbz2":         qux,                                     // its removed build id back
		"app-misc/old/old-1.0-1.xpak":   old,                                     // already in the catalog
		"app-misc/broken-1.0.tbz2":      []byte("not a package at all"),
		"app-misc/wrong/foo-1.0-1.xpak": makeXpak(t, "app-misc", "foo-1.0", 100),
		"app-misc/foo-1.0.gpkg.tar":     a, // xpak under a gpkg name
		"sys-apps/zed-1.0.tbz2":         makeXpak(t, "sys-apps", "other-1.0", 1),
	}}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		cat := fmt.Sprintf("cat-%d", i%7)
		pf := fmt.Sprintf("gen%d-1.%d", i%23, i%3)
		pn := pf[:strings.LastIndexByte(pf, '-')]
		b := makeXpak(t, cat, pf, int64(1000+i))
		switch rng.IntN(4) {
		case 0:
			tr.files[cat+"/"+pf+".tbz2"] = b
		case 1:
			tr.files["All/"+pf+".tbz2"] = b
		default:
			tr.files[fmt.Sprintf("%s/%s/%s-%d.xpak", cat, pn, pf, 1+rng.IntN(5))] = b
		}
	}
	// Bigger than the read buffer: hashed and parsed from a file, not memory.
	tr.files["app-misc/big/big-1.0-1.xpak"] = bigXpak(t, "app-misc", "big-1.0", importBufSize+12345)
	tr.files["app-misc/big-1.0.tbz2"] = bigXpak(t, "app-misc", "big-1.0", 3*importBufSize)
	tr.files["app-misc/big-1.0.gpkg.tar"] = bigXpak(t, "app-misc", "big-1.0", 2*importBufSize)
	addFixtures(t, tr.files)
	tr.setup = func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.Reserve(ctx, "app-misc", "baz", "baz-1.0", "xpak", 3, 0o644, 0); err != nil {
			t.Fatal(err)
		}
		in, _, err := ingestBytes(t, s, "app-misc/qux/qux-1.0-4.xpak", qux, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Remove(ctx, in.ID, "", ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ingestBytes(t, s, "app-misc/old-1.0.tbz2", old, 0); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// bigXpak is a valid xpak package whose tarball holds size random bytes.
func bigXpak(t *testing.T, cat, pf string, size int) []byte {
	t.Helper()
	body := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 9))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "./usr/share/" + pf, Mode: 0o644, Size: int64(size)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	block, err := xpak.EncodeBlock([]xpak.Entry{
		{Key: "CATEGORY", Value: []byte(cat + "\n")},
		{Key: "PF", Value: []byte(pf + "\n")},
		{Key: "SLOT", Value: []byte("0\n")},
		{Key: "BUILD_TIME", Value: []byte(fmt.Sprintf("%d\n", size))},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), xpak.AppendTrailer(block)...)
}

// addFixtures adds the packages of the Portage-written fixtures, if found.
func addFixtures(t *testing.T, files map[string][]byte) {
	dir := os.Getenv("PKGDIRFS_FIXTURES")
	if dir == "" {
		// testdata/fixtures at the repository root, one level above the package.
		dir = filepath.Join("..", "testdata", "fixtures")
	}
	for _, name := range []string{"gpkg-zstd-multi.tar", "xpak-bzip2-flat.tar"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Logf("fixture %s not used: %v", name, err)
			continue
		}
		tr := tar.NewReader(f)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			rel := hdr.Name
			if i := strings.IndexByte(rel, '/'); i >= 0 {
				rel = rel[i+1:] // the tarball's top directory
			}
			if hdr.Typeflag != tar.TypeReg || !(strings.HasSuffix(rel, ".xpak") || strings.HasSuffix(rel, ".tbz2") || strings.HasSuffix(rel, ".gpkg.tar")) {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := files[rel]; !ok {
				files[rel] = b
			}
		}
		f.Close()
	}
}

// write puts the tree under dir, with distinct mtimes and a few modes.
func (tr *importTree) write(t *testing.T, dir string) []ImportFile {
	t.Helper()
	i := 0
	for _, rel := range sortedKeys(tr.files) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if i%5 == 0 {
			mode = 0o640
		}
		if err := os.WriteFile(p, tr.files[rel], mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		mt := time.Unix(1700000000+int64(i), 123)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		i++
	}
	files, err := ScanPKGDIR(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tr.files) {
		t.Fatalf("scan found %d files, wrote %d", len(files), len(tr.files))
	}
	return files
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func openImportStore(t *testing.T, dir string, tr *importTree) *Store {
	t.Helper()
	s, err := testStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tr.setup(t, s)
	return s
}

// importRef is what importing the tree one by one with ImportOne gives:
// computed once, as it is slow (a transaction and fsyncs per file).
type importRef struct {
	lines []string
	res   ImportResult // Invalid paths relative to the source
}

var (
	refOnce sync.Once
	ref     *importRef
)

func referenceImport(t *testing.T, tr *importTree) *importRef {
	t.Helper()
	refOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pkgdirfs-importref-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "src")
		files := tr.write(t, src)
		s, err := OpenStore(filepath.Join(dir, "state"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		tr.setup(t, s)
		r := &importRef{}
		for _, f := range files {
			if err := s.ImportOne(context.Background(), f, &r.res); err != nil {
				t.Fatal(err)
			}
		}
		r.res.Invalid = relInvalid(src, r.res.Invalid)
		r.lines = instanceLines(t, s)
		ref = r
	})
	if ref == nil {
		t.Fatal("no reference import (it failed in an earlier test)")
	}
	return ref
}

func relInvalid(src string, inv []Invalid) []Invalid {
	out := make([]Invalid, len(inv))
	for i, v := range inv {
		out[i] = Invalid{Path: strings.TrimPrefix(v.Path, src+string(filepath.Separator)), Reason: v.Reason}
	}
	return out
}

// instanceLines describes every instance (placeholders included) with its
// identity, digests, attributes and metadata, in catalog order.
func instanceLines(t *testing.T, s *Store) []string {
	t.Helper()
	ctx := context.Background()
	insts, err := s.DB.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range insts {
		meta, err := s.DB.InstanceMeta(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		var kv []string
		for _, k := range sortedKeys(meta) {
			kv = append(kv, k+"="+meta[k])
		}
		out = append(out, fmt.Sprintf("%s build %d placeholder=%v %s size=%d md5=%s sha1=%s sha256=%s blob=%s mode=%o mtime=%d time=%d signed=%v meta[%s]",
			in.CPV, in.BuildID, in.Placeholder, in.Format, in.Size, in.MD5, in.SHA1, in.SHA256, in.Blob, in.Mode, in.MtimeNs, in.BuildTime, in.Signed, strings.Join(kv, " ")))
	}
	return out
}

func sameImport(t *testing.T, want *importRef, got *Store, src string, gotRes ImportResult) {
	t.Helper()
	w, g := want.lines, instanceLines(t, got)
	if !slices.Equal(w, g) {
		for i := 0; i < max(len(w), len(g)); i++ {
			var a, b string
			if i < len(w) {
				a = w[i]
			}
			if i < len(g) {
				b = g[i]
			}
			if a != b {
				t.Errorf("instance %d:\n one by one: %s\n batch:      %s", i, a, b)
			}
		}
		t.FailNow()
	}
	wantRes := want.res
	if gotInv := relInvalid(src, gotRes.Invalid); wantRes.Imported != gotRes.Imported || wantRes.Present != gotRes.Present || !slices.Equal(wantRes.Invalid, gotInv) {
		t.Fatalf("result: one by one %d imported %d present %v, batch %d imported %d present %v",
			wantRes.Imported, wantRes.Present, wantRes.Invalid, gotRes.Imported, gotRes.Present, gotInv)
	}
	if n := gotRes.Linked + gotRes.Cloned + gotRes.Copied; n != gotRes.Imported {
		t.Errorf("linked %d + cloned %d + copied %d != imported %d", gotRes.Linked, gotRes.Cloned, gotRes.Copied, gotRes.Imported)
	}
}

// checkClean verifies digests and that nothing is left behind: no orphan
// blob, no staging file.
func checkClean(t *testing.T, s *Store) {
	t.Helper()
	res, err := s.Verify(context.Background(), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Findings {
		t.Errorf("verify: %s", f.Text)
	}
}

func TestImportBatchEqualsOneByOne(t *testing.T) {
	tr := newImportTree(t)
	src := t.TempDir()
	files := tr.write(t, src)
	ref := referenceImport(t, tr)
	refRes := ref.res
	if refRes.Imported == 0 || refRes.Present < 3 || len(refRes.Invalid) != 5 {
		t.Fatalf("the tree does not exercise what it should: %+v", refRes)
	}
	for _, opt := range []ImportOptions{
		{},
		{BatchSize: 7, Workers: 3},
		{BatchSize: 1, Workers: 1},
		{BatchSize: 1000, BatchDelay: 2 * time.Millisecond, Workers: 4},
		{Link: true, BatchSize: 13},
	} {
		t.Run(fmt.Sprintf("batch%d-workers%d-link%v", opt.BatchSize, opt.Workers, opt.Link), func(t *testing.T) {
			s := openImportStore(t, t.TempDir(), tr)
			var res ImportResult
			var progressed []string
			opt.Progress = func(f ImportFile) { progressed = append(progressed, f.Rel) }
			if err := s.Import(context.Background(), files, opt, &res); err != nil {
				t.Fatal(err)
			}
			sameImport(t, ref, s, src, res)
			if !opt.Link && res.Copied != res.Imported {
				t.Errorf("copied %d of %d without --link", res.Copied, res.Imported)
			}
			want := make([]string, len(files))
			for i, f := range files {
				want[i] = f.Rel
			}
			if !slices.Equal(progressed, want) {
				t.Errorf("progress reported %d files out of order or incomplete, want %d in file order", len(progressed), len(want))
			}
			checkClean(t, s)
			// Everything again: nothing new.
			var again ImportResult
			if err := s.Import(context.Background(), files, opt, &again); err != nil {
				t.Fatal(err)
			}
			if again.Imported != 0 || again.Present != refRes.Imported+refRes.Present {
				t.Errorf("second import: %+v, want 0 imported, %d present", again, refRes.Imported+refRes.Present)
			}
			checkClean(t, s)
		})
	}
}

// TestImportChangeLog: one batch import writes the change log of exactly the
// CPVs it changed (a file already present changes nothing), one generation
// per transaction.
func TestImportChangeLog(t *testing.T) {
	tr := newImportTree(t)
	files := tr.write(t, t.TempDir())
	ctx := context.Background()
	s := openImportStore(t, t.TempDir(), tr)
	before, err := s.DB.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldInsts, _ := s.DB.Instances(ctx)
	var res ImportResult
	// Batches close by size only: 256 packages per transaction.
	if err := s.Import(ctx, files, ImportOptions{BatchSize: 256, BatchDelay: time.Hour}, &res); err != nil {
		t.Fatal(err)
	}
	insts, _ := s.DB.Instances(ctx)
	had := map[string]bool{}
	for _, in := range oldInsts {
		had[fmt.Sprint(in.ID)] = true
	}
	wantSet := map[string]bool{}
	for _, in := range insts {
		if !had[fmt.Sprint(in.ID)] {
			wantSet[in.CPV] = true
		}
	}
	want := sortedKeys(wantSet)
	if wantSet["app-misc/old-1.0"] {
		t.Fatal("the already present package was imported again")
	}
	var got []string
	err = s.DB.View(ctx, func(v *View) error {
		var err error
		got, err = v.Changes(before)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes since %d:\n got  %v\n want %v", before, got, want)
	}
	after, _ := s.DB.Generation(ctx)
	if n := int64(len(files)+255) / 256; after-before != n {
		t.Errorf("generation %d → %d for %d files: want one bump per transaction of 256", before, after, len(files))
	}
}

func TestImportLinkSameFilesystem(t *testing.T) {
	tr := newImportTree(t)
	src := t.TempDir()
	files := tr.write(t, src)
	ref := referenceImport(t, tr)
	ctx := context.Background()
	modes := map[string]os.FileMode{}
	for _, f := range files {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		modes[f.Path] = st.Mode()
	}
	s := openImportStore(t, t.TempDir(), tr)
	var notices []string
	var mu sync.Mutex
	opt := ImportOptions{Link: true, Notice: func(m string) { mu.Lock(); notices = append(notices, m); mu.Unlock() }}
	var res ImportResult
	if err := s.Import(ctx, files, opt, &res); err != nil {
		t.Fatal(err)
	}
	sameImport(t, ref, s, src, res)
	if res.Linked != res.Imported || len(notices) != 0 {
		t.Fatalf("linked %d of %d imported (cloned %d, copied %d), notices %q: want every one linked",
			res.Linked, res.Imported, res.Cloned, res.Copied, notices)
	}
	// Every new blob is the source file itself; the source keeps its mode.
	bySHA := map[string][]string{}
	for _, f := range files {
		_, _, sum, err := digests(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		bySHA[sum] = append(bySHA[sum], f.Path)
	}
	insts, _ := s.DB.Instances(ctx)
	linked := 0
	for _, in := range insts {
		if in.Placeholder || in.CPV == "app-misc/old-1.0" {
			continue // the setup's own copies
		}
		bst, err := os.Stat(filepath.Join(s.BlobDir(), in.Blob))
		if err != nil {
			t.Fatal(err)
		}
		same := false
		for _, p := range bySHA[in.SHA256] {
			sst, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			same = same || os.SameFile(bst, sst)
			if sst.Mode() != modes[p] {
				t.Errorf("%s: mode %v after the import, want %v (unchanged)", p, sst.Mode(), modes[p])
			}
		}
		if !same {
			t.Errorf("%s build %d: blob %s is not one of its source files %v", in.CPV, in.BuildID, in.Blob, bySHA[in.SHA256])
		}
		linked++
	}
	if linked != res.Imported {
		t.Errorf("%d linked blobs, %d imported", linked, res.Imported)
	}
	checkClean(t, s)

	// Again: nothing added, no extra link left on any source file.
	var again ImportResult
	if err := s.Import(ctx, files, opt, &again); err != nil {
		t.Fatal(err)
	}
	if again.Imported != 0 || again.Present != res.Imported+res.Present {
		t.Errorf("second import: %+v, want 0 imported, %d present", again, res.Imported+res.Present)
	}
	for _, f := range files {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if n := st.Sys().(*syscall.Stat_t).Nlink; n > 2 {
			t.Errorf("%s has %d links after importing it twice, want at most 2 (itself and its blob)", f.Rel, n)
		}
	}
	checkClean(t, s)

	// A crash between staging and commit leaves in- links in the dead
	// importer's staging directory; they go at the next open and the
	// source stays. A live writer's directory (s's) is left alone.
	dead := filepath.Join(s.Dir, "staging", "12345-dead")
	if err := os.Mkdir(dead, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(files[0].Path, filepath.Join(dead, "in-crashed")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(files[1].Path, filepath.Join(s.StagingDir(), "in-live")); err != nil {
		t.Fatal(err)
	}
	s2, err := testStore(t, s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := os.Lstat(dead); !os.IsNotExist(err) {
		t.Errorf("staging of an interrupted import still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(s.StagingDir(), "in-live")); err != nil {
		t.Errorf("a live writer's staging file was taken: %v", err)
	}
	os.Remove(filepath.Join(s.StagingDir(), "in-live"))
	if b, err := os.ReadFile(files[0].Path); err != nil || string(b) != string(tr.files[files[0].Rel]) {
		t.Errorf("source %s changed: %v", files[0].Rel, err)
	}
}

// TestImportLinkOtherFilesystem: a state on a tmpfs cannot link nor clone a
// disk file: --link says so once and copies, with the same result.
func TestImportLinkOtherFilesystem(t *testing.T) {
	tr := newImportTree(t)
	src := t.TempDir()
	files := tr.write(t, src)
	ref := referenceImport(t, tr)

	state := t.TempDir()
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=256m"); err != nil {
		t.Skipf("cannot mount a tmpfs for the state (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(state, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", state, err)
		}
	})
	var st1, st2 unix.Statfs_t
	if unix.Statfs(state, &st1) != nil || unix.Statfs(files[0].Path, &st2) != nil || st1.Type == st2.Type {
		t.Skip("the source is on a tmpfs too")
	}
	s, err := testStore(t, state)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr.setup(t, s)
	res, notices := importLinkNotices(t, s, files)
	sameImport(t, ref, s, src, res)
	if res.Copied != res.Imported || res.Linked != 0 || res.Cloned != 0 {
		t.Errorf("linked %d cloned %d copied %d, want all %d copied", res.Linked, res.Cloned, res.Copied, res.Imported)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "different filesystems") || !strings.Contains(notices[0], "copying bytes instead") {
		t.Errorf("notices %q, want one saying the filesystems differ and bytes are copied", notices)
	}
	checkClean(t, s)
}

// TestImportStopsAtOwnFailure: our own failure (here: blobs/ is a file)
// stops the import with an error naming the file; nothing half-done.
func TestImportStopsAtOwnFailure(t *testing.T) {
	tr := newImportTree(t)
	files := tr.write(t, t.TempDir())
	s := openImportStore(t, t.TempDir(), tr)
	if err := os.Rename(s.BlobDir(), s.BlobDir()+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.BlobDir(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := instanceLines(t, s)
	var res ImportResult
	err := s.Import(context.Background(), files, ImportOptions{BatchSize: 5}, &res)
	if err == nil || !strings.Contains(err.Error(), files[0].Path) || res.Imported != 0 {
		t.Fatalf("import without a blob directory: %v (%+v), want an error naming %s", err, res, files[0].Path)
	}
	if err := os.Remove(s.BlobDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.BlobDir()+".aside", s.BlobDir()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, instanceLines(t, s)) {
		t.Error("the catalog changed")
	}
	checkClean(t, s)
}

// TestImportReplacesOrphanBlobs: a blob name already taken by bytes no row
// names (a crash between rename and commit; possibly incomplete) gets the
// imported bytes, durably, in copy and link mode, also when the orphan is
// the source file itself.
func TestImportReplacesOrphanBlobs(t *testing.T) {
	for _, link := range []bool{false, true} {
		t.Run(fmt.Sprintf("link%v", link), func(t *testing.T) {
			tr := newImportTree(t)
			files := tr.write(t, t.TempDir())
			s := openImportStore(t, t.TempDir(), tr)
			for i, f := range files[:20] {
				_, _, sum, err := digests(f.Path)
				if err != nil {
					t.Fatal(err)
				}
				blob := filepath.Join(s.BlobDir(), sum[:2], sum)
				os.MkdirAll(filepath.Dir(blob), 0o755)
				if link && i%2 == 0 {
					err = os.Link(f.Path, blob)
				} else {
					err = os.WriteFile(blob, []byte("torn"), 0o444)
				}
				if err != nil && !os.IsExist(err) {
					t.Fatal(err)
				}
			}
			var res ImportResult
			if err := s.Import(context.Background(), files, ImportOptions{Link: link, BatchSize: 8}, &res); err != nil {
				t.Fatal(err)
			}
			if res.Imported == 0 {
				t.Fatalf("nothing imported: %+v", res)
			}
			checkClean(t, s)
		})
	}
}

// TestImportLinkFallback: when hard-linking fails (made to fail here), --link
// clones where the filesystem can (XFS, btrfs) and copies elsewhere, saying so
// once; the result is the same as copying.
func TestImportLinkFallback(t *testing.T) {
	tr := newImportTree(t)
	src := t.TempDir()
	files := tr.write(t, src)
	ref := referenceImport(t, tr)
	old := linkAt
	linkAt = func(_ *os.File, _ os.FileInfo, src, dst string) error {
		return &os.LinkError{Op: "link", Old: src, New: dst, Err: syscall.EXDEV}
	}
	defer func() { linkAt = old }()

	s := openImportStore(t, t.TempDir(), tr)
	a, err := os.Create(filepath.Join(s.StagingDir(), "probe-a"))
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("probe")
	b, err := os.Create(filepath.Join(s.StagingDir(), "probe-b"))
	if err != nil {
		t.Fatal(err)
	}
	canClone := unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
	a.Close()
	b.Close()
	os.Remove(a.Name())
	os.Remove(b.Name())

	res, notices := importLinkNotices(t, s, files)
	sameImport(t, ref, s, src, res)
	if canClone {
		if res.Cloned != res.Imported || len(notices) != 0 {
			t.Errorf("cloned %d of %d (copied %d), notices %q: want all cloned, silently", res.Cloned, res.Imported, res.Copied, notices)
		}
	} else {
		t.Log("this filesystem cannot clone (FICLONE): checking the copy fallback")
		if res.Copied != res.Imported {
			t.Errorf("copied %d of %d (cloned %d)", res.Copied, res.Imported, res.Cloned)
		}
		if len(notices) != 1 || !strings.Contains(notices[0], "FICLONE is not supported") || !strings.Contains(notices[0], "copying bytes instead") {
			t.Errorf("notices %q, want one saying that neither link nor FICLONE works and bytes are copied", notices)
		}
	}
	checkClean(t, s)
}

// TestFillHeaderCHOST: a package committed to a header without CHOST gives
// it its own, in its transaction; without an imported index, an import
// gives the header the most common CHOST of the packages (ties: the
// smaller), never overriding one.
func TestFillHeaderCHOST(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	chost := func(c string) xpak.Entry { return xpak.Entry{Key: "CHOST", Value: []byte(c + "\n")} }
	for i, c := range []string{"x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu", "riscv64-unknown-linux-gnu"} {
		pf := fmt.Sprintf("p%d-1.0", i)
		if _, _, err := ingestBytes(t, s, "app-misc/"+pf+".tbz2", makeXpak(t, "app-misc", pf, 1, chost(c)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(ctx, "app-misc", "q", "q-1.0", "xpak", 1, 0o644, 0); err != nil {
		t.Fatal(err)
	}
	if h, err := s.DB.Header(ctx); err != nil || h["CHOST"] != "x86_64-pc-linux-gnu" {
		t.Fatalf("header CHOST after the commits %q (%v), want the first package's", h["CHOST"], err)
	}
	if err := s.DB.Tx(ctx, func(tx *Tx) error { return tx.SetHeader(map[string]string{}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.FillHeaderCHOST(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := s.DB.Header(ctx)
	if err != nil || h["CHOST"] != "aarch64-unknown-linux-gnu" {
		t.Fatalf("header CHOST %q (%v), want the smaller of the two most common", h["CHOST"], err)
	}
	if err := s.KeepHeader(ctx, []byte("CHOST: riscv64-unknown-linux-gnu\n\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.FillHeaderCHOST(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.DB.Header(ctx); h["CHOST"] != "riscv64-unknown-linux-gnu" {
		t.Errorf("header CHOST %q after an index gave one, want it kept", h["CHOST"])
	}
}

// importLinkNotices imports files with --link and returns the result and
// the notices the import gave the user.
func importLinkNotices(t *testing.T, s *Store, files []ImportFile) (ImportResult, []string) {
	t.Helper()
	var notices []string
	var mu sync.Mutex
	opt := ImportOptions{Link: true, Notice: func(m string) { mu.Lock(); notices = append(notices, m); mu.Unlock() }}
	var res ImportResult
	if err := s.Import(context.Background(), files, opt, &res); err != nil {
		t.Fatal(err)
	}
	return res, notices
}

// TestImportStopsAtFailedTransaction: a transaction that fails (here: a
// trigger refuses one package's row) stops the import with its error while
// later batches may already be synced; the batches before it stay
// committed, nothing after it is, and no staged bytes are left behind.
func TestImportStopsAtFailedTransaction(t *testing.T) {
	src := t.TempDir()
	for i := range 40 {
		p := filepath.Join(src, "app-misc", fmt.Sprintf("p%02d-1.0.tbz2", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, makeXpak(t, "app-misc", fmt.Sprintf("p%02d-1.0", i), int64(100+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ScanPKGDIR(src)
	if err != nil || len(files) != 40 {
		t.Fatalf("scan: %d files, %v", len(files), err)
	}
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rawExec(t, s.DB, `CREATE TRIGGER refuse_one BEFORE INSERT ON instances
		WHEN NEW.cpv = 'app-misc/p21-1.0' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
	var res ImportResult
	err = s.Import(ctx, files, ImportOptions{BatchSize: 4, Workers: 3, BatchDelay: time.Hour}, &res)
	if err == nil || !strings.Contains(err.Error(), "refused by the test") || strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("import: %v, want the transaction's own error alone", err)
	}
	insts, err := s.DB.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range insts {
		got = append(got, in.PF)
	}
	var want []string
	for i := range 20 { // the five batches before p20-p23
		want = append(want, fmt.Sprintf("p%02d-1.0", i))
	}
	if !slices.Equal(got, want) || res.Imported != 20 {
		t.Errorf("after the failure: %v (imported %d), want %v", got, res.Imported, want)
	}
	staged, err := os.ReadDir(s.StagingDir())
	staged = slices.DeleteFunc(staged, func(e os.DirEntry) bool { return e.Name() == blobs.OwnerLock })
	if err != nil || len(staged) != 0 {
		t.Errorf("staging after the failure: %v %v, want empty", staged, err)
	}
	vr, err := s.Verify(ctx, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range vr.Findings {
		if f.Fault || !strings.Contains(f.Text, "orphan blob") {
			t.Errorf("verify: %s", f.Text)
		}
	}
}

// TestVerifyLostCatalog: blobs with a catalog that lists none of them (lost
// or replaced) are a fault, not orphan notes; orphans beside listed
// packages stay notes.
func TestVerifyLostCatalog(t *testing.T) {
	tr := newImportTree(t)
	files := tr.write(t, t.TempDir())
	s := openImportStore(t, t.TempDir(), tr)
	ctx := context.Background()
	var res ImportResult
	if err := s.Import(ctx, files, ImportOptions{}, &res); err != nil || res.Imported == 0 {
		t.Fatalf("import: %v %+v", err, res)
	}
	rawExec(t, s.DB, `DELETE FROM instances WHERE blob = (SELECT blob FROM instances WHERE state = 'package' LIMIT 1)`)
	vr, err := s.Verify(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Faults != 0 || !slices.ContainsFunc(vr.Findings, func(f Finding) bool { return strings.Contains(f.Text, "orphan blob") }) {
		t.Errorf("one row gone: %d faults, findings %v; want orphan notes only", vr.Faults, vr.Findings)
	}
	rawExec(t, s.DB, `DELETE FROM instances`)
	vr, err = s.Verify(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Faults != 1 || !slices.ContainsFunc(vr.Findings, func(f Finding) bool {
		return f.Fault && strings.Contains(f.Text, "the catalog lists no package while") && strings.Contains(f.Text, "import --rebuild --state "+s.Dir)
	}) {
		t.Errorf("every row gone: %d faults, findings %v; want the lost-catalog fault", vr.Faults, vr.Findings)
	}
}

// TestVerifyDeepJudgesByTodaysRules: a package in the catalog that today's
// rules refuse (here: metadata BUILD_ID 0, accepted before) is a fault of
// verify --deep, and stays in the catalog; valid ones are not.
func TestVerifyDeepJudgesByTodaysRules(t *testing.T) {
	s, err := testStore(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i, id := range []string{"3\n", "0\n"} {
		pf := fmt.Sprintf("p%d-1.0", i)
		data := makeXpak(t, "app-misc", pf, 1700000000, xpak.Entry{Key: "BUILD_ID", Value: []byte(id)})
		tmp := filepath.Join(t.TempDir(), "pkg")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m5, s1, s256, err := digests(tmp)
		if err != nil {
			t.Fatal(err)
		}
		blob := s256[:2] + "/" + s256
		os.MkdirAll(filepath.Join(s.BlobDir(), s256[:2]), 0o755)
		if err := os.Rename(tmp, filepath.Join(s.BlobDir(), blob)); err != nil {
			t.Fatal(err)
		}
		err = s.DB.Tx(ctx, func(tx *Tx) error {
			_, err := tx.InsertInstance(&Instance{Category: "app-misc", PN: fmt.Sprintf("p%d", i), PF: pf, BuildID: 1,
				Format: "xpak", Size: int64(len(data)), MtimeNs: 1, Mode: 0o644, MD5: m5, SHA1: s1, SHA256: s256, Blob: blob})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, deep := range []bool{false, true} {
		vr, err := s.Verify(ctx, deep, nil)
		if err != nil {
			t.Fatal(err)
		}
		var refused []string
		for _, f := range vr.Findings {
			if f.Fault && strings.Contains(f.Text, "would be refused today") {
				refused = append(refused, f.Text)
			}
		}
		want := 0
		if deep {
			want = 1
		}
		if len(refused) != want || vr.Faults != want || (deep && (!strings.Contains(refused[0], "app-misc/p1-1.0") || !strings.Contains(refused[0], "BUILD_ID"))) {
			t.Errorf("verify deep=%v: %d faults %q, want %d naming app-misc/p1-1.0 and its BUILD_ID", deep, vr.Faults, refused, want)
		}
	}
	if insts, _ := s.DB.Instances(ctx); len(insts) != 2 {
		t.Errorf("verify changed the catalog: %d instances", len(insts))
	}
}

// TestVerifySkipsNonBlobDirs: the index cache and a shared blob directory's
// staging live under the blob directory; verify reports no orphan for
// them, stats do not count them and a rebuild does not take them.
func TestVerifySkipsNonBlobDirs(t *testing.T) {
	tr := newImportTree(t)
	files := tr.write(t, t.TempDir())
	s := openImportStore(t, t.TempDir(), tr)
	ctx := context.Background()
	var res ImportResult
	if err := s.Import(ctx, files, ImportOptions{}, &res); err != nil || res.Imported == 0 {
		t.Fatalf("import: %v %+v", err, res)
	}
	nfiles, nbytes, err := s.BlobUsage()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{blobs.IndexCacheDir, ".staging/host-1"} {
		if err := os.MkdirAll(filepath.Join(s.BlobDir(), d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.BlobDir(), d, "index-1-multi.cache"), []byte("not a blob"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vr, err := s.Verify(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range vr.Findings {
		t.Errorf("verify: %s", f.Text)
	}
	if f, b, err := s.BlobUsage(); err != nil || f != nfiles || b != nbytes {
		t.Errorf("blob usage %d files %d bytes (%v), want %d %d", f, b, err, nfiles, nbytes)
	}
	found, unknown, err := s.RebuildFiles()
	if err != nil || len(unknown) != 0 || int64(len(found)) != nfiles {
		t.Errorf("rebuild lists %d files, unknown %v (%v); want %d, none", len(found), unknown, err, nfiles)
	}
}
