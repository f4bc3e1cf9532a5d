package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

const dfVNIs = 10000

func dfMember(pod, gw string, weight uint16) Member {
	m := testMeta(pod, gw)
	m.Weight = weight
	return Member{Name: gw, State: StateAlive, Meta: m.normalized()}
}

func dfGateways(n int) []Member {
	var ms []Member
	for i := range n {
		ms = append(ms, dfMember("pod1", fmt.Sprintf("gw-%d", i), 0))
	}
	return ms
}

// assign maps each VNI to the gateway id of its DF.
func assign(t *testing.T, ms []Member) map[uint32]string {
	t.Helper()
	out := make(map[uint32]string, dfVNIs)
	for vni := uint32(1); vni <= dfVNIs; vni++ {
		m, ok := DF(vni, "pod1", ms)
		if !ok {
			t.Fatalf("vni %d: no DF", vni)
		}
		out[vni] = m.Meta.GatewayID
	}
	return out
}

func shares(a map[uint32]string) map[string]int {
	c := map[string]int{}
	for _, gw := range a {
		c[gw]++
	}
	return c
}

func TestDFDistribution(t *testing.T) {
	ms := dfGateways(4)
	c := shares(assign(t, ms))
	t.Logf("4 gateways, %d VNIs: %v", dfVNIs, c)
	for gw, n := range c {
		if n < 2375 || n > 2625 { // 2500 +-5 %
			t.Errorf("%s has %d networks, want 2500 +-5%%", gw, n)
		}
	}
	if len(c) != 4 {
		t.Errorf("%d gateways used", len(c))
	}
}

func TestDFWeights(t *testing.T) {
	ms := []Member{dfMember("pod1", "gw-a", 100), dfMember("pod1", "gw-b", 100), dfMember("pod1", "gw-c", 200)}
	c := shares(assign(t, ms))
	t.Logf("weights 100/100/200: %v", c)
	for gw, want := range map[string]int{"gw-a": 2500, "gw-b": 2500, "gw-c": 5000} {
		if d := c[gw] - want; d < -want/20 || d > want/20 {
			t.Errorf("%s has %d networks, want %d +-5%%", gw, c[gw], want)
		}
	}
}

func TestDFMinimalMovement(t *testing.T) {
	ms := dfGateways(4)
	before := assign(t, ms)

	// Remove gw-2: only its networks move, spread over the others.
	after := assign(t, append(append([]Member{}, ms[:2]...), ms[3]))
	moved := map[string]int{}
	for vni, gw := range before {
		if gw == "gw-2" {
			moved[after[vni]]++
		} else if after[vni] != gw {
			t.Fatalf("vni %d moved %s -> %s though its DF stayed", vni, gw, after[vni])
		}
	}
	t.Logf("gw-2's %d networks went to %v", shares(before)["gw-2"], moved)
	for gw, n := range moved {
		if n < 700 || n > 970 { // ~2500/3
			t.Errorf("%s took %d of gw-2's networks, want ~833", gw, n)
		}
	}

	// Mark gw-2 unhealthy instead: same answer as removal.
	ms2 := append([]Member{}, ms...)
	ms2[2].Meta.Healthy = false
	if got := assign(t, ms2); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Error("unhealthy gateway is not the same as a removed one")
	}

	// Add gw-4: networks only move to it.
	grown := assign(t, append(append([]Member{}, ms...), dfMember("pod1", "gw-4", 0)))
	n := 0
	for vni, gw := range grown {
		if gw != before[vni] {
			if gw != "gw-4" {
				t.Fatalf("vni %d moved %s -> %s on adding gw-4", vni, before[vni], gw)
			}
			n++
		}
	}
	if n < 1900 || n > 2100 {
		t.Errorf("gw-4 took %d networks, want ~2000", n)
	}
}

func TestDFOrderIndependent(t *testing.T) {
	ms := dfGateways(5)
	want := assign(t, ms)
	r := rand.New(rand.NewPCG(1, 2))
	for range 3 {
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		if got := assign(t, ms); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatal("DF depends on member order")
		}
	}
}

func TestDFEligibility(t *testing.T) {
	good := dfMember("pod1", "gw-good", 0)
	suspect := dfMember("pod1", "gw-suspect", 0)
	suspect.State = StateSuspect
	var ineligible []Member
	for _, st := range []State{StateLeaving, StateDead, StateLeft} {
		m := dfMember("pod1", "gw-"+st.String(), 0)
		m.State = st
		ineligible = append(ineligible, m)
	}
	unhealthy := dfMember("pod1", "gw-sick", 0)
	unhealthy.Meta.Healthy = false
	bad := Member{Name: "gw-bad", State: StateAlive, MetaErr: errors.New("bad"), Meta: Meta{Pod: "pod1", GatewayID: "gw-bad", Healthy: true, Weight: 100}}
	other := dfMember("pod2", "gw-other", 0)
	ineligible = append(ineligible, unhealthy, bad, other)

	for vni := uint32(1); vni <= 200; vni++ {
		m, ok := DF(vni, "pod1", append([]Member{good}, ineligible...))
		if !ok || m.Name != "gw-good" {
			t.Fatalf("vni %d: DF %q %v, want gw-good", vni, m.Name, ok)
		}
	}
	// A suspect gateway still forwards: only its prober sees suspicion.
	c := map[string]int{}
	for vni := uint32(1); vni <= 200; vni++ {
		m, _ := DF(vni, "pod1", []Member{good, suspect})
		c[m.Name]++
	}
	if c["gw-suspect"] == 0 {
		t.Error("suspect gateway never DF")
	}
	if _, ok := DF(1, "pod1", ineligible); ok {
		t.Error("DF among ineligible members")
	}
	if _, ok := DF(1, "pod3", nil); ok {
		t.Error("DF in empty pod")
	}

	p := PodForwarders(append([]Member{suspect, good}, ineligible...))
	if len(p) != 2 || len(p["pod1"]) != 2 || p["pod1"][0].Name != "gw-good" || len(p["pod2"]) != 1 {
		t.Errorf("PodForwarders = %v", p)
	}
}
