package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatePresent(t *testing.T) {
	tmp := t.TempDir()

	if why := StatePresent(filepath.Join(tmp, "nope")); why != "no such directory" {
		t.Errorf("missing directory: %q, want %q", why, "no such directory")
	}

	empty := filepath.Join(tmp, "empty")
	os.Mkdir(empty, 0o755)
	if why := StatePresent(empty); why != "no catalog in it" {
		t.Errorf("directory without a catalog: %q, want %q", why, "no catalog in it")
	}

	zero := filepath.Join(tmp, "zero")
	os.Mkdir(zero, 0o755)
	if err := os.WriteFile(catalogPath(zero), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if why := StatePresent(zero); why != "its catalog is empty (0 bytes)" {
		t.Errorf("0-byte catalog: %q, want %q", why, "its catalog is empty (0 bytes)")
	}

	good := filepath.Join(tmp, "good")
	os.Mkdir(good, 0o755)
	db, err := openState(good)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if why := StatePresent(good); why != "" {
		t.Errorf("state with a catalog: %q, want \"\"", why)
	}
	// The words are the user's: they name no file of the store.
	for _, dir := range []string{empty, zero} {
		if why := StatePresent(dir); strings.Contains(why, catalogFile) {
			t.Errorf("StatePresent(%s) = %q names the store's file", dir, why)
		}
	}
}

func TestUnreadable(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string, body []byte) string {
		t.Helper()
		dir := filepath.Join(tmp, name)
		os.Mkdir(dir, 0o755)
		if body != nil {
			if err := os.WriteFile(catalogPath(dir), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	missing := mk("missing", nil)
	if Unreadable(missing) {
		t.Error("a missing catalog is unreadable, want a new one made")
	}
	if _, err := os.Stat(catalogPath(missing)); !os.IsNotExist(err) {
		t.Errorf("Unreadable made a catalog in %s (%v)", missing, err)
	}
	if !Unreadable(mk("zero", []byte{})) {
		t.Error("a 0-byte catalog is readable")
	}
	if !Unreadable(mk("garbage", []byte(strings.Repeat("not a database ", 600)))) {
		t.Error("a damaged catalog is readable")
	}
	good := mk("good", nil)
	db, err := openState(good)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if Unreadable(good) {
		t.Error("a good catalog is unreadable")
	}
}

func TestSetAside(t *testing.T) {
	const suffix = ".lost-20240102T030405"

	t.Run("all files", func(t *testing.T) {
		dir := t.TempDir()
		files := catalogFiles(dir)
		for i, p := range files {
			if err := os.WriteFile(p, []byte{byte('a' + i)}, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		moved, err := SetAside(dir, suffix)
		if err != nil {
			t.Fatal(err)
		}
		if len(moved) != len(files) {
			t.Fatalf("moved %q, want %d files", moved, len(files))
		}
		for i, p := range files {
			if moved[i] != p+suffix {
				t.Errorf("moved[%d] = %s, want %s", i, moved[i], p+suffix)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s is still there (%v)", p, err)
			}
			if b, err := os.ReadFile(p + suffix); err != nil || string(b) != string(rune('a'+i)) {
				t.Errorf("%s: %q, %v; want the old file's bytes", p+suffix, b, err)
			}
		}
		if why := StatePresent(dir); why != "no catalog in it" {
			t.Errorf("after SetAside, StatePresent = %q, want no catalog", why)
		}
	})

	t.Run("a real catalog stays usable", func(t *testing.T) {
		dir := t.TempDir()
		db, err := openState(dir)
		if err != nil {
			t.Fatal(err)
		}
		insert(t, db, pkg("app-misc/hello-1.0", 1))
		db.Close()
		moved, err := SetAside(dir, suffix)
		if err != nil {
			t.Fatal(err)
		}
		if len(moved) == 0 || moved[0] != catalogPath(dir)+suffix {
			t.Fatalf("moved %q, want the database first", moved)
		}
		// A new catalog is made in its place, empty.
		fresh, err := openState(dir)
		if err != nil {
			t.Fatal(err)
		}
		if empty, err := fresh.Empty(context.Background()); err != nil || !empty {
			t.Errorf("the new catalog: empty %v, %v; want empty", empty, err)
		}
		fresh.Close()
		// The old one, where it was moved, still lists its package.
		old, err := openAt(moved[0])
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if n, _, _, err := old.Stats(context.Background()); err != nil || n != 1 {
			t.Errorf("the set-aside catalog lists %d instances (%v), want 1", n, err)
		}
	})

	t.Run("only the database", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(catalogPath(dir), []byte("x"), 0o644)
		moved, err := SetAside(dir, suffix)
		if err != nil || len(moved) != 1 || moved[0] != catalogPath(dir)+suffix {
			t.Errorf("SetAside = %q, %v; want only the database moved", moved, err)
		}
	})

	t.Run("nothing", func(t *testing.T) {
		moved, err := SetAside(t.TempDir(), suffix)
		if err != nil || len(moved) != 0 {
			t.Errorf("SetAside of no catalog = %q, %v; want nothing moved", moved, err)
		}
	})

	t.Run("no suffix", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(catalogPath(dir), []byte("x"), 0o644)
		if moved, err := SetAside(dir, ""); err == nil || len(moved) != 0 {
			t.Errorf("SetAside without a suffix = %q, %v; want an error", moved, err)
		}
		if _, err := os.Stat(catalogPath(dir)); err != nil {
			t.Errorf("the catalog was touched: %v", err)
		}
	})
}

func TestLastWrite(t *testing.T) {
	dir := t.TempDir()
	db, err := openState(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-2 * time.Second) // coarse filesystem clocks
	insert(t, db, pkg("app-misc/hello-1.0", 1))
	last, err := db.LastWrite()
	if err != nil {
		t.Fatal(err)
	}
	if last.Before(before) || last.After(time.Now().Add(2*time.Second)) {
		t.Errorf("LastWrite = %s, want about now (%s)", last, time.Now())
	}
	// It reads the files, not the connection: closed, then gone.
	db.Close()
	for _, p := range catalogFiles(dir) {
		os.Remove(p)
	}
	if last, err := db.LastWrite(); err == nil || !last.IsZero() {
		t.Errorf("LastWrite with the files gone = %s, %v; want an error", last, err)
	}
}
