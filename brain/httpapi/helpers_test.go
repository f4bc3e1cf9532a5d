package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// storeKinds runs fn once per store: SQLite in a temp dir and PostgreSQL on
// the test binary's private server.
func storeKinds(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite://"+filepath.Join(t.TempDir(), "brain.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.SharedDatabase(t))
	})
}

type testBrain struct {
	svc    *brain.Service
	hub    *brain.Hub
	server *httpapi.Server
	http   *httptest.Server
	client *api.Client
	store  *store.Store
	// token is an admin token the brain issued; client sends it.
	token string
}

var testConfig = brain.Config{
	VLANRanges: []brain.VLANRange{{PhysicalNetwork: "physnet1", Min: 100, Max: 102}},
	VNIRanges:  []brain.VNIRange{{Min: 5000, Max: 5999}},
}

func startBrain(t testing.TB, url string, cfg brain.Config, opts httpapi.Options) *testBrain {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("open store %s: %v", url, err)
	}
	b := &testBrain{store: st}
	b.svc = brain.NewService(st, cfg, func(rev int64) { b.hub.Notify(rev) })
	b.svc.Start(ctx)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.hub = brain.NewHub(b.svc, 20*time.Millisecond, log)
	opts.Logger = log
	b.server = httpapi.New(b.svc, b.hub, opts)
	b.http = httptest.NewServer(b.server)
	go b.hub.Run(ctx, 0)
	if _, b.token, err = b.svc.CreateToken(ctx, brain.TokenSpec{Role: "admin", Description: "test"}); err != nil {
		t.Fatal(err)
	}
	b.client, err = api.NewClient(b.http.URL, api.WithToken(b.token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		b.http.CloseClientConnections()
		b.http.Close()
		b.svc.Close()
		st.Close()
	})
	return b
}

// wantError asserts err is a brain answer with status and field.
func wantError(t *testing.T, err error, status int, field string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("want %d error on %q, got %v", status, field, err)
	}
	if e.Status != status || e.Field != field || e.Message == "" {
		t.Fatalf("want %d on field %q with a message, got %d field %q: %s", status, field, e.Status, e.Field, e.Message)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mkPods(t testing.TB, c *api.Client, pods ...api.Pod) {
	t.Helper()
	for _, p := range pods {
		if _, err := c.CreatePod(context.Background(), p); err != nil {
			t.Fatalf("create pod %s: %v", p.ID, err)
		}
	}
}

func statusOf(err error) int {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Status
	}
	if err == nil {
		return http.StatusOK
	}
	return -1
}

func sharedPostgres(t *testing.T) string { return pgtest.SharedDatabase(t) }
