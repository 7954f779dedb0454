package integration

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// The generated hostile corpus (hostile_gen_test.go) against pkgdirfs:
// every case written through a mount with cp (every third one with cp to a
// temp name and mv onto its name) and imported from a directory. Refused:
// EINVAL, bytes kept, index and catalog unchanged, daemon alive, import
// lists it with the same reason. Accepted controls: in the index and read
// back byte for byte.

// hostileCounts logs the variants per class.
func hostileCounts(t *testing.T, cs []hostileCase) (refused, accepted int) {
	t.Helper()
	per := map[string][2]int{}
	for _, c := range cs {
		n := per[c.Class]
		if c.Accept {
			n[1]++
			accepted++
		} else {
			n[0]++
			refused++
		}
		per[c.Class] = n
	}
	classes := sortedKeys(per)
	for _, cl := range classes {
		t.Logf("class %-40s refused %3d  accepted %3d", cl, per[cl][0], per[cl][1])
	}
	t.Logf("total: %d refused variants, %d accepted controls", refused, accepted)
	return refused, accepted
}

// The corpus is what it claims: deterministic, enough variants, distinct
// names and bytes.
func TestHostileCorpusShape(t *testing.T) {
	a, b := hostileCorpus(t), hostileCorpus(t)
	if len(a) != len(b) {
		t.Fatalf("two generations differ in length: %d, %d", len(a), len(b))
	}
	paths, names := map[string]bool{}, map[string]bool{}
	for i := range a {
		if a[i].Path != b[i].Path || !bytes.Equal(a[i].Data, b[i].Data) {
			t.Fatalf("case %d (%s) is not deterministic", i, a[i].Name)
		}
		if paths[a[i].Path] {
			t.Errorf("path %s used twice", a[i].Path)
		}
		if names[a[i].Class+a[i].Name] {
			t.Errorf("case name %q used twice", a[i].Name)
		}
		paths[a[i].Path], names[a[i].Class+a[i].Name] = true, true
	}
	refused, accepted := hostileCounts(t, a)
	if refused < 60 || accepted < 12 {
		t.Errorf("%d refused and %d accepted variants, want ≥ 60 and ≥ 12", refused, accepted)
	}
}

// The corpus through the catalog's own ingest, without a mount: the
// verdicts the mount and import must give.
func TestHostileCorpusIngest(t *testing.T) {
	s, err := catalog.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range hostileCorpus(t) {
		what := fmt.Sprintf("[%s] %s at %q", c.Class, c.Name, c.Path)
		if c.AtCreate {
			if why := layout.SkippedName(c.Path); why == "" {
				t.Errorf("%s: not a name Portage skips (layout.SkippedName)", what)
			}
			continue
		}
		st, err := s.Stage(bytes.NewReader(c.Data))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Ingest(context.Background(), &catalog.Candidate{Staged: st, Name: c.Path, MtimeNs: 1e18, Mode: 0o644})
		var rerr *catalog.RefusedError
		switch {
		case c.Accept && err != nil:
			t.Errorf("%s: refused, want accepted: %v", what, err)
		case c.Accept:
		case errors.As(err, &rerr):
			if !strings.Contains(rerr.Reason, c.Want) {
				t.Errorf("%s: reason %q does not mention %q", what, rerr.Reason, c.Want)
			}
			os.Remove(st.File)
		case err != nil:
			t.Errorf("%s: not a refusal but %v", what, err)
		default:
			t.Errorf("%s: ACCEPTED, want refused", what)
		}
	}
}

// How a case is written.
const (
	byCp     = iota // cp onto the name
	byMv            // cp to a temp name in the same directory, mv onto the name
	byRename        // the same with rename(2) itself
)

// hostileWrite puts c's bytes at mnt/c.Path. A rename's result comes as the
// exit code 0 or 1 with the errno in Stderr.
func hostileWrite(t *testing.T, mnt, src string, c hostileCase, how int) (cmdResult, string) {
	t.Helper()
	dst := filepath.Join(mnt, c.Path)
	if how == byCp {
		return run(t, "", toolTimeout, "cp", src, dst), ""
	}
	tmp := filepath.Join(filepath.Dir(dst), ".hostile-tmp")
	if r := run(t, "", toolTimeout, "cp", src, tmp); r.Code != 0 {
		t.Fatalf("%s: cp to a temp name: %s", c.Name, r)
	}
	if how == byMv {
		return run(t, "", toolTimeout, "mv", tmp, dst), tmp
	}
	r := cmdResult{Args: []string{"rename(2)", tmp, dst}}
	if err := os.Rename(tmp, dst); err != nil {
		r.Code, r.Stderr = 1, []byte(err.(*os.LinkError).Err.Error())
		if errors.Is(err, syscall.EINVAL) {
			r.Stderr = []byte("Invalid argument")
		}
	}
	return r, tmp
}

