// Command l2span-brain serves the l2span API over its store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/brain/jobs"
	"github.com/l2span/l2span/brain/store"
	"github.com/l2span/l2span/internal/flagfile"
	"github.com/l2span/l2span/internal/logging"
	"github.com/l2span/l2span/internal/sdnotify"
)

type config struct {
	listen       string
	store        string
	vlanRanges   string
	vniRanges    string
	tokenFile    string
	tlsCert      string
	tlsKey       string
	poll         time.Duration
	keepChanges  int64
	bottomConfig string
	jobWorkers   int
	resync       time.Duration
	logFormat    string
	logLevel     string
	checkConfig  bool
	backupTo     string

	brain    brain.Config
	bottom   jobs.Config
	limits   httpapi.Limits
	timeouts httpapi.Timeouts
	token    string
	sec      security
}

func parseConfig(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("l2span-brain", flag.ContinueOnError)
	fs.String("config", "", "config file of `key = value` lines (keys are these flag names)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9696", "HOST:PORT to serve the API on")
	fs.StringVar(&c.store, "store", "sqlite:///var/lib/l2span/brain.db", "store URL: sqlite:///abs/path.db or postgres://...")
	fs.StringVar(&c.vlanRanges, "vlan-ranges", "", "comma-separated physnet:min:max VLAN ranges for shared_vlan networks")
	fs.StringVar(&c.vniRanges, "vni-ranges", "1000:999999", "comma-separated min:max VNI ranges for shared_vxlan and mixed_vlan_vxlan networks")
	fs.IntVar(&c.brain.DupMoves, "dup-moves", 5, "moves of a MAC between pods within dup-window that freeze it as a duplicate")
	fs.DurationVar(&c.brain.DupWindow, "dup-window", 180*time.Second, "window of duplicate-MAC detection")
	fs.StringVar(&c.tokenFile, "token-file", "", "legacy: file holding one shared bearer token, accepted as admin (prefer issued tokens: l2spanctl token create)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (with -tls-key: serve HTTPS)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS key file")
	fs.DurationVar(&c.poll, "poll-interval", time.Second, "how often to look for changes made by other brain replicas (PostgreSQL tells at once by LISTEN/NOTIFY; this is the fallback)")
	fs.Int64Var(&c.keepChanges, "keep-changes", 100000, "revisions of change log kept for watchers that reconnect")
	fs.StringVar(&c.bottomConfig, "bottom-config", "", "JSON file of per-pod Neutron endpoints and credentials; set, the brain creates and deletes the bottom networks, subnets and ports as jobs")
	fs.IntVar(&c.jobWorkers, "job-workers", 4, "jobs run at once by this brain")
	fs.DurationVar(&c.resync, "bottom-resync", time.Minute, "how often every network's sync job runs again in each pod, to repair and read back what changed in the pod's Neutron (0: only on changes)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.checkConfig, "check-config", false, "validate the configuration and exit")
	c.addSecurityFlags(fs)
	fs.StringVar(&c.backupTo, "backup-to", "", "write a consistent copy of the SQLite store to `FILE` and exit (safe while a brain serves it)")
	limitFlags(fs, &c.limits, &c.timeouts)
	if err := flagfile.Parse(fs, args); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return nil, fmt.Errorf("listen %q: %w", c.listen, err)
	}
	if !strings.HasPrefix(c.store, "sqlite:") && !strings.HasPrefix(c.store, "postgres") {
		return nil, fmt.Errorf("store %q: want sqlite:///abs/path.db or postgres://", c.store)
	}
	for _, r := range splitList(c.vlanRanges) {
		v, err := brain.ParseVLANRange(r)
		if err != nil {
			return nil, fmt.Errorf("vlan-ranges: %w", err)
		}
		c.brain.VLANRanges = append(c.brain.VLANRanges, v)
	}
	for _, r := range splitList(c.vniRanges) {
		v, err := brain.ParseVNIRange(r)
		if err != nil {
			return nil, fmt.Errorf("vni-ranges: %w", err)
		}
		c.brain.VNIRanges = append(c.brain.VNIRanges, v)
	}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
		if c.token == "" {
			return nil, fmt.Errorf("token-file %s is empty", c.tokenFile)
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, errors.New("tls-cert and tls-key go together")
	}
	if err := c.checkSecurity(); err != nil {
		return nil, err
	}
	if c.brain.DupMoves < 2 {
		return nil, fmt.Errorf("dup-moves %d: want at least 2", c.brain.DupMoves)
	}
	if c.brain.DupWindow <= 0 {
		return nil, fmt.Errorf("dup-window %s must be positive", c.brain.DupWindow)
	}
	if c.bottomConfig != "" {
		var err error
		if c.bottom, err = jobs.LoadConfig(c.bottomConfig); err != nil {
			return nil, fmt.Errorf("bottom-config: %w", err)
		}
		c.brain.BottomJobs = true
	}
	if c.jobWorkers < 1 {
		return nil, fmt.Errorf("job-workers %d: want at least 1", c.jobWorkers)
	}
	if c.poll <= 0 {
		return nil, fmt.Errorf("poll-interval %s must be positive", c.poll)
	}
	if err := checkLimits(c.limits, c.timeouts); err != nil {
		return nil, err
	}
	if _, err := logging.New(os.Stderr, c.logFormat, c.logLevel); err != nil {
		return nil, err
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func main() {
	c, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l2span-brain:", err)
		os.Exit(2)
	}
	if c.checkConfig {
		fmt.Println("configuration ok")
		return
	}
	if c.backupTo != "" {
		if err := backup(c); err != nil {
			fmt.Fprintln(os.Stderr, "l2span-brain:", err)
			os.Exit(1)
		}
		fmt.Println("backup written to", c.backupTo)
		return
	}
	log, _ := logging.New(os.Stderr, c.logFormat, c.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		log.Error("brain stopped", "err", err)
		os.Exit(1)
	}
}

func backup(c *config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, c.store)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Backup(ctx, c.backupTo)
}

