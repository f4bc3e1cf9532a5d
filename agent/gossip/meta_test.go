package gossip

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func testMeta(pod, gw string) Meta {
	return Meta{
		Pod:       pod,
		GatewayID: gw,
		VTEP:      netip.MustParseAddr("192.0.2.10"),
		Backend:   BackendLinux,
		Healthy:   true,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		testMeta("pod1", "gw-a"),
		{
			Pod: "pod2", GatewayID: "gw-b", VTEP: netip.MustParseAddr("2001:db8::1"),
			Backend: BackendHWVTEP, DVRMAC: net.HardwareAddr{0xfa, 0x16, 0x3f, 0, 0, 1},
			Weight: 200, Proto: 3,
		},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal %+v: %v", m, err)
		}
		var got Meta
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if want := m.normalized(); !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
		t.Logf("%s: %d bytes", m.GatewayID, len(b))
	}
}

func TestMetaDefaults(t *testing.T) {
	b, err := testMeta("p", "g").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Meta
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Weight != DefaultWeight || got.Proto != ProtocolVersion {
		t.Errorf("weight %d proto %d, want %d %d", got.Weight, got.Proto, DefaultWeight, ProtocolVersion)
	}
	// An IPv4-mapped VTEP is advertised as plain IPv4.
	m := testMeta("p", "g")
	m.VTEP = netip.MustParseAddr("::ffff:192.0.2.1")
	b, _ = m.MarshalBinary()
	_ = got.UnmarshalBinary(b)
	if got.VTEP != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("vtep %s", got.VTEP)
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := testMeta(strings.Repeat("p", 400), strings.Repeat("g", 120))
	_, err := m.MarshalBinary()
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("err = %v, want ErrMetaTooLarge", err)
	}
	t.Log(err)
	// Just under the limit is fine.
	m.GatewayID = strings.Repeat("g", 90)
	if b, err := m.MarshalBinary(); err != nil || len(b) > MaxMetaSize {
		t.Fatalf("len %d err %v", len(b), err)
	}
}

func TestMetaInvalid(t *testing.T) {
	for name, mut := range map[string]func(*Meta){
		"pod":     func(m *Meta) { m.Pod = "" },
		"gateway": func(m *Meta) { m.GatewayID = "" },
		"vtep":    func(m *Meta) { m.VTEP = netip.Addr{} },
		"backend": func(m *Meta) { m.Backend = "ovs" },
	} {
		m := testMeta("p", "g")
		mut(&m)
		if _, err := m.MarshalBinary(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	good, err := testMeta("pod1", "gw-a").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var m Meta
	for i := range len(good) {
		if err := m.UnmarshalBinary(good[:i]); err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
	bad := append([]byte{}, good...)
	bad[0] = 2
	if err := m.UnmarshalBinary(bad); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v", err)
	}
	bad = append([]byte{}, good...)
	bad[5] = 7 // vtep length
	if err := m.UnmarshalBinary(bad); err == nil {
		t.Error("vtep length 7: no error")
	}
	// Fields appended by a later minor revision are ignored.
	if err := m.UnmarshalBinary(append(append([]byte{}, good...), 1, 2, 3)); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
	if m.GatewayID != "gw-a" {
		t.Errorf("gateway %q", m.GatewayID)
	}
}

func FuzzMetaUnmarshal(f *testing.F) {
	good, _ := testMeta("pod1", "gw-a").MarshalBinary()
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if m.UnmarshalBinary(b) != nil {
			return
		}
		if _, err := m.MarshalBinary(); err != nil {
			t.Fatalf("decoded meta does not encode: %v", err)
		}
	})
}
