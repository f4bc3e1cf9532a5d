package api

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeEvents feeds arbitrary bytes to the watch-stream decoder as if
// a brain sent them: it never panics, never hands fn an unknown event or a
// snapshot without a state, and never accepts a line over the cap.
func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","revision":3}` + "\n" + `{"type":"snapshot","revision":4,"state":{"pod_id":"pod1","revision":4,"networks":[]}}` + "\n"))
	f.Add([]byte(`{"type":"update","revision":5,"networks":[{"network_id":"n","vni":5000,"remote_ports":[{"mac":"fa:16:3e:00:00:01","ips":["192.0.2.5"],"pod_id":"pod2","seq":1}]}],"removed":["m"]}` + "\n"))
	f.Add([]byte(`{"type":"delta","revision":6,"changes":[{"network_id":"n","removed_macs":["fa:16:3e:00:00:01"],"upserted":[{"mac":"fa:16:3e:00:00:02","pod_id":"pod2"}]}],"pod":{"gateways":[]}}` + "\n"))
	f.Add([]byte(`{"type":"snapshot","revision":1}` + "\n"))
	f.Add([]byte(`{"type":"bogus"}` + "\n"))
	f.Add([]byte("{\"type\":\"update\"}\n\n\n"))
	f.Add(bytes.Repeat([]byte("x"), 300))
	const maxLine = 256
	f.Fuzz(func(t *testing.T, stream []byte) {
		lines := 0
		err := DecodeEvents(bytes.NewReader(stream), maxLine, func() { lines++ }, func(ev WatchEvent) error {
			switch {
			case ev.Type == EventSnapshot && ev.State == nil:
				t.Fatal("a snapshot without a state reached fn")
			case ev.Type != EventSnapshot && ev.Type != EventUpdate && ev.Type != EventDelta && ev.Type != EventHeartbeat:
				t.Fatalf("event of type %q reached fn", ev.Type)
			}
			return nil
		})
		if err == nil {
			for _, l := range bytes.Split(stream, []byte("\n")) {
				if len(l) > maxLine {
					t.Fatalf("a %d-byte line passed a %d-byte cap", len(l), maxLine)
				}
			}
		}
		// fn's own error comes back as it is.
		stop := errors.New("stop")
		if err := DecodeEvents(bytes.NewReader(stream), maxLine, func() {}, func(WatchEvent) error { return stop }); err != nil && errors.Is(err, stop) != (err == stop) {
			t.Fatalf("fn's error wrapped: %v", err)
		}
	})
}