func run(ctx context.Context, c *config, log *slog.Logger) error {
	st, err := store.Open(ctx, c.store)
	if err != nil {
		return err
	}
	defer st.Close()
	var hub *brain.Hub
	var pool *jobs.Pool
	svc := brain.NewService(st, c.brain, func(rev int64) {
		hub.Notify(rev)
		if pool != nil {
			pool.Wake()
		}
	})
	// The group commit outlives the signal: requests still in flight while
	// the server shuts down commit; Close (deferred) stops it after that.
	svc.Start(context.WithoutCancel(ctx))
	defer svc.Close()
	hub = brain.NewHub(svc, c.poll, log)
	if c.brain.BottomJobs {
		pool = jobs.New(st, map[string]jobs.Handler{brain.JobNetworkSync: jobs.NetworkSync{Svc: svc, Bottoms: jobs.NewClients(c.bottom)}},
			jobs.Options{Workers: c.jobWorkers, Logger: log.With("component", "jobs")})
	}
	rev, err := svc.Revision(ctx)
	if err != nil {
		return err
	}
	hub.Notify(rev)
	auth, err := authOptions(ctx, c, svc, log)
	if err != nil {
		return err
	}
	tlsCfg, err := serverTLS(c)
	if err != nil {
		return err
	}
	api := httpapi.New(svc, hub, httpapi.Options{Logger: log, Auth: auth, Limits: &c.limits})
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.listen, err)
	}
	srv := httpapi.NewHTTPServer(api, c.timeouts)
	srv.TLSConfig = tlsCfg
	hubCtx, cancelHub := context.WithCancel(ctx)
	defer cancelHub()
	go hub.Run(hubCtx, c.keepChanges)
	go brain.ListenRevisions(hubCtx, svc, hub)
	if pool != nil {
		go func() {
			if err := pool.Run(hubCtx); err != nil && hubCtx.Err() == nil {
				log.Error("job pool stopped", "err", err)
			}
		}()
		go jobs.Resync(hubCtx, svc, c.resync, pool.Wake, log.With("component", "jobs"))
	}
	errc := make(chan error, 1)
	go func() {
		if c.tlsCert != "" {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("brain serving", "listen", ln.Addr().String(), "store", st.Kind(), "revision", rev)
	sdnotify.Ready()
	stopWatchdog := sdnotify.StartWatchdog(ctx, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := svc.Revision(cctx)
		return err
	})
	defer stopWatchdog()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sdnotify.Stopping()
	log.Info("brain shutting down")
	cancelHub()
	// Watch streams never end by themselves: give plain requests a moment,
	// then close what is left.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	return nil
}
