package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"pkgdirfs/blobs"
)

// Sessions of a shared catalog (issue: several hosts). Every process that
// writes it (a mount, an import) has a row in sessions, refreshed by a
// heartbeat, and stages in BLOBS/.staging/ID. A process is dead when its
// row's heartbeat is older than the catalog's session TTL by the catalog's
// clock: then whoever notices collects what it left (its staging files,
// the blobs it placed for commits that never happened) in a write
// transaction, so no commit of any host overlaps the collection.

// DefaultSessionTTL is how long a session lives without a heartbeat, unless
// the catalog's session_ttl_s setting says otherwise. Every host judges by
// the catalog's one setting: a host must never find another dead by a TTL
// of its own.
const DefaultSessionTTL = 60 * time.Second

// SessionTTLSetting is the catalog setting (seconds) for the TTL.
const SessionTTLSetting = "session_ttl_s"

// placingPrefix names the marker a session writes in its staging directory
// before it places a blob for a commit, and removes once the commit is
// decided: a dead session's markers name the blobs it may have left
// without a row.
const placingPrefix = "placing-"

// session is this process's session of a shared catalog.
type session struct {
	s        *Store
	mu       sync.Mutex
	me       Session
	ttl      time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once // end
	stopOnce sync.Once // the heartbeat
	// steadySince: since when this process's heartbeats have all
	// succeeded (its start, or the end of an outage). It judges others
	// only after a whole TTL of it: after an outage of the server longer
	// than the TTL every session looks expired until its host beats
	// again, which takes at most a sixth of the TTL.
	steadySince time.Time
	// beatMu: one beat at a time (the heartbeat's, or a test's); it
	// guards ttl and warn.
	beatMu sync.Mutex
	warn   bool // a heartbeat failed: say so once, and when it works again
}

// startSession registers this process in a shared catalog whose backend
// keeps sessions, before its staging directory exists (a directory
// without a live session is a dead writer's), and starts the heartbeat,
// which collects the dead. A backend without sessions leaves staging to the
// directories' locks.
func (s *Store) startSession(ctx context.Context) error {
	supported := false
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		_, supported = tx.WriteTx.(SessionWrites)
		return nil
	})
	if err != nil || !supported {
		return err
	}
	host, _ := os.Hostname()
	name := blobs.NewStagingName()
	ss := &session{s: s, me: Session{ID: host + "/" + name, Host: host, PID: int64(os.Getpid())},
		stop: make(chan struct{}), done: make(chan struct{}), steadySince: time.Now()}
	if err := ss.begin(ctx); err != nil {
		return err
	}
	s.staging.Use(name)
	s.session = ss
	// Directories without a session are a dead writer's whatever the
	// clock says: those go at once; expired sessions wait (collect).
	if err := ss.collect(ctx, false); err != nil {
		s.log.Warn("collecting what dead writers left", "err", err)
	}
	go ss.heartbeat()
	return nil
}

// begin makes the session's row and reads the TTL.
func (ss *session) begin(ctx context.Context) error {
	return ss.s.DB.Tx(ctx, func(tx *Tx) error {
		if err := ss.readTTL(tx); err != nil {
			return err
		}
		_, err := tx.WriteTx.(SessionWrites).Beat(&ss.me, true)
		return err
	})
}

// readTTL takes up the catalog's TTL (at every beat: an operator may
// change it while hosts run).
func (ss *session) readTTL(tx *Tx) (err error) {
	ss.ttl, err = sessionTTL(tx)
	return err
}

// sessionTTL is the catalog's session TTL: its setting, else the default.
func sessionTTL(s Snapshot) (time.Duration, error) {
	ttl, ok, err := s.Setting(SessionTTLSetting)
	if err != nil || !ok || ttl <= 0 {
		return DefaultSessionTTL, err
	}
	return time.Duration(ttl) * time.Second, nil
}

// expiredAt tells whether x's heartbeat is older than ttl at nowNs (the
// catalog's clock).
func (x *Session) expiredAt(nowNs int64, ttl time.Duration) bool {
	return nowNs-x.HeartbeatNs > int64(ttl)
}

// heartbeat refreshes the row several times per TTL, and on each beat
// looks for dead sessions to collect.
func (ss *session) heartbeat() {
	defer close(ss.done)
	ss.beatMu.Lock()
	ttl := ss.ttl
	ss.beatMu.Unlock()
	t := time.NewTicker(max(ttl/6, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ss.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/2)
		ss.beat(ctx)
		cancel()
		ss.beatMu.Lock()
		if ss.ttl != ttl {
			ttl = ss.ttl
			t.Reset(max(ttl/6, 100*time.Millisecond))
		}
		ss.beatMu.Unlock()
	}
}

