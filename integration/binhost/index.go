// Package binhost is a binhost client written from Portage's client rules
// (portage-facts.md §4.1, §4.9, §7): it fetches a remote Packages index the
// way binarytree._populate_remote_repo does, parses it with
// PackageIndex._readpkgindex's quirks, downloads and verifies packages as
// BinpkgFetcher/BinpkgVerifier do, and picks the instance the resolver would
// install. It deliberately shares no code with pkgdirfs (layout, catalog):
// the integration tests use it to judge the server from the outside.
package binhost

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// allowedPkgKeys are the keys Portage keeps in a package block, after read
// translation (binarytree._pkgindex_allowed_pkg_keys); all others are dropped.
var allowedPkgKeys = map[string]bool{
	"CPV": true, "PATH": true, "SIZE": true, "MD5": true, "SHA1": true,
	"BDEPEND": true, "BUILD_ID": true, "BUILD_TIME": true, "CHOST": true,
	"DEFINED_PHASES": true, "DEPEND": true, "EAPI": true, "IDEPEND": true,
	"IUSE": true, "KEYWORDS": true, "LICENSE": true, "PDEPEND": true,
	"PROPERTIES": true, "PROVIDES": true, "RDEPEND": true, "REQUIRES": true,
	"RESTRICT": true, "SLOT": true, "USE": true, "DESCRIPTION": true,
	"_mtime_": true, "repository": true, "BASE_URI": true, "PKGINDEX_URI": true,
	"FETCHCOMMAND": true, "RESUMECOMMAND": true,
}

// readTranslation maps the on-disk key to Portage's internal name (header and packages).
var readTranslation = map[string]string{
	"DESC":  "DESCRIPTION",
	"MTIME": "_mtime_",
	"REPO":  "repository",
}

// defaultPkgData is re-applied with setdefault to every package
// (binarytree._pkgindex_default_pkg_data).
var defaultPkgData = map[string]string{
	"BDEPEND": "", "BUILD_ID": "", "BUILD_TIME": "", "DEFINED_PHASES": "",
	"DEPEND": "", "EAPI": "0", "IDEPEND": "", "IUSE": "", "KEYWORDS": "",
	"LICENSE": "", "PATH": "", "PDEPEND": "", "PROPERTIES": "", "PROVIDES": "",
	"RDEPEND": "", "REQUIRES": "", "RESTRICT": "", "SLOT": "0", "USE": "",
}

// inheritedKeys are copied from the header into packages lacking them when
// the header value is non-empty (binarytree._pkgindex_inherited_keys).
var inheritedKeys = []string{"CHOST", "repository"}

// Package is one package block as Portage holds it after reading: internal
// key names (DESCRIPTION, _mtime_, repository), only allowed keys, defaults
// and inherited keys applied.
type Package struct {
	Meta map[string]string
}

// Get returns the value of an internal key ("" when absent).
func (p *Package) Get(key string) string { return p.Meta[key] }

// Has reports whether the block (after defaults) holds key.
func (p *Package) Has(key string) bool { _, ok := p.Meta[key]; return ok }

// CPV is the package's CPV.
func (p *Package) CPV() string { return p.Meta["CPV"] }

// Path is the PATH value (relative to the base URI).
func (p *Package) Path() string { return p.Meta["PATH"] }

// BuildID is BUILD_ID as Portage's _pkg_str._long parses it: empty → 0
// (the default), non-integer → -1.
func (p *Package) BuildID() int64 { return long(p.Meta["BUILD_ID"], 0) }

// BuildTime is BUILD_TIME parsed like BuildID (missing counts as 0).
func (p *Package) BuildTime() int64 { return long(p.Meta["BUILD_TIME"], 0) }

// Size is SIZE, or -1 when absent or not an integer.
func (p *Package) Size() int64 { return long(p.Meta["SIZE"], -1) }

// Mtime is MTIME (_mtime_), or 0.
func (p *Package) Mtime() int64 { return long(p.Meta["_mtime_"], 0) }

// InstanceKey is Portage's instance identity (dbapi/virtual.py
// _instance_key_multi_instance): CPV, BUILD_ID, SIZE, BUILD_TIME, MTIME.
type InstanceKey struct {
	CPV                             string
	BuildID, Size, BuildTime, Mtime int64
}

// Key returns the package's instance key.
func (p *Package) Key() InstanceKey {
	return InstanceKey{p.CPV(), p.BuildID(), p.Size(), p.BuildTime(), p.Mtime()}
}

// String names the instance in error messages.
func (p *Package) String() string {
	return fmt.Sprintf("%s (BUILD_ID %q, PATH %q)", p.CPV(), p.Meta["BUILD_ID"], p.Meta["PATH"])
}

func long(s string, empty int64) int64 {
	if s == "" {
		return empty
	}
	n, err := pyInt(s)
	if err != nil {
		return -1
	}
	return n
}

