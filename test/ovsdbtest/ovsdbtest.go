// Package ovsdbtest runs a private ovsdb-server for tests.
//
// Each Server gets its own temporary directory holding the database file
// (made with `ovsdb-tool create` from a schema file), the unix socket, the
// unixctl socket and the log, and runs ovsdb-server in the foreground as a
// child of the test binary (Pdeathsig set, so a crashed test leaves nothing
// behind). Stop kills that child by its PID; t.Cleanup stops it at the end.
// Restart stops and starts it again on the same database file and socket,
// which is how tests simulate a server restart under a client.
//
//	srv := ovsdbtest.Start(t, "/usr/share/openvswitch/vtep.ovsschema")
//	endpoint := srv.Endpoint() // "unix:/tmp/.../db.sock"
//
// Tests are skipped (failed when the CI environment variable is set) when
// ovsdb-server or ovsdb-tool is not installed.
package ovsdbtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VTEPSchema is where Debian's openvswitch-vtep/openvswitch-common put the
// hardware_vtep schema.
const VTEPSchema = "/usr/share/openvswitch/vtep.ovsschema"

// NotInstalledMessage is the reason tests are skipped without the binaries.
const NotInstalledMessage = "ovsdb-server/ovsdb-tool not installed: run make deps"

const startTimeout = 20 * time.Second

// Server is one private ovsdb-server.
type Server struct {
	dir    string
	db     string
	sock   string
	ctl    string
	log    string
	server string

	// Args are extra ovsdb-server arguments (more remotes, SSL files),
	// used from the next Begin.
	Args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start creates a database from schema and starts a server on it; it is
// stopped at t's cleanup.
func Start(t testing.TB, schema string) *Server {
	t.Helper()
	return StartWith(t, schema)
}

// StartWith is Start with extra ovsdb-server arguments.
func StartWith(t testing.TB, schema string, args ...string) *Server {
	t.Helper()
	s, err := New(t.TempDir(), schema)
	if errors.Is(err, exec.ErrNotFound) {
		if os.Getenv("CI") != "" {
			t.Fatal(NotInstalledMessage)
		}
		t.Skip(NotInstalledMessage)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Args = args
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	return s
}

// New prepares a server in dir (which must exist and be private) without
// starting it. Use Start in tests; New+Begin/Stop suit benchmarks' own
// lifecycle.
func New(dir, schema string) (*Server, error) {
	tool, err := exec.LookPath("ovsdb-tool")
	if err != nil {
		return nil, fmt.Errorf("ovsdbtest: %w", err)
	}
	server, err := exec.LookPath("ovsdb-server")
	if err != nil {
		return nil, fmt.Errorf("ovsdbtest: %w", err)
	}
	s := &Server{
		dir:    dir,
		db:     filepath.Join(dir, "db"),
		sock:   filepath.Join(dir, "db.sock"),
		ctl:    filepath.Join(dir, "ctl"),
		log:    filepath.Join(dir, "ovsdb-server.log"),
		server: server,
	}
	if out, err := exec.Command(tool, "create", s.db, schema).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ovsdbtest: ovsdb-tool create: %w: %s", err, out)
	}
	return s, nil
}

// Endpoint is the libovsdb endpoint of the server ("unix:PATH").
func (s *Server) Endpoint() string { return "unix:" + s.sock }

// Socket is the path of the server's unix socket.
func (s *Server) Socket() string { return s.sock }

// Dir is the server's private directory.
func (s *Server) Dir() string { return s.dir }

// PID is the running server's process id, 0 when stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Begin starts the server and waits until its socket accepts connections.
func (s *Server) Begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("ovsdbtest: already running")
	}
	_ = os.Remove(s.sock)
	args := []string{s.db,
		"--remote=punix:" + s.sock,
		"--unixctl=" + s.ctl,
		"--log-file=" + s.log,
		"--no-chdir",
		"-vconsole:off",
	}
	cmd := exec.Command(s.server, append(args, s.Args...)...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+s.dir, "OVS_DBDIR="+s.dir, "OVS_LOGDIR="+s.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("ovsdbtest: start ovsdb-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd = cmd
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.Dial("unix", s.sock)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(s.log)
			return fmt.Errorf("ovsdbtest: ovsdb-server exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ovsdbtest: socket %s not ready after %s: %w", s.sock, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (by PID) and waits for it to exit. Stopping a
// stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	p := s.cmd.Process
	s.cmd = nil
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("ovsdbtest: kill ovsdb-server %d: %w", p.Pid, err)
	}
	// Wait is done by the goroutine started in Begin; poll until the
	// process is gone.
	for range 500 {
		if err := syscall.Kill(p.Pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("ovsdbtest: ovsdb-server %d still running after kill", p.Pid)
}

// Restart stops the server and starts it again on the same database.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Begin()
}

// Client runs ovsdb-client with args against the server, e.g.
// Client("dump", "hardware_vtep", "Logical_Switch").
func (s *Server) Client(args ...string) ([]byte, error) {
	full := make([]string, 0, len(args)+1)
	full = append(full, args[0], s.Endpoint())
	full = append(full, args[1:]...)
	out, err := exec.Command("ovsdb-client", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ovsdbtest: ovsdb-client %v: %w: %s", args, err, out)
	}
	return out, nil
}
