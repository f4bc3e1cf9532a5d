package evpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// listenSpeaker starts a GoBGP server, with no BGP configured yet, whose
// gRPC API listens on the unix socket sock (its directory made 0700,
// a stale socket of a killed process removed first), and waits until the
// socket is there.
func listenSpeaker(sock string, log *slog.Logger) (*server.BgpServer, error) {
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return nil, fmt.Errorf("gobgp socket dir: %w", err)
	}
	// A socket left by a killed process would make GoBGP's listen fail (fatally).
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale gobgp socket: %w", err)
	}
	srv := server.NewBgpServer(server.GrpcListenAddress("unix://"+sock), server.LoggerOption(&slogAdapter{l: log.With("component", "gobgp")}))
	go srv.Serve()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return srv, nil
		}
		if time.Now().After(deadline) {
			srv.Stop()
			return nil, errors.New("gobgp api socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ServeSpeaker is l2span-bgpd: a GoBGP speaker with nothing configured,
// for an agent to drive over the unix socket sock, so that the BGP
// sessions outlive the agent's restarts. It returns when ctx ends and
// leaves the sessions to end with the process: a TCP close without a
// NOTIFICATION, which a graceful-restart helper treats as a restart.
func ServeSpeaker(ctx context.Context, sock string, log *slog.Logger) error {
	if _, err := listenSpeaker(sock, log); err != nil {
		return err
	}
	log.Info("bgp speaker serving", "socket", sock)
	<-ctx.Done()
	return nil
}

// slogAdapter is GoBGP's logger over slog.
type slogAdapter struct {
	l     *slog.Logger
	level gobgplog.LogLevel
}

func fieldsOf(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (a *slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.l.Error(msg, fieldsOf(f)...)
	panic(msg)
}

// Fatal is what GoBGP calls when its API socket cannot listen; the
// backend removed a stale one first, so this is a real fault.
func (a *slogAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.l.Error("gobgp fatal: "+msg, fieldsOf(f)...)
	os.Exit(1)
}
func (a *slogAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(msg, fieldsOf(f)...) }
func (a *slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Warn(msg, fieldsOf(f)...) }
func (a *slogAdapter) Info(msg string, f gobgplog.Fields)  { a.l.Info(msg, fieldsOf(f)...) }
func (a *slogAdapter) Debug(msg string, f gobgplog.Fields) {
	if a.level >= gobgplog.DebugLevel {
		a.l.Debug(msg, fieldsOf(f)...)
	}
}
func (a *slogAdapter) SetLevel(level gobgplog.LogLevel) { a.level = level }
func (a *slogAdapter) GetLevel() gobgplog.LogLevel      { return a.level }
