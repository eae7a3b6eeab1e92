package collector

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/httpserver"
)

// Config is the collector's part of ingest-clickstream's configuration.
type Config struct {
	Addr           string   `env:"COLLECTOR_ADDR" default:"" usage:"listen address of the HTTP collector; empty = collector off"`
	TLSCertFile    string   `env:"COLLECTOR_TLS_CERT_FILE" default:"" usage:"PEM certificate (chain): the collector serves HTTPS; set with COLLECTOR_TLS_KEY_FILE; re-read when the file changes"`
	TLSKeyFile     string   `env:"COLLECTOR_TLS_KEY_FILE" default:"" usage:"PEM private key of COLLECTOR_TLS_CERT_FILE"`
	AllowPlaintext bool     `env:"COLLECTOR_ALLOW_PLAINTEXT" default:"false" usage:"allow plain HTTP on a network-reachable COLLECTOR_ADDR (write keys travel in clear): only behind a TLS-terminating proxy or mesh"`
	WriteKeysFile  string   `env:"COLLECTOR_WRITE_KEYS_FILE" default:"" usage:"JSON file of write keys, re-read when it changes"`
	WriteKeys      string   `env:"COLLECTOR_WRITE_KEYS" default:"" secret:"true" usage:"inline write keys source=key,source=key (merged with the file)"`
	AllowedOrigins []string `env:"COLLECTOR_ALLOWED_ORIGINS" default:"" usage:"browser origins allowed for every key"`

	RateLimit float64 `env:"COLLECTOR_RATE_LIMIT" default:"5000" usage:"events per second per write key"`
	RateBurst int     `env:"COLLECTOR_RATE_BURST" default:"10000" usage:"token bucket size in events"`

	MaxBodyBytes         int           `env:"COLLECTOR_MAX_BODY_BYTES" default:"1048576" usage:"request body on the wire"`
	MaxDecompressedBytes int           `env:"COLLECTOR_MAX_DECOMPRESSED_BYTES" default:"4194304" usage:"request body after gzip"`
	MaxEvents            int           `env:"COLLECTOR_MAX_EVENTS" default:"500" usage:"events per request"`
	MaxConcurrent        int           `env:"COLLECTOR_MAX_CONCURRENT_REQUESTS" default:"64" usage:"requests handled at once; beyond: 503"`
	MaxInflightBytes     int           `env:"COLLECTOR_MAX_INFLIGHT_BYTES" default:"67108864" usage:"bytes of produced records (and dead letters' originals) awaiting Kafka acks; beyond: 503"`
	ProduceTimeout       time.Duration `env:"COLLECTOR_PRODUCE_TIMEOUT" default:"10s" usage:"longest wait for Kafka's acks before answering 503"`
	ReadTimeout          time.Duration `env:"COLLECTOR_READ_TIMEOUT" default:"10s" usage:"longest time to read a request, headers and body"`
	MinBodyRate          int           `env:"COLLECTOR_MIN_BODY_RATE" default:"4096" usage:"bytes per second a request body must average after its first second and 4 KiB; slower: 408"`
	MaxConnections       int           `env:"COLLECTOR_MAX_CONNECTIONS" default:"1024" usage:"open connections to the collector; beyond, new ones wait to be accepted"`

	ClientIP       string   `env:"COLLECTOR_CLIENT_IP" default:"off" usage:"off, or truncated (IPv4 /24, IPv6 /48) into client_ip"`
	TrustedProxies []string `env:"COLLECTOR_TRUSTED_PROXIES" default:"" usage:"CIDRs whose X-Forwarded-For is believed for the client IP"`
}

// Enabled reports whether the collector runs.
func (c *Config) Enabled() bool { return c.Addr != "" }

// TLS reports whether the collector serves HTTPS.
func (c *Config) TLS() bool { return c.TLSCertFile != "" }

