package ovsdb

import (
	"github.com/ovn-kubernetes/libovsdb/cache"
)

// State is a snapshot of the monitored hardware_vtep tables, keyed by row
// UUID. Rows are shared with libovsdb's cache, which replaces them whole on
// every update: never modify them.
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

// snapshot copies the row maps (not the rows) of tc's monitored tables.
func snapshot(tc *cache.TableCache) *State {
	return &State{
		Global:             rowsOf[Global](tc, GlobalTable),
		PhysicalSwitch:     rowsOf[PhysicalSwitch](tc, PhysicalSwitchTable),
		PhysicalPort:       rowsOf[PhysicalPort](tc, PhysicalPortTable),
		LogicalSwitch:      rowsOf[LogicalSwitch](tc, LogicalSwitchTable),
		PhysicalLocator:    rowsOf[PhysicalLocator](tc, PhysicalLocatorTable),
		PhysicalLocatorSet: rowsOf[PhysicalLocatorSet](tc, PhysicalLocatorSetTable),
		UcastMacsRemote:    rowsOf[UcastMacsRemote](tc, UcastMacsRemoteTable),
		UcastMacsLocal:     rowsOf[UcastMacsLocal](tc, UcastMacsLocalTable),
		McastMacsRemote:    rowsOf[McastMacsRemote](tc, McastMacsRemoteTable),
		McastMacsLocal:     rowsOf[McastMacsLocal](tc, McastMacsLocalTable),
	}
}

func rowsOf[T any](tc *cache.TableCache, table string) map[string]*T {
	rc := tc.Table(table)
	if rc == nil {
		return map[string]*T{}
	}
	rows := rc.RowsShallow()
	out := make(map[string]*T, len(rows))
	for uuid, m := range rows {
		if r, ok := m.(*T); ok {
			out[uuid] = r
		}
	}
	return out
}
