package brain

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRanges: a range the parser accepts is inside the id space and reads
// back the same when printed.
func FuzzRanges(f *testing.F) {
	for _, s := range []string{"physnet1:100:200", "1000:999999", "p:1:4094", ":1:2", "a:b:c", "1:2:3:4", "5:1", "-1:9", "1:16777216", "00012:0013"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseVLANRange(s); err == nil {
			if r.Min < MinVLAN || r.Max > MaxVLAN || r.Min > r.Max || r.PhysicalNetwork == "" {
				t.Fatalf("%q parsed to %+v", s, r)
			}
		}
		if r, err := ParseVNIRange(s); err == nil {
			if r.Min < MinVNI || r.Max > MaxVNI || r.Min > r.Max {
				t.Fatalf("%q parsed to %+v", s, r)
			}
		}
	})
}

// FuzzInputRules: the validators never panic; what they accept is in its
// normal form (normalising it again changes nothing) and what they echo
// is bounded.
func FuzzInputRules(f *testing.F) {
	for _, s := range []string{"192.0.2.5", "::ffff:192.0.2.5", "2001:DB8::0:1", "fe80::1%eth0", "0.0.0.0", "fa:16:3e:00:00:01", "FA-16-3E-00-00-01",
		"fa:16:3f:00:00:00/24", "01:00:5e:00:00:00/8", "x/99", "ok name", "evil\x1b[2J", "\xff\xfe", "\u202eabc", strings.Repeat("é", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ips, err := parsePortIPs([]string{s}); err == nil {
			a, perr := netip.ParseAddr(ips[0])
			if perr != nil || a.String() != ips[0] || a.Is4In6() || a.Zone() != "" || !a.IsGlobalUnicast() && !a.IsPrivate() {
				t.Fatalf("%q accepted as %q", s, ips[0])
			}
			if again, err := parsePortIPs(ips); err != nil || again[0] != ips[0] {
				t.Fatalf("%q: normal form %q does not survive a second pass: %v %v", s, ips[0], again, err)
			}
		} else if len(err.Error()) > 400 {
			t.Fatalf("error of %d bytes for %d bytes of input", len(err.Error()), len(s))
		}
		if m, err := normalizeDVRBaseMAC(s); err == nil && s != "" {
			if again, err := normalizeDVRBaseMAC(m); err != nil || again != m {
				t.Fatalf("dvr_base_mac %q -> %q -> %q %v", s, m, again, err)
			}
			if m[1]&1 != 0 && strings.IndexByte("13579bdf", m[1]) >= 0 {
				t.Fatalf("multicast dvr_base_mac %q accepted", m)
			}
		}
		if m, err := normalizeMAC("mac", s); err == nil {
			if again, err := normalizeMAC("mac", m); err != nil || again != m {
				t.Fatalf("mac %q -> %q -> %q %v", s, m, again, err)
			}
		}
		if err := checkText("name", s, MaxNameLen); err == nil {
			if len(s) > MaxNameLen || !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
				t.Fatalf("name %q accepted", s)
			}
		}
		if e := echo(s); utf8.RuneCountInString(e) > 4*maxEchoLen+10 {
			t.Fatalf("echo of %d bytes is %d runes", len(s), utf8.RuneCountInString(e))
		}
	})
}
