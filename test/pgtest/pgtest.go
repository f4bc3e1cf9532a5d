// Package pgtest runs a private PostgreSQL server for tests.
//
// It uses Debian's server binaries (/usr/lib/postgresql/<newest>/bin, from
// the postgresql package that scripts/deps.sh installs). Each server gets its
// own data directory and unix socket directory in a fresh temporary
// directory, listens on 127.0.0.1 on a port picked at run time, trusts local
// connections, and runs with fsync on. When the test runs as root, initdb and
// postgres run as the "postgres" system user.
//
// One server per test:
//
//	srv := pgtest.Start(t)       // stopped and removed at t's cleanup
//	dsn := srv.NewDatabase(t)    // a fresh, empty database on it
//
// One server per test binary, shared by all its tests:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//	...
//	dsn := pgtest.SharedDatabase(t)
//
// DSNs are URLs of the form postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable
// and work with github.com/jackc/pgx/v5 (and its database/sql driver
// github.com/jackc/pgx/v5/stdlib), which this package also uses for its own
// sessions.
//
// The package is Linux-only: it relies on SysProcAttr.Pdeathsig so that a
// crashed test binary does not leave a postmaster behind.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/l2span/l2span/test/freeport"
)

// NotInstalledMessage is the message with which tests are skipped (or, when
// the CI environment variable is set, failed) when no server is installed.
const NotInstalledMessage = "PostgreSQL server not installed: run make deps"

// User is the superuser name in every DSN.
const User = "postgres"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
	dirPrefix    = "l2span-pgtest-"
)

// errNotInstalled is returned by findBinDir when no server is installed.
var errNotInstalled = errors.New(NotInstalledMessage)

// Server is one running (or stopped) PostgreSQL server.
type Server struct {
	bin     string // directory with initdb and postgres
	base    string // private temp dir; removed by remove()
	dataDir string
	sockDir string
	logPath string
	port    int
	cred    *syscall.Credential // non-nil when running as root

	mu       sync.Mutex
	proc     *proc // the running postmaster, nil when stopped
	bgCtx    context.Context
	bgCancel context.CancelFunc // stops background drops when the server stops
	bg       sync.WaitGroup     // background drops

	adminMu sync.Mutex
	admin   *pgx.Conn // session on "postgres" for CREATE DATABASE

	seq atomic.Int64 // database name counter
}

type proc struct {
	pid  int
	done chan struct{} // closed when the postmaster has exited
	err  error         // exit status, valid after done
}

// Start starts a private server for t and registers its shutdown and the
// removal of its files with t.Cleanup. It skips t (or fails it, when the CI
// environment variable is set) if no PostgreSQL server is installed.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := newServer()
	if errors.Is(err, errNotInstalled) {
		notInstalled(t)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.remove)
	return s
}

func notInstalled(t testing.TB) {
	t.Helper()
	if _, ci := os.LookupEnv("CI"); ci {
		t.Fatal(NotInstalledMessage)
	}
	t.Skip(NotInstalledMessage)
}

// newServer creates, initialises and starts a server. On error nothing is
// left behind.
func newServer() (_ *Server, err error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	sweepOnce.Do(sweepStale)
	base, err := makeBaseDir(cred)
	if err != nil {
		return nil, err
	}
	s := &Server{
		bin:     bin,
		base:    base,
		dataDir: filepath.Join(base, "data"),
		sockDir: filepath.Join(base, "sock"),
		logPath: filepath.Join(base, "postgres.log"),
		cred:    cred,
	}
	defer func() {
		if err != nil {
			s.remove()
		}
	}()
	if err := os.Mkdir(s.sockDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.chown(s.sockDir); err != nil {
		return nil, err
	}
	if n := len(s.sockDir) + len("/.s.PGSQL.65535"); n > 107 {
		return nil, fmt.Errorf("unix socket path too long (%d bytes) under %s: set TMPDIR to a shorter directory", n, base)
	}
	if err := s.makeDataDir(); err != nil {
		return nil, err
	}
	// The port is picked before postgres binds it: retry if someone else
	// took it in between.
	for attempt := 0; ; attempt++ {
		if s.port, err = freeport.TCP(); err != nil {
			return nil, err
		}
		err = s.start()
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "Address already in use") {
			return s, err
		}
	}
}

// serverGlob matches Debian's server binaries (a variable for tests).
var serverGlob = "/usr/lib/postgresql/*/bin/postgres"

// findBinDir returns the bin directory of the newest installed server.
func findBinDir() (string, error) {
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return "", fmt.Errorf("PGTEST_BINDIR: %w", err)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob(serverGlob)
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(d), "initdb")); err != nil {
			continue
		}
		if v > bestV {
			best, bestV = filepath.Dir(d), v
		}
	}
	if best == "" {
		return "", errNotInstalled
	}
	return best, nil
}

// credential returns the credential to run postgres with: nil unless we are
// root, which postgres refuses to run as.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres system user (from the postgresql package): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("bad uid/gid for user postgres: %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}, nil
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

// childEnv is the environment of initdb and postgres: ours without PG*
// variables (PGDATA, PGPORT, ... would confuse them) and with a plain locale.
func childEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG")
	})
	return append(env, "LC_ALL=C")
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.base
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// makeDataDir creates s.dataDir: a copy of the test binary's template
// cluster when Main runs the tests (initdb once, copy per server: several
// times faster), else with initdb.
func (s *Server) makeDataDir() error {
	tmpl, err := templateData(s.bin, s.cred)
	if err != nil {
		return err
	}
	if tmpl == "" {
		return s.initdb()
	}
	return copyTree(tmpl, s.dataDir, s.cred)
}

