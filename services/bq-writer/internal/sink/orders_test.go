package sink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

const ordersTestTopic = "orders"

// orderCounting sums what Write did with orders and events.
type orderCounting struct {
	warehouse.Warehouse
	mu     sync.Mutex
	events int
	orders warehouse.OrderResult
}

func (c *orderCounting) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	res, err := c.Warehouse.Write(ctx, group, b)
	if err == nil {
		c.mu.Lock()
		c.events += res.Inserted + res.Duplicates + res.Stale
		c.orders.Inserted += res.Orders.Inserted
		c.orders.Replaced += res.Orders.Replaced
		c.orders.Stale += res.Orders.Stale
		c.orders.Duplicates += res.Orders.Duplicates
		c.mu.Unlock()
	}
	return res, err
}

func (c *orderCounting) seen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.orders
	return c.events + o.Inserted + o.Replaced + o.Stale + o.Duplicates
}

// Events and orders from two topics in one group land in their tables in the same writes; an
// undecodable order and one the warehouse refuses are dead-lettered as orders.
func TestSinkRoutesOrdersAndDeadLettersBadOnes(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic, ordersTestTopic, deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	testOrdersRouting(t, newEnvOn(t, cluster.ListenAddrs(), testTopic), ordersTestTopic)
}

// The same on the local stack's Kafka, with topics of this test's own.
func TestIntegrationSinkRoutesOrders(t *testing.T) {
	e, name := newTopicEnv(t, "it-bqw-orders-ev-")
	ordersTopic := name + "-orders"
	if _, err := e.adm.CreateTopic(context.Background(), 2, 1, nil, ordersTopic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.adm.DeleteTopic(context.Background(), ordersTopic) })
	testOrdersRouting(t, e, ordersTopic)
}

// testOrdersRouting produces 10 events to e's topic and 7 order records to ordersTopic and checks
// what one sink run stores and dead-letters. Dead letters are read from the start of the
// dead-letter topic and matched by original topic.
func testOrdersRouting(t *testing.T, e *env, ordersTestTopic string) {
	ctx := context.Background()
	r, err := avroserde.New(avroserde.Config{URL: e.reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	orderCodec, err := r.Codec(ctx, avroserde.SubjectFor(ordersTestTopic), protoavro.Order)
	if err != nil {
		t.Fatal(err)
	}
	e.produce("e", 10)
	now := time.Now().UTC().Truncate(time.Millisecond)
	order := func(id string, v int64, lines int) []byte {
		o := events.Order{OrderID: id, UserID: "c-1", Status: "paid", OrderTimestamp: now, UpdatedAt: now.Add(time.Duration(v) * time.Second),
			Currency: "EUR", TotalMinor: 100 * int64(lines), Source: "api", OrderVersion: v}
		for n := range lines {
			o.Items = append(o.Items, events.OrderItem{ProductID: fmt.Sprint("p", n), Quantity: 1, UnitPriceMinor: 100})
		}
		b, err := orderCodec.Encode(&o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// All by key order_id, so each order's versions are in one partition, in this order.
	for _, rec := range []struct {
		key string
		v   []byte
	}{
		{"o-1", order("o-1", 2, 2)},
		{"o-1", order("o-1", 1, 5)}, // older, after the newer one: stale
		{"o-2", order("o-2", 1, 1)},
		{"o-2", order("o-2", 1, 1)}, // the same version again (poll and webhook): one row
		{"o-3", []byte("not avro")}, // undecodable: dead-lettered by the decode middleware
		{"o-4", order("", 1, 1)},    // decodes, but the warehouse refuses it (no order_id)
		{"o-2", order("o-2", 3, 3)}, // newer: replaces the row and its lines
	} {
		if err := e.prod.ProduceSync(ctx, &kgo.Record{Topic: ordersTestTopic, Key: []byte(rec.key), Value: rec.v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	d, err := warehouse.OpenDuckDB(tempFile(t, "w.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	wh := &orderCounting{Warehouse: d}
	cfg := e.config(e.topic)
	cfg.OrdersTopic, cfg.OrderCodec = ordersTestTopic, orderCodec
	s := start(t, cfg, wh)
	deadline := time.Now().Add(10 * time.Second)
	for wh.seen() < 10+5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	wh.mu.Lock()
	got := wh.orders
	wh.mu.Unlock()
	if want := (warehouse.OrderResult{Inserted: 2, Replaced: 1, Stale: 1, Duplicates: 1}); got != want {
		// In one batch o-2 v3 wins at once and both v1 copies are older than it: stale.
		alt := warehouse.OrderResult{Inserted: 2, Stale: 3}
		if got != alt {
			t.Errorf("orders %+v, want %+v or %+v", got, want, alt)
		}
	}
	_, rows, err := d.Query(ctx, `SELECT o.order_id, o.order_version, count(*) FROM fact_orders o JOIN fact_order_items i USING (order_id, order_version)
GROUP BY ALL ORDER BY 1`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(rows); s != "[[o-1 2 2] [o-2 3 3]]" {
		t.Errorf("stored orders %s, want [[o-1 2 2] [o-2 3 3]]", s)
	}
	_, rows, err = d.Query(ctx, `SELECT count(*) FROM fact_events`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rows) != "[[10]]" {
		t.Errorf("fact_events %v, want 10 rows", rows)
	}
	pos, err := d.Positions(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	var orderNext int64
	for p, v := range pos {
		if p.Topic == ordersTestTopic {
			orderNext += v.Next
		}
	}
	if orderNext != 7 {
		t.Errorf("orders positions sum to %d, want 7 (all records covered): %v", orderNext, pos)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(deadletter.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dls []events.DeadLetter
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(dls) < 2 && pctx.Err() == nil {
		for _, rec := range cl.PollFetches(pctx).Records() {
			var dl events.DeadLetter
			if _, err := e.dlq.Decode(ctx, rec.Value, &dl); err != nil {
				continue // another test's, in another registry
			}
			if dl.SourceTopic == ordersTestTopic {
				dls = append(dls, dl)
			}
		}
	}
	codes := map[string]int{}
	for _, dl := range dls {
		if dl.Entity == nil || *dl.Entity != protoavro.Order {
			t.Errorf("dead letter entity %v, want order", dl.Entity)
		}
		codes[dl.Reasons[0].Code]++
	}
	if len(dls) != 2 || codes[string(deadletter.Undecodable)] != 1 || codes[string(deadletter.InvalidValue)] != 1 {
		t.Errorf("dead letters by code %v (%d), want 1 UNDECODABLE and 1 INVALID_VALUE", codes, len(dls))
	}
}
