package httpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestEvaluateObserved: every /readyz and every Evaluate reaches the
// readiness observer with each check's outcome in registration order; a
// round whose context ended is not observed (its failures are the
// cancellation's).
func TestEvaluateObserved(t *testing.T) {
	down := errors.New("down")
	tests := []struct {
		name   string
		run    func(t *testing.T, s *Server)
		want   []CheckResult // nil: no round observed
		rounds int
	}{
		{"readyz", func(t *testing.T, s *Server) {
			if code, _ := get(t, "http://"+start(t, s)+"/readyz", ""); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz %d, want 503", code)
			}
		}, []CheckResult{{"kafka", nil}, {"warehouse", down}}, 1},
		{"evaluate", func(_ *testing.T, s *Server) { s.Evaluate(context.Background()) },
			[]CheckResult{{"kafka", nil}, {"warehouse", down}}, 1},
		{"cancelled", func(_ *testing.T, s *Server) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			s.Evaluate(ctx)
		}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]CheckResult
			s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Second, ReadyTimeout: time.Second},
				slog.New(slog.NewTextHandler(io.Discard, nil)), nil,
				WithReadinessObserver(func(r []CheckResult) { got = append(got, append([]CheckResult(nil), r...)) }))
			s.AddCheck("kafka", func(context.Context) error { return nil })
			s.AddCheck("warehouse", func(ctx context.Context) error { return errors.Join(down, ctx.Err()) })
			tt.run(t, s)
			if len(got) != tt.rounds {
				t.Fatalf("%d rounds observed, want %d: %v", len(got), tt.rounds, got)
			}
			if tt.rounds == 0 {
				return
			}
			r := got[0]
			if len(r) != len(tt.want) {
				t.Fatalf("observed %v, want %v", r, tt.want)
			}
			for i, w := range tt.want {
				if r[i].Name != w.Name || !errors.Is(r[i].Err, w.Err) || (w.Err == nil) != (r[i].Err == nil) {
					t.Errorf("check %d: %v, want %v", i, r[i], w)
				}
			}
		})
	}
}
