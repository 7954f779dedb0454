package fs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
	"pkgdirfs/xpak"
)

// testXpak is a small valid xpak package, with a USE that varies by build.
func testXpak(t testing.TB, cat, pf string, buildTime int64) []byte {
	return pkgtest.Xpak(t, cat, pf, buildTime,
		xpak.Entry{Key: "USE", Value: []byte("amd64 " + strings.Repeat("flag ", int(buildTime%7)) + "\n")})
}

// commitTest commits testXpak(cat, pf, buildTime) at CAT/PF.tbz2, as a
// writer beside the mount (pkgdirfs import) would; it returns the instance.
func commitTest(t testing.TB, s *catalog.Store, cat, pf string, buildTime int64) *catalog.Instance {
	t.Helper()
	st, err := s.Stage(bytes.NewReader(testXpak(t, cat, pf, buildTime)))
	if err != nil {
		t.Fatal(err)
	}
	in, _, err := s.Ingest(context.Background(), &catalog.Candidate{Staged: st, Name: cat + "/" + pf + ".tbz2", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func mountTest(t *testing.T, seed func(s *catalog.Store)) (mnt string, store *catalog.Store, logs *pkgtest.SyncBuffer) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	state := t.TempDir()
	store, err := catalog.OpenStore(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	if seed != nil {
		seed(store)
	}
	logs = &pkgtest.SyncBuffer{}
	fsys, err := New(context.Background(), Config{Store: store, Layouts: tree.AllLayouts,
		Log: slog.New(slog.NewTextHandler(logs, nil)), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mnt = t.TempDir()
	if err := fsys.Mount(mnt); err != nil {
		store.Close()
		t.Fatalf("mount %s as root with /dev/fuse present: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		fsys.Wait()
		store.Close()
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
				t.Errorf("daemon log: %s", l)
			}
		}
	})
	return mnt, store, logs
}

// readIndex reads Packages and Packages.gz and checks they agree; it returns
// the PATHs Packages lists.
func readIndex(t *testing.T, mnt string) []string {
	t.Helper()
	plain, err := os.ReadFile(filepath.Join(mnt, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	header, pkgs := layout.ParseIndex(plain)
	if n, _ := strconv.Atoi(header["PACKAGES"]); n != len(pkgs) {
		t.Fatalf("PACKAGES: %s, but %d entries", header["PACKAGES"], len(pkgs))
	}
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p["PATH"])
	}
	return paths
}

// TestMountConcurrentWrites commits packages from several writers while
// readers list, stat and read the index; at the end the index lists exactly
// the catalog's instances, each at a name that resolves to its bytes.
func TestMountConcurrentWrites(t *testing.T) {
	mnt, store, _ := mountTest(t, func(s *catalog.Store) {
		for i := range 20 {
			commitTest(t, s, "app-misc", fmt.Sprintf("seed%d-1.0", i), int64(i))
		}
	})
	const writers, perWriter = 4, 15
	if err := os.Mkdir(filepath.Join(mnt, "dev-libs"), 0o755); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch r {
				case 0:
					readIndex(t, mnt)
				case 1:
					b, err := os.ReadFile(filepath.Join(mnt, "Packages.gz"))
					if err != nil {
						t.Error(err)
						return
					}
					zr, err := gzip.NewReader(bytes.NewReader(b))
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := io.ReadAll(zr); err != nil {
						t.Errorf("Packages.gz: %v", err)
						return
					}
				default:
					filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							var st syscall.Stat_t
							syscall.Lstat(p, &st)
						}
						return nil
					})
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				// Half new CPVs, half new builds of one shared CPV.
				pf := fmt.Sprintf("w%d-%d.0", w, i)
				if i%2 == 1 {
					pf = "shared-1.0"
				}
				b := testXpak(t, "dev-libs", pf, int64(100*w+i))
				if err := os.WriteFile(filepath.Join(mnt, "dev-libs", pf+".tbz2"), b, 0o644); err != nil {
					t.Errorf("writing %s: %v", pf, err)
				}
				if i%5 == 4 {
					// Remove one of the seeds through the mount.
					os.Remove(filepath.Join(mnt, "app-misc", fmt.Sprintf("seed%d-1.0.tbz2", w*4+i/5)))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	insts, err := store.DB.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, in := range insts {
		want[layout.MultiPath(in.Category, in.PF, in.BuildID, layout.Format(in.Format))] = in.Size
	}
	if len(insts) != 20+writers*perWriter-writers*(perWriter/5) {
		t.Errorf("catalog holds %d instances, want %d", len(insts), 20+writers*perWriter-writers*(perWriter/5))
	}
	paths := readIndex(t, mnt)
	if len(paths) != len(want) {
		t.Errorf("index lists %d packages, catalog %d", len(paths), len(want))
	}
	for _, p := range paths {
		size, ok := want[p]
		if !ok {
			t.Errorf("index lists %s, not in the catalog", p)
			continue
		}
		st, err := os.Stat(filepath.Join(mnt, p))
		if err != nil || st.Size() != size {
			t.Errorf("%s: %v (size %v, want %d)", p, err, st, size)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "app-misc", "seed0-1.0.tbz2")); err == nil {
		// seed0 is removed by writer 0's 5th package (w*4+i/5 with i=4).
		t.Error("a removed seed is still shown")
	}
}
