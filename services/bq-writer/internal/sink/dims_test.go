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

const (
	productsTestTopic  = "products"
	customersTestTopic = "customers"
)

// dimCounting sums what Write did with the dimension changes.
type dimCounting struct {
	warehouse.Warehouse
	mu       sync.Mutex
	products warehouse.DimResult
	users    warehouse.DimResult
}

func (c *dimCounting) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	res, err := c.Warehouse.Write(ctx, group, b)
	if err == nil {
		c.mu.Lock()
		for _, p := range []struct{ sum, add *warehouse.DimResult }{{&c.products, &res.Products}, {&c.users, &res.Users}} {
			p.sum.Logged += p.add.Logged
			p.sum.Duplicates += p.add.Duplicates
			p.sum.Stale += p.add.Stale
			p.sum.Versions += p.add.Versions
		}
		c.mu.Unlock()
	}
	return res, err
}

func (c *dimCounting) seen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.products.Logged + c.products.Duplicates + c.users.Logged + c.users.Duplicates
}

// Product and customer changes from their own topics land in dim_products and dim_users, in
// source order whatever the arrival order; undecodable and unstorable changes are dead-lettered
// under their entity.
func TestSinkRoutesDimensions(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic, productsTestTopic, customersTestTopic, deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	testDimRouting(t, newEnvOn(t, cluster.ListenAddrs(), testTopic), productsTestTopic, customersTestTopic)
}

// The same on the local stack's Kafka, with topics of this test's own.
func TestIntegrationSinkRoutesDimensions(t *testing.T) {
	e, name := newTopicEnv(t, "it-bqw-dims-ev-")
	products, customers := name+"-products", name+"-customers"
	if _, err := e.adm.CreateTopics(context.Background(), 2, 1, nil, products, customers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.adm.DeleteTopics(context.Background(), products, customers) })
	testDimRouting(t, e, products, customers)
}

