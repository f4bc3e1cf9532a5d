package evpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/l2span/l2span/vtep"
)

// batchSize is how many paths one AddPathStream message carries: GoBGP
// applies each message in one step of its main loop (per-call AddPath did
// ~3.5k paths/s here).
const batchSize = 2000

var familyEVPN = &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}

// speaker is the GoBGP server this backend embeds. Paths go in through
// GoBGP's own AddPathStream over a private unix socket (the library has
// no batched call of its own); everything else is a direct call.
type speaker struct {
	opts   Options
	srv    *server.BgpServer
	conn   *grpc.ClientConn
	client api.GobgpApiClient
	log    *slog.Logger
	// rtVNI maps a route target's text to the VNI it imports into.
	peersAdded bool
}

func startSpeaker(ctx context.Context, o Options) (*speaker, error) {
	dir := o.SocketDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gobgp socket dir: %w", err)
	}
	sock := filepath.Join(dir, "gobgp.sock")
	// A socket left by a killed agent would make GoBGP's listen fail (fatally).
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale gobgp socket: %w", err)
	}
	lg := &slogAdapter{l: o.Logger.With("component", "gobgp")}
	srv := server.NewBgpServer(server.GrpcListenAddress("unix://"+sock), server.LoggerOption(lg))
	go srv.Serve()
	s := &speaker{opts: o, srv: srv, log: o.Logger}
	listen := []string{}
	if o.ListenAddress.IsValid() {
		listen = []string{o.ListenAddress.String()}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: o.ASN, RouterId: o.RouterID.String(),
		ListenPort: o.ListenPort, ListenAddresses: listen}}); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("start bgp: %w", err)
	}
	// The gRPC listener comes up in the background.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			srv.Stop()
			return nil, errors.New("gobgp api socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.Dial("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("connect to gobgp api: %w", err)
	}
	s.conn, s.client = conn, api.NewGobgpApiClient(conn)
	return s, nil
}

// addPeers configures the neighbors; called once our routes are in the
// RIB, so the first UPDATEs a restarted agent sends are complete and the
// End-of-RIB that follows lets the fabric drop only what really went.
func (s *speaker) addPeers(ctx context.Context) error {
	if s.peersAdded {
		return nil
	}
	var errs []error
	for _, n := range s.opts.Neighbors {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peerConf(n)}); err != nil {
			errs = append(errs, fmt.Errorf("add neighbor %s: %w", n.Address, err))
		}
	}
	s.peersAdded = len(errs) == 0
	return errors.Join(errs...)
}

func (s *speaker) peerConf(n Neighbor) *api.Peer {
	gr := uint32(s.opts.RestartTime / time.Second)
	llgr := uint32(s.opts.LongLivedStaleTime / time.Second)
	afi := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: familyEVPN, Enabled: true}}
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.RemoteAS},
		Timers: &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5,
			HoldTime: uint64(s.opts.HoldTime / time.Second), KeepaliveInterval: uint64(s.opts.HoldTime / 3 / time.Second)}},
		AfiSafis: []*api.AfiSafi{afi},
	}
	if s.opts.Port != 0 {
		p.Transport = &api.Transport{RemotePort: uint32(s.opts.Port)}
	}
	if gr > 0 {
		// Restarting (R and F bits) on every start: the kernel kept
		// forwarding while we were gone, and a fabric that holds our
		// routes as stale must not drop them when we come back.
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: gr, LonglivedEnabled: llgr > 0,
			LocalRestarting: true, NotificationEnabled: true}
		afi.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		if llgr > 0 {
			afi.LongLivedGracefulRestart = &api.LongLivedGracefulRestart{Config: &api.LongLivedGracefulRestartConfig{Enabled: true, RestartTime: llgr}}
		}
	}
	return p
}

// send withdraws then advertises, in batches over one stream each.
func (s *speaker) send(ctx context.Context, nets netAttrs, withdraw, advertise []route) error {
	for _, part := range []struct {
		rs       []route
		withdraw bool
	}{{withdraw, true}, {advertise, false}} {
		if len(part.rs) == 0 {
			continue
		}
		stream, err := s.client.AddPathStream(ctx)
		if err != nil {
			return fmt.Errorf("open gobgp path stream: %w", err)
		}
		for i := 0; i < len(part.rs); i += batchSize {
			chunk := part.rs[i:min(i+batchSize, len(part.rs))]
			paths := make([]*api.Path, 0, len(chunk))
			for _, r := range chunk {
				p, err := nets.path(r, part.withdraw)
				if err != nil {
					stream.CloseAndRecv()
					return err
				}
				paths = append(paths, p)
			}
			if err := stream.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths}); err != nil {
				_, rerr := stream.CloseAndRecv()
				return fmt.Errorf("send %d paths to gobgp: %w", len(paths), errors.Join(err, rerr))
			}
		}
		// The reply comes once GoBGP has applied every message.
		if _, err := stream.CloseAndRecv(); err != nil {
			return fmt.Errorf("gobgp refused paths: %w", err)
		}
	}
	return nil
}

