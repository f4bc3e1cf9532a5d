// Package deploy holds the systemd units and example configurations; its
// test proves the units verify and the examples are accepted as shipped.
package deploy

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/",
		"github.com/l2span/l2span/cmd/l2span-brain", "github.com/l2span/l2span/cmd/l2span-agent",
		"github.com/l2span/l2span/cmd/l2span-bgpd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// TestUnitsVerify runs systemd-analyze verify on both units, with ExecStart
// pointing at freshly built binaries.
func TestUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not installed: run make deps")
		}
		t.Skip("systemd-analyze not installed: run make deps")
	}
	bin := build(t)
	dir := t.TempDir()
	for _, unit := range []string{"l2span-brain.service", "l2span-agent.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/bin/", bin+"/")
		for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "CapabilityBoundingSet=", "StateDirectory="} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, unit), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// l2span-bgpd: a plain service (no notify, no state), verified as is.
	b, err := os.ReadFile(filepath.Join("systemd", "l2span-bgpd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "l2span-bgpd.service"), []byte(strings.ReplaceAll(string(b), "/usr/bin/", bin+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "l2span-brain.service"), filepath.Join(dir, "l2span-agent.service"),
		filepath.Join(dir, "l2span-bgpd.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestExampleConfigs checks that the shipped examples pass --check-config
// and that a wrong key in them would be refused with its name.
func TestExampleConfigs(t *testing.T) {
	bin := build(t)
	keys := filepath.Join(t.TempDir(), "gossip.keys")
	if err := os.WriteFile(keys, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		bin, conf string
		extra     []string
	}{
		{"l2span-brain", "brain.conf", nil},
		{"l2span-agent", "agent.conf", []string{"--gossip-key-file", keys}},
	}
	for _, c := range cases {
		args := append([]string{"--config", filepath.Join("examples", c.conf), "--check-config"}, c.extra...)
		out, err := exec.Command(filepath.Join(bin, c.bin), args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configuration ok") {
			t.Fatalf("%s --check-config on examples/%s: %v\n%s", c.bin, c.conf, err, out)
		}
		// The same file with a misspelt key is refused, naming it.
		b, _ := os.ReadFile(filepath.Join("examples", c.conf))
		bad := filepath.Join(t.TempDir(), c.conf)
		os.WriteFile(bad, append(b, []byte("\nlog-levl = debug\n")...), 0o644)
		args[1] = bad
		out, err = exec.Command(filepath.Join(bin, c.bin), args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `unknown key "log-levl"`) {
			t.Fatalf("%s accepted a misspelt key: %v\n%s", c.bin, err, out)
		}
	}
}

// TestDist builds the release tarball and checks what an operator unpacks:
// static binaries, both units, both example configs, the docs.
func TestDist(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "dist", "DIST="+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	list, err := exec.Command("tar", "-tzf", filepath.Join(dir, "l2span.tar.gz")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"l2span/bin/l2span-brain", "l2span/bin/l2span-agent", "l2span/bin/l2spanctl",
		"l2span/deploy/systemd/l2span-brain.service", "l2span/deploy/systemd/l2span-agent.service",
		"l2span/bin/l2span-bgpd", "l2span/deploy/systemd/l2span-bgpd.service",
		"l2span/deploy/examples/brain.conf", "l2span/deploy/examples/agent.conf", "l2span/docs/openapi.yaml", "l2span/README.md"} {
		if !strings.Contains(string(list), want+"\n") {
			t.Errorf("tarball lacks %s", want)
		}
	}
	// Static: no ELF interpreter, so it runs on any Linux of the arch.
	b, err := os.ReadFile(filepath.Join(dir, "l2span", "bin", "l2span-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b[:min(len(b), 4096)]), "ld-linux") {
		t.Error("l2span-agent is dynamically linked")
	}
}
