package evpn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
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

// speaker drives a GoBGP server over its gRPC API on a unix socket:
// either one this process embeds (srv set; its sessions end with the
// agent) or l2span-bgpd's (Options.SpeakerSocket; its sessions outlive
// the agent's restarts).
type speaker struct {
	opts   Options
	srv    *server.BgpServer
	conn   *grpc.ClientConn
	client api.GobgpApiClient
	log    *slog.Logger
	// peersAdded is set once every neighbor is configured in the speaker.
	peersAdded bool
}

func startSpeaker(ctx context.Context, o Options) (*speaker, error) {
	s := &speaker{opts: o, log: o.Logger}
	sock := o.SpeakerSocket
	if sock == "" {
		sock = filepath.Join(o.SocketDir, "gobgp.sock")
		srv, err := listenSpeaker(sock, o.Logger)
		if err != nil {
			return nil, err
		}
		s.srv = srv
	}
	conn, err := grpc.Dial("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("connect to gobgp api %s: %w", sock, err)
	}
	s.conn, s.client = conn, api.NewGobgpApiClient(conn)
	if _, err := s.ensureGlobal(ctx); err != nil {
		if s.srv != nil {
			s.stop()
			return nil, err
		}
		// l2span-bgpd not there yet: every pass tries again.
		s.log.Warn("bgp speaker not reachable yet", "socket", sock, "err", err)
	}
	return s, nil
}

// close drops the API connection; an embedded speaker keeps running (its
// sessions end with the process, without a NOTIFICATION).
func (s *speaker) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// stop also stops an embedded speaker.
func (s *speaker) stop() {
	s.close()
	if s.srv != nil {
		s.srv.Stop()
		s.srv = nil
	}
}

func (s *speaker) global() *api.Global {
	listen := []string{}
	if s.opts.ListenAddress.IsValid() {
		listen = []string{s.opts.ListenAddress.String()}
	}
	return &api.Global{Asn: s.opts.ASN, RouterId: s.opts.RouterID.String(), ListenPort: s.opts.ListenPort, ListenAddresses: listen}
}

// ensureGlobal starts BGP in the speaker unless it already runs as we
// want it (an l2span-bgpd that outlived the agent). A speaker that runs
// with another AS, router id or port is restarted: its sessions drop.
// started says BGP was (re)started: the RIB holds nothing yet.
func (s *speaker) ensureGlobal(ctx context.Context) (started bool, err error) {
	want := s.global()
	got, err := s.client.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return false, fmt.Errorf("read the bgp speaker's settings: %w", err)
	}
	if g := got.GetGlobal(); g.GetAsn() != 0 {
		// No listen address means GoBGP's defaults, which it reports.
		if g.GetAsn() == want.Asn && g.GetRouterId() == want.RouterId && g.GetListenPort() == want.ListenPort &&
			(len(want.ListenAddresses) == 0 || slices.Equal(g.GetListenAddresses(), want.ListenAddresses)) {
			return false, nil
		}
		s.log.Warn("the bgp speaker runs with other settings; restarting it (its sessions drop)",
			"asn", g.GetAsn(), "router_id", g.GetRouterId(), "listen_port", g.GetListenPort(), "listen", g.GetListenAddresses(),
			"want_asn", want.Asn, "want_router_id", want.RouterId, "want_listen_port", want.ListenPort, "want_listen", want.ListenAddresses)
		if _, err := s.client.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
			return false, fmt.Errorf("stop the speaker's bgp: %w", err)
		}
	}
	s.peersAdded = false
	if _, err := s.client.StartBgp(ctx, &api.StartBgpRequest{Global: want}); err != nil {
		return false, fmt.Errorf("start bgp: %w", err)
	}
	return true, nil
}

// addPeers configures the neighbors the speaker lacks (and removes those
// no longer configured); called once our routes are in the RIB, so the
// first UPDATEs a restarted speaker sends are complete and the End-of-RIB
// that follows lets the fabric drop only what really went.
func (s *speaker) addPeers(ctx context.Context) error {
	if s.peersAdded {
		return nil
	}
	have := map[string]uint32{}
	stream, err := s.client.ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		return fmt.Errorf("list neighbors: %w", err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("list neighbors: %w", err)
		}
		have[r.GetPeer().GetConf().GetNeighborAddress()] = r.GetPeer().GetConf().GetPeerAsn()
	}
	want := map[string]bool{}
	var errs []error
	for _, n := range s.opts.Neighbors {
		addr := n.Address.String()
		want[addr] = true
		as, ok := have[addr]
		if ok && as == n.RemoteAS {
			continue
		}
		if ok {
			if _, err := s.client.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr}); err != nil {
				errs = append(errs, fmt.Errorf("remove neighbor %s (remote AS %d): %w", addr, as, err))
				continue
			}
		}
		if _, err := s.client.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peerConf(n)}); err != nil {
			errs = append(errs, fmt.Errorf("add neighbor %s: %w", addr, err))
		}
	}
	for addr := range have {
		if !want[addr] {
			if _, err := s.client.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr}); err != nil {
				errs = append(errs, fmt.Errorf("remove neighbor %s: %w", addr, err))
			}
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

// fill sets r's route distinguisher and target from the templates.
func (a netAttrs) fill(r route) (route, error) {
	d, err := rd(a.rd.expand(a.asn, r.VNI))
	if err != nil {
		return r, fmt.Errorf("rd of vni %d: %w", r.VNI, err)
	}
	target, err := rt(a.rt.expand(a.asn, r.VNI))
	if err != nil {
		return r, fmt.Errorf("rt of vni %d: %w", r.VNI, err)
	}
	r.RD, r.RT = d, rtString(target)
	return r, nil
}

// path is r as a GoBGP path: advertised with the templates' RD and RT, or
// withdrawn under the RD it carries (it may be an older template's).
func (a netAttrs) path(r route, withdraw bool) (*api.Path, error) {
	d := r.RD
	if d == nil || !withdraw {
		f, err := a.fill(r)
		if err != nil {
			return nil, err
		}
		d = f.RD
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
	stream, err := s.client.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyEVPN,
		EnableOnlyBinary: true, EnableNlriBinary: true, EnableAttributeBinary: true})
	if err != nil {
		return nil, nil, fmt.Errorf("list evpn paths: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list evpn paths: %w", err)
		}
		for _, p := range resp.GetDestination().GetPaths() {
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
					if t, st := ec.GetTypes(); st == bgp.EC_SUBTYPE_ROUTE_TARGET && t != bgp.EC_TYPE_EVPN && r.RT == "" {
						r.RT = rtString(ec)
						if !found {
							vni, found = rtVNI[r.RT]
						}
					}
				}
			}
		}
	}
	if !found && !byLabel {
		return route{}, false, nil
	}
	r.VNI = vni
	r.RD = en.RD()
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
	stream, err := s.client.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true})
	for err == nil {
		var resp *api.ListPeerResponse
		if resp, err = stream.Recv(); err != nil {
			break
		}
		p := resp.GetPeer()
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
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("list bgp neighbors", "err", err)
		ready = false
	}
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
// state, until ctx ends or the stream breaks (the speaker went away).
func (s *speaker) watch(ctx context.Context, changed func()) error {
	stream, err := s.client.WatchEvent(ctx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST}, {Type: api.WatchEventRequest_Table_Filter_ADJIN},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
		Peer: &api.WatchEventRequest_Peer{},
	})
	if err != nil {
		return fmt.Errorf("watch gobgp events: %w", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return fmt.Errorf("watch gobgp events: %w", err)
		}
		changed()
	}
}
