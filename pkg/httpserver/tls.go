package httpserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval bounds how often a handshake looks at the files' times.
const certCheckInterval = 10 * time.Second

// certReloader serves the key pair in certFile and keyFile and picks up a
// renewed one (cert-manager rewrites the mounted secret in place) without a
// restart. A renewed pair that fails to load is logged and the previous one
// kept, so a half-written renewal never takes the endpoint down.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // modification times of both files when cert was loaded
	checked time.Time
}

// TLSConfig is the server TLS configuration (TLS 1.2 or newer) of the key
// pair in certFile and keyFile, re-read within certCheckInterval after the
// files change, keeping the previous pair if the new one does not load. A
// pair that does not load now is an error. Used by this server and by a
// service's own listeners (ingest-clickstream's collector).
func TLSConfig(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	certs, err := newCertReloader(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}, nil
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := r.stampNow()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = &cert, stamp, r.now()
	return r, nil
}

func (r *certReloader) stampNow() (string, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return "", err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(c.ModTime().UnixNano(), c.Size(), k.ModTime().UnixNano(), k.Size()), nil
}

// get implements tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		if stamp, err := r.stampNow(); err == nil && stamp != r.stamp {
			cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
			if err != nil {
				r.log.Warn("http tls: renewed key pair does not load; keeping the previous one", "cert_file", r.certFile, "err", err)
			} else {
				r.cert, r.stamp = &cert, stamp
				r.log.Info("http tls: key pair reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert, nil
}
