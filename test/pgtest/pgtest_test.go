package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// sqlOn runs sql (one or more statements, simple query protocol) on the
// database named by dsn and returns the rows of the last result set as text
// (NULL becomes "").
func sqlOn(t testing.TB, dsn, sql string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := connectTo(t, ctx, dsn)
	defer closeConn(c)
	results, err := c.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s on %s: %v", sql, dsn, err)
	}
	var rows [][]string
	if len(results) > 0 {
		for _, r := range results[len(results)-1].Rows {
			row := make([]string, len(r))
			for i, v := range r {
				row[i] = string(v)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// connectTo opens a session on the database named by dsn.
func connectTo(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	return c
}

func TestStartAndTwoDatabases(t *testing.T) {
	t0 := time.Now()
	srv := Start(t)
	t.Logf("server start: %v (port %d, data %s)", time.Since(t0), srv.Port(), srv.DataDir())

	if !strings.HasPrefix(srv.DSN(), "postgres://postgres@127.0.0.1:"+strconv.Itoa(srv.Port())+"/postgres?sslmode=disable") {
		t.Errorf("DSN() = %q", srv.DSN())
	}
	var dsns []string
	for range 2 {
		t0 := time.Now()
		dsns = append(dsns, srv.NewDatabase(t))
		t.Logf("NewDatabase: %v", time.Since(t0))
	}
	if dsns[0] == dsns[1] {
		t.Fatalf("two databases share a DSN: %s", dsns[0])
	}
	for i, dsn := range dsns {
		sqlOn(t, dsn, "CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)")
		sqlOn(t, dsn, fmt.Sprintf("INSERT INTO kv VALUES ('db', 'value-%d')", i))
	}
	for i, dsn := range dsns {
		rows := sqlOn(t, dsn, "SELECT k, v, current_database(), current_setting('fsync'), current_setting('max_connections') FROM kv")
		if len(rows) != 1 || rows[0][1] != fmt.Sprintf("value-%d", i) {
			t.Fatalf("db %d rows = %q", i, rows)
		}
		if rows[0][3] != "on" || rows[0][4] != "200" {
			t.Errorf("fsync=%s max_connections=%s", rows[0][3], rows[0][4])
		}
		if !strings.HasSuffix(dsn, "/"+rows[0][2]+"?sslmode=disable") {
			t.Errorf("DSN %s names another database than %s", dsn, rows[0][2])
		}
	}
}

func TestStartWithoutTemplate(t *testing.T) {
	// Outside Main, Start runs initdb itself.
	mainActive.Store(false)
	defer mainActive.Store(true)
	t0 := time.Now()
	srv := Start(t)
	t.Logf("server start with initdb: %v", time.Since(t0))
	if rows := sqlOn(t, srv.DSN(), "SELECT 1"); rows[0][0] != "1" {
		t.Fatalf("got %q", rows)
	}
}

func TestNotInstalledSkips(t *testing.T) {
	if os.Getenv("PGTEST_NOTINSTALLED_CHILD") == "1" {
		serverGlob = "/nonexistent/*/bin/postgres"
		Start(t)
		t.Fatal("Start returned without a server")
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNotInstalledSkips$", "-test.v", "-test.count=1")
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CI=") })
		cmd.Env = append(cmd.Env, "PGTEST_NOTINSTALLED_CHILD=1")
		if ci != "" {
			cmd.Env = append(cmd.Env, "CI="+ci)
		}
		out, err := cmd.CombinedOutput()
		want := "--- SKIP"
		if ci != "" {
			want = "--- FAIL"
		}
		if !strings.Contains(string(out), want) || !strings.Contains(string(out), NotInstalledMessage) {
			t.Errorf("CI=%q: want %s with %q; got err %v:\n%s", ci, want, NotInstalledMessage, err, out)
		}
	}
}

func TestNewDatabaseIsDroppedAtCleanup(t *testing.T) {
	srv := Start(t)
	var name string
	t.Run("sub", func(t *testing.T) {
		dsn := srv.NewDatabase(t)
		u, _ := url.Parse(dsn)
		name = strings.TrimPrefix(u.Path, "/")
		// An open session must not stop the drop.
		c := connectTo(t, context.Background(), dsn)
		t.Cleanup(func() { closeConn(c) })
	})
	// The drop runs in the background.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := sqlOn(t, srv.DSN(), "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'")
		if rows[0][0] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database %s still exists 30s after its test", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKillRestartKeepsCommittedData(t *testing.T) {
	srv := Start(t)
	dsn := srv.NewDatabase(t)
	sqlOn(t, dsn, "CREATE TABLE kv (k int PRIMARY KEY, v text)")
	sqlOn(t, dsn, "INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 1000) g")
	port, pid := srv.Port(), srv.PID()
	kids := children(pid)
	if len(kids) < 3 {
		t.Fatalf("postmaster has children %v; expected its auxiliary processes", kids)
	}

	srv.Kill()
	if processAlive(pid) {
		t.Fatalf("postmaster %d alive after Kill", pid)
	}
	for _, k := range kids {
		if k.alive() {
			t.Fatalf("process %d of the killed server still alive", k.pid)
		}
	}
	if srv.PID() != 0 {
		t.Fatalf("PID() = %d after Kill", srv.PID())
	}
	t0 := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after kill (crash recovery): %v", time.Since(t0))
	if srv.Port() != port || srv.PID() == pid || srv.PID() == 0 {
		t.Fatalf("after Restart: port %d (was %d), pid %d (was %d)", srv.Port(), port, srv.PID(), pid)
	}
	rows := sqlOn(t, dsn, "SELECT count(*), sum(k) FROM kv")
	if rows[0][0] != "1000" || rows[0][1] != "500500" {
		t.Fatalf("after crash: count, sum = %q", rows[0])
	}
	b, _ := os.ReadFile(srv.LogPath())
	if !strings.Contains(string(b), "not properly shut down") {
		t.Errorf("no crash recovery in the log:\n%s", b)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	srv := Start(t)
	dsn := srv.NewDatabase(t)
	sqlOn(t, dsn, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
	// Keep a session open: fast shutdown must end it.
	c := connectTo(t, context.Background(), dsn)
	defer closeConn(c)

	pid := srv.PID()
	if !processAlive(pid) {
		t.Fatalf("postmaster %d not running", pid)
	}
	kids := children(pid)
	if len(kids) < 4 { // checkpointer, bgwriter, walwriter, ..., our session
		t.Errorf("postmaster has children %v; expected its auxiliary processes", kids)
	}
	t0 := time.Now()
	srv.Stop()
	t.Logf("stop: %v", time.Since(t0))
	if processAlive(pid) {
		t.Fatalf("postmaster %d alive after Stop", pid)
	}
	for _, k := range kids {
		if k.alive() {
			t.Errorf("process %d alive after Stop", k.pid)
		}
	}
	srv.Stop() // no-op

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if rows := sqlOn(t, dsn, "SELECT x FROM t"); len(rows) != 1 || rows[0][0] != "42" {
		t.Fatalf("after stop+restart: %q", rows)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	var srv *Server
	var pid int
	t.Run("sub", func(t *testing.T) {
		srv = Start(t)
		pid = srv.PID()
		srv.NewDatabase(t)
	})
	if processAlive(pid) {
		t.Errorf("postmaster %d alive after its test", pid)
	}
	if _, err := os.Stat(srv.base); !os.IsNotExist(err) {
		t.Errorf("%s still there after its test: %v", srv.base, err)
	}
}

func TestSharedDatabase(t *testing.T) {
	t0 := time.Now()
	a := SharedDatabase(t)
	t.Logf("first SharedDatabase (starts the shared server): %v", time.Since(t0))
	t0 = time.Now()
	b := SharedDatabase(t)
	t.Logf("second SharedDatabase: %v", time.Since(t0))
	ua, _ := url.Parse(a)
	ub, _ := url.Parse(b)
	if ua.Host != ub.Host || ua.Path == ub.Path {
		t.Fatalf("want two databases on one server: %s %s", a, b)
	}
	sqlOn(t, a, "CREATE TABLE t (x int)")
	sqlOn(t, b, "CREATE TABLE t (x int)")
}

func TestSharedDatabaseParallel(t *testing.T) {
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			dsn := SharedDatabase(t)
			sqlOn(t, dsn, fmt.Sprintf("CREATE TABLE t (x int); INSERT INTO t VALUES (%d)", i))
			if rows := sqlOn(t, dsn, "SELECT x FROM t"); rows[0][0] != strconv.Itoa(i) {
				t.Errorf("got %q", rows)
			}
		})
	}
}

func TestDBName(t *testing.T) {
	s := &Server{}
	n := s.dbName("TestFoo/Sub_Test#01 with spaces " + strings.Repeat("x", 100))
	if len(n) > 63 || !strings.HasPrefix(n, "t_testfoo_sub_test_01_with_spaces_") || !strings.HasSuffix(n, "_1") {
		t.Errorf("dbName = %q (%d bytes)", n, len(n))
	}
}

// TestCrashedTestBinaryLeavesNoServer runs this test binary as a child that
// starts a server, kills the child with SIGKILL (no cleanup runs), and checks
// that the postmaster died with it (Pdeathsig).
func TestCrashedTestBinaryLeavesNoServer(t *testing.T) {
	if os.Getenv("PGTEST_CRASH_CHILD") == "1" {
		srv := Start(t)
		template.mu.Lock()
		tmpl := template.base
		template.mu.Unlock()
		fmt.Printf("PGTEST pid=%d base=%s template=%s\n", srv.PID(), srv.base, tmpl)
		time.Sleep(time.Minute)
		return
	}
	if _, err := findBinDir(); err != nil {
		notInstalled(t)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedTestBinaryLeavesNoServer$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CRASH_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var pid int
	var base, tmpl string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "PGTEST pid=%d base=%s template=%s", &pid, &base, &tmpl); err == nil {
			break
		}
	}
	if pid == 0 || tmpl == "" {
		t.Fatalf("child did not report a server made from a template")
	}
	// The child had no chance to remove them.
	defer os.RemoveAll(base)
	defer os.RemoveAll(tmpl)
	if !processAlive(pid) {
		t.Fatalf("postmaster %d not running", pid)
	}
	kids := children(pid)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	waitGone(kids, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d alive 10s after its test binary was killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, k := range kids {
		if k.alive() {
			t.Errorf("postgres process %d alive 10s after the test binary was killed", k.pid)
		}
	}
}

func BenchmarkNewDatabase(b *testing.B) {
	srv := Shared(b)
	for b.Loop() {
		srv.NewDatabase(b)
	}
}

func BenchmarkConnect(b *testing.B) {
	srv := Shared(b)
	for b.Loop() {
		sqlOn(b, srv.DSN(), "SELECT 1")
	}
}
