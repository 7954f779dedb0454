package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
)

// exportMarker names, in DIR, the file that makes DIR an export: a later
// export into DIR updates it rather than refusing a non-empty directory.
const exportMarker = ".pkgdirfs-export"

// exportTmpSuffix ends every file an export writes before renaming it into
// place: no package suffix, so Portage's walk never takes one for a package,
// and the next export removes what an interrupted one left.
const exportTmpSuffix = ".pkgdirfs-tmp"

func cmdExport(args []string) int {
	fl := newFlags("export")
	state := stateFlag(fl)
	quiet := fl.BoolP("quiet", "q", false, "no progress bar")
	noLink := fl.Bool("copy", false, "never hard-link: reflink (FICLONE) where the filesystem can, else copy, so that the export shares no inode with the state")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) != 1 {
		if len(ops) == 0 {
			fmt.Fprintln(os.Stderr, "pkgdirfs export: need the directory DIR to write the PKGDIR into")
		} else {
			fmt.Fprintf(os.Stderr, "pkgdirfs export: unexpected argument %q (export writes one DIR; the state is --state)\n", ops[1])
		}
		fl.Usage()
		return 2
	}
	// Never creates a state: a mistyped --state is an error.
	if why := notAState(location(*state)); why != "" {
		return fail("export: %s is not a pkgdirfs state (%s)", *state, why)
	}
	dir, err := filepath.Abs(ops[0])
	if err != nil {
		return fail("export: %v", err)
	}
	if err := checkExportTarget(*state, dir); err != nil {
		return fail("export: %v", err)
	}
	// Read-only use of the catalog, without the state's lock: a mount may
	// serve it meanwhile.
	store, err := catalog.OpenStoreAt(location(*state), newLogger(os.Stderr))
	if err != nil {
		return fail("export: %v", err)
	}
	defer store.Close()

	var bar *progressbar.ProgressBar
	opt := exportOptions{NoLink: *noLink, Notice: func(msg string) {
		if bar != nil {
			bar.Clear()
		}
		fmt.Fprintln(os.Stderr, "pkgdirfs export: "+msg)
	}}
	if !*quiet && term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions64(1,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("exporting"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
		opt.Progress = func(done, total int64) {
			bar.ChangeMax64(max(total, 1))
			bar.Set64(done)
		}
	}
	res, err := exportState(store, dir, opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return fail("export: %v", err)
	}
	fmt.Println(res.summary())
	return 0
}

// checkExportTarget refuses a DIR inside the state, or inside the mount
// that serves it (export writes a PKGDIR beside them, never into them).
func checkExportTarget(state, dir string) error {
	abs, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	st, d := resolvePath(abs), resolvePath(dir)
	if within(d, st) {
		return fmt.Errorf("%s is inside the state directory %s: give a directory outside it", dir, state)
	}
	b, _ := os.ReadFile(filepath.Join(state, "lock"))
	if _, m, ok := strings.Cut(strings.TrimSpace(string(b)), "mounted at "); ok {
		if _, found := mountConnection(m); found && within(d, resolvePath(m)) {
			return fmt.Errorf("%s is inside %s, where this state is mounted: export writes a plain PKGDIR elsewhere (then umount and put it in place)", dir, m)
		}
	}
	return nil
}

