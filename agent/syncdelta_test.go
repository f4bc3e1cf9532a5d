package agent

import (
	"reflect"
	"testing"

	"github.com/l2span/l2span/brain/api"
)

func rp(mac, pod string) api.RemotePort { return api.RemotePort{MAC: mac, PodID: pod} }

func TestApplyDelta(t *testing.T) {
	st := api.PodState{PodID: "pod1", Revision: 3, Networks: []api.NetworkState{
		{NetworkID: "a", VNI: 1, RemotePods: []string{"pod2"}, RemotePorts: []api.RemotePort{rp("00:00:00:00:00:01", "pod2"), rp("00:00:00:00:00:03", "pod2")}},
		{NetworkID: "b", VNI: 2, RemotePods: []string{"pod2"}, RemotePorts: []api.RemotePort{}},
	}}
	before := st.Networks[0].RemotePorts
	ev := api.WatchEvent{Type: api.EventDelta, Revision: 5,
		Networks: []api.NetworkState{{NetworkID: "c", VNI: 3, RemotePorts: []api.RemotePort{rp("00:00:00:00:00:09", "pod3")}}},
		Removed:  []string{"b"},
		Changes: []api.NetworkDelta{{NetworkID: "a",
			Header:      &api.NetworkHeader{VNI: 1, RemotePods: []string{"pod2", "pod3"}},
			RemovedMACs: []string{"00:00:00:00:00:01", "00:00:00:00:00:07"},
			Upserted:    []api.RemotePort{rp("00:00:00:00:00:04", "pod3"), rp("00:00:00:00:00:00", "pod3"), rp("00:00:00:00:00:03", "pod3")}}},
		Pod: &api.PodWide{DVRBaseMACs: map[string]string{"pod2": "fa:16:3f:00:00:00/24"}},
	}
	got := applyDelta(st, ev)
	want := api.PodState{PodID: "pod1", Revision: 5, Networks: []api.NetworkState{
		{NetworkID: "a", VNI: 1, RemotePods: []string{"pod2", "pod3"}, RemotePorts: []api.RemotePort{
			rp("00:00:00:00:00:00", "pod3"), rp("00:00:00:00:00:03", "pod3"), rp("00:00:00:00:00:04", "pod3")}},
		{NetworkID: "c", VNI: 3, RemotePorts: []api.RemotePort{rp("00:00:00:00:00:09", "pod3")}},
	}, DVRBaseMACs: map[string]string{"pod2": "fa:16:3f:00:00:00/24"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if before[0].MAC != "00:00:00:00:00:01" || len(st.Networks) != 2 {
		t.Fatal("applying a delta wrote through the state a reader may hold")
	}
}

// A delta without a pod part keeps the registered gateways (without them
// nothing is planned); one with a pod part replaces them, an empty list
// staying a list.
func TestApplyDeltaGateways(t *testing.T) {
	gws := []api.PodGateway{{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.11"}, {ID: "gw2", PodID: "pod2", VTEP: "198.51.100.12"}}
	st := api.PodState{PodID: "pod1", Revision: 3, Networks: []api.NetworkState{{NetworkID: "a", VNI: 1}},
		DVRBaseMACs: map[string]string{"pod2": "fa:16:3f:00:00:00/24"}, Gateways: gws}
	got := applyDelta(st, api.WatchEvent{Type: api.EventDelta, Revision: 4, Removed: []string{"a"}})
	if !reflect.DeepEqual(got.Gateways, gws) || len(got.DVRBaseMACs) != 1 || got.Revision != 4 {
		t.Fatalf("a delta without a pod part changed the pod-wide state: %+v", got)
	}
	got = applyUpdate(got, api.WatchEvent{Type: api.EventUpdate, Revision: 5})
	if !reflect.DeepEqual(got.Gateways, gws) {
		t.Fatalf("an update dropped the gateways: %+v", got)
	}
	moved := []api.PodGateway{{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.22"}}
	got = applyDelta(got, api.WatchEvent{Type: api.EventDelta, Revision: 6, Pod: &api.PodWide{DVRBaseMACs: map[string]string{}, Gateways: moved}})
	if !reflect.DeepEqual(got.Gateways, moved) || len(got.DVRBaseMACs) != 0 {
		t.Fatalf("a pod part: want gateways %+v, got %+v", moved, got)
	}
	moved[0].VTEP = "scribbled"
	if got.Gateways[0].VTEP != "198.51.100.22" {
		t.Fatal("the cached state shares the event's gateway list")
	}
	got = applyDelta(got, api.WatchEvent{Type: api.EventDelta, Revision: 7, Pod: &api.PodWide{Gateways: []api.PodGateway{}}})
	if got.Gateways == nil || len(got.Gateways) != 0 {
		t.Fatalf("every gateway deleted: want an empty, non-nil list, got %#v", got.Gateways)
	}
}
