package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pkgtest"
	"pkgdirfs/layout"
	"pkgdirfs/tree"
)

// TestChannelsConcurrent commits packages while readers read a live
// channel's index and walk it, and while the channel moves between live
// and a snapshot again and again (under -race: the channel worker, the
// poll's syncs and the FUSE handlers share the channels). At the end the
// live channel lists exactly the main tree's packages, each PATH a file
// with its SIZE; writes into a channel are refused with EROFS.
func TestChannelsConcurrent(t *testing.T) {
	ctx := context.Background()
	mnt, store, _ := mountTest(t, func(s *catalog.Store) {
		for i := range 10 {
			commitTest(t, s, "app-misc", fmt.Sprintf("seed%d-1.0", i), int64(i))
		}
		if _, err := s.DB.CreateSnapshot(ctx, "seeds", "", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DB.SetChannel(ctx, catalog.ChannelSpec{Name: "all"}, nil); err != nil {
			t.Fatal(err)
		}
	})
	ch := filepath.Join(mnt, ".pkgdirfs", "channels", "all")
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
		}
	}
	waitFor("channel all served", func() bool { _, err := os.Stat(filepath.Join(ch, "Packages")); return err == nil })
	if err := os.WriteFile(filepath.Join(ch, "x.tbz2"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("a write into a channel: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "dev-libs"), 0o755); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup
	for r := range 3 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch r {
				case 0:
					if b, err := os.ReadFile(filepath.Join(ch, "Packages")); err == nil {
						h, pkgs := layout.ParseIndex(b)
						if h["PACKAGES"] != fmt.Sprint(len(pkgs)) {
							t.Errorf("channel Packages: PACKAGES %s, %d entries", h["PACKAGES"], len(pkgs))
						}
					}
				case 1:
					filepath.WalkDir(ch, func(p string, d os.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							var st syscall.Stat_t
							syscall.Lstat(p, &st)
						}
						return nil
					})
				default:
					// Move the channel back and forth.
					spec := catalog.ChannelSpec{Name: "all", Snapshot: "seeds"}
					if _, err := store.DB.SetChannel(ctx, spec, nil); err != nil {
						t.Error(err)
					}
					time.Sleep(30 * time.Millisecond)
					if _, err := store.DB.SetChannel(ctx, catalog.ChannelSpec{Name: "all"}, nil); err != nil {
						t.Error(err)
					}
					time.Sleep(30 * time.Millisecond)
				}
			}
		}()
	}
	for i := range 30 {
		b := testXpak(t, "dev-libs", fmt.Sprintf("w-%d.0", i), int64(100+i))
		if err := os.WriteFile(filepath.Join(mnt, "dev-libs", fmt.Sprintf("w-%d.0.tbz2", i)), b, 0o644); err != nil {
			t.Errorf("writing w-%d.0: %v", i, err)
		}
	}
	close(stop)
	bg.Wait()
	if _, err := store.DB.SetChannel(ctx, catalog.ChannelSpec{Name: "all"}, nil); err != nil {
		t.Fatal(err)
	}
	want := readIndex(t, mnt)
	slices.Sort(want)
	var got []string
	waitFor("the live channel lists the main tree's packages", func() bool {
		b, err := os.ReadFile(filepath.Join(ch, "Packages"))
		if err != nil {
			return false
		}
		_, pkgs := layout.ParseIndex(b)
		got = got[:0]
		for _, p := range pkgs {
			got = append(got, p["PATH"])
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	if len(want) != 40 {
		t.Errorf("main tree lists %d packages, want 40", len(want))
	}
	b, _ := os.ReadFile(filepath.Join(ch, "Packages"))
	_, pkgs := layout.ParseIndex(b)
	for _, p := range pkgs {
		st, err := os.Stat(filepath.Join(ch, p["PATH"]))
		if err != nil || fmt.Sprint(st.Size()) != p["SIZE"] {
			t.Errorf("channel %s: %v, size %v, want %s", p["PATH"], err, st, p["SIZE"])
		}
	}
}

// TestChannelMountLean: a mount of one channel (a front-end) serves it at
// its root without loading the main tree or keeping the main index (its
// cache beside the blobs is left as it was), and follows the catalog
// through the channel: a build committed by another process shows up.
func TestChannelMountLean(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	ctx := context.Background()
	state := t.TempDir()
	store, err := catalog.OpenStore(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	commitTest(t, store, "app-misc", "a-1.0", 1)
	commitTest(t, store, "dev-libs", "b-1.0", 2)
	compile := func(c *catalog.ChannelInfo) (tree.GroupFilter, []catalog.Scope, error) {
		return nil, []catalog.Scope{{Category: "app-misc"}}, nil
	}
	if _, err := store.DB.SetChannel(ctx, catalog.ChannelSpec{Name: "apps", Query: "app-misc/*"}, nil); err != nil {
		t.Fatal(err)
	}
	logs := &pkgtest.SyncBuffer{}
	fsys, err := New(ctx, Config{Store: store, Layouts: tree.AllLayouts, ReadOnly: true, Channel: "apps",
		CompileChannel: compile, Log: slog.New(slog.NewTextHandler(logs, nil)), PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if err := fsys.Mount(mnt); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := fsys.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		fsys.Wait()
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
				t.Errorf("daemon log: %s", l)
			}
		}
		if _, err := os.Stat(filepath.Join(store.BlobDir(), ".index-cache")); err == nil {
			t.Errorf("a mount of one channel wrote the main index cache")
		}
	}()
	if n := fsys.model.Packages(); n != 0 {
		t.Errorf("a mount of one channel loaded the main tree: %d packages", n)
	}
	paths := func() []string {
		b, err := os.ReadFile(filepath.Join(mnt, "Packages"))
		if err != nil {
			t.Fatal(err)
		}
		_, pkgs := layout.ParseIndex(b)
		var out []string
		for _, p := range pkgs {
			out = append(out, p["PATH"])
		}
		slices.Sort(out)
		return out
	}
	if got := paths(); len(got) != 1 || !strings.HasPrefix(got[0], "app-misc/a/") {
		t.Fatalf("the channel's Packages lists %v, want app-misc/a only", got)
	}
	commitTest(t, store, "app-misc", "c-1.0", 3)
	deadline := time.Now().Add(10 * time.Second)
	for len(paths()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a build committed by another process is not in the channel after 10 s: %v", paths())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(mnt, "app-misc", "c-1.0.tbz2")); err != nil {
		t.Errorf("the new build's flat name: %v", err)
	}
}
