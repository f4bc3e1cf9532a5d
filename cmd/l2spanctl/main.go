// Command l2spanctl is the operator's command line for the l2span brain: it
// creates, lists and deletes pods, networks, subnets and ports, shows a
// network's span across pods, and shows or watches a pod's desired state.
//
// Everything goes through the brain's REST API (package brain/api).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
