package main

import (
	"net"
	"os"
	"strings"
	"time"
)

// notifySocket takes $NOTIFY_SOCKET out of the environment, so that no
// process this one starts (the daemon child, the watchdog) reports to
// systemd in its name.
func notifySocket() string {
	s := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return s
}

// sdNotify sends state ("READY=1", "STOPPING=1", ...) to systemd's
// notification socket, as sd_notify(3) does: one datagram on a unix socket,
// a leading '@' naming an abstract one (Go's address conversion maps it).
// Nothing happens without a socket (not started by a Type=notify unit).
func sdNotify(socket, state string) error {
	if socket == "" || !(strings.HasPrefix(socket, "/") || strings.HasPrefix(socket, "@")) {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Write([]byte(state))
	return err
}