// resolvePath resolves the symlinks of the part of p that exists.
func resolvePath(p string) string {
	p = filepath.Clean(p)
	for rest := ""; ; {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// within tells whether p is root or below it (both clean and absolute).
func within(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

type exportOptions struct {
	NoLink   bool
	Notice   func(msg string)
	Progress func(done, total int64)
}

// exportHow is how a package file got into the export.
type exportHow uint8

const (
	exportUnchanged exportHow = iota + 1 // an earlier export's file, kept
	exportLinked
	exportCloned
	exportCopied
)

type exportResult struct {
	Dir                               string
	Packages                          int
	Bytes                             int64
	Linked, Cloned, Copied, Unchanged int
	Removed                           []string // stale files of an earlier export
	Generation, Timestamp             int64
	Elapsed                           time.Duration
}

func (r *exportResult) summary() string {
	s := fmt.Sprintf("exported %d %s, %d bytes (%s), to %s in %s: linked %d, cloned %d, copied %d, unchanged %d",
		r.Packages, plural(r.Packages, "package", "packages"), r.Bytes, bytesText(r.Bytes), r.Dir,
		r.Elapsed.Round(time.Millisecond), r.Linked, r.Cloned, r.Copied, r.Unchanged)
	if n := len(r.Removed); n > 0 {
		s += fmt.Sprintf("; removed %d stale %s", n, plural(n, "file", "files"))
	}
	return s
}

// exportItem is one package file of the export.
type exportItem struct {
	rel  string // its multi-instance path, the index's PATH
	inst catalog.Instance
}

// blobGoneError says a blob the snapshot named was gone when the export
// came to it: removed since (a mount's grace ended, a prune), or lost.
type blobGoneError struct {
	item exportItem
	err  error
}

func (e *blobGoneError) Error() string {
	return fmt.Sprintf("%s build %d: blob %s: %v", e.item.inst.CPV, e.item.inst.BuildID, e.item.inst.Blob, e.err)
}

// exportState writes every package of the catalog into dir as a plain
// PKGDIR: the multi-instance layout, and the Packages and Packages.gz the
// mount serves, written last, so that a directory without them is an export
// that did not finish.
func exportState(store *catalog.Store, dir string, opt exportOptions) (*exportResult, error) {
	start := time.Now()
	x, err := openExportDir(dir, store.Dir)
	if err != nil {
		return nil, err
	}
	defer x.close()
	x.opt = opt
	x.blobDir = store.BlobDir()
	if !opt.NoLink {
		var bst, dst unix.Stat_t
		if unix.Stat(x.blobDir, &bst) == nil && unix.Stat(dir, &dst) == nil && bst.Dev != dst.Dev {
			x.noLink = true
			x.notice(fmt.Sprintf("%s is on another filesystem than the state's blobs (%s): no hard links; reflinking (FICLONE) where the filesystem can, else copying", dir, x.blobDir))
		}
	}
	var (
		items []exportItem
		idx   *tree.IndexView
	)
	for attempt := 0; ; attempt++ {
		if items, idx, err = exportSnapshot(store); err != nil {
			return nil, err
		}
		err = x.placeAll(items)
		var gone *blobGoneError
		if !errors.As(err, &gone) {
			break
		}
		idx.Release()
		// Unchanged catalog: the blob is lost, not removed meanwhile.
		if gen, gerr := store.DB.Generation(background()); gerr == nil && gen == idx.Generation {
			return nil, fmt.Errorf("%v (the catalog lists it: pkgdirfs verify reports such faults)", gone)
		}
		if attempt >= 10 {
			return nil, fmt.Errorf("the catalog keeps changing under the export: %v", gone)
		}
	}
	defer idx.Release()
	if err != nil {
		return nil, err
	}
	if err := x.sweep(items); err != nil {
		return nil, err
	}
	if err := x.writeIndex(idx); err != nil {
		return nil, err
	}
	r := &x.res
	r.Dir, r.Generation, r.Timestamp = dir, idx.Generation, idx.Timestamp
	for _, it := range items {
		r.Packages++
		r.Bytes += it.inst.Size
		switch x.how[it.rel] {
		case exportLinked:
			r.Linked++
		case exportCloned:
			r.Cloned++
		case exportCopied:
			r.Copied++
		default:
			r.Unchanged++
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// exportSnapshot is every package of one generation and that generation's
// index, rendered by the mount's own renderer with multi-instance PATHs.
func exportSnapshot(store *catalog.Store) ([]exportItem, *tree.IndexView, error) {
	for attempt := 0; ; attempt++ {
		var (
			items []exportItem
			gen   int64
		)
		err := store.DB.Read(background(), func(r catalog.Reader) error {
			var err error
			if gen, err = r.Generation(); err != nil {
				return err
			}
			return r.ForEachInstance(func(in *catalog.Instance) error {
				if !in.Placeholder { // never in Packages: a build in progress
					items = append(items, exportItem{rel: tree.FileOf(in).MultiPath(), inst: *in})
				}
				return nil
			})
		})
		if err != nil {
			return nil, nil, err
		}
		idx, err := renderIndex(store, tree.Layouts{Multi: true}, true)
		if err != nil {
			return nil, nil, err
		}
		if idx.Generation == gen {
			return items, idx, nil
		}
		idx.Release()
		if attempt >= 50 {
			return nil, nil, errors.New("the catalog keeps changing while the export reads it")
		}
	}
}

// exportDir is the directory being written, held (its marker locked)
// against a second export into it.
type exportDir struct {
	root    string
	blobDir string
	marker  *os.File
	opt     exportOptions
	noLink  bool
	noClone bool
	said    map[string]bool
	// linkMtime is the mtime given to each blob's inode by this export: a
	// second build with those bytes and another mtime gets a copy.
	linkMtime map[string]int64
	how       map[string]exportHow // by rel, the first way this run placed it
	res       exportResult
}

// openExportDir makes dir, or takes an earlier export in it over; any
// other non-empty directory is refused.
func openExportDir(dir, state string) (*exportDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, unwrapPath(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, unwrapPath(err)
	}
	earlier := slices.ContainsFunc(ents, func(e fs.DirEntry) bool { return e.Name() == exportMarker })
	if len(ents) > 0 && !earlier {
		return nil, fmt.Errorf("%s is not empty and holds no earlier export (no %s in it): give a new or empty directory (an earlier export is updated in place)", dir, exportMarker)
	}
	f, err := os.OpenFile(filepath.Join(dir, exportMarker), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, unwrapPath(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another pkgdirfs export is writing %s", dir)
		}
		return nil, fmt.Errorf("%s: %v", f.Name(), err)
	}
	x := &exportDir{root: dir, marker: f, said: map[string]bool{}, linkMtime: map[string]int64{}, how: map[string]exportHow{}}
	if !earlier {
		if abs, err := filepath.Abs(state); err == nil {
			state = abs
		}
		fmt.Fprintf(f, "A plain PKGDIR written by `pkgdirfs export` from the state %s.\nExporting into this directory again updates it; it is complete when Packages is there.\n", state)
		if err := f.Sync(); err != nil {
			x.close()
			return nil, err
		}
		return x, nil
	}
	// An update: until it ends, no index says the directory is complete.
	for _, name := range []string{"Packages", "Packages.gz"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			x.close()
			return nil, unwrapPath(err)
		}
	}
	return x, nil
}

func (x *exportDir) close() { x.marker.Close() }

func (x *exportDir) notice(msg string) {
	if x.said[msg] {
		return
	}
	x.said[msg] = true
	if x.opt.Notice != nil {
		x.opt.Notice(msg)
	}
}

func (x *exportDir) placeAll(items []exportItem) error {
	var total, done int64
	for i := range items {
		total += items[i].inst.Size
	}
	for i := range items {
		how, err := x.place(&items[i])
		if err != nil {
			return err
		}
		if _, ok := x.how[items[i].rel]; !ok {
			x.how[items[i].rel] = how
		}
		done += items[i].inst.Size
		if x.opt.Progress != nil {
			x.opt.Progress(done, total)
		}
	}
	return nil
}

// place puts one package at its path: kept when an earlier export's file
// there has its size and mtime, else hard-linked from its blob, else
// reflinked or copied.
func (x *exportDir) place(it *exportItem) (exportHow, error) {
	in := &it.inst
	dst := filepath.Join(x.root, filepath.FromSlash(it.rel))
	blob := filepath.Join(x.blobDir, filepath.FromSlash(in.Blob))
	var st unix.Stat_t
	if unix.Lstat(dst, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == in.Size && st.Mtim.Nano() == in.MtimeNs {
		var bst unix.Stat_t
		if !x.opt.NoLink || unix.Stat(blob, &bst) != nil || bst.Ino != st.Ino || bst.Dev != st.Dev {
			return exportUnchanged, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, unwrapPath(err)
	}
	if !x.noLink && !x.opt.NoLink {
		linked, err := x.link(it, blob, dst)
		if err != nil || linked {
			return exportLinked, err
		}
	}
	return x.copy(it, blob, dst)
}

// link hard-links the blob at dst, giving its inode the package's mtime
// first (the state shows the catalog's mtime, never the blob's, and
// import --rebuild takes a blob's mtime for its package's). false: it could
// not, and a copy is due.
func (x *exportDir) link(it *exportItem, blob, dst string) (bool, error) {
	in := &it.inst
	var st unix.Stat_t
	if err := unix.Stat(blob, &st); err != nil {
		return false, x.blobErr(it, err)
	}
	if st.Size != in.Size {
		return false, fmt.Errorf("%s build %d: blob %s has %d bytes, the catalog says %d (pkgdirfs verify --deep)", in.CPV, in.BuildID, blob, st.Size, in.Size)
	}
	if m, ok := x.linkMtime[in.Blob]; ok && m != in.MtimeNs {
		return false, nil
	}
	if st.Mtim.Nano() != in.MtimeNs {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(in.MtimeNs)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, blob, ts, 0); err != nil {
			x.notice(fmt.Sprintf("cannot give blobs their package's mtime (%v): copying those", err))
			return false, nil
		}
	}
	x.linkMtime[in.Blob] = in.MtimeNs
	// An earlier export's link: the blob's new mtime is its mtime already
	// (and rename(2) of one link over another of the same inode does
	// nothing).
	var dst0 unix.Stat_t
	if unix.Lstat(dst, &dst0) == nil && dst0.Ino == st.Ino && dst0.Dev == st.Dev {
		return true, nil
	}
	tmp := dst + exportTmpSuffix
	os.Remove(tmp)
	if err := os.Link(blob, tmp); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, x.blobErr(it, err)
		case errors.Is(err, unix.EXDEV):
			x.noLink = true
			x.notice(fmt.Sprintf("cannot hard-link from the state's blobs into %s (%v): reflinking (FICLONE) where the filesystem can, else copying", x.root, unwrapLinkErr(err)))
		default:
			x.notice(fmt.Sprintf("cannot hard-link %s (%v): copying it", in.Blob, unwrapLinkErr(err)))
		}
		return false, nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return false, unwrapPath(err)
	}
	return true, nil
}

// copy reflinks (FICLONE) or copies the blob to dst with the package's
// mode and mtime.
func (x *exportDir) copy(it *exportItem, blob, dst string) (exportHow, error) {
	in := &it.inst
	src, err := os.Open(blob)
	if err != nil {
		return 0, x.blobErr(it, err)
	}
	defer src.Close()
	tmp := dst + exportTmpSuffix
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, unwrapPath(err)
	}
	fail := func(err error) (exportHow, error) {
		out.Close()
		os.Remove(tmp)
		return 0, err
	}
	how := exportCopied
	if !x.noClone {
		err := unix.IoctlFileClone(int(out.Fd()), int(src.Fd()))
		switch {
		case err == nil:
			how = exportCloned
		case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) ||
			errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS):
			x.noClone = true
			x.notice(fmt.Sprintf("FICLONE from the state's blobs into %s is not supported (%v): copying bytes", x.root, err))
		default:
			return fail(fmt.Errorf("FICLONE %s: %w", tmp, err))
		}
	}
	if how == exportCopied {
		n, err := io.Copy(out, src)
		if err != nil {
			return fail(fmt.Errorf("copying %s to %s: %w", blob, tmp, err))
		}
		if n != in.Size {
			return fail(fmt.Errorf("%s build %d: blob %s has %d bytes, the catalog says %d (pkgdirfs verify --deep)", in.CPV, in.BuildID, blob, n, in.Size))
		}
	}
	if err := out.Chmod(os.FileMode(in.Mode & 0o777)); err != nil {
		return fail(err)
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	mt := unix.NsecToTimespec(in.MtimeNs)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{mt, mt}, 0); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("utimensat %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return 0, unwrapPath(err)
	}
	return how, nil
}

func (x *exportDir) blobErr(it *exportItem, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &blobGoneError{item: *it, err: unix.ENOENT}
	}
	return unwrapPath(err)
}

