// Package tree is the model behind a mount: which names the PKGDIR shows
// (every layout), what each names, and the rendered index. It needs no FUSE:
// fs/ adapts it, and `pkgdirfs index` uses it alone.
//
// The model is loaded once from the catalog and then kept current by
// applying the change log: a change costs O(the CPVs it touched).
package tree

import (
	"fmt"
	"strings"
)

// Layouts selects which of the three PKGDIR layouts the mount shows.
type Layouts struct {
	Multi, Flat, Legacy bool
}

// AllLayouts shows every layout at once (the default).
var AllLayouts = Layouts{Multi: true, Flat: true, Legacy: true}

// ParseLayouts reads the --layouts flag: "all" or a comma list of multi, flat, legacy.
func ParseLayouts(s string) (Layouts, error) {
	var l Layouts
	if strings.TrimSpace(s) == "" || s == "all" {
		return AllLayouts, nil
	}
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "multi":
			l.Multi = true
		case "flat":
			l.Flat = true
		case "legacy":
			l.Legacy = true
		case "all":
			l = AllLayouts
		default:
			return l, fmt.Errorf("unknown layout %q (want all, or a comma list of multi, flat, legacy)", part)
		}
	}
	return l, nil
}

func (l Layouts) String() string {
	if l == AllLayouts {
		return "all"
	}
	var p []string
	if l.Multi {
		p = append(p, "multi")
	}
	if l.Flat {
		p = append(p, "flat")
	}
	if l.Legacy {
		p = append(p, "legacy")
	}
	return strings.Join(p, ",")
}
