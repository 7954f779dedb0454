package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoreMultiFixtures: a multi-instance PKGDIR imported and mounted gives
// back Portage's own Packages byte for byte (but TIMESTAMP), and every
// instance under each of its names, with the source's bytes.
func TestCoreMultiFixtures(t *testing.T) {
	t.Parallel()
	for _, name := range multiFixtures {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, state, fix := importedFixture(t, name)
			mnt := mountFS(t, state)
			idx, _ := checkIndexFiles(t, mnt, state, true)
			if d := firstDiff(fix.lines(), idx.lines(), ignoreTimestamp); d != "" {
				t.Errorf("MNT/Packages differs from the fixture's Packages (besides TIMESTAMP) at %s", d)
			}
			srcOf := map[string]string{}
			for _, b := range fix.Blocks {
				p, _ := get(b, "PATH")
				srcOf[p] = filepath.Join(src, p)
			}
			t.Run("names", func(t *testing.T) { checkInstances(t, mnt, idx, srcOf, allLayouts) })
			t.Run("tar", func(t *testing.T) { checkTarListings(t, mnt, idx, srcOf) })
		})
	}
}

// TestCoreFlatFixtures: flat and legacy PKGDIRs: each package block equals
// Portage's except BUILD_ID (1) and PATH (the multi-instance path).
func TestCoreFlatFixtures(t *testing.T) {
	t.Parallel()
	for _, name := range append(append([]string{}, flatFixtures...), legacyFixture) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := extractFixture(t, name)
			legacy := name == legacyFixture
			var fix *pkgIndex
			if legacy {
				// legacy-all holds the 20 packages of xpak-bzip2-flat (fixtures/README.md).
				fix = readFixtureIndex(t, extractFixture(t, "xpak-bzip2-flat"))
			} else {
				fix = readFixtureIndex(t, src)
			}
			state := t.TempDir()
			// legacy: the $CAT/$PF.tbz2 -> ../All/$PF.tbz2 symlinks count once.
			importOK(t, state, importSummary{len(fix.Blocks), 0, 0}, src)
			mnt := mountFS(t, state)
			idx, _ := checkIndexFiles(t, mnt, state, true)

			want := &pkgIndex{Header: fix.Header}
			if legacy {
				want.Header = idx.Header // nothing to import; VERSION/PACKAGES/TIMESTAMP checked above
			}
			srcOf := map[string]string{}
			for _, b := range fix.Blocks {
				cpv, _ := get(b, "CPV")
				fp, _ := get(b, "PATH")
				mp, err := multiPath(cpv, "1", formatOfPath(fp))
				if err != nil {
					t.Fatal(err)
				}
				want.Blocks = append(want.Blocks, expectedBlock(b, fix.Header, idx.Header, "1", mp))
				if legacy {
					srcOf[mp] = filepath.Join(src, "All", filepath.Base(fp))
				} else {
					srcOf[mp] = filepath.Join(src, fp)
				}
			}
			if d := firstDiff(want.lines(), idx.lines(), ignoreTimestamp); d != "" {
				t.Errorf("MNT/Packages differs from the fixture's Packages with BUILD_ID: 1 and PATH: $CAT/$PN/$PF-1.{xpak,gpkg.tar} at %s", d)
			}
			t.Run("names", func(t *testing.T) { checkInstances(t, mnt, idx, srcOf, allLayouts) })
			t.Run("tar", func(t *testing.T) { checkTarListings(t, mnt, idx, srcOf) })
		})
	}
}

// fixtureInstance is one package of a fixture: its Packages block and file.
type fixtureInstance struct {
	Fixture string
	Header  []string
	Block   []string
	File    string
}

