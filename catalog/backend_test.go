package catalog_test

import (
	_ "pkgdirfs/catalog/sqlite" // the backend the tests run on
)
