// Package webdemo serves the demo's storefront: a home page, product pages
// and a checkout page, with the tracking snippet (ecom.js) that sends the
// shopper's page views and cart events to ingest-clickstream's HTTP collector
// (POST /v1/events), so a newcomer can click around and find their own
// events in fact_events. Everything is embedded (no CDN, no build step, works
// offline); the collector's URL and write key reach the page in /config.js.
package webdemo

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// DefaultAddr is where the demo serves the shop.
const DefaultAddr = "127.0.0.1:8095"

//go:embed assets/static assets/templates
var assets embed.FS

// Product is one article of the shop.
type Product struct {
	ID, Name, Description string
	Price, Currency       string // a decimal in major units, as the raw contract's price
	Tone                  string // the picture's colour (a CSS class)
}

// Initial is the letter shown as the product's picture.
func (p Product) Initial() string { return p.Name[:1] }

// Catalog is what the shop sells.
var Catalog = []Product{
	{ID: "sku-1001", Name: "Trail running shoes", Description: "Light, grippy and waterproof.", Price: "89.90", Currency: "EUR", Tone: "teal"},
	{ID: "sku-1002", Name: "Merino beanie", Description: "Warm without the itch.", Price: "24.50", Currency: "EUR", Tone: "amber"},
	{ID: "sku-1003", Name: "Insulated bottle", Description: "Keeps tea hot for twelve hours.", Price: "19.99", Currency: "EUR", Tone: "plum"},
	{ID: "sku-1004", Name: "Headlamp", Description: "400 lumens, USB-C charging.", Price: "34.00", Currency: "EUR", Tone: "slate"},
}

// Config configures a Server.
type Config struct {
	Addr          string        // listen address of Run; "" = DefaultAddr
	CollectorURL  string        // the collector's base URL, e.g. http://127.0.0.1:8090 (required)
	WriteKey      string        // the write key the page sends (required; it is public by nature)
	FlushInterval time.Duration // how long the snippet holds events before sending; 0 = 500ms
	BatchSize     int           // events that make the snippet send at once; 0 = 10
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	u, err := url.Parse(c.CollectorURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return fmt.Errorf("webdemo: CollectorURL %q is not an http(s) base URL like http://127.0.0.1:8090", c.CollectorURL)
	case c.WriteKey == "":
		return errors.New("webdemo: WriteKey is empty")
	case c.FlushInterval < 0:
		return fmt.Errorf("webdemo: FlushInterval %s is negative", c.FlushInterval)
	case c.BatchSize < 0 || c.BatchSize > 500:
		return fmt.Errorf("webdemo: BatchSize %d is outside 0..500 (the collector's default COLLECTOR_MAX_EVENTS)", c.BatchSize)
	}
	return nil
}

// Server serves the shop.
type Server struct {
	cfg     Config
	pages   map[string]*template.Template
	config  []byte // /config.js
	static  map[string][]byte
	csp     string
	handler http.Handler
}

// New checks cfg and prepares the pages.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 500 * time.Millisecond
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 10
	}
	cfg.CollectorURL = strings.TrimSuffix(cfg.CollectorURL, "/")
	s := &Server{cfg: cfg, pages: map[string]*template.Template{}, static: map[string][]byte{}}
	for _, p := range []string{"home", "product", "checkout", "notfound"} {
		t, err := template.ParseFS(assets, "assets/templates/layout.html", "assets/templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("webdemo: template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	files, err := fs.ReadDir(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if contentTypes[path.Ext(f.Name())] == "" {
			return nil, fmt.Errorf("webdemo: no content type for %s", f.Name())
		}
		b, err := assets.ReadFile("assets/static/" + f.Name())
		if err != nil {
			return nil, err
		}
		s.static["/"+f.Name()] = b
	}
	// json.Marshal escapes <, > and & too, so the values cannot end the script.
	js, err := json.Marshal(map[string]any{
		"collectorURL":    cfg.CollectorURL,
		"writeKey":        cfg.WriteKey,
		"flushIntervalMs": cfg.FlushInterval.Milliseconds(),
		"batchSize":       cfg.BatchSize,
	})
	if err != nil {
		return nil, err
	}
	s.config = []byte("window.ECOM_CONFIG = " + string(js) + ";\n")
	u, _ := url.Parse(cfg.CollectorURL)
	// The pages load nothing from elsewhere and run no inline script; the
	// one other place they talk to is the collector.
	s.csp = "default-src 'self'; connect-src 'self' " + u.Scheme + "://" + u.Host + "; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /products/{id}", s.product)
	mux.HandleFunc("GET /checkout", s.checkout)
	mux.HandleFunc("GET /config.js", s.configJS)
	for name := range s.static {
		mux.HandleFunc("GET "+name, s.file)
	}
	mux.HandleFunc("/", s.notFound)
	s.handler = headers(s.csp, mux)
	return s, nil
}

// Handler serves the shop's pages and files.
func (s *Server) Handler() http.Handler { return s.handler }

// Origin is the browser origin of a shop served at addr (host:port), the
// value the collector's allow-list needs.
func Origin(addr string) string { return "http://" + addr }

// Run listens on the configured address and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webdemo: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down within 5 seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("webdemo: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

type page struct {
	Title, Page  string
	CollectorURL string
	Products     []Product
	Product      Product
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	p.Page, p.CollectorURL = name, s.cfg.CollectorURL
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		http.Error(w, "template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) home(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusOK, "home", page{Title: "Products", Products: Catalog})
}

func (s *Server) product(w http.ResponseWriter, r *http.Request) {
	for _, p := range Catalog {
		if p.ID == r.PathValue("id") {
			s.render(w, http.StatusOK, "product", page{Title: p.Name, Product: p})
			return
		}
	}
	s.notFound(w, r)
}

func (s *Server) checkout(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusOK, "checkout", page{Title: "Checkout"})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.render(w, http.StatusNotFound, "notfound", page{Title: "Not found"})
}

func (s *Server) configJS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(s.config)
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", contentTypes[path.Ext(r.URL.Path)])
	_, _ = w.Write(s.static[r.URL.Path])
}

// contentTypes are fixed here rather than taken from the mime package,
// which reads the machine's /etc/mime.types (application/javascript on
// Debian).
var contentTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
}

// headers adds what every answer carries: no caching (the demo is edited
// and restarted, the config changes per run), no MIME sniffing, and the
// content security policy.
func headers(csp string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("Content-Security-Policy", csp)
		next.ServeHTTP(w, r)
	})
}
