// Command l2span-agent runs on a gateway host: it programs the host's kernel
// VXLAN dataplane with the MACs and IPs of ports in other pods.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/l2span/l2span/agent"
	"github.com/l2span/l2span/agent/gossip"
	"github.com/l2span/l2span/bpf"
	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/flagfile"
	"github.com/l2span/l2span/internal/logging"
	"github.com/l2span/l2span/internal/macaddr"
	"github.com/l2span/l2span/internal/tlsfiles"
	"github.com/l2span/l2span/vtep"
	"github.com/l2span/l2span/vtep/evpn"
	"github.com/l2span/l2span/vtep/hwvtep"
	"github.com/l2span/l2span/vtep/linux"
)

type flags struct {
	pod, gatewayID                  string
	brainURL, tokenFile, caFile     string
	brainCert, brainKey             string
	gossipBind, gossipAdvertise     string
	gossipSeeds, gossipKeyFile      string
	probeInterval, probeTimeout     time.Duration
	hold                            time.Duration
	backend, ovsdbEndpoint          string
	physicalSwitch                  string
	ovsdbCert, ovsdbKey, ovsdbCA    string
	bpf                             bool
	bpfPinDir                       string
	suspicionMult                   int
	weight                          uint
	vtep, underlay, dvrMAC, localIf string
	vxlanPort                       uint
	mtu                             int
	populate                        bool
	resync                          time.Duration
	stateDir, metricsListen         string
	logFormat, logLevel             string
	checkConfig                     bool
	insecureGossip                  bool
	prefix                          string
	evpnFlags                       evpnFlags
	podSide                         podSideFlags
	podOpts                         linux.PodOptions
	evpn                            evpn.Options
	watchBuffer                     int
	fenceLease                      time.Duration
}