func (ss *session) beat(ctx context.Context) {
	ss.beatMu.Lock()
	defer ss.beatMu.Unlock()
	log := ss.s.log
	alive := false
	err := ss.s.DB.Tx(ctx, func(tx *Tx) error {
		if err := ss.readTTL(tx); err != nil {
			return err
		}
		var err error
		alive, err = tx.WriteTx.(SessionWrites).Beat(&ss.me, false)
		return err
	})
	if err != nil {
		if !ss.warn {
			log.Warn("session heartbeat failed: other hosts take this one for dead if it fails for the session TTL", "session", ss.me.ID, "ttl", ss.ttl, "err", err)
		}
		ss.warn = true
		ss.steadySince = time.Now()
		return
	}
	if ss.warn {
		log.Info("session heartbeat works again", "session", ss.me.ID)
		ss.warn = false
	}
	if !alive {
		// Another host found this one dead (no heartbeat for the TTL) and
		// collected its staging: writes in flight fail at their commit,
		// and the bytes are in that host's quarantine. Go on as a new
		// session in a new staging directory.
		old := ss.me.ID
		name := blobs.NewStagingName()
		ss.mu.Lock()
		ss.me.ID = ss.me.Host + "/" + name
		ss.mu.Unlock()
		if err := ss.begin(ctx); err != nil {
			log.Error("this host's session expired and was collected by another host; starting a new one failed", "session", old, "err", err)
			return
		}
		ss.s.staging.Use(name)
		log.Error("this host's session expired (no heartbeat for the session TTL) and another host collected its staging: uploads in flight fail; continuing as a new session",
			"session", old, "new", ss.me.ID, "ttl", ss.ttl)
	}
	if err := ss.collect(ctx, time.Since(ss.steadySince) >= ss.ttl); err != nil {
		log.Warn("collecting what dead hosts left", "err", err)
	}
}

// end stops the heartbeat and deletes the row, so that nobody waits for
// the TTL to collect a clean exit (which leaves nothing anyway).
func (ss *session) end() { ss.once.Do(ss.endOnce) }

// stopBeating stops the heartbeat (the row stays until it expires).
func (ss *session) stopBeating() {
	ss.stopOnce.Do(func() {
		close(ss.stop)
		<-ss.done
	})
}

func (ss *session) endOnce() {
	ss.stopBeating()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := ss.s.DB.Tx(ctx, func(tx *Tx) error {
		_, err := tx.WriteTx.(SessionWrites).EndSession(ss.me.ID)
		return err
	})
	if err != nil {
		ss.s.log.Warn("ending the session (other hosts collect it after the session TTL)", "session", ss.me.ID, "err", err)
	}
}

func (ss *session) id() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.me.ID
}

// sessionDirs lists the staging directories of sessions, by session id:
// with shared blobs BLOBS/.staging/HOST/NAME of every host; with the
// state's own blobs only this host's, STATE/staging/NAME.
func (s *Store) sessionDirs() (map[string]string, error) {
	out := map[string]string{}
	base := s.Loc.StagingDir()
	host, _ := os.Hostname()
	hosts := map[string]string{host: base}
	if s.Loc.Blobs != "" {
		root := filepath.Dir(base)
		ents, err := os.ReadDir(root)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() {
				hosts[e.Name()] = filepath.Join(root, e.Name())
			}
		}
	}
	for h, dir := range hosts {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() {
				out[h+"/"+e.Name()] = filepath.Join(dir, e.Name())
			}
		}
	}
	return out, nil
}

// sessionDir is where session id stages ("" if not on this host's view).
func (s *Store) sessionDir(id string) string {
	host, name, ok := strings.Cut(id, "/")
	if !ok || name == "" || strings.Contains(name, "/") || name == "." || name == ".." || host == "." || host == ".." {
		return ""
	}
	base := s.Loc.StagingDir()
	if s.Loc.Blobs != "" {
		return filepath.Join(filepath.Dir(base), host, name)
	}
	if me, _ := os.Hostname(); host == me {
		return filepath.Join(base, name)
	}
	return ""
}