// Validate implements config.Validator. With the collector off only the
// values are checked, not the files.
func (c *Config) Validate() error {
	errs := []error{
		config.Between("COLLECTOR_RATE_LIMIT", c.RateLimit, 0.001, 1e9),
		config.Between("COLLECTOR_MAX_EVENTS", c.MaxEvents, 1, 100_000),
		config.Between("COLLECTOR_RATE_BURST", c.RateBurst, c.MaxEvents, 1<<30),
		config.Between("COLLECTOR_MAX_BODY_BYTES", c.MaxBodyBytes, 1<<10, 1<<30),
		config.Between("COLLECTOR_MAX_DECOMPRESSED_BYTES", c.MaxDecompressedBytes, c.MaxBodyBytes, 1<<30),
		config.Between("COLLECTOR_MAX_CONCURRENT_REQUESTS", c.MaxConcurrent, 1, 100_000),
		config.Between("COLLECTOR_MAX_INFLIGHT_BYTES", c.MaxInflightBytes, c.MaxDecompressedBytes, 1<<40),
		config.Between("COLLECTOR_PRODUCE_TIMEOUT", c.ProduceTimeout, 100*time.Millisecond, 5*time.Minute),
		config.Between("COLLECTOR_READ_TIMEOUT", c.ReadTimeout, 100*time.Millisecond, 10*time.Minute),
		config.Between("COLLECTOR_MIN_BODY_RATE", c.MinBodyRate, 1, 1<<30),
		config.Between("COLLECTOR_MAX_CONNECTIONS", c.MaxConnections, c.MaxConcurrent, 1<<20),
		config.OneOf("COLLECTOR_CLIENT_IP", c.ClientIP, "off", "truncated"),
	}
	if _, err := parseCIDRs(c.TrustedProxies); err != nil {
		errs = append(errs, config.Errorf("COLLECTOR_TRUSTED_PROXIES", "%v", err))
	}
	if _, err := parseInline(c.WriteKeys); err != nil {
		errs = append(errs, config.Errorf("COLLECTOR_WRITE_KEYS", "%v", err))
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, config.Errorf("COLLECTOR_ALLOWED_ORIGINS", "%v", err))
		}
	}
	if !c.Enabled() {
		return config.First(errs...)
	}
	errs = append(errs, config.HostPort("COLLECTOR_ADDR", c.Addr))
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
	case c.TLSCertFile == "":
		errs = append(errs, config.Errorf("COLLECTOR_TLS_CERT_FILE", "must be set with COLLECTOR_TLS_KEY_FILE"))
	case c.TLSKeyFile == "":
		errs = append(errs, config.Errorf("COLLECTOR_TLS_KEY_FILE", "must be set with COLLECTOR_TLS_CERT_FILE"))
	default:
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, config.Errorf("COLLECTOR_TLS_CERT_FILE", "cannot load the key pair %s, %s: %v", c.TLSCertFile, c.TLSKeyFile, err))
		}
	}
	if !c.TLS() && !c.AllowPlaintext && !(&httpserver.Config{Addr: c.Addr}).Loopback() {
		errs = append(errs, config.Errorf("COLLECTOR_ADDR", "%s is reachable from the network without TLS, so write keys would travel in clear; set COLLECTOR_TLS_CERT_FILE and COLLECTOR_TLS_KEY_FILE, bind to loopback, or set COLLECTOR_ALLOW_PLAINTEXT=true behind a TLS-terminating proxy", c.Addr))
	}
	if c.WriteKeysFile == "" && c.WriteKeys == "" {
		errs = append(errs, config.Errorf("COLLECTOR_WRITE_KEYS_FILE", "the collector needs write keys: set COLLECTOR_WRITE_KEYS_FILE or COLLECTOR_WRITE_KEYS"))
	}
	if c.WriteKeysFile != "" {
		if _, err := readKeysFile(c.WriteKeysFile); err != nil {
			errs = append(errs, config.Errorf("COLLECTOR_WRITE_KEYS_FILE", "%v", err))
		}
	}
	return config.First(errs...)
}

// parseCIDRs parses CIDRs; a bare address is a one-address prefix.
func parseCIDRs(list []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range list {
		if ip := net.ParseIP(s); ip != nil {
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
