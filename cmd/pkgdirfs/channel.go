package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/catalog/query"
	"pkgdirfs/tree"
)

// The channel subcommands: their operands, and whether --format applies.
var channelSubs = map[string]struct {
	operands int
	table    bool
}{
	"set":    {1, false},
	"list":   {0, true},
	"delete": {1, false},
}

func cmdChannel(args []string) int {
	fl := newFlags("channel")
	state := stateFlag(fl)
	snap := fl.String("snapshot", "", "set: serve snapshot `SNAP`, frozen")
	live := fl.Bool("live", false, "set: follow the catalog, serving the builds --query selects as they come and go")
	q := fl.String("query", "", "set --live: serve only the builds `QUERY` selects: the terms of pkgdirfs query in one string, e.g. '--chost x86_64-pc-linux-gnu --keep 1' (default: every build)")
	ttl := fl.String("ttl", "", "set: the index's TTL header, a `DURATION` (3600, 1h; clients reuse their copy that long); 0 or absent: none")
	uri := fl.String("uri", "", "set: the index's URI header, a `URL` clients download the packages from (default: where they fetched the index)")
	format := fl.String("format", "table", "list: output `FORMAT`, table or json")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if len(ops) == 0 {
		return usageError(fl, "which channel command? set, list or delete")
	}
	sub, ops := ops[0], ops[1:]
	spec, ok := channelSubs[sub]
	switch {
	case !ok:
		return usageError(fl, "unknown channel command %q (want set, list or delete)", sub)
	case len(ops) != spec.operands:
		want := map[int]string{0: "no operand", 1: "a channel NAME"}[spec.operands]
		return usageError(fl, "channel %s takes %s, got %d operand(s)", sub, want, len(ops))
	case sub != "set" && (fl.Changed("snapshot") || fl.Changed("live") || fl.Changed("query") || fl.Changed("ttl") || fl.Changed("uri")):
		return usageError(fl, "--snapshot, --live, --query, --ttl and --uri are for channel set")
	case fl.Changed("format") && !spec.table:
		return usageError(fl, "channel %s prints no table: --format is for list", sub)
	case fl.Changed("format") && !formatIn(*format, "table|json"):
		return usageError(fl, "--format %q: channel list takes table or json", *format)
	case sub == "set" && (*snap == "") == !*live:
		return usageError(fl, "channel set needs one of --snapshot SNAP and --live")
	case sub == "set" && *snap != "" && fl.Changed("query"):
		return usageError(fl, "--query is for a --live channel (to serve part of a snapshot, make one with that query)")
	}
	for _, name := range ops {
		if err := catalog.CheckChannelName(name); err != nil {
			return usageError(fl, "%v", err)
		}
	}
	if sub == "set" && fl.Changed("query") {
		// A query that does not parse is a usage error, as for snapshot
		// create (exit 2), found before the catalog is opened.
		if _, err := query.Parse(*q, time.Now()); err != nil {
			return usageError(fl, "--query: %v", err)
		}
	}
	var ttlSec int64
	if *ttl != "" {
		d, err := parseSeconds(*ttl)
		if err != nil {
			return usageError(fl, "--ttl %q: %v", *ttl, err)
		}
		ttlSec = d
	}
	loc := location(*state)
	if why := notAState(loc); why != "" {
		return fail("channel: %s is not a pkgdirfs state (%s)", *state, why)
	}
	log := newLogger(os.Stderr)
	var (
		store *catalog.Store
		err   error
	)
	if sub == "list" {
		store, err = openToRead(loc, log)
	} else {
		store, err = catalog.OpenStoreAt(loc, log)
	}
	if err != nil {
		return fail("channel %s: %v", sub, err)
	}
	defer store.Close()
	w := bufio.NewWriter(os.Stdout)
	switch sub {
	case "set":
		var c *catalog.ChannelInfo
		c, err = store.DB.SetChannel(background(), catalog.ChannelSpec{Name: ops[0], Snapshot: *snap, Query: *q, TTL: ttlSec, URI: *uri},
			func(q string) error { _, err := query.Parse(q, time.Now()); return err })
		if err == nil {
			what := "every build, live"
			switch {
			case c.Snapshot != "":
				what = "snapshot " + c.Snapshot
			case c.Query != "":
				what = "the builds of query " + strconv.Quote(c.Query) + ", live"
			}
			fmt.Fprintf(w, "channel %s (version %d) serves %s; its next index has TIMESTAMP %d or later\n", c.Name, c.Version, what, c.Stamp)
		}
	case "list":
		err = channelList(w, store, *format)
	case "delete":
		if err = store.DB.DeleteChannel(background(), ops[0]); err == nil {
			fmt.Fprintf(w, "deleted channel %s (its snapshot, if any, stays)\n", ops[0])
		}
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail("channel %s: %v", sub, oneLine(err))
	}
	return 0
}

