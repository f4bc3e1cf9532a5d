package gossip

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 16)
	if err := (&Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	good := Config{
		BindAddr: "10.0.0.1", BindPort: 7946, AdvertiseAddr: "192.0.2.1", AdvertisePort: 17946,
		Seeds:      []string{"10.0.0.2:7946", "gw-b.pod2", "[2001:db8::1]:7946"},
		SecretKeys: [][]byte{key, bytes.Repeat([]byte{2}, 32)},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		key string
		mut func(*Config)
	}{
		{"bind_addr", func(c *Config) { c.BindAddr = "not-an-ip" }},
		{"bind_port", func(c *Config) { c.BindPort = 70000 }},
		{"advertise_addr", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }},
		{"advertise_port", func(c *Config) { c.AdvertisePort = -1 }},
		{"seeds[1]", func(c *Config) { c.Seeds = []string{"a:1", "b:x"} }},
		{"seeds[0]", func(c *Config) { c.Seeds = []string{""} }},
		{"secret_keys[1]", func(c *Config) { c.SecretKeys = [][]byte{key, {1, 2, 3}} }},
		{"secret_keys[1]", func(c *Config) { c.SecretKeys = [][]byte{key, key} }},
		{"probe_interval", func(c *Config) { c.ProbeInterval = -time.Second }},
		{"probe_timeout", func(c *Config) { c.ProbeTimeout = time.Second }},
		{"suspicion_mult", func(c *Config) { c.SuspicionMult = -1 }},
		{"retransmit_mult", func(c *Config) { c.RetransmitMult = -1 }},
	} {
		c := good
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") {
			t.Errorf("%s: err = %v", tc.key, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.BindAddr != "0.0.0.0" || c.BindPort != DefaultPort || c.ProbeInterval != DefaultProbeInterval ||
		c.ProbeTimeout != DefaultProbeTimeout || c.SuspicionMult != DefaultSuspicionMult ||
		c.GossipInterval != DefaultGossipInterval || c.RetransmitMult != DefaultRetransmitMult || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if c := (Config{BindPort: AnyPort}).withDefaults(); c.BindPort != 0 {
		t.Errorf("AnyPort -> %d", c.BindPort)
	}
}
