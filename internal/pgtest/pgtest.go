// Package pgtest runs a throw-away PostgreSQL server for tests: Debian's
// postgresql binaries, initdb into a temporary directory and pg_ctl on a
// unix socket there, as the unprivileged user postgres (or nobody), no TCP.
// Tests get a fresh, empty database each (NewDB).
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running throw-away PostgreSQL.
type Server struct {
	dir, bin, socket string
	runAs            []string // setpriv prefix, empty when not root
	user             string
	n                atomic.Int64
}

var (
	once    sync.Once
	shared  *Server
	initErr error
)

// Shared starts the package's server on first use (a test binary's tests
// share it; each gets its own database). Stop it from TestMain with Stop.
func Shared(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, initErr = Start() })
	if initErr != nil {
		t.Fatalf("starting a PostgreSQL for the test: %v", initErr)
	}
	return shared
}

// StopShared stops the shared server, if one was started.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// binDir finds the newest Debian PostgreSQL's binaries.
func binDir() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("no PostgreSQL server binaries (install Debian's postgresql package: make test-deps)")
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1]), nil
}

// Start initialises and starts a server in a new temporary directory.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pkgdirfs-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, socket: dir, user: "postgres"}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				return nil, fmt.Errorf("no unprivileged user to run PostgreSQL as: %v", err)
			}
		}
		s.user = u.Username
		s.runAs = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups", "--"}
		if out, err := exec.Command("chown", "-R", u.Uid+":"+u.Gid, dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown %s: %v: %s", dir, err, out)
		}
		os.Chmod(dir, 0o755) // the tests, as root, reach the socket
	} else if u, err := user.Current(); err == nil {
		s.user = u.Username
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", s.user, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := s.Resume(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%v\n%s", err, log)
	}
	return s, nil
}

func (s *Server) run(prog string, args ...string) ([]byte, error) {
	argv := append(append([]string{}, s.runAs...), append([]string{filepath.Join(s.bin, prog)}, args...)...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// URL is the URL of database db.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.socket}, "user": {s.user}, "sslmode": {"disable"}}
	return "postgres:///" + db + "?" + q.Encode()
}

// NewDB creates an empty database for one test and returns its URL; it is
// dropped when the test ends.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		t.Fatalf("CREATE DATABASE: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, s.URL("postgres")); err == nil {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	return s.URL(name)
}

// Exec runs SQL on database db (the URL's) as the superuser.
func (s *Server) Exec(t testing.TB, dbURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
}

// Pause stops the server (fast shutdown), as an outage; Resume starts it
// again on the same data.
func (s *Server) Pause() error {
	out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Resume starts the server (again, after Pause) on its data: no TCP, a
// unix socket in its directory, and no fsync (the tests' data is thrown
// away).
func (s *Server) Resume() error {
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.dir)
	out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	s.Pause()
	os.RemoveAll(s.dir)
}
