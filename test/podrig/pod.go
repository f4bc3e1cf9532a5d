package podrig

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/jackc/pgx/v5"
)

func (r *Rig) newPod(i int) (*Pod, error) {
	p := &Pod{ID: fmt.Sprintf("pod%d", i), Index: i, rig: r, CtlIP: Addr(10 * i), ShadowIP: Addr(200 + i)}
	p.ShadowHost = "l2span-gw-" + p.ID
	p.NeutronURL = fmt.Sprintf("http://%s:9696/", p.CtlIP)
	p.dir = filepath.Join(r.Dir, p.ID)
	var err error
	if p.Ctl, err = r.ns(fmt.Sprintf("p%dc", i)); err != nil {
		return nil, err
	}
	if err := r.attach(p.Ctl, "eth0", fmt.Sprintf("p%dc", i), netip.PrefixFrom(p.CtlIP, 24)); err != nil {
		return nil, err
	}
	for j := 1; j <= 2; j++ {
		h := &Host{Name: fmt.Sprintf("%s-h%d", p.ID, j), IP: Addr(10*i + j), dir: filepath.Join(p.dir, fmt.Sprintf("h%d", j))}
		if h.NS, err = r.ns(fmt.Sprintf("p%dh%d", i, j)); err != nil {
			return nil, err
		}
		if err := r.attach(h.NS, "eth0", fmt.Sprintf("p%dh%d", i, j), netip.PrefixFrom(h.IP, 24)); err != nil {
			return nil, err
		}
		p.Hosts = append(p.Hosts, h)
	}
	return p, os.MkdirAll(p.dir, 0o755)
}

func (p *Pod) start() error {
	if err := p.startRabbit(); err != nil {
		return fmt.Errorf("%s: rabbitmq: %w", p.ID, err)
	}
	if err := p.startNeutron(); err != nil {
		return fmt.Errorf("%s: neutron-server: %w", p.ID, err)
	}
	for _, h := range p.Hosts {
		if err := p.StartAgent(h); err != nil {
			return fmt.Errorf("%s: agent: %w", h.Name, err)
		}
	}
	if err := p.WaitAgents(context.Background(), 240*time.Second); err != nil {
		return fmt.Errorf("%w\nneutron-server log: %s", err, p.NeutronLog())
	}
	return nil
}

func (p *Pod) startRabbit() error {
	d := filepath.Join(p.dir, "rabbitmq")
	for _, s := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(d, s), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d, ".erlang.cookie"), []byte("L2SPANPODRIG"+p.rig.Tag+p.ID), 0o400); err != nil {
		return err
	}
	conf := "listeners.tcp.default = 5672\nloopback_users = none\n"
	if err := os.WriteFile(filepath.Join(d, "rabbitmq.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	env := []string{"HOME=" + d, "RABBITMQ_CONFIG_FILE=" + d + "/rabbitmq.conf", "RABBITMQ_MNESIA_BASE=" + d + "/mnesia",
		"RABBITMQ_LOG_BASE=" + d + "/log", "RABBITMQ_NODENAME=" + p.ID + "@localhost", "RABBITMQ_NODE_PORT=5672",
		"RABBITMQ_DIST_PORT=25672", "RABBITMQ_ENABLED_PLUGINS_FILE=" + d + "/enabled_plugins", "RABBITMQ_PID_FILE=" + d + "/pid",
		"RABBITMQ_LOGS=-"}
	var err error
	log := filepath.Join(p.dir, "rabbitmq.log")
	if p.rabbit, err = start(p.Ctl, log, env, rabbitBin); err != nil {
		return err
	}
	return waitFor(90*time.Second, "rabbitmq ready", func() error {
		if !p.rabbit.alive() {
			return fmt.Errorf("exited: %s", logTail(log))
		}
		b, _ := os.ReadFile(log)
		if !strings.Contains(string(b), "Server startup complete") {
			return fmt.Errorf("not started")
		}
		return nil
	})
}

