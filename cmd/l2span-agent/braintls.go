package main

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/l2span/l2span/internal/tlsfiles"
)

// brainTLS is the TLS configuration toward an https brain: the CA that
// signs the brain's certificate and this agent's client certificate, which
// names its pod and gateway (nil when neither is given).
func brainTLS(f *flags) (*tls.Config, error) {
	if (f.brainCert == "") != (f.brainKey == "") {
		return nil, errors.New("brain-cert and brain-key go together")
	}
	if f.caFile == "" && f.brainCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caFile != "" {
		pool, err := tlsfiles.CAPool(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("brain-ca-file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if f.brainCert != "" {
		cert, err := tls.LoadX509KeyPair(f.brainCert, f.brainKey)
		if err != nil {
			return nil, fmt.Errorf("brain-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
