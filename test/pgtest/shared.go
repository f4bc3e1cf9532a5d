package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// shared is the one server of a test binary whose TestMain calls Main.
var shared struct {
	mu      sync.Mutex
	enabled bool    // Main is running the tests
	srv     *Server // started on first use
	err     error   // why it could not start; every later use fails alike
}

// mainActive is set while RunMain runs the tests.
var mainActive atomic.Bool

// template is an initdb'd data directory, made once per test binary when
// Main runs the tests, that new servers copy.
var template struct {
	mu   sync.Mutex
	base string // its private directory, removed by RunMain
	data string
	err  error
}

// templateData returns the template data directory, making it on first
// use, or "" when Main is not running the tests (then nothing would remove
// it at the end).
func templateData(bin string, cred *syscall.Credential) (string, error) {
	if !mainActive.Load() {
		return "", nil
	}
	template.mu.Lock()
	defer template.mu.Unlock()
	if template.data != "" || template.err != nil {
		return template.data, template.err
	}
	base, err := makeBaseDir(cred)
	if err != nil {
		template.err = err
		return "", err
	}
	t := &Server{bin: bin, base: base, dataDir: filepath.Join(base, "data"), cred: cred}
	if err := t.initdb(); err != nil {
		os.RemoveAll(base)
		template.err = err
		return "", err
	}
	template.base, template.data = base, t.dataDir
	return template.data, nil
}

func removeTemplate() {
	template.mu.Lock()
	defer template.mu.Unlock()
	if template.base != "" {
		os.RemoveAll(template.base)
	}
	template.base, template.data, template.err = "", "", nil
}

// Main runs the tests of m with a server shared by the whole test binary,
// started on the first SharedDatabase call (not at all if no test needs
// it), then stops it, removes its files and exits with m.Run's code. Use it
// as the package's TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	os.Exit(RunMain(m))
}

// RunMain is Main for a TestMain that has more to do: it returns m.Run's
// exit code instead of exiting.
func RunMain(m *testing.M) int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	mainActive.Store(true)
	defer func() {
		mainActive.Store(false)
		defer removeTemplate()
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.srv != nil {
			shared.srv.remove()
		}
		shared.enabled, shared.srv, shared.err = false, nil, nil
	}()
	return m.Run()
}

// Shared returns the server shared by the test binary, starting it on first
// use. Without Main in TestMain it returns a server for t alone (as Start).
// Tests must not Stop, Kill or Restart the shared server: crash tests start
// their own with Start.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	if !shared.enabled {
		shared.mu.Unlock()
		return Start(t)
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = newServer()
	}
	s, err := shared.srv, shared.err
	shared.mu.Unlock()
	if errors.Is(err, errNotInstalled) {
		notInstalled(t)
	}
	if err != nil {
		t.Fatalf("pgtest: shared server: %v", err)
	}
	return s
}

// SharedDatabase returns the DSN of a fresh database on the shared server
// (see Shared), dropped at t's cleanup.
func SharedDatabase(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}
