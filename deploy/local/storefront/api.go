package storefront

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HeaderShopTime carries the shop time (RFC 3339) on every 200 answer of GET /v1/orders.
const HeaderShopTime = "X-Storefront-Shop-Time"

// Defaults for APIConfig.
const (
	DefaultLimit = 100
	MaxLimit     = 500
)

// APIConfig configures the HTTP API.
type APIConfig struct {
	Token       string // bearer token for every /v1 endpoint (required)
	TokenSecret []byte // HMAC key of page tokens; random when empty (tokens then die with the process)
	Faults      *Faults
	Webhooks    *Webhooks // shown in GET /v1/admin/stats; nil = webhooks off
	Log         *slog.Logger
}

// API serves the orders API and the admin endpoints over a Simulator.
type API struct {
	sim    *Simulator
	cfg    APIConfig
	tokens tokenCodec
	mux    *http.ServeMux
	routes []string // the mux's patterns, in the order registered
	log    *slog.Logger
}

var _ http.Handler = (*API)(nil)

// NewAPI returns the HTTP handler. See proto/openapi/storefront-orders.v1.yaml.
func NewAPI(sim *Simulator, cfg APIConfig) (*API, error) {
	if cfg.Token == "" {
		return nil, errors.New("storefront: the API token is empty")
	}
	if len(cfg.TokenSecret) == 0 {
		cfg.TokenSecret = make([]byte, 32)
		_, _ = rand.Read(cfg.TokenSecret) // never fails (crypto/rand since Go 1.24)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &API{sim: sim, cfg: cfg, tokens: tokenCodec{cfg.TokenSecret}, mux: http.NewServeMux(), log: cfg.Log}
	health := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok", "shop_time": a.sim.Now().Format(time.RFC3339Nano)})
	}
	handle := func(pattern string, h http.Handler) {
		a.mux.Handle(pattern, h)
		a.routes = append(a.routes, pattern)
	}
	// /readyz as every service has, so svcrun can wait for the simulator like for them.
	handle("GET /healthz", http.HandlerFunc(health))
	handle("GET /readyz", http.HandlerFunc(health))
	handle("GET /v1/orders", a.auth(a.listOrders))
	handle("GET /v1/orders/{id}", a.auth(a.getOrder))
	handle("GET /v1/admin/versions", a.auth(a.versions))
	handle("POST /v1/admin/orders", a.auth(a.placeOrder))
	handle("GET /v1/admin/faults", a.auth(a.getFaults))
	handle("POST /v1/admin/faults", a.auth(a.setFaults))
	handle("GET /v1/admin/stats", a.auth(a.stats))
	handle("GET /v1/admin/burst", a.auth(a.burst))
	handle("POST /v1/admin/burst", a.auth(a.burst))
	return a, nil
}

// Routes lists the API's routes as "METHOD /path" patterns (the contract
// test compares them with the paths of the OpenAPI spec).
func (a *API) Routes() []string { return slices.Clone(a.routes) }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// apiError is the body of every error response.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (a *API) auth(h http.HandlerFunc) http.Handler {
	want := []byte("Bearer " + a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="storefront"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		h(w, r)
	})
}

// OrderPage is the body of GET /v1/orders.
type OrderPage struct {
	Orders []Order `json:"orders"`
	// NextPageToken continues after the last order of this page; present
	// whenever the page is not empty, so a client can also resume later.
	NextPageToken string `json:"next_page_token,omitempty"`
	HasMore       bool   `json:"has_more"`
}

