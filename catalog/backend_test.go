package catalog_test

import (
	_ "pkgdirfs/catalog/postgres" // the backends the tests run on
	_ "pkgdirfs/catalog/sqlite"
)
