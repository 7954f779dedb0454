// Command pkgdirfs mounts a Portage PKGDIR backed by a catalog of package instances.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"pkgdirfs/catalog"
	"strings"

	"github.com/spf13/pflag"
)

// version is set by the Makefile (-ldflags -X main.version=...).
var version = "dev"

const defaultState = "/var/lib/pkgdirfs"

type command struct {
	name, args, summary string
	run                 func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"mount", "[--state DIR] [--catalog URL] [--blobs DIR] [--layouts all|multi,flat,legacy] [--read-only [--channel NAME]] [--allow-other] [--xattrs] [--stamp-build-id] [--removed-grace DURATION] [--keep N [--per-use]] [--init] [--hide-existing] [--other-pkgdir] [--sign-key KEYID [--gpg-home DIR]] [--trust-keyring DIR] [-f] [--log FILE] [--log-level debug|info|warn|error] [--debug] MOUNTPOINT",
			"serve the catalog as a PKGDIR at MOUNTPOINT (returns once it is mounted, unless -f); also mount -t fuse.pkgdirfs STATE MOUNTPOINT -o OPTIONS", cmdMount},
		{"import", "[--state DIR] [--catalog URL] [--blobs DIR] [--link] [--keep-invalid] [-q] [--sign-key KEYID [--gpg-home DIR]] [--trust-keyring DIR] SRC... | --rebuild [--state DIR]", "import the packages of existing PKGDIRs (any layout) into the catalog", cmdImport},
		{"index", "[--state DIR] [--catalog URL] [--blobs DIR] [--layouts ...] [--gz]", "write the Packages index the mount serves to stdout", cmdIndex},
		{"export", "[--state DIR] [--catalog URL] [--blobs DIR] [--copy] [-q] DIR", "write every package into DIR as a plain PKGDIR (multi-instance layout, the Packages the mount serves; hard links where the filesystem allows): the way back from pkgdirfs, and a backup; an earlier export in DIR is updated", cmdExport},
		{"verify", "[--state DIR] [--catalog URL] [--blobs DIR] [--deep [--trust-keyring DIR]]", "check the catalog against the blobs (--deep: digests too); list refused files; exit 1 on any fault", cmdVerify},
		{"query", "[--state DIR] [--catalog URL] [--blobs DIR] [--format table|json|paths] [--use FLAGS] [--older-than DUR] [--newer-than DUR] [--chost GLOB] [--keywords KW,...] [--arch ARCH] [--cflags GLOB] [--meta KEY=GLOB]... [--keep N [--per-use]] [ATOM...]",
			"list the builds matching Portage atoms (cat/pkg, >=cat/pkg-1.0, cat/pkg:SLOT, cat/*), USE flags, build times, CHOST, keywords and other metadata; with --keep, only the N newest of each CPV", cmdQuery},
		{"prune", "[--state DIR] [--catalog URL] [--blobs DIR] [--keep N] [--per-use] [--older-than DUR] [--keep-atoms FILE] [--dry-run]",
			"remove old builds by policy: all but the N newest of each CPV (or USE set), older than DUR, never those FILE's atoms match", cmdPrune},
		{"snapshot", "[--state DIR] [--catalog URL] [--blobs DIR] create NAME [--query QUERY] | list [--format table|json] | show NAME [--format table|json|paths] | diff A B [--format table|json] | delete NAME",
			"freeze the builds (all, or those QUERY selects) under NAME, no bytes copied; list, show, compare and delete snapshots. A snapshot never changes: rm, prune and the keep policy leave its builds and their bytes in it", cmdSnapshot},
		{"channel", "[--state DIR] [--catalog URL] [--blobs DIR] set NAME (--snapshot SNAP | --live [--query QUERY]) [--ttl DURATION] [--uri URL] | list [--format table|json] | delete NAME",
			"point channel NAME at a snapshot or at a live query; every mount serves it as a binhost of its own at .pkgdirfs/channels/NAME (or as the whole mount: mount --channel NAME). Moving it publishes an index newer than any it served", cmdChannel},
		{"stats", "[--state DIR] [--catalog URL] [--blobs DIR] [--format table|json]", "instances, CPVs, bytes by category, CPVs with the most builds, refused files, oldest and newest build", cmdStats},
		{"status", "[--state DIR] [--catalog URL] [--blobs DIR] [PATH]", "show the daemon serving the state (pid, mountpoint, open handles, memory) and the catalog (generation, instances, last commit); the state is that of the pkgdirfs mount holding PATH or, without PATH and --state, the working directory; exit 3 if not mounted", cmdStatus},
		{"version", "", "print the version", func([]string) int { fmt.Println("pkgdirfs", version); return 0 }},
		{"watchdog", "--pid PID --connection N MOUNTPOINT",
			"started by mount beside its daemon (with the connection's control files as fds 3 and 4): if the daemon dies without unmounting, abort the mount's FUSE connection so clients fail instead of hanging", cmdWatchdog},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "pkgdirfs %s — a Portage PKGDIR as a FUSE filesystem backed by a catalog of package instances\n\nUsage:\n", version)
	for _, c := range commands {
		if c.name == "watchdog" { // internal: started by mount
			continue
		}
		fmt.Fprintf(w, "  pkgdirfs %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nThe state directory (--state, default %s, or $PKGDIRFS_STATE) holds the catalog and the package bytes.\n", defaultState)
	fmt.Fprintf(w, "Run 'pkgdirfs COMMAND --help' for the options of a command.\n")
}

