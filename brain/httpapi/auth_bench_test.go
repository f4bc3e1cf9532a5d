package httpapi_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
)

// BenchmarkAuth is the cost of authentication per request: GET /v1/pods/{id}
// with an issued token (a store lookup and a hash), with the legacy shared
// token (a constant-time compare), and with authentication off, side by side
// on one SQLite brain each.
func BenchmarkAuth(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"issued", "legacy", "off"} {
		b.Run(mode, func(b *testing.B) {
			opts := httpapi.Options{}
			switch mode {
			case "legacy":
				opts.Auth.Legacy = []string{"s3cret"}
			case "off":
				opts.Auth.Insecure = true
			}
			tb := startBrain(b, "sqlite://"+filepath.Join(b.TempDir(), "b.db"), testConfig, opts)
			mkPods(b, tb.client, api.Pod{ID: "pod1", AZ: "az1"})
			c := tb.client
			if mode == "legacy" {
				c, _ = api.NewClient(tb.http.URL, api.WithToken("s3cret"))
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.GetPod(ctx, "pod1"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
