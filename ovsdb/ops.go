package ovsdb

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/l2span/l2span/internal/macaddr"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Operation builders in the style of ovn-kubernetes' libovsdb/ops: each
// appends the operations for one change to ops and returns the result, so
// callers commit many changes in one transaction. Rows are built directly
// from the models (no reflection), references are Ref values: a real UUID
// or a named UUID inserted earlier in the same transaction.
//
// The builders know the schema's traps and say so: Physical_Locator,
// Physical_Locator_Set, Physical_Switch and Physical_Port are not root
// tables, so a row inserted without a reference in the same transaction is
// garbage-collected at commit; the (encapsulation_type, dst_ip,
// tunnel_key) index of Physical_Locator fails the whole transaction on a
// duplicate; Physical_Locator_Set.locators is immutable.

// NamedUUID returns a named UUID valid inside one transaction.
func NamedUUID(prefix string, n int) string {
	return prefix + strconv.Itoa(n)
}

func byUUID(uuid string) []ovsdb.Condition {
	return []ovsdb.Condition{{Column: "_uuid", Function: ovsdb.ConditionEqual, Value: Ref(uuid)}}
}

func checkRef(what, ref string) error {
	if ref == "" {
		return fmt.Errorf("%s: empty reference", what)
	}
	return nil
}

// InsertGlobalOps inserts the Global row (a fresh database has none).
// g.UUID must be a named UUID if later operations refer to it.
func InsertGlobalOps(ops []ovsdb.Operation, g *Global) ([]ovsdb.Operation, error) {
	return append(ops, ovsdb.Operation{
		Op: ovsdb.OperationInsert, Table: GlobalTable, UUIDName: g.UUID,
		Row: ovsdb.Row{"other_config": StringMap(g.OtherConfig)},
	}), nil
}

// InsertPhysicalSwitchOps inserts a Physical_Switch and adds it to
// Global.switches (it is not a root table). ps.UUID is a named UUID.
func InsertPhysicalSwitchOps(ops []ovsdb.Operation, globalUUID string, ps *PhysicalSwitch) ([]ovsdb.Operation, error) {
	if ps.Name == "" {
		return ops, fmt.Errorf("physical switch: empty name")
	}
	if err := checkRef("physical switch "+ps.Name+" global", globalUUID); err != nil {
		return ops, err
	}
	if ps.UUID == "" {
		ps.UUID = "ps_" + strconv.Itoa(len(ops))
	}
	ips := make(Set, 0, len(ps.TunnelIPs))
	for _, ip := range ps.TunnelIPs {
		ips = append(ips, ip)
	}
	ops = append(ops, ovsdb.Operation{
		Op: ovsdb.OperationInsert, Table: PhysicalSwitchTable, UUIDName: ps.UUID,
		Row: ovsdb.Row{"name": ps.Name, "description": ps.Description, "tunnel_ips": ips},
	}, ovsdb.Operation{
		Op: ovsdb.OperationMutate, Table: GlobalTable, Where: byUUID(globalUUID),
		Mutations: []ovsdb.Mutation{{Column: "switches", Mutator: ovsdb.MutateOperationInsert, Value: Set{Ref(ps.UUID)}}},
	})
	return ops, nil
}

