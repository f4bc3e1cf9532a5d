package ovsdb

import (
	"encoding/json"
	"fmt"
)

// State is the client's cache of the monitored hardware_vtep tables, keyed
// by row UUID. Rows are replaced whole on every update; never modify them.
type State struct {
	Global             map[string]*Global
	PhysicalSwitch     map[string]*PhysicalSwitch
	PhysicalPort       map[string]*PhysicalPort
	LogicalSwitch      map[string]*LogicalSwitch
	PhysicalLocator    map[string]*PhysicalLocator
	PhysicalLocatorSet map[string]*PhysicalLocatorSet
	UcastMacsRemote    map[string]*UcastMacsRemote
	UcastMacsLocal     map[string]*UcastMacsLocal
	McastMacsRemote    map[string]*McastMacsRemote
	McastMacsLocal     map[string]*McastMacsLocal
}

// MonitoredTables are the tables State holds.
var MonitoredTables = []string{GlobalTable, PhysicalSwitchTable, PhysicalPortTable, LogicalSwitchTable, PhysicalLocatorTable, PhysicalLocatorSetTable, UcastMacsRemoteTable, UcastMacsLocalTable, McastMacsRemoteTable, McastMacsLocalTable}

func newState() *State {
	return &State{
		Global:             map[string]*Global{},
		PhysicalSwitch:     map[string]*PhysicalSwitch{},
		PhysicalPort:       map[string]*PhysicalPort{},
		LogicalSwitch:      map[string]*LogicalSwitch{},
		PhysicalLocator:    map[string]*PhysicalLocator{},
		PhysicalLocatorSet: map[string]*PhysicalLocatorSet{},
		UcastMacsRemote:    map[string]*UcastMacsRemote{},
		UcastMacsLocal:     map[string]*UcastMacsLocal{},
		McastMacsRemote:    map[string]*McastMacsRemote{},
		McastMacsLocal:     map[string]*McastMacsLocal{},
	}
}

