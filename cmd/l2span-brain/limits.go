package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/l2span/l2span/brain/httpapi"
)

// limitFlags registers the request limits and server timeouts, defaulting
// to httpapi.DefaultLimits and DefaultTimeouts. 0 turns a count or rate
// limit off.
func limitFlags(fs *flag.FlagSet, l *httpapi.Limits, t *httpapi.Timeouts) {
	d, dt := httpapi.DefaultLimits(), httpapi.DefaultTimeouts()
	fs.Int64Var(&l.MaxBodyBytes, "max-body-bytes", d.MaxBodyBytes, "largest request body accepted (413 above it)")
	fs.IntVar(&l.MaxBulkPorts, "max-bulk-ports", d.MaxBulkPorts, "most ports in one bulk create (413 above it; 0: no cap)")
	fs.IntVar(&l.MaxInFlight, "max-requests-inflight", d.MaxInFlight, "concurrent read requests, watch streams apart (503 above it; 0: no cap)")
	fs.IntVar(&l.MaxMutatingInFlight, "max-mutating-requests-inflight", d.MaxMutatingInFlight, "concurrent write requests (503 above it; 0: no cap)")
	fs.IntVar(&l.MaxWatchers, "max-watchers", d.MaxWatchers, "open watch streams in total (503 above it; 0: no cap)")
	fs.IntVar(&l.MaxWatchersPerPod, "max-watchers-per-pod", d.MaxWatchersPerPod, "open watch streams of one pod (429 above it; 0: no cap)")
	fs.Float64Var(&l.RatePerSecond, "rate-limit", d.RatePerSecond, "requests per second per client (token, else remote IP) (429 above it; 0: off)")
	fs.IntVar(&l.RateBurst, "rate-burst", d.RateBurst, "requests a client may send at once above -rate-limit")
	fs.DurationVar(&l.WatchWriteTimeout, "watch-write-timeout", d.WatchWriteTimeout, "time one watch frame may take to write before the stream is dropped")
	fs.DurationVar(&t.ReadHeader, "read-header-timeout", dt.ReadHeader, "time a client has to send a request's headers")
	fs.DurationVar(&t.Read, "read-timeout", dt.Read, "time a client has to send a whole request (headers and body)")
	fs.DurationVar(&t.Write, "write-timeout", dt.Write, "time a response may take to write (watch streams use -watch-write-timeout per frame)")
	fs.DurationVar(&t.Idle, "idle-timeout", dt.Idle, "time an idle keep-alive connection stays open")
}

func checkLimits(l httpapi.Limits, t httpapi.Timeouts) error {
	if l.MaxBodyBytes < 1<<10 {
		return fmt.Errorf("max-body-bytes %d: want at least 1024", l.MaxBodyBytes)
	}
	for name, v := range map[string]int{"max-bulk-ports": l.MaxBulkPorts, "max-requests-inflight": l.MaxInFlight,
		"max-mutating-requests-inflight": l.MaxMutatingInFlight, "max-watchers": l.MaxWatchers, "max-watchers-per-pod": l.MaxWatchersPerPod} {
		if v < 0 {
			return fmt.Errorf("%s %d: want 0 (no cap) or more", name, v)
		}
	}
	if l.RatePerSecond < 0 {
		return fmt.Errorf("rate-limit %g: want 0 (off) or more", l.RatePerSecond)
	}
	if l.RatePerSecond > 0 && l.RateBurst < 1 {
		return fmt.Errorf("rate-burst %d: want at least 1 with a rate limit", l.RateBurst)
	}
	if l.WatchWriteTimeout <= 0 || t.ReadHeader <= 0 || t.Read <= 0 || t.Write <= 0 || t.Idle <= 0 {
		return errors.New("watch-write-timeout, read-header-timeout, read-timeout, write-timeout and idle-timeout must be positive")
	}
	return nil
}
