package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/blake2b"

	"pkgdirfs/internal/pkgtest"
)

// benchWriteGpkg writes an unsigned gpkg of cat/pf at path as Portage lays
// one out (gpkg-1, metadata.tar.gz, image.tar, Manifest with BLAKE2B and
// SHA512, 10240-byte records), its image one file of size random bytes
// from seed, streamed (a 200 MiB package never sits in memory). It returns
// the file size.
func benchWriteGpkg(path, cat, pf string, buildTime, size int64, seed uint64) (int64, error) {
	var meta bytes.Buffer
	zw := gzip.NewWriter(&meta)
	mt := tar.NewWriter(zw)
	for _, kv := range [][2]string{{"CATEGORY", cat}, {"PF", pf}, {"SLOT", "0"}, {"EAPI", "8"},
		{"BUILD_TIME", strconv.FormatInt(buildTime, 10)}, {"KEYWORDS", "amd64"}, {"DESCRIPTION", "synthetic gpkg for pkgdirfs benchmarks"}} {
		v := []byte(kv[1] + "\n")
		mt.WriteHeader(&tar.Header{Name: "metadata/" + kv[0], Mode: 0o644, Size: int64(len(v)), Typeflag: tar.TypeReg, ModTime: time.Unix(buildTime, 0), Format: tar.FormatUSTAR})
		mt.Write(v)
	}
	mt.Close()
	zw.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cw := &benchCountingWriter{w: f}
	bw := bufio.NewWriterSize(cw, 1<<20)
	tw := tar.NewWriter(bw)
	var man bytes.Buffer
	member := func(name string, n int64, write func(w io.Writer) error) error {
		if err := tw.WriteHeader(&tar.Header{Name: pf + "/" + name, Mode: 0o644, Size: n, Typeflag: tar.TypeReg, ModTime: time.Unix(buildTime, 0), Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		bh, _ := blake2b.New512(nil)
		sh := sha512.New()
		if err := write(io.MultiWriter(tw, bh, sh)); err != nil {
			return err
		}
		fmt.Fprintf(&man, "DATA %s %d BLAKE2B %s SHA512 %s\n", name, n, hex.EncodeToString(bh.Sum(nil)), hex.EncodeToString(sh.Sum(nil)))
		return nil
	}
	bytesOf := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	imageLen := 512 + (size+511)&^511 + 1024 // one member and the end of the inner tar
	err = member("gpkg-1", 0, bytesOf(nil))
	if err == nil {
		err = member("metadata.tar.gz", int64(meta.Len()), bytesOf(meta.Bytes()))
	}
	if err == nil {
		err = member("image.tar", imageLen, func(w io.Writer) error {
			it := tar.NewWriter(w)
			if err := it.WriteHeader(&tar.Header{Name: "image/usr/share/" + pf + "/data", Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(buildTime, 0), Format: tar.FormatUSTAR}); err != nil {
				return err
			}
			rng := rand.NewChaCha8(sha256.Sum256([]byte(strconv.FormatUint(seed, 16))))
			if _, err := io.CopyN(it, rng, size); err != nil {
				return err
			}
			return it.Close()
		})
	}
	if err == nil {
		m := man.Bytes()
		err = member("Manifest", int64(len(m)), bytesOf(m))
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		n := cw.n + int64(bw.Buffered())
		_, err = bw.Write(make([]byte, (10240-n%10240)%10240))
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return 0, err
	}
	return cw.n, f.Close()
}

// benchCommit copies src into the mount at dst and returns how long the
// write took and how long close() took: the commit (parse, sign, sync,
// the catalog transaction).
func benchCommit(b *testing.B, src, dst string) (write, commit time.Duration) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	write = time.Since(start)
	start = time.Now()
	if err := out.Close(); err != nil {
		b.Fatalf("commit of %s: %v", dst, err)
	}
	return write, time.Since(start)
}

func benchMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSign: what signing on arrival costs. Commit latency (close() of
// a package written into the mount) of a 24 KiB and a 200 MiB gpkg on a
// mount with --sign-key and on one without; import throughput of 300
// 24 KiB gpkgs and of 3 200 MiB ones with and without import --sign-key.
// The key is ed25519 in a gpg-agent (no passphrase).
func BenchmarkSign(b *testing.B) {
	benchNeed(b)
	home := pkgtest.NewGPGHome(b)
	fpr := home.GenKey("Bench binhost <bench@example.org>")
	signOpts := []string{"--sign-key", fpr, "--gpg-home", home.Dir}
	src := b.TempDir()
	type size struct {
		name  string
		bytes int64
		reps  int
	}
	sizes := []size{{"24KiB", 20 << 10, 15}, {"200MiB", 200 << 20, 3}}
	// Distinct builds (BUILD_TIME) of one CPV per repetition and mount:
	// every commit is a new build, signed anew.
	files := map[string][]string{}
	var fileSize = map[string]int64{}
	for _, sz := range sizes {
		for i := range 2 * sz.reps {
			p := filepath.Join(src, sz.name, fmt.Sprintf("%d.gpkg.tar", i))
			n, err := benchWriteGpkg(p, "bench-sign", "pkg"+sz.name+"-1.0", 1700000000+int64(i), sz.bytes, uint64(i))
			if err != nil {
				b.Fatal(err)
			}
			files[sz.name] = append(files[sz.name], p)
			fileSize[sz.name] = n
		}
	}
	for _, signed := range []bool{false, true} {
		state := b.TempDir()
		opts := []string{"--init"}
		mode := "unsigned"
		if signed {
			opts, mode = append(opts, signOpts...), "signed"
		}
		m := benchMount(b, state, opts...)
		for _, sz := range sizes {
			var writes, commits []time.Duration
			for i := range sz.reps {
				p := files[sz.name][i]
				if signed {
					p = files[sz.name][sz.reps+i]
				}
				pf := "pkg" + sz.name + "-1.0"
				w, c := benchCommit(b, p, filepath.Join(m.Dir, "bench-sign", "pkg"+sz.name, fmt.Sprintf("%s-%d.gpkg.tar", pf, i+1)))
				writes, commits = append(writes, w), append(commits, c)
			}
			benchPrint(b, "commit %-7s %-8s (%d bytes): close() median %s (min %s, max %s) of %d; write before it %s",
				sz.name, mode, fileSize[sz.name], benchDur(benchMedian(commits)), benchDur(slices.Min(commits)), benchDur(slices.Max(commits)), sz.reps, benchDur(benchMedian(writes)))
		}
		m.Close(b)
	}

	// Import: a PKGDIR of 300 small gpkgs, then one of 3 large ones.
	for _, set := range []struct {
		name string
		n    int
		size int64
	}{{"300 x 24KiB", 300, 20 << 10}, {"3 x 200MiB", 3, 200 << 20}} {
		dir := b.TempDir()
		var total int64
		for i := range set.n {
			pf := fmt.Sprintf("p%d-1.0", i)
			n, err := benchWriteGpkg(filepath.Join(dir, "bench-import", pf+".gpkg.tar"), "bench-import", pf, 1700000000, set.size, uint64(1000+i))
			if err != nil {
				b.Fatal(err)
			}
			total += n
		}
		for _, signed := range []bool{false, true} {
			args := []string{"import", "-q", "--state", b.TempDir()}
			mode := "import"
			if signed {
				args, mode = append(args, signOpts...), "import --sign-key"
			}
			start := time.Now()
			benchExec(b, "", 30*time.Minute, nil, binPath, append(args, dir)...)
			d := time.Since(start)
			benchPrint(b, "%-17s %s: %s, %.0f packages/s, %s", mode, set.name, benchDur(d), float64(set.n)/d.Seconds(), benchRate(total, d))
		}
	}
}
