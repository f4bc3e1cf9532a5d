package brain

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/brain/store"
)

// clientID sets *id to want when a client supplied one (the ML2 driver
// passes Neutron's ids, so the brain and `openstack network show` print the
// same id). It must be a lowercase UUID: brain ids are UUIDs, and anything
// else could be confused with a name.
func clientID(id *string, want string) error {
	if want == "" {
		return nil
	}
	u, err := uuid.Parse(want)
	if err != nil || u.String() != want {
		return invalid("id", "%q is not a lowercase UUID (8-4-4-4-12 hex digits)", want)
	}
	*id = want
	return nil
}

// idClash turns an insert of an id that exists into a 409 naming it.
func idClash(kind, id string, err error) error {
	if errors.Is(err, store.ErrDuplicate) {
		return conflict("id", "%s %s already exists", kind, id)
	}
	return err
}

func checkManagedBy(v string) error {
	if v == "" {
		return nil
	}
	return checkID("managed_by", v)
}

// setExternal switches a network to external (pinned to the one pod id in
// hints, where every pod it already reached must be) or back (hints are
// then AZs, and must keep the pod it was pinned to in scope).
func (s *Service) setExternal(ctx context.Context, tx *store.Tx, n *model.Network, external bool, hints *[]string) error {
	var want []string
	if hints != nil {
		want = slices.Compact(slices.Sorted(slices.Values(*hints)))
	}
	if want == nil {
		want = []string{}
	}
	segs, err := tx.Segments(ctx, n.ID)
	if err != nil {
		return err
	}
	if external {
		if len(want) != 1 {
			return invalid("az_hints", "an external network's az_hints must name exactly one pod id")
		}
		if n.GatewayPerPod {
			return conflict("external", "%s has a gateway per pod; an external network lives in one pod", netLabel(*n))
		}
		pod, err := tx.GetPod(ctx, want[0])
		if errors.Is(err, store.ErrNotFound) {
			return invalid("az_hints", "pod %q does not exist (an external network's az_hints names a pod id)", want[0])
		} else if err != nil {
			return err
		}
		if len(n.AZHints) > 0 && !slices.Contains(n.AZHints, pod.AZ) {
			return conflict("az_hints", "pod %s is in availability zone %s, outside %s's az_hints %v", pod.ID, pod.AZ, netLabel(*n), n.AZHints)
		}
		for _, g := range segs {
			if g.PodID != pod.ID {
				return conflict("external", "%s already reached pod %s; an external network lives in pod %s only", netLabel(*n), g.PodID, pod.ID)
			}
		}
	} else {
		for _, h := range want {
			ok, err := tx.AZExists(ctx, h)
			if err != nil {
				return err
			}
			if !ok {
				return invalid("az_hints", "availability zone %q does not exist (no pod is in it)", h)
			}
		}
		if len(want) > 0 {
			for _, g := range segs {
				pod, err := tx.GetPod(ctx, g.PodID)
				if err != nil {
					return err
				}
				if !slices.Contains(want, pod.AZ) {
					return conflict("az_hints", "%s lives in pod %s (availability zone %s), outside az_hints %v", netLabel(*n), pod.ID, pod.AZ, want)
				}
			}
		}
	}
	n.External, n.AZHints = external, want
	tx.Changed(n.ID)
	return tx.SetNetworkExternal(ctx, n.ID, external, want)
}

// netLabel names a network in a message as its user knows it: its name
// and id (the ML2 driver's networks carry Neutron's name and id).
func netLabel(n model.Network) string {
	if n.Name == "" {
		return "network " + n.ID
	}
	return fmt.Sprintf("network %q (%s)", n.Name, n.ID)
}
