package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/pgtest"
)

// replica is one brain on a shared PostgreSQL whose hub never polls: only
// LISTEN/NOTIFY can tell it of other replicas' commits.
type replica struct {
	http   *httptest.Server
	client *api.Client
	token  string
	stop   func()
}

func startReplica(t *testing.T, url string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var hub *brain.Hub
	svc := brain.NewService(st, testConfig, func(rev int64) { hub.Notify(rev) })
	svc.Start(ctx)
	hub = brain.NewHub(svc, time.Hour, log)
	go hub.Run(ctx, 0)
	go brain.ListenRevisions(ctx, svc, hub)
	r := &replica{http: httptest.NewServer(httpapi.New(svc, hub, httpapi.Options{Logger: log, Heartbeat: 100 * time.Millisecond}))}
	if _, r.token, err = svc.CreateToken(ctx, brain.TokenSpec{Role: "admin", Description: "replica test"}); err != nil {
		t.Fatal(err)
	}
	if r.client, err = api.NewClient(r.http.URL, api.WithToken(r.token)); err != nil {
		t.Fatal(err)
	}
	var once bool
	r.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		r.http.CloseClientConnections()
		r.http.Close()
		svc.Close()
		st.Close()
	}
	t.Cleanup(r.stop)
	return r
}

// updates collects the non-heartbeat events of a watch, resuming from the
// last revision after a break (as the agent does).
func updates(t *testing.T, c *api.Client, pod string) (<-chan api.WatchEvent, func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := make(chan api.WatchEvent, 100)
	var since atomic.Int64
	go func() {
		for ctx.Err() == nil {
			c.Watch(ctx, pod, since.Load(), 2*time.Second, func(ev api.WatchEvent) error {
				if ev.Type == api.EventHeartbeat {
					return nil
				}
				since.Store(ev.Revision)
				out <- ev
				return nil
			})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return out, since.Load
}

func awaitPort(t *testing.T, evs <-chan api.WatchEvent, mac, what string) (api.WatchEvent, time.Duration) {
	t.Helper()
	start := time.Now()
	// Generous: a PostgreSQL restart on a loaded 2-core machine takes a while.
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-evs:
			nets := ev.Networks
			if ev.State != nil {
				nets = ev.State.Networks
			}
			var ports []api.RemotePort
			for _, n := range nets {
				ports = append(ports, n.RemotePorts...)
			}
			for _, c := range ev.Changes {
				ports = append(ports, c.Upserted...)
			}
			for _, p := range ports {
				if p.MAC == mac {
					return ev, time.Since(start)
				}
			}
		case <-deadline:
			t.Fatalf("%s: port %s not seen within 30s", what, mac)
		}
	}
}

// Two brains on one PostgreSQL: a port created through one reaches a
// watcher of the other by LISTEN/NOTIFY (their hubs never poll), and a
// client given both moves to the survivor when its replica dies, resuming
// its watch from its revision (an update, not a new snapshot).
func TestReplicasShareChanges(t *testing.T) {
	ctx := context.Background()
	url := pgtest.SharedDatabase(t)
	a, b := startReplica(t, url), startReplica(t, url)
	threePods(t, a.client)
	n := must[api.Network](t)(a.client.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN}))
	must[api.Port](t)(a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: "fa:16:3e:00:00:02"}))

	onB, _ := updates(t, b.client, "pod1")
	both, err := api.NewClient(a.http.URL+","+b.http.URL, api.WithToken(a.token))
	if err != nil {
		t.Fatal(err)
	}
	viaBoth, since := updates(t, both, "pod1")
	must[api.Port](t)(a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
	_, lat := awaitPort(t, onB, "fa:16:3e:00:00:02", "watcher on the other replica")
	t.Logf("a commit on replica a reached a watcher on replica b in %s", lat)
	awaitPort(t, viaBoth, "fa:16:3e:00:00:02", "watcher through the replica list")

	a.stop() // as kill -9: connections cut, the port closed
	resumedFrom := since()
	p := must[api.Port](t)(both.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod3", MAC: "fa:16:3e:00:00:03"}))
	if both.URL() != b.http.URL {
		t.Fatalf("client uses %s after replica a died, want %s", both.URL(), b.http.URL)
	}
	ev, _ := awaitPort(t, viaBoth, p.MAC, "watcher moved to the surviving replica")
	if ev.Type != api.EventDelta || resumedFrom == 0 {
		t.Fatalf("after failover the watch got %s (resumed from %d): want a delta from its revision, not a relist", ev.Type, resumedFrom)
	}
}

// A PostgreSQL restart under two replicas: both come back, and a change
// through one still reaches the other's watchers (LISTEN made again).
func TestReplicasSurvivePostgresRestart(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.NewDatabase(t)
	a, b := startReplica(t, url), startReplica(t, url)
	threePods(t, a.client)
	n := must[api.Network](t)(a.client.CreateNetwork(ctx, api.NetworkCreate{Name: "net1", Type: api.TypeSharedVXLAN}))
	must[api.Port](t)(a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01"}))
	onB, _ := updates(t, b.client, "pod1")

	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		mac := fmt.Sprintf("fa:16:3e:00:00:%02x", i)
		eventually(t, "create a port after the restart", func() error {
			_, err := a.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod2", MAC: mac})
			return err
		})
		awaitPort(t, onB, mac, "watcher on the other replica after the restart")
	}
}

func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
