package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// DefaultProgram is the GnuPG binary run, found in $PATH.
const DefaultProgram = "gpg"

// gpgRun is one gpg process: its stdin is fed by the caller, stdout and
// stderr (which carries the --status-fd 2 lines) are collected.
type gpgRun struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   bool
}

// startGPG starts prog with args, as cred (nil: as this process), with
// extra as fds 3, 4, ...
func startGPG(ctx context.Context, prog string, args []string, cred *syscall.Credential, extra ...*os.File) (*gpgRun, error) {
	g := &gpgRun{cmd: exec.CommandContext(ctx, prog, args...)}
	g.cmd.Stdout, g.cmd.Stderr = &g.stdout, &g.stderr
	g.cmd.ExtraFiles = extra
	if cred != nil {
		g.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", prog, err)
	}
	return g, nil
}

// finish closes stdin and waits; the exit status is returned as err (an
// *exec.ExitError when gpg ran and failed).
func (g *gpgRun) finish() error {
	if g.done {
		return nil
	}
	g.done = true
	g.stdin.Close()
	return g.cmd.Wait()
}

// kill ends a process that will not be finished.
func (g *gpgRun) kill() {
	if g == nil || g.done {
		return
	}
	g.done = true
	g.stdin.Close()
	g.cmd.Process.Kill()
	g.cmd.Wait()
}

// status returns the --status-fd lines ("KEYWORD args...", without the
// "[GNUPG:] " prefix).
func (g *gpgRun) status() []string {
	var out []string
	for _, l := range strings.Split(g.stderr.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "[GNUPG:] "); ok {
			out = append(out, strings.TrimSpace(s))
		}
	}
	return out
}

// message is gpg's own last words on stderr (not status lines), for errors.
func (g *gpgRun) message() string {
	var lines []string
	for _, l := range strings.Split(g.stderr.String(), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "[GNUPG:]") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, "; ")
}

// failure describes a gpg process that failed: how it exited and what it said.
func (g *gpgRun) failure(err error) string {
	var ee *exec.ExitError
	what := err.Error()
	if errors.As(err, &ee) {
		what = fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if m := g.message(); m != "" {
		what += ": " + m
	}
	return what
}

// statusArg returns the arguments of the first status line with keyword
// kw, and whether there is one.
func statusArg(status []string, kw string) (string, bool) {
	for _, s := range status {
		k, rest, _ := strings.Cut(s, " ")
		if k == kw {
			return rest, true
		}
	}
	return "", false
}
