package layout

import "testing"

func TestCompareVersions(t *testing.T) {
	// want is the sign of CompareVersions(a, b). Cases from Portage's
	// test_vercmp.py and PMS, checked against Portage's vercmp.
	cases := []struct {
		a, b string
		want int
	}{
		{"6.0", "5.0", 1},
		{"5.0", "5", 1},
		{"1.0-r1", "1.0-r0", 1},
		{"1.0-r1", "1.0", 1},
		{"999999999999999999999999999999", "999999999999999999999999999998", 1},
		{"1.0.0", "1.0", 1},
		{"1.0.0", "1.0b", 1},
		{"1b", "1", 1},
		{"1b_p1", "1_p1", 1},
		{"1.1b", "1.1", 1},
		{"12.2.5", "12.2b", 1},
		{"4.0", "5.0", -1},
		{"5", "5.0", -1},
		{"1.0_pre2", "1.0_p2", -1},
		{"1.0_alpha2", "1.0_p2", -1},
		{"1.0_alpha1", "1.0_beta1", -1},
		{"1.0_beta3", "1.0_rc3", -1},
		{"1.001000000000000000001", "1.001000000000000000002", -1},
		{"1.00100000000", "1.0010000000000000001", -1},
		{"1.01", "1.1", -1},
		{"1.0-r0", "1.0-r1", -1},
		{"1.0", "1.0-r1", -1},
		{"1.0b", "1.0.0", -1},
		{"1_p1", "1b_p1", -1},
		{"12.2b", "12.2.5", -1},
		{"4.0", "4.0", 0},
		{"1.0-r0", "1.0", 0},
		{"1.0", "1.0-r0", 0},
		{"1.0_alpha", "1.0_pre", -1},
		{"1.0_beta", "1.0_alpha", 1},
		{"0", "0.0", -1},
		// Leading zeros: compared as fractions, trailing zeros ignored.
		{"1.010", "1.01", 0},
		{"1.0", "1.00", 0},
		{"01", "1", 0},
		{"1.02", "1.1", -1},
		{"1.2", "1.10", -1},
		{"2", "10", -1},
		// Suffixes.
		{"1.0_p", "1.0_p0", 0},
		{"1.0_p", "1.0", 1},
		{"1.0_pre", "1.0_rc", -1},
		{"1.0_rc", "1.0", -1},
		{"1_alpha_p", "1_alpha", 1},
		{"1_alpha1_beta", "1_alpha1", -1},
		{"1.0_p1_p1", "1.0_p1", 1},
		{"1_p00000000000000000000000000001", "1_p2", -1},
		{"1.0-r01", "1.0-r1", 0},
		{"1.0a", "1.0.0", -1},
		// Arbitrarily long numbers.
		{"20240101000000000000000", "20240101000000000000001", -1},
		{"1.20240101000000000000001", "1.20240101000000000000000", 1},
		{"1.2.3b_alpha4_p5-r6", "1.2.3b_alpha4_p5-r7", -1},
		{"1.2.3b_alpha4_p5-r99999999999999999999", "1.2.3b_alpha4_p5-r99999999999999999998", 1},
	}
	for _, c := range cases {
		a, err := ParseVersion(c.a)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", c.a, err)
		}
		b, err := ParseVersion(c.b)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", c.b, err)
		}
		if got := CompareVersions(a, b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(b, a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
		if a.String() != c.a {
			t.Errorf("String() = %q, want %q", a.String(), c.a)
		}
	}
}

func TestParseVersionInvalid(t *testing.T) {
	for _, s := range []string{
		"", "a", "1.", ".1", "1..2", "1.0A", "1.0ab", "1_", "1_x", "1_pr", "1_pre-", "1-r",
		"1-r1a", "1-1", "1.0-r1-r2", "1_p1a", "1 ", " 1", "1.0\n", "v1", "1-R1", "1.0_P1",
		"١", // non-ASCII digit
	} {
		if v, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) = %+v, want error", s, v)
		}
	}
	for _, s := range []string{"0", "1.2.3b_alpha4_p5-r6", "1_pre_p_rc1_beta_alpha", "1z", "00.00"} {
		if _, err := ParseVersion(s); err != nil {
			t.Errorf("ParseVersion(%q): %v", s, err)
		}
	}
}

