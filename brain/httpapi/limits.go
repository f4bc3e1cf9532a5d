package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/brain"
)

// Limits bound what one client, and all of them together, may take of the
// brain. Each refusal is answered with the error body (413, 429 or 503,
// with Retry-After where waiting helps) and counted in
// l2span_brain_refused_total{reason}. A zero field turns its limit off.
type Limits struct {
	// MaxBodyBytes caps a request body (413, reason body_too_large).
	MaxBodyBytes int64
	// MaxBulkPorts caps the ports of one bulk create (413 on ports, reason
	// bulk_too_large).
	MaxBulkPorts int
	// MaxInFlight caps concurrent reads and MaxMutatingInFlight concurrent
	// writes, watch streams apart (503, reasons in_flight and
	// mutating_in_flight).
	MaxInFlight         int
	MaxMutatingInFlight int
	// MaxWatchers caps open watch streams in total (503, reason watchers)
	// and MaxWatchersPerPod those of one pod (429, reason pod_watchers).
	MaxWatchers       int
	MaxWatchersPerPod int
	// RatePerSecond and RateBurst are a token bucket per client (429,
	// reason rate_limited).
	RatePerSecond float64
	RateBurst     int
	// WatchWriteTimeout is how long one frame of a watch stream may take to
	// write before the stream is dropped (a stalled reader must not hold a
	// goroutine and its buffers forever).
	WatchWriteTimeout time.Duration
	// ClientKey names the client a request is counted against by the rate
	// limit; nil means RemoteIP. An auth layer sets it to the caller's
	// token or certificate identity.
	ClientKey func(*http.Request) string
}

// DefaultLimits are the limits of a brain that is not told otherwise (the
// l2span-brain flags have the same defaults). The body cap fits the
// largest legitimate request with room to spare: a bulk create of
// MaxBulkPorts (1,000) ports at ~250 bytes each is ~250 KB, and even 1,000
// ports holding 64 IPv6 addresses each (~3 KB a port) stay under 4 MiB.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes:        4 << 20,
		MaxBulkPorts:        1000,
		MaxInFlight:         256,
		MaxMutatingInFlight: 64,
		MaxWatchers:         1024,
		MaxWatchersPerPod:   64,
		RatePerSecond:       500,
		RateBurst:           1000,
		WatchWriteTimeout:   30 * time.Second,
	}
}

// RemoteIP is the default client key: the address the request came from.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Reasons of l2span_brain_refused_total.
const (
	refusedBody          = "body_too_large"
	refusedBulk          = "bulk_too_large"
	refusedInFlight      = "in_flight"
	refusedMutating      = "mutating_in_flight"
	refusedWatchers      = "watchers"
	refusedPodWatchers   = "pod_watchers"
	refusedRate          = "rate_limited"
	refusedWatchTimedOut = "watch_write_timeout"
)

// limiter enforces Limits.
type limiter struct {
	Limits
	reads, writes chan struct{} // semaphores; nil when off
	refused       *prometheus.CounterVec

	mu      sync.Mutex
	watches int
	perPod  map[string]int

	bucketsMu sync.Mutex
	buckets   map[string]*bucket
	swept     time.Time
	now       func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l Limits, reg prometheus.Registerer) *limiter {
	if l.ClientKey == nil {
		l.ClientKey = ClientKey
	}
	lim := &limiter{Limits: l, perPod: map[string]int{}, buckets: map[string]*bucket{}, now: time.Now}
	if l.MaxInFlight > 0 {
		lim.reads = make(chan struct{}, l.MaxInFlight)
	}
	if l.MaxMutatingInFlight > 0 {
		lim.writes = make(chan struct{}, l.MaxMutatingInFlight)
	}
	lim.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "l2span_brain_refused_total", Help: "Requests refused by a limit, by reason.",
	}, []string{"reason"})
	for _, r := range []string{refusedBody, refusedBulk, refusedInFlight, refusedMutating, refusedWatchers, refusedPodWatchers, refusedRate, refusedWatchTimedOut} {
		lim.refused.WithLabelValues(r)
	}
	reg.MustRegister(lim.refused)
	return lim
}

// limitError is a refusal by a limit: its status, the reason it is counted
// under and, when waiting helps, how long to wait.
func limitError(status int, reason string, retryAfter time.Duration, format string, args ...any) *statusError {
	code := brain.KindConflict // 429 and 503 are neither the caller's input nor internal
	if status == http.StatusRequestEntityTooLarge {
		code = brain.KindInvalid
	}
	return &statusError{status: status, reason: reason, retryAfter: retryAfter,
		err: &brain.Error{Kind: code, Message: fmt.Sprintf(format, args...)}}
}

