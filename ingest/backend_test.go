package ingest

// The catalog backend the tests open states with.
import _ "pkgdirfs/catalog/sqlite"
