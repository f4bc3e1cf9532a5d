// Package sdnotify tells systemd the truth about a Type=notify daemon:
// READY=1 once it serves, WATCHDOG=1 from a loop that checks the daemon's
// health, STOPPING=1 on the way out. Outside systemd it does nothing.
package sdnotify

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// Send writes state to $NOTIFY_SOCKET; it reports whether it was sent.
func Send(state string) bool {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err == nil
}

// Ready says the daemon is up.
func Ready() bool { return Send("READY=1") }

// Stopping says the daemon is shutting down.
func Stopping() bool { return Send("STOPPING=1") }

// WatchdogInterval returns half of systemd's WatchdogSec for this process, or 0.
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}

// StartWatchdog pings systemd's watchdog while healthy() succeeds, until ctx
// ends or the returned stop is called. A daemon that stops being healthy
// stops pinging, and systemd restarts it.
func StartWatchdog(ctx context.Context, healthy func() error) (stop func()) {
	every := WatchdogInterval()
	if every == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if healthy() == nil {
					Send("WATCHDOG=1")
				}
			}
		}
	}()
	return cancel
}
