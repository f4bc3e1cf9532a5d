package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// debugDump keeps, when L2SPAN_CHAOS_DUMP names a directory, what explains
// a failed checkpoint: every daemon's whole log, each agent's /dataplane,
// /metrics and cached pod state, and the brain's pod states. The failure is
// rare (about 1 run in 25 on a loaded machine) and the harness prints only
// the last 4 KB of each log.
func (c *chaosLab) debugDump(what string) {
	root := os.Getenv("L2SPAN_CHAOS_DUMP")
	if root == "" {
		return
	}
	dir := filepath.Join(root, fmt.Sprintf("dump-%d", time.Now().UnixNano()))
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "what.txt"), []byte(what), 0o644)
	for id, p := range c.agents {
		b, _ := os.ReadFile(p.log)
		os.WriteFile(filepath.Join(dir, "agent-"+id+".log"), b, 0o644)
	}
	for _, p := range c.brains {
		b, _ := os.ReadFile(p.log)
		os.WriteFile(filepath.Join(dir, p.name+".log"), b, 0o644)
	}
	for _, g := range c.gws {
		cl := &http.Client{Transport: nsTransport(g.gw.NS), Timeout: 5 * time.Second}
		for _, path := range []string{"/dataplane", "/metrics"} {
			r, err := cl.Get("http://127.0.0.1:9697" + path)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			os.WriteFile(filepath.Join(dir, g.id+"-"+path[1:]+".txt"), b, 0o644)
		}
	}
	for _, pod := range []string{"pod1", "pod2", "pod3"} {
		st, err := c.client.PodState(context.Background(), pod)
		b, _ := json.MarshalIndent(st, "", " ")
		os.WriteFile(filepath.Join(dir, "brain-"+pod+"-state.json"), append(b, []byte(fmt.Sprint(err))...), 0o644)
	}
	for id, p := range c.agents {
		for i, a := range p.argv {
			if a == "--state-dir" {
				b, _ := os.ReadFile(filepath.Join(p.argv[i+1], "pod-state.json"))
				os.WriteFile(filepath.Join(dir, "agent-"+id+"-cache.json"), b, 0o644)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "DEBUG DUMP in", dir)
}
