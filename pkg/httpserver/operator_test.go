package httpserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/config"
)

const testToken = "operator-token-0123456789"

// syncBuffer is a log sink the server's goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestReadyDetailNeedsOperatorToken(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	redact := config.RedactURL
	s := New(Config{Addr: "127.0.0.1:0", OperatorToken: testToken, ShutdownTimeout: time.Second, ReadyTimeout: time.Second},
		log, nil, WithRedact(redact))
	var regErr error
	s.AddCheck("schema_registry", func(context.Context) error { return regErr })
	addr := start(t, s)
	url := "http://" + addr + "/readyz"

	regErr = errors.New(`unable to GET "http://svc:reg-pa55@registry:8081/subjects": connection refused`)
	tests := []struct {
		name     string
		auth     string
		wantCode int
		want     string
		notWant  []string
	}{
		{"anonymous: status only", "", 503, `"schema_registry":{"status":"failing"}`, []string{"refused", "reg-pa55"}},
		{"operator: detail, redacted", "Bearer " + testToken, 503, `connection refused`, []string{"reg-pa55"}},
		{"wrong token", "Bearer " + testToken + "x", 401, "operator token", []string{"refused"}},
		{"not bearer", "Basic " + testToken, 401, "operator token", []string{"refused"}},
	}
	for _, tt := range tests {
		code, body := get(t, url, tt.auth)
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %q, want %d containing %q", tt.name, code, body, tt.wantCode, tt.want)
		}
		for _, nw := range tt.notWant {
			if strings.Contains(body, nw) {
				t.Errorf("%s: %q shows %q", tt.name, body, nw)
			}
		}
	}
	// The failure was logged once, redacted, however often it was probed.
	if n := strings.Count(logs.String(), "readiness check failing"); n != 1 {
		t.Errorf("failure logged %d times:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "reg-pa55") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("log of the failure:\n%s", logs.String())
	}
	regErr = nil
	if code, _ := get(t, url, ""); code != 200 {
		t.Errorf("recovered: %d", code)
	}
	if !strings.Contains(logs.String(), "readiness check recovered") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestReadyWithoutOperatorToken: with no token configured nobody gets detail,
// however the header is spelled.
func TestReadyWithoutOperatorToken(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second, ReadyTimeout: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	s.AddCheck("kafka", func(context.Context) error { return errors.New("secret detail") })
	addr := start(t, s)
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		code, body := get(t, "http://"+addr+"/readyz", auth)
		if strings.Contains(body, "secret detail") || (code != 503 && code != 401) {
			t.Errorf("auth %q: %d %q", auth, code, body)
		}
	}
}

