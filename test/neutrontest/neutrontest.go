// Package neutrontest runs a private Debian neutron-server (OpenStack Zed)
// for tests: a real bottom Neutron for gophercloud.
//
// The server runs with auth_strategy = noauth, transport_url = fake:/ (no
// message bus), ML2 with the flat, vlan, vxlan and local type drivers and
// the `logger` mechanism driver, DHCP and Nova notifications off, its own
// state dir (a fresh temp dir) and a free port on 127.0.0.1. Its database is
// SQLite: the schema is built from the models (create_all) and stamped with
// `neutron-db-manage stamp heads`, since Neutron's migrations fail on SQLite.
//
// ML2 is configured with physical networks physnet1 and physnet2 (VLAN
// ranges 100-200 on each, for tenant networks) and VNI range 5000-5999;
// tenant networks are vxlan. Provider networks may use other ids.
//
// One server per test binary:
//
//	func TestMain(m *testing.M) { neutrontest.Main(m) }
//	...
//	srv := neutrontest.Shared(t) // started on first use
//	client := srv.Client()      // gophercloud ServiceClient, noauth
//
// A test skips when neutron-server is not installed, or fails when the CI
// environment variable is set. The server and its workers are killed by the
// process-group id of the server's PID at the end (and by Pdeathsig if the
// test binary dies).
package neutrontest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/l2span/l2span/test/freeport"
)

// NotInstalledMessage is why tests skip (or fail, under CI) without Neutron.
const NotInstalledMessage = "neutron-server not installed: run make deps"

const (
	serverBin   = "/usr/bin/neutron-server"
	dbManageBin = "/usr/bin/neutron-db-manage"
	python      = "/usr/bin/python3" // Debian's, not a pyenv one on PATH
	pasteIni    = "/etc/neutron/api-paste.ini"
	startLimit  = 90 * time.Second
)

// Physical networks and ranges the server is configured with.
const (
	Physnet1 = "physnet1"
	Physnet2 = "physnet2"
)

var errNotInstalled = errors.New(NotInstalledMessage)

// Server is one running neutron-server.
type Server struct {
	// URL is the endpoint, http://127.0.0.1:PORT/ (API under v2.0/).
	URL string
	// StartupTime is how long the schema and start took.
	StartupTime time.Duration

	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped sync.Once
	opts    Options
}

var shared struct {
	mu      sync.Mutex
	enabled bool
	srv     *Server
	err     error
}

// Main runs the tests of m with one server shared by the test binary,
// started on the first Shared call, and stops it at the end.
func Main(m *testing.M) { os.Exit(RunMain(m)) }

// RunMain is Main returning m.Run's code.
func RunMain(m *testing.M) int { return Around(m.Run) }

// Around is RunMain for a TestMain that combines helpers: run runs the
// tests (e.g. pgtest.RunMain(m)) with the shared server enabled.
func Around(run func() int) int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	defer func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.srv != nil {
			shared.srv.Stop()
		}
		shared.enabled, shared.srv, shared.err = false, nil, nil
	}()
	return run()
}

// Shared returns the test binary's server (see Main); without Main it
// starts one for t alone.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	if !shared.enabled {
		shared.mu.Unlock()
		return Start(t)
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = start()
	}
	s, err := shared.srv, shared.err
	shared.mu.Unlock()
	check(t, err)
	return s
}

// Start starts a server for t, stopped at t's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	check(t, err)
	t.Cleanup(s.Stop)
	return s
}

func check(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errNotInstalled) {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatal(NotInstalledMessage)
		}
		t.Skip(NotInstalledMessage)
	}
	if err != nil {
		t.Fatalf("neutrontest: %v", err)
	}
}