// InsertPhysicalPortOps inserts a Physical_Port and adds it to its
// switch's ports (it is not a root table). port.UUID is a named UUID.
func InsertPhysicalPortOps(ops []ovsdb.Operation, switchUUID string, port *PhysicalPort) ([]ovsdb.Operation, error) {
	if port.Name == "" {
		return ops, fmt.Errorf("physical port: empty name")
	}
	if err := checkRef("physical port "+port.Name+" switch", switchUUID); err != nil {
		return ops, err
	}
	if port.UUID == "" {
		port.UUID = "pp_" + strconv.Itoa(len(ops))
	}
	b := make(Map, 0, len(port.VLANBindings))
	for _, vlan := range slices.Sorted(maps.Keys(port.VLANBindings)) {
		ls := port.VLANBindings[vlan]
		b = append(b, [2]any{vlan, Ref(ls)})
	}
	ops = append(ops, ovsdb.Operation{
		Op: ovsdb.OperationInsert, Table: PhysicalPortTable, UUIDName: port.UUID,
		Row: ovsdb.Row{"name": port.Name, "description": port.Description, "vlan_bindings": b},
	}, ovsdb.Operation{
		Op: ovsdb.OperationMutate, Table: PhysicalSwitchTable, Where: byUUID(switchUUID),
		Mutations: []ovsdb.Mutation{{Column: "ports", Mutator: ovsdb.MutateOperationInsert, Value: Set{Ref(port.UUID)}}},
	})
	return ops, nil
}

// SetVLANBindingsOps changes a Physical_Port's vlan_bindings in place:
// removes the VLANs in remove, then binds each VLAN of set to its
// Logical_Switch. Bindings not named are left alone.
func SetVLANBindingsOps(ops []ovsdb.Operation, portUUID string, set map[int]string, remove []int) ([]ovsdb.Operation, error) {
	if err := checkRef("vlan bindings port", portUUID); err != nil {
		return ops, err
	}
	var muts []ovsdb.Mutation
	del := make(Set, 0, len(remove)+len(set))
	for _, v := range remove {
		del = append(del, v)
	}
	ins := make(Map, 0, len(set))
	for _, v := range slices.Sorted(maps.Keys(set)) {
		ls := set[v]
		if v < 0 || v > 4095 {
			return ops, fmt.Errorf("vlan binding %d: out of range 0-4095", v)
		}
		if err := checkRef("vlan binding "+strconv.Itoa(v), ls); err != nil {
			return ops, err
		}
		del = append(del, v) // replace whatever the VLAN was bound to
		ins = append(ins, [2]any{v, Ref(ls)})
	}
	if len(del) > 0 {
		muts = append(muts, ovsdb.Mutation{Column: "vlan_bindings", Mutator: ovsdb.MutateOperationDelete, Value: del})
	}
	if len(ins) > 0 {
		muts = append(muts, ovsdb.Mutation{Column: "vlan_bindings", Mutator: ovsdb.MutateOperationInsert, Value: ins})
	}
	if len(muts) == 0 {
		return ops, nil
	}
	return append(ops, ovsdb.Operation{Op: ovsdb.OperationMutate, Table: PhysicalPortTable, Where: byUUID(portUUID), Mutations: muts}), nil
}

func logicalSwitchRow(ls *LogicalSwitch) ovsdb.Row {
	key := Set{}
	if ls.TunnelKey != nil {
		key = Set{*ls.TunnelKey}
	}
	return ovsdb.Row{
		"name":         ls.Name,
		"description":  ls.Description,
		"tunnel_key":   key,
		"other_config": StringMap(ls.OtherConfig),
	}
}

// InsertLogicalSwitchOps inserts a Logical_Switch (a root table).
func InsertLogicalSwitchOps(ops []ovsdb.Operation, ls *LogicalSwitch) ([]ovsdb.Operation, error) {
	if ls.Name == "" {
		return ops, fmt.Errorf("logical switch: empty name")
	}
	return append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: LogicalSwitchTable, UUIDName: ls.UUID, Row: logicalSwitchRow(ls)}), nil
}

// UpdateLogicalSwitchOps rewrites name, description, tunnel_key and
// other_config of the Logical_Switch ls.UUID.
func UpdateLogicalSwitchOps(ops []ovsdb.Operation, ls *LogicalSwitch) ([]ovsdb.Operation, error) {
	if err := checkRef("logical switch "+ls.Name, ls.UUID); err != nil {
		return ops, err
	}
	return append(ops, ovsdb.Operation{Op: ovsdb.OperationUpdate, Table: LogicalSwitchTable, Where: byUUID(ls.UUID), Row: logicalSwitchRow(ls)}), nil
}