// collect finds the dead (with expired, sessions expired by the catalog's
// clock; and staging directories no session owns nor an older pkgdirfs
// holds locked) and collects each in a write transaction of its own.
func (ss *session) collect(ctx context.Context, expired bool) error {
	var list []Session
	var now int64
	err := ss.s.DB.View(ctx, func(v *View) error {
		var err error
		list, now, err = v.Snapshot.(Sessions).Sessions()
		return err
	})
	if err != nil {
		return err
	}
	live := map[string]bool{}
	var dead []string
	for _, x := range list {
		if expired && x.expiredAt(now, ss.ttl) {
			dead = append(dead, x.ID)
		} else {
			live[x.ID] = true
		}
	}
	dirs, err := ss.s.sessionDirs()
	if err != nil {
		return err
	}
	me := ss.id()
	for id, dir := range dirs {
		// No row: a session that ended and left bytes, or a writer of a
		// pkgdirfs without sessions, alive while it holds its directory's
		// lock.
		if id != me && !live[id] && !slices.Contains(dead, id) && !lockedByOther(dir) {
			dead = append(dead, id)
		}
	}
	var errs []error
	for _, id := range dead {
		if err := ss.collectOne(ctx, id, expired); err != nil {
			errs = append(errs, fmt.Errorf("session %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// lockedByOther tells whether a process holds the staging directory's
// owner lock (an older pkgdirfs's writer).
func lockedByOther(dir string) bool {
	f, err := os.Open(filepath.Join(dir, blobs.OwnerLock))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// collectOne collects one dead session under the write lock: its row is
// checked again (a heartbeat may have come meanwhile) and deleted; the
// blobs its markers name go unless a row names them or other bytes took
// their name since; its staging files are kept as a crash's are
// (package writes in this host's quarantine).
func (ss *session) collectOne(ctx context.Context, id string, expired bool) error {
	s := ss.s
	dir := s.sessionDir(id)
	var orphans, kept int
	err := s.DB.Tx(ctx, func(tx *Tx) error {
		orphans, kept = 0, 0
		list, now, err := tx.WriteTx.(SessionWrites).Sessions()
		if err != nil {
			return err
		}
		for _, x := range list {
			if x.ID == id && (!expired || !x.expiredAt(now, ss.ttl)) {
				return nil // it beat meanwhile, or made its row: alive
			}
		}
		if _, err := tx.WriteTx.(SessionWrites).EndSession(id); err != nil || dir == "" {
			return err
		}
		files, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range files {
			p := filepath.Join(dir, f.Name())
			switch {
			case f.Name() == blobs.OwnerLock:
			case strings.HasPrefix(f.Name(), placingPrefix):
				gone, err := s.collectPlaced(tx, p)
				if err != nil {
					return err
				}
				if gone {
					orphans++
				}
				os.Remove(p)
			default:
				if err := s.recoverStaged(p); err != nil {
					return err
				}
				kept++
			}
		}
		os.Remove(filepath.Join(dir, blobs.OwnerLock))
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// The host's directory stays: its live writers make theirs in it.
		return nil
	})
	if err == nil {
		s.log.Info("collected a dead session", "session", id, "orphan_blobs", orphans, "staging_files", kept)
	}
	return err
}

// markPlacing writes the marker of a blob this session is about to place
// from src; done removes it once the commit is decided. Without a session
// (a catalog of one host) there is nothing to mark.
func (s *Store) markPlacing(src, blob string) (done func()) {
	if s.session == nil {
		return func() {}
	}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return func() {} // the placement fails the same way
	}
	p := filepath.Join(s.staging.Dir(), placingPrefix+filepath.Base(blob))
	if err := os.WriteFile(p, []byte(blob+"\n"+strconv.FormatUint(st.Ino, 10)+"\n"), 0o644); err != nil {
		// An orphan of a crash then stays for verify to report; nothing
		// is lost.
		s.log.Warn("marking a blob being placed", "blob", blob, "err", err)
		return func() {}
	}
	return func() { os.Remove(p) }
}

// collectPlaced removes the blob a dead session's marker names if no row
// names it and it is still the inode the session placed (other bytes may
// have taken the name since: a live host's placement replaces a blob).
func (s *Store) collectPlaced(tx *Tx, marker string) (bool, error) {
	b, err := os.ReadFile(marker)
	if err != nil {
		return false, nil
	}
	blob, inoS, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	ino, err := strconv.ParseUint(inoS, 10, 64)
	if err != nil || blob == "" || strings.Contains(blob, "..") {
		return false, nil // torn by the crash: verify reports the orphan
	}
	var st unix.Stat_t
	if err := unix.Stat(s.blobs.Path(blob), &st); err != nil || st.Ino != ino {
		return false, nil
	}
	used, err := tx.BlobInUse(blob)
	if err != nil || used {
		return false, err
	}
	if err := s.blobs.Remove(blob); err != nil {
		return false, err
	}
	return true, nil
}

// SessionStatus is what status shows of a shared catalog's writers.
type SessionStatus struct {
	Live, Expired []Session
	TTL           time.Duration
}

// SessionStatus reads the sessions of a catalog that keeps them; nil for
// one that doesn't (a state's own catalog: one host, one writer).
func (db *DB) SessionStatus(ctx context.Context) (*SessionStatus, error) {
	var out *SessionStatus
	err := db.View(ctx, func(v *View) error {
		ss, ok := v.Snapshot.(Sessions)
		if !ok {
			return nil
		}
		list, now, err := ss.Sessions()
		if err != nil {
			return err
		}
		ttl, err := sessionTTL(v)
		if err != nil {
			return err
		}
		out = &SessionStatus{TTL: ttl}
		for _, x := range list {
			if x.expiredAt(now, ttl) {
				out.Expired = append(out.Expired, x)
			} else {
				out.Live = append(out.Live, x)
			}
		}
		return nil
	})
	return out, err
}
