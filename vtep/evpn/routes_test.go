package evpn

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/l2span/l2span/vtep"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	self  = netip.MustParseAddr("192.0.2.10")
	leafA = netip.MustParseAddr("192.0.2.21")
	leafB = netip.MustParseAddr("192.0.2.22")
)

func TestTemplates(t *testing.T) {
	for _, tc := range []struct {
		tmpl    string
		asn     uint32
		vni     uint32
		rd, rt  string // want (GoBGP's text); empty with err
		wantErr string
	}{
		{tmpl: DefaultTemplate, asn: 65000, vni: 4000, rd: "65000:4000", rt: "65000:4000"},
		{tmpl: "{asn}:{vni}", asn: 65000, vni: 16000000, rd: "65000:16000000", rt: "65000:16000000"},
		{tmpl: "192.0.2.1:{vni}", asn: 65000, vni: 100, rd: "192.0.2.1:100", rt: "192.0.2.1:100"},
		{tmpl: "{asn}:{vni}", asn: 4200000000, vni: 7, rd: "64086.59904:7", rt: "64086.59904:7"},
		{tmpl: "65001:{vni}", asn: 65000, vni: 9, rd: "65001:9", rt: "65001:9"},
		{tmpl: "192.0.2.1:{vni}", asn: 65000, vni: 70000, wantErr: "16 bits"},
		{tmpl: "{asn}:{vni}", asn: 4200000000, vni: 70000, wantErr: "16 bits"},
		{tmpl: "{vni}", asn: 65000, vni: 1, wantErr: "ADMIN:NUMBER"},
		{tmpl: "{asn}:x", asn: 65000, vni: 1, wantErr: "assigned number"},
		{tmpl: "fabric:{vni}", asn: 65000, vni: 1, wantErr: "neither an AS number nor an IPv4 address"},
		{tmpl: "2001:db8::1:{vni}", asn: 65000, vni: 1, wantErr: "assigned number"},
	} {
		t.Run(tc.tmpl+"/"+tc.rd, func(t *testing.T) {
			s := template(tc.tmpl).expand(tc.asn, tc.vni)
			d, errRD := rd(s)
			target, errRT := rt(s)
			if tc.wantErr != "" {
				if errRD == nil || errRT == nil || !strings.Contains(errRD.Error(), tc.wantErr) {
					t.Fatalf("rd %v rt %v, want errors with %q", errRD, errRT, tc.wantErr)
				}
				return
			}
			if errRD != nil || errRT != nil {
				t.Fatalf("rd %v rt %v", errRD, errRT)
			}
			if d.String() != tc.rd || rtString(target) != tc.rt {
				t.Fatalf("rd %s rt %s, want %s %s", d, rtString(target), tc.rd, tc.rt)
			}
			if _, st := target.GetTypes(); st != bgp.EC_SUBTYPE_ROUTE_TARGET {
				t.Fatalf("rt subtype %v", st)
			}
		})
	}
	// Options name the flag at fault.
	o := Options{ASN: 65000, VTEP: self, Neighbors: []Neighbor{{Address: leafA, RemoteAS: 65000}}, SocketDir: "/x", RD: "fabric:{vni}"}
	o.Overlay.Port = 4790
	if _, err := o.withDefaults(); err == nil || !strings.HasPrefix(err.Error(), "evpn-rd:") {
		t.Fatalf("bad rd: %v", err)
	}
	o.RD, o.RT = "", "1.2.3.4:{vni}"
	if _, err := o.withDefaults(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	o.SocketDir, o.SpeakerSocket = "", "/run/l2span/bgpd.sock"
	if _, err := o.withDefaults(); err != nil {
		t.Fatalf("a speaker socket needs no socket dir: %v", err)
	}
}

func testCfg() vtep.Config {
	return vtep.Config{Networks: []vtep.Network{{VNI: 100,
		MACs: []vtep.MACEntry{
			{MAC: mac("fa:16:3e:00:00:01"), VTEP: netip.MustParseAddr("198.51.100.5"), Seq: 0},
			{MAC: mac("fa:16:3e:00:00:02"), VTEP: netip.MustParseAddr("198.51.100.5"), Seq: 3},
			{MAC: mac("fa:16:3e:00:00:03"), VTEP: netip.MustParseAddr("198.51.100.5"), Seq: 2},
			{MAC: mac("fa:16:3e:00:00:04"), VTEP: netip.MustParseAddr("198.51.100.5"), Seq: 1},
			{MAC: mac("00:00:00:00:00:00"), VTEP: netip.MustParseAddr("198.51.100.5")}, // flood, not a MAC
		},
		Neighbors: []vtep.Neighbor{
			{IP: netip.MustParseAddr("203.0.113.1"), MAC: mac("fa:16:3e:00:00:01")},
			{IP: netip.MustParseAddr("2001:db8::1"), MAC: mac("fa:16:3e:00:00:01")},
			{IP: netip.MustParseAddr("203.0.113.3"), MAC: mac("fa:16:3e:00:00:03")}, // its MAC is the fabric's
			{IP: netip.MustParseAddr("203.0.113.9"), MAC: mac("fa:16:3e:00:00:09")}, // no such remote MAC
		},
	}}}
}

func TestWantExport(t *testing.T) {
	fabric := map[key]route{
		// The fabric has :03 with a newer sequence (it moved there) and
		// :04 sticky: both are the fabric's, not ours to advertise.
		{VNI: 100, Type: typeMACIP, MAC: string(mac("fa:16:3e:00:00:03"))}: {Seq: 2},
		{VNI: 100, Type: typeMACIP, MAC: string(mac("fa:16:3e:00:00:04"))}: {Seq: 0, Sticky: true},
		// The fabric's older route for :02 does not hide ours.
		{VNI: 100, Type: typeMACIP, MAC: string(mac("fa:16:3e:00:00:02"))}: {Seq: 2},
	}
	want := wantExport(testCfg(), self, fabric)
	var got []string
	for _, r := range want {
		if r.NextHop != self {
			t.Fatalf("next hop of %+v", r)
		}
		s := r.Type + " " + r.MAC.String()
		if r.IP.IsValid() {
			s += " " + r.IP.String()
		}
		if r.Seq > 0 {
			s += " seq " + string(rune('0'+r.Seq))
		}
		got = append(got, s)
	}
	slices.Sort(got)
	exp := []string{
		"macip fa:16:3e:00:00:01",
		"macip fa:16:3e:00:00:01 2001:db8::1",
		"macip fa:16:3e:00:00:01 203.0.113.1",
		"macip fa:16:3e:00:00:02 seq 3",
		"multicast ",
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("export:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
}

func TestExportDiff(t *testing.T) {
	attrs := netAttrs{asn: 65000, rd: DefaultTemplate, rt: DefaultTemplate}
	r := func(m string, seq uint32) route {
		x, err := attrs.fill(route{VNI: 100, Type: typeMACIP, MAC: mac(m), NextHop: self, Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	oldRD := func(x route) route {
		x.RD = bgp.NewRouteDistinguisherIPAddressAS("192.0.2.10", 100)
		return x
	}
	names := func(rs []route) []string {
		var out []string
		for _, x := range rs {
			out = append(out, x.MAC.String()+"@"+rdString(x.RD)+"#"+string(rune('0'+x.Seq)))
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		have          []route
		want          []route
		wdraw, advert []string
	}{
		{name: "new", want: []route{r("fa:16:3e:00:00:01", 0)}, advert: []string{"fa:16:3e:00:00:01@65000:100#0"}},
		{name: "same", have: []route{r("fa:16:3e:00:00:01", 1)}, want: []route{r("fa:16:3e:00:00:01", 1)}},
		{name: "gone", have: []route{r("fa:16:3e:00:00:01", 1)}, wdraw: []string{"fa:16:3e:00:00:01@65000:100#1"}},
		{name: "sequence up: replaced in place", have: []route{r("fa:16:3e:00:00:01", 1)}, want: []route{r("fa:16:3e:00:00:01", 2)},
			advert: []string{"fa:16:3e:00:00:01@65000:100#2"}},
		{name: "sequence down: withdrawn first", have: []route{r("fa:16:3e:00:00:01", 4)}, want: []route{r("fa:16:3e:00:00:01", 0)},
			wdraw: []string{"fa:16:3e:00:00:01@65000:100#4"}, advert: []string{"fa:16:3e:00:00:01@65000:100#0"}},
		{name: "RD template changed across a restart", have: []route{oldRD(r("fa:16:3e:00:00:01", 1)), r("fa:16:3e:00:00:02", 0)},
			want:  []route{r("fa:16:3e:00:00:01", 1), r("fa:16:3e:00:00:02", 0)},
			wdraw: []string{"fa:16:3e:00:00:01@192.0.2.10:100#1"}, advert: []string{"fa:16:3e:00:00:01@65000:100#1"}},
		{name: "RT changed: advertised again", have: []route{func() route { x := r("fa:16:3e:00:00:01", 0); x.RT = "65000:1"; return x }()},
			want: []route{r("fa:16:3e:00:00:01", 0)}, advert: []string{"fa:16:3e:00:00:01@65000:100#0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := map[key]route{}
			for _, w := range tc.want {
				want[w.key()] = w
			}
			w, a := exportDiff(tc.have, want)
			if !slices.Equal(names(w), tc.wdraw) || !slices.Equal(names(a), tc.advert) {
				t.Fatalf("withdraw %q advertise %q, want %q %q", names(w), names(a), tc.wdraw, tc.advert)
			}
		})
	}
}

func TestImported(t *testing.T) {
	rs := []route{
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0a"), NextHop: leafA},
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0a"), IP: netip.MustParseAddr("2001:db8::a"), NextHop: leafA},
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0a"), IP: netip.MustParseAddr("203.0.113.10"), NextHop: leafA},
		// :0b moved from leafA (seq 1) to leafB (seq 2): the newer wins.
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0b"), NextHop: leafA, Seq: 1},
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0b"), NextHop: leafB, Seq: 2},
		// Static on leafB.
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0c"), NextHop: leafB, Sticky: true},
		// Our own, reflected back: not the fabric's.
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:01"), NextHop: self, Seq: 3},
		{VNI: 100, Type: typeMulticast, NextHop: leafA},
		{VNI: 100, Type: typeMulticast, NextHop: leafB},
		{VNI: 100, Type: typeMulticast, NextHop: self},
		{VNI: 200, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:0d"), NextHop: leafB},
	}
	im := newImported(rs, self)
	n := im.fabricNetwork(100, "l2fy100")
	fdb := map[string]string{}
	for _, m := range n.MACs {
		fdb[m.MAC.String()] = m.VTEP.String()
	}
	wantFDB := map[string]string{"fa:16:3e:00:00:0a": leafA.String(), "fa:16:3e:00:00:0b": leafB.String(), "fa:16:3e:00:00:0c": leafB.String()}
	if len(fdb) != len(wantFDB) {
		t.Fatalf("fdb %v, want %v", fdb, wantFDB)
	}
	for k, v := range wantFDB {
		if fdb[k] != v {
			t.Fatalf("fdb %v, want %v", fdb, wantFDB)
		}
	}
	slices.SortFunc(n.Flood, netip.Addr.Compare)
	if !slices.Equal(n.Flood, []netip.Addr{leafA, leafB}) || n.LocalInterface != "l2fy100" {
		t.Fatalf("flood %v on %s", n.Flood, n.LocalInterface)
	}
	var got []string
	for _, m := range im.localMACs() {
		s := m.MAC.String() + " " + m.Locator.String()
		if m.IP.IsValid() {
			s += " " + m.IP.String()
		}
		if !m.Sequenced {
			t.Fatalf("%s not sequenced", s)
		}
		if m.Seq > 0 {
			s += " seq " + string(rune('0'+m.Seq))
		}
		if m.Sticky {
			s += " sticky"
		}
		got = append(got, s)
	}
	exp := []string{
		"fa:16:3e:00:00:0a 192.0.2.21 203.0.113.10", // IPv4 first: the learner keeps the first IP
		"fa:16:3e:00:00:0a 192.0.2.21 2001:db8::a",
		"fa:16:3e:00:00:0b 192.0.2.22 seq 2",
		"fa:16:3e:00:00:0c 192.0.2.22 sticky",
		"fa:16:3e:00:00:0d 192.0.2.22",
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("local MACs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
	// The export side sees the fabric's newest sequence per MAC.
	if m := im.macs()[key{VNI: 100, Type: typeMACIP, MAC: string(mac("fa:16:3e:00:00:0b"))}]; m.Seq != 2 || m.NextHop != leafB {
		t.Fatalf("macs()[:0b] = %+v", m)
	}
}

// TestPathRoundTrip: what we advertise reads back as the same route,
// through GoBGP's path encoding (ours by label, the fabric's by RT).
func TestPathRoundTrip(t *testing.T) {
	attrs := netAttrs{asn: 65000, rd: "192.0.2.10:{vni}", rt: DefaultTemplate}
	rtVNI := map[string]uint32{"65000:100": 100}
	for _, r := range []route{
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:01"), NextHop: self},
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("2001:db8::1"), NextHop: self, Seq: 7},
		{VNI: 100, Type: typeMACIP, MAC: mac("fa:16:3e:00:00:02"), IP: netip.MustParseAddr("203.0.113.2"), NextHop: self, Seq: 1, Sticky: true},
		{VNI: 100, Type: typeMulticast, NextHop: self},
	} {
		p, err := attrs.path(r, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, byLabel := range []bool{true, false} {
			got, ok, err := parsePath(p, rtVNI, byLabel)
			if err != nil || !ok {
				t.Fatalf("parse %+v: ok %v err %v", r, ok, err)
			}
			want, _ := attrs.fill(r)
			if !sameRoute(got, want) {
				t.Fatalf("byLabel %v: got %+v (rd %s), want %+v (rd %s)", byLabel, got, rdString(got.RD), want, rdString(want.RD))
			}
		}
		// A route target we do not import is not the fabric's route of ours.
		if _, ok, _ := parsePath(p, map[string]uint32{}, false); ok {
			t.Fatalf("route with an unknown RT imported: %+v", r)
		}
	}
}
