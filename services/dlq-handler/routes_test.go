package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/health"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// TestRoutesHealth: GET /v1/health takes a viewer token beside the API's
// routes, and GET /health leads to the console's page. The pool points at
// a closed port (nothing here needs the database: the dead letters panel
// says the store did not answer).
func TestRoutesHealth(t *testing.T) {
	const viewer = "routes-test-viewer-token"
	pool, err := pgxpool.New(context.Background(), "postgres://ecom@127.0.0.1:1/ecom?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tokens, err := auth.New(auth.Config{ViewerToken: viewer})
	if err != nil {
		t.Fatal(err)
	}
	var hcfg health.Config
	hcfg.Jobs, hcfg.LagAmber, hcfg.ErrorAmber, hcfg.Timeout, hcfg.DQWindow = health.Services, 1, 0.5, time.Second, time.Hour
	checker, err := health.New(hcfg, health.PGWaiting(pool))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := avroserde.New(avroserde.Config{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv := httpserver.New(httpserver.Config{}, log, nil)
	routes(srv, deps{pool: pool, store: store.New(pool), registry: reg, log: log, tokens: tokens, health: checker})

	tests := []struct {
		method, path, token string
		want                int
		location            string
	}{
		{http.MethodGet, "/v1/health", "", http.StatusUnauthorized, ""},
		{http.MethodGet, "/v1/health", "wrong-token-0123456789", http.StatusUnauthorized, ""},
		{http.MethodGet, "/v1/health", viewer, http.StatusOK, ""},
		{http.MethodPost, "/v1/health", viewer, http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/health", "", http.StatusSeeOther, "/console/health"},
		{http.MethodGet, "/console/health", "", http.StatusSeeOther, "/console/login?next=health"},
		{http.MethodGet, "/v1/dead-letters", "", http.StatusUnauthorized, ""}, // the API still has its routes
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.token != "" {
			r.Header.Set("Authorization", "Bearer "+tt.token)
		}
		w := httptest.NewRecorder()
		srv.Router.ServeHTTP(w, r)
		if w.Code != tt.want || w.Header().Get("Location") != tt.location {
			t.Errorf("%s %s (token %v): %d %q, want %d %q", tt.method, tt.path, tt.token != "", w.Code, w.Header().Get("Location"), tt.want, tt.location)
			continue
		}
		if tt.want == http.StatusOK {
			var rep health.Report
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil || rep.Monitoring != health.MonitoringNotConfigured || rep.DeadLetters.Error == "" {
				t.Errorf("report %v %+v", err, rep)
			}
		}
	}
}
