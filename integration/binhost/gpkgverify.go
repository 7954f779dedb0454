package binhost

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// Portage's defaults for gpkg signature verification (cnf/make.globals).
const (
	VerifyBaseCommand = "/usr/bin/gpg --verify --batch --no-tty --no-auto-check-trustdb --status-fd 2 [PORTAGE_CONFIG] [SIGNATURE]"
	VerifyGPGHome     = "/etc/portage/gnupg"
	VerifyUserDrop    = "nobody"
	VerifyGroupDrop   = "nogroup"
)

// Verifier checks gpkg signatures as a Portage client whose binrepos.conf
// has verify-signature = true (the default since 3.0.78) does
// (gpkg._verify_binpkg with request_signature and verify_signature on,
// checksum_helper): the real gpg, run with BINPKG_GPG_VERIFY_BASE_COMMAND,
// as nobody:nogroup when the client runs as root.
type Verifier struct {
	Home        string // BINPKG_GPG_VERIFY_GPG_HOME
	BaseCommand string // "" for VerifyBaseCommand
	// TempDir holds the detached signature files handed to gpg
	// (Python's tempfile.mkstemp: $TMPDIR or /tmp).
	TempDir string
}

// SignatureError is what Portage reports as InvalidSignature or
// MissingSignature: Summary is its summary line ("binpkg appears
// unsigned (missing any signature)", ...) or "(none available)".
type SignatureError struct {
	Kind    string // InvalidSignature, MissingSignature
	Summary string
	Status  string // gpg's output
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("%s: Binary package is not usable (verification failed): %s", e.Kind, e.Summary)
}

// FormatError is Portage's InvalidBinaryPackageFormat or DigestException.
type FormatError struct{ Kind, Msg string }

func (e *FormatError) Error() string { return e.Kind + ": " + e.Msg }

// IsXpakPath tells what get_binpkg_format(PATH, remote=True) tells by the
// name: with verify-signature on, the client ignores remote XPAK packages
// (bintree._populate_remote_repo, gpkg_only).
func IsXpakPath(p string) bool {
	return strings.HasSuffix(p, ".tbz2") || strings.HasSuffix(p, ".xpak")
}

// GpkgOnly drops the packages a client with verify-signature ignores.
func GpkgOnly(pkgs []*Package) (kept []*Package, ignored int) {
	for _, p := range pkgs {
		if IsXpakPath(p.Meta["PATH"]) {
			ignored++
			continue
		}
		kept = append(kept, p)
	}
	return kept, ignored
}

// tarMember is one member of the container, as tarfile lists it.
type tarMember struct {
	name string
	size int64
	data []byte
}

