package state

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/model"
)

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func seg(net, pod, typ string, id int) model.Segment {
	return model.Segment{NetworkID: net, PodID: pod, NetworkType: typ, SegmentationID: id, CreatedAt: t0}
}

func port(net, pod, mac string, seq int64, ips ...string) model.Port {
	if ips == nil {
		ips = []string{}
	}
	return model.Port{ID: net + "-" + mac, NetworkID: net, PodID: pod, MAC: mac, IPs: ips, MobilitySeq: seq}
}

var vx = model.Network{ID: "n1", Name: "blue", Type: model.TypeSharedVXLAN, SegmentationID: 5001}

func TestNetwork(t *testing.T) {
	tests := []struct {
		name   string
		pod    string
		in     NetworkRows
		want   NetworkState
		wantOK bool
	}{{
		name: "spanned: remote pods, ports and subnets sorted; own pod's ports left out",
		pod:  "pod1",
		in: NetworkRows{
			Network:  vx,
			Segments: []model.Segment{seg("n1", "pod3", "vxlan", 5001), seg("n1", "pod1", "vxlan", 5001), seg("n1", "pod2", "vxlan", 5001)},
			Ports: []model.Port{
				port("n1", "pod3", "fa:16:3e:00:00:03", 2, "10.0.0.3"),
				port("n1", "pod1", "fa:16:3e:00:00:01", 0, "10.0.0.1"),
				port("n1", "pod2", "fa:16:3e:00:00:02", 0),
			},
			Subnets: []model.Subnet{{NetworkID: "n1", CIDR: "fd00::/64"}, {NetworkID: "n1", CIDR: "10.0.0.0/24", GatewayIP: "10.0.0.1"}},
		},
		want: NetworkState{NetworkID: "n1", Name: "blue", Type: model.TypeSharedVXLAN, VNI: 5001,
			LocalSegment: seg("n1", "pod1", "vxlan", 5001),
			RemotePods:   []string{"pod2", "pod3"},
			RemotePorts: []RemotePort{
				{MAC: "fa:16:3e:00:00:02", PodID: "pod2"},
				{MAC: "fa:16:3e:00:00:03", PodID: "pod3", Seq: 2, IPs: []string{"10.0.0.3"}},
			},
			Subnets: []SubnetGateway{{CIDR: "10.0.0.0/24", GatewayIP: "10.0.0.1"}, {CIDR: "fd00::/64"}},
		},
		wantOK: true,
	}, {
		name: "mixed network: the pod's own reported segment, no ports, no subnets",
		pod:  "pod2",
		in: NetworkRows{
			Network:  model.Network{ID: "n2", Name: "m", Type: model.TypeMixedVLANVXLAN, SegmentationID: 7000},
			Segments: []model.Segment{seg("n2", "pod1", "vxlan", 33), seg("n2", "pod2", "vlan", 100)},
		},
		want: NetworkState{NetworkID: "n2", Name: "m", Type: model.TypeMixedVLANVXLAN, VNI: 7000,
			LocalSegment: seg("n2", "pod2", "vlan", 100), RemotePods: []string{"pod1"}, RemotePorts: []RemotePort{}},
		wantOK: true,
	}, {
		name: "only in this pod: not spanned",
		pod:  "pod1",
		in:   NetworkRows{Network: vx, Segments: []model.Segment{seg("n1", "pod1", "vxlan", 5001)}},
	}, {
		name: "not in this pod",
		pod:  "pod9",
		in:   NetworkRows{Network: vx, Segments: []model.Segment{seg("n1", "pod1", "vxlan", 5001), seg("n1", "pod2", "vxlan", 5001)}},
	}, {
		name: "shared_vlan is carried by the fabric, not the gateways",
		pod:  "pod1",
		in: NetworkRows{Network: model.Network{ID: "n3", Type: model.TypeSharedVLAN, SegmentationID: 100},
			Segments: []model.Segment{seg("n3", "pod1", "vlan", 100), seg("n3", "pod2", "vlan", 100)}},
	}, {
		name: "local",
		pod:  "pod1",
		in:   NetworkRows{Network: model.Network{ID: "n4", Type: model.TypeLocal}, Segments: []model.Segment{seg("n4", "pod1", "local", 0)}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Network(tt.pod, tt.in)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPod(t *testing.T) {
	rows := Group(
		[]model.Network{{ID: "nb", Type: model.TypeSharedVXLAN, SegmentationID: 2}, {ID: "na", Type: model.TypeSharedVXLAN, SegmentationID: 1}, {ID: "nc", Type: model.TypeSharedVXLAN}},
		[]model.Segment{seg("na", "pod1", "vxlan", 1), seg("na", "pod2", "vxlan", 1), seg("nb", "pod1", "vxlan", 2), seg("nb", "pod2", "vxlan", 2), seg("nc", "pod1", "vxlan", 0), seg("zz", "pod2", "vxlan", 9)},
		[]model.Port{port("nb", "pod2", "fa:16:3e:00:00:0b", 0), port("zz", "pod2", "fa:16:3e:00:00:ff", 0)},
		[]model.Subnet{{NetworkID: "na", CIDR: "10.1.0.0/24"}},
	)
	pods := []model.Pod{{ID: "pod1", DVRBaseMAC: "fa:16:3f:00:00:00/24"}, {ID: "pod2", DVRBaseMAC: "fa:16:3f:01:00:00/24"}, {ID: "pod3"}}
	st := Pod("pod1", 42, rows, pods, []model.Gateway{{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.2"}, {ID: "gw1", PodID: "pod1", VTEP: "198.51.100.1"}})
	if st.PodID != "pod1" || st.Revision != 42 {
		t.Fatalf("pod %q revision %d", st.PodID, st.Revision)
	}
	if len(st.Networks) != 2 || st.Networks[0].NetworkID != "na" || st.Networks[1].NetworkID != "nb" {
		t.Fatalf("want spanned networks na, nb in order, got %+v", st.Networks)
	}
	if len(st.Networks[0].Subnets) != 1 || len(st.Networks[0].RemotePorts) != 0 || len(st.Networks[1].RemotePorts) != 1 {
		t.Fatalf("rows went to the wrong network: %+v", st.Networks)
	}
	if want := map[string]string{"pod2": "fa:16:3f:01:00:00/24"}; !reflect.DeepEqual(st.DVRBaseMACs, want) {
		t.Fatalf("dvr base macs %v, want %v", st.DVRBaseMACs, want)
	}
	if want := []Gateway{{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.1"}, {ID: "gw2", PodID: "pod2", VTEP: "198.51.100.2"}}; !slices.Equal(st.Gateways, want) {
		t.Fatalf("gateways %v, want every pod's, by id: %v", st.Gateways, want)
	}
	if empty := Pod("pod9", 1, nil, nil, nil); empty.Networks == nil || len(empty.Networks) != 0 || empty.Gateways == nil {
		t.Fatalf("a pod without networks or gateways has empty, non-nil lists, got %#v %#v", empty.Networks, empty.Gateways)
	}
}

func TestGateways(t *testing.T) {
	got := Gateways([]model.Gateway{
		{ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12", Backend: "linux", DVRMAC: "fa:16:3f:00:00:02"},
		{ID: "pod1-gw", PodID: "pod1", VTEP: "198.51.100.11"},
	})
	want := []Gateway{{ID: "pod1-gw", PodID: "pod1", VTEP: "198.51.100.11"}, {ID: "pod2-gw", PodID: "pod2", VTEP: "198.51.100.12"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Gateways = %+v, want %+v", got, want)
	}
	if g := Gateways(nil); g == nil || len(g) != 0 {
		t.Fatalf("no gateways: want an empty list, got %#v", g)
	}
}
