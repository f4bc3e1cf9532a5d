package agent

import (
	"testing"
	"time"
)

func TestHandover(t *testing.T) {
	t0 := time.Unix(1000, 0)
	hold := 200 * time.Millisecond
	alive := map[string]bool{"a": true, "b": true}
	live := func(n string) bool { return alive[n] }

	// b forwards at start (first decision keeps what the kernel holds).
	hb := newHandover(hold)
	if fwd, _ := hb.decide(t0, 7, "b", "b", live); !fwd {
		t.Fatal("first decision of the DF must forward")
	}
	// a is a standby and learns b owns the network.
	ha := newHandover(hold)
	if fwd, _ := ha.decide(t0, 7, "b", "a", live); fwd {
		t.Fatal("standby forwards")
	}
	// b dies: a takes over at once.
	alive["b"] = false
	if fwd, _ := ha.decide(t0.Add(time.Second), 7, "a", "a", live); !fwd {
		t.Fatal("takeover from a dead DF must be immediate")
	}
	// b comes back and the hashing gives the network back to b: a releases
	// at once, b (which saw a own it) waits the hold before taking it.
	alive["b"] = true
	if fwd, _ := ha.decide(t0.Add(2*time.Second), 7, "b", "a", live); fwd {
		t.Fatal("the old DF must release at once")
	}
	hb2 := newHandover(hold)
	hb2.owner[7] = "a" // b restarted and has seen a forward the network
	fwd, retry := hb2.decide(t0.Add(2*time.Second), 7, "b", "b", live)
	if fwd || !retry.Equal(t0.Add(2*time.Second+hold)) {
		t.Fatalf("rebalance must wait the hold: forward=%v retry=%v", fwd, retry)
	}
	if fwd, _ := hb2.decide(t0.Add(2*time.Second+hold/2), 7, "b", "b", live); fwd {
		t.Fatal("took over before the hold ended")
	}
	if fwd, _ := hb2.decide(t0.Add(2*time.Second+hold), 7, "b", "b", live); !fwd {
		t.Fatal("did not take over after the hold")
	}
	// If the hashing moves away during the hold, the wait is forgotten.
	hc := newHandover(hold)
	hc.owner[9] = "a"
	hc.decide(t0, 9, "c", "c", live)
	hc.decide(t0.Add(50*time.Millisecond), 9, "a", "c", live)
	if _, waiting := hc.since[9]; waiting {
		t.Fatal("stale wait kept")
	}
	hc.forget(map[uint32]bool{})
	if len(hc.owner) != 0 {
		t.Fatal("forget kept owners")
	}
}
