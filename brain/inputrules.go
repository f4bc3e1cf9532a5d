package brain

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Length caps of the strings the brain stores. Ids are checked by checkID
// (64); these are the free-text fields.
const (
	MaxNameLen    = 255  // network names, device_owner, region, physical_network
	MaxURLLen     = 2048 // neutron_url
	MaxIPsPerPort = 64   // a Neutron port rarely holds more than a few fixed IPs
	maxEchoLen    = 64   // runes of input quoted back in an error message
)

// echo quotes user input for an error message, truncated to maxEchoLen
// runes with "...", so an error never carries a megabyte of someone's body
// back (nor raw control characters: %q escapes them).
func echo(v string) string {
	if utf8.RuneCountInString(v) <= maxEchoLen {
		return fmt.Sprintf("%q", v)
	}
	n := 0
	for i := range v {
		if n == maxEchoLen {
			return fmt.Sprintf("%q", v[:i]) + "..."
		}
		n++
	}
	return fmt.Sprintf("%q", v)
}

// checkText refuses a free-text field that is longer than max bytes, not
// UTF-8, or holds control characters (they would reach logs, terminals and
// Neutron as they are).
func checkText(field, v string, max int) error {
	if len(v) > max {
		return invalid(field, "must be at most %d bytes (got %d)", max, len(v))
	}
	if !utf8.ValidString(v) {
		return invalid(field, "%s is not valid UTF-8", echo(v))
	}
	if i := strings.IndexFunc(v, isControl); i >= 0 {
		return invalid(field, "%s holds a control character at byte %d", echo(v), i)
	}
	return nil
}

// isControl is a C0/C1 control or a bidirectional override, which can make
// a table print something other than what is stored.
func isControl(r rune) bool {
	return unicode.IsControl(r) || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// unicastAddr refuses what can never be a host's own address: unspecified,
// loopback, multicast, link-local (IPv4 169.254/16, IPv6 fe80::/10) and the
// IPv4 limited broadcast. a is already unmapped (parseAddr).
func unicastAddr(field string, a netip.Addr) error {
	var why string
	switch {
	case a.IsUnspecified():
		why = "the unspecified address"
	case a.IsLoopback():
		why = "a loopback address"
	case a.IsMulticast():
		why = "a multicast address"
	case a.IsLinkLocalUnicast():
		why = "a link-local address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = "the IPv4 broadcast address"
	default:
		return nil
	}
	return invalid(field, "%s is %s; it must be a unicast address", a, why)
}

// segmentsOutOfRangeKey marks a context whose caller may request
// segmentation ids outside the configured ranges.
type segmentsOutOfRangeKey struct{}

// AllowSegmentsOutOfRange returns a context in which CreateNetwork accepts
// a requested segmentation_id outside the configured VLAN/VNI ranges (still
// inside 1-4094 / 1-16777215). The auth layer sets it for admin callers;
// without it such a request is refused with 400 on segmentation_id.
func AllowSegmentsOutOfRange(ctx context.Context) context.Context {
	return context.WithValue(ctx, segmentsOutOfRangeKey{}, true)
}

func segmentsOutOfRangeAllowed(ctx context.Context) bool {
	v, _ := ctx.Value(segmentsOutOfRangeKey{}).(bool)
	return v
}

// checkRequestedVLAN refuses a requested VLAN id outside the ranges
// configured for physnet unless allowOutOfRange.
func checkRequestedVLAN(ranges []VLANRange, physnet string, id int, allowOutOfRange bool) error {
	if allowOutOfRange {
		return nil
	}
	var have []string
	for _, r := range ranges {
		if r.PhysicalNetwork != physnet {
			continue
		}
		if id >= r.Min && id <= r.Max {
			return nil
		}
		have = append(have, fmt.Sprintf("%d-%d", r.Min, r.Max))
	}
	if len(have) == 0 {
		return invalid("segmentation_id", "VLAN %d: no VLAN range is configured for physical network %s; only an admin may request an id outside the ranges", id, echo(physnet))
	}
	return invalid("segmentation_id", "VLAN %d is outside the ranges of physical network %s (%s); only an admin may request an id outside them", id, echo(physnet), strings.Join(have, ", "))
}

// checkRequestedVNI refuses a requested VNI outside the configured ranges
// unless allowOutOfRange.
func checkRequestedVNI(ranges []VNIRange, id int, allowOutOfRange bool) error {
	if allowOutOfRange {
		return nil
	}
	var have []string
	for _, r := range ranges {
		if id >= r.Min && id <= r.Max {
			return nil
		}
		have = append(have, fmt.Sprintf("%d-%d", r.Min, r.Max))
	}
	return invalid("segmentation_id", "VNI %d is outside the configured ranges (%s); only an admin may request an id outside them", id, strings.Join(have, ", "))
}

// maxAZHints bounds a network's az_hints list.
const maxAZHints = 64

// checkNetworkCreate checks the free-form fields of a network create.
func checkNetworkCreate(req NetworkCreate) error {
	if err := checkText("name", req.Name, MaxNameLen); err != nil {
		return err
	}
	if err := checkText("physical_network", req.PhysicalNetwork, MaxNameLen); err != nil {
		return err
	}
	if len(req.AZHints) > maxAZHints {
		return invalid("az_hints", "names at most %d availability zones (got %d)", maxAZHints, len(req.AZHints))
	}
	for _, h := range req.AZHints {
		if err := checkID("az_hints", h); err != nil {
			return err
		}
	}
	return nil
}
