package bqwh

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/proto"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

const (
	project = "proj"
	dataset = "ecom_raw"
	group   = "bq-writer"
)

// Topics of the test's partitions, one entity each, all partition 0.
var (
	pEvents   = warehouse.Partition{Topic: "clicks.valid", Partition: 0}
	pOrders   = warehouse.Partition{Topic: "orders.valid", Partition: 0}
	pProducts = warehouse.Partition{Topic: "catalog.products", Partition: 0}
	pUsers    = warehouse.Partition{Topic: "catalog.customers", Partition: 0}
	allParts  = []warehouse.Partition{pEvents, pOrders, pProducts, pUsers}
	entities  = map[warehouse.Partition]warehouse.Entity{pEvents: warehouse.EntityEvent, pOrders: warehouse.EntityOrder,
		pProducts: warehouse.EntityProduct, pUsers: warehouse.EntityUser}
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// testCatalog is a Catalog on the fake's tables.
type testCatalog struct {
	fake *bqfake.Server
	// schemas are created by Migrate; tests may change them first.
	schemas map[string]*storagepb.TableSchema

	mu    sync.Mutex
	added map[string][]string
}

// tableSchemaFor is a raw table's schema as the DDL has it: the writer's columns, some REQUIRED.
func tableSchemaFor(table string) *storagepb.TableSchema {
	key := map[string][]string{TableEvents: {"event_id"}, TableOrders: {"order_id"}, TableOrderItems: {"order_id", "product_id"},
		TableProducts: {"product_id", "op"}, TableUsers: {"user_id", "op"}}[table]
	required := map[string]bool{"source_topic": true, "source_partition": true, "source_offset": true, "loaded_at": true}
	for _, k := range key {
		required[k] = true
	}
	s := &storagepb.TableSchema{}
	for _, c := range writerColumns[table] {
		mode := storagepb.TableFieldSchema_NULLABLE
		if required[c.name] {
			mode = storagepb.TableFieldSchema_REQUIRED
		}
		s.Fields = append(s.Fields, &storagepb.TableFieldSchema{Name: c.name, Type: c.typ, Mode: mode})
	}
	return s
}

func newCatalog(fake *bqfake.Server) *testCatalog {
	c := &testCatalog{fake: fake, schemas: map[string]*storagepb.TableSchema{}, added: map[string][]string{}}
	for _, t := range Tables {
		c.schemas[t] = tableSchemaFor(t)
	}
	return c
}

func (c *testCatalog) Migrate(context.Context) error {
	for t, s := range c.schemas {
		if c.fake.Schema(bqfake.TablePath(project, dataset, t)) == nil {
			c.fake.CreateTable(bqfake.TablePath(project, dataset, t), s)
		}
	}
	return nil
}

func (c *testCatalog) Ping(context.Context) error { return nil }

func (c *testCatalog) Schema(_ context.Context, table string) (*storagepb.TableSchema, error) {
	s := c.fake.Schema(bqfake.TablePath(project, dataset, table))
	if s == nil {
		return nil, fmt.Errorf("no table %s", table)
	}
	return s, nil
}

func (c *testCatalog) AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error) {
	s, err := c.Schema(ctx, table)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, col := range cols {
		if findField(s.GetFields(), col.GetName()) == nil {
			s.Fields = append(s.Fields, proto.CloneOf(col))
			c.added[table] = append(c.added[table], col.GetName())
		}
	}
	c.fake.CreateTable(bqfake.TablePath(project, dataset, table), s)
	return s, nil
}

// env is one fake, its catalog and the Kafka commits the test keeps for the group.
type env struct {
	fake    *bqfake.Server
	cat     *testCatalog
	commits map[warehouse.Partition]warehouse.Commit
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake, err := bqfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	return &env{fake: fake, cat: newCatalog(fake), commits: map[warehouse.Partition]warehouse.Commit{}}
}

// open starts a writer (a process), claims every partition from the kept commits and commits
// the claim, as the sink does before it consumes.
func (e *env) open(t *testing.T, cfg Config) *Warehouse {
	t.Helper()
	w := e.claimed(t, cfg)
	e.commitClaim(t, w)
	return w
}

// claimed starts a writer and claims every partition, without the claim's commit (a crash right
// after the claim).
func (e *env) claimed(t *testing.T, cfg Config) *Warehouse {
	t.Helper()
	w := e.openUnclaimed(t, cfg)
	e.claim(t, w)
	return w
}

// claim claims every test partition with the kept commits.
func (e *env) claim(t *testing.T, w *Warehouse) {
	t.Helper()
	if _, err := w.Claim(context.Background(), group, e.assignments()); err != nil {
		t.Fatalf("claim: %v", err)
	}
}

// assignments are the test partitions with their entities and kept commits.
func (e *env) assignments() map[warehouse.Partition]warehouse.Assignment {
	out := map[warehouse.Partition]warehouse.Assignment{}
	for _, p := range allParts {
		a := warehouse.Assignment{Entity: entities[p]}
		if c, ok := e.commits[p]; ok {
			a.Commit = &c
		}
		out[p] = a
	}
	return out
}

// commitClaim commits every partition at its committed offset (0 when never committed) with the
// metadata of an empty Write: the sink's commit after a claim.
func (e *env) commitClaim(t *testing.T, w *Warehouse) {
	t.Helper()
	b := warehouse.Batch{Positions: map[warehouse.Partition]int64{}}
	for _, p := range allParts {
		b.Positions[p] = e.commits[p].Next
	}
	res, err := w.Write(context.Background(), group, b)
	if err != nil {
		t.Fatalf("claim commit: %v", err)
	}
	e.commit(t, b, res)
}

