package hwvtep

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/ovsdb"
	"github.com/l2span/l2span/test/freeport"
	"github.com/l2span/l2span/test/ovsdbtest"
)

// testPKI is a CA and certificates it signed, as PEM files in a directory.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
	pool   *x509.CertPool
}

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CAFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for name (and IP, for a server) and returns
// the certificate and key files.
func (p *testPKI) issue(t *testing.T, name string, ip net.IP, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestTCPAndSSLEndpoints programs the switch over tcp: and over ssl: with
// a client certificate, and checks that ssl: refuses to work without a
// client certificate or with a server the CA did not sign.
func TestTCPAndSSLEndpoints(t *testing.T) {
	pki := newPKI(t, "switch")
	srvCert, srvKey := pki.issue(t, "ovsdb-server", net.IPv4(127, 0, 0, 1), x509.ExtKeyUsageServerAuth)
	cliCertFile, cliKeyFile := pki.issue(t, "l2span-agent", nil, x509.ExtKeyUsageClientAuth)
	tcpPort, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	sslPort, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	srv := ovsdbtest.StartWith(t, ovsdbtest.VTEPSchema,
		fmt.Sprintf("--remote=ptcp:%d:127.0.0.1", tcpPort),
		fmt.Sprintf("--remote=pssl:%d:127.0.0.1", sslPort),
		"--private-key="+srvKey, "--certificate="+srvCert, "--ca-cert="+pki.CAFile)

	clientCert, err := tls.LoadX509KeyPair(cliCertFile, cliKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(t *testing.T, endpoint string, tlsConf *tls.Config, wait time.Duration) (*Backend, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		b, err := New(ctx, Options{Endpoint: endpoint, TLS: tlsConf, PhysicalSwitch: "sw0", TunnelIP: self, Logger: testLogger(t)})
		if err == nil {
			t.Cleanup(func() { b.Close() })
		}
		return b, err
	}
	sslEndpoint := fmt.Sprintf("ssl:127.0.0.1:%d", sslPort)

	t.Run("tcp", func(t *testing.T) {
		b, err := connect(t, fmt.Sprintf("tcp:127.0.0.1:%d", tcpPort), nil, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		set(t, b, baseConfig())
		checkView(t, srv, baseView...)
	})
	t.Run("ssl with client certificate", func(t *testing.T) {
		b, err := connect(t, sslEndpoint, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pki.pool}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The database already holds baseConfig: nothing to write, and
		// a change goes through.
		if res := set(t, b, baseConfig()); res.Added.MACs != 0 || res.Removed.MACs != 0 {
			t.Errorf("second client found work: %+v", res)
		}
		cfg := baseConfig()
		cfg.Networks[0].MACs = cfg.Networks[0].MACs[:2]
		if res := set(t, b, cfg); res.Removed.MACs != 1 {
			t.Errorf("removed %d MACs, want 1", res.Removed.MACs)
		}
		if rows := dump(t, srv, "Ucast_Macs_Remote"); len(rows) != 2 {
			t.Errorf("%d Ucast_Macs_Remote rows, want 2", len(rows))
		}
	})
	t.Run("ssl without client certificate", func(t *testing.T) {
		_, err := connect(t, sslEndpoint, &tls.Config{RootCAs: pki.pool}, 2*time.Second)
		// The server's refusal ("tls: certificate required") arrives as an
		// alert on the first read, or as the connection closing under it.
		if !errors.Is(err, ovsdb.ErrNotConnected) {
			t.Fatalf("connected without a client certificate: %v", err)
		}
	})
	t.Run("ssl with an unknown server CA", func(t *testing.T) {
		other := newPKI(t, "other")
		_, err := connect(t, sslEndpoint, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: other.pool}, 2*time.Second)
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("connected to a server the CA did not sign, or a vague error: %v", err)
		}
	})
	t.Run("ssl without TLS config", func(t *testing.T) {
		_, err := connect(t, sslEndpoint, nil, time.Second)
		if err == nil || !strings.Contains(err.Error(), "ssl needs a TLS config") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestSchemaWithoutAColumnIsNamed serves a hardware_vtep schema whose
// Logical_Switch lacks other_config (where ownership is recorded): the
// backend must refuse it and say which column is missing.
func TestSchemaWithoutAColumnIsNamed(t *testing.T) {
	raw, err := os.ReadFile(ovsdbtest.VTEPSchema)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	cols := schema["tables"].(map[string]any)["Logical_Switch"].(map[string]any)["columns"].(map[string]any)
	delete(cols, "other_config")
	old, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vtep-without-other-config.ovsschema")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ovsdbtest.Start(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := New(ctx, Options{Endpoint: srv.Endpoint(), PhysicalSwitch: "sw0", Logger: testLogger(t)})
	if err == nil {
		b.Close()
		t.Fatal("connected to a database that cannot record ownership")
	}
	if !strings.Contains(err.Error(), "other_config") || !strings.Contains(err.Error(), "does not exist in schema") {
		t.Fatalf("error does not name the missing column: %v", err)
	}
}
