package runs

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
)

// Paths of the API.
const (
	SyncPath = "/v1/sync"
	RunsPath = "/v1/runs"
)

// SyncRequest is the optional body of POST /v1/sync.
type SyncRequest struct {
	Table string `json:"table"` // products or customers; empty = both
	Full  bool   `json:"full"`  // re-send every row (source backfill), whatever the state says
}

// SyncResponse is the answer of POST /v1/sync: 202 with a new run, 200
// with the active run it joined.
type SyncResponse struct {
	Run    Run  `json:"run"`
	Joined bool `json:"joined"`
}

// Routes mounts the API on r; every route takes the operator token.
func (m *Manager) Routes(r chi.Router, operatorToken string) {
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !httpserver.BearerMatches(r.Header.Get("Authorization"), operatorToken) {
				writeError(w, http.StatusUnauthorized, "operator token required (HTTP_OPERATOR_TOKEN)")
				return
			}
			h(w, r)
		}
	}
	r.Post(SyncPath, auth(m.sync))
	r.Get(RunsPath, auth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"runs": m.List(), "kept": m.cfg.History})
	}))
	r.Get(RunsPath+"/{id}", auth(func(w http.ResponseWriter, r *http.Request) {
		run, ok := m.Get(chi.URLParam(r, "id"))
		if !ok {
			writeError(w, http.StatusNotFound, "no such run (the history keeps the last CATALOG_RUN_HISTORY runs of this process)")
			return
		}
		writeJSON(w, http.StatusOK, run)
	}))
}

func (m *Manager) sync(w http.ResponseWriter, r *http.Request) {
	var req SyncRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, `body must be empty or {"table": "products"|"customers", "full": bool}: `+err.Error())
		return
	}
	var tables []string
	if req.Table != "" {
		if _, ok := snapshot.TableNamed(req.Table); !ok {
			writeError(w, http.StatusBadRequest, `table must be "products" or "customers"`)
			return
		}
		tables = []string{req.Table}
	}
	run, joined, err := m.Trigger(TriggerAPI, tables, req.Full)
	switch {
	case errors.Is(err, ErrBusy):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "a run is active that does not cover this request; retry when it ends", "run": run})
	case err != nil:
		w.Header().Set("Retry-After", "1") // starting (or stopping): /readyz says when it accepts runs
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case joined:
		writeJSON(w, http.StatusOK, SyncResponse{Run: run, Joined: true})
	default:
		writeJSON(w, http.StatusAccepted, SyncResponse{Run: run})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
