package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

// rogue is a member claiming gateway id gw of pod with a high weight.
func rogue(name, gw, pod, vtepIP string) gossip.Member {
	m := member(name, pod, vtepIP, gossip.StateAlive)
	m.Meta.GatewayID, m.Meta.Weight = gw, 65535
	return m
}

func TestBindMembers(t *testing.T) {
	gws := []api.PodGateway{{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.11"}, {ID: "gw2", PodID: "pod2", VTEP: "198.51.100.12"},
		{ID: "gw6", PodID: "pod1", VTEP: "2001:db8::6"}}
	badMeta := gossip.Member{Name: "junk", State: gossip.StateAlive, MetaErr: errors.New("truncated")}
	deadStranger := member("gw8", "pod2", "192.0.2.8", gossip.StateDead)
	members := []gossip.Member{
		member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
		member("gw6", "pod1", "2001:db8:0:0::6", gossip.StateAlive), // another spelling of the same address
		rogue("gw9", "gw9", "pod2", "192.0.2.9"),                    // unregistered
		rogue("gw1", "gw1", "pod2", "198.51.100.11"),                // gw1 is pod1's
		rogue("gw2", "gw2", "pod2", "192.0.2.2"),                    // gw2's VTEP is .12
		rogue("sneaky", "gw2", "pod2", "198.51.100.12"),             // another node claiming gw2
		badMeta, deadStranger,
	}
	kept, ignored := BindMembers(members, gws)
	var names []string
	for _, m := range kept {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"gw1", "gw2", "gw6", "junk"}) {
		t.Fatalf("kept %v", names)
	}
	var reasons []string
	for _, i := range ignored {
		reasons = append(reasons, i.Member.Name+":"+i.Reason)
	}
	want := []string{"gw9:unregistered", "gw1:wrong_pod", "gw2:wrong_vtep", "sneaky:name_mismatch"}
	if !slices.Equal(reasons, want) {
		t.Fatalf("ignored %v, want %v (a dead stranger is dropped silently)", reasons, want)
	}
	if kept, _ := BindMembers(members, []api.PodGateway{}); len(kept) != 1 || kept[0].Name != "junk" {
		t.Fatalf("an empty list honours no claim: kept %+v", kept)
	}
}

func settled(st api.PodState, members ...gossip.Member) planInputs {
	now := time.Now()
	return planInputs{now: now, settleAt: now.Add(-time.Second), state: st, haveState: true, members: members,
		self: "gw1", pod: "pod1", handover: newHandover(0), populateMACs: true}
}

