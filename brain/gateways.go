package brain

import (
	"context"
	"errors"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// RegisterGateway records (or refreshes) an agent as a gateway of its pod.
func (s *Service) RegisterGateway(ctx context.Context, g model.Gateway) (model.Gateway, error) {
	if err := checkID("id", g.ID); err != nil {
		return g, err
	}
	if err := checkID("pod_id", g.PodID); err != nil {
		return g, err
	}
	vtep, err := parseAddr("vtep", g.VTEP)
	if err != nil {
		return g, err
	}
	g.VTEP = vtep.String()
	switch g.Backend {
	case "linux", "hwvtep", "evpn":
	default:
		return g, invalid("backend", "%q must be linux, hwvtep or evpn", g.Backend)
	}
	if g.DVRMAC != "" {
		if g.DVRMAC, err = normalizeMAC("dvr_mac", g.DVRMAC); err != nil {
			return g, err
		}
	}
	g.LastSeen = s.now()
	err = s.write(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetPod(ctx, g.PodID); errors.Is(err, store.ErrNotFound) {
			return invalid("pod_id", "pod %s does not exist", g.PodID)
		} else if err != nil {
			return err
		}
		// A new gateway, or one whose pod or VTEP changed, changes what
		// every pod's agents honour in gossip; a refresh changes nothing.
		old, err := tx.GetGateway(ctx, g.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			tx.Changed(model.AllNetworks)
		case err != nil:
			return err
		case old.PodID != g.PodID || old.VTEP != g.VTEP:
			tx.Changed(model.AllNetworks)
		}
		return tx.UpsertGateway(ctx, g)
	})
	return g, err
}

// DeleteGateway removes a gateway.
func (s *Service) DeleteGateway(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		tx.Changed(model.AllNetworks)
		return tx.DeleteGateway(ctx, id)
	})
}

// GetGateway returns a gateway.
func (s *Service) GetGateway(ctx context.Context, id string) (g model.Gateway, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { g, err = tx.GetGateway(ctx, id); return err })
	return g, err
}

// ListGateways lists gateways.
func (s *Service) ListGateways(ctx context.Context, f model.GatewayFilter, pg model.Page) (l model.List[model.Gateway], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListGateways(ctx, f, pg); return err })
	return l, err
}
