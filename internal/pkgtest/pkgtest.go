// Package pkgtest holds what the unit tests of several packages share:
// small valid packages and a log sink for concurrent writers.
package pkgtest

import (
	"archive/tar"
	"bytes"
	"strconv"
	"sync"
	"testing"
	"time"

	"pkgdirfs/xpak"
)

// Xpak is a small valid xpak package of cat/pf built at buildTime: a plain
// tar and an XPAK block with CATEGORY, PF, SLOT, EAPI, BUILD_TIME and extra.
func Xpak(t testing.TB, cat, pf string, buildTime int64, extra ...xpak.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("hello " + pf + strconv.FormatInt(buildTime, 10))
	if err := tw.WriteHeader(&tar.Header{Name: "./usr/share/" + pf, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	entries := append([]xpak.Entry{
		{Key: "CATEGORY", Value: []byte(cat + "\n")},
		{Key: "PF", Value: []byte(pf + "\n")},
		{Key: "SLOT", Value: []byte("0\n")},
		{Key: "EAPI", Value: []byte("8\n")},
		{Key: "BUILD_TIME", Value: []byte(strconv.FormatInt(buildTime, 10) + "\n")},
	}, extra...)
	block, err := xpak.EncodeBlock(entries)
	if err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), xpak.AppendTrailer(block)...)
}

// SyncBuffer is a log sink shared by goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PollFor calls ok until it returns true or d has passed, and reports
// whether it did; ok is called at least once, and once more at the
// deadline. Tests wait this way for what the kernel or a daemon does after
// the call that caused it returned, never by sleeping a guessed time.
func PollFor(d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return ok()
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval
	}
	return true
}
