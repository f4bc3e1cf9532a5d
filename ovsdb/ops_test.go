package ovsdb

import "testing"

func TestMACRowsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		mac   string
		ucast bool // accepted in Ucast_Macs_Remote
		mcast bool // accepted in Mcast_Macs_Remote
	}{
		{"02:00:00:00:00:01", true, true},
		{"02-00-00-00-00-01", true, true},
		{"unknown-dst", true, true}, // one check for both tables
		{"02:00:00:00:00", false, false},
		{"02:00:5e:10:00:00:00:01", false, false}, // EUI-64: not for hardware_vtep
		{"", false, false},
	} {
		_, err := InsertUcastMacsRemoteOps(nil, &UcastMacsRemote{MAC: tc.mac, LogicalSwitch: "ls", Locator: "loc"})
		if (err == nil) != tc.ucast {
			t.Errorf("ucast %q: %v", tc.mac, err)
		}
		_, err = InsertMcastMacsRemoteOps(nil, &McastMacsRemote{MAC: tc.mac, LogicalSwitch: "ls", LocatorSet: "set"})
		if (err == nil) != tc.mcast {
			t.Errorf("mcast %q: %v", tc.mac, err)
		}
	}
}
