package brain

import (
	"context"
	"net/netip"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// A port's IPs, as the brain keeps them: each parsed and normalised (an
// IPv4-mapped IPv6 address such as ::ffff:192.0.2.5 becomes 192.0.2.5, IPv6
// is written in its RFC 5952 form), so that comparisons see one spelling.
// In a network with subnets, each IP lies in one of them and is neither the
// subnet's IPv4 network or broadcast address nor its gateway IP (unless the
// port is the brain's own gateway port of its pod); no other port of the
// network holds it (409 on ips, checked in the write transaction, with a
// unique index behind it).

// subnetInfo is what the IP rules need of a subnet.
type subnetInfo struct {
	id      string
	prefix  netip.Prefix
	gateway netip.Addr // invalid when the subnet has none
}

// parsePortIPs parses and normalises a port's IPs: unicast, each at most
// once, at most MaxIPsPerPort.
func parsePortIPs(in []string) ([]string, error) {
	if len(in) > MaxIPsPerPort {
		return nil, invalid("ips", "a port holds at most %d IPs (got %d)", MaxIPsPerPort, len(in))
	}
	out := make([]string, 0, len(in))
	seen := make(map[netip.Addr]bool, len(in))
	for _, ip := range in {
		a, err := parseAddr("ips", ip)
		if err != nil {
			return nil, err
		}
		if err := unicastAddr("ips", a); err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, invalid("ips", "%s is listed twice", a)
		}
		seen[a] = true
		out = append(out, a.String())
	}
	return out, nil
}

func parseSubnetInfo(sn model.Subnet) (subnetInfo, bool) {
	pf, err := netip.ParsePrefix(sn.CIDR)
	if err != nil {
		return subnetInfo{}, false
	}
	info := subnetInfo{id: sn.ID, prefix: pf.Masked()}
	if gw, err := netip.ParseAddr(sn.GatewayIP); err == nil {
		info.gateway = gw.Unmap()
	}
	return info, true
}

// isOwnGatewayPort reports whether p is the brain's own gateway port of its
// pod, the one port that may hold a subnet's gateway IP.
func isOwnGatewayPort(p model.Port) bool {
	return p.ID == ReservedPortID(ReservedGateway, p.NetworkID, p.PodID)
}

// checkIPs checks a port's (normalised) IPs against its network's subnets
// and the IPs other ports of the network hold, inside the write
// transaction, so that two concurrent creates cannot both take one IP.
func (s *Service) checkIPs(ctx context.Context, tx *store.Tx, p model.Port, cache map[string]*portNetwork) error {
	pn, err := s.loadPortNetwork(ctx, tx, p.NetworkID, cache)
	if err != nil {
		return err
	}
	for _, ip := range p.IPs {
		a := netip.MustParseAddr(ip)
		if len(pn.subnets) > 0 {
			if err := checkInSubnet(pn, p, a); err != nil {
				return err
			}
		}
		holder, err := tx.PortHoldingIP(ctx, p.NetworkID, ip)
		if err != nil {
			return err
		}
		if holder != "" && holder != p.ID {
			return conflict("ips", "%s is already held by port %s of network %s", ip, holder, p.NetworkID)
		}
	}
	return nil
}

func checkInSubnet(pn *portNetwork, p model.Port, a netip.Addr) error {
	for _, sn := range pn.subnets {
		pf := sn.prefix
		if !pf.Contains(a) {
			continue
		}
		// RFC 3021: a /31 (and a /32) has no network or broadcast address.
		if a.Is4() && pf.Bits() < 31 {
			if a == pf.Addr() {
				return invalid("ips", "%s is the network address of subnet %s (%s)", a, sn.id, pf)
			}
			if a == lastAddr(pf) {
				return invalid("ips", "%s is the broadcast address of subnet %s (%s)", a, sn.id, pf)
			}
		}
		if sn.gateway.IsValid() && a == sn.gateway && !isOwnGatewayPort(p) {
			return conflict("ips", "%s is the gateway IP of subnet %s (%s); only the pod's own gateway port holds it", a, sn.id, pf)
		}
		return nil
	}
	return invalid("ips", "%s is in no subnet of network %s", a, p.NetworkID)
}