// parseSeconds reads a TTL: whole seconds, or a duration (90s, 1h, 2d).
func parseSeconds(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, errors.New("want 0 or more seconds")
		}
		return n, nil
	}
	d, err := query.ParseAge(s)
	if err != nil {
		return 0, err
	}
	return int64(d / time.Second), nil
}

// channelJSON is a channel as list prints it; the keys are stable.
type channelJSON struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
	Live     bool   `json:"live"`
	Query    string `json:"query"`
	TTL      int64  `json:"ttl"`
	URI      string `json:"uri"`
	Version  int64  `json:"version"`
	Updated  string `json:"updated"`
	Stamp    int64  `json:"timestamp_floor"`
	Served   int64  `json:"timestamp_served"`
}

func channelList(w io.Writer, store *catalog.Store, format string) error {
	list, err := store.DB.Channels(background())
	if err != nil {
		return err
	}
	if format == "json" {
		out := []channelJSON{}
		for _, c := range list {
			out = append(out, channelJSON{Name: c.Name, Snapshot: c.Snapshot, Live: c.Live(), Query: c.Query, TTL: c.TTL, URI: c.URI,
				Version: c.Version, Updated: time.Unix(0, c.UpdatedNs).UTC().Format(time.RFC3339), Stamp: c.Stamp, Served: c.Served})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	cells := [][]string{{"NAME", "SERVES", "QUERY", "TTL", "URI", "VERSION", "UPDATED (UTC)"}}
	for _, c := range list {
		serves := "live"
		if !c.Live() {
			serves = "snapshot " + c.Snapshot
		}
		ttl := "-"
		if c.TTL > 0 {
			ttl = strconv.FormatInt(c.TTL, 10)
		}
		cells = append(cells, []string{c.Name, serves, orDash(c.Query), ttl, orDash(c.URI), strconv.FormatInt(c.Version, 10),
			time.Unix(0, c.UpdatedNs).UTC().Format("2006-01-02 15:04:05")})
	}
	writeColumns(w, cells, map[int]bool{3: true, 5: true})
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// compileChannel is a live channel's filter: its query, with durations
// counted from the moment the channel was set (every host, every restart
// serves the same builds), and the categories or packages its atoms name.
func compileChannel(c *catalog.ChannelInfo) (tree.GroupFilter, []catalog.Scope, error) {
	if c.Query == "" {
		return nil, nil, nil
	}
	sel, err := query.Parse(c.Query, time.Unix(0, c.UpdatedNs))
	if err != nil {
		return nil, nil, err
	}
	if sel.All() {
		return nil, nil, nil
	}
	var mu sync.Mutex // Filter reads Header; one model loads at a time, but be safe
	return func(group []catalog.Instance, header map[string]string) []catalog.Instance {
		mu.Lock()
		defer mu.Unlock()
		sel.Header = header
		return sel.Filter(group)
	}, sel.Scopes(), nil
}
