package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// seeding is a warehouse that tells its newest rows (warehouse.NewestReader).
type seeding struct {
	*memWarehouse
	newest map[string]time.Time
	err    error
}

func (s seeding) Newest(context.Context) (map[string]time.Time, error) { return s.newest, s.err }

// newestGauge collects ecom.warehouse.newest_row.timestamp by table.
func newestGauge(t *testing.T, rd *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "ecom.warehouse.newest_row.timestamp" {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit %q, want s (Prometheus name ..._timestamp_seconds)", m.Unit)
			}
			for _, p := range m.Data.(metricdata.Gauge[float64]).DataPoints {
				table, _ := p.Attributes.Value("table")
				out[table.AsString()] = p.Value
			}
		}
	}
	return out
}

// TestNewestRows: the gauge starts from the warehouse when it can tell (and is absent when it
// cannot), then advances with every committed batch's received_at / synced_at per table, and
// never moves back.
func TestNewestRows(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(1_760_000_000+int64(s), 0).UTC() }
	unix := func(s int) float64 { return float64(1_760_000_000 + s) }
	ev := func(s int) warehouse.EventRow {
		return warehouse.EventRow{ClickEvent: events.ClickEvent{EventID: "e", ReceivedAt: at(s), EventTimestamp: at(s + 3600)}}
	}
	ord := func(s int) warehouse.OrderRow {
		r := warehouse.OrderRow{}
		if s >= 0 {
			t := at(s)
			r.ReceivedAt = &t
		}
		r.UpdatedAt = at(99999) // the shop's clock: not used
		return r
	}
	prod := func(s int) warehouse.ProductRow {
		return warehouse.ProductRow{ProductChange: events.ProductChange{SyncedAt: at(s), UpdatedAt: at(99999)}}
	}
	tests := []struct {
		name    string
		wh      warehouse.Warehouse
		batches []warehouse.Batch
		want    map[string]float64
	}{
		// The start (50) stands in for the facts nothing seeded, until their first commit.
		{"nothing yet, no reader: the facts read the start", newMem(), nil, map[string]float64{"fact_events": unix(50), "fact_orders": unix(50)}},
		{"seeded", seeding{newMem(), map[string]time.Time{"fact_events": at(10), "dim_users": at(5)}, nil}, nil,
			map[string]float64{"fact_events": unix(10), "dim_users": unix(5), "fact_orders": unix(50)}},
		{"seed failure leaves it to the commits", seeding{newMem(), nil, errors.New("io")},
			[]warehouse.Batch{{Events: []warehouse.EventRow{ev(3)}}}, map[string]float64{"fact_events": unix(3), "fact_orders": unix(50)}},
		{"the first commit replaces the start, older or not", newMem(),
			[]warehouse.Batch{{Events: []warehouse.EventRow{ev(2)}}, {Events: []warehouse.EventRow{ev(1)}}},
			map[string]float64{"fact_events": unix(2), "fact_orders": unix(50)}},
		{"per table, newest of the batch", newMem(), []warehouse.Batch{{
			Events:   []warehouse.EventRow{ev(7), ev(9), ev(8)},
			Orders:   []warehouse.OrderRow{ord(4), ord(-1)},
			Products: []warehouse.ProductRow{prod(2)},
			Users:    []warehouse.UserRow{{SyncedAt: at(6)}},
		}}, map[string]float64{"fact_events": unix(9), "fact_orders": unix(4), "dim_products": unix(2), "dim_users": unix(6)}},
		{"a replay does not move it back", seeding{newMem(), map[string]time.Time{"fact_events": at(10)}, nil},
			[]warehouse.Batch{{Events: []warehouse.EventRow{ev(2)}}, {Events: []warehouse.EventRow{ev(12)}}, {Events: []warehouse.EventRow{ev(11)}}},
			map[string]float64{"fact_events": unix(12), "fact_orders": unix(50)}},
		{"v1 orders without received_at", newMem(), []warehouse.Batch{{Orders: []warehouse.OrderRow{ord(-1)}}}, map[string]float64{"fact_events": unix(50), "fact_orders": unix(50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := sdkmetric.NewManualReader()
			n, err := newNewestRows(sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t"))
			if err != nil {
				t.Fatal(err)
			}
			_ = n.seed(context.Background(), tt.wh, at(50))
			for i := range tt.batches {
				n.committed(&tt.batches[i])
			}
			got := newestGauge(t, rd)
			if len(got) != len(tt.want) {
				t.Fatalf("gauge %v, want %v", got, tt.want)
			}
			for table, w := range tt.want {
				if got[table] != w {
					t.Errorf("gauge %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestSinkReportsNewestRow: a running sink's committed batches move the gauge to the newest
// received_at of fact_events.
func TestSinkReportsNewestRow(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("newest")
	rd := sdkmetric.NewManualReader()
	cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t")
	before := time.Now()
	e.produce("n", 5)
	wh := &counting{Warehouse: newMem()}
	start(t, cfg, wh)
	wh.waitInserted(t, 5)
	var got float64
	for deadline := time.Now().Add(5 * time.Second); got == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got = newestGauge(t, rd)["fact_events"] // set just after Write returns
	}
	if got < float64(before.Add(-time.Second).Unix()) || got > float64(time.Now().Unix()+1) {
		t.Errorf("fact_events newest row at %v, want about %v (the events' received_at)", got, before.Unix())
	}
}
