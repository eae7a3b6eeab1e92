// Package queryapi serves read-only SQL over the embedded warehouse to
// operators: DuckDB allows one writing process per file, so while bq-writer
// runs this endpoint is how the warehouse is queried.
//
// It is disabled unless a bearer token is configured, accepts one read-only
// statement per request (the warehouse allow-lists what a statement may
// contain), caps rows, time, request size and concurrent queries, and always
// answers well-formed JSON.
package queryapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// Querier runs a read-only query; *warehouse.DuckDB implements it.
type Querier interface {
	Query(ctx context.Context, query string, maxRows int) ([]string, [][]any, error)
}

var _ Querier = (*warehouse.DuckDB)(nil)

var _ http.Handler = (*Handler)(nil)

// Handler serves POST {"sql": "...", "max_rows": N}.
type Handler struct {
	Q       Querier
	Token   string
	MaxRows int
	Timeout time.Duration
}

const maxBody = 64 << 10

// retryAfter is the Retry-After (seconds) of a 429: queries are capped by time, so a slot is
// usually free again soon.
const retryAfter = 1

type request struct {
	SQL     string `json:"sql"`
	MaxRows int    `json:"max_rows"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !httpserver.BearerMatches(r.Header.Get("Authorization"), h.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="warehouse"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	var req request
	body := http.MaxBytesReader(w, r.Body, maxBody)
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be JSON {\"sql\": \"...\", \"max_rows\": N}: "+err.Error())
			return
		}
	} else {
		b, err := io.ReadAll(body)
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "query larger than 64 KiB")
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
	case errors.Is(err, warehouse.ErrQueryBusy):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeError(w, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, warehouse.ErrInvalidQuery):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	default:
		writeBody(w, http.StatusOK, encodeResult(cols, rows))
	}
}

// encodeResult renders {"columns": [...], "rows": [[...], ...]}; see appendValue for the values.
func encodeResult(cols []string, rows [][]any) []byte {
	b := make([]byte, 0, min(64+len(rows)*len(cols)*16, 1<<20))
	b = append(b, `{"columns":[`...)
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c)
	}
	b = append(b, `],"rows":[`...)
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendValue(b, row)
	}
	return append(b, "]}\n"...)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, err := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	if err != nil { // cannot happen for a string
		b = []byte(`{"error":"unencodable error"}`)
	}
	writeBody(w, status, append(b, '\n'))
}

// writeBody sends a body built in full beforehand, so a status is never followed by half a body.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