// sweep removes what an earlier export left that this one does not hold:
// package files of builds gone since, temp files of an interrupted run,
// and directories left empty. Other files are left alone.
func (x *exportDir) sweep(items []exportItem) error {
	want := make(map[string]bool, len(items))
	for i := range items {
		want[items[i].rel] = true
	}
	var dirs []string
	err := filepath.WalkDir(x.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(x.root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if rel != "." {
				dirs = append(dirs, p)
			}
			return nil
		case !d.Type().IsRegular() || want[rel] || rel == exportMarker:
			return nil
		case strings.HasSuffix(rel, exportTmpSuffix) || layout.ParsePath(rel).Kind != layout.KindOther:
			if err := os.Remove(p); err != nil {
				return unwrapPath(err)
			}
			x.res.Removed = append(x.res.Removed, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		os.Remove(d) // only when empty
	}
	return nil
}

// readAtFunc adapts a ReadAt-shaped method to io.ReaderAt.
type readAtFunc func(p []byte, off int64) (int, error)

func (f readAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// writeIndex makes the package bytes durable, then writes Packages.gz and,
// last, Packages, each through a temp file renamed into place, with the
// index's TIMESTAMP as their mtime (emaint binhost --check compares them).
func (x *exportDir) writeIndex(idx *tree.IndexView) error {
	root, err := os.Open(x.root)
	if err != nil {
		return unwrapPath(err)
	}
	defer root.Close()
	if err := unix.Syncfs(int(root.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", x.root, err)
	}
	ts := unix.NsecToTimespec(idx.Timestamp * 1e9)
	for _, f := range []struct {
		name string
		r    io.Reader
	}{
		{"Packages.gz", io.NewSectionReader(readAtFunc(idx.GzReadAt), 0, idx.GzSize())},
		{"Packages", io.NewSectionReader(idx.View, 0, idx.Size())},
	} {
		dst := filepath.Join(x.root, f.name)
		tmp := dst + exportTmpSuffix
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return unwrapPath(err)
		}
		_, err = io.Copy(out, f.r)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{ts, ts}, 0)
		}
		if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("writing %s: %w", dst, err)
		}
	}
	return root.Sync()
}

// unwrapLinkErr is the errno of a failed link(2), without its paths.
func unwrapLinkErr(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
