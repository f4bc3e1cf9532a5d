package gossip

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port (TCP and UDP) used when BindPort is zero.
const DefaultPort = 7946

// AnyPort as BindPort asks the kernel for a free port (tests); read it back
// with Gossip.LocalAddr.
const AnyPort = -1

// Tuned timer defaults for a gateway underlay: a kill -9 is seen as dead by
// the peers in well under a second (DESIGN.md measured ~0.7 s against ~6 s
// with memberlist.DefaultLANConfig). SuspicionMult 2 also turns off
// Lifeguard's waiting for independent confirmations (k = SuspicionMult-2 =
// 0), so a suspicion times out after its minimum,
// SuspicionMult*max(1,log10(n))*ProbeInterval.
const (
	DefaultProbeInterval  = 200 * time.Millisecond
	DefaultProbeTimeout   = 100 * time.Millisecond
	DefaultSuspicionMult  = 2
	DefaultGossipInterval = 100 * time.Millisecond
	DefaultRetransmitMult = 4
)

// defaultTCPTimeout bounds a push/pull or join attempt to one seed, so a
// black-holed seed does not hold Join past its backoff (LAN default 10 s).
const defaultTCPTimeout = 3 * time.Second

// Config configures a Gossip. The zero value of every field means its
// default; Validate names the offending key in its errors.
type Config struct {
	// NodeName is the memberlist node name, unique in the cluster; it
	// defaults to the gateway id of the Meta given to New.
	NodeName string `json:"node_name"`
	// BindAddr is the IP to listen on (TCP and UDP); default 0.0.0.0.
	BindAddr string `json:"bind_addr"`
	// BindPort defaults to DefaultPort; AnyPort picks a free one.
	BindPort int `json:"bind_port"`
	// AdvertiseAddr and AdvertisePort are what peers dial; by default the
	// bind address (or, bound to 0.0.0.0, a private address of the host)
	// and the bound port.
	AdvertiseAddr string `json:"advertise_addr"`
	AdvertisePort int    `json:"advertise_port"`
	// Seeds are host:port (or host, meaning the bind port) of agents to
	// join through.
	Seeds []string `json:"seeds"`
	// SecretKeys encrypt gossip (AES, 16, 24 or 32 bytes each); the first
	// is the primary key used to send, all are tried to receive. Without
	// keys gossip is plain text and keys cannot be added later.
	SecretKeys [][]byte `json:"-"`

	ProbeInterval  time.Duration `json:"probe_interval"`
	ProbeTimeout   time.Duration `json:"probe_timeout"`
	SuspicionMult  int           `json:"suspicion_mult"`
	GossipInterval time.Duration `json:"gossip_interval"`
	RetransmitMult int           `json:"retransmit_mult"`

	// Logger receives this package's logs and, at debug level,
	// memberlist's own lines; default slog.Default().
	Logger *slog.Logger `json:"-"`
}

// Validate checks cfg without applying defaults; zero values are valid.
func (c *Config) Validate() error {
	if c.BindAddr != "" {
		if _, err := netip.ParseAddr(c.BindAddr); err != nil {
			return fmt.Errorf("bind_addr: %w", err)
		}
	}
	if c.BindPort < AnyPort || c.BindPort > 65535 {
		return fmt.Errorf("bind_port: %d is out of range", c.BindPort)
	}
	if c.AdvertiseAddr != "" {
		a, err := netip.ParseAddr(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("advertise_addr: %w", err)
		}
		if a.IsUnspecified() {
			return fmt.Errorf("advertise_addr: %s is unspecified", a)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("advertise_port: %d is out of range", c.AdvertisePort)
	}
	for i, s := range c.Seeds {
		if err := validSeed(s); err != nil {
			return fmt.Errorf("seeds[%d]: %w", i, err)
		}
	}
	seen := make(map[string]bool, len(c.SecretKeys))
	for i, k := range c.SecretKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("secret_keys[%d]: %w", i, err)
		}
		if seen[string(k)] {
			return fmt.Errorf("secret_keys[%d]: duplicate key", i)
		}
		seen[string(k)] = true
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"probe_interval", c.ProbeInterval},
		{"probe_timeout", c.ProbeTimeout},
		{"gossip_interval", c.GossipInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: %s is negative", d.key, d.v)
		}
	}
	if c.ProbeInterval > 0 || c.ProbeTimeout > 0 {
		iv, to := c.withDefaults().ProbeInterval, c.withDefaults().ProbeTimeout
		if to >= iv {
			return fmt.Errorf("probe_timeout: %s must be shorter than probe_interval %s", to, iv)
		}
	}
	if c.SuspicionMult < 0 {
		return fmt.Errorf("suspicion_mult: %d is negative", c.SuspicionMult)
	}
	if c.RetransmitMult < 0 {
		return fmt.Errorf("retransmit_mult: %d is negative", c.RetransmitMult)
	}
	return nil
}

func validSeed(s string) error {
	if s == "" {
		return fmt.Errorf("empty address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host (or IP) means the local bind port.
		host, port = s, ""
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			return fmt.Errorf("%q has a bad port", s)
		}
	}
	return nil
}

// withDefaults returns a copy of c with zero values replaced by defaults.
// NodeName is left for New, which knows the gateway id.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	switch c.BindPort {
	case 0:
		c.BindPort = DefaultPort
	case AnyPort:
		c.BindPort = 0
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = DefaultGossipInterval
	}
	if c.RetransmitMult == 0 {
		c.RetransmitMult = DefaultRetransmitMult
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
