package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A channel is a name that points at a snapshot or at a live query of the
// catalog; a mount serves each as a binhost of its own (its own Packages,
// the same blobs). Its definition lives here so that every mount of the
// catalog, on every host, serves the same thing under the name; moving it
// is one transaction.

// ChannelInfo is one channel.
type ChannelInfo struct {
	Name string
	// Snapshot (and SnapshotID) it serves; "" (0) for a live channel,
	// which serves the builds Query selects as the catalog changes.
	Snapshot   string
	SnapshotID int64
	Query      string // a live channel's query ("" every build)
	TTL        int64  // the index's TTL header, seconds (0: none)
	URI        string // the index's URI header ("": none)
	// Stamp is a floor for the TIMESTAMP of every index the channel serves
	// from this version on: above anything it served before the move.
	Stamp int64
	// Served is the highest TIMESTAMP a mount recorded serving it.
	Served    int64
	Version   int64 // raised by every set
	UpdatedNs int64
}

// Live tells whether the channel follows the catalog.
func (c *ChannelInfo) Live() bool { return c.SnapshotID == 0 }

// ChannelSpec is what `channel set` asks for: a snapshot, or live with a
// query; TTL and URI for the index header.
type ChannelSpec struct {
	Name     string
	Snapshot string // "" for live
	Query    string
	TTL      int64
	URI      string
}

// clientSlack is what Portage adds to the TIMESTAMP of its copy of an
// index for the If-Modified-Since of its next fetch (seconds): an index
// not more than this newer is answered 304 by a server that honours it.
const clientSlack = 5

// ErrSnapshotInUse: a channel points at the snapshot.
var ErrSnapshotInUse = errors.New("a channel points at the snapshot")

// CheckChannelName refuses what CheckSnapshotName refuses: a channel is a
// directory of the mount and a word on a command line.
func CheckChannelName(name string) error {
	if err := CheckSnapshotName(name); err != nil {
		return fmt.Errorf("bad channel name %q: want 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
	}
	return nil
}

// noChannelError says which channel is unknown; it is ErrNotFound.
type noChannelError struct{ name string }

func (e noChannelError) Error() string { return fmt.Sprintf("no channel named %q", e.name) }
func (e noChannelError) Unwrap() error { return ErrNotFound }

func channelByName(s Snapshot, name string) (*ChannelInfo, error) {
	cs, err := s.Channels()
	if err != nil {
		return nil, err
	}
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i], nil
		}
	}
	return nil, noChannelError{name}
}

// SetChannel points channel spec.Name at a snapshot or at a live query,
// creating it or moving it, in one transaction. The move gives the
// channel a TIMESTAMP floor above anything it served, and above the
// catalog's own, so that every client refetches its index (Portage ignores
// an index that is not newer than the one it holds). check, if not nil,
// vets the query first (the catalog knows no query language).
func (db *DB) SetChannel(ctx context.Context, spec ChannelSpec, check func(query string) error) (*ChannelInfo, error) {
	if err := CheckChannelName(spec.Name); err != nil {
		return nil, err
	}
	if spec.Snapshot != "" && spec.Query != "" {
		return nil, errors.New("a channel serves a snapshot or a live query, not both (make a snapshot with the query)")
	}
	if spec.TTL < 0 {
		return nil, fmt.Errorf("bad TTL %d: want seconds, 0 for none", spec.TTL)
	}
	if check != nil && spec.Snapshot == "" {
		if err := check(spec.Query); err != nil {
			return nil, fmt.Errorf("channel %s: query %q: %v", spec.Name, spec.Query, err)
		}
	}
	var out *ChannelInfo
	err := db.Tx(ctx, func(tx *Tx) error {
		c := &ChannelInfo{Name: spec.Name, Query: spec.Query, TTL: spec.TTL, URI: spec.URI, UpdatedNs: time.Now().UnixNano()}
		if spec.Snapshot != "" {
			info, err := snapshotByName(tx, spec.Snapshot)
			if err != nil {
				return err
			}
			c.Snapshot, c.SnapshotID = info.Name, info.ID
		}
		last, err := tx.LastTimestamp()
		if err != nil {
			return err
		}
		// Above what a deleted channel served, whose clients a new one of
		// its name may have.
		gone, _, err := tx.Setting(deletedStampSetting)
		if err != nil {
			return err
		}
		c.Stamp = max(time.Now().Unix(), last+1, gone+clientSlack+1)
		prev, err := channelByName(tx, spec.Name)
		switch {
		case err == nil:
			c.Version = prev.Version + 1
			c.Served = prev.Served
			// A client asks with If-Modified-Since = its TIMESTAMP + 5 s:
			// an index less than that above its copy is never fetched.
			c.Stamp = max(c.Stamp, max(prev.Stamp, prev.Served)+clientSlack+1)
		case errors.Is(err, ErrNotFound):
			c.Version = 1
		default:
			return err
		}
		out = c
		return tx.PutChannel(c)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deletedStampSetting is the highest TIMESTAMP a deleted channel served or
// was floored at.
const deletedStampSetting = "channel_deleted_stamp"

// Channels lists every channel by name.
func (db *DB) Channels(ctx context.Context) ([]ChannelInfo, error) {
	return read(ctx, db, func(v *View) ([]ChannelInfo, error) { return v.Channels() })
}

// Channel is the channel of that name; unknown, an error wrapping
// ErrNotFound.
func (db *DB) Channel(ctx context.Context, name string) (*ChannelInfo, error) {
	return read(ctx, db, func(v *View) (*ChannelInfo, error) { return channelByName(v, name) })
}

// DeleteChannel deletes channel name; unknown, an error wrapping
// ErrNotFound. Its snapshot stays.
func (db *DB) DeleteChannel(ctx context.Context, name string) error {
	return db.Tx(ctx, func(tx *Tx) error {
		c, err := channelByName(tx, name)
		if err != nil {
			return err
		}
		gone, _, err := tx.Setting(deletedStampSetting)
		if err != nil {
			return err
		}
		if high := max(c.Stamp, c.Served); high > gone {
			if err := tx.SetSetting(deletedStampSetting, high); err != nil {
				return err
			}
		}
		return tx.DeleteChannel(name)
	})
}

// RaiseChannelServed records that channel name was served with TIMESTAMP
// ts, so that its next move starts above it.
func (db *DB) RaiseChannelServed(ctx context.Context, name string, ts int64) error {
	return db.Tx(ctx, func(tx *Tx) error { return tx.RaiseChannelServed(name, ts) })
}

// channelsOn names the channels pointing at snapshot id.
func channelsOn(s Snapshot, id int64) ([]string, error) {
	cs, err := s.Channels()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cs {
		if c.SnapshotID == id {
			out = append(out, c.Name)
		}
	}
	return out, nil
}
