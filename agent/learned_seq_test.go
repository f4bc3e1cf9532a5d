package agent

import (
	"slices"
	"testing"

	"github.com/l2span/l2span/brain/api"
)

// TestLearnerSequencedMoves is the EVPN path: the fabric's MAC Mobility
// sequence decides whether a MAC seen in this pod is a move.
func TestLearnerSequencedMoves(t *testing.T) {
	const mac = "fa:16:3e:00:00:02"
	for _, tc := range []struct {
		name      string
		brainSeq  int64
		sequenced bool
		seq       uint32
		sticky    bool
		want      []string
	}{
		{name: "newer fabric sequence moves with it", brainSeq: 3, sequenced: true, seq: 5, want: []string{"move " + mac + " pod1 5"}},
		{name: "one newer", brainSeq: 3, sequenced: true, seq: 4, want: []string{"move " + mac + " pod1 4"}},
		{name: "first move of a never-moved port", brainSeq: 0, sequenced: true, seq: 1, want: []string{"move " + mac + " pod1 1"}},
		{name: "same sequence is the fabric's stale route", brainSeq: 3, sequenced: true, seq: 3},
		{name: "older sequence is left", brainSeq: 3, sequenced: true, seq: 2},
		{name: "no mobility community (seq 0) after a move is stale", brainSeq: 1, sequenced: true, seq: 0},
		{name: "sticky wins over a newer placement", brainSeq: 3, sequenced: true, seq: 0, sticky: true, want: []string{"move " + mac + " pod1 4"}},
		{name: "sticky with a higher sequence keeps it", brainSeq: 3, sequenced: true, seq: 9, sticky: true, want: []string{"move " + mac + " pod1 9"}},
		{name: "unsequenced source (hwvtep) bumps the brain's", brainSeq: 3, want: []string{"move " + mac + " pod1 4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLearnRig(t, api.Port{ID: "vm2", NetworkID: "net-a", PodID: "pod2", MAC: mac, DeviceOwner: "compute:nova", MobilitySeq: tc.brainSeq})
			m := local(100, mac, "")
			m.Sequenced, m.Seq, m.Sticky = tc.sequenced, tc.seq, tc.sticky
			r.sw.set(m)
			r.sync(t)
			if w := r.brain.takeWrites(); !slices.Equal(w, tc.want) {
				t.Fatalf("writes = %q, want %q", w, tc.want)
			}
			p, _ := r.brain.port("net-a", mac)
			wantPod := "pod2"
			if len(tc.want) > 0 {
				wantPod = "pod1"
			}
			if p.PodID != wantPod {
				t.Fatalf("port in %s, want %s", p.PodID, wantPod)
			}
			// A second pass with the same report writes nothing.
			r.sync(t)
			if w := r.brain.takeWrites(); len(w) != 0 {
				t.Fatalf("second pass writes = %q", w)
			}
		})
	}
}
