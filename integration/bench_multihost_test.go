package integration

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/internal/pgtest"
)

// BenchmarkMultiHost (make bench-multihost) puts a catalog of
// BENCH_MULTIHOST instances (default 100,000) on PostgreSQL and on SQLite,
// each with two mounts (PostgreSQL: two hosts; SQLite: the writer and a
// read-only follower), and prints beside each other: the import rate, the
// mount start, the first full read of Packages.gz after a mount (the first
// mount renders; the second finds the first's index cache in the shared
// blob directory), the commit latency, and the time until the other mount
// lists a change.
func BenchmarkMultiHost(b *testing.B) {
	b.Run("catalog", benchMultiCatalogOnly)
	n := benchScaleEnv(b, "BENCH_MULTIHOST", 100000)
	tmp := b.TempDir()
	src := filepath.Join(tmp, "pkgdir")
	pkgs := benchScaleSet(n)
	n = len(pkgs)
	benchScaleSay("generating %d packages in %s", n, src)
	benchScaleWriteAll(b, src, pkgs, benchScalePkg.MultiRel, nil)
	srv := pgtest.Shared(b)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var extra []string
			if backend == "postgres" {
				extra = []string{"--catalog", srv.NewDB(b), "--blobs", filepath.Join(tmp, backend+"-blobs")}
			}
			stateA, stateB := filepath.Join(tmp, backend+"-a"), filepath.Join(tmp, backend+"-b")
			benchScaleSay("%s: import of %d packages", backend, n)
			imp, _ := benchScaleImport(b, stateA, src, n, extra...)
			benchPrint(b, "bench multihost-%s-import-%d: %.0f packages/s (%s)", backend, n, float64(n)/imp.Elapsed.Seconds(), benchDur(imp.Elapsed))

			blobDir := filepath.Join(stateA, "blobs")
			if backend == "postgres" {
				blobDir = filepath.Join(tmp, backend+"-blobs")
			}
			mntA, startA := benchMultiMount(b, stateA, extra...)
			benchPrint(b, "bench multihost-%s-mount-start-%d: %s", backend, n, benchDur(startA))
			gzA := benchFirstGz(b, mntA)
			benchPrint(b, "bench multihost-%s-first-Packages.gz-%d: %s (the first full read after the mount; first 4 KiB after %s; no index cache: the first mount renders)",
				backend, n, benchDur(gzA.Full), benchDur(gzA.First))
			// The first host writes the index cache after its render; the
			// second host (PostgreSQL) or the follower (SQLite) finds it in
			// the shared blob directory.
			benchMultiWaitCache(b, blobDir)
			var mntB string
			var startB time.Duration
			logB := filepath.Join(tmp, backend+"-b.log")
			if backend == "postgres" {
				mntB, startB = benchMultiMount(b, stateB, append(extra, "--log", logB)...)
			} else {
				mntB, startB = benchMultiMount(b, stateA, "--read-only", "--log", logB)
			}
			gzB := benchFirstGz(b, mntB)
			firstB := benchTimed(func() { benchScaleFirst4K(b, filepath.Join(mntB, "Packages")) })
			logged, _ := os.ReadFile(logB)
			benchPrint(b, "bench multihost-%s-first-Packages.gz-cache-%d: %s (the second mount's first full read, first 4 KiB after %s; then Packages first 4 KiB %s; mount %s; index cache used: %v)",
				backend, n, benchDur(gzB.Full), benchDur(gzB.First), benchDur(firstB), benchDur(startB), strings.Contains(string(logged), "index loaded from its cache"))

			chg := benchScaleNewPkgs(40, n+1)
			chgDir := filepath.Join(tmp, backend+"-chg")
			benchScaleWriteAll(b, chgDir, chg, benchScalePkg.FlatRel, nil)
			var commits, visible []time.Duration
			for _, p := range chg {
				dst := filepath.Join(mntA, p.FlatRel())
				os.MkdirAll(filepath.Dir(dst), 0o755)
				start := time.Now()
				benchScaleCmd(b, time.Minute, "cp", filepath.Join(chgDir, p.FlatRel()), dst)
				commits = append(commits, time.Since(start))
				other := filepath.Join(mntB, p.FlatRel())
				for {
					if _, err := os.Lstat(other); err == nil {
						break
					}
					if time.Since(start) > 10*time.Second {
						b.Fatalf("%s: %s not visible on the other mount after 10 s", backend, p.FlatRel())
					}
					time.Sleep(time.Millisecond)
				}
				visible = append(visible, time.Since(start))
			}
			med, mx := benchScaleMedianMax(commits)
			benchPrint(b, "bench multihost-%s-commit-%d: median %s, max %s (%d cp of a new package)", backend, n, benchDur(med), benchDur(mx), len(commits))
			slices.Sort(visible)
			benchPrint(b, "bench multihost-%s-visible-%d: p50 %s, p99 %s (from cp's start until the other mount lists the name)", backend, n,
				benchDur(visible[len(visible)/2]), benchDur(visible[len(visible)*99/100]))
		})
	}
}

