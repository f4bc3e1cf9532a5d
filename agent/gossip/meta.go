package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// MaxMetaSize is memberlist's limit on a node's meta data
// (memberlist.MetaMaxSize).
const MaxMetaSize = 512

// ProtocolVersion is the l2span agent protocol version this package
// advertises in Meta.Proto when the caller leaves it zero.
const ProtocolVersion uint8 = 1

// DefaultWeight is the designated-forwarder weight of a gateway whose Meta
// leaves Weight zero.
const DefaultWeight uint16 = 100

// Backends a gateway may advertise.
const (
	BackendLinux  = "linux"
	BackendHWVTEP = "hwvtep"
	BackendEVPN   = "evpn"
)

// metaVersion is the version of the wire encoding of Meta. A decoder
// accepts its own version and ignores bytes after the fields it knows, so
// fields can be appended without a bump; a change that older decoders
// would misread must bump it.
const metaVersion byte = 1

const (
	flagHealthy byte = 1 << iota
	flagLeaving
	flagPodVTEP
)

// ErrMetaTooLarge is returned when an encoded Meta would exceed MaxMetaSize.
var ErrMetaTooLarge = errors.New("meta exceeds memberlist's 512-byte limit")

// Meta is what a gateway tells the other agents about itself.
type Meta struct {
	Pod       string
	GatewayID string
	// VTEP is the gateway's tunnel endpoint on the inter-pod underlay.
	VTEP netip.Addr
	// Backend is BackendLinux, BackendHWVTEP or BackendEVPN.
	Backend string
	// DVRMAC is the gateway's own DVR MAC registered in its local
	// Neutron; optional.
	DVRMAC net.HardwareAddr
	// Healthy false means "alive but cannot program its dataplane, do not
	// elect me as designated forwarder".
	Healthy bool
	// Weight scales the share of networks this gateway is designated
	// forwarder for; zero means DefaultWeight.
	Weight uint16
	// Proto is the agent protocol version; zero means ProtocolVersion.
	Proto uint8
	// PodVTEP says the gateway serves its pod's side through the pod's
	// one virtual tunnel IP: its pod elects one forwarder for every
	// network (DF), the holder of that IP.
	PodVTEP bool

	// leaving is set by Leave so that peers drain the gateway before its
	// leave message and report it as left rather than dead.
	leaving bool
}

// Validate reports the first field of m that cannot be advertised.
func (m Meta) Validate() error {
	switch {
	case m.Pod == "":
		return errors.New("meta: pod is empty")
	case m.GatewayID == "":
		return errors.New("meta: gateway id is empty")
	case !m.VTEP.IsValid():
		return errors.New("meta: vtep is not set")
	case m.VTEP.Zone() != "":
		return fmt.Errorf("meta: vtep %s has a zone", m.VTEP)
	case m.Backend != BackendLinux && m.Backend != BackendHWVTEP && m.Backend != BackendEVPN:
		return fmt.Errorf("meta: backend %q is not %q, %q or %q", m.Backend, BackendLinux, BackendHWVTEP, BackendEVPN)
	case len(m.DVRMAC) > 20:
		return fmt.Errorf("meta: dvr mac has %d bytes", len(m.DVRMAC))
	}
	return nil
}

// normalized returns m with defaults applied.
func (m Meta) normalized() Meta {
	if m.Weight == 0 {
		m.Weight = DefaultWeight
	}
	if m.Proto == 0 {
		m.Proto = ProtocolVersion
	}
	m.VTEP = m.VTEP.Unmap()
	return m
}

// MarshalBinary encodes m (defaults applied) in the compact versioned form
// carried as memberlist node meta. It refuses an invalid Meta and one whose
// encoding exceeds MaxMetaSize.
//
// Layout, version 1:
//
//	version u8 | flags u8 | proto u8 | weight u16be |
//	vtep: len u8 (4|16) + bytes | dvrmac: len u8 + bytes |
//	pod, gateway id, backend: len uvarint + bytes each
func (m Meta) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m = m.normalized()
	var flags byte
	if m.Healthy {
		flags |= flagHealthy
	}
	if m.leaving {
		flags |= flagLeaving
	}
	if m.PodVTEP {
		flags |= flagPodVTEP
	}
	b := make([]byte, 0, 64)
	b = append(b, metaVersion, flags, m.Proto)
	b = binary.BigEndian.AppendUint16(b, m.Weight)
	vtep := m.VTEP.AsSlice()
	b = append(b, byte(len(vtep)))
	b = append(b, vtep...)
	b = append(b, byte(len(m.DVRMAC)))
	b = append(b, m.DVRMAC...)
	for _, s := range []string{m.Pod, m.GatewayID, m.Backend} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("meta of gateway %q is %d bytes: %w", m.GatewayID, len(b), ErrMetaTooLarge)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced. Bytes after the
// known fields of a version are ignored (room for appended fields).
func (m *Meta) UnmarshalBinary(b []byte) error {
	d := metaDecoder{b: b}
	ver := d.byte()
	if d.err == nil && ver != metaVersion {
		return fmt.Errorf("meta: unsupported encoding version %d", ver)
	}
	var out Meta
	flags := d.byte()
	out.Proto = d.byte()
	out.Weight = binary.BigEndian.Uint16(d.bytes(2))
	vtep := d.bytes(int(d.byte()))
	if mac := d.bytes(int(d.byte())); len(mac) > 0 {
		out.DVRMAC = net.HardwareAddr(append([]byte(nil), mac...))
	}
	out.Pod = d.str()
	out.GatewayID = d.str()
	out.Backend = d.str()
	if d.err != nil {
		return fmt.Errorf("meta: %w", d.err)
	}
	addr, ok := netip.AddrFromSlice(vtep)
	if !ok {
		return fmt.Errorf("meta: vtep has %d bytes", len(vtep))
	}
	out.VTEP = addr
	out.Healthy = flags&flagHealthy != 0
	out.leaving = flags&flagLeaving != 0
	out.PodVTEP = flags&flagPodVTEP != 0
	if err := out.Validate(); err != nil {
		return err
	}
	if out.Weight == 0 {
		return errors.New("meta: weight is zero")
	}
	*m = out
	return nil
}

type metaDecoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *metaDecoder) bytes(n int) []byte {
	if d.err != nil || n > len(d.b) {
		d.err = errShort
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) byte() byte { return d.bytes(1)[0] }

func (d *metaDecoder) str() string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errShort
		return ""
	}
	d.b = d.b[k:]
	return string(d.bytes(int(n)))
}
