package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// counter reads a counter (or gauge) of reg whose labels include want.
func counter(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, want)
	return 0
}

func refused(t *testing.T, b *testBrain, reason string) float64 {
	return counter(t, b.server.Registry(), "l2span_brain_refused_total", map[string]string{"reason": reason})
}

func limitsWith(f func(*httpapi.Limits)) httpapi.Options {
	l := httpapi.DefaultLimits()
	f(&l)
	return httpapi.Options{Limits: &l}
}

// post sends body to url as JSON, with token as the bearer when it is set.
func post(t *testing.T, url, token, body string, chunked bool) (*http.Response, api.ErrorBody) {
	t.Helper()
	var rd io.Reader = strings.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length: sent chunked
	}
	req, _ := http.NewRequest("POST", url, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &eb)
	return resp, eb
}

// TestBodyAndBulkLimits: a body over the cap is a 413 whether its length
// is announced or not, and an announced one is refused before the caller
// is authenticated; a bulk create over the item cap is a 413 on ports.
func TestBodyAndBulkLimits(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, limitsWith(func(l *httpapi.Limits) {
		l.MaxBodyBytes, l.MaxBulkPorts = 64<<10, 5
	}))
	threePods(t, b.client)
	big := `{"id":"p","az":"` + strings.Repeat("a", 70<<10) + `"}`
	for _, chunked := range []bool{false, true} {
		resp, eb := post(t, b.http.URL+"/v1/pods", b.token, big, chunked)
		if resp.StatusCode != 413 || eb.Error.Code != "too_large" || !strings.Contains(eb.Error.Message, "65536 bytes") {
			t.Fatalf("chunked=%v: %d %+v", chunked, resp.StatusCode, eb)
		}
	}
	if resp, eb := post(t, b.http.URL+"/v1/pods", "", big, false); resp.StatusCode != 413 || eb.Error.Code != "too_large" {
		t.Fatalf("announced body over the cap without a token: %d %+v", resp.StatusCode, eb)
	}
	if got := refused(t, b, "body_too_large"); got != 3 {
		t.Fatalf("body_too_large counted %g times", got)
	}
	n := must[api.Network](t)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
	ports := func(k int) []api.PortCreate {
		var out []api.PortCreate
		for i := range k {
			out = append(out, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:00:40:%02x", i)})
		}
		return out
	}
	_, err := b.client.CreatePorts(ctx, ports(6))
	wantError(t, err, 413, "ports")
	if got := refused(t, b, "bulk_too_large"); got != 1 {
		t.Fatalf("bulk_too_large counted %g times", got)
	}
	if got := must[[]api.Port](t)(b.client.CreatePorts(ctx, ports(5))); len(got) != 5 {
		t.Fatalf("bulk of 5: %d ports", len(got))
	}
}

// TestRateLimit: a client over its rate gets 429 with Retry-After; another
// client (another token, from the same address) is not affected.
func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, limitsWith(func(l *httpapi.Limits) {
		l.RatePerSecond, l.RateBurst = 0.5, 3
	}))
	other := driverClient(t, b) // before the admin token spends its burst
	for range 3 {
		if _, err := b.client.ListPods(ctx, api.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest("GET", b.http.URL+"/v1/pods", nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || !bytes.Contains(body, []byte(`"code":"rate_limited"`)) {
		t.Fatalf("over the rate: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if _, err := other.ListPods(ctx, api.ListOptions{}); err != nil {
		t.Fatalf("another client's bucket: %v", err)
	}
	if got := refused(t, b, "rate_limited"); got != 1 {
		t.Fatalf("rate_limited counted %g times", got)
	}
}

// TestInFlightLimit: with one write in flight (its body still arriving) and
// a cap of one, the next write gets 503 with Retry-After; reads go on.
func TestInFlightLimit(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, limitsWith(func(l *httpapi.Limits) { l.MaxMutatingInFlight = 1 }))
	pr, pw := io.Pipe()
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", b.http.URL+"/v1/pods", pr)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(`{"id":"slow",`)); err != nil { // the handler is reading it now
		t.Fatal(err)
	}
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = b.client.CreatePod(ctx, api.Pod{ID: "fast", AZ: "az1"})
		if statusOf(err) == 503 || time.Now().After(deadline) {
			break
		}
	}
	var e *api.Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "unavailable" {
		t.Fatalf("second write while one is in flight: %v", err)
	}
	if _, err := b.client.ListPods(ctx, api.ListOptions{}); err != nil {
		t.Fatalf("a read while a write is in flight: %v", err)
	}
	pw.Write([]byte(`"az":"az1"}`))
	pw.Close()
	if code := <-first; code != 201 {
		t.Fatalf("slow write answered %d", code)
	}
	must[api.Pod](t)(b.client.CreatePod(ctx, api.Pod{ID: "fast", AZ: "az1"}))
	if got := refused(t, b, "mutating_in_flight"); got < 1 {
		t.Fatalf("mutating_in_flight counted %g times", got)
	}
}

