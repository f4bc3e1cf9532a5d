package gossip

import "testing"

// TestDFPodVTEP: gateways that serve their pod's side through one VTEP
// give the pod one forwarder for every network, the one every agent
// computes from the same members (the meta flag survives the wire), and it
// moves as a whole when that gateway goes.
func TestDFPodVTEP(t *testing.T) {
	ms := dfGateways(4)
	for i := range ms {
		ms[i].Meta.PodVTEP = true
		b, err := ms[i].Meta.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Meta
		if err := back.UnmarshalBinary(b); err != nil || !back.PodVTEP {
			t.Fatalf("PodVTEP lost on the wire: %+v, %v", back, err)
		}
	}
	c := shares(assign(t, ms))
	if len(c) != 1 {
		t.Fatalf("forwarders %v, want one for every network", c)
	}
	var df string
	for gw := range c {
		df = gw
	}
	var rest []Member
	for _, m := range ms {
		if m.Meta.GatewayID != df {
			rest = append(rest, m)
		}
	}
	c2 := shares(assign(t, rest))
	if _, still := c2[df]; still || len(c2) != 1 {
		t.Fatalf("after %s left: %v, want one other forwarder", df, c2)
	}
	// Without the flag the networks spread again.
	if c := shares(assign(t, dfGateways(4))); len(c) != 4 {
		t.Fatalf("without PodVTEP: %v", c)
	}
}
