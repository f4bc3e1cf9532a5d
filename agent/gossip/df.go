package gossip

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math"
	"slices"
)

// PodKey is the election key of a pod with one forwarder for every network
// (no network has VNI 0).
const PodKey uint32 = 0

// DF picks the designated forwarder of network vni in pod among members
// that may forward (Member.Forwarder) by weighted rendezvous hashing: each
// candidate scores -weight/ln(h) with h a uniform hash of (vni, gateway id)
// in (0,1), and the highest score wins. Every agent computes the same
// answer from the same view; a gateway's share of networks is proportional
// to its weight; removing a gateway moves only the networks it was DF for.
// false when the pod has no candidate.
//
// A pod whose gateways serve its side through one virtual tunnel IP
// (Meta.PodVTEP, on any candidate) has one forwarder for all its networks:
// the IP can be held by one gateway only, so the election key is the pod's,
// not the network's, and every agent of every pod agrees on it.
func DF(vni uint32, pod string, members []Member) (Member, bool) {
	if slices.ContainsFunc(members, func(m Member) bool { return m.Meta.Pod == pod && m.Forwarder() && m.Meta.PodVTEP }) {
		vni = PodKey
	}
	var (
		best      Member
		bestScore float64
		found     bool
	)
	for _, m := range members {
		if m.Meta.Pod != pod || !m.Forwarder() {
			continue
		}
		s := dfScore(vni, m.Meta.GatewayID, m.Meta.Weight)
		if !found || s > bestScore || (s == bestScore && dfTieBreak(m, best) < 0) {
			best, bestScore, found = m, s, true
		}
	}
	return best, found
}

func dfTieBreak(a, b Member) int {
	if c := cmp.Compare(a.Meta.GatewayID, b.Meta.GatewayID); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// dfScore is the weighted rendezvous score of gateway gw for vni.
func dfScore(vni uint32, gw string, weight uint16) float64 {
	if weight == 0 {
		weight = DefaultWeight
	}
	h := fnv.New64a()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], vni)
	h.Write(b[:])
	h.Write([]byte(gw))
	x := mix64(h.Sum64())
	// 53 random bits -> (0,1), never 0 or 1.
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return -float64(weight) / math.Log(u)
}

// mix64 is the murmur3 finalizer: FNV-1a alone mixes short inputs that
// differ only in their last bytes poorly.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// PodForwarders groups the members that may forward (Member.Forwarder) by
// pod, each group sorted by gateway id.
func PodForwarders(members []Member) map[string][]Member {
	out := make(map[string][]Member)
	for _, m := range members {
		if m.Forwarder() {
			out[m.Meta.Pod] = append(out[m.Meta.Pod], m)
		}
	}
	for _, ms := range out {
		slices.SortFunc(ms, dfTieBreak)
	}
	return out
}
