// Package tlsfiles loads the PEM files that l2span's TLS flags name.
package tlsfiles

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool reads a PEM bundle of CA certificates. A file with no certificate in
// it is an error: trusting nothing would fail every handshake later with a
// less helpful message.
func CAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificates", path)
	}
	return pool, nil
}
