package podrig

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/jackc/pgx/v5"
)

// TopOptions shape the top cloud's neutron-server.
type TopOptions struct {
	// BrainURL is where the l2span driver finds the brain.
	BrainURL string
	// TokenFile holds a driver token of the brain.
	TokenFile string
	// VNIs is the tenant VNI range, "lo:hi"; the brain's ranges must
	// cover it (a driver token is not admin: the brain adopts only ids
	// inside its ranges).
	VNIs string
}

// Top is the top cloud's neutron-server: ML2 vxlan with the l2span
// mechanism driver, noauth, no message bus (no agents at the top), on the
// rig's PostgreSQL, listening on BrainIP:9696 in the underlay namespace.
type Top struct {
	URL       string
	rig       *Rig
	dir       string
	d         *daemon
	transport *http.Transport
}

const topConf = `[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = noauth
transport_url = fake:/
bind_host = {{IP}}
bind_port = 9696
api_paste_config = {{DIR}}/api-paste.ini
state_path = {{DIR}}
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
allow_overlapping_ips = true
use_stderr = true
debug = false

[database]
connection = postgresql+psycopg2://postgres@/{{DB}}?host={{SOCK}}&port={{PGPORT}}

[ml2]
type_drivers = vxlan
tenant_network_types = vxlan
mechanism_drivers = l2span

[ml2_type_vxlan]
vni_ranges = {{VNIS}}

[securitygroup]
firewall_driver = noop

[oslo_concurrency]
lock_path = {{DIR}}/lock

[l2span]
brain_url = {{BRAIN}}
token_file = {{TOKEN}}
host_pod_map = {{HOSTS}}
timeout = 10
retry_interval = 0.3
sync_on_start = false
pod_segments = false
journal_path = {{DIR}}/l2span-journal.db
`

// StartTop starts the top cloud's neutron-server; the compute hosts of
// every pod map to their pod (host_pod_map). The caller stops it.
func (r *Rig) StartTop(o TopOptions) (_ *Top, err error) {
	r.mu.Lock()
	r.nTop++
	n := r.nTop
	r.mu.Unlock()
	t := &Top{URL: fmt.Sprintf("http://%s:9696/", BrainIP), rig: r, dir: filepath.Join(r.Dir, fmt.Sprintf("top%d", n))}
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(t.dir, "lock"), 0o700); err != nil {
		return nil, err
	}
	db := fmt.Sprintf("neutron_%s_top%d", r.Tag, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.pg.DSN())
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	var hosts []string
	for _, p := range r.Pods {
		hosts = append(hosts, p.ID+"-h*:"+p.ID)
	}
	conf := strings.NewReplacer("{{IP}}", BrainIP.String(), "{{DIR}}", t.dir, "{{DB}}", db, "{{SOCK}}", r.pg.SocketDir(),
		"{{PGPORT}}", fmt.Sprint(r.pg.Port()), "{{VNIS}}", o.VNIs, "{{BRAIN}}", o.BrainURL, "{{TOKEN}}", o.TokenFile,
		"{{HOSTS}}", strings.Join(hosts, ",")).Replace(topConf)
	paste, err := os.ReadFile("/etc/neutron/api-paste.ini")
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"neutron.conf": []byte(conf), "api-paste.ini": paste} {
		if err := os.WriteFile(filepath.Join(t.dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	pp, err := driverPath(r.Dir)
	if err != nil {
		return nil, err
	}
	env := append(r.env(), "XDG_CACHE_HOME="+t.dir+"/cache", "HOME="+t.dir, "PYTHONPATH="+pp)
	url := fmt.Sprintf("postgresql+psycopg2://postgres@/%s?host=%s&port=%d", db, r.pg.SocketDir(), r.pg.Port())
	if out, err := r.Underlay.Run(append([]string{"env"}, append(env, python, "-c", createAll, url)...)...); err != nil {
		return nil, fmt.Errorf("create schema: %w: %s", err, out)
	}
	if out, err := r.Underlay.Run(append([]string{"env"}, append(env, "/usr/bin/neutron-db-manage", "--config-file", t.dir+"/neutron.conf", "stamp", "heads")...)...); err != nil {
		return nil, fmt.Errorf("stamp heads: %w: %s", err, out)
	}
	log := t.LogPath()
	if t.d, err = start(r.Underlay, log, env, serverBin, "--config-file", t.dir+"/neutron.conf"); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: t.httpTransport()}
	err = waitFor(120*time.Second, "top neutron-server ready", func() error {
		if !t.d.alive() {
			return fmt.Errorf("exited: %s", logTail(log))
		}
		resp, err := hc.Get(t.URL + "v2.0/networks?limit=1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return t, err
}

func (t *Top) httpTransport() *http.Transport {
	if t.transport == nil {
		t.transport = &http.Transport{DialContext: t.rig.Underlay.Dial, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	}
	return t.transport
}

// Client is a noauth gophercloud network client of the top Neutron.
func (t *Top) Client() *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 60 * time.Second, Transport: t.httpTransport()}}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: t.URL, ResourceBase: t.URL + "v2.0/", Type: "network"}
}

// LogPath is the top neutron-server's log.
func (t *Top) LogPath() string { return filepath.Join(t.dir, "neutron-server.log") }

// Log is the end of the top neutron-server's log.
func (t *Top) Log() string { return logTail(t.LogPath()) }

// Stop kills the top neutron-server (its process group, by PID).
func (t *Top) Stop() { t.d.stop() }