func (e *env) openUnclaimed(t *testing.T, cfg Config) *Warehouse {
	t.Helper()
	cfg.Project, cfg.RawDataset, cfg.Catalog, cfg.ApplyDDL = project, dataset, e.cat, true
	opts, err := e.fake.ProcessOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientOptions = opts
	w, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	w.retry = retryPolicy{attempts: 5, base: time.Millisecond, max: 5 * time.Millisecond, getTimeout: 5 * time.Second}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return w
}

// commit is the sink's Kafka commit of a written batch.
func (e *env) commit(t *testing.T, b warehouse.Batch, res warehouse.WriteResult) {
	t.Helper()
	for p, next := range b.Positions {
		md, ok := res.Commits[p]
		if !ok {
			t.Fatalf("no commit metadata for %v", p)
		}
		e.commits[p] = warehouse.Commit{Next: next, Metadata: md}
	}
}

// next is where the group resumes: the committed offset of pEvents (all partitions move together).
func (e *env) next() int64 { return e.commits[pEvents].Next }

func (e *env) rows(table string) []bqfake.Row {
	return e.fake.Rows(bqfake.TablePath(project, dataset, table))
}

func sp(s string) *string { return &s }
func i64(v int64) *int64  { return &v }

// batch holds one record per offset in [from, to) of every test partition: an event, an order
// with two lines, a product change and a customer change.
func batch(from, to int64) warehouse.Batch {
	b := warehouse.Batch{Positions: map[warehouse.Partition]int64{}}
	for _, p := range allParts {
		b.Positions[p] = to
	}
	for off := from; off < to; off++ {
		b.Events = append(b.Events, warehouse.EventRow{
			ClickEvent: events.ClickEvent{EventID: fmt.Sprintf("e-%d", off), EventTimestamp: t0.Add(time.Duration(off) * time.Second),
				ReceivedAt: t0, EventType: "page_view", SessionID: "s-1", PageURL: "https://shop.example/p", Source: "kafka",
				UserID: sp("u-1"), PriceMinor: i64(1999)},
			TraceID: "0af7651916cd43dd8448eb211c80319c", DQWarnings: "click.commerce_fields",
			SourceTopic: pEvents.Topic, SourcePartition: pEvents.Partition, SourceOffset: off,
		})
		b.Orders = append(b.Orders, warehouse.OrderRow{
			Order: events.Order{OrderID: fmt.Sprintf("o-%d", off), UserID: "u-1", Status: "created", OrderTimestamp: t0, UpdatedAt: t0,
				Currency: "USD", SubtotalMinor: 3000, TotalMinor: 3000, Source: "api", OrderVersion: 1,
				Items: []events.OrderItem{{ProductID: "p-1", Quantity: 1, UnitPriceMinor: 1000}, {ProductID: "p-2", Quantity: 2, UnitPriceMinor: 1000, LineID: sp("l-2")}}},
			SourceTopic: pOrders.Topic, SourcePartition: pOrders.Partition, SourceOffset: off,
		})
		b.Products = append(b.Products, warehouse.ProductRow{
			ProductChange: events.ProductChange{ProductID: fmt.Sprintf("p-%d", off), Op: warehouse.OpUpsert, Name: "Mug", PriceMinor: 900,
				Currency: "USD", IsActive: true, UpdatedAt: t0, SyncedAt: t0, Source: "cdc", SourceLsn: 100 + off, SourceOrdinal: 1},
			SourceTopic: pProducts.Topic, SourcePartition: pProducts.Partition, SourceOffset: off,
		})
		b.Users = append(b.Users, warehouse.UserRow{
			UserID: fmt.Sprintf("c-%d", off), Op: warehouse.OpUpsert, Country: sp("DE"), IsActive: true, UpdatedAt: t0, SyncedAt: t0,
			Source: "cdc", SourceLsn: 100 + off, SourceOrd: 1,
			SourceTopic: pUsers.Topic, SourcePartition: pUsers.Partition, SourceOffset: off,
		})
	}
	return b
}

// copies counts the rows of a raw table per source record (offset, and line number for lines).
func copies(rows []bqfake.Row) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		k := fmt.Sprint(r["source_topic"], "/", r["source_partition"], "@", r["source_offset"])
		if ln, ok := r["line_number"]; ok {
			k += fmt.Sprint("#", ln)
		}
		out[k]++
	}
	return out
}

// checkExactlyOnce asserts one row per source record of offsets [0, n) in every raw table.
func checkExactlyOnce(t *testing.T, e *env, n int64) {
	t.Helper()
	for _, table := range Tables {
		want := n
		if table == TableOrderItems {
			want = 2 * n
		}
		got := copies(e.rows(table))
		var dups []string
		for k, c := range got {
			if c != 1 {
				dups = append(dups, fmt.Sprintf("%s x%d", k, c))
			}
		}
		if len(dups) > 0 || int64(len(got)) != want {
			t.Errorf("%s: %d distinct records (want %d), not once: %s", table, len(got), want, strings.Join(dups, ", "))
		}
	}
}

func attributeKey(k string) attribute.Key { return attribute.Key(k) }
