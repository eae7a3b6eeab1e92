package prodmodel

import (
	"slices"
	"testing"
)

func TestRelations(t *testing.T) {
	rels, err := Relations()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]string{}
	var names []string
	for _, r := range rels {
		byName[r.Name] = r.Columns
		names = append(names, r.Name)
	}
	wantNames := []string{"dim_date", "dim_products", "dim_users", "fact_events", "fact_orders", "fact_order_items",
		"fact_events_pit", "fact_orders_pit", "fact_order_items_pit"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("relations %v, want %v", names, wantNames)
	}
	tests := []struct {
		rel   string
		n     int
		first string
		last  []string
	}{
		{"dim_date", 9, "date_key", []string{"is_weekend"}},
		{"dim_products", 18, "product_key", []string{"loaded_at"}},
		{"dim_users", 16, "user_key", []string{"loaded_at"}},
		{"fact_events", 33, "event_id", []string{"dq_warnings"}},
		{"fact_orders", 29, "order_id", []string{"loaded_at"}},
		{"fact_order_items", 10, "order_id", []string{"loaded_at"}},
		{"fact_events_pit", 35, "event_id", []string{"dq_warnings", "product_key", "user_key"}},
		{"fact_orders_pit", 30, "order_id", []string{"loaded_at", "user_key"}},
		{"fact_order_items_pit", 12, "order_id", []string{"loaded_at", "order_timestamp", "product_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			cols := byName[tt.rel]
			if len(cols) != tt.n || cols[0] != tt.first || !slices.Equal(cols[len(cols)-len(tt.last):], tt.last) {
				t.Fatalf("columns %v: want %d from %s to %v", cols, tt.n, tt.first, tt.last)
			}
		})
	}
}

func TestResolveSelect(t *testing.T) {
	known := map[string][]string{"a": {"x", "y"}}
	tests := []struct {
		name, body string
		want       []string
		wantErr    bool
	}{
		{"star and column", "\nSELECT t.*, u.k\nFROM `p.prod.a` t\nJOIN `p.prod.b` u ON true", []string{"x", "y", "k"}, false},
		{"unknown star", "\nSELECT u.*\nFROM `p.prod.b` u", nil, true},
		{"bare column", "\nSELECT k\nFROM `p.prod.a` t", nil, true},
		{"no from", "\nSELECT t.k", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveSelect(tt.body, known)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("resolveSelect = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
