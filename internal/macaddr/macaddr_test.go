package macaddr

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestParseAndNormalize(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error // nil: want no error; errAny: any error
	}{
		{in: "fa:16:3e:00:00:01", want: "fa:16:3e:00:00:01"},
		{in: "FA:16:3E:0A:0B:0C", want: "fa:16:3e:0a:0b:0c"},
		{in: "fa-16-3e-00-00-01", want: "fa:16:3e:00:00:01"},
		{in: "fa16.3e00.0001", want: "fa:16:3e:00:00:01"},
		{in: "02:00:5e:10:00:00:00:01", err: ErrNot48Bit},
		{in: "", err: errAny},
		{in: "fa:16:3e:00:00", err: errAny},
		{in: "fa:16:3e:00:00:0g", err: errAny},
		{in: "fa:16:3e:00:00:01/24", err: errAny},
	} {
		hw, err := Parse(tc.in)
		norm, nerr := Normalize(tc.in)
		if tc.err != nil {
			if err == nil || nerr == nil {
				t.Errorf("%q: parsed as %s / %q, want an error", tc.in, hw, norm)
			} else if tc.err != errAny && (!errors.Is(err, tc.err) || !errors.Is(nerr, tc.err)) {
				t.Errorf("%q: %v / %v, want %v", tc.in, err, nerr, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%q: error %q does not name the input", tc.in, err)
			}
			continue
		}
		if err != nil || nerr != nil {
			t.Errorf("%q: %v / %v", tc.in, err, nerr)
			continue
		}
		if len(hw) != 6 || hw.String() != tc.want || norm != tc.want {
			t.Errorf("%q: %s / %q, want %s", tc.in, hw, norm, tc.want)
		}
	}
}

var errAny = errors.New("any error")

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"FA:16:3E:00:00:01": "fa:16:3e:00:00:01",
		"fa-16-3e-00-00-01": "fa:16:3e:00:00:01",
		"unknown-dst":       "unknown-dst",
		"NOT-A-MAC":         "not-a-mac",
		"":                  "",
	} {
		if got := Canonical(in); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsMulticastAndIsZero(t *testing.T) {
	for _, tc := range []struct {
		mac         string
		multi, zero bool
	}{
		{"fa:16:3e:00:00:01", false, false},
		{"01:00:5e:00:00:01", true, false},
		{"33:33:00:00:00:01", true, false},
		{"ff:ff:ff:ff:ff:ff", true, false},
		{"00:00:00:00:00:00", false, true},
	} {
		hw := mustParse(t, tc.mac)
		if IsMulticast(hw) != tc.multi || IsZero(hw) != tc.zero {
			t.Errorf("%s: multicast %v zero %v, want %v %v", tc.mac, IsMulticast(hw), IsZero(hw), tc.multi, tc.zero)
		}
	}
	if IsMulticast(nil) {
		t.Error("nil MAC is multicast")
	}
}

func mustParse(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	hw, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String() of the result; "" for an error
		bits int
	}{
		{"fa:16:3f:00:00:00", "fa:16:3f:00:00:00/24", 24}, // a bare MAC is a dvr_base_mac: /24
		{"fa:16:3f:12:34:56", "fa:16:3f:00:00:00/24", 24}, // host bits cleared
		{"FA:16:3F:AB:CD:EF/32", "fa:16:3f:ab:00:00/32", 32},
		{"fa:16:3f:ff:ff:ff/28", "fa:16:3f:f0:00:00/28", 28},
		{"ff:ff:ff:ff:ff:ff/1", "80:00:00:00:00:00/1", 1},
		{"fa:16:3f:12:34:56/48", "fa:16:3f:12:34:56/48", 48},
		{"fa:16:3f:00:00:00/0", "", 0},
		{"fa:16:3f:00:00:00/49", "", 0},
		{"fa:16:3f:00:00:00/", "", 0},
		{"fa:16:3f:00:00:00/x", "", 0},
		{"fa:16:3f/24", "", 0},
		{"02:00:5e:10:00:00:00:01/24", "", 0},
		{"", "", 0},
	} {
		p, err := ParsePrefix(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: parsed as %s, want an error", tc.in, p)
			} else if !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%q: error %q does not name the input", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if p.String() != tc.want || p.Bits() != tc.bits || !p.IsValid() {
			t.Errorf("%q: %s (bits %d, valid %v), want %s", tc.in, p, p.Bits(), p.IsValid(), tc.want)
		}
		// String round trip, and the prefix is comparable.
		if q, err := ParsePrefix(p.String()); err != nil || q != p {
			t.Errorf("%q: round trip of %s gave %s %v", tc.in, p, q, err)
		}
	}
}

func TestPrefixFrom(t *testing.T) {
	hw := mustParse(t, "fa:16:3f:ab:cd:ef")
	p, err := PrefixFrom(hw, 20)
	if err != nil || p.String() != "fa:16:30:00:00:00/20" {
		t.Errorf("PrefixFrom /20: %s %v", p, err)
	}
	if hw.String() != "fa:16:3f:ab:cd:ef" {
		t.Errorf("PrefixFrom changed its input to %s", hw)
	}
	addr := p.Addr()
	addr[0] = 0
	if p.Addr().String() != "fa:16:30:00:00:00" {
		t.Error("Addr shares the prefix's bytes")
	}
	if _, err := PrefixFrom(net.HardwareAddr{1, 2, 3}, 8); !errors.Is(err, ErrNot48Bit) {
		t.Errorf("short MAC: %v, want ErrNot48Bit", err)
	}
	for _, bits := range []int{0, -1, 49} {
		if _, err := PrefixFrom(hw, bits); err == nil {
			t.Errorf("length %d accepted", bits)
		}
	}
	var zero Prefix
	if zero.IsValid() || zero.Contains(hw) {
		t.Error("the zero Prefix is valid or contains a MAC")
	}
}

func TestPrefixContains(t *testing.T) {
	for _, tc := range []struct {
		prefix, mac string
		want        bool
	}{
		{"fa:16:3f:00:00:00", "fa:16:3f:12:34:56", true},
		{"fa:16:3f:00:00:00", "fa:16:3e:12:34:56", false},
		{"fa:16:3f:00:00:00/28", "fa:16:3f:0f:ff:ff", true},
		{"fa:16:3f:00:00:00/28", "fa:16:3f:10:00:00", false},
		{"fa:16:3f:12:34:56/48", "fa:16:3f:12:34:56", true},
		{"fa:16:3f:12:34:56/48", "fa:16:3f:12:34:57", false},
		{"80:00:00:00:00:00/1", "ff:ff:ff:ff:ff:ff", true},
		{"80:00:00:00:00:00/1", "7f:ff:ff:ff:ff:ff", false},
	} {
		p := MustParsePrefix(tc.prefix)
		if got := p.Contains(mustParse(t, tc.mac)); got != tc.want {
			t.Errorf("%s contains %s: %v, want %v", p, tc.mac, got, tc.want)
		}
	}
	if MustParsePrefix("fa:16:3f:00:00:00").Contains(net.HardwareAddr{0xfa, 0x16, 0x3f}) {
		t.Error("a 3-byte MAC is contained")
	}
}

func TestMustParsePrefixPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParsePrefix of a bad prefix did not panic")
		}
	}()
	MustParsePrefix("nope")
}
