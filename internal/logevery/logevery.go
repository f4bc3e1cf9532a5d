// Package logevery limits how often a repeated log line is written: once
// per key and period, with the count of lines held back in between, so a
// stranger knocking many times a second cannot flood the log.
package logevery

import (
	"sync"
	"time"
)

// maxKeys bounds the memory a flood of distinct keys (source addresses)
// can take; past it, keys whose period is over are forgotten.
const maxKeys = 1024

// Limiter allows one line per key per period.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last       time.Time
	suppressed int
}

// New returns a limiter allowing one line per key every period.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, now: time.Now, keys: map[string]*entry{}}
}

// Allow reports whether a line for key may be written now and, when it
// may, how many lines for key were held back since the last one written.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, found := l.keys[key]
	if found && now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	if !found {
		if len(l.keys) >= maxKeys {
			l.pruneLocked(now)
		}
		if len(l.keys) >= maxKeys {
			// Still full of live keys: count against one shared key.
			return l.allowOverflowLocked(now)
		}
		e = &entry{}
		l.keys[key] = e
	}
	suppressed, e.suppressed, e.last = e.suppressed, 0, now
	return true, suppressed
}

func (l *Limiter) allowOverflowLocked(now time.Time) (bool, int) {
	const key = "\x00overflow"
	e, ok := l.keys[key]
	if !ok {
		e = &entry{}
		l.keys[key] = e
	} else if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	s := e.suppressed
	e.suppressed, e.last = 0, now
	return true, s
}

func (l *Limiter) pruneLocked(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.every {
			delete(l.keys, k)
		}
	}
}