// TestCoreAllFixturesOneState: all 8 PKGDIRs into one catalog: instances of
// one CPV coexist with distinct BUILD_IDs, byte-identical files are one
// instance, the flat and All/ names show the newest, re-import adds nothing.
func TestCoreAllFixturesOneState(t *testing.T) {
	t.Parallel()
	var srcs []string
	byPair := map[[2]string][]fixtureInstance{} // (CPV, SHA1) → sources
	total := 0
	var bzip2Flat *pkgIndex
	dirs := map[string]string{}
	for _, name := range allFixtures {
		dirs[name] = extractFixture(t, name)
		srcs = append(srcs, dirs[name])
	}
	for _, name := range allFixtures {
		src := dirs[name]
		var fix *pkgIndex
		if name == legacyFixture {
			fix = bzip2Flat
		} else {
			fix = readFixtureIndex(t, src)
			if name == "xpak-bzip2-flat" {
				bzip2Flat = fix
			}
		}
		if fix == nil {
			t.Fatal("allFixtures must list xpak-bzip2-flat before legacy-all")
		}
		for _, b := range fix.Blocks {
			cpv, _ := get(b, "CPV")
			sha, _ := get(b, "SHA1")
			p, _ := get(b, "PATH")
			file := filepath.Join(src, p)
			if name == legacyFixture {
				file = filepath.Join(src, "All", filepath.Base(p))
			}
			k := [2]string{cpv, sha}
			byPair[k] = append(byPair[k], fixtureInstance{name, fix.Header, b, file})
			total++
		}
	}
	distinct := len(byPair)
	if distinct >= total {
		t.Fatalf("test premise: expected some byte-identical duplicates across fixtures (xpak-bzip2-flat/legacy-all), got %d distinct of %d", distinct, total)
	}
	t.Logf("%d package files in %d fixtures, %d distinct (CPV, SHA1)", total, len(allFixtures), distinct)

	state := t.TempDir()
	r, s := importDirs(t, state, srcs...)
	if r.Code != 0 || s.Imported != distinct || s.Invalid != 0 || s.Imported+s.Present != total {
		t.Fatalf("first import of all fixtures: want exit 0 and `imported %d, already present %d, invalid 0`, got exit %d and %+v\n%s",
			distinct, total-distinct, r.Code, s, r)
	}
	before := runCLI(t, "index", "--state", state)
	if before.Code != 0 {
		t.Fatalf("pkgdirfs index after the first import: %s", before)
	}
	importOK(t, state, importSummary{0, total, 0}, srcs...)

	mnt := mountFS(t, state)
	idx, raw := checkIndexFiles(t, mnt, state, true)
	if !bytes.Equal(before.Stdout, raw) {
		if d := firstDiff(strings.Split(string(before.Stdout), "\n"), strings.Split(string(raw), "\n"), ignoreTimestamp); d != "" {
			t.Errorf("re-importing everything changed Packages (index after 1st import vs mount after 2nd) at %s", d)
		}
	}
	if len(idx.Blocks) != distinct {
		t.Errorf("MNT/Packages has %d blocks, want %d (one per distinct (CPV, SHA1) across fixtures)", len(idx.Blocks), distinct)
	}

	insts := instances(idx)
	seen := map[[2]string]bool{}
	ids := map[string]map[int64]string{}
	srcOf := map[string]string{}
	prevCPV := ""
	for _, in := range insts {
		if in.CPV < prevCPV {
			t.Errorf("Packages not sorted by CPV: %s after %s", in.CPV, prevCPV)
		}
		prevCPV = in.CPV
		k := [2]string{in.CPV, in.SHA1}
		if seen[k] {
			t.Errorf("%s SHA1 %s listed more than once (identical bytes must be one instance)", in.CPV, in.SHA1)
		}
		seen[k] = true
		if ids[in.CPV] == nil {
			ids[in.CPV] = map[int64]string{}
		}
		if other, dup := ids[in.CPV][in.BuildID]; dup {
			t.Errorf("%s: BUILD_ID %d used by two instances (%s and %s)", in.CPV, in.BuildID, other, in.Path)
		}
		ids[in.CPV][in.BuildID] = in.Path
		fis, ok := byPair[k]
		if !ok {
			t.Errorf("%s %s (SHA1 %s) matches no package of any fixture", in.CPV, in.Path, in.SHA1)
			continue
		}
		srcOf[in.Path] = fis[0].File
		want := expectedBlock(fis[0].Block, fis[0].Header, idx.Header, strconv.FormatInt(in.BuildID, 10), in.Path)
		if d := firstDiff(want, in.Block, nil); d != "" {
			t.Errorf("block of %s (from %s) differs from Portage's block (BUILD_ID/PATH aside) at %s", in.Path, fis[0].Fixture, d)
		}
	}
	var missing []string
	for k, fis := range byPair {
		if !seen[k] {
			missing = append(missing, fmt.Sprintf("%s SHA1 %s (%s)", k[0], k[1], fis[0].File))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d instances missing from MNT/Packages: %v", len(missing), missing)
	}
	multiCPV := 0
	for _, m := range ids {
		if len(m) > 1 {
			multiCPV++
		}
	}
	if multiCPV == 0 {
		t.Errorf("no CPV has more than one instance; expected e.g. app-misc/hello-2.10 from several fixtures")
	}
	// Names (incl. newest under flat and All/ by st_ino), bytes, exact tree.
	t.Run("names", func(t *testing.T) { checkInstances(t, mnt, idx, srcOf, allLayouts) })
}

// TestCoreLayouts: --layouts narrows the tree to the chosen layouts.
func TestCoreLayouts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		opt string
		ls  layoutSet
	}{
		{"multi", layoutSet{Multi: true}},
		{"flat", layoutSet{Flat: true}},
		{"legacy", layoutSet{Legacy: true}},
		{"multi,flat", layoutSet{Multi: true, Flat: true}},
		{"all", allLayouts},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.opt, ",", "+"), func(t *testing.T) {
			t.Parallel()
			// xpak and gpkg instances of the same CPVs (e.g. app-misc/hello-2.10).
			a := extractFixture(t, "xpak-zstd-multi")
			b := extractFixture(t, "gpkg-xz-flat")
			state := t.TempDir()
			r, s := importDirs(t, state, a, b)
			if r.Code != 0 || s.Invalid != 0 || s.Imported == 0 {
				t.Fatalf("import: %+v %s", s, r)
			}
			// The whole catalog (the index CLI has no --layouts).
			ix := runCLI(t, "index", "--state", state)
			if ix.Code != 0 {
				t.Fatalf("pkgdirfs index: %s", ix)
			}
			full, err := parseIndex(ix.Stdout)
			if err != nil {
				t.Fatalf("pkgdirfs index output: %v", err)
			}
			mnt := mountFS(t, state, "--layouts", c.opt)
			idx, _ := checkIndexFiles(t, mnt, state, c.ls.Multi)
			if !c.ls.Multi {
				// Without the multi tree, Packages can only list what is
				// visible: the newest instance per (CPV, format), with PATH
				// = its flat name (or All/ name with legacy only).
				nw := newest(instances(full))
				want := &pkgIndex{Header: full.Header}
				for _, in := range instances(full) {
					if nw[[2]string{in.CPV, in.Format}].Path != in.Path {
						continue
					}
					flat, all := flatNames(in.CPV, in.Format)
					p := all
					if c.ls.Flat {
						p = flat
					}
					want.Blocks = append(want.Blocks, withKey(in.Block, "PATH", p))
				}
				want.Header = withKey(want.Header, "PACKAGES", strconv.Itoa(len(want.Blocks)))
				if d := firstDiff(want.lines(), idx.lines(), ignoreTimestamp); d != "" {
					t.Errorf("--layouts %s: MNT/Packages should list the newest instance per (CPV, format) with PATH = its visible name; differs at %s", c.opt, d)
				}
			} else if d := firstDiff(full.lines(), idx.lines(), ignoreTimestamp); d != "" {
				t.Errorf("--layouts %s: MNT/Packages differs from `pkgdirfs index` at %s", c.opt, d)
			}

			root := lsNames(t, mnt)
			if has(root, "All/") != c.ls.Legacy {
				t.Errorf("--layouts %s: `ls -p MNT` = %v; All/ present=%v, want %v", c.opt, root, has(root, "All/"), c.ls.Legacy)
			}
			if !c.ls.Multi && !c.ls.Flat {
				for _, e := range root {
					if e != "All/" && e != "Packages" && e != "Packages.gz" {
						t.Errorf("--layouts %s: `ls -p MNT` shows %s; want only All/, Packages, Packages.gz", c.opt, e)
					}
				}
			}
			if c.ls.Multi || c.ls.Flat {
				cat := lsNames(t, filepath.Join(mnt, "app-misc"))
				for _, e := range cat {
					dir := strings.HasSuffix(e, "/")
					if dir && !c.ls.Multi {
						t.Errorf("--layouts %s: `ls -p MNT/app-misc` shows directory %s (no $CAT/$PN without multi)", c.opt, e)
					}
					if !dir && !c.ls.Flat {
						t.Errorf("--layouts %s: `ls -p MNT/app-misc` shows file %s (no flat files without flat)", c.opt, e)
					}
				}
				if c.ls.Multi && !has(cat, "hello/") {
					t.Errorf("--layouts %s: `ls -p MNT/app-misc` = %v, want hello/", c.opt, cat)
				}
				if c.ls.Flat && !(has(cat, "hello-2.10.tbz2") && has(cat, "hello-2.10.gpkg.tar")) {
					t.Errorf("--layouts %s: `ls -p MNT/app-misc` = %v, want hello-2.10.tbz2 and hello-2.10.gpkg.tar", c.opt, cat)
				}
			}
			// Exactly the names of the chosen layouts, each one inode with the right bytes.
			srcOf := map[string]string{}
			for _, dir := range []string{a, b} {
				fix := readFixtureIndex(t, dir)
				for _, blk := range fix.Blocks {
					cpv, _ := get(blk, "CPV")
					sha, _ := get(blk, "SHA1")
					p, _ := get(blk, "PATH")
					for _, in := range instances(full) {
						if in.CPV == cpv && in.SHA1 == sha {
							srcOf[in.Path] = filepath.Join(dir, p)
						}
					}
				}
			}
			checkInstances(t, mnt, full, srcOf, c.ls)
		})
	}
}

