package neutrontest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Options changes what a server loads; the zero value is the default
// server (ML2 with the logger mechanism driver only).
type Options struct {
	// MechanismDrivers replaces ML2's mechanism_drivers (default logger).
	MechanismDrivers []string
	// PythonPath folders are put first on the server's PYTHONPATH: an
	// out-of-tree driver with a hand-made dist-info there is found by
	// stevedore (entry points).
	PythonPath []string
	// Config is appended to neutron.conf (new sections, e.g. [l2span]);
	// {{DIR}} is replaced by the server's state dir.
	Config string
	// Agents are DHCP agent rows written into the database before start:
	// Neutron accepts availability_zone_hints only for AZs that have a
	// DHCP agent, and a host's agents give its AZ.
	Agents []Agent
	// ServicePlugins is [DEFAULT] service_plugins (default none), e.g.
	// segments for multi-segment networks and `network segment list`.
	ServicePlugins []string
	// Env is added to the server's environment.
	Env []string
}

// Agent is a (fake) DHCP agent: a host in an availability zone.
type Agent struct {
	Host string
	AZ   string
}

func (o Options) mechanismDrivers() string {
	if len(o.MechanismDrivers) == 0 {
		return "logger"
	}
	return strings.Join(o.MechanismDrivers, ",")
}

func (o Options) extraConfig(dir string) string {
	if o.Config == "" {
		return ""
	}
	return "\n" + strings.ReplaceAll(o.Config, "{{DIR}}", dir) + "\n"
}

func (o Options) env() []string {
	env := append([]string(nil), o.Env...)
	if len(o.PythonPath) > 0 {
		pp := strings.Join(o.PythonPath, ":")
		if cur := os.Getenv("PYTHONPATH"); cur != "" {
			pp += ":" + cur
		}
		env = append(env, "PYTHONPATH="+pp)
	}
	return env
}

// StartWith starts a server with o for t, stopped at t's cleanup.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := startWith(o)
	check(t, err)
	t.Cleanup(s.Stop)
	return s
}

// New starts a server with o that the caller stops (Stop), e.g. one per
// test binary from TestMain. It returns an error wrapping
// NotInstalledMessage when neutron-server is not installed (see
// IsNotInstalled).
func New(o Options) (*Server, error) { return startWith(o) }

// IsNotInstalled reports whether err (from New) says neutron-server is
// not installed.
func IsNotInstalled(err error) bool { return err == errNotInstalled }

// Dir is the server's state dir (config, database, log).
func (s *Server) Dir() string { return s.dir }

// LogPath is the server's log file.
func (s *Server) LogPath() string { return s.logPath }

const addAgents = `
import sys, datetime, json, uuid
import sqlalchemy as sa
eng = sa.create_engine(sys.argv[1])
now = datetime.datetime.utcnow()
with eng.begin() as c:
    for host, az in json.loads(sys.argv[2]):
        c.execute(sa.text(
            "INSERT INTO agents (id, agent_type, binary, topic, host, availability_zone,"
            " admin_state_up, created_at, started_at, heartbeat_timestamp, configurations, load,"
            " resources_synced) VALUES (:id, 'DHCP agent', 'neutron-dhcp-agent', 'dhcp_agent',"
            " :host, :az, 1, :now, :now, :now, '{}', 0, 1)"),
            dict(id=str(uuid.uuid4()), host=host, az=az, now=now))
`

func (s *Server) addAgents() error {
	if len(s.opts.Agents) == 0 {
		return nil
	}
	var rows []string
	for _, a := range s.opts.Agents {
		rows = append(rows, fmt.Sprintf("[%q,%q]", a.Host, a.AZ))
	}
	out, err := s.command(python, "-c", addAgents, "sqlite:///"+s.dir+"/neutron.db", "["+strings.Join(rows, ",")+"]").CombinedOutput()
	if err != nil {
		return fmt.Errorf("add agents: %w: %s", err, tail(out))
	}
	return nil
}
