package store

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/l2span/l2span/brain/api"
)

// OverlayTypes are the network types whose pods are joined by the gateways.
var OverlayTypes = []string{api.TypeSharedVXLAN, api.TypeMixedVLANVXLAN}

// Revision returns the latest committed revision.
func (t *Tx) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := t.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'revision'`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

// Changes lists what changed after since up to and including upTo: the
// network ids (AllNetworks among them for a change to every pod). Expired is
// true when the change log no longer reaches back to since; the caller must
// then send a full state.
func (t *Tx) Changes(ctx context.Context, since, upTo int64) (ids []string, expired bool, err error) {
	var compacted int64
	if err := t.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'compacted'`).Scan(&compacted); err != nil {
		return nil, false, fmt.Errorf("read compaction mark: %w", err)
	}
	if since < compacted {
		return nil, true, nil
	}
	rows, err := t.Query(ctx, `SELECT DISTINCT network_id FROM changes WHERE revision > ? AND revision <= ?`, since, upTo)
	if err != nil {
		return nil, false, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, false, fmt.Errorf("read changes: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, false, rows.Err()
}

// Compact drops change rows older than keepFrom; watchers behind it relist.
func (t *Tx) Compact(ctx context.Context, keepFrom int64) error {
	if _, err := t.Exec(ctx, `DELETE FROM changes WHERE revision <= ?`, keepFrom); err != nil {
		return fmt.Errorf("compact changes: %w", err)
	}
	if _, err := t.Exec(ctx, `UPDATE counters SET value = ? WHERE name = 'compacted' AND value < ?`, keepFrom, keepFrom); err != nil {
		return fmt.Errorf("compact changes: %w", err)
	}
	return nil
}

// DVRBaseMACs maps every pod other than podID that has a dvr_base_mac to it.
func (t *Tx) DVRBaseMACs(ctx context.Context, podID string) (map[string]string, error) {
	rows, err := t.Query(ctx, `SELECT id, dvr_base_mac FROM pods WHERE id <> ? AND dvr_base_mac <> ''`, podID)
	if err != nil {
		return nil, fmt.Errorf("dvr base macs: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, mac string
		if err := rows.Scan(&id, &mac); err != nil {
			return nil, fmt.Errorf("dvr base macs: %w", err)
		}
		out[id] = mac
	}
	return out, rows.Err()
}

// NetworkStates computes, for podID, the state of every network spanned into
// that pod and at least one other pod. With only non-nil, it computes only
// those networks (a network among them that is not spanned is left out).
func (t *Tx) NetworkStates(ctx context.Context, podID string, only []string) ([]api.NetworkState, error) {
	if only != nil && len(only) == 0 {
		return nil, nil
	}
	typeIn := "'" + strings.Join(OverlayTypes, "','") + "'"
	filter, args := "", []any{podID, podID}
	if only != nil {
		filter = " AND n.id IN (" + placeholders(len(only)) + ")"
		for _, id := range only {
			args = append(args, id)
		}
	}
	// The networks, each with this pod's segment.
	rows, err := t.Query(ctx, `
SELECT n.id, n.name, n.type, n.segmentation_id,
	s.network_type, s.segmentation_id, s.physical_network, s.created_at
FROM segments s JOIN networks n ON n.id = s.network_id
WHERE s.pod_id = ? AND n.type IN (`+typeIn+`)
	AND EXISTS (SELECT 1 FROM segments o WHERE o.network_id = s.network_id AND o.pod_id <> ?)`+filter+`
ORDER BY n.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("spanned networks of %s: %w", podID, err)
	}
	var states []api.NetworkState
	index := map[string]int{}
	err = func() error {
		defer rows.Close()
		for rows.Next() {
			var st api.NetworkState
			var vni, segID int
			var created int64
			if err := rows.Scan(&st.NetworkID, &st.Name, &st.Type, &vni,
				&st.LocalSegment.NetworkType, &segID, &st.LocalSegment.PhysicalNetwork, &created); err != nil {
				return err
			}
			st.VNI = uint32(vni)
			st.LocalSegment.NetworkID = st.NetworkID
			st.LocalSegment.PodID = podID
			st.LocalSegment.SegmentationID = segID
			st.LocalSegment.CreatedAt = fromMicros(created)
			st.RemotePods = []string{}
			st.RemotePorts = []api.RemotePort{}
			index[st.NetworkID] = len(states)
			states = append(states, st)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("spanned networks of %s: %w", podID, err)
	}
	if len(states) == 0 {
		return nil, nil
	}
	ids := make([]any, 0, len(states))
	for _, st := range states {
		ids = append(ids, st.NetworkID)
	}
	in := " IN (" + placeholders(len(ids)) + ")"

	// Remote pods.
	rows, err = t.Query(ctx, `SELECT network_id, pod_id FROM segments WHERE pod_id <> ? AND network_id`+in+` ORDER BY network_id, pod_id`,
		append([]any{podID}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("remote pods of %s: %w", podID, err)
	}
	err = eachRow(rows, func(scan func(...any) error) error {
		var nid, pod string
		if err := scan(&nid, &pod); err != nil {
			return err
		}
		st := &states[index[nid]]
		st.RemotePods = append(st.RemotePods, pod)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remote pods of %s: %w", podID, err)
	}

	// Remote ports.
	rows, err = t.Query(ctx, `SELECT network_id, mac, ips, pod_id, mobility_seq FROM ports WHERE pod_id <> ? AND network_id`+in+` ORDER BY network_id, mac`,
		append([]any{podID}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("remote ports of %s: %w", podID, err)
	}
	err = eachRow(rows, func(scan func(...any) error) error {
		var nid, ips string
		var p api.RemotePort
		if err := scan(&nid, &p.MAC, &ips, &p.PodID, &p.Seq); err != nil {
			return err
		}
		list, err := parseList(ips)
		if err != nil {
			return err
		}
		if len(list) > 0 {
			p.IPs = list
		}
		st := &states[index[nid]]
		st.RemotePorts = append(st.RemotePorts, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remote ports of %s: %w", podID, err)
	}

	// Subnets and their gateway IPs.
	rows, err = t.Query(ctx, `SELECT network_id, cidr, gateway_ip FROM subnets WHERE network_id`+in+` ORDER BY network_id, cidr`, ids...)
	if err != nil {
		return nil, fmt.Errorf("subnets of %s: %w", podID, err)
	}
	err = eachRow(rows, func(scan func(...any) error) error {
		var nid string
		var sg api.SubnetGateway
		if err := scan(&nid, &sg.CIDR, &sg.GatewayIP); err != nil {
			return err
		}
		st := &states[index[nid]]
		st.Subnets = append(st.Subnets, sg)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("subnets of %s: %w", podID, err)
	}
	sort.Slice(states, func(i, j int) bool { return states[i].NetworkID < states[j].NetworkID })
	return states, nil
}

func eachRow(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}, fn func(scan func(...any) error) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