// applyRow stores (or, when raw is nil, deletes) one row.
func (s *State) applyRow(table, uuid string, raw json.RawMessage) error {
	switch table {
	case GlobalTable:
		if raw == nil {
			delete(s.Global, uuid)
			return nil
		}
		var w struct {
			Managers    wireSet[wireUUID]       `json:"managers"`
			OtherConfig wireMap[string, string] `json:"other_config"`
			Switches    wireSet[wireUUID]       `json:"switches"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.Global[uuid] = &Global{UUID: uuid,
			Managers:    strs(w.Managers),
			OtherConfig: map[string]string(w.OtherConfig),
			Switches:    strs(w.Switches),
		}
		return nil
	case PhysicalSwitchTable:
		if raw == nil {
			delete(s.PhysicalSwitch, uuid)
			return nil
		}
		var w struct {
			Description       string                  `json:"description"`
			ManagementIPs     wireSet[string]         `json:"management_ips"`
			Name              string                  `json:"name"`
			OtherConfig       wireMap[string, string] `json:"other_config"`
			Ports             wireSet[wireUUID]       `json:"ports"`
			SwitchFaultStatus wireSet[string]         `json:"switch_fault_status"`
			TunnelIPs         wireSet[string]         `json:"tunnel_ips"`
			Tunnels           wireSet[wireUUID]       `json:"tunnels"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.PhysicalSwitch[uuid] = &PhysicalSwitch{UUID: uuid,
			Description:       w.Description,
			ManagementIPs:     []string(w.ManagementIPs),
			Name:              w.Name,
			OtherConfig:       map[string]string(w.OtherConfig),
			Ports:             strs(w.Ports),
			SwitchFaultStatus: []string(w.SwitchFaultStatus),
			TunnelIPs:         []string(w.TunnelIPs),
			Tunnels:           strs(w.Tunnels),
		}
		return nil
	case PhysicalPortTable:
		if raw == nil {
			delete(s.PhysicalPort, uuid)
			return nil
		}
		var w struct {
			ACLBindings     wireMap[int, wireUUID]  `json:"acl_bindings"`
			Description     string                  `json:"description"`
			Name            string                  `json:"name"`
			OtherConfig     wireMap[string, string] `json:"other_config"`
			PortFaultStatus wireSet[string]         `json:"port_fault_status"`
			VLANBindings    wireMap[int, wireUUID]  `json:"vlan_bindings"`
			VLANStats       wireMap[int, wireUUID]  `json:"vlan_stats"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.PhysicalPort[uuid] = &PhysicalPort{UUID: uuid,
			ACLBindings:     uuidMap(w.ACLBindings),
			Description:     w.Description,
			Name:            w.Name,
			OtherConfig:     map[string]string(w.OtherConfig),
			PortFaultStatus: []string(w.PortFaultStatus),
			VLANBindings:    uuidMap(w.VLANBindings),
			VLANStats:       uuidMap(w.VLANStats),
		}
		return nil
	case LogicalSwitchTable:
		if raw == nil {
			delete(s.LogicalSwitch, uuid)
			return nil
		}
		var w struct {
			Description     string                  `json:"description"`
			Name            string                  `json:"name"`
			OtherConfig     wireMap[string, string] `json:"other_config"`
			ReplicationMode wireSet[string]         `json:"replication_mode"`
			TunnelKey       wireSet[int]            `json:"tunnel_key"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.LogicalSwitch[uuid] = &LogicalSwitch{UUID: uuid,
			Description:     w.Description,
			Name:            w.Name,
			OtherConfig:     map[string]string(w.OtherConfig),
			ReplicationMode: optString(w.ReplicationMode),
			TunnelKey:       optInt(w.TunnelKey),
		}
		return nil
	case PhysicalLocatorTable:
		if raw == nil {
			delete(s.PhysicalLocator, uuid)
			return nil
		}
		var w struct {
			DstIP             string       `json:"dst_ip"`
			EncapsulationType string       `json:"encapsulation_type"`
			TunnelKey         wireSet[int] `json:"tunnel_key"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.PhysicalLocator[uuid] = &PhysicalLocator{UUID: uuid,
			DstIP:             w.DstIP,
			EncapsulationType: w.EncapsulationType,
			TunnelKey:         optInt(w.TunnelKey),
		}
		return nil
	case PhysicalLocatorSetTable:
		if raw == nil {
			delete(s.PhysicalLocatorSet, uuid)
			return nil
		}
		var w struct {
			Locators wireSet[wireUUID] `json:"locators"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.PhysicalLocatorSet[uuid] = &PhysicalLocatorSet{UUID: uuid,
			Locators: strs(w.Locators),
		}
		return nil
	case UcastMacsRemoteTable:
		if raw == nil {
			delete(s.UcastMacsRemote, uuid)
			return nil
		}
		var w struct {
			MAC           string   `json:"MAC"`
			Ipaddr        string   `json:"ipaddr"`
			Locator       wireUUID `json:"locator"`
			LogicalSwitch wireUUID `json:"logical_switch"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.UcastMacsRemote[uuid] = &UcastMacsRemote{UUID: uuid,
			MAC:           w.MAC,
			Ipaddr:        w.Ipaddr,
			Locator:       string(w.Locator),
			LogicalSwitch: string(w.LogicalSwitch),
		}
		return nil
	case UcastMacsLocalTable:
		if raw == nil {
			delete(s.UcastMacsLocal, uuid)
			return nil
		}
		var w struct {
			MAC           string   `json:"MAC"`
			Ipaddr        string   `json:"ipaddr"`
			Locator       wireUUID `json:"locator"`
			LogicalSwitch wireUUID `json:"logical_switch"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.UcastMacsLocal[uuid] = &UcastMacsLocal{UUID: uuid,
			MAC:           w.MAC,
			Ipaddr:        w.Ipaddr,
			Locator:       string(w.Locator),
			LogicalSwitch: string(w.LogicalSwitch),
		}
		return nil
	case McastMacsRemoteTable:
		if raw == nil {
			delete(s.McastMacsRemote, uuid)
			return nil
		}
		var w struct {
			MAC           string   `json:"MAC"`
			Ipaddr        string   `json:"ipaddr"`
			LocatorSet    wireUUID `json:"locator_set"`
			LogicalSwitch wireUUID `json:"logical_switch"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.McastMacsRemote[uuid] = &McastMacsRemote{UUID: uuid,
			MAC:           w.MAC,
			Ipaddr:        w.Ipaddr,
			LocatorSet:    string(w.LocatorSet),
			LogicalSwitch: string(w.LogicalSwitch),
		}
		return nil
	case McastMacsLocalTable:
		if raw == nil {
			delete(s.McastMacsLocal, uuid)
			return nil
		}
		var w struct {
			MAC           string   `json:"MAC"`
			Ipaddr        string   `json:"ipaddr"`
			LocatorSet    wireUUID `json:"locator_set"`
			LogicalSwitch wireUUID `json:"logical_switch"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("%s row %s: %w", table, uuid, err)
		}
		s.McastMacsLocal[uuid] = &McastMacsLocal{UUID: uuid,
			MAC:           w.MAC,
			Ipaddr:        w.Ipaddr,
			LocatorSet:    string(w.LocatorSet),
			LogicalSwitch: string(w.LogicalSwitch),
		}
		return nil
	}
	return nil
}
