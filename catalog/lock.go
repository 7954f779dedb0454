package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// StateLock is a daemon's claim on a state directory: one mount per state,
// and the staging files in it are that daemon's. The kernel releases it
// when the daemon dies, however it dies.
type StateLock struct{ f *os.File }

// ErrStateLocked says another live process holds the state.
var ErrStateLocked = errors.New("state is in use")

func lockPath(dir string) string { return filepath.Join(dir, "lock") }

// LockState takes the state's lock for the calling process and records
// owner (e.g. "pid 123, mounted at /var/cache/binpkgs") in it. If another
// process holds it, the error wraps ErrStateLocked and says who.
func LockState(dir, owner string) (*StateLock, error) {
	f, err := os.OpenFile(lockPath(dir), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrStateLocked, stateHolder(dir))
		}
		return nil, fmt.Errorf("state lock %s: %w", lockPath(dir), err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(owner+"\n"), 0)
	}
	return &StateLock{f: f}, nil
}

// stateHolder is what the holder of the state's lock wrote about itself.
func stateHolder(dir string) string {
	b, err := os.ReadFile(lockPath(dir))
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return "held by " + s
	}
	return "held by another process"
}

// Release gives the state up.
func (l *StateLock) Release() {
	if l != nil && l.f != nil {
		l.f.Truncate(0)
		l.f.Close() // closing the last descriptor drops the flock
		l.f = nil
	}
}