// VerifyGpkg runs Portage's checks on a downloaded gpkg.
func (v *Verifier) VerifyGpkg(data []byte) error {
	// _get_tar_format: 8 bytes at 0x101.
	if len(data) < 0x109 {
		return &FormatError{"InvalidBinaryPackageFormat", "Cannot identify tar format"}
	}
	switch magic := string(data[0x101:0x109]); {
	case magic == "ustar  \x00", magic[:6] == "ustar\x00" && magic[6:] == "00":
	default:
		return &FormatError{"InvalidBinaryPackageFormat", "Cannot identify tar format"}
	}
	var members []tarMember
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &FormatError{"InvalidBinaryPackageFormat", "Cannot read tar file: " + err.Error()}
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // tarfile keeps it to itself, no member
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return &FormatError{"InvalidBinaryPackageFormat", err.Error()}
		}
		members = append(members, tarMember{h.Name, h.Size, b})
	}
	names := make([]string, len(members))
	byName := map[string]*tarMember{}
	hasVersion := false
	for i := range members {
		names[i] = members[i].name
		if path.Base(members[i].name) == "gpkg-1" {
			hasVersion = true
		}
	}
	if !hasVersion {
		return &FormatError{"InvalidBinaryPackageFormat", "Invalid gpkg file"}
	}
	for _, f := range names {
		if strings.HasPrefix(f, "/") || strings.Count(f, "/") != 1 {
			return &FormatError{"InvalidBinaryPackageFormat", "gpkg file structure mismatch " + f}
		}
	}
	prefix := commonPath(names)
	if prefix == "" {
		return &FormatError{"InvalidBinaryPackageFormat", "gpkg file structure mismatch"}
	}
	for i := range members {
		if byName[members[i].name] != nil {
			return &FormatError{"InvalidBinaryPackageFormat", "Duplicate file " + members[i].name + " exist, potential attack?"}
		}
		byName[members[i].name] = &members[i]
	}
	unverified := append([]string(nil), names...)
	remove := func(f string) {
		for i, u := range unverified {
			if u == f {
				unverified = append(unverified[:i], unverified[i+1:]...)
				return
			}
		}
	}
	has := func(f string) bool {
		for _, u := range unverified {
			if u == f {
				return true
			}
		}
		return false
	}
	manifestName := prefix + "/Manifest"
	if byName[manifestName] == nil {
		return &SignatureError{Kind: "MissingSignature", Summary: "Manifest not found"}
	}
	// request_signature: the Manifest is verified whether or not it looks signed.
	manifest, err := v.gpgVerify(byName[manifestName].data, nil)
	if err != nil {
		return err
	}
	remove(manifestName)
	records, err := loadManifest(string(manifest))
	if err != nil {
		return err
	}
	unverifiedRecords := append([][]string(nil), records...)
	for _, f := range append([]string(nil), unverified...) {
		sigName := ""
		if !strings.HasSuffix(f, ".sig") {
			sigName = f + ".sig"
		}
		var rec []string
		for _, m := range records {
			if m[1] == path.Base(f) {
				rec = m
			}
		}
		if rec == nil {
			return &FormatError{"DigestException", f + " checksum not found"}
		}
		if rec[2] != fmt.Sprint(byName[f].size) {
			return &FormatError{"DigestException", f + " file size mismatched"}
		}
		if sigName != "" {
			switch {
			case has(sigName):
				if _, err := v.gpgVerify(byName[f].data, byName[sigName].data); err != nil {
					return err
				}
			case f == prefix+"/gpkg-1":
			default:
				return &SignatureError{Kind: "MissingSignature", Summary: f + " signature not found"}
			}
		}
		verified := 0
		for _, c := range []string{"BLAKE2B", "SHA512"} {
			i := indexOf(rec, c)
			if i < 0 || i+1 >= len(rec) {
				// Portage looks it up with list.index: a missing hash
				// raises ValueError, which nothing catches.
				return &FormatError{"ValueError", fmt.Sprintf("%q is not in list (Manifest entry of %s)", c, f)}
			}
			var got string
			if c == "BLAKE2B" {
				s := blake2b.Sum512(byName[f].data)
				got = hex.EncodeToString(s[:])
			} else {
				s := sha512.Sum512(byName[f].data)
				got = hex.EncodeToString(s[:])
			}
			if got != strings.ToLower(rec[i+1]) {
				return &FormatError{"DigestException", f + " checksum mismatched"}
			}
			verified++
		}
		if verified < 1 {
			return &FormatError{"DigestException", f + " no supported checksum found"}
		}
		remove(f)
		for i, m := range unverifiedRecords {
			if &m[0] == &rec[0] {
				unverifiedRecords = append(unverifiedRecords[:i], unverifiedRecords[i+1:]...)
				break
			}
		}
	}
	if len(unverifiedRecords) != 0 {
		return &FormatError{"DigestException", fmt.Sprintf("Missing files: %v", unverifiedRecords)}
	}
	if len(unverified) != 0 {
		return &FormatError{"DigestException", fmt.Sprintf("Unknown files exists: %v", unverified)}
	}
	return nil
}

func indexOf(rec []string, s string) int {
	for i, r := range rec {
		if r == s {
			return i
		}
	}
	return -1
}

