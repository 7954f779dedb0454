package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkgdirfs/internal/pgtest"
)

// BenchmarkMultiHost (make bench-multihost) puts a catalog of
// BENCH_MULTIHOST instances (default 100,000) on PostgreSQL and on SQLite,
// each with two mounts (PostgreSQL: two hosts; SQLite: the writer and a
// read-only follower), and prints beside each other: the import rate, the
// mount start, the first full read of Packages.gz after a mount, the
// commit latency, and the time until the other mount lists a change.
func BenchmarkMultiHost(b *testing.B) {
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

			mntA, startA := benchMultiMount(b, stateA, extra...)
			benchPrint(b, "bench multihost-%s-mount-start-%d: %s", backend, n, benchDur(startA))
			gz := benchTimed(func() { benchScaleReadAll(b, filepath.Join(mntA, "Packages.gz")) })
			benchPrint(b, "bench multihost-%s-first-Packages.gz-%d: %s (the first full read after the mount)", backend, n, benchDur(gz))
			var mntB string
			if backend == "postgres" {
				mntB, _ = benchMultiMount(b, stateB, extra...)
			} else {
				mntB, _ = benchMultiMount(b, stateA, "--read-only", "--log", filepath.Join(tmp, "follower.log"))
			}
			benchScaleReadAll(b, filepath.Join(mntB, "Packages.gz"))

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
		benchScaleCmd(b, time.Minute, "umount", mnt)
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
