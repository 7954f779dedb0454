package layout

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// IndexMetadataKeys are the package metadata keys Portage reads for the
// index (bindbapi._aux_cache_keys without MD5, SIZE and _mtime_, which
// come from the file itself). Internal names: "repository" is written REPO.
var IndexMetadataKeys = []string{
	"BDEPEND", "BUILD_ID", "BUILD_TIME", "CHOST", "DEFINED_PHASES", "DEPEND",
	"EAPI", "IDEPEND", "IUSE", "KEYWORDS", "LICENSE", "PDEPEND", "PROPERTIES",
	"PROVIDES", "RDEPEND", "repository", "REQUIRES", "RESTRICT", "SLOT", "USE",
}

// useEvaluatedKeys are reduced against the package's USE before indexing;
// the *DEPEND ones hold atoms.
var useEvaluatedKeys = map[string]bool{
	"BDEPEND": true, "DEPEND": true, "IDEPEND": true, "LICENSE": true,
	"PDEPEND": true, "PROPERTIES": true, "RDEPEND": true, "RESTRICT": true,
}

// Translation between internal and written key names.
var (
	writeKeyNames = map[string]string{"DESCRIPTION": "DESC", "_mtime_": "MTIME", "repository": "REPO"}
	readKeyNames  = map[string]string{"DESC": "DESCRIPTION", "MTIME": "_mtime_", "REPO": "repository"}
)

// defaultPkgData are omitted when a package has exactly this value and
// re-supplied on read.
var defaultPkgData = map[string]string{
	"BDEPEND": "", "BUILD_ID": "", "BUILD_TIME": "", "DEFINED_PHASES": "",
	"DEPEND": "", "EAPI": "0", "IDEPEND": "", "IUSE": "", "KEYWORDS": "",
	"LICENSE": "", "PATH": "", "PDEPEND": "", "PROPERTIES": "", "PROVIDES": "",
	"RDEPEND": "", "REQUIRES": "", "RESTRICT": "", "SLOT": "0", "USE": "",
}

// inheritedKeys are omitted from a package when equal to a non-empty header
// value and copied from the header on read.
var inheritedKeys = []string{"CHOST", "repository"}

// allowedPkgKeys are the per-package keys Portage keeps on read.
var allowedPkgKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range []string{
		"CPV", "PATH", "SIZE", "MD5", "SHA1", "_mtime_", "MTIME",
		"DESCRIPTION", "DESC", "REPO", "BASE_URI", "PKGINDEX_URI",
		"FETCHCOMMAND", "RESUMECOMMAND",
	} {
		m[k] = true
	}
	for _, k := range IndexMetadataKeys {
		m[k] = true
	}
	for k := range defaultPkgData {
		m[k] = true
	}
	return m
}()

// normalizeSpace is Python's " ".join(v.split()).
func normalizeSpace(v string) string {
	return strings.Join(pySplit(v), " ")
}

// BuildFlagKeys are the compiler flags a build was made with, from its own
// metadata. Portage's index does not list them, but fleets are split on
// them (a channel of -march=x86-64-v3 builds): the catalog keeps them
// under BuildFlagPrefix+KEY, and RenderPackage leaves them out.
var BuildFlagKeys = []string{"CFLAGS", "CXXFLAGS", "FCFLAGS", "FFLAGS", "LDFLAGS"}

// BuildFlagPrefix marks a kept key that is not an index key.
const BuildFlagPrefix = "build:"

// IndexEntry turns raw package metadata into the values Portage puts in
// the index: only IndexMetadataKeys, whitespace-normalised, dependency keys
// USE-reduced with the package's USE. Missing keys stay missing. The
// build's flags (BuildFlagKeys) come along under BuildFlagPrefix.
func IndexEntry(meta map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(IndexMetadataKeys)+2)
	for _, k := range IndexMetadataKeys {
		if v, ok := meta[k]; ok {
			out[k] = normalizeSpace(v)
		}
	}
	for _, k := range BuildFlagKeys {
		if v, ok := meta[k]; ok {
			out[BuildFlagPrefix+k] = normalizeSpace(v)
		}
	}
	use := map[string]bool{}
	for _, f := range pySplit(out["USE"]) {
		use[f] = true
	}
	for _, k := range IndexMetadataKeys {
		v, ok := out[k]
		if !ok || !useEvaluatedKeys[k] {
			continue
		}
		r, err := useReduce(v, use, strings.HasSuffix(k, "DEPEND"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = r
	}
	return out, nil
}

func writeKeyName(k string) string {
	if w, ok := writeKeyNames[k]; ok {
		return w
	}
	return k
}

// renderBlock writes the non-empty entries of m sorted by internal name
// (so MTIME and REPO land after the upper-case keys), then a blank line.
func renderBlock(m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(writeKeyName(k))
		b.WriteString(": ")
		b.WriteString(m[k])
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// RenderHeader renders the header block of a Packages index.
func RenderHeader(header map[string]string) []byte {
	return renderBlock(header)
}

// RenderPackage renders one package block, leaving out values equal to
// their defaults and inherited values equal to a non-empty header value.
func RenderPackage(pkg, header map[string]string) []byte {
	m := make(map[string]string, len(pkg))
	for k, v := range pkg {
		if !strings.HasPrefix(k, BuildFlagPrefix) {
			m[k] = v
		}
	}
	for _, k := range inheritedKeys {
		if hv := header[k]; hv != "" {
			if v, ok := m[k]; ok && v == hv {
				delete(m, k)
			}
		}
	}
	for k, dv := range defaultPkgData {
		if v, ok := m[k]; ok && v == dv {
			delete(m, k)
		}
	}
	return renderBlock(m)
}

// decodeReplace decodes UTF-8 replacing each invalid byte with U+FFFD, as
// Portage opens the index with errors="replace".
func decodeReplace(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		sb.WriteRune(r)
		b = b[n:]
	}
	return sb.String()
}

// indexReader hands out the lines of an index one at a time, split at
// '\n' only (a '\r' stays part of the line, as for a remote index).
type indexReader struct {
	s string
}

func (r *indexReader) next() (line string, ok bool) {
	if r.s == "" {
		return "", false
	}
	line, rest, found := strings.Cut(r.s, "\n")
	if !found {
		rest = ""
	}
	r.s = rest
	return line, true
}

// readBlock reads "KEY: value" lines up to an empty line or the end.
func (r *indexReader) readBlock(filter bool) map[string]string {
	d := map[string]string{}
	for {
		line, ok := r.next()
		if !ok || line == "" {
			return d
		}
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		if v != "" {
			// Drop the first character, assumed to be the space after ':'.
			_, n := utf8.DecodeRuneInString(v)
			v = v[n:]
		}
		if rk, ok := readKeyNames[k]; ok {
			k = rk
		}
		if filter && !allowedPkgKeys[k] {
			continue
		}
		d[k] = v
	}
}

// ParseIndex reads a Packages index the way Portage's PackageIndex does:
// the header is everything before the first empty line; then package
// blocks until a block with no (allowed) keys, i.e. a second blank line
// or the end. Blocks without CPV are skipped, unknown keys dropped,
// defaults re-applied and CHOST/repository inherited from the header.
func ParseIndex(b []byte) (header map[string]string, pkgs []map[string]string) {
	r := &indexReader{s: decodeReplace(b)}
	header = r.readBlock(false)
	for {
		d := r.readBlock(true)
		if len(d) == 0 {
			return header, pkgs
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
			if hv := header[k]; hv != "" {
				if _, ok := d[k]; !ok {
					d[k] = hv
				}
			}
		}
		pkgs = append(pkgs, d)
	}
}