// DeleteLogicalSwitchOps deletes Logical_Switches. The caller must delete,
// in the same transaction, every row that refers to them (Ucast/Mcast
// Macs Local and Remote, vlan_bindings): strong references block the
// delete.
func DeleteLogicalSwitchOps(ops []ovsdb.Operation, uuids ...string) ([]ovsdb.Operation, error) {
	return deleteOps(ops, LogicalSwitchTable, uuids)
}

func deleteOps(ops []ovsdb.Operation, table string, uuids []string) ([]ovsdb.Operation, error) {
	for _, u := range uuids {
		if err := checkRef(table, u); err != nil {
			return ops, err
		}
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationDelete, Table: table, Where: byUUID(u)})
	}
	return ops, nil
}

// InsertPhysicalLocatorOps inserts a Physical_Locator with a named UUID.
// Some row inserted or updated in the same transaction must refer to it,
// and no locator with the same (encapsulation_type, dst_ip, tunnel_key)
// may exist.
func InsertPhysicalLocatorOps(ops []ovsdb.Operation, loc *PhysicalLocator) ([]ovsdb.Operation, error) {
	if loc.UUID == "" || isUUID(loc.UUID) {
		return ops, fmt.Errorf("physical locator %s: needs a named UUID", loc.DstIP)
	}
	if net.ParseIP(loc.DstIP) == nil {
		return ops, fmt.Errorf("physical locator: bad dst_ip %q", loc.DstIP)
	}
	enc := loc.EncapsulationType
	if enc == "" {
		enc = PhysicalLocatorEncapsulationTypeVxlanOverIpv4
	}
	row := ovsdb.Row{"encapsulation_type": enc, "dst_ip": loc.DstIP}
	if loc.TunnelKey != nil {
		row["tunnel_key"] = *loc.TunnelKey
	}
	return append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: PhysicalLocatorTable, UUIDName: loc.UUID, Row: row}), nil
}

// InsertPhysicalLocatorSetOps inserts a Physical_Locator_Set (immutable:
// a different set of locators is a new row) with a named UUID; a
// Mcast_Macs row in the same transaction must refer to it.
func InsertPhysicalLocatorSetOps(ops []ovsdb.Operation, set *PhysicalLocatorSet) ([]ovsdb.Operation, error) {
	if set.UUID == "" || isUUID(set.UUID) {
		return ops, fmt.Errorf("physical locator set: needs a named UUID")
	}
	if len(set.Locators) == 0 {
		return ops, fmt.Errorf("physical locator set: no locators")
	}
	locs := make(Set, 0, len(set.Locators))
	for _, l := range set.Locators {
		locs = append(locs, Ref(l))
	}
	return append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: PhysicalLocatorSetTable, UUIDName: set.UUID, Row: ovsdb.Row{"locators": locs}}), nil
}

// checkMAC accepts a 48-bit MAC or "unknown-dst" (Mcast_Macs rows).
func checkMAC(mac string) error {
	if mac == "unknown-dst" {
		return nil
	}
	_, err := macaddr.Parse(mac)
	return err
}

// InsertUcastMacsRemoteOps inserts Ucast_Macs_Remote rows.
func InsertUcastMacsRemoteOps(ops []ovsdb.Operation, rows ...*UcastMacsRemote) ([]ovsdb.Operation, error) {
	for _, m := range rows {
		if err := checkMAC(m.MAC); err != nil {
			return ops, fmt.Errorf("ucast remote: %w", err)
		}
		if m.LogicalSwitch == "" || m.Locator == "" {
			return ops, fmt.Errorf("ucast remote %s: logical switch and locator needed", m.MAC)
		}
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: UcastMacsRemoteTable, Row: ovsdb.Row{
			"MAC": m.MAC, "logical_switch": Ref(m.LogicalSwitch), "locator": Ref(m.Locator), "ipaddr": m.Ipaddr,
		}})
	}
	return ops, nil
}

