package main

// The catalog backends this binary serves states with.
import (
	_ "pkgdirfs/catalog/postgres"
	_ "pkgdirfs/catalog/sqlite"
)
