package brain

import (
	"context"
	"errors"
	"net/netip"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// CreateSubnet adds a subnet to a network.
func (s *Service) CreateSubnet(ctx context.Context, sn model.Subnet) (model.Subnet, error) {
	want := sn.ID
	sn.ID = uuid.NewString()
	if err := clientID(&sn.ID, want); err != nil {
		return sn, err
	}
	sn.CreatedAt = s.now()
	if sn.NetworkID == "" {
		return sn, invalid("network_id", "is required")
	}
	prefix, err := parsePrefix("cidr", sn.CIDR)
	if err != nil {
		return sn, err
	}
	sn.CIDR = prefix.String()
	if sn.GatewayIP != "" {
		gw, err := parseAddr("gateway_ip", sn.GatewayIP)
		if err != nil {
			return sn, err
		}
		if !prefix.Contains(gw) {
			return sn, invalid("gateway_ip", "%s is not inside %s", gw, prefix)
		}
		// IPv6 has no network address: Neutron defaults the gateway to the
		// subnet-router anycast address, which is the prefix's first address.
		if gw.Is4() && gw == prefix.Addr() && prefix.Bits() < prefix.Addr().BitLen()-1 {
			return sn, invalid("gateway_ip", "%s is the network address of %s", gw, prefix)
		}
		sn.GatewayIP = gw.String()
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetNetwork(ctx, sn.NetworkID); errors.Is(err, store.ErrNotFound) {
			return invalid("network_id", "network %s does not exist", sn.NetworkID)
		} else if err != nil {
			return err
		}
		existing, err := tx.ListSubnets(ctx, model.SubnetFilter{NetworkID: sn.NetworkID}, model.Page{Limit: 10000})
		if err != nil {
			return err
		}
		for _, o := range existing.Items {
			op, err := netip.ParsePrefix(o.CIDR)
			if err == nil && op.Overlaps(prefix) {
				return conflict("cidr", "%s overlaps subnet %s (%s) of the same network", prefix, o.ID, o.CIDR)
			}
		}
		tx.Changed(sn.NetworkID)
		if err := s.bottomNetworkChanged(ctx, tx, sn.NetworkID); err != nil {
			return err
		}
		return idClash("subnet", sn.ID, tx.InsertSubnet(ctx, sn))
	})
	return sn, err
}

// DeleteSubnet removes a subnet.
func (s *Service) DeleteSubnet(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		sn, err := tx.GetSubnet(ctx, id)
		if err != nil {
			return err
		}
		tx.Changed(sn.NetworkID)
		if err := s.bottomNetworkChanged(ctx, tx, sn.NetworkID); err != nil {
			return err
		}
		return tx.DeleteSubnet(ctx, id)
	})
}

// GetSubnet returns a subnet.
func (s *Service) GetSubnet(ctx context.Context, id string) (sn model.Subnet, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { sn, err = tx.GetSubnet(ctx, id); return err })
	return sn, err
}

// ListSubnets lists subnets.
func (s *Service) ListSubnets(ctx context.Context, f model.SubnetFilter, pg model.Page) (l model.List[model.Subnet], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListSubnets(ctx, f, pg); return err })
	return l, err
}
