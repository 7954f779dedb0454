package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNextIncarnation: consecutive mounts of a state get distinct, non-zero
// incarnations; a count that cannot be read or kept still gives one.
func TestNextIncarnation(t *testing.T) {
	state := t.TempDir()
	seen := map[uint16]bool{}
	for i := 0; i < 3; i++ {
		inc, err := nextIncarnation(state)
		if err != nil || inc == 0 || seen[inc] {
			t.Fatalf("mount %d: incarnation %d (%v), earlier ones %v: want a new, non-zero one", i+1, inc, err, seen)
		}
		seen[inc] = true
	}
	if b, err := os.ReadFile(filepath.Join(state, mountsFile)); err != nil || strings.TrimSpace(string(b)) != "3" {
		t.Errorf("%s after three mounts: %q, %v; want 3", mountsFile, b, err)
	}
	if err := os.WriteFile(filepath.Join(state, mountsFile), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if inc, err := nextIncarnation(state); inc == 0 || err == nil {
		t.Errorf("after an unreadable count: incarnation %d, err %v; want a non-zero one and the reason", inc, err)
	}
	if inc, err := nextIncarnation(state); inc == 0 || err != nil {
		t.Errorf("after the count was written again: incarnation %d, err %v; want a non-zero one, no error", inc, err)
	}
	if inc, err := nextIncarnation(filepath.Join(state, "missing")); inc == 0 || err == nil {
		t.Errorf("in a state directory that is not there: incarnation %d, err %v; want a non-zero one and the reason", inc, err)
	}
}
