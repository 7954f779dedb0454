package catalog

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestChannels: set makes and moves a channel in one transaction, each
// move with a TIMESTAMP floor above everything the channel served and the
// catalog's own; bad input is a one-line error that changes nothing; a
// snapshot a channel serves cannot be deleted; concurrent sets of one name
// all land, one after the other.
func TestChannels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := testStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := ingestBytes(t, s, "app-misc/foo-1.0.tbz2", makeXpak(t, "app-misc", "foo-1.0", 100), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.CreateSnapshot(ctx, "s1", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.CreateSnapshot(ctx, "s2", "", nil); err != nil {
		t.Fatal(err)
	}
	gen0, _ := s.DB.Generation(ctx)
	list := func() string {
		t.Helper()
		cs, err := s.DB.Channels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.Name+"="+c.Snapshot+"|"+c.Query)
		}
		return strings.Join(out, " ")
	}
	reject := func(q string) error {
		if strings.Contains(q, "bad") {
			return errors.New("does not parse")
		}
		return nil
	}

	before := time.Now().Unix()
	prod, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "prod", Snapshot: "s2"}, reject)
	if err != nil || prod.Version != 1 || prod.SnapshotID == 0 || prod.Snapshot != "s2" || prod.Stamp < before {
		t.Fatalf("set prod: %+v, %v", prod, err)
	}
	live, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "apps", Query: "app-misc/*", TTL: 3600, URI: "http://x/apps"}, reject)
	if err != nil || !live.Live() || live.TTL != 3600 || live.URI != "http://x/apps" {
		t.Fatalf("set apps: %+v, %v", live, err)
	}
	if g, _ := s.DB.Generation(ctx); g != gen0 {
		t.Errorf("setting channels moved the generation %d -> %d: the tree did not change", gen0, g)
	}
	if got := list(); got != "apps=|app-misc/* prod=s2|" {
		t.Fatalf("channels %q", got)
	}

	// Bad input: one line, no change.
	for _, spec := range []ChannelSpec{
		{Name: "prod", Snapshot: "nosuch"},
		{Name: ".x", Snapshot: "s1"},
		{Name: "a/b"},
		{Name: "prod", Query: "bad query"},
		{Name: "prod", Snapshot: "s1", Query: "app-misc/*"},
		{Name: "prod", Snapshot: "s1", TTL: -1},
	} {
		if _, err := s.DB.SetChannel(ctx, spec, reject); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("set %+v: %v, want a one-line error", spec, err)
		}
	}
	if _, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "x", Snapshot: "nosuch"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown snapshot: %v, want ErrNotFound", err)
	}
	if err := s.DB.DeleteChannel(ctx, "nosuch"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("delete of an unknown channel: %v", err)
	}
	if err := s.DeleteSnapshot(ctx, "s2"); !errors.Is(err, ErrSnapshotInUse) || !strings.Contains(err.Error(), "prod") {
		t.Errorf("delete of the snapshot prod serves: %v, want ErrSnapshotInUse naming prod", err)
	}
	if got := list(); got != "apps=|app-misc/* prod=s2|" {
		t.Fatalf("after refusals: channels %q", got)
	}

	// A move: above what was served, and above the catalog's TIMESTAMP
	// (which may run ahead of the clock in a burst).
	if err := s.DB.RaiseChannelServed(ctx, "prod", prod.Stamp+50); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.RaiseChannelServed(ctx, "prod", prod.Stamp+10); err != nil { // lower: kept
		t.Fatal(err)
	}
	err = s.DB.Tx(ctx, func(tx *Tx) error { return tx.SetSetting("last_timestamp", prod.Stamp+100) })
	if err != nil {
		t.Fatal(err)
	}
	moved, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "prod", Snapshot: "s1"}, reject)
	if err != nil || moved.Version != 2 || moved.Snapshot != "s1" || moved.Served != prod.Stamp+50 || moved.Stamp != prod.Stamp+101 {
		t.Fatalf("move prod to s1: %+v, %v; want version 2, served %d, stamp %d", moved, err, prod.Stamp+50, prod.Stamp+101)
	}
	again, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "prod", Snapshot: "s2"}, reject)
	if err != nil || again.Stamp <= moved.Stamp {
		t.Fatalf("move back: %+v, %v; want a stamp above %d", again, err, moved.Stamp)
	}
	if err := s.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Errorf("delete of s1, which no channel serves now: %v", err)
	}

	// Sets of one name from two connections at once: every one lands.
	other, err := testState(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		db := s.DB
		if i%2 == 1 {
			db = other
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.SetChannel(ctx, ChannelSpec{Name: "race", Query: "app-misc/*"}, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent set: %v", err)
		}
	}
	if c, err := s.DB.Channel(ctx, "race"); err != nil || c.Version != 20 {
		t.Errorf("after 20 sets: %+v, %v; want version 20", c, err)
	}
	if err := s.DB.DeleteChannel(ctx, "race"); err != nil {
		t.Fatal(err)
	}
	high := time.Now().Unix() + 1000
	if err := s.DB.RaiseChannelServed(ctx, "apps", high); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.DeleteChannel(ctx, "apps"); err != nil {
		t.Fatal(err)
	}
	if got := list(); got != "prod=s2|" {
		t.Errorf("after deletes: channels %q", got)
	}
	// Its clients hold TIMESTAMP high: a new channel of the name starts
	// above it and Portage's 5 s slack.
	again2, err := s.DB.SetChannel(ctx, ChannelSpec{Name: "apps", Query: "app-misc/*"}, nil)
	if err != nil || again2.Version != 1 || again2.Stamp <= high+5 {
		t.Errorf("apps set again after its delete: %+v, %v; want version 1, a stamp above %d", again2, err, high+5)
	}
}