// netAttrs gives each VNI's route distinguisher and target.
type netAttrs struct {
	asn    uint32
	rd, rt template
}

func (a netAttrs) path(r route, withdraw bool) (*api.Path, error) {
	d, err := rd(a.rd.expand(a.asn, r.VNI))
	if err != nil {
		return nil, fmt.Errorf("rd of vni %d: %w", r.VNI, err)
	}
	target, err := rt(a.rt.expand(a.asn, r.VNI))
	if err != nil {
		return nil, fmt.Errorf("rt of vni %d: %w", r.VNI, err)
	}
	nh := r.NextHop.String()
	var nlri *bgp.EVPNNLRI
	comms := []bgp.ExtendedCommunityInterface{target, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN)}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	switch r.Type {
	case typeMACIP:
		ip := ""
		if r.IP.IsValid() {
			ip = r.IP.String()
		}
		nlri = bgp.NewEVPNMacIPAdvertisementRoute(d, bgp.EthernetSegmentIdentifier{}, 0, r.MAC.String(), ip, []uint32{r.VNI})
		if r.Seq > 0 || r.Sticky {
			comms = append(comms, bgp.NewMacMobilityExtended(r.Seq, r.Sticky))
		}
	case typeMulticast:
		nlri = bgp.NewEVPNMulticastEthernetTagRoute(d, 0, nh)
		attrs = append(attrs, bgp.NewPathAttributePmsiTunnel(bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, r.VNI, bgp.NewIngressReplTunnelID(nh)))
	default:
		return nil, fmt.Errorf("route type %q", r.Type)
	}
	attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nh, []bgp.AddrPrefixInterface{nlri}), bgp.NewPathAttributeExtendedCommunities(comms))
	return apiutil.NewPath(nlri, withdraw, attrs, time.Now())
}

// list reads the EVPN table back: ours (VNI from the label we put there)
// and every path the peers sent (stale ones included: the fabric is
// restarting, not gone) whose route target imports into a VNI.
func (s *speaker) list(ctx context.Context, rtVNI map[string]uint32, self netip.Addr) (ours, theirs []route, err error) {
	var perr error
	err = s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyEVPN,
		EnableOnlyBinary: true, EnableNlriBinary: true, EnableAttributeBinary: true}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if p.IsWithdraw {
				continue
			}
			local := p.NeighborIp == "" || p.NeighborIp == "<nil>"
			r, ok, err := parsePath(p, rtVNI, local)
			if err != nil {
				perr = err
				continue
			}
			switch {
			case !ok:
			case local:
				if r.Type == typeMulticast {
					r.NextHop = self
				}
				ours = append(ours, r)
			default:
				theirs = append(theirs, r)
			}
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list evpn paths: %w", err)
	}
	if perr != nil {
		s.log.Debug("unreadable evpn path skipped", "err", perr)
	}
	return ours, theirs, nil
}