func (a *API) listOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var (
		since time.Time
		tok   *pageToken
		limit = DefaultLimit
	)
	if s := q.Get("updated_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, 400, "bad_request", "updated_since is not an RFC 3339 timestamp")
			return
		}
		since = t.UTC()
	}
	if s := q.Get("page_token"); s != "" {
		t, err := a.tokens.decode(s)
		if err != nil {
			writeError(w, 400, "bad_page_token", err.Error())
			return
		}
		if q.Has("updated_since") && !t.Since.Equal(since) {
			writeError(w, 400, "bad_page_token", "page_token belongs to another updated_since")
			return
		}
		since, limit, tok = t.Since, t.Limit, &t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, 400, "bad_request", "limit must be a positive integer")
			return
		}
		limit = n
	}
	limit = min(limit, MaxLimit) // the cap: larger limits are served as MaxLimit

	fault := a.cfg.Faults.next(tok != nil)
	if fault != "" {
		a.log.Info("fault injected", "fault", fault, "query", r.URL.RawQuery)
	}
	switch fault {
	case FaultRateLimit, FaultUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(a.cfg.Faults.retryAfter))
		if fault == FaultRateLimit {
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests")
		} else {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "try again later")
		}
		return
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	case FaultSlow:
		t := time.NewTimer(a.cfg.Faults.slow)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			a.cfg.Faults.abort()
			return
		}
	}

	var after *key
	if tok != nil {
		after = &key{tok.UpdatedAt, tok.ID}
	}
	// The shop's clock, for a client's cursor lag: at -speed above 1 shop
	// time runs ahead of the wall clock, so lag against time.Now is meaningless.
	w.Header().Set(HeaderShopTime, a.sim.Now().Format(time.RFC3339Nano))
	orders, more := a.sim.page(since, after, fault == FaultRepeat, limit)
	page := OrderPage{Orders: orders, HasMore: more}
	if page.Orders == nil {
		page.Orders = []Order{}
	}
	if n := len(orders); n > 0 {
		last := orders[n-1]
		page.NextPageToken = a.tokens.encode(pageToken{UpdatedAt: last.UpdatedAt, ID: last.ID, Since: since, Limit: limit})
	}
	if fault != FaultDrop {
		writeJSON(w, 200, page)
		return
	}
	// A connection cut mid-body: the client has a 200 and half a JSON document.
	b, _ := json.Marshal(page)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(200)
	_, _ = w.Write(b[:len(b)/2])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler) // net/http closes the connection without logging
}

func (a *API) getOrder(w http.ResponseWriter, r *http.Request) {
	o, ok := a.sim.Order(r.PathValue("id"))
	if !ok {
		writeError(w, 404, "not_found", "no such order")
		return
	}
	writeJSON(w, 200, o)
}

// versions streams the simulator's log of every version it made, as JSON
// Lines, optionally for one order (?order_id=).
func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("order_id")
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, v := range a.sim.Versions() {
		if id == "" || v.Order.ID == id {
			if err := enc.Encode(v); err != nil {
				return
			}
		}
	}
	_ = bw.Flush()
}

// placeOrder creates an order from outside the simulation; see Place.
func (a *API) placeOrder(w http.ResponseWriter, r *http.Request) {
	var req PlaceRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, 400, "bad_request", "body is not an order request: "+err.Error())
		return
	}
	o, err := a.sim.Place(req)
	switch {
	case errors.Is(err, ErrExists):
		// Distinct from a bad request, so a client that retried after a lost
		// answer knows the order is there.
		writeError(w, http.StatusConflict, "exists", err.Error())
		return
	case err != nil:
		writeError(w, 400, "bad_request", err.Error())
		return
	}
	writeJSON(w, 201, o)
}

// stats shows how far the simulation is; see Stats.
func (a *API) stats(w http.ResponseWriter, _ *http.Request) {
	st := a.sim.Stats()
	if a.cfg.Webhooks != nil {
		ws := a.cfg.Webhooks.Stats()
		st.Webhooks = &ws
	}
	writeJSON(w, 200, st)
}

// FaultRequest is the body of POST /v1/admin/faults.
type FaultRequest struct {
	Next []string `json:"next,omitempty"` // queued for the next requests, one each
	Rate *float64 `json:"rate,omitempty"` // the new random rate
}

func (a *API) getFaults(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Faults == nil {
		writeJSON(w, 200, FaultStatus{Kinds: []string{}, Queued: []string{}, Served: map[string]int{}})
		return
	}
	writeJSON(w, 200, a.cfg.Faults.Status())
}

func (a *API) setFaults(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, 400, "bad_request", "body is not a fault request: "+err.Error())
		return
	}
	for _, k := range req.Next {
		if !slices.Contains(FaultKinds(), k) {
			writeError(w, 400, "bad_request", "unknown fault "+k+"; known: "+strings.Join(FaultKinds(), ", "))
			return
		}
	}
	if a.cfg.Faults == nil {
		writeError(w, 409, "conflict", "fault injection is not configured")
		return
	}
	a.cfg.Faults.Queue(req.Next...)
	if req.Rate != nil {
		a.cfg.Faults.SetRate(*req.Rate)
	}
	writeJSON(w, 200, a.cfg.Faults.Status())
}

// burst: GET shows, POST {"on": true|false} sets the burst (sale-day) rate.
func (a *API) burst(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var req struct {
			On bool `json:"on"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			writeError(w, 400, "bad_request", `body must be {"on": true|false}`)
			return
		}
		a.sim.SetBurst(req.On)
	}
	writeJSON(w, 200, map[string]bool{"on": a.sim.Burst()})
}
