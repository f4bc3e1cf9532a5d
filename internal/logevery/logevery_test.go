package logevery

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterAllowsOncePerKeyAndPeriodAndCountsTheRest(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Minute)
	l.now = func() time.Time { return now }
	if ok, n := l.Allow("a"); !ok || n != 0 {
		t.Fatalf("first a: %v %d", ok, n)
	}
	for range 5 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("a allowed twice within the period")
		}
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("b held back by a")
	}
	now = now.Add(time.Minute)
	if ok, n := l.Allow("a"); !ok || n != 5 {
		t.Fatalf("a after the period: %v, %d held back (want 5)", ok, n)
	}
}

func TestLimiterBoundsItsKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Minute)
	l.now = func() time.Time { return now }
	allowed := 0
	for i := range 3 * maxKeys {
		if ok, _ := l.Allow(fmt.Sprint("k", i)); ok {
			allowed++
		}
	}
	if len(l.keys) > maxKeys+1 || allowed != maxKeys+1 {
		t.Fatalf("%d keys kept, %d lines allowed: want at most %d keys and %d lines", len(l.keys), allowed, maxKeys+1, maxKeys+1)
	}
}
