package catalog

// Scope narrows a query to a category, or to one package of it (PN); an
// empty Category is the whole catalog.
type Scope struct{ Category, PN string }
