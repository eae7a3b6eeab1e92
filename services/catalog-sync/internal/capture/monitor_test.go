package capture

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
)

// TestReady: /readyz wants the stream streaming and the slot present with
// its WAL; retained WAL above the threshold only flags the gauge.
func TestReady(t *testing.T) {
	tests := []struct {
		name      string
		streaming bool
		h         cdc.SlotHealth
		err       error
		wantErr   string
		wantOver  bool
	}{
		{name: "streaming, slot fine", streaming: true, h: cdc.SlotHealth{Exists: true, Active: true, RetainedWALBytes: 10}},
		{name: "not streaming", h: cdc.SlotHealth{Exists: true}, wantErr: "not streaming"},
		{name: "slot missing", streaming: true, wantErr: "does not exist"},
		{name: "WAL lost", streaming: true, h: cdc.SlotHealth{Exists: true, WALStatus: "lost"}, wantErr: "lost its WAL", wantOver: true},
		{name: "over the threshold", streaming: true, h: cdc.SlotHealth{Exists: true, RetainedWALBytes: 2000}, wantOver: true},
		{name: "database down", streaming: true, err: errors.New("connection refused"), wantErr: "connection refused"},
	}
	for _, tt := range tests {
		m := &Monitor{Slot: "s", WarnBytes: 1000, Streaming: func() bool { return tt.streaming },
			Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			check: func(context.Context) (cdc.SlotHealth, error) { return tt.h, tt.err }}
		err := m.Ready(context.Background())
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Ready = %v, want %q", tt.name, err, tt.wantErr)
		}
		if got := m.over(tt.h); got != tt.wantOver {
			t.Errorf("%s: over = %v, want %v", tt.name, got, tt.wantOver)
		}
	}
}
