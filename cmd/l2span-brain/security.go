package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/httpapi"
	"github.com/l2span/l2span/brain/model"
	"github.com/l2span/l2span/internal/tlsfiles"
)

// security holds the flags that decide who may call the brain.
type security struct {
	insecureNoAuth    bool
	insecurePlaintext bool
	bootstrapFile     string
	clientCA          string
	requireClientCert bool
	metricsToken      bool
}

func (c *config) addSecurityFlags(fs *flag.FlagSet) {
	s := &c.sec
	fs.BoolVar(&s.insecureNoAuth, "insecure-no-auth", false, "serve every request as admin with no credential (throwaway labs only; logged and shown in /healthz)")
	fs.BoolVar(&s.insecurePlaintext, "insecure-plaintext", false, "allow a non-loopback listen address without TLS")
	fs.StringVar(&s.bootstrapFile, "bootstrap-token-file", "", "if the store holds no usable admin token, create one and write it to `FILE` (mode 0600)")
	fs.StringVar(&s.clientCA, "client-ca-file", "", "CA bundle that signs client certificates (agents: URI SAN l2span://pod/POD/gateway/ID); needs -tls-cert")
	fs.BoolVar(&s.requireClientCert, "require-client-cert", false, "refuse TLS clients without a certificate from -client-ca-file (else a certificate is optional and a token suffices)")
	fs.BoolVar(&s.metricsToken, "metrics-require-token", false, "require a credential (any role) on GET /metrics")
}

// checkSecurity refuses what the flags alone show to be unsafe.
func (c *config) checkSecurity() error {
	s := c.sec
	if s.clientCA != "" && c.tlsCert == "" {
		return errors.New("client-ca-file needs tls-cert and tls-key: client certificates are checked in the TLS handshake")
	}
	if s.requireClientCert && s.clientCA == "" {
		return errors.New("require-client-cert needs client-ca-file")
	}
	if c.tlsCert == "" && !s.insecurePlaintext && !loopback(c.listen) {
		return fmt.Errorf("listen %s is not a loopback address and no tls-cert is given: tokens would cross the network in clear; give -tls-cert/-tls-key, or -insecure-plaintext if the network is private", c.listen)
	}
	if s.insecureNoAuth && (c.token != "" || s.bootstrapFile != "" || s.clientCA != "") {
		return errors.New("insecure-no-auth turns authentication off; it cannot go with token-file, bootstrap-token-file or client-ca-file")
	}
	return nil
}

func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authOptions bootstraps the first admin token if asked and checks that some
// credential can reach the brain at all.
func authOptions(ctx context.Context, c *config, svc *brain.Service, log *slog.Logger) (httpapi.AuthOptions, error) {
	opts := httpapi.AuthOptions{Insecure: c.sec.insecureNoAuth, Metrics: c.sec.metricsToken}
	if c.sec.insecureNoAuth {
		log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches the API is admin")
		return opts, nil
	}
	if c.token != "" {
		opts.Legacy = []string{c.token}
		log.Info("accepting the legacy shared token of --token-file as admin; issue per-role tokens with l2spanctl token create")
	}
	if c.sec.bootstrapFile != "" {
		if err := bootstrap(ctx, c.sec.bootstrapFile, svc, log); err != nil {
			return opts, fmt.Errorf("bootstrap-token-file: %w", err)
		}
	}
	n, err := svc.CountUsableTokens(ctx, "")
	if err != nil {
		return opts, err
	}
	if n == 0 && c.token == "" && c.sec.clientCA == "" {
		return opts, errors.New("no credential configured: the store holds no usable token and neither --token-file nor --client-ca-file is given; " +
			"start with --bootstrap-token-file FILE to create the first admin token (or --insecure-no-auth for a throwaway lab)")
	}
	return opts, nil
}

func bootstrap(ctx context.Context, path string, svc *brain.Service, log *slog.Logger) error {
	n, err := svc.CountUsableTokens(ctx, model.RoleAdmin)
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("bootstrap token not created: the store already holds a usable admin token", "file", path)
		return nil
	}
	k, secret, err := svc.CreateToken(ctx, brain.TokenSpec{Role: model.RoleAdmin, Description: "bootstrap"})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".l2span-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	log.Warn("bootstrap admin token created; keep the file secret, issue per-role tokens with it and revoke it when done", "id", k.ID, "file", path)
	return nil
}

// serverTLS is the TLS configuration of the API (nil: plain HTTP).
func serverTLS(c *config) (*tls.Config, error) {
	if c.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("tls-cert: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.sec.clientCA != "" {
		if cfg.ClientCAs, err = tlsfiles.CAPool(c.sec.clientCA); err != nil {
			return nil, fmt.Errorf("client-ca-file: %w", err)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if c.sec.requireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