// Installed reports whether neutron-server is installed.
func Installed() bool {
	for _, p := range []string{serverBin, dbManageBin, python, pasteIni} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

const confTemplate = `[DEFAULT]
core_plugin = ml2
service_plugins = {{SERVICE_PLUGINS}}
auth_strategy = noauth
transport_url = fake:/
bind_host = 127.0.0.1
bind_port = {{PORT}}
api_paste_config = {{DIR}}/api-paste.ini
state_path = {{DIR}}
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
allow_overlapping_ips = true
use_stderr = true
debug = false

[database]
connection = sqlite:///{{DIR}}/neutron.db

[ml2]
type_drivers = flat,vlan,vxlan,local
tenant_network_types = vxlan
mechanism_drivers = {{MECH}}

[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200,physnet2:100:200

[ml2_type_vxlan]
vni_ranges = 5000:5999

[ml2_type_flat]
flat_networks = *

[oslo_concurrency]
lock_path = {{DIR}}/lock
`

const createAll = `
import sys
import sqlalchemy as sa
from neutron.db.migration.models import head  # noqa: imports every model
from neutron_lib.db import model_base
model_base.BASEV2.metadata.create_all(sa.create_engine(sys.argv[1]))
`

func start() (*Server, error) { return startWith(Options{}) }

func startWith(o Options) (_ *Server, err error) {
	if !Installed() {
		return nil, errNotInstalled
	}
	began := time.Now()
	dir, err := os.MkdirTemp("", "l2span-neutrontest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, logPath: filepath.Join(dir, "neutron-server.log"), exited: make(chan struct{}), opts: o}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	port, err := freeport.TCP()
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	s.URL = fmt.Sprintf("http://127.0.0.1:%d/", port)
	conf := strings.NewReplacer("{{PORT}}", strconv.Itoa(port), "{{DIR}}", dir, "{{MECH}}", o.mechanismDrivers(), "{{SERVICE_PLUGINS}}", strings.Join(o.ServicePlugins, ",")).Replace(confTemplate) + o.extraConfig(dir)
	paste, err := os.ReadFile(pasteIni)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "lock"), 0o700); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"neutron.conf": []byte(conf), "api-paste.ini": paste} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	confPath := filepath.Join(dir, "neutron.conf")
	if out, err := s.command(python, "-c", createAll, "sqlite:///"+dir+"/neutron.db").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("create neutron schema: %w: %s", err, tail(out))
	}
	if err := s.addAgents(); err != nil {
		return nil, err
	}
	if out, err := s.command(dbManageBin, "--config-file", confPath, "stamp", "heads").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("neutron-db-manage stamp heads: %w: %s", err, tail(out))
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = s.command(serverBin, "--config-file", confPath)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := startLocked(s.cmd, s.exited); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start neutron-server: %w", err)
	}
	logf.Close()
	if err := s.waitReady(); err != nil {
		return nil, err
	}
	s.StartupTime = time.Since(began)
	return s, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(s.dir, "cache"), "HOME="+s.dir)
	cmd.Env = append(cmd.Env, s.opts.env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// startLocked starts cmd from a goroutine locked to its OS thread, which
// lives (waiting for the process) until it exits: Pdeathsig fires when the
// forking thread exits, so that thread must outlive the child.
func startLocked(cmd *exec.Cmd, exited chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			errc <- err
			close(exited)
			return
		}
		errc <- nil
		cmd.Wait()
		close(exited)
	}()
	return <-errc
}

func (s *Server) waitReady() error {
	deadline := time.Now().Add(startLimit)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("neutron-server exited at start: %s", s.LogTail())
		default:
		}
		resp, err := hc.Get(s.URL + "v2.0/networks?limit=1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("neutron-server not ready after %s: %s", startLimit, s.LogTail())
}

// Stop kills the server and its workers (its process group, by the
// server's PID) and removes its state dir.
func (s *Server) Stop() {
	s.stopped.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			pid := s.cmd.Process.Pid
			syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
			// Workers may outlive the parent; the group goes in any case.
			syscall.Kill(-pid, syscall.SIGKILL)
			<-s.exited
		}
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
	})
}

// LogTail is the end of the server's log, for failure messages.
// Log is the server's whole log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.logPath)
	return tail(b)
}

func tail(b []byte) string {
	const n = 3000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Client returns a gophercloud network ServiceClient for the server. It is
// built by hand: gophercloud has no noauth provider for Neutron.
func (s *Server) Client() *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 60 * time.Second}}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: s.URL, ResourceBase: s.URL + "v2.0/", Type: "network"}
}

// Wait polls cond every 50 ms until it holds or ctx ends.
func Wait(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PID is the server's process id (its process group id too).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
