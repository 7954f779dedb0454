package integration

import (
	_ "pkgdirfs/catalog/postgres" // the benchmark fills shared catalogs too
	"pkgdirfs/catalog/sqlite"     // the backend the tests open states with
)

// catalogFiles are the files of a state's catalog, the database first.
func catalogFiles(state string) []string { return sqlite.Files(state) }

// catalogFile is a state's catalog database.
func catalogFile(state string) string { return sqlite.Files(state)[0] }
