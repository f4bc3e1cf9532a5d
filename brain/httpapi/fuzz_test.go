package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// fuzzRoutes are the write routes whose bodies come from outside.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/pods"},
	{"PUT", "/v1/pods/pod1"},
	{"POST", "/v1/networks"},
	{"PUT", "/v1/networks/{net}"},
	{"POST", "/v1/networks/{net}/segments"},
	{"POST", "/v1/subnets"},
	{"POST", "/v1/ports"},
	{"PUT", "/v1/ports/{port}"},
	{"PUT", "/v1/gateways/gw-1"},
}

// FuzzAPIRequest sends arbitrary bodies through the whole request path
// (limits, JSON decoding, the brain's validators, the store): the answer is
// never a 5xx, and an error answer is the error body naming its code.
func FuzzAPIRequest(f *testing.F) {
	seeds := []string{
		`{"id":"pod2","az":"az1","dvr_base_mac":"fa:16:3f:00:00:00/24","neutron_url":"http://x:9696"}`,
		`{"region":"r1","dvr_base_mac":"01:00:00:00:00:00"}`,
		`{"name":"n","type":"shared_vxlan","az_hints":["az1"],"segmentation_id":5001}`,
		`{"name":"n","type":"shared_vlan","physical_network":"physnet1","segmentation_id":4095}`,
		`{"name":"x\u0000"}`,
		`{"pod_id":"pod1","network_type":"vlan","segmentation_id":7,"physical_network":"p"}`,
		`{"network_id":"{net}","cidr":"192.0.2.0/24","gateway_ip":"192.0.2.1"}`,
		`{"network_id":"{net}","cidr":"::ffff:0:0/96"}`,
		`{"network_id":"{net}","pod_id":"pod1","mac":"fa:16:3e:00:00:09","ips":["192.0.2.9","::ffff:192.0.2.9"]}`,
		`{"ports":[{"network_id":"{net}","pod_id":"pod1","mac":"fa:16:3e:00:00:0a","ips":["192.0.2.10"]},{"network_id":"{net}","pod_id":"pod1","mac":"fa:16:3e:00:00:0b","ips":["192.0.2.10"]}]}`,
		`{"pod_id":"pod1","ips":["192.0.2.1"],"mobility_seq":-1,"clear_duplicate":true}`,
		`{"id":"gw-1","pod_id":"pod1","vtep":"127.0.0.1","backend":"linux","status":{"weight":-5}}`,
		`{"id":"gw-1","pod_id":"pod1","vtep":"192.0.2.200","backend":"hwvtep","dvr_mac":"fa:16:3e:aa:bb:cc"}`,
		`[]`, `null`, `{"ports":null}`, `{"ports":[]}`, `{}{}`, `"\xff"`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	dir := f.TempDir()
	// Every fuzz request comes from one address: no rate limit.
	lim := httpapi.DefaultLimits()
	lim.RatePerSecond = 0
	b := startBrain(f, "sqlite://"+filepath.Join(dir, "fuzz.db"), testConfig, httpapi.Options{Limits: &lim})
	ctx := context.Background()
	mkPods(f, b.client, api.Pod{ID: "pod1", AZ: "az1"})
	n := must[api.Network](f)(b.client.CreateNetwork(ctx, api.NetworkCreate{Name: "n", Type: api.TypeSharedVXLAN}))
	must[api.Subnet](f)(b.client.CreateSubnet(ctx, api.Subnet{NetworkID: n.ID, CIDR: "192.0.2.0/24", GatewayIP: "192.0.2.1"}))
	p := must[api.Port](f)(b.client.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:00:01", IPs: []string{"192.0.2.2"}}))
	fill := func(s []byte) []byte {
		s = bytes.ReplaceAll(s, []byte("{net}"), []byte(n.ID))
		return bytes.ReplaceAll(s, []byte("{port}"), []byte(p.ID))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		r := httptest.NewRequest(rt.method, string(fill([]byte(rt.path))), bytes.NewReader(fill(body)))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		b.server.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb api.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %s %q: %d with a body that is no error body: %s", rt.method, rt.path, body, w.Code, w.Body)
			}
			if len(eb.Error.Message) > 1024 {
				t.Fatalf("%s %s: a %d-byte error message for a %d-byte body", rt.method, rt.path, len(eb.Error.Message), len(body))
			}
		}
	})
}
