package xpak

import (
	"bytes"
	"math/rand"
	"os"
	"runtime/pprof"
	"testing"
	"time"
)

func TestHunt(t *testing.T) {
	seeds := [][]byte{validGpkg(t), smallestFixture(t, ".gpkg.tar"), smallestFixture(t, ".tbz2")}
	ms := stdMembers(t)
	seeds = append(seeds, gpkgBytes(t, ms, []byte(clearSign(string(manifestFor(ms))))))
	rng := rand.New(rand.NewSource(1))
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		b := append([]byte(nil), seeds[rng.Intn(len(seeds))]...)
		for k := rng.Intn(4) + 1; k > 0; k-- {
			b[rng.Intn(len(b))] = byte(rng.Intn(256))
		}
		done := make(chan bool)
		go func() {
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				os.WriteFile("/tmp/slow.bin", b, 0o644)
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				os.Exit(3)
			}
		}()
		Inspect(bytes.NewReader(b), int64(len(b)), InspectOptions{VerifyImage: true})
		close(done)
	}
}
