package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// TestFailAnswers: a statement cancelled by the statement timeout is a
// 503 timeout (narrow the filter, try again), not an internal error.
func TestFailAnswers(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
	}{
		{"statement timeout", fmt.Errorf("list dead letters: %w", &pgconn.PgError{Code: "57014"}), http.StatusServiceUnavailable, "timeout"},
		{"bad request", &query.Error{Param: "q", Msg: "x"}, http.StatusBadRequest, "invalid_argument"},
		{"other server error", &pgconn.PgError{Code: "42P01"}, http.StatusInternalServerError, "internal"},
	}
	s := &server{log: slog.New(slog.DiscardHandler)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s.fail(w, httptest.NewRequestWithContext(context.Background(), "GET", "/v1/dead-letters", nil), "list", tt.err)
			var e struct{ Error struct{ Code string } }
			_ = json.Unmarshal(w.Body.Bytes(), &e)
			if w.Code != tt.wantStatus || e.Error.Code != tt.wantCode {
				t.Errorf("fail(%v) = %d %q, want %d %q", tt.err, w.Code, e.Error.Code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}
