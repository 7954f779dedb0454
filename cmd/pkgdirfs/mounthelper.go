package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// The mount(8) route. `mount -t fuse.pkgdirfs STATE MNT -o OPTS` (and an
// fstab line of that type) runs fuse3's mount.fuse3, which runs
// `pkgdirfs STATE MNT -o OPTS` from $PATH: the sshfs convention, so it
// works wherever pkgdirfs is installed. `mount -t pkgdirfs` runs
// /sbin/mount.pkgdirfs (a symlink to this binary) with the same arguments
// plus mount(8)'s own flags. Either way the -o options become flags of
// `pkgdirfs mount`, which returns once the mount is ready.

// helperNames are the names mount(8) calls a helper by.
var helperNames = map[string]bool{"mount.pkgdirfs": true, "mount.fuse.pkgdirfs": true}

// helperCall tells whether args (after the program name) are the mount.fuse3
// convention, `SOURCE MOUNTPOINT [-o OPTS]`, rather than a command: the
// first word is a path, not a command name.
func helperCall(args []string) bool {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") {
		return false
	}
	if strings.Contains(args[0], "/") || strings.HasPrefix(args[0], "pkgdirfs#") {
		return true
	}
	st, err := os.Stat(args[0])
	return err == nil && st.IsDir()
}

// ignoredOptions are mount(8)'s and the kernel's generic options. A FUSE
// mount sets nodev and nosuid itself, and the rest mean nothing to it.
var ignoredOptions = map[string]bool{
	"rw": true, "defaults": true, "default_permissions": true,
	"auto": true, "noauto": true, "user": true, "users": true, "nouser": true, "owner": true, "group": true,
	"_netdev": true, "nofail": true, "dev": true, "nodev": true, "suid": true, "nosuid": true,
	"exec": true, "noexec": true, "atime": true, "noatime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "diratime": true, "nodiratime": true,
	"lazytime": true, "nolazytime": true, "async": true, "sync": true, "silent": true, "loud": true,
}

// refusedOptions would break the helper's contract: mount(8) must return
// with the mount ready, and the state is the source.
var refusedOptions = map[string]string{
	"f":          "the helper always returns once mounted; run `pkgdirfs mount -f` for a foreground daemon",
	"foreground": "the helper always returns once mounted; run `pkgdirfs mount -f` for a foreground daemon",
	"state":      "the state is the mount's source: mount -t fuse.pkgdirfs STATE MOUNTPOINT",
}

var layoutWords = map[string]bool{"all": true, "multi": true, "flat": true, "legacy": true}

// helperFlags turns mount(8)'s -o options into flags of `pkgdirfs mount`:
// ro → --read-only, allow_other → --allow-other, NAME[=VALUE] → --NAME[=VALUE]
// with _ read as - (removed_grace=5m, log_level=debug). A list value
// (layouts) is written with + or : instead of commas, or its items follow
// it (layouts=multi,flat: flat is no option of its own).
func helperFlags(opts []string) ([]string, error) {
	var flags []string
	for i := 0; i < len(opts); i++ {
		o := strings.TrimSpace(opts[i])
		name, val, hasVal := strings.Cut(o, "=")
		switch {
		case o == "" || ignoredOptions[name] || strings.HasPrefix(name, "x-") || name == "comment":
			continue
		case name == "ro":
			flags = append(flags, "--read-only")
			continue
		case refusedOptions[name] != "":
			return nil, fmt.Errorf("-o %s: %s", o, refusedOptions[name])
		case name == "layouts":
			val = strings.NewReplacer("+", ",", ":", ",").Replace(val)
			for i+1 < len(opts) && layoutWords[opts[i+1]] {
				val += "," + opts[i+1]
				i++
			}
		}
		flag := "--" + strings.ReplaceAll(name, "_", "-")
		if hasVal {
			flag += "=" + val
		}
		flags = append(flags, flag)
	}
	return flags, nil
}

func helperUsage(w io.Writer, prog string) {
	fmt.Fprintf(w, `Usage: %s STATE MOUNTPOINT [-o OPTIONS]
  mount helper: mount -t fuse.pkgdirfs STATE MOUNTPOINT -o allow_other,layouts=multi+flat,ro
  or, in /etc/fstab:
    /var/lib/pkgdirfs  /var/cache/binpkgs  fuse.pkgdirfs  allow_other,nofail  0 0

OPTIONS are the flags of 'pkgdirfs mount' without dashes and with _ for -:
  ro (--read-only), allow_other, layouts=multi+flat, xattrs, stamp_build_id,
  removed_grace=15m, log=FILE, log_level=debug|info|warn|error, debug, init,
  hide_existing, other_pkgdir, catalog=URL, blobs=DIR, sign_key=KEYID, gpg_home=DIR,
  trust_keyring=DIR, channel=NAME.
mount(8)'s generic options (rw, noauto, nofail, _netdev, nodev, nosuid, x-*) are accepted and ignored.
`, prog)
}

// mountHelper is the helper's main: prog is how it was called.
func mountHelper(prog string, args []string) int {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			helperUsage(os.Stdout, prog)
			return 0
		case a == "-o" || a == "-t":
			if i+1 >= len(args) {
				fmt.Fprintf(os.Stderr, "%s: %s needs a value\n", prog, a)
				return 2
			}
			if a == "-o" {
				opts = append(opts, strings.Split(args[i+1], ",")...)
			} // -t: the type mount(8) was given, fuse.pkgdirfs or pkgdirfs
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-f":
			return 0 // mount -f (fake): do everything but mount
		case a == "-n" || a == "-s" || a == "-v":
			// mount(8)'s no-mtab, sloppy and verbose flags
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(os.Stderr, "%s: unknown flag %s\n", prog, a)
			helperUsage(os.Stderr, prog)
			return 2
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		fmt.Fprintf(os.Stderr, "%s: need STATE and MOUNTPOINT, got %d operands\n", prog, len(pos))
		helperUsage(os.Stderr, prog)
		return 2
	}
	// fuse(8)'s old form, type fuse with source pkgdirfs#STATE.
	state := strings.TrimPrefix(pos[0], "pkgdirfs#")
	flags, err := helperFlags(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 2
	}
	mountArgs := append(append([]string{"--state", state}, flags...), "--", pos[1])
	helperOptions = strings.Join(opts, ",")
	// The daemon is started as `pkgdirfs mount ...` (daemonize runs
	// os.Args again): ps, the pid file and a restart all see one command.
	exe := os.Args[0]
	if e, err := os.Executable(); err == nil {
		exe = e
	}
	os.Args = append([]string{exe, "mount"}, mountArgs...)
	return cmdMount(mountArgs)
}

// helperOptions are the -o options of a helper call, for the message of a
// flag error: the user wrote options, not flags.
var helperOptions string

func helperFlagHint(w io.Writer) {
	fmt.Fprintf(w, "(from -o %s: each option NAME[=VALUE] is the flag --NAME of 'pkgdirfs mount' above, with _ for -; see pkgdirfs(8), MOUNT HELPER)\n",
		helperOptions)
}