func parsePath(p *api.Path, rtVNI map[string]uint32, byLabel bool) (route, bool, error) {
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return route{}, false, err
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return route{}, false, err
	}
	en, ok := nlri.(*bgp.EVPNNLRI)
	if !ok {
		return route{}, false, nil
	}
	var r route
	var pmsi net.IP // a type-3 route's tunnel id wins over its next hop
	vni, found := uint32(0), false
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			r.NextHop, _ = netip.AddrFromSlice(a.Nexthop)
		case *bgp.PathAttributeNextHop:
			if !r.NextHop.IsValid() {
				r.NextHop, _ = netip.AddrFromSlice(a.Value)
			}
		case *bgp.PathAttributePmsiTunnel:
			if id, ok := a.TunnelID.(*bgp.IngressReplTunnelID); ok {
				pmsi = id.Value
			}
			if byLabel {
				vni, found = a.Label, true
			}
		case *bgp.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				switch ec := ec.(type) {
				case *bgp.MacMobilityExtended:
					r.Seq, r.Sticky = ec.Sequence, ec.IsSticky
				default:
					if t, st := ec.GetTypes(); st == bgp.EC_SUBTYPE_ROUTE_TARGET && t != bgp.EC_TYPE_EVPN && !found {
						vni, found = rtVNI[rtString(ec)]
					}
				}
			}
		}
	}
	if !found && !byLabel {
		return route{}, false, nil
	}
	r.VNI = vni
	r.NextHop = r.NextHop.Unmap()
	switch d := en.RouteTypeData.(type) {
	case *bgp.EVPNMacIPAdvertisementRoute:
		r.Type = typeMACIP
		if byLabel && len(d.Labels) > 0 {
			r.VNI = d.Labels[0]
		}
		r.MAC = d.MacAddress
		if ip, ok := netip.AddrFromSlice(d.IPAddress); ok && d.IPAddressLength > 0 {
			r.IP = ip.Unmap()
		}
	case *bgp.EVPNMulticastEthernetTagRoute:
		r.Type = typeMulticast
		if ip, ok := netip.AddrFromSlice(pmsi); ok {
			r.NextHop = ip.Unmap()
		} else if ip, ok := netip.AddrFromSlice(d.IPAddress); ok && !r.NextHop.IsValid() {
			r.NextHop = ip.Unmap()
		}
	default:
		return route{}, false, nil
	}
	return r, true, nil
}

// sessions reads the neighbors' state; ready is whether every configured
// neighbor is established and has sent its End-of-RIB for l2vpn evpn.
func (s *speaker) sessions(ctx context.Context) (out []vtep.Session, ready bool) {
	ready = s.peersAdded
	seen := map[string]bool{}
	s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := vtep.Session{Peer: p.GetConf().GetNeighborAddress(), RemoteAS: p.GetConf().GetPeerAsn(), State: "idle"}
		seen[st.Peer] = true
		if ps := p.GetState(); ps != nil {
			st.State = sessionState(ps.GetSessionState())
		}
		if ts := p.GetTimers().GetState().GetUptime(); ts != nil && st.State == "established" {
			st.Since = ts.AsTime()
		}
		eor := false
		for _, a := range p.GetAfiSafis() {
			if a.GetState().GetFamily().GetAfi() == familyEVPN.Afi && a.GetState().GetFamily().GetSafi() == familyEVPN.Safi {
				st.Received, st.Advertised = int(a.GetState().GetAccepted()), int(a.GetState().GetAdvertised())
				eor = a.GetMpGracefulRestart().GetState().GetEndOfRibReceived()
			}
		}
		if st.State != "established" || !eor {
			ready = false
		}
		out = append(out, st)
	})
	for _, n := range s.opts.Neighbors {
		if !seen[n.Address.String()] {
			ready = false
			out = append(out, vtep.Session{Peer: n.Address.String(), RemoteAS: n.RemoteAS, State: "not configured"})
		}
	}
	return out, ready
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_ESTABLISHED:
		return "established"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	default:
		return "idle"
	}
}

// watch calls changed on every change of the EVPN table or of a peer's
// state, until ctx ends.
func (s *speaker) watch(ctx context.Context, changed func()) error {
	return s.srv.WatchEvent(ctx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST}, {Type: api.WatchEventRequest_Table_Filter_ADJIN},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
		Peer: &api.WatchEventRequest_Peer{},
	}, func(*api.WatchEventResponse) { changed() })
}

// slogAdapter is GoBGP's logger over slog.
type slogAdapter struct {
	l     *slog.Logger
	level gobgplog.LogLevel
}

func fieldsOf(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (a *slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.l.Error(msg, fieldsOf(f)...)
	panic(msg)
}

// Fatal is what GoBGP calls when its API socket cannot listen; the
// backend removed a stale one first, so this is a real fault.
func (a *slogAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.l.Error("gobgp fatal: "+msg, fieldsOf(f)...)
	os.Exit(1)
}
func (a *slogAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(msg, fieldsOf(f)...) }
func (a *slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Warn(msg, fieldsOf(f)...) }
func (a *slogAdapter) Info(msg string, f gobgplog.Fields)  { a.l.Info(msg, fieldsOf(f)...) }
func (a *slogAdapter) Debug(msg string, f gobgplog.Fields) {
	if a.level >= gobgplog.DebugLevel {
		a.l.Debug(msg, fieldsOf(f)...)
	}
}
func (a *slogAdapter) SetLevel(level gobgplog.LogLevel) { a.level = level }
func (a *slogAdapter) GetLevel() gobgplog.LogLevel      { return a.level }