func main() {
	if prog := filepath.Base(os.Args[0]); helperNames[prog] {
		os.Exit(mountHelper(prog, os.Args[1:]))
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	if name == "--version" {
		name = "version"
	}
	for _, c := range commands {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if helperCall(os.Args[1:]) {
		os.Exit(mountHelper("pkgdirfs", os.Args[1:]))
	}
	fmt.Fprintf(os.Stderr, "pkgdirfs: unknown command %q (see 'pkgdirfs --help')\n", name)
	os.Exit(2)
}

// newFlags makes a flag set of GNU-style options (--name, -x) whose --help
// prints the command's real synopsis to stdout.
func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	// The order they are defined in, which is the synopsis's.
	fs.SortFlags = false
	// The whole usage, for a caller that wants it on stderr; parseArgs
	// prints it to stdout for --help, and a usage error in one line.
	fs.Usage = func() { printUsage(fs.Output(), fs) }
	fs.BoolP("help", "h", false, "print this help and exit")
	return fs
}

func printUsage(w io.Writer, fs *pflag.FlagSet) {
	for _, c := range commands {
		if c.name == fs.Name() {
			fmt.Fprintf(w, "Usage: pkgdirfs %s %s\n  %s\n\nOptions:\n", c.name, c.args, c.summary)
		}
	}
	fmt.Fprint(w, flagUsages(fs))
	if helperOptions != "" {
		helperFlagHint(w)
	}
}

// flagUsages lists the options, --name VALUE and what it does, wrapped to
// 100 columns. pflag's own list writes every boolean as --name[=true|false].
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, text string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		name, text := pflag.UnquoteUsage(f)
		if name != "" {
			left += " " + name
		}
		switch f.DefValue {
		case "", "0", "0s", "false", "[]":
		default:
			if f.Value.Type() == "string" {
				text += fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				text += " (default " + f.DefValue + ")"
			}
		}
		rows = append(rows, row{left, text})
		width = max(width, len(left))
	})
	var b strings.Builder
	for _, r := range rows {
		line := fmt.Sprintf("%-*s", width+2, r.left)
		n := len(line)
		for i, word := range strings.Fields(r.text) {
			if i > 0 && n+1+len(word) > 100 {
				line += "\n" + strings.Repeat(" ", width+2)
				n = width + 2
			} else if i > 0 {
				line += " "
				n++
			}
			line += word
			n += len(word)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func stateFlag(fs *pflag.FlagSet) *string {
	def := defaultState
	if v := os.Getenv("PKGDIRFS_STATE"); v != "" {
		def = v
	}
	state := fs.String("state", def, "the state directory `DIR`: the catalog, and blobs/ with the package bytes")
	catalogURL = fs.String("catalog", os.Getenv("PKGDIRFS_CATALOG"), "a catalog several hosts share, `URL` postgres://USER@HOST/DB (default: the state's own)")
	blobsDir = fs.String("blobs", os.Getenv("PKGDIRFS_BLOBS"), "the blob directory `DIR`, shared by the hosts of one catalog (default: STATE/blobs)")
	return state
}

// The --catalog and --blobs of the command being run (stateFlag).
var catalogURL, blobsDir *string

// location is where the state's catalog and blobs are, by the flags.
func location(state string) catalog.Location {
	loc := catalog.Location{State: state}
	if catalogURL != nil {
		loc.Catalog = *catalogURL
	}
	if blobsDir != nil {
		loc.Blobs = *blobsDir
	}
	return loc
}

// parseArgs parses flags that may stand before or after the operands (--
// ends them). It returns the operands and -1, or the exit status: 0 after
// --help (printed to stdout), 2 after a usage error (one line on stderr).
func parseArgs(fs *pflag.FlagSet, args []string) ([]string, int) {
	// Messages are ours: pflag's output, if any, goes nowhere.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(os.Stderr)
	if help, _ := fs.GetBool("help"); help || errors.Is(err, pflag.ErrHelp) {
		printUsage(os.Stdout, fs)
		return nil, 0
	}
	if err != nil {
		return nil, usageError(fs, "%s", flagError(fs, err))
	}
	return fs.Args(), -1
}

// flagError says what was wrong with the flags; an old single-dash long
// option (-state, read by pflag as -s -t -a ...) gets its new spelling.
func flagError(fs *pflag.FlagSet, err error) string {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) && ne.GetSpecifiedShortnames() != "" {
		name, _, _ := strings.Cut(ne.GetSpecifiedShortnames(), "=")
		if len(name) > 1 && fs.Lookup(name) != nil {
			return fmt.Sprintf("-%s: long options take two dashes: --%s", ne.GetSpecifiedShortnames(), name)
		}
	}
	return err.Error()
}

// usageError reports a usage error of fs's command in one line, saying
// where the options are, and returns its exit status, 2.
func usageError(fs *pflag.FlagSet, format string, a ...any) int {
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	if helperOptions != "" {
		// The user wrote -o options, not flags.
		fmt.Fprintf(os.Stderr, "pkgdirfs %s: %s (from -o %s: each option NAME[=VALUE] is the flag --NAME of 'pkgdirfs %s --help', with _ for -; see pkgdirfs(8), MOUNT HELPER)\n",
			fs.Name(), msg, helperOptions, fs.Name())
		return 2
	}
	fmt.Fprintf(os.Stderr, "pkgdirfs %s: %s (see 'pkgdirfs %s --help')\n", fs.Name(), msg, fs.Name())
	return 2
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: logLevel}))
}

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "pkgdirfs: "+format+"\n", a...)
	return 1
}

func background() context.Context { return context.Background() }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
