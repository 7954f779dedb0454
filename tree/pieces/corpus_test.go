package pieces

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

var (
	corpusCats = []string{"dev-libs", "sys-apps", "app-misc", "dev-python", "net-misc", "x11-libs", "media-libs", "sys-libs", "dev-util", "kde-frameworks"}
	corpusDeps = []string{">=dev-libs/glib-2.80:2", "dev-libs/libxml2:2=", "virtual/pkgconfig", "sys-libs/zlib:=", "dev-libs/openssl:0/3=",
		"dev-lang/python:3.12", "dev-qt/qtbase:6", "media-libs/libpng:0=", "x11-libs/libX11", "sys-apps/systemd:0/2", "dev-libs/icu:=",
		"app-arch/zstd:=", "dev-libs/expat", "net-misc/curl", ">=sys-devel/gcc-13", "dev-build/meson", "dev-libs/libffi:=",
		"python_targets_python3_12? ( dev-python/setuptools[python_targets_python3_12(-)] )"}
	corpusUses = []string{"abi_x86_64", "amd64", "elibc_glibc", "introspection", "kernel_linux", "ssl", "zstd", "python_targets_python3_12", "X", "wayland", "systemd", "nls"}
)

// entry builds the i-th entry of a realistic corpus: a ~700-byte block as
// Portage writes it (sorted "KEY: value" lines, random digests) and the key
// the daemon would use (cpv NUL zero-padded build id). Deterministic in
// (seed, i, gen) without state, so 1,000,000 entries need not be held at once;
// gen varies the contents (a rebuild) but not the key.
func entry(seed uint64, i int, gen uint64) (string, []byte) {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	hex := func(n int) string {
		const d = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = d[r.IntN(16)]
		}
		return string(b)
	}
	cat := corpusCats[r.IntN(len(corpusCats))]
	pn := fmt.Sprintf("pkg%s%d", hex(3), i)
	ver := fmt.Sprintf("%d.%d.%d", r.IntN(10), r.IntN(30), r.IntN(100))
	cpv := cat + "/" + pn + "-" + ver
	bid := 1 + r.IntN(3)
	key := fmt.Sprintf("%s\x00%010d", cpv, bid)
	r = rand.New(rand.NewPCG(seed^gen, uint64(i)<<1|1))
	pick := func(list []string, k int) string {
		return strings.Join(slices.Clone(list[:k]), " ")
	}
	t := 1719000000 + r.IntN(10000000)
	var b strings.Builder
	b.Grow(800)
	fmt.Fprintf(&b, "BUILD_ID: %d\nBUILD_TIME: %d\nCPV: %s\n", bid, t, cpv)
	b.WriteString("DEFINED_PHASES: compile configure install prepare\n")
	fmt.Fprintf(&b, "DEPEND: %s\nEAPI: 8\nIUSE: doc +introspection test\nKEYWORDS: ~amd64\nLICENSE: LGPL-2.1+\n", pick(shuffled(r, corpusDeps), 2+r.IntN(5)))
	fmt.Fprintf(&b, "MD5: %s\nPATH: %s/%s/%s-%s-%d.xpak\n", hex(32), cat, pn, pn, ver, bid)
	fmt.Fprintf(&b, "PROVIDES: x86_64: lib%s.so.1\nRDEPEND: %s\n", pn, pick(shuffled(r, corpusDeps), 2+r.IntN(4)))
	b.WriteString("REQUIRES: x86_64: libc.so.6 libglib-2.0.so.0 libxml2.so.2\n")
	fmt.Fprintf(&b, "SHA1: %s\nSIZE: %d\nSLOT: 0\nUSE: %s\nMTIME: %d\nREPO: gentoo\n\n", hex(40), 1000+r.IntN(10000000), pick(shuffled(r, corpusUses), 3+r.IntN(6)), t)
	return key, []byte(b.String())
}

func shuffled(r *rand.Rand, list []string) []string {
	l := slices.Clone(list)
	r.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	return l
}

// corpusOrder returns the keys of entries 0..n-1 and the entry numbers in key
// order (the order a catalog scan yields them).
func corpusOrder(seed uint64, n int) (keys []string, order []int) {
	keys = make([]string, n)
	order = make([]int, n)
	for i := range n {
		keys[i], _ = entry(seed, i, 0)
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	return keys, order
}

// corpusSeq yields the entries in key order, generating each block on demand.
func corpusSeq(seed uint64, order []int) func(func(string, []byte) bool) {
	return func(yield func(string, []byte) bool) {
		for _, i := range order {
			if !yield(entry(seed, i, 0)) {
				return
			}
		}
	}
}
