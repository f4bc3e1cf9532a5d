package httpapi_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain/httpapi"
)

// TestREADMECurl runs the README's curl lines, in order, against a brain:
// the documented calls and their shapes stay true. NET in a line is the id
// the network create answered.
func TestREADMECurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl not installed: run make deps")
		}
		t.Skip("curl not installed: run make deps")
	}
	b := startBrain(t, "sqlite://"+filepath.Join(t.TempDir(), "b.db"), testConfig, httpapi.Options{})
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(b.http.URL, "http://")
	netID, ran := "", 0
	for _, line := range strings.Split(string(readme), "\n") {
		cmd, _, _ := strings.Cut(line, "   #")
		cmd = strings.TrimSpace(cmd)
		if !strings.HasPrefix(cmd, "curl ") {
			continue
		}
		cmd = strings.ReplaceAll(cmd, "localhost:9696", host)
		cmd = strings.ReplaceAll(cmd, `"NET"`, `"`+netID+`"`)
		sh := exec.Command("bash", "-c", cmd)
		sh.Env = append(os.Environ(), "TOKEN="+b.token)
		out, err := sh.Output()
		// The watch line ends by curl's -m timeout (exit 28) after streaming.
		if err != nil && !(strings.Contains(cmd, "watch=true") && len(out) > 0) {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		ran++
		first := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		var v map[string]any
		if err := json.Unmarshal([]byte(first), &v); err != nil {
			t.Fatalf("%s: not JSON: %q", cmd, out)
		}
		if _, bad := v["error"]; bad {
			t.Fatalf("%s: %s", cmd, out)
		}
		if strings.Contains(cmd, "/v1/networks") {
			netID, _ = v["id"].(string)
		}
		if strings.Contains(cmd, "watch=true") && v["type"] != "snapshot" {
			t.Fatalf("watch did not start with a snapshot: %s", first)
		}
		if strings.HasSuffix(cmd, "/state") {
			nets, _ := v["networks"].([]any)
			if len(nets) != 1 {
				t.Fatalf("pod1's state after the README's calls: %s", out)
			}
		}
	}
	if ran < 7 || netID == "" {
		t.Fatalf("ran %d curl lines, network id %q", ran, netID)
	}
}