// hostileHow spreads the ways of writing over the cases.
func hostileHow(n int) int {
	switch {
	case n%6 == 0:
		return byRename
	case n%3 == 0:
		return byMv
	}
	return byCp
}

func TestHostileMountAndImport(t *testing.T) {
	needBinary(t)
	cs := hostileCorpus(t)
	refusedN, acceptedN := hostileCounts(t, cs)
	state := t.TempDir()
	mi := mountFSInfo(t, state, "--xattrs")
	mnt := mi.Dir
	srcDir := t.TempDir()
	srcOf := make([]string, len(cs))
	for i, c := range cs {
		srcOf[i] = filepath.Join(srcDir, fmt.Sprintf("case-%03d", i))
		if err := os.WriteFile(srcOf[i], c.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mnt, c.Path)), 0o755); err != nil {
			t.Fatalf("mkdir in the mount for %s: %v", c.Path, err)
		}
	}

	// Controls first: each must be accepted, listed and read back intact.
	n := 0
	for i, c := range cs {
		if !c.Accept {
			continue
		}
		n++
		how := hostileHow(n)
		r, _ := hostileWrite(t, mnt, srcOf[i], c, how)
		if r.Code != 0 {
			t.Errorf("control %q at %s (how %d): want success: %s", c.Name, c.Path, how, r)
		}
	}
	idx, err := parseIndex(readPackagesFile(t, mnt))
	if err != nil {
		t.Fatalf("Packages after the controls: %v", err)
	}
	bySHA1 := map[string]instance{}
	for _, in := range instances(idx) {
		bySHA1[in.SHA1] = in
	}
	for i, c := range cs {
		if !c.Accept {
			continue
		}
		// Flat and All/ names show a CPV's newest build; the instance is
		// found by its digest, at its own PATH.
		sum := sha1.Sum(c.Data)
		in, ok := bySHA1[hex.EncodeToString(sum[:])]
		if !ok {
			t.Errorf("control %q written at %s: not in Packages", c.Name, c.Path)
			continue
		}
		if layout.ParsePath(c.Path).Kind == layout.KindMulti && in.Path != c.Path {
			t.Errorf("control %q: PATH %s, want %s", c.Name, in.Path, c.Path)
		}
		if r := run(t, "", toolTimeout, "cmp", srcOf[i], filepath.Join(mnt, in.Path)); r.Code != 0 {
			t.Errorf("control %q: the bytes read back from %s differ: %s", c.Name, in.Path, r)
		}
	}
	if len(bySHA1) != acceptedN {
		t.Errorf("Packages lists %d instances, want the %d controls", len(bySHA1), acceptedN)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Refused cases, one at a time.
	reasons := map[string]string{} // content refusals: path → reason (the xattr)
	n = 0
	for i, c := range cs {
		if c.Accept {
			continue
		}
		n++
		how := hostileHow(n)
		viaMv := how != byCp
		before := readPackagesFile(t, mnt)
		what := fmt.Sprintf("[%s] %s at %q (%s)", c.Class, c.Name, c.Path, []string{"cp", "cp+mv", "cp+rename(2)"}[how])
		dst := filepath.Join(mnt, c.Path)
		r, tmp := hostileWrite(t, mnt, srcOf[i], c, how)
		if r.Code == 0 {
			t.Errorf("%s: ACCEPTED (%s exited 0), want refused", what, r.Args[0])
			continue
		}
		switch {
		case c.AtCreate && viaMv:
			// A name Portage skips: the rename is refused (EPERM: mv reads
			// EINVAL as "a subdirectory of itself"), the temp file stays.
			if !strings.Contains(string(r.Stderr), "Operation not permitted") && !strings.Contains(string(r.Stderr), "operation not permitted") {
				t.Errorf("%s: the rename should fail with EPERM: %s", what, r)
			}
			if err := run(t, "", toolTimeout, "cmp", srcOf[i], tmp); err.Code != 0 {
				t.Errorf("%s: the temp file renamed onto the name lost its bytes: %s", what, err)
			}
			os.Remove(tmp)
		case c.AtCreate:
			if !strings.Contains(string(r.Stderr), "Invalid argument") {
				t.Errorf("%s: cp should fail with \"Invalid argument\": %s", what, r)
			}
		default:
			// rename(2) answers EINVAL too, after which mv's own messages
			// vary (the bytes moved to the name, the source is gone).
			if how != byMv && !strings.Contains(string(r.Stderr), "Invalid argument") {
				t.Errorf("%s: want EINVAL: %s", what, r)
			}
			reasons[c.Path] = checkRefused(t, mi, what, srcOf[i], c.Path, c.Want, before)
			if viaMv {
				if _, err := os.Lstat(tmp); err == nil {
					t.Errorf("%s: after the refused mv the temp name is still there", what)
				}
			}
		}
		if c.AtCreate {
			if _, err := os.Lstat(dst); err == nil {
				t.Errorf("%s: %s exists after the refusal", what, c.Path)
			}
			if after := readPackagesFile(t, mnt); !bytes.Equal(after, before) {
				t.Errorf("%s: Packages changed", what)
			}
		}
		if n%25 == 0 {
			hostileAlive(t, mi)
		}
	}
	hostileAlive(t, mi)

	// The catalog holds the controls only; verify lists every content
	// refusal with the reason the xattr gave.
	r := runCLI(t, "verify", "--state", state)
	out := string(r.Stdout)
	if r.Code != 0 || strings.Contains(out, "FAULT") {
		t.Errorf("verify: want exit 0 and no faults: %s", r)
	}
	if m := regexp.MustCompile(`verified (\d+) instances`).FindStringSubmatch(out); m == nil || m[1] != fmt.Sprint(acceptedN) {
		t.Errorf("verify: want %d instances (the controls): %s", acceptedN, r)
	}
	for _, rel := range sortedKeys(reasons) {
		if !strings.Contains(out, "refused: "+rel+": "+reasons[rel]+" (") {
			t.Errorf("verify does not list %s with the reason %q", rel, reasons[rel])
		}
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", readLog(mi.Log))
	}

	// import of the same files at the same names: the controls go in, every
	// other one is listed as invalid with the mount's reason.
	tree := t.TempDir()
	for _, c := range cs {
		p := filepath.Join(tree, c.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, c.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ir, sum := importDirs(t, filepath.Join(t.TempDir(), "state"), tree)
	if sum.Imported != acceptedN || sum.Invalid != refusedN || sum.Present != 0 {
		t.Errorf("import: %+v, want %d imported, %d invalid\n%s", sum, acceptedN, refusedN, ir)
	}
	invalid := map[string]string{}
	for _, line := range strings.Split(string(ir.Stderr), "\n") {
		if rest, ok := strings.CutPrefix(line, "invalid: "); ok {
			for _, c := range cs {
				if p := filepath.Join(tree, c.Path) + ": "; strings.HasPrefix(rest, p) {
					invalid[c.Path] = strings.TrimPrefix(rest, p)
				} else if strings.HasPrefix(rest, c.Path+": ") {
					invalid[c.Path] = strings.TrimPrefix(rest, c.Path+": ")
				}
			}
		}
	}
	for _, c := range cs {
		why, listed := invalid[c.Path]
		switch {
		case c.Accept && listed:
			t.Errorf("import: control %q at %s listed invalid: %s", c.Name, c.Path, why)
		case c.Accept:
		case !listed:
			t.Errorf("import: [%s] %s at %q not listed as invalid", c.Class, c.Name, c.Path)
		case !strings.Contains(why, c.Want):
			t.Errorf("import: [%s] %s: reason %q does not mention %q", c.Class, c.Name, why, c.Want)
		case reasons[c.Path] != "" && why != reasons[c.Path]:
			t.Errorf("import: [%s] %s: reason %q differs from the mount's %q", c.Class, c.Name, why, reasons[c.Path])
		}
	}
	if t.Failed() {
		t.Logf("import stderr:\n%s", clip(ir.Stderr, 20000))
	}
	var lines []string
	for _, c := range cs {
		if !c.Accept {
			lines = append(lines, fmt.Sprintf("[%s] %s → %s", c.Class, c.Name, invalid[c.Path]))
		}
	}
	sort.Strings(lines)
	t.Logf("refusals:\n%s", strings.Join(lines, "\n"))
	hostileCounts(t, cs)
}

// hostileAlive checks the daemon still serves the mount.
func hostileAlive(t *testing.T, mi *mountInfo) {
	t.Helper()
	if _, ok := mountedFSType(mi.Dir); !ok {
		t.Fatalf("%s is no longer mounted\ndaemon log:\n%s", mi.Dir, readLog(mi.Log))
	}
	for _, pid := range mi.PIDs {
		if pidGone(pid) {
			t.Fatalf("daemon pid %d is gone\ndaemon log:\n%s", pid, readLog(mi.Log))
		}
	}
	if _, err := parseIndex(readPackagesFile(t, mi.Dir)); err != nil {
		t.Fatalf("Packages: %v", err)
	}
}