// parse reads the flags into the agent's configuration and the gossip
// configuration its membership starts with.
func parse(args []string) (*flags, agent.Config, gossip.Config, error) {
	f := &flags{}
	var cfg agent.Config
	var g gossip.Config
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("l2span-agent", flag.ContinueOnError)
	f.register(fs, host)
	f.podSide.register(fs)
	if err := flagfile.Parse(fs, args); err != nil {
		return nil, cfg, g, err
	}
	if f.pod == "" {
		return nil, cfg, g, errors.New("pod is required")
	}
	if f.gatewayID == "" {
		return nil, cfg, g, errors.New("gateway-id is required")
	}
	var err error
	if cfg.VTEP, err = netip.ParseAddr(f.vtep); err != nil {
		return nil, cfg, g, fmt.Errorf("vtep %q: not an IP address", f.vtep)
	}
	if f.dvrMAC != "" {
		if cfg.DVRMAC, err = macaddr.Parse(f.dvrMAC); err != nil {
			return nil, cfg, g, fmt.Errorf("dvr-mac %q: not a 48-bit MAC", f.dvrMAC)
		}
	}
	switch f.backend {
	case "linux":
	case "hwvtep":
		if f.physicalSwitch == "" {
			return nil, cfg, g, errors.New("physical-switch is required with backend hwvtep")
		}
		if (f.ovsdbCert == "") != (f.ovsdbKey == "") {
			return nil, cfg, g, errors.New("ovsdb-cert and ovsdb-key go together")
		}
	case "evpn":
	default:
		return nil, cfg, g, fmt.Errorf("backend %q: want linux, hwvtep or evpn", f.backend)
	}
	if f.vxlanPort == 0 || f.vxlanPort > 65535 {
		return nil, cfg, g, fmt.Errorf("vxlan-port %d: want 1-65535", f.vxlanPort)
	}
	if f.backend == "evpn" {
		if f.evpn, err = f.evpnFlags.options(cfg.VTEP); err != nil {
			return nil, cfg, g, err
		}
		if uint(f.evpn.FabricPort) == f.vxlanPort {
			return nil, cfg, g, fmt.Errorf("vxlan-port %d: the inter-pod overlay needs another UDP port than the fabric's (evpn-fabric-port)", f.vxlanPort)
		}
	}
	if f.weight == 0 || f.weight > 65535 {
		return nil, cfg, g, fmt.Errorf("weight %d: want 1-65535", f.weight)
	}
	if f.resync < time.Second {
		return nil, cfg, g, fmt.Errorf("resync-interval %s: want at least 1s", f.resync)
	}
	opts := []api.Option{}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, cfg, g, fmt.Errorf("brain-token-file: %w", err)
		}
		opts = append(opts, api.WithToken(strings.TrimSpace(string(b))))
	}
	if tlsCfg, err := brainTLS(f); err != nil {
		return nil, cfg, g, err
	} else if tlsCfg != nil {
		opts = append(opts, api.WithTLS(tlsCfg))
	}
	if cfg.Brain, err = api.NewClient(f.brainURL, opts...); err != nil {
		return nil, cfg, g, fmt.Errorf("brain-url: %w", err)
	}
	g = gossip.Config{NodeName: f.gatewayID, ProbeInterval: f.probeInterval, ProbeTimeout: f.probeTimeout, SuspicionMult: f.suspicionMult}
	if g.BindAddr, g.BindPort, err = hostPort(f.gossipBind); err != nil {
		return nil, cfg, g, fmt.Errorf("gossip-bind: %w", err)
	}
	if f.gossipAdvertise != "" {
		if g.AdvertiseAddr, g.AdvertisePort, err = hostPort(f.gossipAdvertise); err != nil {
			return nil, cfg, g, fmt.Errorf("gossip-advertise: %w", err)
		}
	} else {
		g.AdvertiseAddr, g.AdvertisePort = cfg.VTEP.String(), g.BindPort
	}
	for _, s := range strings.Split(f.gossipSeeds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			g.Seeds = append(g.Seeds, s)
		}
	}
	switch {
	case f.gossipKeyFile != "" && f.insecureGossip:
		return nil, cfg, g, errors.New("gossip-key-file and insecure-gossip exclude each other")
	case f.gossipKeyFile != "":
		if g.SecretKeys, err = agent.ReadKeyFile(f.gossipKeyFile); err != nil {
			return nil, cfg, g, fmt.Errorf("gossip-key-file: %w", err)
		}
	case !f.insecureGossip:
		return nil, cfg, g, errors.New("gossip-key-file is required: without a key any host that reaches the gossip port " +
			"joins the gateways' cluster (make one with `head -c 32 /dev/urandom | base64 > gossip.key`, the same file on every gateway); " +
			"--insecure-gossip runs without one")
	}
	if err := g.Validate(); err != nil {
		return nil, cfg, g, fmt.Errorf("gossip: %w", err)
	}
	log, err := logging.New(os.Stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, cfg, g, err
	}
	cfg.Pod, cfg.GatewayID, cfg.Weight, cfg.Backend = f.pod, f.gatewayID, uint16(f.weight), f.backend
	cfg.LocalInterface, cfg.PopulateMACs, cfg.Resync, cfg.Hold = f.localIf, f.populate, f.resync, f.hold
	if f.podOpts, err = f.podSide.options(f.backend); err != nil {
		return nil, cfg, g, err
	}
	cfg.PodSide = f.podOpts.VTEP.IsValid()
	if cfg.Hold <= 0 {
		cfg.Hold = g.ProbeInterval
	}
	cfg.StateDir, cfg.MetricsListen, cfg.Logger = f.stateDir, f.metricsListen, log
	cfg.InsecureGossip = f.insecureGossip
	g.Logger = log.With("component", "gossip")
	return f, cfg, g, nil
}

func hostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return h, port, nil
}