// lsNames runs `ls -p DIR` (directories marked with a trailing /).
func lsNames(t *testing.T, dir string) []string {
	t.Helper()
	return strings.Fields(string(mustRun(t, "", "ls", "-p", dir)))
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCoreListing: ls -lR walks the whole mount; statfs reports a size.
func TestCoreListing(t *testing.T) {
	t.Parallel()
	a := extractFixture(t, "gpkg-zstd-multi")
	b := extractFixture(t, "legacy-all")
	state := t.TempDir()
	importOK(t, state, importSummary{60, 0, 0}, a, b)
	mnt := mountFS(t, state)

	r := run(t, mnt, toolTimeout, "ls", "-lR", mnt)
	if r.Code != 0 || len(r.Stderr) != 0 {
		t.Errorf("ls -lR MNT: want exit 0 and no stderr: %s", r)
	}
	files := 0
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if strings.HasPrefix(l, "-") {
			files++
		}
	}
	// 40 multi gpkg + 20 multi xpak + Packages(.gz): one file per instance,
	// the flat and All/ names are symlinks to them.
	find := mustRun(t, mnt, "find", ".", "-type", "f")
	if n := strings.Count(string(find), "\n"); n != files || files != 62 {
		t.Errorf("ls -lR shows %d regular files, find -type f %d; want 62 (60 instances, Packages, Packages.gz)", files, n)
	}
	// hello-2.10: gpkg builds from the multi fixture and the legacy tbz2 (next free id).
	for _, want := range []string{`Packages\.gz`, `hello-2\.10-1\.gpkg\.tar`, `hello-2\.10-\d+\.xpak`, `hello-2\.10\.tbz2`, `hello-2\.10\.gpkg\.tar`} {
		if !regexp.MustCompile(`(?m) ` + want + `( -> \S+)?$`).Match(r.Stdout) {
			t.Errorf("ls -lR MNT shows no file matching %s", want)
		}
	}
	out := strings.Fields(string(mustRun(t, "", "stat", "-f", "-c", "%b %S %T", mnt)))
	if len(out) < 2 {
		t.Fatalf("stat -f: unexpected output %q", out)
	}
	if blocks, _ := strconv.ParseInt(out[0], 10, 64); blocks <= 0 {
		t.Errorf("stat -f MNT: total blocks %s, want > 0 (statfs of the mount: %v)", out[0], out)
	}
}