const neutronConf = `[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = noauth
transport_url = rabbit://guest:guest@{{IP}}:5672/
bind_host = {{IP}}
bind_port = 9696
api_paste_config = {{DIR}}/api-paste.ini
state_path = {{DIR}}
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
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
# l2span_bottom first: linuxbridge would bind a shadow port to the
# (alive) shadow agent and leave it DOWN.
mechanism_drivers = l2span_bottom,linuxbridge,l2population

[ml2_type_vxlan]
vni_ranges = {{VNIS}}

# Security groups stay on in the server (the agents' firewall is noop):
# Zed's bulk port create fails with a 500 when the extension is off.
[securitygroup]
firewall_driver = noop

[experimental]
linuxbridge = true

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

// VNIRange is the tenant VNI range of pod i's Neutron (different per pod,
// so mixed networks get different segments).
func VNIRange(i int) (lo, hi int) { return 1000 * i, 1000*i + 999 }

func (p *Pod) startNeutron() error {
	d := filepath.Join(p.dir, "neutron")
	if err := os.MkdirAll(filepath.Join(d, "lock"), 0o700); err != nil {
		return err
	}
	db := "neutron_" + p.rig.Tag + "_" + p.ID
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.rig.pg.DSN())
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	lo, hi := VNIRange(p.Index)
	conf := strings.NewReplacer("{{IP}}", p.CtlIP.String(), "{{DIR}}", d, "{{DB}}", db, "{{SOCK}}", p.rig.pg.SocketDir(), "{{PGPORT}}", fmt.Sprint(p.rig.pg.Port()),
		"{{VNIS}}", fmt.Sprintf("%d:%d", lo, hi)).Replace(neutronConf)
	if os.Getenv("PODRIG_DEBUG") != "" {
		conf = strings.Replace(conf, "debug = false", "debug = true", 1)
	}
	paste, err := os.ReadFile("/etc/neutron/api-paste.ini")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"neutron.conf": []byte(conf), "api-paste.ini": paste} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o600); err != nil {
			return err
		}
	}
	pp, err := driverPath(p.rig.Dir)
	if err != nil {
		return err
	}
	env := append(p.rig.env(), "XDG_CACHE_HOME="+d+"/cache", "HOME="+d, "PYTHONPATH="+pp)
	url := fmt.Sprintf("postgresql+psycopg2://postgres@/%s?host=%s&port=%d", db, p.rig.pg.SocketDir(), p.rig.pg.Port())
	if out, err := p.Ctl.Run(append([]string{"env"}, append(env, python, "-c", createAll, url)...)...); err != nil {
		return fmt.Errorf("create schema: %w: %s", err, out)
	}
	if out, err := p.Ctl.Run(append([]string{"env"}, append(env, "/usr/bin/neutron-db-manage", "--config-file", d+"/neutron.conf", "stamp", "heads")...)...); err != nil {
		return fmt.Errorf("stamp heads: %w: %s", err, out)
	}
	p.neutronEnv = env
	return p.runNeutron()
}

// runNeutron starts the pod's neutron-server on its prepared database and
// waits until it answers.
func (p *Pod) runNeutron() error {
	d := filepath.Join(p.dir, "neutron")
	log := filepath.Join(p.dir, "neutron-server.log")
	var err error
	if p.neutron, err = start(p.Ctl, log, p.neutronEnv, serverBin, "--config-file", d+"/neutron.conf"); err != nil {
		return err
	}
	hc := p.HTTPClient(5 * time.Second)
	return waitFor(120*time.Second, "neutron-server ready", func() error {
		if !p.neutron.alive() {
			return fmt.Errorf("exited: %s", logTail(log))
		}
		resp, err := hc.Get(p.NeutronURL + "v2.0/networks?limit=1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// driverPath makes deploy/openstack loadable with no install: the package
// folder and a folder with a hand-made dist-info registering l2span_bottom
// (the pods) and l2span (the top).
func driverPath(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	pkg, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "openstack"))
	if err != nil {
		return "", err
	}
	di := filepath.Join(dir, "site", "networking_l2span-0.1.0.dist-info")
	if err := os.MkdirAll(di, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{
		"METADATA": "Metadata-Version: 2.1\nName: networking-l2span\nVersion: 0.1.0\n",
		"entry_points.txt": "[neutron.ml2.mechanism_drivers]\nl2span_bottom = networking_l2span.bottom_driver:L2spanBottomDriver\n" +
			"l2span = networking_l2span.mech_driver:L2spanMechanismDriver\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(di, name), []byte(data), 0o644); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "site") + ":" + pkg, nil
}

const agentConf = `[DEFAULT]
host = {{HOST}}
transport_url = rabbit://guest:guest@{{CTL}}:5672/
state_path = {{DIR}}
use_stderr = true
debug = false

[agent]
root_helper = env
polling_interval = 1

[linux_bridge]
physical_interface_mappings =