func TestPkgSplit(t *testing.T) {
	cases := []struct {
		in, pn, ver, rev string
		ok               bool
	}{
		{"libsigc++-2.12.1", "libsigc++", "2.12.1", "r0", true},
		{"bash-5.1_p16-r10", "bash", "5.1_p16", "r10", true},
		{"foo-bar-1", "foo-bar", "1", "r0", true},
		{"foo-1-bar-2", "foo-1-bar", "2", "r0", true},
		{"foo-1.0-r1", "foo", "1.0", "r1", true},
		{"a+b-1", "a+b", "1", "r0", true},
		{"foo_bar-1.0_rc1", "foo_bar", "1.0_rc1", "r0", true},
		{"foo-1.0_p", "foo", "1.0_p", "r0", true},
		{"foo-01", "foo", "01", "r0", true},
		{"foo-1-r01", "foo", "1", "r01", true},
		{"foo-bar1-1", "foo-bar1", "1", "r0", true},
		{"sudo-1.9.15_p5", "sudo", "1.9.15_p5", "r0", true},
		// PN ending in something version-like is rejected.
		{"foo-1-2", "", "", "", false},
		{"foo-1a-2b", "", "", "", false},
		{"x-1-r1-2", "", "", "", false},
		{"foo-1.0-r1-r2", "", "", "", false},
		{"foo-1.0-1", "", "", "", false},
		{"foo", "", "", "", false},
		{"foo-", "", "", "", false},
		{"-1.0", "", "", "", false},
		{"foo-1.0-r", "", "", "", false},
		{"foo-r1", "", "", "", false},
		{"+a-1", "", "", "", false},
		{"foo-1.0.tbz2", "", "", "", false},
		{"foo/bar-1", "", "", "", false},
		{"foo-1.0\n", "", "", "", false},
		{"", "", "", "", false},
	}
	for _, c := range cases {
		pn, ver, rev, ok := PkgSplit(c.in)
		if pn != c.pn || ver != c.ver || rev != c.rev || ok != c.ok {
			t.Errorf("PkgSplit(%q) = %q %q %q %v, want %q %q %q %v", c.in, pn, ver, rev, ok, c.pn, c.ver, c.rev, c.ok)
		}
	}
}

func TestSplitCPV(t *testing.T) {
	cases := []struct {
		in, cat, pn, pf string
		ok              bool
	}{
		{"app-misc/foo-1.0", "app-misc", "foo", "foo-1.0", true},
		{"cat/foo-1.0-r1", "cat", "foo", "foo-1.0-r1", true},
		{"dev-libs/libsigc++-2.12.1", "dev-libs", "libsigc++", "libsigc++-2.12.1", true},
		{"a.b/x-1", "a.b", "x", "x-1", true},
		{"-a/x-1", "", "", "", false},
		{"foo-1.0", "", "", "", false},
		{"app-misc/foo", "", "", "", false},
		{"c/d/e-1", "", "", "", false},
		{"/foo-1", "", "", "", false},
	}
	for _, c := range cases {
		cat, pn, pf, ok := SplitCPV(c.in)
		if cat != c.cat || pn != c.pn || pf != c.pf || ok != c.ok {
			t.Errorf("SplitCPV(%q) = %q %q %q %v, want %q %q %q %v", c.in, cat, pn, pf, ok, c.cat, c.pn, c.pf, c.ok)
		}
	}
}

func TestValidCategory(t *testing.T) {
	for _, s := range []string{"app-misc", "a", "_x", "9", "a.b+c-d_e", "All", "virtual"} {
		if !ValidCategory(s) {
			t.Errorf("ValidCategory(%q) = false", s)
		}
	}
	for _, s := range []string{"", "-a", ".a", "+a", "a/b", "a b", "é", "a\n", "a:b"} {
		if ValidCategory(s) {
			t.Errorf("ValidCategory(%q) = true", s)
		}
	}
}
