package catalog

import (
	"context"
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
