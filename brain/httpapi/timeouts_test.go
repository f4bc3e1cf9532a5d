package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// serveReal serves b's API on a real listener with NewHTTPServer and to.
func serveReal(t *testing.T, b *testBrain, to httpapi.Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.NewHTTPServer(b.server, to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedWithin reads conn until the server closes it, failing after d.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("server kept the connection open past %s: %v", d, err)
	}
	return string(b)
}

// TestServerTimeouts: slow headers, slow bodies and idle connections are
// cut off; a watch stream outlives the read timeout.
func TestServerTimeouts(t *testing.T) {
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{Heartbeat: 100 * time.Millisecond})
	threePods(t, b.client)
	addr := serveReal(t, b, httpapi.Timeouts{ReadHeader: 300 * time.Millisecond, Read: 600 * time.Millisecond, Write: 5 * time.Second, Idle: 400 * time.Millisecond})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Headers that never finish.
	c := dial()
	fmt.Fprint(c, "GET /v1/pods HTTP/1.1\r\nHost: x\r\n")
	closedWithin(t, c, 5*time.Second)
	// A body that never finishes: the handler's read fails, the answer is
	// an error and the connection closes.
	c = dial()
	fmt.Fprintf(c, "POST /v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":", b.token)
	if got := closedWithin(t, c, 5*time.Second); got != "" && !strings.Contains(got, "HTTP/1.1 400") {
		t.Fatalf("slow body answered %q", got)
	}
	// An idle keep-alive connection.
	c = dial()
	fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	closedWithin(t, c, 5*time.Second)

	// A watch lives well past the read timeout (heartbeats keep coming).
	cl, err := api.NewClient("http://"+addr, api.WithToken(b.token))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = cl.Watch(ctx, "pod1", 0, time.Second, func(api.WatchEvent) error { return nil })
	// Watch returns only when the stream ends: it must have ended because
	// this test gave up, well after the read timeout (600ms).
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 2400*time.Millisecond {
		t.Fatalf("watch ended after %s: %v", time.Since(start), err)
	}
}

// TestWatchOutlivesWriteTimeout: the server's write timeout bounds a plain
// response, never a watch stream, whether the per-frame deadline is on or
// turned off (Limits.WatchWriteTimeout 0).
func TestWatchOutlivesWriteTimeout(t *testing.T) {
	for _, frame := range []time.Duration{time.Second, 0} {
		t.Run(fmt.Sprint("frame_deadline_", frame), func(t *testing.T) {
			t.Parallel()
			l := httpapi.DefaultLimits()
			l.WatchWriteTimeout = frame
			b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{Heartbeat: 100 * time.Millisecond, Limits: &l})
			threePods(t, b.client)
			addr := serveReal(t, b, httpapi.Timeouts{ReadHeader: time.Second, Read: time.Second, Write: 500 * time.Millisecond, Idle: time.Second})
			cl, err := api.NewClient("http://"+addr, api.WithToken(b.token))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = cl.Watch(ctx, "pod1", 0, time.Second, func(api.WatchEvent) error { return nil })
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 1400*time.Millisecond {
				t.Fatalf("watch ended after %s (server write timeout 500ms): %v", time.Since(start), err)
			}
		})
	}
}
