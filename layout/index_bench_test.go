package layout

import (
	"strconv"
	"testing"
)

// BenchmarkIndexEntry: one package's metadata turned into its index entry
// (what an import pays per package), with dependencies of a realistic size.
func BenchmarkIndexEntry(b *testing.B) {
	meta := map[string]string{
		"BUILD_TIME": "1700000000", "EAPI": "8", "SLOT": "0", "KEYWORDS": "~amd64",
		"DEFINED_PHASES": "compile configure install prepare", "LICENSE": "LGPL-2.1+ doc? ( FDL-1.1+ )",
		"DEPEND":  ">=dev-libs/glib-2.80:2[introspection?] dev-libs/libxml2:2= virtual/pkgconfig sys-libs/zlib:= >=dev-libs/openssl-3:0= ssl? ( net-libs/gnutls:= ) test? ( dev-util/cmocka )",
		"RDEPEND": ">=dev-libs/glib-2.80:2[introspection?] dev-libs/libxml2:2= sys-libs/zlib:= || ( app-arch/xz-utils app-arch/zstd )",
		"BDEPEND": "virtual/pkgconfig dev-util/meson >=dev-build/ninja-1.8.2",
		"IUSE":    "doc +introspection test static-libs ssl",
		"USE":     "abi_x86_64 amd64 elibc_glibc introspection kernel_linux ssl",
		"CHOST":   "x86_64-pc-linux-gnu", "REPO": "gentoo",
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		meta["BUILD_TIME"] = strconv.Itoa(i)
		if _, err := IndexEntry(meta); err != nil {
			b.Fatal(err)
		}
	}
}
