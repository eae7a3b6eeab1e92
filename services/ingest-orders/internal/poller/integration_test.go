package poller

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/ordertest"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

// liveEnv is a pair of topics (orders, cursor) and a transactional id on
// the local stack's Kafka, removed when the test ends.
type liveEnv struct {
	t                  *testing.T
	opts               []kgo.Opt
	orders, cursorName string
	cursorTopic, txnID string
}

func newLiveEnv(t *testing.T, prefix string) *liveEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (deploy/local/stack.sh up); skipped under -short")
	}
	brokers := strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), ",")
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(0))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := adm.BrokerMetadata(ctx); err != nil {
		t.Fatalf("kafka %v not reachable: %v\nstart the local stack with: deploy/local/stack.sh up   (or: make stack-up)", brokers, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	e := &liveEnv{t: t, opts: opts, orders: name + ".orders", cursorTopic: name + ".cursor", cursorName: "live", txnID: name + "-txn"}
	cfg := stream.Config{TopicPartitions: 3, TopicReplication: 1}
	if err := stream.EnsureTopics(ctx, adm, cfg, stream.TopicSpec{Name: e.orders}, cursor.Topic(e.cursorTopic)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), e.orders, e.cursorTopic) })
	return e
}

// instance is one replica: its transactional client fenced in, its cursor
// loaded, its poller reading api.
func (e *liveEnv) instance(answers ...answer) (*Poller, *kgo.Client) {
	e.t.Helper()
	txn, err := kgo.NewClient(append(e.opts, kgo.TransactionalID(e.txnID), kgo.TransactionTimeout(10*time.Second))...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(txn.Close)
	ctx := context.Background()
	if err := cursor.Fence(ctx, txn); err != nil {
		e.t.Fatal(err)
	}
	start, _, err := cursor.Load(ctx, e.opts, e.cursorTopic, e.cursorName)
	if err != nil {
		e.t.Fatal(err)
	}
	api := ordertest.NewAPI(e.t, answers...)
	p, err := New(Config{Interval: time.Second, Overlap: 2 * time.Minute, PageSize: 10, CursorName: e.cursorName, CursorTopic: e.cursorTopic,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, StaleAfter: time.Minute}, Deps{
		API: api.Client(),
		Txn: txn, Orders: jsonEncoder{}, Topic: e.orders, Start: start, Meter: noop.NewMeterProvider().Meter("t"),
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p, txn
}

// read returns the orders topic's records as id@version, read_committed or
// not.
func (e *liveEnv) read(committed bool) []string {
	e.t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	var out []string
	for _, r := range ordertest.Records(e.t, 2*time.Second, e.orders, append(e.opts, kgo.FetchIsolationLevel(iso))...) {
		var o events.Order
		_ = json.Unmarshal(r.Value, &o)
		out = append(out, fmt.Sprintf("%s@%d", o.OrderID, o.OrderVersion))
	}
	slices.Sort(out) // partitions interleave in any order
	return out
}

func (e *liveEnv) cursor() (cursor.Cursor, bool) {
	e.t.Helper()
	c, ok, err := cursor.Load(context.Background(), e.opts, e.cursorTopic, e.cursorName)
	if err != nil {
		e.t.Fatal(err)
	}
	return c, ok
}

// TestIntegrationSecondInstanceFencesTheFirst: a second replica of the
// cursor starts from the first's committed cursor, and from then on the
// first can commit nothing: its next page fails with a fencing error, which
// stops its Run, and neither its orders nor its cursor become visible.
func TestIntegrationSecondInstanceFencesTheFirst(t *testing.T) {
	e := newLiveEnv(t, "it-orders-fence-")
	a1, b1, c1 := order("o-a", 1, time.Second), order("o-b", 1, 2*time.Second), order("o-c", 1, 3*time.Second)
	first, _ := e.instance(answer{Page: []storefront.Order{a1}}, answer{Page: []storefront.Order{b1}})
	ctx := context.Background()
	if err := first.Round(ctx); err != nil {
		t.Fatal(err)
	}

	second, _ := e.instance(answer{Page: []storefront.Order{c1}})
	if !second.Cursor().Since.Equal(a1.UpdatedAt) {
		t.Fatalf("second instance starts at %v, want the first's cursor %v", second.Cursor().Since, a1.UpdatedAt)
	}
	// The first instance's next page meets the fence: Run stops with the
	// fencing error instead of retrying for ever.
	first.sleep = func(context.Context, time.Duration) error { return nil }
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := first.Run(rctx); !stream.IsFatal(err) {
		t.Fatalf("fenced Run() = %v, want a fencing error", err)
	}
	if err := second.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(e.read(true)), "[o-a@1 o-c@1]"; got != want {
		t.Errorf("committed orders %v, want %v (the fenced instance's o-b must not be visible)", got, want)
	}
	if c, _ := e.cursor(); !c.Since.Equal(c1.UpdatedAt) {
		t.Errorf("cursor %v, want %v", c.Since, c1.UpdatedAt)
	}
}

// TestIntegrationCrashBetweenProduceAndCommit: an instance that produced a
// page's orders and cursor but died before committing leaves nothing
// visible: the next instance's initialisation aborts the open transaction,
// so it reads the old cursor and re-reads the page.
func TestIntegrationCrashBetweenProduceAndCommit(t *testing.T) {
	e := newLiveEnv(t, "it-orders-crash-")
	a1, b1 := order("o-a", 1, time.Second), order("o-b", 1, 2*time.Second)
	first, txn := e.instance(answer{Page: []storefront.Order{a1}})
	ctx := context.Background()
	if err := first.Round(ctx); err != nil {
		t.Fatal(err)
	}
	// The crash: orders and cursor produced (and acknowledged) in an open
	// transaction that is never ended.
	v, _ := json.Marshal(b1.Event(storefront.SourceAPI, time.Now(), nil))
	cr, err := cursor.Record(e.cursorTopic, e.cursorName, cursor.Cursor{Since: b1.UpdatedAt})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: e.orders, Key: []byte(b1.ID), Value: v}, cr).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.read(false); len(got) != 2 {
		t.Fatalf("uncommitted orders %v: the open transaction's order should be in the log", got)
	}

	second, _ := e.instance(answer{Page: []storefront.Order{a1, b1}})
	if !second.Cursor().Since.Equal(a1.UpdatedAt) {
		t.Errorf("second instance starts at %v, want the last committed cursor %v", second.Cursor().Since, a1.UpdatedAt)
	}
	if got, want := fmt.Sprint(e.read(true)), "[o-a@1]"; got != want {
		t.Errorf("committed orders %v, want %v", got, want)
	}
	if err := second.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(e.read(true)), "[o-a@1 o-a@1 o-b@1]"; got != want {
		t.Errorf("committed orders after the restart %v, want %v (o-a repeated by the overlap, o-b once)", got, want)
	}
	if c, _ := e.cursor(); !c.Since.Equal(b1.UpdatedAt) {
		t.Errorf("cursor %v, want %v", c.Since, b1.UpdatedAt)
	}
}