// A stranger claiming a pod's gateway with a high weight moves neither
// this pod's election nor the FDB entries of the pod it claims.
func TestPlanHonoursOnlyRegisteredGateways(t *testing.T) {
	st := stateWith(net1)
	st.Gateways = []api.PodGateway{{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.11"},
		{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.12"}, {ID: "gw3", PodID: "pod3", VTEP: "198.51.100.13"}}
	p, ok := planFor(settled(st,
		member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive),
		member("gw3", "pod3", "198.51.100.13", gossip.StateAlive),
		rogue("gw9", "gw9", "pod2", "192.0.2.9"),
		rogue("gw1x", "gw1x", "pod1", "192.0.2.10"),
		rogue("evil", "gw3", "pod3", "192.0.2.11"),
	))
	if !ok || len(p.Config.Networks) != 1 || len(p.Standby) != 0 {
		t.Fatalf("plan %+v (ok %v): want gw1 forwarding net1", p, ok)
	}
	n := p.Config.Networks[0]
	real := []netip.Addr{netip.MustParseAddr("198.51.100.12"), netip.MustParseAddr("198.51.100.13")}
	if !slices.Equal(n.Flood, real) {
		t.Fatalf("flood %v, want %v", n.Flood, real)
	}
	for _, e := range n.MACs {
		if !slices.Contains(real, e.VTEP) {
			t.Fatalf("MAC %s points at %s", e.MAC, e.VTEP)
		}
	}
	if len(p.Ignored) != 3 {
		t.Fatalf("ignored %+v: want the three strangers", p.Ignored)
	}
	// Unregistered itself, this gateway stands by for the one that is.
	st.Gateways = []api.PodGateway{{ID: "gw1b", PodID: "pod1", VTEP: "198.51.100.21"}}
	p, ok = planFor(settled(st, member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw1b", "pod1", "198.51.100.21", gossip.StateAlive)))
	if !ok || !slices.Equal(p.Standby, []uint32{4000}) {
		t.Fatalf("unregistered gw1: plan %+v, want standby for 4000", p)
	}
	// A state without the list (an older brain or cache) plans nothing.
	st.Gateways = nil
	if _, ok := planFor(settled(st, member("gw1", "pod1", "198.51.100.11", gossip.StateAlive))); ok {
		t.Fatal("planned without a gateway list")
	}
}

// downBrain is unreachable.
type downBrain struct{}

func (downBrain) RegisterGateway(context.Context, api.Gateway) (api.Gateway, error) {
	return api.Gateway{}, errors.New("connection refused")
}
func (downBrain) Watch(context.Context, string, int64, time.Duration, func(api.WatchEvent) error) error {
	return errors.New("connection refused")
}

// lastFlood is the flood list of vni in the dataplane's last successful Set.
func lastFlood(dp *fakeDataplane, vni uint32) []netip.Addr {
	h := dp.history()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].err != nil {
			continue
		}
		for _, n := range h[i].cfg.Networks {
			if n.VNI == vni {
				return n.Flood
			}
		}
		return nil
	}
	return nil
}

// With the brain down after a restart, the cached state's gateway list
// still decides: the registered gateway is honoured, a stranger is not,
// and the stranger is counted once and shown in /dataplane.
func TestAgentHonoursTheCachedGatewayListWhileTheBrainIsDown(t *testing.T) {
	dir := t.TempDir()
	st := podState(4, api.NetworkState{NetworkID: "n1", VNI: 4000, RemotePods: []string{"pod2"},
		RemotePorts: []api.RemotePort{{MAC: "fa:16:3e:00:00:02", PodID: "pod2"}}})
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "pod-state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	ms := newFakeMembership("gw1", member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2", "pod2", "198.51.100.12", gossip.StateAlive), rogue("gw9", "gw9", "pod2", "192.0.2.9"))
	dp := &fakeDataplane{}
	a := startAgent(t, Config{Hold: 10 * time.Millisecond, StateDir: dir, PopulateMACs: true}, ms, dp, downBrain{})
	gw2 := []netip.Addr{netip.MustParseAddr("198.51.100.12")}
	waitFor(t, "pod2's flood entry at gw2", func() bool { return slices.Equal(lastFlood(dp, 4000), gw2) })
	// gw2 dies and the stranger stays: pod2 is unreachable, and its entries
	// stay on gw2 rather than move to the stranger.
	ms.set(member("gw2", "pod2", "198.51.100.12", gossip.StateDead))
	n := len(dp.history())
	waitFor(t, "a plan after gw2 died", func() bool { return len(dp.history()) > n })
	if got := lastFlood(dp, 4000); !slices.Equal(got, gw2) {
		t.Fatalf("flood %v after gw2 died: want it kept at %v", got, gw2)
	}
	ms.set(rogue("gw9", "gw9", "pod2", "192.0.2.9")) // a change that triggers another plan
	waitFor(t, "another plan", func() bool { return len(dp.history()) > n+1 })
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `l2span_agent_gossip_ignored_members_total{reason="unregistered"} 1` + "\n"; !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("/metrics lacks %q (counted once, when it starts being ignored)", want)
	}
	v := a.dataplaneView(context.Background())
	if len(v.IgnoredMembers) != 1 || v.IgnoredMembers[0].Name != "gw9" || v.IgnoredMembers[0].Reason != IgnoreUnregistered {
		t.Fatalf("/dataplane ignored members: %+v", v.IgnoredMembers)
	}
}

// A gateway the brain registers later becomes effective when the pod
// state carries it.
func TestAgentHonoursAGatewayOnceTheBrainListsIt(t *testing.T) {
	st := podState(1, api.NetworkState{NetworkID: "n1", VNI: 4000, RemotePods: []string{"pod2"},
		RemotePorts: []api.RemotePort{{MAC: "fa:16:3e:00:00:02", PodID: "pod2"}}})
	st.Gateways = []api.PodGateway{{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.11"}}
	brain := &stateBrain{snapshot: st, updates: make(chan api.WatchEvent, 1)}
	ms := newFakeMembership("gw1", member("gw1", "pod1", "198.51.100.11", gossip.StateAlive),
		member("gw2new", "pod2", "198.51.100.12", gossip.StateAlive))
	dp := &fakeDataplane{}
	a := startAgent(t, Config{Hold: 10 * time.Millisecond, PopulateMACs: true}, ms, dp, brain)
	waitFor(t, "a plan", func() bool { return len(dp.history()) > 0 })
	if got := lastFlood(dp, 4000); len(got) != 0 {
		t.Fatalf("flood %v before the brain lists gw2new", got)
	}
	next := st
	next.Revision = 2
	next.Gateways = append(slices.Clone(st.Gateways), api.PodGateway{ID: "gw2new", PodID: "pod2", VTEP: "198.51.100.12"})
	brain.updates <- api.WatchEvent{Type: api.EventSnapshot, Revision: 2, State: &next}
	waitFor(t, "gw2new honoured", func() bool {
		return slices.Equal(lastFlood(dp, 4000), []netip.Addr{netip.MustParseAddr("198.51.100.12")})
	})
	if v := a.dataplaneView(context.Background()); len(v.IgnoredMembers) != 0 {
		t.Fatalf("still ignored: %+v", v.IgnoredMembers)
	}
}

func TestHealthzSaysGossipIsInsecure(t *testing.T) {
	ms := newFakeMembership("gw1", member("gw1", "pod1", "198.51.100.11", gossip.StateAlive))
	a := startAgent(t, Config{InsecureGossip: true}, ms, &fakeDataplane{}, downBrain{})
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if !strings.Contains(rec.Body.String(), "insecure gossip") {
		t.Fatalf("/healthz: %q", rec.Body.String())
	}
}