// benchMultiCatalogOnly puts BENCH_MULTIHOST_CATALOG instances (default
// 1,000,000; 0 skips it) straight into a catalog on each backend (rows, no
// blobs, as bench-scale's catalog run) and times a mount's start and its
// first full read of Packages.gz: the first mount renders the index, the
// next finds the first's index cache.
func benchMultiCatalogOnly(b *testing.B) {
	nc := benchScaleEnv(b, "BENCH_MULTIHOST_CATALOG", 1000000)
	if nc == 0 {
		b.Skip("BENCH_MULTIHOST_CATALOG=0")
	}
	tmp := b.TempDir()
	srv := pgtest.Shared(b)
	for _, backend := range []string{"sqlite", "postgres"} {
		state := filepath.Join(tmp, backend+"-state")
		loc := catalog.Location{State: state}
		var extra []string
		if backend == "postgres" {
			loc.Catalog, loc.Blobs = srv.NewDB(b), filepath.Join(tmp, backend+"-blobs")
			extra = []string{"--catalog", loc.Catalog, "--blobs", loc.Blobs}
		}
		benchScaleSay("%s: writing %d instances into the catalog", backend, nc)
		var rows int
		fill := benchTimed(func() { rows = benchScaleFillCatalogAt(b, loc, nc) })
		benchPrint(b, "bench multihost-%s-catalog-fill-%d: %s (%.0f rows/s, straight into the catalog)", backend, rows, benchDur(fill), float64(rows)/fill.Seconds())
		for _, run := range []string{"render", "cache"} {
			mnt, start := benchMultiMount(b, state, extra...)
			gz := benchFirstGz(b, mnt)
			benchPrint(b, "bench multihost-%s-catalog-%s-%d: mount %s; first full Packages.gz %s, its first 4 KiB after %s", backend, run, rows,
				benchDur(start), benchDur(gz.Full), benchDur(gz.First))
			if run == "render" {
				benchMultiWaitCache(b, loc.BlobDir())
			}
			benchScaleCmd(b, 5*time.Minute, "umount", mnt)
		}
	}
}

// benchMultiMount mounts a state (b's cleanup unmounts) and returns the
// mountpoint and the time `pkgdirfs mount` took.
func benchMultiMount(b *testing.B, state string, extra ...string) (string, time.Duration) {
	b.Helper()
	mnt, err := os.MkdirTemp("", "pkgdirfs-bench-mnt-")
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"mount", "--state", state}
	if !slices.Contains(extra, "--log") {
		args = append(args, "--log", filepath.Join(state, fmt.Sprintf("bench-%d.log", time.Now().UnixNano())))
	}
	args = append(append(args, extra...), mnt)
	b.Cleanup(func() {
		if _, ok := mountedFSType(mnt); ok { // not unmounted by the benchmark
			benchScaleCmd(b, time.Minute, "umount", mnt)
		}
		os.Remove(mnt)
	})
	start := time.Now()
	benchScaleCmd(b, benchScaleStepLimit, binPath, args...)
	d := time.Since(start)
	if fstype, ok := mountedFSType(mnt); !ok || !strings.HasPrefix(fstype, "fuse") {
		b.Fatalf("`pkgdirfs %s` returned but %s is not mounted", strings.Join(args, " "), mnt)
	}
	return mnt, d
}

// benchFirstGzRead is one read of Packages.gz: open to its first 4 KiB,
// and open to EOF.
type benchFirstGzRead struct{ First, Full time.Duration }

// benchFirstGz reads Packages.gz of mnt once, to EOF, timing its first
// 4 KiB on the way.
func benchFirstGz(b *testing.B, mnt string) benchFirstGzRead {
	b.Helper()
	var r benchFirstGzRead
	start := time.Now()
	f, err := os.Open(filepath.Join(mnt, "Packages.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(f, buf[:4096]); err != nil {
		b.Fatalf("read Packages.gz: %v", err)
	}
	r.First = time.Since(start)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatalf("read Packages.gz: %v", err)
		}
	}
	r.Full = time.Since(start)
	return r
}

// benchMultiWaitCache waits until blobDir holds an index cache file.
func benchMultiWaitCache(b *testing.B, blobDir string) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(blobDir, ".index-cache", "index-*.cache")); len(m) > 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("no index cache in %s 5 minutes after the first mount's render", blobDir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
