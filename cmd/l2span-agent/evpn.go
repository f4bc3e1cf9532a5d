package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/l2span/l2span/agent"
	"github.com/l2span/l2span/vtep/evpn"
	"github.com/l2span/l2span/vtep/linux"
)

// evpnFlags are the flags of --backend evpn.
type evpnFlags struct {
	asn                 uint
	routerID, vtep      string
	neighbors           string
	rd, rt              string
	restart, llgr, hold time.Duration
	fabricPort          uint
	listen              string
	listenPort          int
	importWait          time.Duration
	speakerSocket       string
}

func (e *evpnFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&e.asn, "evpn-asn", 0, "evpn: this gateway's AS number (required)")
	fs.StringVar(&e.routerID, "evpn-router-id", "", "evpn: BGP router id (default: the VTEP when IPv4)")
	fs.StringVar(&e.vtep, "evpn-vtep", "", "evpn: this gateway's VTEP in the pod's fabric, next hop of its routes (default: --vtep)")
	fs.StringVar(&e.neighbors, "evpn-neighbors", "", "evpn: comma-separated ADDRESS:REMOTE_AS of the fabric's route reflectors or leaves ([v6]:AS for IPv6)")
	fs.StringVar(&e.rd, "evpn-rd", evpn.DefaultTemplate, "evpn: route distinguisher per VNI, ADMIN:NUMBER with {asn} and {vni}")
	fs.StringVar(&e.rt, "evpn-rt", evpn.DefaultTemplate, "evpn: route target per VNI (export and import), ADMIN:NUMBER with {asn} and {vni}")
	fs.DurationVar(&e.restart, "evpn-restart-time", evpn.DefaultRestartTime, "evpn: graceful-restart time the fabric keeps this gateway's routes while it restarts")
	fs.DurationVar(&e.llgr, "evpn-llgr-stale-time", 0, "evpn: long-lived graceful-restart stale time after the restart time (0: off)")
	fs.DurationVar(&e.hold, "evpn-hold-time", evpn.DefaultHoldTime, "evpn: BGP hold time (keepalive a third of it)")
	fs.UintVar(&e.fabricPort, "evpn-fabric-port", evpn.DefaultFabricPort, "evpn: the fabric's VXLAN UDP port (the inter-pod --vxlan-port must differ)")
	fs.StringVar(&e.listen, "evpn-listen", "", "evpn: address BGP listens on (default: all)")
	fs.IntVar(&e.listenPort, "evpn-listen-port", 179, "evpn: port BGP listens on (-1: only connect out)")
	fs.StringVar(&e.speakerSocket, "evpn-speaker-socket", "", "evpn: API socket of l2span-bgpd, which holds the BGP sessions so an agent restart never drops them (empty: BGP runs inside the agent and a restart drops the sessions)")
	fs.DurationVar(&e.importWait, "evpn-import-wait", evpn.DefaultImportWait, "evpn: longest wait at start for the fabric's End-of-RIB before the pod-side FDB is reprogrammed")
}

// options turns the flags into evpn options (without SocketDir, Overlay
// and Logger) and checks them, naming the flag at fault.
func (e *evpnFlags) options(vtep netip.Addr) (evpn.Options, error) {
	o := evpn.Options{RD: e.rd, RT: e.rt, RestartTime: e.restart, LongLivedStaleTime: e.llgr, HoldTime: e.hold,
		ImportWait: e.importWait, VTEP: vtep, SpeakerSocket: e.speakerSocket}
	if e.speakerSocket != "" && !filepath.IsAbs(e.speakerSocket) {
		return o, fmt.Errorf("evpn-speaker-socket %q: want an absolute path", e.speakerSocket)
	}
	if e.asn == 0 || e.asn > 1<<32-1 {
		return o, fmt.Errorf("evpn-asn %d: want 1-4294967295", e.asn)
	}
	o.ASN = uint32(e.asn)
	var err error
	if e.routerID != "" {
		if o.RouterID, err = netip.ParseAddr(e.routerID); err != nil || !o.RouterID.Is4() {
			return o, fmt.Errorf("evpn-router-id %q: not an IPv4 address", e.routerID)
		}
	}
	if e.vtep != "" {
		if o.VTEP, err = netip.ParseAddr(e.vtep); err != nil {
			return o, fmt.Errorf("evpn-vtep %q: not an IP address", e.vtep)
		}
	}
	if e.listen != "" {
		if o.ListenAddress, err = netip.ParseAddr(e.listen); err != nil {
			return o, fmt.Errorf("evpn-listen %q: not an IP address", e.listen)
		}
	}
	if e.listenPort == 0 || e.listenPort < -1 || e.listenPort > 65535 {
		return o, fmt.Errorf("evpn-listen-port %d: want 1-65535 or -1", e.listenPort)
	}
	o.ListenPort = int32(e.listenPort)
	if e.fabricPort == 0 || e.fabricPort > 65535 {
		return o, fmt.Errorf("evpn-fabric-port %d: want 1-65535", e.fabricPort)
	}
	o.FabricPort = uint16(e.fabricPort)
	if e.importWait <= 0 {
		return o, fmt.Errorf("evpn-import-wait %s: must be positive", e.importWait)
	}
	if o.Neighbors, err = parseNeighbors(e.neighbors); err != nil {
		return o, fmt.Errorf("evpn-neighbors: %w", err)
	}
	return o, nil
}

// parseNeighbors reads "ADDR:AS,[V6ADDR]:AS".
func parseNeighbors(s string) ([]evpn.Neighbor, error) {
	var out []evpn.Neighbor
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		i := strings.LastIndex(item, ":")
		if i < 0 {
			return nil, fmt.Errorf("%q: want ADDRESS:REMOTE_AS", item)
		}
		addr, err := netip.ParseAddr(strings.Trim(item[:i], "[]"))
		if err != nil {
			return nil, fmt.Errorf("%q: address: %w", item, err)
		}
		as, err := strconv.ParseUint(item[i+1:], 10, 32)
		if err != nil || as == 0 {
			return nil, fmt.Errorf("%q: remote AS %q: want 1-4294967295", item, item[i+1:])
		}
		out = append(out, evpn.Neighbor{Address: addr, RemoteAS: uint32(as)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("at least one neighbor is required with backend evpn")
	}
	return out, nil
}

// openEVPN opens the EVPN backend: the inter-pod overlay as the linux
// backend would build it, GoBGP's API socket under the state dir.
func openEVPN(ctx context.Context, f *flags, cfg agent.Config) (*evpn.Backend, error) {
	o := f.evpn
	o.Overlay = linux.Options{LocalVTEP: cfg.VTEP, UnderlayDev: f.underlay, Port: uint16(f.vxlanPort), MTU: f.mtu, Prefix: f.prefix,
		Logger: cfg.Logger.With("component", "vtep")}
	o.Logger = cfg.Logger.With("component", "evpn")
	dir := f.stateDir
	if dir == "" {
		d, err := os.MkdirTemp("", "l2span-agent-")
		if err != nil {
			return nil, fmt.Errorf("evpn socket dir: %w", err)
		}
		dir = d
	}
	o.SocketDir = filepath.Join(dir, "gobgp")
	b, err := evpn.New(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("open evpn dataplane: %w", err)
	}
	return b, nil
}