// UpdateUcastMacsRemoteOps rewrites locator and ipaddr of existing rows.
func UpdateUcastMacsRemoteOps(ops []ovsdb.Operation, rows ...*UcastMacsRemote) ([]ovsdb.Operation, error) {
	for _, m := range rows {
		if err := checkRef("ucast remote "+m.MAC, m.UUID); err != nil {
			return ops, err
		}
		if m.Locator == "" {
			return ops, fmt.Errorf("ucast remote %s: locator needed", m.MAC)
		}
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationUpdate, Table: UcastMacsRemoteTable, Where: byUUID(m.UUID), Row: ovsdb.Row{
			"locator": Ref(m.Locator), "ipaddr": m.Ipaddr,
		}})
	}
	return ops, nil
}

// DeleteUcastMacsRemoteOps deletes Ucast_Macs_Remote rows. A locator left
// without references disappears at commit.
func DeleteUcastMacsRemoteOps(ops []ovsdb.Operation, uuids ...string) ([]ovsdb.Operation, error) {
	return deleteOps(ops, UcastMacsRemoteTable, uuids)
}

// InsertMcastMacsRemoteOps inserts Mcast_Macs_Remote rows.
func InsertMcastMacsRemoteOps(ops []ovsdb.Operation, rows ...*McastMacsRemote) ([]ovsdb.Operation, error) {
	for _, m := range rows {
		if err := checkMAC(m.MAC); err != nil {
			return ops, fmt.Errorf("mcast remote: %w", err)
		}
		if m.LogicalSwitch == "" || m.LocatorSet == "" {
			return ops, fmt.Errorf("mcast remote %s: logical switch and locator set needed", m.MAC)
		}
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationInsert, Table: McastMacsRemoteTable, Row: ovsdb.Row{
			"MAC": m.MAC, "logical_switch": Ref(m.LogicalSwitch), "locator_set": Ref(m.LocatorSet), "ipaddr": m.Ipaddr,
		}})
	}
	return ops, nil
}

// UpdateMcastMacsRemoteOps points existing rows at another locator set
// (the set itself cannot change).
func UpdateMcastMacsRemoteOps(ops []ovsdb.Operation, rows ...*McastMacsRemote) ([]ovsdb.Operation, error) {
	for _, m := range rows {
		if err := checkRef("mcast remote "+m.MAC, m.UUID); err != nil {
			return ops, err
		}
		if m.LocatorSet == "" {
			return ops, fmt.Errorf("mcast remote %s: locator set needed", m.MAC)
		}
		ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationUpdate, Table: McastMacsRemoteTable, Where: byUUID(m.UUID), Row: ovsdb.Row{
			"locator_set": Ref(m.LocatorSet), "ipaddr": m.Ipaddr,
		}})
	}
	return ops, nil
}

// DeleteMcastMacsRemoteOps deletes Mcast_Macs_Remote rows.
func DeleteMcastMacsRemoteOps(ops []ovsdb.Operation, uuids ...string) ([]ovsdb.Operation, error) {
	return deleteOps(ops, McastMacsRemoteTable, uuids)
}

// DeleteUcastMacsLocalOps deletes Ucast_Macs_Local rows (the switch's own;
// needed before deleting their Logical_Switch).
func DeleteUcastMacsLocalOps(ops []ovsdb.Operation, uuids ...string) ([]ovsdb.Operation, error) {
	return deleteOps(ops, UcastMacsLocalTable, uuids)
}

// DeleteMcastMacsLocalOps deletes Mcast_Macs_Local rows.
func DeleteMcastMacsLocalOps(ops []ovsdb.Operation, uuids ...string) ([]ovsdb.Operation, error) {
	return deleteOps(ops, McastMacsLocalTable, uuids)
}
