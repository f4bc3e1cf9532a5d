package vtep

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

func hw(last byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, last} }

var (
	vtepA = netip.MustParseAddr("192.0.2.1")
	vtepB = netip.MustParseAddr("192.0.2.2")
	vtepC = netip.MustParseAddr("192.0.2.3")
	ip1   = netip.MustParseAddr("10.0.0.1")
	ip2   = netip.MustParseAddr("10.0.0.2")
)

func TestNormalizeConflicts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        Network
		macs      []MACEntry
		neighbors []Neighbor
		conflicts []string
	}{
		{
			name:      "sorted, exact duplicates merged silently",
			in:        Network{MACs: []MACEntry{{MAC: hw(2), VTEP: vtepB}, {MAC: hw(1), VTEP: vtepA}, {MAC: hw(2), VTEP: vtepB}}, Neighbors: []Neighbor{{ip2, hw(2)}, {ip1, hw(1)}, {ip1, hw(1)}}},
			macs:      []MACEntry{{MAC: hw(1), VTEP: vtepA}, {MAC: hw(2), VTEP: vtepB}},
			neighbors: []Neighbor{{ip1, hw(1)}, {ip2, hw(2)}},
		},
		{
			name: "a MAC behind two VTEPs: the lowest stays",
			in:   Network{MACs: []MACEntry{{MAC: hw(1), VTEP: vtepC}, {MAC: hw(1), VTEP: vtepA}, {MAC: hw(1), VTEP: vtepC}, {MAC: hw(1), VTEP: vtepB}}},
			macs: []MACEntry{{MAC: hw(1), VTEP: vtepA}},
			conflicts: []string{
				"vni 7: mac 02:00:00:00:00:01 claimed by both 192.0.2.1 and 192.0.2.2; kept 192.0.2.1",
				"vni 7: mac 02:00:00:00:00:01 claimed by both 192.0.2.1 and 192.0.2.3; kept 192.0.2.1",
			},
		},
		{
			name:      "an IP bound to two MACs: the lowest stays",
			in:        Network{Neighbors: []Neighbor{{ip1, hw(9)}, {ip2, hw(2)}, {ip1, hw(3)}}},
			neighbors: []Neighbor{{ip1, hw(3)}, {ip2, hw(2)}},
			conflicts: []string{"vni 7: ip 10.0.0.1 claimed by both 02:00:00:00:00:03 and 02:00:00:00:00:09; kept 02:00:00:00:00:03"},
		},
		{
			name:      "one MAC with two IPs is no conflict",
			in:        Network{Neighbors: []Neighbor{{ip2, hw(1)}, {ip1, hw(1)}}},
			neighbors: []Neighbor{{ip1, hw(1)}, {ip2, hw(1)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.VNI = 7
			// Every order of the input gives the same output and report.
			for _, reverse := range []bool{false, true} {
				in := tc.in
				if reverse {
					in.MACs, in.Neighbors = slices.Clone(in.MACs), slices.Clone(in.Neighbors)
					slices.Reverse(in.MACs)
					slices.Reverse(in.Neighbors)
				}
				orig := fmt.Sprint(in)
				out, conflicts := Config{Networks: []Network{in}}.NormalizeConflicts()
				n := out.Networks[0]
				if !reflect.DeepEqual(n.MACs, tc.macs) && (len(n.MACs) != 0 || len(tc.macs) != 0) {
					t.Errorf("reverse=%v: MACs %v, want %v", reverse, n.MACs, tc.macs)
				}
				if !reflect.DeepEqual(n.Neighbors, tc.neighbors) && (len(n.Neighbors) != 0 || len(tc.neighbors) != 0) {
					t.Errorf("reverse=%v: neighbors %v, want %v", reverse, n.Neighbors, tc.neighbors)
				}
				var got []string
				for _, c := range conflicts {
					got = append(got, c.String())
				}
				if !slices.Equal(got, tc.conflicts) {
					t.Errorf("reverse=%v: conflicts\n  %q\nwant\n  %q", reverse, got, tc.conflicts)
				}
				if fmt.Sprint(in) != orig {
					t.Errorf("reverse=%v: the input changed", reverse)
				}
			}
		})
	}
}

func TestNormalizeSortsNetworksAndFlood(t *testing.T) {
	cfg := Config{Networks: []Network{
		{VNI: 200, Flood: []netip.Addr{vtepB, vtepA, vtepB}},
		{VNI: 100},
	}}
	out := cfg.Normalize()
	if out.Networks[0].VNI != 100 || out.Networks[1].VNI != 200 {
		t.Errorf("networks not sorted: %+v", out.Networks)
	}
	if got := out.Networks[1].Flood; !slices.Equal(got, []netip.Addr{vtepA, vtepB}) {
		t.Errorf("flood %v", got)
	}
	if cfg.Networks[0].VNI != 200 || len(cfg.Networks[0].Flood) != 3 {
		t.Error("Normalize changed its input")
	}
	if again := out.Normalize(); !reflect.DeepEqual(again, out) {
		t.Error("Normalize is not idempotent")
	}
}
