package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"

	"github.com/l2span/l2span/vtep/linux"
)

// podSideFlags make a linux gateway a tunnel endpoint of its pod's own
// VXLAN mesh (the pod's Neutron binds shadow ports to its shadow tunnel IP).
type podSideFlags struct {
	vtep, dev string
	port      uint
}

func (p *podSideFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.vtep, "pod-vtep", "", "linux: the pod's shadow tunnel IP with its prefix length (e.g. 198.51.100.200/24); "+
		"set, the gateway joins its pod's VXLAN mesh: the pod's gateways elect one forwarder, which holds this address "+
		"(gratuitous ARP on takeover) and bridges each network's pod segment to the overlay")
	fs.StringVar(&p.dev, "pod-vtep-dev", "", "linux: device that holds -pod-vtep (default: -underlay-dev)")
	fs.UintVar(&p.port, "pod-vxlan-port", linux.DefaultPodPort, "linux: the VXLAN UDP port of the pod's own mesh (Linux bridge agents: 8472)")
}

// options are the backend's PodOptions; zero when -pod-vtep is not set.
func (p podSideFlags) options(backend string) (linux.PodOptions, error) {
	if p.vtep == "" {
		return linux.PodOptions{}, nil
	}
	if backend != "linux" && backend != "" {
		return linux.PodOptions{}, fmt.Errorf("pod-vtep: only the linux backend serves a pod side, not %q", backend)
	}
	pf, err := netip.ParsePrefix(p.vtep)
	if err != nil {
		return linux.PodOptions{}, fmt.Errorf("pod-vtep %q: want an address with its prefix length: %w", p.vtep, err)
	}
	if p.port == 0 || p.port > 65535 {
		return linux.PodOptions{}, errors.New("pod-vxlan-port: out of range 1-65535")
	}
	return linux.PodOptions{VTEP: pf, Dev: p.dev, Port: uint16(p.port)}, nil
}
