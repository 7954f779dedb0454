package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"pkgdirfs/catalog"
	"pkgdirfs/sign"
)

// signingFlags are the signature options: --sign-key and --gpg-home
// (mount, import) and --trust-keyring (those and verify).
type signingFlags struct {
	key, home *string // nil where the command does not sign
	trust     *string
}

func addSigningFlags(fl *pflag.FlagSet) *signingFlags {
	f := &signingFlags{}
	f.key = fl.String("sign-key", "", "sign every unsigned gpkg that arrives with the GnuPG key `KEYID` (fingerprint, id or user id), as Portage's binpkg-signing signs: "+
		"the signed bytes are the package served; a signed gpkg keeps its bytes, xpak cannot be signed")
	f.home = fl.String("gpg-home", "", "the GnuPG home `DIR` holding the --sign-key key, in it or in its gpg-agent or smartcard (default: gpg's own, $GNUPGHOME or ~/.gnupg)")
	f.trust = fl.String("trust-keyring", "", "refuse a signed gpkg whose signatures a Portage client with the GnuPG home `DIR` as its /etc/portage/gnupg would refuse (bad, untrusted or unknown key, Manifest not matching)")
	return f
}

func addTrustFlag(fl *pflag.FlagSet) *signingFlags {
	return &signingFlags{trust: fl.String("trust-keyring", "", "with --deep, check every signed gpkg as a Portage client with the GnuPG home `DIR` as its /etc/portage/gnupg would: a signature it refuses is a fault")}
}

// usage is a usage error of the combination, "" if none.
func (f *signingFlags) usage() string {
	if f.home != nil && *f.home != "" && *f.key == "" {
		return "--gpg-home names where the --sign-key key is: give --sign-key too"
	}
	return ""
}

// signing makes the store's signing rules, trying each part once: the key
// signs an empty message (as Portage's unlock does), the keyring lists its
// keys as the user gpg verifies as, so that a key or keyring that cannot
// work fails the command now rather than every package later. what says
// what was set up, for the log.
func (f *signingFlags) signing(ctx context.Context) (s catalog.Signing, what []any, err error) {
	if f.key != nil && *f.key != "" {
		s.Signer = &sign.Signer{Key: *f.key, Home: *f.home}
		fpr, err := s.Signer.Check(ctx)
		if err != nil {
			return s, nil, fmt.Errorf("--sign-key %s: %w", *f.key, err)
		}
		what = append(what, "sign_key", fpr)
	}
	if *f.trust != "" {
		if s.Trust, err = sign.OpenKeyring(*f.trust); err != nil {
			return s, nil, fmt.Errorf("--trust-keyring: %w", err)
		}
		n, err := s.Trust.Check(ctx)
		if err != nil {
			return s, nil, fmt.Errorf("--trust-keyring: %w", err)
		}
		what = append(what, "trust_keyring", *f.trust, "keys", n)
	}
	return s, what, nil
}