func main() {
	f, cfg, g, err := parse(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l2span-agent:", err)
		os.Exit(2)
	}
	if f.checkConfig {
		fmt.Println("configuration ok")
		return
	}
	if err := run(f, cfg, g); err != nil {
		cfg.Logger.Error("agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(f *flags, cfg agent.Config, gcfg gossip.Config) error {
	if err := agent.EnsureStateDir(cfg.StateDir); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var dp vtep.Dataplane
	var iso agent.Isolation
	switch f.backend {
	case "hwvtep":
		tlsCfg, err := ovsdbTLS(f)
		if err != nil {
			return err
		}
		b, err := hwvtep.New(ctx, hwvtep.Options{Endpoint: f.ovsdbEndpoint, TLS: tlsCfg, PhysicalSwitch: f.physicalSwitch,
			TunnelIP: cfg.VTEP, Logger: cfg.Logger.With("component", "hwvtep")})
		if err != nil {
			return fmt.Errorf("open hwvtep dataplane: %w", err)
		}
		dp = b
	case "evpn":
		b, err := openEVPN(ctx, f, cfg)
		if err != nil {
			return err
		}
		dp = b
	default:
		b, err := linux.New(linux.Options{LocalVTEP: cfg.VTEP, UnderlayDev: f.underlay, Port: uint16(f.vxlanPort),
			MTU: f.mtu, Prefix: f.prefix, Logger: cfg.Logger.With("component", "vtep"), Pod: f.podOpts})
		if err != nil {
			return fmt.Errorf("open linux dataplane: %w", err)
		}
		dp = b
		cfg.PodSideName = b.PodSideName
		if f.bpf {
			m, err := bpf.New(bpf.Options{PinDir: f.bpfPinDir, Logger: cfg.Logger.With("component", "bpf")})
			if err != nil {
				return fmt.Errorf("open ebpf programs (or run with -bpf=false): %w", err)
			}
			defer m.Close()
			iso = m
		}
	}
	defer dp.Close()
	if f.backend != "hwvtep" {
		cfg.KernelWatch = f.prefix
		cfg.KernelWatchBuffer = f.watchBuffer
		cfg.FenceLease = f.fenceLease
	}
	members, err := gossip.New(gcfg, cfg.GossipMeta())
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	defer members.Shutdown()
	a, err := agent.New(cfg, members, dp, iso)
	if err != nil {
		return err
	}
	if r, ok := dp.(interface {
		Register(prometheus.Registerer) error
	}); ok {
		if err := r.Register(a.Registry()); err != nil {
			return fmt.Errorf("register dataplane metrics: %w", err)
		}
	}
	// SIGHUP re-reads the gossip key file and rotates the keyring to it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if f.gossipKeyFile == "" {
				cfg.Logger.Warn("SIGHUP: no gossip-key-file to reload")
				continue
			}
			keys, err := agent.ReadKeyFile(f.gossipKeyFile)
			if err == nil {
				err = agent.RotateKeys(members, keys)
			}
			if err != nil {
				cfg.Logger.Error("SIGHUP: gossip keys not rotated", "err", err)
				continue
			}
			cfg.Logger.Info("SIGHUP: gossip keyring rotated", "keys", len(keys))
		}
	}()
	return a.Run(ctx)
}

