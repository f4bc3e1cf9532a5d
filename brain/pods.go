package brain

import (
	"context"
	"errors"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// CreatePod registers a pod.
func (s *Service) CreatePod(ctx context.Context, p model.Pod) (model.Pod, error) {
	if err := checkID("id", p.ID); err != nil {
		return p, err
	}
	if err := checkID("az", p.AZ); err != nil {
		return p, err
	}
	var err error
	if p.DVRBaseMAC, err = normalizeDVRBaseMAC(p.DVRBaseMAC); err != nil {
		return p, err
	}
	if err := checkURL("neutron_url", p.NeutronURL); err != nil {
		return p, err
	}
	if err := checkText("region", p.Region, MaxNameLen); err != nil {
		return p, err
	}
	p.CreatedAt = s.now()
	err = s.write(ctx, func(tx *store.Tx) error {
		if err := tx.InsertPod(ctx, p); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return conflict("id", "pod %s already exists", p.ID)
			}
			return err
		}
		if p.DVRBaseMAC != "" {
			tx.Changed(model.AllNetworks)
		}
		return nil
	})
	return p, err
}

// UpdatePod changes a pod's region, dvr_base_mac or neutron_url; its AZ is fixed.
func (s *Service) UpdatePod(ctx context.Context, p model.Pod) (model.Pod, error) {
	var out model.Pod
	dvr, err := normalizeDVRBaseMAC(p.DVRBaseMAC)
	if err != nil {
		return out, err
	}
	if err := checkURL("neutron_url", p.NeutronURL); err != nil {
		return out, err
	}
	if err := checkText("region", p.Region, MaxNameLen); err != nil {
		return out, err
	}
	err = s.write(ctx, func(tx *store.Tx) error {
		cur, err := tx.GetPod(ctx, p.ID)
		if err != nil {
			return err
		}
		if p.AZ != "" && p.AZ != cur.AZ {
			return conflict("az", "a pod's availability zone cannot change (pod %s is in %s)", cur.ID, cur.AZ)
		}
		if dvr != cur.DVRBaseMAC {
			tx.Changed(model.AllNetworks)
		}
		cur.Region, cur.DVRBaseMAC, cur.NeutronURL = p.Region, dvr, p.NeutronURL
		out = cur
		return tx.UpdatePod(ctx, cur)
	})
	return out, err
}

// DeletePod removes a pod that no longer holds ports, segments or gateways.
func (s *Service) DeletePod(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *store.Tx) error {
		pod, err := tx.GetPod(ctx, id)
		if err != nil {
			return err
		}
		err = tx.DeletePod(ctx, id)
		if errors.Is(err, store.ErrReferenced) {
			return conflict("id", "pod %s still has ports, segments or gateways", id)
		}
		if pod.DVRBaseMAC != "" {
			tx.Changed(model.AllNetworks)
		}
		return err
	})
}

// GetPod returns a pod.
func (s *Service) GetPod(ctx context.Context, id string) (p model.Pod, err error) {
	err = s.read(ctx, func(tx *store.Tx) error { p, err = tx.GetPod(ctx, id); return err })
	return p, err
}

// ListPods lists pods.
func (s *Service) ListPods(ctx context.Context, f model.PodFilter, pg model.Page) (l model.List[model.Pod], err error) {
	err = s.read(ctx, func(tx *store.Tx) error { l, err = tx.ListPods(ctx, f, pg); return err })
	return l, err
}
