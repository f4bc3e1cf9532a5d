package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain runs the agent's main instead of the tests when asked, so a
// test can watch the real command exit.
func TestMain(m *testing.M) {
	if os.Getenv("L2SPAN_AGENT_RUN_MAIN") == "1" {
		os.Args = append([]string{"l2span-agent"}, strings.Fields(os.Getenv("L2SPAN_AGENT_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs l2span-agent with args and returns its exit code and stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "L2SPAN_AGENT_RUN_MAIN=1", "L2SPAN_AGENT_ARGS="+strings.Join(args, " "))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

func keyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentWithoutGossipKeyRefusesToStart(t *testing.T) {
	base := []string{"-pod", "pod1", "-gateway-id", "gw1", "-vtep", "198.51.100.11", "-check-config"}
	code, stderr := runMain(t, base...)
	if code == 0 || !strings.Contains(stderr, "gossip-key-file is required") || !strings.Contains(stderr, "--insecure-gossip") {
		t.Fatalf("without a key: exit %d, stderr %q: want non-zero naming gossip-key-file and --insecure-gossip", code, stderr)
	}
	if code, stderr := runMain(t, append(base, "-insecure-gossip")...); code != 0 {
		t.Fatalf("with -insecure-gossip: exit %d, %s", code, stderr)
	}
	if code, stderr := runMain(t, append(base, "-gossip-key-file", keyFile(t))...); code != 0 {
		t.Fatalf("with a key file: exit %d, %s", code, stderr)
	}
	if code, stderr := runMain(t, append(base, "-gossip-key-file", keyFile(t), "-insecure-gossip")...); code == 0 || !strings.Contains(stderr, "exclude") {
		t.Fatalf("key file and -insecure-gossip: exit %d, %s", code, stderr)
	}
}

func TestParseBuildsAValidAgentAndGossipConfig(t *testing.T) {
	f, cfg, g, err := parse([]string{"-pod", "pod1", "-gateway-id", "gw1", "-vtep", "198.51.100.11", "-gossip-key-file", keyFile(t),
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
	if len(g.SecretKeys) != 1 || len(g.SecretKeys[0]) != 32 || cfg.InsecureGossip {
		t.Fatalf("gossip keys %d, insecure %v: want the key file's one key", len(g.SecretKeys), cfg.InsecureGossip)
	}
	if g.AdvertiseAddr != "198.51.100.11" || g.Logger == nil {
		t.Fatalf("gossip config %+v: want the VTEP advertised and a logger", g)
	}
}

func TestParseRefusesABadDVRMAC(t *testing.T) {
	_, _, _, err := parse([]string{"-pod", "pod1", "-gateway-id", "gw1", "-vtep", "198.51.100.11", "-insecure-gossip", "-dvr-mac", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:01"})
	if err == nil || !strings.Contains(err.Error(), "dvr-mac") {
		t.Fatalf("parse with a 20-byte dvr-mac: %v", err)
	}
}
