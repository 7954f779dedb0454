package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// logLevel is the level of every logger newLogger makes (mount --log-level).
var logLevel = new(slog.LevelVar)

// setLogLevel parses debug, info, warn or error (slog's names, any case).
func setLogLevel(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	logLevel.Set(l)
	return nil
}

// logToFile makes the log file the daemon's fd 2. Everything writes there:
// our logger, the standard logger, go-fuse, and a Go panic, which only ever
// goes to fd 2. Reopening is the same call: dup3 replaces fd 2 atomically,
// so no line is lost or split between the files.
func logToFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Dup3(int(f.Fd()), 2, 0)
}

// reopenLogOnHUP makes SIGHUP reopen the log file, as logrotate's
// `postrotate kill -HUP` expects; path "" (logging to the caller's stderr)
// has nothing to reopen. SIGHUP never stops the daemon: a signal's default
// action would kill it and leave an aborted mount behind.
func reopenLogOnHUP(path string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if path == "" {
				log.Info("SIGHUP: logging to stderr, no log file to reopen")
				continue
			}
			if err := logToFile(path); err != nil {
				log.Error("SIGHUP: cannot reopen the log; still writing to the previous file", "log", path, "err", err)
				continue
			}
			log.Info("log reopened (SIGHUP)", "log", path)
		}
	}()
}

// appendFile is a log file opened for each write: the watchdog writes a line
// or two, maybe days after it started, when the file it was started with
// may have been rotated away.
type appendFile string

func (p appendFile) Write(b []byte) (int, error) {
	f, err := os.OpenFile(string(p), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return os.Stderr.Write(b)
	}
	defer f.Close()
	return f.Write(b)
}

// appendLogger logs to path, or to stderr if "".
func appendLogger(path string) *slog.Logger {
	if path == "" {
		return newLogger(os.Stderr)
	}
	return newLogger(appendFile(path))
}
