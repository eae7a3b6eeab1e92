package collector

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// serve runs e's collector on its own listener until the returned stop.
func (e *env) serve(cfg Config) (addr string, stop func() error) {
	e.t.Helper()
	srv := NewServer(cfg, e.c, e.producer.Flush, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	addr, err := srv.Addr(actx)
	if err != nil {
		cancel()
		e.t.Fatalf("collector did not listen: %v (%v)", err, <-done)
	}
	return addr, func() error { cancel(); return <-done }
}

func postTo(t *testing.T, cl *http.Client, url, body string) (int, string) {
	t.Helper()
	rq, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	rq.Header.Set("Content-Type", "application/json")
	rq.Header.Set("Authorization", "Bearer "+srvKey)
	resp, err := cl.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServerPlainAndTLS: the collector serves on its own listener, over
// HTTPS when given a key pair, and stops cleanly.
func TestServerPlainAndTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	tests := []struct {
		name string
		tls  bool
	}{{"http", false}, {"https", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			cfg := e.cfg
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
			scheme := "http"
			if tt.tls {
				cfg.TLSCertFile, cfg.TLSKeyFile, scheme = certFile, keyFile, "https"
				cl.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			}
			addr, stop := e.serve(cfg)
			code, body := postTo(t, cl, scheme+"://"+addr+Path, batch(rawEvent("e1")))
			var a answer
			if code != 200 || json.Unmarshal([]byte(body), &a) != nil || a.Accepted != 1 {
				t.Errorf("%d %s", code, body)
			}
			cl.CloseIdleConnections()
			if err := stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// TestShutdownFinishesRequestsInFlight: on shutdown a request waiting for
// Kafka's acks is still answered 200 once they come, before Run returns.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	e := newEnv(t, nil)
	addr, stop := e.serve(e.cfg)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer cl.CloseIdleConnections()
	if code, body := postTo(t, cl, "http://"+addr+Path, batch(rawEvent("warm"))); code != 200 {
		t.Fatalf("warm-up %d %s", code, body)
	}
	stalled, release := make(chan struct{}), make(chan struct{})
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		close(stalled)
		e.cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	answered := make(chan int, 1)
	go func() {
		code, _ := postTo(t, cl, "http://"+addr+Path, batch(rawEvent("inflight")))
		answered <- code
	}()
	<-stalled
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned with a request in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if code := <-answered; code != 200 {
		t.Errorf("request in flight at shutdown: %d, want 200", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := len(e.consume(outTopic, 2)); n != 2 {
		t.Errorf("%d events landed, want 2", n)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "collector-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
