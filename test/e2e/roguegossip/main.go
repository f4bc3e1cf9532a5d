// Command roguegossip is a stranger on the gateways' underlay for the e2e
// tests: a memberlist node that announces whatever gateway it is told to
// be (pod, gateway id, VTEP, weight), with no key, a wrong key or the
// right one, and keeps trying to join until it is stopped.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/l2span/l2span/agent"
	"github.com/l2span/l2span/agent/gossip"
)

func main() {
	var bind, seed, keyFile, name, pod, gw, vtep string
	var weight uint
	flag.StringVar(&bind, "bind", "", "IP:PORT to listen on")
	flag.StringVar(&seed, "seed", "", "IP:PORT of a gateway to join")
	flag.StringVar(&keyFile, "key-file", "", "gossip key file (none: plain text)")
	flag.StringVar(&name, "name", "", "memberlist node name")
	flag.StringVar(&pod, "pod", "", "pod to claim")
	flag.StringVar(&gw, "gateway-id", "", "gateway id to claim")
	flag.StringVar(&vtep, "vtep", "", "VTEP to claim")
	flag.UintVar(&weight, "weight", 65535, "forwarder weight to claim")
	flag.Parse()
	if err := run(bind, seed, keyFile, name, pod, gw, vtep, uint16(weight)); err != nil {
		fmt.Fprintln(os.Stderr, "roguegossip:", err)
		os.Exit(1)
	}
}

func run(bind, seed, keyFile, name, pod, gw, vtep string, weight uint16) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("bind port: %w", err)
	}
	cfg := gossip.Config{NodeName: name, BindAddr: host, BindPort: p, AdvertiseAddr: host, Seeds: []string{seed}, Logger: log}
	if keyFile != "" {
		if cfg.SecretKeys, err = agent.ReadKeyFile(keyFile); err != nil {
			return err
		}
	}
	addr, err := netip.ParseAddr(vtep)
	if err != nil {
		return fmt.Errorf("vtep: %w", err)
	}
	g, err := gossip.New(cfg, gossip.Meta{Pod: pod, GatewayID: gw, VTEP: addr, Backend: gossip.BackendLinux, Healthy: true, Weight: weight})
	if err != nil {
		return err
	}
	defer g.Shutdown()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := g.Join(ctx); err != nil {
		log.Info("rogue: never joined", "err", err)
		return nil
	}
	log.Info("rogue: joined", "members", len(g.Members()))
	<-ctx.Done()
	return nil
}
