package brain

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits of segmentation ids.
const (
	MinVLAN = 1
	MaxVLAN = 4094
	MinVNI  = 1
	MaxVNI  = 1<<24 - 1
)

// VLANRange is a `physnet:min:max` range of VLAN ids.
type VLANRange struct {
	PhysicalNetwork string
	Min, Max        int
}

// VNIRange is a `min:max` range of VXLAN VNIs.
type VNIRange struct {
	Min, Max int
}

// ParseVLANRange parses `physnet:min:max`.
func ParseVLANRange(s string) (VLANRange, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return VLANRange{}, fmt.Errorf("vlan range %q: want physnet:min:max", s)
	}
	lo, hi, err := parseBounds(parts[1], parts[2], MinVLAN, MaxVLAN)
	if err != nil {
		return VLANRange{}, fmt.Errorf("vlan range %q: %w", s, err)
	}
	return VLANRange{PhysicalNetwork: parts[0], Min: lo, Max: hi}, nil
}

// ParseVNIRange parses `min:max`.
func ParseVNIRange(s string) (VNIRange, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 {
		return VNIRange{}, fmt.Errorf("vni range %q: want min:max", s)
	}
	lo, hi, err := parseBounds(parts[0], parts[1], MinVNI, MaxVNI)
	if err != nil {
		return VNIRange{}, fmt.Errorf("vni range %q: %w", s, err)
	}
	return VNIRange{Min: lo, Max: hi}, nil
}

func parseBounds(a, b string, floor, ceil int) (int, int, error) {
	lo, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, fmt.Errorf("min %q is not a number", a)
	}
	hi, err := strconv.Atoi(b)
	if err != nil {
		return 0, 0, fmt.Errorf("max %q is not a number", b)
	}
	if lo < floor || hi > ceil || lo > hi {
		return 0, 0, fmt.Errorf("want %d <= min <= max <= %d", floor, ceil)
	}
	return lo, hi, nil
}
