package warehouse

import (
	"context"
	"testing"
	"time"
)

// TestDuckDBNewest: per table, the newest received_at (facts) or synced_at (dimension change
// logs) stored; a table without rows is absent.
func TestDuckDBNewest(t *testing.T) {
	tests := []struct {
		name  string
		write []Batch
		want  map[string]time.Time
	}{
		{"empty warehouse", nil, map[string]time.Time{}},
		{"events only", []Batch{batch(seq("e", 0, 0, 3)...)},
			map[string]time.Time{"fact_events": t0.Add(2*time.Second + 150*time.Millisecond)}},
		{"every table, newest across batches", []Batch{
			orderBatch(order(0, "o1", 3, 1), order(1, "o2", 1, 1)),
			dimBatch([]ProductRow{product(0, "p1", 5, 100)}, []UserRow{customer(0, "c1", 7, "a@example.com", "DE")}),
			batch(seq("e", 0, 0, 2)...),
			batch(seq("e", 0, 2, 1)...),
		}, map[string]time.Time{
			"fact_events":  t0.Add(2*time.Second + 150*time.Millisecond),
			"fact_orders":  t0.Add(3*time.Minute + time.Second),
			"dim_products": t0.Add(5*time.Minute + time.Second),
			"dim_users":    customer(0, "c1", 7, "a@example.com", "DE").SyncedAt,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			for _, b := range tt.write {
				mustWrite(t, d, b)
			}
			got, err := d.Newest(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Newest = %v, want %v", got, tt.want)
			}
			for table, w := range tt.want {
				if !got[table].Equal(w) {
					t.Errorf("%s: %v, want %v", table, got[table], w)
				}
			}
		})
	}
}