// Index is a parsed remote index.
type Index struct {
	Header   map[string]string // all header keys, read-translated
	Packages []*Package        // package blocks with a CPV, in file order

	// Raw is the index text as received (after gzip decompression).
	Raw []byte
	// URL is the index URL that was read (…/Packages.gz or …/Packages).
	URL string
	// BaseURL is the binhost base URL, trailing "/" stripped.
	BaseURL string
	// RemoteTimestamp is what Portage compares with its cache: the
	// response's Last-Modified when present, else the header TIMESTAMP.
	RemoteTimestamp int64
	// LastModified and ETag are the response headers ("" when absent).
	LastModified, ETag string
}

// Timestamp is the header TIMESTAMP (what a cached copy keeps), or 0.
func (ix *Index) Timestamp() int64 { return long(ix.Header["TIMESTAMP"], 0) }

// ParseIndex reads a Packages text with Portage's reader rules
// (PackageIndex.readHeader + readBody):
//   - a block is read line by line until the first empty line; only "\n" is
//     stripped, so a "\r" line is not empty;
//   - each line is split at the first ':'; lines without ':' are ignored;
//     the value is the text after the colon with its first character dropped;
//   - the first block is the header (every key kept, read-translated);
//   - then blocks are read until one yields no key at all (two consecutive
//     blank lines, EOF, or a block of only dropped keys): the rest is ignored;
//   - package blocks keep only the allowed keys; blocks without a CPV are
//     skipped; defaults are set where missing; CHOST and repository are
//     inherited from a non-empty header value.
//
// It does not judge VERSION or TIMESTAMP: Check does.
func ParseIndex(data []byte) *Index {
	text := strings.ToValidUTF8(string(data), "\uFFFD") // errors="replace"
	r := &lineReader{text: text}
	ix := &Index{Header: r.block(nil), Raw: data}
	for {
		d := r.block(allowedPkgKeys)
		if len(d) == 0 {
			break
		}
		if d["CPV"] == "" {
			continue
		}
		for k, v := range defaultPkgData {
			if _, ok := d[k]; !ok {
				d[k] = v
			}
		}
		for _, k := range inheritedKeys {
			if v := ix.Header[k]; v != "" {
				if _, ok := d[k]; !ok {
					d[k] = v
				}
			}
		}
		ix.Packages = append(ix.Packages, &Package{Meta: d})
	}
	return ix
}

// CheckVersion applies binarytree._pkgindex_version_supported: VERSION must
// be present, an integer, and <= 0.
func (ix *Index) CheckVersion() error {
	v, ok := ix.Header["VERSION"]
	if !ok {
		return fmt.Errorf("binhost index %s: no VERSION in the header (Portage: index version not supported)", ix.URL)
	}
	n, err := pyInt(v)
	if err != nil || n > 0 {
		return fmt.Errorf("binhost index %s: VERSION %q not supported (must be an integer <= 0)", ix.URL, v)
	}
	return nil
}

// pyInt parses like Python's int(str): surrounding whitespace (a "\r" left by
// CRLF line ends included) is allowed.
func pyInt(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

type lineReader struct {
	text string
	pos  int
}

// block is PackageIndex._readpkgindex.
func (r *lineReader) block(allowed map[string]bool) map[string]string {
	d := map[string]string{}
	for r.pos < len(r.text) {
		var line string
		if i := strings.IndexByte(r.text[r.pos:], '\n'); i >= 0 {
			line = r.text[r.pos : r.pos+i]
			r.pos += i + 1
		} else {
			line = r.text[r.pos:]
			r.pos = len(r.text)
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if v != "" {
			// Python's v[1:] drops one character (a code point, not a byte).
			_, size := utf8.DecodeRuneInString(v)
			v = v[size:]
		}
		if t, ok := readTranslation[k]; ok {
			k = t
		}
		if allowed != nil && !allowed[k] {
			continue
		}
		d[k] = v
	}
	return d
}

// SameContent compares two parsed indexes (header and packages, in order)
// and describes the first difference, or returns "".
func SameContent(a, b *Index) string {
	if d := diffMap("header", a.Header, b.Header); d != "" {
		return d
	}
	if len(a.Packages) != len(b.Packages) {
		return fmt.Sprintf("%d packages vs %d packages", len(a.Packages), len(b.Packages))
	}
	for i := range a.Packages {
		if d := diffMap(fmt.Sprintf("package #%d (%s)", i, a.Packages[i].CPV()), a.Packages[i].Meta, b.Packages[i].Meta); d != "" {
			return d
		}
	}
	return ""
}

func diffMap(what string, a, b map[string]string) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := a[k]
		vb, okb := b[k]
		if oka != okb || va != vb {
			return fmt.Sprintf("%s key %s: %q (present %v) vs %q (present %v)", what, k, va, oka, vb, okb)
		}
	}
	return ""
}