// TestCoreMountLifecycle: mount returns with the mount ready; umount and
// SIGTERM (daemon or -f foreground) end the daemon cleanly.
func TestCoreMountLifecycle(t *testing.T) {
	t.Parallel()
	src := extractFixture(t, "xpak-zstd-multi")
	newState := func(t *testing.T) string {
		state := t.TempDir()
		importOK(t, state, importSummary{8, 0, 0}, src)
		return state
	}

	t.Run("umount", func(t *testing.T) {
		t.Parallel()
		mi := mountFSInfo(t, newState(t)) // checks the mount is ready on return
		if _, err := os.ReadFile(filepath.Join(mi.Dir, "Packages")); err != nil {
			t.Errorf("read Packages right after mount: %v", err)
		}
		if r := run(t, "", toolTimeout, "umount", mi.Dir); r.Code != 0 {
			t.Fatalf("umount: %s", r)
		}
		if _, ok := mountedFSType(mi.Dir); ok {
			t.Errorf("still mounted after umount")
		}
		for _, pid := range mi.PIDs {
			if !waitPIDGone(pid, exitTimeout) {
				t.Errorf("daemon pid %d did not exit within %v of umount", pid, exitTimeout)
			}
		}
	})

	// SIGTERM right after `pkgdirfs mount` returns (as a service manager
	// stopping a just-started unit would): a few rounds, since a daemon that
	// installs its signal handler only after reporting ready dies in between.
	t.Run("daemon-sigterm", func(t *testing.T) {
		t.Parallel()
		state := newState(t)
		for round := 1; round <= 3; round++ {
			mi := mountFSInfo(t, state)
			if len(mi.PIDs) == 0 {
				t.Fatal("no daemon pid found")
			}
			for _, pid := range mi.PIDs {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			if !waitMounted(mi.Dir, false, exitTimeout) {
				alive := false
				for _, pid := range mi.PIDs {
					alive = alive || !pidGone(pid)
				}
				_, serr := os.Stat(filepath.Join(mi.Dir, "Packages"))
				t.Fatalf("round %d: SIGTERM to daemon %v right after `pkgdirfs mount` returned: %s still mounted after %v (daemon alive=%v; stat MNT/Packages: %v)",
					round, mi.PIDs, mi.Dir, exitTimeout, alive, serr)
			}
			for _, pid := range mi.PIDs {
				if !waitPIDGone(pid, exitTimeout) {
					t.Fatalf("round %d: SIGTERM: daemon pid %d did not exit within %v", round, pid, exitTimeout)
				}
			}
		}
	})

	// kill -9 of an idle daemon: its watchdog logs the death and the
	// mount answers ENOTCONN (never hangs); `pkgdirfs mount` again at the
	// same place recovers it, serving the same index.
	t.Run("kill9-restart", func(t *testing.T) {
		t.Parallel()
		state := newState(t)
		mi := mountFSInfo(t, state)
		mi.AllowErrors = []string{"the daemon died without unmounting"} // the watchdog says so, as it should
		before, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
		if err != nil {
			t.Fatalf("read Packages: %v", err)
		}
		if len(mi.PIDs) != 1 {
			t.Fatalf("want one daemon process, found %v", mi.PIDs)
		}
		_ = syscall.Kill(mi.PIDs[0], syscall.SIGKILL)
		if !waitPIDGone(mi.PIDs[0], exitTimeout) {
			t.Fatalf("daemon pid %d still there %v after kill -9", mi.PIDs[0], exitTimeout)
		}
		const said = "the daemon died without unmounting"
		for deadline := time.Now().Add(exitTimeout); !strings.Contains(readLog(mi.Log), said); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after kill -9, no watchdog line %q in the log within %v:\n%s", said, exitTimeout, readLog(mi.Log))
			}
		}
		if r := run(t, "", toolTimeout, "stat", mi.Dir+"/Packages"); r.Code == 0 || !strings.Contains(string(r.Stderr), "Transport endpoint is not connected") {
			t.Errorf("stat MNT/Packages after kill -9: want ENOTCONN (Transport endpoint is not connected), got %s", r)
		}
		r := run(t, "", mountTimeout, binPath, "mount", "--state", state, "--log", mi.Log, mi.Dir)
		if r.Code != 0 {
			t.Fatalf("pkgdirfs mount again after kill -9: want exit 0: %s\n%s", r, readLog(mi.Log))
		}
		mi.PIDs = daemonPIDs(mi.Dir) // the cleanup unmounts and waits for the new daemon
		if !strings.Contains(string(r.Stderr), "recovered the mount of a daemon that died") {
			t.Errorf("pkgdirfs mount again: want it to say it recovered the dead mount, stderr: %s", r.Stderr)
		}
		after, err := os.ReadFile(filepath.Join(mi.Dir, "Packages"))
		if err != nil {
			t.Fatalf("read Packages after the restart: %v", err)
		}
		if !bytes.Equal(stripTimestamp(before), stripTimestamp(after)) {
			t.Errorf("Packages after kill -9 and restart differs beyond TIMESTAMP:\nbefore:\n%s\nafter:\n%s", clip(before, 2000), clip(after, 2000))
		}
	})

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run("foreground-"+strings.ToLower(strings.ReplaceAll(sig.String(), " ", "")), func(t *testing.T) {
			t.Parallel()
			needBinary(t)
			state := newState(t)
			mnt, err := os.MkdirTemp("", "pkgdirfs-it-mnt-")
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binPath, "mount", "--state", state, "-f", mnt)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			exited := false
			t.Cleanup(func() {
				if _, ok := mountedFSType(mnt); ok {
					run(t, "", toolTimeout, "umount", "-l", mnt)
				}
				if !exited {
					_ = cmd.Process.Kill()
					<-done
				}
				_ = os.Remove(mnt)
				if t.Failed() {
					t.Logf("foreground daemon stdout:\n%s\nstderr:\n%s", clip(stdout.Bytes(), 3000), clip(stderr.Bytes(), 6000))
				}
			})
			deadline := time.Now().Add(mountTimeout)
			for {
				if _, ok := mountedFSType(mnt); ok {
					break
				}
				select {
				case err := <-done:
					exited = true
					t.Fatalf("mount -f exited before mounting: %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("mount -f: %s not mounted after %v", mnt, mountTimeout)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if fstype, _ := mountedFSType(mnt); fstype != "fuse" && !strings.HasPrefix(fstype, "fuse.") {
				t.Errorf("fstype %q, want fuse or fuse.*", fstype)
			}
			if _, err := os.ReadFile(filepath.Join(mnt, "Packages")); err != nil {
				t.Errorf("read Packages: %v", err)
			}
			_ = cmd.Process.Signal(sig)
			select {
			case err := <-done:
				exited = true
				if err != nil {
					t.Errorf("after %v the foreground daemon exited with %v, want status 0", sig, err)
				}
			case <-time.After(exitTimeout):
				t.Fatalf("foreground daemon did not exit within %v of %v", exitTimeout, sig)
			}
			if _, ok := mountedFSType(mnt); ok {
				t.Errorf("after %v and exit, %s is still mounted", sig, mnt)
			}
		})
	}
}