// TestWatcherLimits: per pod and in total; a closed stream frees its slot.
func TestWatcherLimits(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, limitsWith(func(l *httpapi.Limits) {
		l.MaxWatchersPerPod, l.MaxWatchers = 2, 3
	}))
	threePods(t, b.client)
	open := func(pod string) (func(), int) {
		cctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(cctx, "GET", b.http.URL+"/v1/pods/"+pod+"/state?watch=true", nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			cancel()
			return nil, resp.StatusCode
		}
		bufio.NewReader(resp.Body).ReadString('\n') // the snapshot
		return func() { cancel(); resp.Body.Close() }, 200
	}
	c1, _ := open("pod1")
	open("pod1")
	if _, code := open("pod1"); code != 429 {
		t.Fatalf("third watcher of pod1: %d", code)
	}
	open("pod2")
	if _, code := open("pod3"); code != 503 {
		t.Fatalf("fourth watcher in all: %d", code)
	}
	c1()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, code := open("pod3"); code == 200 {
			c()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed watch never freed its slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if refused(t, b, "pod_watchers") != 1 || refused(t, b, "watchers") < 1 {
		t.Fatal("watcher refusals not counted")
	}
}

// TestWatchWriteDeadline: a watcher that stops reading is dropped once a
// frame cannot be written within the write timeout.
func TestWatchWriteDeadline(t *testing.T) {
	ctx := context.Background()
	l := httpapi.DefaultLimits()
	l.WatchWriteTimeout = 300 * time.Millisecond
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{Limits: &l})
	threePods(t, b.client)
	n := must[api.Network](t)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
	must[api.Port](t)(b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:50:00"}))
	// A client with a tiny receive buffer that never reads.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	conn, err := d.Dial("tcp", b.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/pods/pod1/state?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", b.token)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; refused(t, b, "watch_write_timeout") == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("a stalled watcher was never dropped")
		}
		// Each bulk makes an update frame of every port of pod2 for pod1.
		var ports []api.PortCreate
		for j := range 200 {
			ports = append(ports, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", 0x60+i/256, i%256, j), DeviceOwner: strings.Repeat("d", 200)})
		}
		must[[]api.Port](t)(b.client.CreatePorts(ctx, ports))
	}
	for counter(t, b.server.Registry(), "l2span_brain_watchers", nil) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dropped watch is still counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientCancelIsNoError: a request whose client went away is neither a
// 5xx in the metrics nor an ERROR in the log.
func TestClientCancelIsNoError(t *testing.T) {
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{})
	var logs bytes.Buffer
	var mu sync.Mutex
	s := httpapi.New(b.svc, b.hub, httpapi.Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/v1/networks", nil).WithContext(ctx))
	mu.Lock()
	defer mu.Unlock()
	if w.Code < 400 || w.Code >= 500 || strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("cancelled request answered %d, log %q", w.Code, logs.String())
	}
	if got := counter(t, s.Registry(), "l2span_brain_internal_errors_total", nil); got != 0 {
		t.Fatalf("cancelled request counted as %g internal errors", got)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLegitimateLoadUnderLimits: with the default limits, eight clients
// creating ports at full speed and a watcher per gateway are never refused.
func TestLegitimateLoadUnderLimits(t *testing.T) {
	ctx := context.Background()
	b := startBrain(t, "sqlite://"+t.TempDir()+"/b.db", testConfig, httpapi.Options{})
	threePods(t, b.client)
	n := must[api.Network](t)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
	var watches []*watcher
	for _, pod := range []string{"pod1", "pod2", "pod3"} {
		for range 4 {
			watches = append(watches, watch(t, b.client, pod, 0))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				_, err := b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: fmt.Sprintf("pod%d", 1+i%3), MAC: fmt.Sprintf("fa:16:3e:01:%02x:%02x", c, i)})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("legitimate load refused: %v", err)
	}
	for _, w := range watches {
		w.next(t) // every stream is alive and delivered its snapshot
	}
	for _, r := range []string{"rate_limited", "in_flight", "mutating_in_flight", "watchers", "pod_watchers"} {
		if got := refused(t, b, r); got != 0 {
			t.Fatalf("%s refused %g requests under legitimate load", r, got)
		}
	}
}
