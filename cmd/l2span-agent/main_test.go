package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseBuildsAValidAgentAndGossipConfig(t *testing.T) {
	f, cfg, g, err := parse([]string{"-pod", "pod1", "-gateway-id", "gw1", "-vtep", "198.51.100.11",
		"-gossip-probe-interval", "700ms", "-weight", "7", "-dvr-mac", "FA:16:3F:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	if f.backend != "linux" || cfg.Backend != "linux" || cfg.Weight != 7 || cfg.DVRMAC.String() != "fa:16:3f:00:00:01" {
		t.Fatalf("config %+v", cfg)
	}
	// The handover hold defaults to the probe interval.
	if cfg.Hold != 700*time.Millisecond || g.ProbeInterval != 700*time.Millisecond || g.NodeName != "gw1" {
		t.Fatalf("hold %s, gossip %+v", cfg.Hold, g)
	}
	if err := cfg.GossipMeta().Validate(); err != nil {
		t.Fatalf("gossip meta: %v", err)
	}
	if g.AdvertiseAddr != "198.51.100.11" || g.Logger == nil {
		t.Fatalf("gossip config %+v: want the VTEP advertised and a logger", g)
	}
}

func TestParseRefusesABadDVRMAC(t *testing.T) {
	_, _, _, err := parse([]string{"-pod", "pod1", "-gateway-id", "gw1", "-vtep", "198.51.100.11", "-dvr-mac", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:01"})
	if err == nil || !strings.Contains(err.Error(), "dvr-mac") {
		t.Fatalf("parse with a 20-byte dvr-mac: %v", err)
	}
}
