package main

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
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/api"
)

// runBrain runs the binary to its exit (it must refuse to start).
func runBrain(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, brainBinary(t), args...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestBrainRefusesInsecureStart: no credential at all, or a network listen
// in clear text, and the brain does not start, saying why.
func TestBrainRefusesInsecureStart(t *testing.T) {
	dir := t.TempDir()
	st := "sqlite://" + filepath.Join(dir, "b.db")
	out, code := runBrain(t, "--listen", freeAddr(t), "--store", st)
	if code != 1 || !strings.Contains(out, "no credential configured") || !strings.Contains(out, "--bootstrap-token-file") {
		t.Errorf("no credential: exit %d\n%s", code, out)
	}
	out, code = runBrain(t, "--listen", "0.0.0.0:0", "--store", st, "--bootstrap-token-file", filepath.Join(dir, "t"))
	if code != 2 || !strings.Contains(out, "not a loopback address and no tls-cert") || !strings.Contains(out, "-insecure-plaintext") {
		t.Errorf("0.0.0.0 in clear: exit %d\n%s", code, out)
	}
	out, code = runBrain(t, "--listen", "[::]:0", "--store", st, "--insecure-no-auth")
	if code != 2 || !strings.Contains(out, "not a loopback address") {
		t.Errorf(":: in clear: exit %d\n%s", code, out)
	}
	legacy := filepath.Join(dir, "legacy.token")
	if err := os.WriteFile(legacy, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = runBrain(t, "--listen", freeAddr(t), "--store", st, "--insecure-no-auth", "--token-file", legacy)
	if code != 2 || !strings.Contains(out, "insecure-no-auth") {
		t.Errorf("no-auth with a token file: exit %d\n%s", code, out)
	}
	out, code = runBrain(t, "--listen", freeAddr(t), "--store", st, "--client-ca-file", filepath.Join(dir, "ca.pem"))
	if code != 2 || !strings.Contains(out, "client-ca-file needs tls-cert") {
		t.Errorf("client CA without TLS: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "t")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start wrote a token: %v", err)
	}
}

// TestBrainInsecureNoAuth: the flag serves everyone as admin, warns in the
// log and in /healthz.
func TestBrainInsecureNoAuth(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "brain.log")
	p := startBrainProc(t, "sqlite://"+filepath.Join(dir, "b.db"), logPath, "--insecure-no-auth", "--log-level", "info")
	resp, err := http.Get(p.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if !strings.Contains(h["warning"], "--insecure-no-auth") {
		t.Errorf("healthz: %v", h)
	}
	if !strings.Contains(readLog(logPath), "level=WARN msg=\"AUTHENTICATION IS OFF") {
		t.Errorf("no warning in the log:\n%s", readLog(logPath))
	}
	anon, _ := api.NewClient(p.url)
	if _, err := anon.CreatePod(context.Background(), api.Pod{ID: "pod1", AZ: "az1"}); err != nil {
		t.Errorf("no-auth write: %v", err)
	}
}

// pki is a throwaway CA for the tests.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, cert: cert, key: key}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes NAME.pem and NAME.key signed by the CA.
func (p *pki) issue(t *testing.T, name string, server bool, uris ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func tlsClient(t *testing.T, url, caFile, cert, key, token string) *api.Client {
	t.Helper()
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: pool}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		// Sent whatever CAs the brain asks for, so that the brain (not
		// the client's choice) is what refuses a foreign certificate.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	opts := []api.Option{api.WithTLS(cfg), api.WithTimeout(10 * time.Second)}
	if token != "" {
		opts = append(opts, api.WithToken(token))
	}
	c, err := api.NewClient(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBrainClientCertificates: an agent's certificate names its pod and
// gateway; it reads its own pod, not another (403), registers only itself
// (403); a certificate from another CA fails the handshake, and with
// --require-client-cert so does none at all (a token is not enough).
func TestBrainClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	rogue := newPKI(t, dir, "rogue-ca")
	srvCert, srvKey := ca.issue(t, "brain", true)
	agentCert, agentKey := ca.issue(t, "pod1-gw1", false, "l2span://pod/pod1/gateway/gw1")
	rogueCert, rogueKey := rogue.issue(t, "pod2-gw2", false, "l2span://pod/pod2/gateway/gw2")
	plainCert, plainKey := ca.issue(t, "nobody", false)
	caFile := filepath.Join(dir, "ca.pem")
	ctx := context.Background()
	for _, require := range []bool{false, true} {
		sub := filepath.Join(dir, map[bool]string{false: "optional", true: "required"}[require])
		os.Mkdir(sub, 0o700)
		args := []string{"--tls-cert", srvCert, "--tls-key", srvKey, "--client-ca-file", caFile}
		if require {
			args = append(args, "--require-client-cert")
		}
		p := startBrainProcTLS(t, "sqlite://"+filepath.Join(sub, "b.db"), filepath.Join(sub, "brain.log"), caFile, agentCert, agentKey, args...)
		url := strings.Replace(p.url, "http://", "https://", 1)
		admin := tlsClient(t, url, caFile, agentCert, agentKey, p.token)
		if id, err := admin.WhoAmI(ctx); err != nil || id.Role != "admin" {
			t.Fatalf("admin token over a client certificate: %+v %v", id, err)
		}
		for _, pod := range []string{"pod1", "pod2"} {
			if _, err := admin.CreatePod(ctx, api.Pod{ID: pod, AZ: "az-" + pod}); err != nil {
				t.Fatal(err)
			}
		}
		agent := tlsClient(t, url, caFile, agentCert, agentKey, "")
		if id, err := agent.WhoAmI(ctx); err != nil || id.Role != "agent" || id.PodID != "pod1" || id.GatewayID != "gw1" || id.Credential != "cert:pod1-gw1" {
			t.Fatalf("agent certificate: %+v %v", id, err)
		}
		if _, err := agent.PodState(ctx, "pod1"); err != nil {
			t.Errorf("agent reads its pod: %v", err)
		}
		if _, err := agent.PodState(ctx, "pod2"); !api.IsStatus(err, 403) {
			t.Errorf("agent reads another pod: %v", err)
		}
		if _, err := agent.RegisterGateway(ctx, api.Gateway{ID: "gw1", PodID: "pod1", VTEP: "198.51.100.1", Backend: "linux"}); err != nil {
			t.Errorf("agent registers itself: %v", err)
		}
		if _, err := agent.RegisterGateway(ctx, api.Gateway{ID: "gw2", PodID: "pod2", VTEP: "198.51.100.2", Backend: "linux"}); !api.IsStatus(err, 403) {
			t.Errorf("agent registers as another gateway: %v", err)
		}
		if _, err := agent.RegisterGateway(ctx, api.Gateway{ID: "gw1", PodID: "pod2", VTEP: "198.51.100.1", Backend: "linux"}); !api.IsStatus(err, 403) {
			t.Errorf("agent registers in another pod: %v", err)
		}
		if _, err := tlsClient(t, url, caFile, plainCert, plainKey, "").ListPods(ctx, api.ListOptions{}); !api.IsStatus(err, 401) {
			t.Errorf("certificate without an l2span identity: %v", err)
		}
		_, err := tlsClient(t, url, caFile, rogueCert, rogueKey, "").ListPods(ctx, api.ListOptions{})
		if err == nil || api.IsStatus(err, 200) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("certificate of another CA: %v", err)
		}
		_, err = tlsClient(t, url, caFile, "", "", p.token).ListPods(ctx, api.ListOptions{})
		if require && (err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("no client certificate with --require-client-cert: %v", err)
		}
		if !require && err != nil {
			t.Errorf("token without a client certificate: %v", err)
		}
	}
}

// startBrainProcTLS is startBrainProc for a brain serving HTTPS: ready is
// judged over TLS with the CA.
func startBrainProcTLS(t *testing.T, storeURL, logPath, caFile, cert, key string, extra ...string) *brainProc {
	t.Helper()
	tlsReady = &tlsProbe{ca: caFile, cert: cert, key: key}
	defer func() { tlsReady = nil }()
	return startBrainProc(t, storeURL, logPath, extra...)
}

// tlsProbe is how waitReady reaches a brain serving HTTPS (set only while a
// TLS brain starts; the tests of this package do not run in parallel).
type tlsProbe struct{ ca, cert, key string }

var tlsReady *tlsProbe

func (p *tlsProbe) config() *tls.Config {
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(p.ca)
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: pool}
	if c, err := tls.LoadX509KeyPair(p.cert, p.key); err == nil {
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}