func testDimRouting(t *testing.T, e *env, productsTopic, customersTopic string) {
	ctx := context.Background()
	r, err := avroserde.New(avroserde.Config{URL: e.reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	productCodec, err := r.Codec(ctx, avroserde.SubjectFor(productsTopic), protoavro.ProductChange)
	if err != nil {
		t.Fatal(err)
	}
	customerCodec, err := r.Codec(ctx, avroserde.SubjectFor(customersTopic), protoavro.CustomerChange)
	if err != nil {
		t.Fatal(err)
	}
	e.produce("e", 3)
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	product := func(id string, lsn, price int64) []byte {
		ch := t0.Add(time.Duration(lsn) * time.Minute)
		p := events.ProductChange{ProductID: id, Op: "upsert", Sku: ptr("SKU-1"), Name: "Mug", PriceMinor: price, Currency: "EUR", IsActive: true,
			UpdatedAt: ch, SyncedAt: ch, Source: "cdc", SourceLsn: lsn, SourceOrdinal: 1, ChangedAt: &ch}
		b, err := productCodec.Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	customer := func(id string, lsn int64, email, country string) []byte {
		ch := t0.Add(time.Duration(lsn) * time.Minute)
		c := events.CustomerChange{CustomerID: id, Op: "upsert", Email: ptr(email), Name: ptr("Jane Doe"), Country: ptr(country), IsActive: true,
			UpdatedAt: ch, SyncedAt: ch, Source: "cdc", SourceLsn: lsn, SourceOrdinal: 1, ChangedAt: &ch}
		b, err := customerCodec.Encode(&c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, rec := range []struct {
		topic, key string
		v          []byte
	}{
		{productsTopic, "p-1", product("p-1", 3, 120)},
		{productsTopic, "p-1", product("p-1", 1, 100)}, // late: put before the newer one
		{productsTopic, "p-1", product("p-1", 3, 120)}, // replay: a no-op
		{productsTopic, "p-2", []byte("not avro")},     // dead-lettered by the decode middleware
		{productsTopic, "p-3", product("", 1, 1)},      // the warehouse refuses it (no product_id)
		{customersTopic, "u-1", customer("u-1", 1, "Jane@Example.com", "DE")},
		{customersTopic, "u-1", customer("u-1", 2, "jane@example.com", "FR")},
		{customersTopic, "u-2", []byte("not avro")},
	} {
		if err := e.prod.ProduceSync(ctx, &kgo.Record{Topic: rec.topic, Key: []byte(rec.key), Value: rec.v}).FirstErr(); err != nil {
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
	wh := &dimCounting{Warehouse: d}
	cfg := e.config(e.topic)
	key := []byte("sink-test-email-hash-key-0123456789")
	cfg.ProductsTopic, cfg.ProductCodec, cfg.CustomersTopic, cfg.CustomerCodec, cfg.EmailHashKey = productsTopic, productCodec, customersTopic, customerCodec, key
	s := start(t, cfg, wh)
	deadline := time.Now().Add(10 * time.Second)
	for wh.seen() < 3+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	wh.mu.Lock()
	gotP, gotU := wh.products, wh.users
	wh.mu.Unlock()
	if gotP.Logged != 2 || gotP.Duplicates != 1 || gotU.Logged != 2 || gotU.Duplicates != 0 {
		t.Errorf("products %+v, users %+v", gotP, gotU)
	}
	_, rows, err := d.Query(ctx, `SELECT product_id, price_minor, valid_to IS NULL, is_current FROM dim_products ORDER BY valid_from`, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(rows); s != "[[p-1 100 false false] [p-1 120 true true]]" {
		t.Errorf("dim_products %s", s)
	}
	_, rows, err = d.Query(ctx, `SELECT country, email_hash, email_domain FROM dim_users ORDER BY valid_from`, 10)
	if err != nil {
		t.Fatal(err)
	}
	h := warehouse.EmailHash(key, "jane@example.com")
	if s := fmt.Sprint(rows); s != fmt.Sprintf("[[DE %s example.com] [FR %s example.com]]", h, h) {
		t.Errorf("dim_users %s", s)
	}
	pos, err := d.Positions(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for p, v := range pos {
		sums[p.Topic] += v.Next
	}
	if sums[productsTopic] != 5 || sums[customersTopic] != 3 {
		t.Errorf("positions %v: want all 5 product and 3 customer records covered", sums)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(deadletter.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	byEntity := map[string]int{}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for n := 0; n < 3 && pctx.Err() == nil; {
		for _, rec := range cl.PollFetches(pctx).Records() {
			var dl events.DeadLetter
			if _, err := e.dlq.Decode(ctx, rec.Value, &dl); err != nil {
				continue // another test's, in another registry
			}
			if (dl.SourceTopic == productsTopic || dl.SourceTopic == customersTopic) && dl.Entity != nil {
				byEntity[dl.SourceTopic+" "+*dl.Entity+" "+dl.Reasons[0].Code]++
				n++
			}
		}
	}
	want := map[string]int{
		productsTopic + " " + protoavro.ProductChange + " " + string(deadletter.Undecodable):   1,
		productsTopic + " " + protoavro.ProductChange + " " + string(deadletter.InvalidValue):  1,
		customersTopic + " " + protoavro.CustomerChange + " " + string(deadletter.Undecodable): 1,
	}
	if fmt.Sprint(byEntity) != fmt.Sprint(want) {
		t.Errorf("dead letters %v, want %v", byEntity, want)
	}
}

// A dimension topic equal to another input topic, or customers without a hash key, is refused.
func TestSinkDimensionConfig(t *testing.T) {
	e := newEnv(t)
	c := e.codec
	tests := []struct {
		name string
		set  func(*Config)
	}{
		{"products is the events topic", func(cfg *Config) { cfg.ProductsTopic, cfg.ProductCodec = testTopic, c }},
		{"customers is the products topic", func(cfg *Config) {
			cfg.ProductsTopic, cfg.ProductCodec, cfg.CustomersTopic, cfg.CustomerCodec, cfg.EmailHashKey = "p", c, "p", c, []byte("k")
		}},
		{"products without codec", func(cfg *Config) { cfg.ProductsTopic = "p" }},
		{"customers without key", func(cfg *Config) { cfg.CustomersTopic, cfg.CustomerCodec = "c", c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config("g")
			tt.set(&cfg)
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
