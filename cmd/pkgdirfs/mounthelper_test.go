package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestHelperFlags(t *testing.T) {
	for _, c := range []struct {
		opts string
		want []string
		err  string
	}{
		{"rw,allow_other,dev,suid", []string{"--allow-other"}, ""},
		{"ro,layouts=multi+flat,log_level=debug", []string{"--read-only", "--layouts=multi,flat", "--log-level=debug"}, ""},
		// fstab writes the list with commas; its items are no options.
		{"layouts=multi,legacy,xattrs", []string{"--layouts=multi,legacy", "--xattrs"}, ""},
		{"layouts=multi:flat,removed_grace=5m,stamp_build_id", []string{"--layouts=multi,flat", "--removed-grace=5m", "--stamp-build-id"}, ""},
		{"allow_other,sign_key=0123456789ABCDEF0123456789ABCDEF01234567,gpg_home=/etc/pkgdirfs/gnupg,trust_keyring=/etc/portage/gnupg",
			[]string{"--allow-other", "--sign-key=0123456789ABCDEF0123456789ABCDEF01234567", "--gpg-home=/etc/pkgdirfs/gnupg", "--trust-keyring=/etc/portage/gnupg"}, ""},
		{"noauto,nofail,_netdev,x-systemd.requires=nginx.service,comment=x,defaults", nil, ""},
		{"bogus", []string{"--bogus"}, ""}, // refused by mount's own flag parsing
		{"f", nil, "-o f:"},
		{"state=/x", nil, "-o state=/x:"},
	} {
		got, err := helperFlags(strings.Split(c.opts, ","))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("-o %s: want error %q, got %v %v", c.opts, c.err, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("-o %s: got %q, %v; want %q", c.opts, got, err, c.want)
		}
	}
}

func TestHelperCall(t *testing.T) {
	for args, want := range map[string]bool{
		"/var/lib/pkgdirfs /var/cache/binpkgs -o allow_other": true,
		"pkgdirfs#/var/lib/pkgdirfs /mnt":                     true,
		"moutn /mnt":                                          false, // a mistyped command stays one
		"--state /x":                                          false,
		"/only-one":                                           false,
	} {
		if got := helperCall(strings.Fields(args)); got != want {
			t.Errorf("helperCall(%q) = %v, want %v", args, got, want)
		}
	}
}
