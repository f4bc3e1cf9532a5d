package ovsdb

import (
	"encoding/json"
	"testing"
)

func TestRefMarshal(t *testing.T) {
	for in, want := range map[Ref]string{
		"0b5e6c1c-5b33-4d5f-9d43-7c7e3a0c1f00": `["uuid","0b5e6c1c-5b33-4d5f-9d43-7c7e3a0c1f00"]`,
		"ls100":                                `["named-uuid","ls100"]`,
		"0B5E6C1C-5B33-4D5F-9D43-7C7E3A0C1F00": `["named-uuid","0B5E6C1C-5B33-4D5F-9D43-7C7E3A0C1F00"]`,
	} {
		b, err := json.Marshal(in)
		if err != nil || string(b) != want {
			t.Errorf("%s: %s %v, want %s", in, b, err, want)
		}
	}
	if b, _ := json.Marshal(Set(nil)); string(b) != `["set",[]]` {
		t.Errorf("empty set %s", b)
	}
	if b, _ := json.Marshal(Map{{10, Ref("x")}}); string(b) != `["map",[[10,["named-uuid","x"]]]]` {
		t.Errorf("map %s", b)
	}
}

func TestApplyRow(t *testing.T) {
	st := newState()
	u := "0b5e6c1c-5b33-4d5f-9d43-7c7e3a0c1f00"
	rows := map[string]string{
		PhysicalPortTable:    `{"name":"p0","description":"","vlan_bindings":["map",[[10,["uuid","` + u + `"]]]],"acl_bindings":["map",[]],"vlan_stats":["map",[]],"other_config":["map",[["a","b"]]],"port_fault_status":["set",[]]}`,
		LogicalSwitchTable:   `{"name":"l2s-1","description":"","tunnel_key":1,"replication_mode":["set",[]],"other_config":["map",[]]}`,
		PhysicalSwitchTable:  `{"name":"sw","ports":["uuid","` + u + `"],"tunnel_ips":["set",["192.0.2.1","192.0.2.2"]]}`,
		PhysicalLocatorTable: `{"encapsulation_type":"vxlan_over_ipv4","dst_ip":"192.0.2.1","tunnel_key":["set",[]]}`,
	}
	for table, raw := range rows {
		if err := st.applyRow(table, u, json.RawMessage(raw)); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
	}
	if pp := st.PhysicalPort[u]; pp.VLANBindings[10] != u || pp.OtherConfig["a"] != "b" {
		t.Errorf("port %+v", pp)
	}
	if ls := st.LogicalSwitch[u]; ls.TunnelKey == nil || *ls.TunnelKey != 1 || ls.ReplicationMode != nil {
		t.Errorf("switch %+v", ls)
	}
	if ps := st.PhysicalSwitch[u]; len(ps.Ports) != 1 || ps.Ports[0] != u || len(ps.TunnelIPs) != 2 {
		t.Errorf("physical switch %+v", ps)
	}
	if l := st.PhysicalLocator[u]; l.TunnelKey != nil || l.DstIP != "192.0.2.1" {
		t.Errorf("locator %+v", l)
	}
	if err := st.applyRow(PhysicalLocatorTable, u, nil); err != nil || len(st.PhysicalLocator) != 0 {
		t.Errorf("delete: %v", err)
	}
}
