package catalog

import (
	"context"
	"os"
	"pkgdirfs/internal/pgtest"
	"sync"
	"testing"
)

// rawExec runs SQL on db's backend behind the catalog's rules, to damage
// or trap a catalog on purpose.
func rawExec(t testing.TB, db *DB, query string) {
	t.Helper()
	x, ok := db.b.(interface {
		Exec(ctx context.Context, query string) error
	})
	if !ok {
		t.Skipf("backend %T runs no raw statements", db.b)
	}
	if err := x.Exec(context.Background(), query); err != nil {
		t.Fatal(err)
	}
}

// The backend the tests run on: PKGDIRFS_TEST_CATALOG="" is the state's own
// SQLite, "postgres" a database of a throw-away PostgreSQL per state
// directory (make test runs both).
var (
	testDBsMu sync.Mutex
	testDBs   = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// testLocation is where the tests' state dir keeps its catalog.
func testLocation(t testing.TB, dir string) Location {
	t.Helper()
	if os.Getenv("PKGDIRFS_TEST_CATALOG") != "postgres" {
		return Location{State: dir}
	}
	testDBsMu.Lock()
	defer testDBsMu.Unlock()
	u, ok := testDBs[dir]
	if !ok {
		u = pgtest.Shared(t).NewDB(t)
		testDBs[dir] = u
	}
	return Location{State: dir, Catalog: u}
}

func testStore(t testing.TB, dir string) (*Store, error) {
	return OpenStoreAt(testLocation(t, dir), nil)
}

func testState(t testing.TB, dir string) (*DB, error) { return Open(testLocation(t, dir)) }

// heldBlobs lists the blobs of held copies.
func (db *DB) heldBlobs(ctx context.Context) ([]string, error) {
	return read(ctx, db, func(v *View) ([]string, error) { return v.HeldBlobs() })
}