// TestCoreImportInvalid: invalid files are reported with a reason and exit 1,
// the valid rest is imported.
func TestCoreImportInvalid(t *testing.T) {
	t.Parallel()
	src := extractFixture(t, "xpak-zstd-multi")
	fix := readFixtureIndex(t, src)
	junk := filepath.Join(src, "app-misc", "hello", "hello-2.10-9.xpak")
	if err := os.WriteFile(junk, []byte("this is not a binary package\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(src, "app-editors", "nano", "nano-7.2-r1-1.xpak"))
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(src, "app-editors", "nano", "nano-7.2-r1-7.xpak")
	if err := os.WriteFile(trunc, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	r, s := importDirs(t, state, src)
	if r.Code != 1 {
		t.Errorf("import with 2 invalid files: want exit 1, got %d: %s", r.Code, r)
	}
	if want := (importSummary{len(fix.Blocks), 0, 2}); s != want {
		t.Errorf("import summary: want %+v, got %+v: %s", want, s, r)
	}
	for _, f := range []string{junk, trunc} {
		rel, _ := filepath.Rel(src, f)
		if !bytes.Contains(r.Stderr, []byte(rel)) {
			t.Errorf("import stderr does not name the invalid file %s: %s", rel, r)
		}
	}
	mnt := mountFS(t, state)
	idx, _ := checkIndexFiles(t, mnt, state, true)
	if d := firstDiff(fix.lines(), idx.lines(), ignoreTimestamp); d != "" {
		t.Errorf("after an import with invalid files, MNT/Packages differs from the fixture's at %s", d)
	}
}

// stripTimestamp drops the TIMESTAMP line of a Packages index.
func stripTimestamp(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("TIMESTAMP:")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
