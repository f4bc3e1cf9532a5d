package hwvtep

import (
	"encoding/json"
	"testing"

	"github.com/l2span/l2span/ovsdb"
)

// FuzzPlanFromState: the planner reads back whatever rows a switch's OVSDB
// holds (another writer, a buggy switch): a State built from fuzz bytes
// plans without panicking.
func FuzzPlanFromState(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"LogicalSwitch":{"u1":{"UUID":"u1","Name":"l2s-5000","TunnelKey":5000}},"PhysicalLocator":{"l1":{"UUID":"l1","DstIP":"192.0.2.20","EncapsulationType":"vxlan_over_ipv4"}},` +
		`"UcastMacsRemote":{"m1":{"UUID":"m1","MAC":"fa:16:3e:00:00:02","Locator":"l1","LogicalSwitch":"u1"}},"UcastMacsLocal":{"m2":{"UUID":"m2","MAC":"zz","Locator":"nope","LogicalSwitch":"u1"}},` +
		`"PhysicalSwitch":{"s1":{"UUID":"s1","Name":"sw0","Ports":["p1","missing"],"TunnelIps":["bad"]}},"PhysicalPort":{"p1":{"UUID":"p1","Name":"p0","VLANBindings":{"10":"u1","99999":"gone"}}}}`))
	f.Add([]byte(`{"LogicalSwitch":{"u1":{"UUID":"u1","Name":"l2s-x","TunnelKey":-1}},"McastMacsRemote":{"c":{"UUID":"c","MAC":"unknown-dst","LocatorSet":"ls","LogicalSwitch":"u1"}},"PhysicalLocatorSet":{"ls":{"UUID":"ls","Locators":["l9"]}}}`))
	cfg := baseConfig().Normalize()
	f.Fuzz(func(t *testing.T, b []byte) {
		var st ovsdb.State
		if json.Unmarshal(b, &st) != nil {
			return
		}
		dropNilRows(&st) // the cache never holds a nil row
		makePlan(&st, Options{PhysicalSwitch: "sw0", TunnelIP: self}, cfg)
	})
}

func dropNilRows(st *ovsdb.State) {
	for k, v := range st.Global {
		if v == nil {
			delete(st.Global, k)
		}
	}
	for k, v := range st.PhysicalSwitch {
		if v == nil {
			delete(st.PhysicalSwitch, k)
		}
	}
	for k, v := range st.PhysicalPort {
		if v == nil {
			delete(st.PhysicalPort, k)
		}
	}
	for k, v := range st.LogicalSwitch {
		if v == nil {
			delete(st.LogicalSwitch, k)
		}
	}
	for k, v := range st.PhysicalLocator {
		if v == nil {
			delete(st.PhysicalLocator, k)
		}
	}
	for k, v := range st.PhysicalLocatorSet {
		if v == nil {
			delete(st.PhysicalLocatorSet, k)
		}
	}
	for k, v := range st.UcastMacsRemote {
		if v == nil {
			delete(st.UcastMacsRemote, k)
		}
	}
	for k, v := range st.UcastMacsLocal {
		if v == nil {
			delete(st.UcastMacsLocal, k)
		}
	}
	for k, v := range st.McastMacsRemote {
		if v == nil {
			delete(st.McastMacsRemote, k)
		}
	}
	for k, v := range st.McastMacsLocal {
		if v == nil {
			delete(st.McastMacsLocal, k)
		}
	}
}
