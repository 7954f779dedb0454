// Command pkgdirfs mounts a Portage PKGDIR backed by a catalog of package instances.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
		{"mount", "[--state DIR] [--layouts all|multi,flat,legacy] [--read-only] [--allow-other] [--xattrs] [--stamp-build-id] [--removed-grace DURATION] [--keep N [--per-use]] [--init] [--hide-existing] [-f] [--log FILE] [--log-level debug|info|warn|error] [--debug] MOUNTPOINT",
			"serve the catalog as a PKGDIR at MOUNTPOINT (returns once it is mounted, unless -f); also mount -t fuse.pkgdirfs STATE MOUNTPOINT -o OPTIONS", cmdMount},
		{"import", "[--state DIR] [--link] [--keep-invalid] [-q] SRC... | --rebuild [--state DIR]", "import the packages of existing PKGDIRs (any layout) into the catalog", cmdImport},
		{"index", "[--state DIR] [--layouts ...] [--gz]", "write the Packages index the mount serves to stdout", cmdIndex},
		{"export", "[--state DIR] [--copy] [-q] DIR", "write every package into DIR as a plain PKGDIR (multi-instance layout, the Packages the mount serves; hard links where the filesystem allows): the way back from pkgdirfs, and a backup; an earlier export in DIR is updated", cmdExport},
		{"verify", "[--state DIR] [--deep]", "check the catalog against the blobs (--deep: digests too); list refused files; exit 1 on any fault", cmdVerify},
		{"query", "[--state DIR] [--format table|json|paths] [--use FLAGS] [--older-than DUR] [--newer-than DUR] [ATOM...]",
			"list the builds matching Portage atoms (cat/pkg, >=cat/pkg-1.0, cat/pkg:SLOT, cat/*), USE flags and build times", cmdQuery},
		{"prune", "[--state DIR] [--keep N] [--per-use] [--older-than DUR] [--keep-atoms FILE] [--dry-run]",
			"remove old builds by policy: all but the N newest of each CPV (or USE set), older than DUR, never those FILE's atoms match", cmdPrune},
		{"stats", "[--state DIR] [--format table|json]", "instances, CPVs, bytes by category, CPVs with the most builds, refused files, oldest and newest build", cmdStats},
		{"status", "[--state DIR]", "show the daemon serving the state (pid, mountpoint, open handles, memory) and the catalog (generation, instances, last commit); exit 3 if not mounted", cmdStatus},
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
	if name == "--version" || name == "-version" {
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
	fmt.Fprintf(os.Stderr, "pkgdirfs: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

// newFlags makes a flag set whose --help prints the command's real synopsis.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	for _, c := range commands {
		if c.name == name {
			fs.Usage = func() {
				fmt.Fprintf(fs.Output(), "Usage: pkgdirfs %s %s\n  %s\n\nOptions:\n", c.name, c.args, c.summary)
				fs.PrintDefaults()
				if helperOptions != "" {
					helperFlagHint(fs.Output())
				}
			}
		}
	}
	return fs
}

func stateFlag(fs *flag.FlagSet) *string {
	def := defaultState
	if v := os.Getenv("PKGDIRFS_STATE"); v != "" {
		def = v
	}
	return fs.String("state", def, "state directory (the catalog, blobs/ with the package bytes)")
}

// parseArgs parses flags that may stand before or after the operands.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0
			}
			return nil, 2
		}
		args = fs.Args()
		if len(args) == 0 {
			return operands, -1
		}
		if args[0] == "--" {
			return append(operands, args[1:]...), -1
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
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
