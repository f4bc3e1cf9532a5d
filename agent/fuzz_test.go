package agent

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/brain/api"
)

// FuzzReadKeyFile: a key file the agent accepts holds only keys memberlist
// can use (AES-128/192/256).
func FuzzReadKeyFile(f *testing.F) {
	k16 := base64.StdEncoding.EncodeToString(make([]byte, 16))
	k32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, s := range []string{k16 + "\n", "# old\n" + k32 + "\n" + k16 + "\n", "AAAA\n", "not base64\n", "", "\n\n#\n", k16 + "\r\n"} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "keys")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := ReadKeyFile(path)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no key and no error")
		}
		for _, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("a %d-byte key accepted from %q", n, b)
			}
		}
	})
}

// FuzzReadCache: the cached desired state file, however damaged, is read
// or refused, and what is read plans without panicking.
func FuzzReadCache(f *testing.F) {
	f.Add([]byte(`{"pod_id":"pod1","revision":7,"networks":[{"network_id":"n","vni":5000,"local_segment":{"network_type":"vlan","segmentation_id":101,"physical_network":"physnet1#pod1"},"remote_pods":["pod2"],"remote_ports":[{"mac":"fa:16:3e:00:00:02","ips":["203.0.113.2","zz"],"pod_id":"pod2","seq":1}],"subnets":[{"cidr":"203.0.113.0/24","gateway_ip":"203.0.113.1"}]}],"dvr_base_macs":{"pod2":"fa:16:3f:00:00:00/24"}}`))
	f.Add([]byte(`{"networks":[{"vni":-1,"remote_ports":[{"mac":"nope"}]}]}`))
	f.Add([]byte(`{"networks":null}`))
	f.Add([]byte(`{`))
	path := filepath.Join(f.TempDir(), "state.json")
	tmpl := InterfaceTemplate("l2s-{type}{id}", nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := readCache(path)
		if err != nil {
			return
		}
		members := []gossip.Member{member("gw1", "pod1", "198.51.100.11", gossip.StateAlive), member("gw2", "pod2", "198.51.100.12", gossip.StateAlive)}
		BuildPlan(PlanInput{State: st, Members: members, Self: "gw1", PodID: "pod1", LocalInterface: tmpl, PopulateMACs: true})
	})
}

// FuzzInterfaceTemplate: any template and any segment the brain sends
// expand without panicking, and a template without placeholders is kept.
func FuzzInterfaceTemplate(f *testing.F) {
	f.Add("l2s-{vni}", "vlan", 101, "physnet1#pod1", uint32(5000))
	f.Add("{physnet}.{id}", "vxlan", 0, "", uint32(1))
	f.Add("eth1", "", -5, "#", uint32(0))
	f.Fuzz(func(t *testing.T, tmpl, typ string, id int, physnet string, vni uint32) {
		n := api.NetworkState{VNI: vni, LocalSegment: api.Segment{NetworkType: typ, SegmentationID: id, PhysicalNetwork: physnet}}
		got := InterfaceTemplate(tmpl, nil)(n)
		if !strings.Contains(tmpl, "{") && got != tmpl {
			t.Fatalf("template %q without placeholders expanded to %q", tmpl, got)
		}
	})
}
