package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"pkgdirfs/catalog"
)

func cmdVerify(args []string) int {
	fl := newFlags("verify")
	state := stateFlag(fl)
	deep := fl.Bool("deep", false, "also re-hash every blob (MD5, SHA1, SHA-256)")
	sig := addTrustFlag(fl)
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	if *sig.trust != "" && !*deep {
		return usageError(fl, "--trust-keyring checks signatures, which reads every package: give --deep too")
	}
	if len(ops) != 0 {
		return usageError(fl, "unexpected argument %q (verify takes no operands: the state is --state DIR)", ops[0])
	}
	if why := notAState(location(*state)); why != "" {
		return fail("verify: %s is not a pkgdirfs state (%s)", *state, why)
	}
	store, err := openToRead(location(*state), newLogger(os.Stderr))
	if err != nil {
		return fail("verify: %v", err)
	}
	defer store.Close()
	if store.Signing, _, err = sig.signing(background()); err != nil {
		return fail("verify: %v", err)
	}
	var bar *progressbar.ProgressBar
	if *deep && term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("verifying"), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	res, err := store.Verify(background(), *deep, func(done, total int) {
		if bar != nil {
			bar.ChangeMax(total)
			bar.Set(done)
		}
	})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return fail("verify: %v", err)
	}
	for _, f := range res.Findings {
		kind := "note"
		if f.Fault {
			kind = "FAULT"
		}
		fmt.Printf("%s: %s\n", kind, f.Text)
	}
	if n := catalog.UnsignedNote(int64(res.Unsigned), int64(res.Xpak), int64(res.Instances)); n != "" {
		fmt.Printf("note: %s\n", n)
	}
	for _, r := range res.Refused {
		fmt.Printf("refused: %s: %s (%d bytes, %s)\n", r.Path, r.Reason, r.Size, time.Unix(0, r.TimeNs).UTC().Format(time.RFC3339))
	}
	depth := "sizes"
	if *deep {
		depth = "digests"
	}
	fmt.Printf("verified %d instances and %d placeholders (%s): %d %s, %d refused %s\n",
		res.Instances, res.Placeholders, depth, res.Faults, plural(res.Faults, "fault", "faults"),
		len(res.Refused), plural(len(res.Refused), "file", "files"))
	if res.Faults > 0 {
		return 1
	}
	return 0
}