func ovsdbTLS(f *flags) (*tls.Config, error) {
	if f.ovsdbCert == "" && f.ovsdbCA == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ovsdbCert != "" {
		cert, err := tls.LoadX509KeyPair(f.ovsdbCert, f.ovsdbKey)
		if err != nil {
			return nil, fmt.Errorf("ovsdb-cert/ovsdb-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.ovsdbCA != "" {
		pool, err := tlsfiles.CAPool(f.ovsdbCA)
		if err != nil {
			return nil, fmt.Errorf("ovsdb-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// register defines every flag of the agent on fs, into f; host is the
// default gateway id.
func (f *flags) register(fs *flag.FlagSet, host string) {
	fs.String("config", "", "config file of `key = value` lines (keys are these flag names)")
	fs.StringVar(&f.pod, "pod", "", "id of the pod this gateway serves (required)")
	fs.StringVar(&f.gatewayID, "gateway-id", host, "this gateway's id (gossip node name)")
	fs.StringVar(&f.brainURL, "brain-url", "http://127.0.0.1:9696", "brain API URL, or a comma-separated list of brain replicas (on failure the agent moves to the next and resumes its watch from its revision)")
	fs.StringVar(&f.tokenFile, "brain-token-file", "", "file holding the brain's bearer token")
	fs.StringVar(&f.caFile, "brain-ca-file", "", "CA bundle to verify an https brain")
	fs.StringVar(&f.brainCert, "brain-cert", "", "client certificate for an https brain that checks them (URI SAN l2span://pod/POD/gateway/ID)")
	fs.StringVar(&f.brainKey, "brain-key", "", "key of -brain-cert")
	fs.StringVar(&f.gossipBind, "gossip-bind", "0.0.0.0:7946", "HOST:PORT gossip listens on")
	fs.StringVar(&f.gossipAdvertise, "gossip-advertise", "", "HOST:PORT other gateways reach this one at (default: the VTEP IP and bind port)")
	fs.StringVar(&f.gossipSeeds, "gossip-seeds", "", "comma-separated HOST:PORT of gateways to join")
	fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "file of base64 gossip keys (16, 24 or 32 bytes), one per line, the first used to encrypt")
	fs.BoolVar(&f.insecureGossip, "insecure-gossip", false, "gossip in plain text without a key: any host reaching the gossip port can join (tests and demos only)")
	fs.DurationVar(&f.probeInterval, "gossip-probe-interval", gossip.DefaultProbeInterval, "failure detector probe interval")
	fs.DurationVar(&f.probeTimeout, "gossip-probe-timeout", gossip.DefaultProbeTimeout, "failure detector probe timeout")
	fs.IntVar(&f.suspicionMult, "gossip-suspicion-mult", gossip.DefaultSuspicionMult, "suspicion timeout multiplier")
	fs.DurationVar(&f.hold, "handover-hold", 0, "wait before taking a network over from a live gateway of this pod (0: the probe interval)")
	fs.UintVar(&f.weight, "weight", uint(gossip.DefaultWeight), "designated forwarder weight (share of networks this gateway forwards)")
	fs.StringVar(&f.backend, "backend", "linux", "dataplane: linux (kernel VXLAN), hwvtep (a switch's OVSDB hardware_vtep tables) or evpn (BGP EVPN to the pod's fabric)")
	f.evpnFlags.register(fs)
	fs.StringVar(&f.ovsdbEndpoint, "ovsdb-endpoint", "unix:/var/run/openvswitch/db.sock", "hwvtep: the switch's OVSDB server (unix:PATH, tcp:HOST:PORT, ssl:HOST:PORT)")
	fs.StringVar(&f.physicalSwitch, "physical-switch", "", "hwvtep: name of the switch's Physical_Switch row")
	fs.StringVar(&f.ovsdbCert, "ovsdb-cert", "", "hwvtep: client certificate for ssl: (with -ovsdb-key and -ovsdb-ca)")
	fs.StringVar(&f.ovsdbKey, "ovsdb-key", "", "hwvtep: client key for ssl:")
	fs.StringVar(&f.ovsdbCA, "ovsdb-ca", "", "hwvtep: CA of the OVSDB server for ssl:")
	fs.BoolVar(&f.bpf, "bpf", true, "linux: attach the eBPF DVR-rewrite and isolation programs to local interfaces")
	fs.StringVar(&f.bpfPinDir, "bpf-pin-dir", bpf.DefaultPinDir, "linux: bpffs directory for pinned maps and links (one per agent)")
	fs.StringVar(&f.vtep, "vtep", "", "this gateway's VTEP (tunnel source) IP (required)")
	fs.StringVar(&f.underlay, "underlay-dev", "", "device VXLAN leaves by (default: by route)")
	fs.UintVar(&f.vxlanPort, "vxlan-port", linux.DefaultPort, "VXLAN UDP port")
	fs.IntVar(&f.mtu, "mtu", 0, "MTU of the bridges and VXLAN devices (0: kernel default)")
	fs.StringVar(&f.prefix, "device-prefix", linux.DefaultPrefix, "prefix of the devices this agent owns")
	fs.StringVar(&f.dvrMAC, "dvr-mac", "", "this gateway host's DVR MAC registered in its local Neutron")
	fs.StringVar(&f.localIf, "local-interface", "", "template of the interface carrying a network's pod-local segment: {vni} {type} {id} {physnet}")
	fs.IntVar(&f.watchBuffer, "kernel-watch-buffer", 8<<20, "linux: receive buffer in bytes of the kernel neighbor watch (a bulk change notifies once per entry)")
	fs.DurationVar(&f.fenceLease, "fence-lease", 300*time.Millisecond, "linux+bpf: node-local lease the agent renews; when it lapses (agent dead or hung) while the pod has another gateway, this gateway's local ports drop all frames so the standby is the only forwarder (0: off)")
	fs.BoolVar(&f.populate, "populate-macs", true, "program remote MACs and IPs (false: flood-and-learn)")
	fs.DurationVar(&f.resync, "resync-interval", 30*time.Second, "full resync period that repairs drift")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/l2span-agent", "directory for the cached desired state (empty: no cache)")
	fs.StringVar(&f.metricsListen, "metrics-listen", "127.0.0.1:9697", "HOST:PORT for /metrics, /healthz, /readyz (empty: off)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate the configuration and exit")
}