// commonPath is os.path.commonpath of relative names.
func commonPath(names []string) string {
	if len(names) == 0 {
		return ""
	}
	common := strings.Split(names[0], "/")
	for _, n := range names[1:] {
		parts := strings.Split(n, "/")
		i := 0
		for i < len(common) && i < len(parts) && common[i] == parts[i] {
			i++
		}
		common = common[:i]
	}
	return strings.Join(common, "/")
}

// loadManifest is gpkg._load_manifest.
func loadManifest(s string) ([][]string, error) {
	var out [][]string
	seen := map[string]bool{}
	for _, line := range splitlines(s) {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "DATA" {
			return nil, &FormatError{"DigestException", "invalied Manifest"}
		}
		if len(f) < 3 {
			return nil, &FormatError{"IndexError", "list index out of range"}
		}
		if seen[f[1]] {
			return nil, &FormatError{"DigestException", "Manifest duplicate file exists"}
		}
		if !regexp.MustCompile(`^[+-]?\d+$`).MatchString(f[2]) {
			return nil, &FormatError{"DigestException", "Manifest invalied file size"}
		}
		seen[f[1]] = true
		out = append(out, f)
	}
	return out, nil
}

// splitlines is Python's str.splitlines for the line ends a Manifest can
// hold.
func splitlines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// gpgVerify is checksum_helper with gpg_operation VERIFY: sig nil verifies
// clear-signed data (detached=False, stdout is the signed text), else the
// detached signature sig over data, written to a 0644 temp file as Portage
// does (gpg may run as nobody).
func (v *Verifier) gpgVerify(data, sig []byte) ([]byte, error) {
	base := v.BaseCommand
	if base == "" {
		base = VerifyBaseCommand
	}
	cmdline := strings.Replace(base, "[PORTAGE_CONFIG]", "--homedir "+v.Home+" ", 1)
	if sig == nil {
		cmdline = strings.Replace(cmdline, "[SIGNATURE]", "--output - -", 1)
	} else {
		f, err := os.CreateTemp(v.TempDir, "portage-sign-*.sig")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		_, err = f.Write(sig)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(f.Name(), 0o644)
		}
		if err != nil {
			return nil, err
		}
		cmdline = strings.Replace(cmdline, "[SIGNATURE]", f.Name()+" -", 1)
	}
	argv := strings.Fields(cmdline) // shlex.split of a command without quotes
	if os.Geteuid() == 0 {
		// Popen(user=nobody, group=nogroup).
		argv = append([]string{"setpriv", "--reuid=" + VerifyUserDrop, "--regid=" + VerifyGroupDrop, "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	status := errb.String()
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return nil, runErr // gpg could not run at all: the test's setup
	}
	if runErr == nil {
		// _check_gpg_status: exit 0 is not enough.
		good, trusted := false, false
		for _, l := range strings.Split(status, "\n") {
			if strings.HasPrefix(l, "[GNUPG:] GOODSIG") {
				good = true
			}
			if strings.HasPrefix(l, "[GNUPG:] TRUST_ULTIMATE") || strings.HasPrefix(l, "[GNUPG:] TRUST_FULLY") {
				trusted = true
			}
		}
		if good && trusted {
			return out.Bytes(), nil
		}
	}
	return nil, &SignatureError{Kind: "InvalidSignature", Summary: summary(status), Status: status}
}

// summary is show_gpg_error's: one summary when exactly one known status
// explains the failure, else "(none available)".
func summary(status string) string {
	var found []string
	for _, c := range []struct{ prefix, text string }{
		{"[GNUPG:] NODATA", "binpkg appears unsigned (missing any signature)"},
		{"[GNUPG:] NO_PUBKEY", "binpkg signed with at least one unknown key."},
		{"[GNUPG:] TRUST_UNDEFINED", "binpkg signed with a known key of undefined trust."},
	} {
		for _, l := range strings.Split(status, "\n") {
			if strings.HasPrefix(l, c.prefix) {
				found = append(found, c.text)
				break
			}
		}
	}
	if len(found) != 1 {
		return "(none available)"
	}
	return found[0]
}
