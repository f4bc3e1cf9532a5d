package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/l2span/l2span/brain/api"
)

func stateCommand() *command {
	return &command{
		name: "state", args: "POD [--watch]", minArgs: 1, maxArgs: 1,
		summary: "show a pod's desired state: the networks spanned into it (VNI, local segment,\n" +
			"remote pods) and the remote ports its gateways populate. With --watch, print\n" +
			"each event as the brain streams it until interrupted (-o json: one JSON event\n" +
			"per line).",
		setup: func(fs *flag.FlagSet) runFunc {
			watch := fs.Bool("watch", false, "stream changes until interrupted")
			since := fs.Int64("since", 0, "with --watch: start after this `REVISION` (0: from a snapshot)")
			return withAPI(func(e *env, c *api.Client, args []string) error {
				if !*watch {
					st, err := c.PodState(e.ctx, args[0])
					if err != nil {
						return err
					}
					if e.format == "json" {
						return e.json(st)
					}
					return writeState(e.out, st)
				}
				return watchState(e, c, args[0], *since)
			})
		},
	}
}

// watchState prints events until ctx ends; a stream that breaks after it
// delivered events is resumed from the last revision seen. Interruption is a
// clean exit; a brain that refuses the watch, or cannot be reached at all, is
// an error.
// It reads the full-network stream: each change prints the networks it
// touched whole, which is what an operator reading it wants.
func watchState(e *env, c *api.Client, pod string, since int64) error {
	backoff := 500 * time.Millisecond
	connected := false
	for {
		err := c.WatchFull(e.ctx, pod, since, 0, func(ev api.WatchEvent) error {
			connected = true
			backoff = 500 * time.Millisecond
			if ev.Type == api.EventHeartbeat {
				return nil
			}
			if ev.Revision > since {
				since = ev.Revision
			}
			if err := writeEvent(e, ev); err != nil {
				return outputError{err}
			}
			return nil
		})
		if e.ctx.Err() != nil {
			return nil
		}
		var ae *api.Error
		var oe outputError
		if errors.As(err, &ae) || errors.As(err, &oe) || !connected {
			return err
		}
		fmt.Fprintf(e.errw, "watch: %v; reconnecting from revision %d in %s\n", err, since, backoff)
		select {
		case <-e.ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// outputError is a failure to write our own output: no point reconnecting.
type outputError struct{ error }