[vxlan]
enable_vxlan = true
local_ip = {{IP}}
l2_population = true

[securitygroup]
enable_security_group = false
firewall_driver = noop

[experimental]
linuxbridge = true

[oslo_concurrency]
lock_path = {{DIR}}/lock
`

// StartAgent starts the host's neutron-linuxbridge-agent (again).
func (p *Pod) StartAgent(h *Host) error {
	if err := os.MkdirAll(filepath.Join(h.dir, "lock"), 0o700); err != nil {
		return err
	}
	conf := strings.NewReplacer("{{HOST}}", h.Name, "{{CTL}}", p.CtlIP.String(), "{{DIR}}", h.dir, "{{IP}}", h.IP.String()).Replace(agentConf)
	if err := os.WriteFile(filepath.Join(h.dir, "agent.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	env := append(p.rig.env(), "HOME="+h.dir)
	var err error
	h.agent, err = start(h.NS, filepath.Join(h.dir, "agent.log"), env, agentBin, "--config-file", filepath.Join(h.dir, "agent.conf"))
	return err
}

// AgentLog is the end of the host's agent log.
func (h *Host) AgentLog() string { return logTail(filepath.Join(h.dir, "agent.log")) }

// NeutronLog is the end of the pod's neutron-server log.
func (p *Pod) NeutronLog() string { return logTail(filepath.Join(p.dir, "neutron-server.log")) }

// Agent is a row of Neutron's agent list.
type Agent struct {
	ID             string         `json:"id"`
	Host           string         `json:"host"`
	AgentType      string         `json:"agent_type"`
	Binary         string         `json:"binary"`
	Alive          bool           `json:"alive"`
	Configurations map[string]any `json:"configurations"`
}

// Agents lists the pod's Neutron agents.
func (p *Pod) Agents(ctx context.Context) ([]Agent, error) {
	var resp struct {
		Agents []Agent `json:"agents"`
	}
	_, err := p.Client().Get(ctx, p.Client().ServiceURL("agents"), &resp, nil)
	return resp.Agents, err
}

// WaitAgents waits until every compute host's agent is alive in Neutron.
func (p *Pod) WaitAgents(ctx context.Context, d time.Duration) error {
	return waitFor(d, p.ID+" agents alive", func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		as, err := p.Agents(ctx)
		if err != nil {
			return err
		}
		for _, h := range p.Hosts {
			ok := false
			for _, a := range as {
				ok = ok || a.Host == h.Name && a.Alive && a.Binary == "neutron-linuxbridge-agent"
			}
			if !ok {
				return fmt.Errorf("agent of %s not alive (%d agents): %s", h.Name, len(as), h.AgentLog())
			}
		}
		return nil
	})
}

// HTTPClient dials from inside the underlay namespace. All share one
// transport: Neutron's eventlet API worker serves at most ~100
// connections, and idle keep-alive ones count.
func (p *Pod) HTTPClient(timeout time.Duration) *http.Client {
	p.once.Do(func() {
		p.transport = &http.Transport{DialContext: p.rig.Underlay.Dial, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	})
	return &http.Client{Timeout: timeout, Transport: p.transport}
}

// Client is a noauth gophercloud network client of the pod's Neutron.
func (p *Pod) Client() *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: *p.HTTPClient(60 * time.Second)}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: p.NeutronURL, ResourceBase: p.NeutronURL + "v2.0/", Type: "network"}
}

// JSON is a decoded Neutron resource.
type JSON = map[string]any

// Ports lists the pod's ports matching query (e.g. "network_id=...").
func (p *Pod) Ports(ctx context.Context, query string) ([]JSON, error) {
	var resp struct {
		Ports []JSON `json:"ports"`
	}
	_, err := p.Client().Get(ctx, p.Client().ServiceURL("ports")+"?"+query, &resp, nil)
	return resp.Ports, err
}

// UpdatePort PUTs body as the port's new attributes.
func (p *Pod) UpdatePort(ctx context.Context, id string, body JSON) error {
	_, err := p.Client().Put(ctx, p.Client().ServiceURL("ports", id), JSON{"port": body}, nil, &gophercloud.RequestOpts{OkCodes: []int{200}})
	return err
}

// DeletePort deletes a port.
func (p *Pod) DeletePort(ctx context.Context, id string) error {
	_, err := p.Client().Delete(ctx, p.Client().ServiceURL("ports", id), nil)
	return err
}