// limit applies the request limits to an API route: the client's rate and
// the in-flight caps (watch streams have their own). It runs after guard,
// so a client is its credential.
func (s *Server) limit(next http.Handler) http.Handler {
	l := s.lim
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, ok := l.allow(l.ClientKey(r)); !ok {
			s.writeError(w, r, limitError(http.StatusTooManyRequests, refusedRate, wait,
				"rate limit of %g requests/s (burst %d) exceeded; retry later", l.RatePerSecond, l.RateBurst))
			return
		}
		if r.URL.Query().Get("watch") != "true" {
			sem, reason, what := l.reads, refusedInFlight, "requests"
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				sem, reason, what = l.writes, refusedMutating, "write requests"
			}
			if sem != nil {
				select {
				case sem <- struct{}{}:
					defer func() { <-sem }()
				default:
					s.writeError(w, r, limitError(http.StatusServiceUnavailable, reason, time.Second,
						"too many %s in flight (limit %d); retry later", what, cap(sem)))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// capBody refuses or caps a body over Limits.MaxBodyBytes; it runs before
// authentication, which may read the body.
func (s *Server) capBody(next http.Handler) http.Handler {
	l := s.lim
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if max := l.MaxBodyBytes; max > 0 && r.Body != nil && r.Body != http.NoBody {
			if r.ContentLength > max {
				s.writeError(w, r, limitError(http.StatusRequestEntityTooLarge, refusedBody, 0,
					"request body of %d bytes is larger than %d bytes", r.ContentLength, max))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		next.ServeHTTP(w, r)
	})
}

// allow takes a token from key's bucket; when there is none it returns how
// long until there is.
func (l *limiter) allow(key string) (time.Duration, bool) {
	if l.RatePerSecond <= 0 {
		return 0, true
	}
	burst := float64(max(l.RateBurst, 1))
	now := l.now()
	l.bucketsMu.Lock()
	defer l.bucketsMu.Unlock()
	b := l.buckets[key]
	if b == nil {
		l.sweep(now, burst)
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*l.RatePerSecond)
	b.last = now
	if b.tokens < 1 {
		return time.Duration(math.Ceil((1 - b.tokens) / l.RatePerSecond * float64(time.Second))), false
	}
	b.tokens--
	return 0, true
}

// sweep forgets full buckets (clients idle long enough to have refilled),
// at most every 10 s, so the map holds only recently busy clients.
func (l *limiter) sweep(now time.Time, burst float64) {
	if len(l.buckets) < 1024 || now.Sub(l.swept) < 10*time.Second {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.RatePerSecond >= burst {
			delete(l.buckets, k)
		}
	}
}

// startWatch counts a new watch stream of pod, or refuses it.
func (l *limiter) startWatch(pod string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MaxWatchers > 0 && l.watches >= l.MaxWatchers {
		return nil, limitError(http.StatusServiceUnavailable, refusedWatchers, 5*time.Second,
			"too many watch streams open (limit %d); retry later", l.MaxWatchers)
	}
	if l.MaxWatchersPerPod > 0 && l.perPod[pod] >= l.MaxWatchersPerPod {
		return nil, limitError(http.StatusTooManyRequests, refusedPodWatchers, 5*time.Second,
			"pod %s has %d watch streams open (limit %d per pod); retry later", pod, l.perPod[pod], l.MaxWatchersPerPod)
	}
	l.watches++
	l.perPod[pod]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.watches--
			if l.perPod[pod]--; l.perPod[pod] <= 0 {
				delete(l.perPod, pod)
			}
		})
	}, nil
}

// retryAfterHeader is Retry-After in whole seconds, at least 1.
func retryAfterHeader(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// Timeouts of the brain's http.Server. Write bounds a plain response; a
// watch stream instead gets Limits.WatchWriteTimeout per frame and no read
// deadline once it has started.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts: a request has 10 s for its headers and 60 s in all to
// arrive (a 4 MiB body at 70 KB/s), a response 120 s to be written (a full
// pod state of tens of MB), an idle keep-alive connection lives 120 s.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 10 * time.Second, Read: 60 * time.Second, Write: 120 * time.Second, Idle: 120 * time.Second}
}

// NewHTTPServer is the http.Server the brain serves h with.
func NewHTTPServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write,
		IdleTimeout: t.Idle, MaxHeaderBytes: 64 << 10}
}
