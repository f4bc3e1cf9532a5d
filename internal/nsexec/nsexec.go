// Package nsexec runs code inside a network namespace.
package nsexec

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn on a fresh goroutine's locked OS thread inside ns, then
// switches the thread back; with ns not open (netns.None()) it runs fn
// where it is. If the thread cannot switch back it stays locked, so the
// runtime discards it with the goroutine instead of reusing it in the wrong
// namespace. Sockets opened inside fn stay in ns after Run returns.
func Run(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// A failed setns leaves the thread where it was.
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			ch <- errors.Join(ferr, fmt.Errorf("leave netns (thread left locked): %w", err))
			return
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}
