// Command l2span-bgpd holds an EVPN gateway's BGP sessions for
// l2span-agent (--evpn-speaker-socket), so that restarting or killing the
// agent never drops a session: the fabric keeps our routes without
// relying on graceful restart, which FRR before 10.5 does not do for
// l2vpn evpn. It is a GoBGP speaker with nothing configured; the agent
// sets the AS, neighbors and routes over the unix socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/l2span/l2span/internal/logging"
	"github.com/l2span/l2span/vtep/evpn"
)

// DefaultSocket is where l2span-agent looks for l2span-bgpd by default.
const DefaultSocket = "/run/l2span/bgpd.sock"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "l2span-bgpd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("l2span-bgpd", flag.ContinueOnError)
	sock := fs.String("socket", DefaultSocket, "unix socket of the API l2span-agent drives (its directory is made 0700)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log, err := logging.New(os.Stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	// On SIGTERM the process ends without a NOTIFICATION: a fabric that
	// does graceful restart for EVPN keeps our routes until we are back.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return evpn.ServeSpeaker(ctx, *sock, log)
}