func TestCheckToken(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		token string
		ok    bool
	}{
		{"no token", Config{Addr: ":8080"}, "", true},
		{"short", Config{Addr: "127.0.0.1:8080"}, "short", false},
		{"loopback v4", Config{Addr: "127.0.0.1:8080"}, testToken, true},
		{"loopback v6", Config{Addr: "[::1]:8080"}, testToken, true},
		{"localhost", Config{Addr: "localhost:8080"}, testToken, true},
		{"all interfaces, plain", Config{Addr: ":8080"}, testToken, false},
		{"unspecified, plain", Config{Addr: "0.0.0.0:8080"}, testToken, false},
		{"pod ip, plain", Config{Addr: "10.1.2.3:8080"}, testToken, false},
		{"hostname, plain", Config{Addr: "svc.internal:8080"}, testToken, false},
		{"all interfaces, TLS", Config{Addr: ":8080", TLSCertFile: "c", TLSKeyFile: "k"}, testToken, true},
		{"all interfaces, mesh", Config{Addr: ":8080", PlaintextTokens: true}, testToken, true},
	}
	for _, tt := range tests {
		err := tt.cfg.CheckToken("WAREHOUSE_QUERY_TOKEN", tt.token)
		var ce *config.Error
		if (err == nil) != tt.ok || (err != nil && (!errors.As(err, &ce) || ce.Var != "WAREHOUSE_QUERY_TOKEN")) {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), tt.token) {
			t.Errorf("%s: error quotes the token: %v", tt.name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cert, key := writeCert(t, t.TempDir(), "a")
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"defaults", nil, ""},
		{"tls", map[string]string{"HTTP_ADDR": ":8443", "HTTP_TLS_CERT_FILE": cert, "HTTP_TLS_KEY_FILE": key, "HTTP_OPERATOR_TOKEN": testToken}, ""},
		{"cert without key", map[string]string{"HTTP_TLS_CERT_FILE": cert}, "HTTP_TLS_KEY_FILE"},
		{"key without cert", map[string]string{"HTTP_TLS_KEY_FILE": key}, "HTTP_TLS_CERT_FILE"},
		{"unreadable pair", map[string]string{"HTTP_TLS_CERT_FILE": key, "HTTP_TLS_KEY_FILE": cert}, "HTTP_TLS_CERT_FILE"},
		{"missing file", map[string]string{"HTTP_TLS_CERT_FILE": cert + ".gone", "HTTP_TLS_KEY_FILE": key}, "HTTP_TLS_CERT_FILE"},
		{"operator token in clear", map[string]string{"HTTP_ADDR": ":8080", "HTTP_OPERATOR_TOKEN": testToken}, "HTTP_OPERATOR_TOKEN"},
		{"operator token short", map[string]string{"HTTP_OPERATOR_TOKEN": "0123456789"}, "HTTP_OPERATOR_TOKEN"},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg)
		var ce *config.Error
		switch {
		case tt.wantVar == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantVar != "" && (!errors.As(err, &ce) || ce.Var != tt.wantVar):
			t.Errorf("%s: err = %v, want one naming %s", tt.name, err, tt.wantVar)
		}
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("%s: error quotes the operator token: %v", tt.name, err)
		}
	}
}

// TestTLS: with a key pair the server speaks TLS 1.2 or newer only, and a
// renewed pair written over the files is served without a restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	s := New(Config{Addr: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, ShutdownTimeout: time.Second, ReadyTimeout: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	addr := start(t, s)

	serial := func(max uint16) (string, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: max})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := serial(tls.VersionTLS13); err != nil || cn != "first" {
		t.Fatalf("TLS 1.3: %q, %v", cn, err)
	}
	if _, err := serial(tls.VersionTLS12); err != nil {
		t.Errorf("TLS 1.2 refused: %v", err)
	}
	if _, err := serial(tls.VersionTLS11); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("https /healthz: %d", resp.StatusCode)
	}
	if code, body := get(t, "http://"+addr+"/healthz", ""); code != http.StatusBadRequest {
		t.Errorf("plain HTTP on the TLS port: %d %q", code, body)
	}
}

func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	var logs syncBuffer
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	cn := func() string {
		c, err := r.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}

	writeCert(t, dir, "second")
	bump(t, time.Minute, certFile, keyFile)
	if got := cn(); got != "first" {
		t.Errorf("reloaded before the check interval: %s", got)
	}
	now = now.Add(certCheckInterval)
	if got := cn(); got != "second" {
		t.Errorf("after renewal: %s", got)
	}
	// A half-written renewal keeps the working pair.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	bump(t, 2*time.Minute, certFile, keyFile)
	now = now.Add(certCheckInterval)
	if got := cn(); got != "second" {
		t.Errorf("after a broken renewal: %s", got)
	}
	if !strings.Contains(logs.String(), "keeping the previous one") {
		t.Errorf("broken renewal not logged:\n%s", logs.String())
	}
}

// bump sets the files' modification time d ahead, so a renewal is visible
// even on a file system with coarse timestamps.
func bump(t *testing.T, d time.Duration, files ...string) {
	t.Helper()
	for _, f := range files {
		at := time.Now().Add(d)
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 named cn into
// dir/cert.pem and dir/key.pem.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
