package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

func TestState(t *testing.T) {
	b := startBrain(t, httpapi.Options{})
	n := spanned(t, b)
	out := b.ok(t, "state", "pod1")
	t.Logf("state pod1:\n%s", out)
	if field(out, "pod") != "pod1" {
		t.Errorf("pod = %q", field(out, "pod"))
	}
	if !strings.Contains(out, "network net1 ("+n.ID+")") {
		t.Errorf("no network header")
	}
	if got := field(strings.ReplaceAll(out, "\n  ", "\n"), "vni"); got != fmt.Sprint(n.SegmentationID) {
		t.Errorf("vni = %q", got)
	}
	if got := field(strings.ReplaceAll(out, "\n  ", "\n"), "remote_pods"); got != "pod2" {
		t.Errorf("remote_pods = %q", got)
	}
	want := [][]string{{"fa:16:3e:00:00:02", "10.0.0.12,fd00::12", "pod2"}, {"fa:16:3e:00:00:03", "-", "pod2"}}
	if got := rowsOf(out, "MAC"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("remote ports = %v, want %v", got, want)
	}
	// pod2 sees pod1's DVR base MAC and pod1's port.
	out = b.ok(t, "state", "pod2")
	if !strings.Contains(out, "pod1=fa:16:3f:00:00:00/24") || !strings.Contains(out, "fa:16:3e:00:00:01") {
		t.Errorf("state pod2:\n%s", out)
	}
	// pod3 has nothing spanned.
	if out := b.ok(t, "state", "pod3"); !strings.Contains(out, "(none spanned") {
		t.Errorf("state pod3:\n%s", out)
	}
	b.fails(t, 1, "state", "nope")
	if r := b.fails(t, 1, "state", "nope", "--watch"); !strings.HasPrefix(r.err, "error: ") {
		t.Errorf("watch of an unknown pod: %q", r.err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, buf *syncBuffer, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in:\n%s", what, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStateWatch(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			b := startBrain(t, httpapi.Options{Heartbeat: 50 * time.Millisecond})
			n := spanned(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int)
			go func() {
				done <- run(ctx, []string{"--brain", b.url, "--token", b.token, "-o", format, "state", "pod1", "--watch"}, &out, &errb)
			}()

			waitFor(t, &out, "fa:16:3e:00:00:03") // the snapshot
			if _, err := b.client.CreatePort(context.Background(), api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:04", IPs: []string{"10.0.0.14"}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &out, "fa:16:3e:00:00:04") // the update
			// A broken stream is resumed from the last revision.
			b.srv.CloseClientConnections()
			waitFor(t, &errb, "reconnecting from revision")
			// A fresh client: the cut also killed the test client's kept-alive
			// connections, and a POST is not retried on one (EOF).
			fresh, err := api.NewClient(b.url, api.WithToken(b.token))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fresh.CreatePort(context.Background(), api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:05", IPs: []string{}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &out, "fa:16:3e:00:00:05")
			cancel() // Ctrl-C
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d, stderr %s", code, errb.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not stop on cancel")
			}
			t.Logf("watch output:\n%s", out.String())
			if format == "table" {
				if !strings.Contains(out.String(), "snapshot, revision") || !strings.Contains(out.String(), "update, revision") {
					t.Errorf("no snapshot/update headers")
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var types []string
			for _, l := range lines {
				var ev api.WatchEvent
				if err := json.Unmarshal([]byte(l), &ev); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				types = append(types, ev.Type)
			}
			if types[0] != api.EventSnapshot || types[len(types)-1] != api.EventUpdate {
				t.Errorf("event types = %v", types)
			}
		})
	}
}
