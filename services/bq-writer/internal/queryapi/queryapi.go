// Package queryapi serves read-only SQL over the embedded warehouse to
// operators: DuckDB allows one writing process per file, so while bq-writer
// runs this endpoint is how the warehouse is queried.
//
// It is disabled unless a bearer token is configured, accepts one read-only
// statement per request, caps rows and time, and limits the request size.
package queryapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// Querier runs a read-only query; *warehouse.DuckDB implements it.
type Querier interface {
	Query(ctx context.Context, query string, maxRows int) ([]string, [][]any, error)
}

// Handler serves POST {"sql": "...", "max_rows": N}.
type Handler struct {
	Q       Querier
	Token   string
	MaxRows int
	Timeout time.Duration
}

const maxBody = 64 << 10

type request struct {
	SQL     string `json:"sql"`
	MaxRows int    `json:"max_rows"`
}

type response struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(h.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warehouse"`)
		writeJSON(w, http.StatusUnauthorized, response{Error: "missing or wrong bearer token"})
		return
	}
	var req request
	body := http.MaxBytesReader(w, r.Body, maxBody)
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, response{Error: "body must be JSON {\"sql\": \"...\", \"max_rows\": N}: " + err.Error()})
			return
		}
	} else {
		b, err := io.ReadAll(body)
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, response{Error: "query larger than 64 KiB"})
			return
		}
		req.SQL = string(b)
	}
	if req.MaxRows <= 0 || req.MaxRows > h.MaxRows {
		req.MaxRows = h.MaxRows
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.Timeout)
	defer cancel()
	cols, rows, err := h.Q.Query(ctx, req.SQL, req.MaxRows)
	switch {
	case errors.Is(err, warehouse.ErrInvalidQuery):
		writeJSON(w, http.StatusBadRequest, response{Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, response{Error: err.Error()})
	default:
		if rows == nil {
			rows = [][]any{}
		}
		writeJSON(w, http.StatusOK, response{Columns: cols, Rows: rows})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
