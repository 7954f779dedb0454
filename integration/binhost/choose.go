package binhost

import "sort"

// Newer reports whether a is preferred over b among instances of one CPV:
// higher BUILD_TIME (missing counts as 0), then higher BUILD_ID
// (dbapi._cmp_cpv; the resolver iterates matches in descending order).
func Newer(a, b *Package) bool {
	if at, bt := a.BuildTime(), b.BuildTime(); at != bt {
		return at > bt
	}
	return a.BuildID() > b.BuildID()
}

// Choose returns, per CPV, the instance the client would install: all
// instances of one CPV share the version, so the highest BUILD_TIME wins,
// ties broken by BUILD_ID; on a full tie the first in the index stays.
func Choose(ix *Index) map[string]*Package {
	best := map[string]*Package{}
	for _, p := range ix.Packages {
		if cur, ok := best[p.CPV()]; !ok || Newer(p, cur) {
			best[p.CPV()] = p
		}
	}
	return best
}

// CPVs returns the CPVs of the index, sorted, each once.
func CPVs(ix *Index) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ix.Packages {
		if !seen[p.CPV()] {
			seen[p.CPV()] = true
			out = append(out, p.CPV())
		}
	}
	sort.Strings(out)
	return out
}
