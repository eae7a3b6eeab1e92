package slice

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOrdersMaxAhead: the validator's ORDER_MAX_AHEAD grows with the
// simulator's speed and stays a positive duration the validator accepts at
// any speed (speed x 24h overflows time.Duration above ~106751).
func TestOrdersMaxAhead(t *testing.T) {
	tests := []struct {
		name  string
		speed float64
		want  time.Duration // 0 = not set
	}{
		{"wall clock", 1, 0},
		{"an hour a second", 3600, 3600 * 24 * time.Hour},
		{"ten shop hours a second", 36000, 36000 * 24 * time.Hour},
		{"a day a second (capped)", 86400, maxAhead},
		{"two days a second", 172800, maxAhead},
		{"absurd", 1e12, maxAhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t.", Orders: &OrdersOptions{Speed: tt.speed}})
			if err != nil {
				t.Fatal(err)
			}
			var got time.Duration
			for _, kv := range s.Procs["validator"].Env {
				if v, ok := strings.CutPrefix(kv, "ORDER_MAX_AHEAD="); ok {
					if got, err = time.ParseDuration(v); err != nil {
						t.Fatalf("ORDER_MAX_AHEAD=%s: %v", v, err)
					}
				}
			}
			if got != tt.want || (tt.want != 0 && got <= 0) {
				t.Errorf("speed %g: ORDER_MAX_AHEAD %s, want %s", tt.speed, got, tt.want)
			}
		})
	}
}

// TestNamesOrder: Names is the pipeline upstream first (Stop's order: the
// storefront stops before its webhook receiver), Start goes downstream first
// with the storefront last.
func TestNamesOrder(t *testing.T) {
	tests := []struct {
		name      string
		orders    *OrdersOptions
		wantNames []string
	}{
		{"clickstream", nil, []string{"ingest-clickstream", "validator", "bq-writer"}},
		{"orders", &OrdersOptions{}, []string{"storefront", "ingest-orders", "ingest-clickstream", "validator", "bq-writer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t.", Orders: tt.orders})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Names, tt.wantNames) {
				t.Errorf("Names %v, want %v", s.Names, tt.wantNames)
			}
			want := slices.Clone(tt.wantNames)
			slices.Reverse(want)
			if got := s.StartOrder(); !slices.Equal(got, want) {
				t.Errorf("StartOrder %v, want %v", got, want)
			}
			if len(s.Names) != len(s.Procs) {
				t.Errorf("%d names, %d processes", len(s.Names), len(s.Procs))
			}
		})
	}
}