func (s *Server) initdb() error {
	cmd := s.command("initdb",
		"-D", s.dataDir,
		"-U", User,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync", // only the OS could lose it; crash tests kill postgres, not the OS
		"--no-instructions",
	)
	out, err := runLocked(cmd)
	if err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// runLocked runs cmd to completion from a goroutine locked to its OS thread:
// Pdeathsig fires when the thread that forked the child exits, so the thread
// must outlive the child.
func runLocked(cmd *exec.Cmd) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out, err := cmd.CombinedOutput()
		ch <- result{out, err}
	}()
	r := <-ch
	return r.out, r.err
}

// start starts the postmaster on s.dataDir and s.port and waits until it
// accepts connections.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("server already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, 2)

	cmd := s.command("postgres",
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.sockDir,
		"-c", "unix_socket_permissions=0777",
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "full_page_writes=on",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
		"-c", "log_destination=stderr",
		"-c", "huge_pages=off",
		"-c", "recovery_init_sync_method=syncfs",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf

	p := &proc{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Keep this goroutine's thread alive while postgres runs: see runLocked.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.waitReady(ctx, p); err != nil {
		kids := children(p.pid)
		p.killAll(kids)
		<-p.done
		waitGone(kids, 10*time.Second)
		return fmt.Errorf("postgres did not start: %v\n%s", err, s.logSince(logStart))
	}
	s.proc = p
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	return nil
}

// waitReady polls until the server accepts a session or p exits.
func (s *Server) waitReady(ctx context.Context, p *proc) error {
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited: %v", p.err)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := s.connect(cctx, "postgres")
		cancel()
		if err == nil {
			closeConn(c)
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", startTimeout, last)
		case <-p.done:
			return fmt.Errorf("postgres exited: %v", p.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	if off > 0 && off <= int64(len(b)) {
		b = b[off:]
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (s *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// DSN returns the URL of the server's "postgres" database.
func (s *Server) DSN() string { return s.DSNFor("postgres") }

// DSNFor returns the URL of database db on the server.
func (s *Server) DSNFor(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", User, s.addr(), db)
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// SocketDir returns the directory of the server's unix socket.
func (s *Server) SocketDir() string { return s.sockDir }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// LogPath returns the file that receives the server's log (stderr).
func (s *Server) LogPath() string { return s.logPath }

// PID returns the postmaster's process id, or 0 when the server is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a fresh, empty database on the server and returns its
// DSN. At t's cleanup the database is dropped in the background (DROP
// DATABASE ... WITH (FORCE), which ends sessions still open to it), so that
// the next test need not wait for the checkpoint a drop costs; a server that
// is stopped meanwhile just forgets it.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := s.dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() { s.dropLater(name) })
	return s.DSNFor(name)
}

// dropLater drops database name in the background.
func (s *Server) dropLater(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	ctx := s.bgCtx
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		_ = s.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}()
}

// dbName makes a unique database name from a test name.
func (s *Server) dbName(testName string) string {
	n := s.seq.Add(1)
	suffix := "_" + strconv.FormatInt(n, 10)
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if max := 63 - len("t_") - len(suffix); len(base) > max {
		base = base[:max]
	}
	return "t_" + base + suffix
}

// connect opens a session on database db as the superuser.
func (s *Server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, s.DSNFor(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	return c, nil
}

// adminExec runs sql on the "postgres" database on a session kept open
// between calls (a new session costs tens of milliseconds).
func (s *Server) adminExec(ctx context.Context, sql string) error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.admin == nil {
		c, err := s.connect(ctx, "postgres")
		if err != nil {
			return err
		}
		s.admin = c
	}
	_, err := s.admin.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	var pgErr *pgconn.PgError
	if err != nil && !errors.As(err, &pgErr) {
		// The session is broken (server restarted, timeout, ...).
		s.closeAdminLocked()
	}
	return err
}

func (s *Server) closeAdmin() {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	s.closeAdminLocked()
}

func (s *Server) closeAdminLocked() {
	if s.admin == nil {
		return
	}
	closeConn(s.admin)
	s.admin = nil
}

// closeConn ends a session, giving a server that does not answer a second.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// exec runs sql on database db as the superuser, on a new session.
func (s *Server) exec(ctx context.Context, db, sql string) error {
	c, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer closeConn(c)
	_, err = c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

// Stop shuts the server down ("fast" shutdown: SIGINT to the postmaster,
// which disconnects clients, checkpoints and exits) and waits until it and
// all its processes are gone. If it has not exited after a minute, they are
// killed. Stop on a stopped server does nothing. The data directory is
// kept: Restart starts the server again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.detachLocked()
	if p == nil {
		return
	}
	kids := children(p.pid)
	_ = syscall.Kill(p.pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.killAll(children(p.pid))
		<-p.done
	}
	waitGone(kids, 10*time.Second)
}

// Kill simulates a crash: it kills the postmaster and its backends with
// SIGKILL and waits until they are all gone. What was committed stays on
// disk; Restart recovers it.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.detachLocked()
	if p == nil {
		return
	}
	kids := children(p.pid)
	p.killAll(kids)
	<-p.done
	waitGone(kids, 10*time.Second)
}

// detachLocked marks a running server stopped, ends its background drops
// and returns its postmaster; on a stopped server it returns nil. s.mu must
// be held.
func (s *Server) detachLocked() *proc {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	s.bgCancel()
	s.bg.Wait()
	s.closeAdmin()
	return p
}

// Restart starts a stopped or killed server again on the same data
// directory and port, and waits until it accepts connections (after crash
// recovery, if it was killed). On a running server it stops it first.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// remove stops the server and deletes its files.
func (s *Server) remove() {
	s.Stop()
	_ = os.RemoveAll(s.base)
}
