package snapshot

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
	ddl "github.com/ecomstream/platform/sql"
)

const stackHint = `start the local stack (deploy/local/stack.sh up) and run with its env: eval "$(deploy/local/stack.sh env)"`

// live is a test schema in the local PostgreSQL (as ecom), the catalog-sync
// role's pool on it, and topics of their own on the local Kafka; all removed
// when the test ends.
type live struct {
	t                            testing.TB
	owner, cdc                   *pgxpool.Pool
	schema                       string
	opts                         []kgo.Opt
	products, customers, stTopic string
	txnID                        string
	codecs                       map[string]*avroserde.Codec
}

func newLive(t testing.TB) *live {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack; skipped under -short")
	}
	ownerURL, cdcURL := os.Getenv("DATABASE_URL"), os.Getenv("CATALOG_DATABASE_URL")
	if ownerURL == "" || cdcURL == "" {
		t.Fatalf("DATABASE_URL and CATALOG_DATABASE_URL are not set: %s", stackHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	l := &live{t: t, schema: "sf_catsync_" + id}
	var err error
	if l.owner, err = pgxpool.New(ctx, ownerURL); err == nil {
		err = l.owner.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("postgres (DATABASE_URL) not reachable: %v\n%s", err, stackHint)
	}
	t.Cleanup(l.owner.Close)
	stmt, err := ddl.Storefront(l.schema, "ecom_cdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := l.owner.Exec(ctx, fmt.Sprintf("DROP PUBLICATION IF EXISTS %s_catalog; DROP SCHEMA IF EXISTS %s CASCADE", l.schema, l.schema)); err != nil {
			t.Errorf("drop test schema %s: %v", l.schema, err)
		}
	})
	if _, err := l.owner.Exec(ctx, stmt.SQL); err != nil {
		t.Fatalf("apply %s: %v", stmt.Name, err)
	}
	if l.cdc, err = pgxpool.New(ctx, cdcURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.cdc.Close)

	brokers := strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), ",")
	l.opts = []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(1 << 20)}
	cl, err := kgo.NewClient(l.opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if _, err := adm.BrokerMetadata(ctx); err != nil {
		t.Fatalf("kafka %v not reachable: %v\n%s", brokers, err, stackHint)
	}
	prefix := "it-catsync-" + id
	l.products, l.customers, l.stTopic, l.txnID = prefix+".products", prefix+".customers", prefix+".state", prefix+"-txn"
	if err := stream.EnsureTopics(ctx, adm, stream.Config{TopicPartitions: 3, TopicReplication: 1},
		stream.TopicSpec{Name: l.products}, stream.TopicSpec{Name: l.customers}, state.Topic(l.stTopic)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), l.products, l.customers, l.stTopic) })
	reg, err := avroserde.New(avroserde.Config{URL: cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7"),
		AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l.codecs = map[string]*avroserde.Codec{}
	for table, s := range map[string][2]string{Products: {l.products, protoavro.ProductChange}, Customers: {l.customers, protoavro.CustomerChange}} {
		c, err := reg.Codec(ctx, avroserde.SubjectFor(s[0]), s[1])
		if err != nil {
			t.Fatalf("registry: %v\n%s", err, stackHint)
		}
		l.codecs[table] = c
	}
	return l
}

func (l *live) exec(sql string, args ...any) {
	l.t.Helper()
	if _, err := l.owner.Exec(context.Background(), strings.ReplaceAll(sql, "$S", l.schema), args...); err != nil {
		l.t.Fatalf("%s: %v", sql, err)
	}
}

// instance is a (re)started catalog-sync: a transactional client with the
// fixed id, fenced, and the state loaded after it.
func (l *live) instance(pageSize int) *Runner {
	l.t.Helper()
	ctx := context.Background()
	txn, err := kgo.NewClient(append(l.opts, kgo.TransactionalID(l.txnID), kgo.TransactionTimeout(20*time.Second))...)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(txn.Close)
	if _, _, err := txn.ProducerID(ctx); err != nil {
		l.t.Fatal(err)
	}
	st, err := state.Load(ctx, l.opts, l.stTopic)
	if err != nil {
		l.t.Fatal(err)
	}
	return &Runner{Source: l.source(), Commit: Transact(txn), State: st, StateTopic: l.stTopic,
		Topics: map[string]string{Products: l.products, Customers: l.customers},
		Codecs: map[string]stream.Encoder{Products: l.codecs[Products], Customers: l.codecs[Customers]}, PageSize: pageSize, ProgressEvery: 10}
}

// got is a produced record, decoded.
type got struct {
	table, key, op, source string
	lsn                    int64
	product                events.ProductChange
	customer               events.CustomerChange
}

// read returns every committed record of the change topics after the
// offsets in from (updated to the end).
func (l *live) read(from map[string]map[int32]int64) []got {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []got
	for table, topic := range map[string]string{Products: l.products, Customers: l.customers} {
		cl, err := kgo.NewClient(append(l.opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
		if err != nil {
			l.t.Fatal(err)
		}
		ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
		if err != nil {
			l.t.Fatal(err)
		}
		if from[topic] == nil {
			from[topic] = map[int32]int64{}
		}
		offs := map[string]map[int32]kgo.Offset{topic: {}}
		want := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			offs[topic][o.Partition] = kgo.NewOffset().At(from[topic][o.Partition])
			if o.Offset > from[topic][o.Partition] {
				want[o.Partition] = o.Offset
			}
			from[topic][o.Partition] = o.Offset
		})
		cl.AddConsumePartitions(offs)
		// Every record here is written in a transaction, so the end offset
		// of a partition is one past its last commit marker, which
		// read_committed never returns: a partition is done at its record
		// end-2. A partition whose last transaction aborted never gets
		// there; that is what the idle stop is for, and it waits long
		// enough that a slow first fetch on a loaded machine (a new
		// client's metadata, connections) is not mistaken for idleness.
		start := time.Now()
		for len(want) > 0 {
			pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			pcancel()
			for _, fe := range fs.Errors() {
				if !errors.Is(fe.Err, context.DeadlineExceeded) {
					l.t.Fatalf("read %s: %v", topic, fe.Err)
				}
			}
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset+2 >= want[r.Partition] {
					delete(want, r.Partition)
				}
				g := got{table: table, key: string(r.Key)}
				var err error
				if table == Products {
					_, err = l.codecs[table].Decode(ctx, r.Value, &g.product)
					g.op, g.source, g.lsn = g.product.Op, g.product.Source, g.product.SourceLsn
				} else {
					_, err = l.codecs[table].Decode(ctx, r.Value, &g.customer)
					g.op, g.source, g.lsn = g.customer.Op, g.customer.Source, g.customer.SourceLsn
				}
				if err != nil {
					l.t.Fatal(err)
				}
				out = append(out, g)
			})
			if fs.NumRecords() == 0 && time.Since(start) > 10*time.Second {
				break
			}
		}
		cl.Close()
	}
	sort.Slice(out, func(a, b int) bool { return out[a].table+out[a].key < out[b].table+out[b].key })
	return out
}

func summary(gs []got) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.key+" "+g.op+" "+g.source)
	}
	return out
}

func TestIntegrationSnapshot(t *testing.T) {
	l := newLive(t)
	ctx := context.Background()
	l.exec(`INSERT INTO $S.products (product_id, sku, name, category, brand, price_minor, currency) VALUES
		('p-00001', 'SKU-00001', 'Mug', 'kitchen', 'Acme', 900, 'EUR'),
		('p-00002', 'SKU-00002', 'Cup', 'kitchen', NULL, 500, 'EUR'),
		('p-00003', 'SKU-00003', 'Pot', NULL, 'Acme', 2500, 'EUR')`)
	l.exec(`INSERT INTO $S.customers (customer_id, email, name, country) VALUES
		('u-000001', 'ann@example.com', 'Ann', 'DE'), ('u-000002', 'bob@example.org', 'Bob', 'FR')`)
	offsets := map[string]map[int32]int64{}

	r := l.instance(2)
	if err := r.Run(ctx, Start("run-1", "test", []string{Products, Customers}, false, time.Now())); err != nil {
		t.Fatal(err)
	}
	first := l.read(offsets)
	want := []string{"u-000001 upsert snapshot", "u-000002 upsert snapshot", "p-00001 upsert snapshot", "p-00002 upsert snapshot", "p-00003 upsert snapshot"}
	if s := summary(first); !slices.Equal(s, want) {
		t.Fatalf("first run sent %v, want %v", s, want)
	}
	var lsn int64
	if err := l.owner.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	for _, g := range first {
		if g.lsn <= 0 || g.lsn > lsn {
			t.Errorf("%s: source_lsn %d, want the snapshot's (0, %d]", g.key, g.lsn, lsn)
		}
	}
	p := first[2].product
	if p.ProductID != "p-00001" || p.Name != "Mug" || *p.Sku != "SKU-00001" || *p.Category != "kitchen" || p.PriceMinor != 900 ||
		!p.IsActive || p.ChangedAt == nil || !p.ChangedAt.Equal(p.UpdatedAt) || p.SourceOrdinal != 0 {
		t.Errorf("product record = %+v", p)
	}
	if c := first[0].customer; *c.Email != "ann@example.com" || *c.Country != "DE" || c.CreatedAt == nil {
		t.Errorf("customer record = %+v", c)
	}
	// The state as a restarted instance reads it: a hash per row, no run pending.
	st, err := state.Load(ctx, l.opts, l.stTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Table(Products)) != 3 || len(st.Table(Customers)) != 2 || st.Progress != nil {
		t.Fatalf("state: %d products, %d customers, progress %+v", len(st.Table(Products)), len(st.Table(Customers)), st.Progress)
	}

	// Changes: an update, a hard delete, a soft delete, a touch that changes nothing.
	l.exec(`UPDATE $S.products SET price_minor = 450 WHERE product_id = 'p-00002'`)
	l.exec(`DELETE FROM $S.products WHERE product_id = 'p-00003'`)
	l.exec(`UPDATE $S.products SET name = name WHERE product_id = 'p-00001'`)
	l.exec(`UPDATE $S.customers SET is_active = false, deleted_at = now() WHERE customer_id = 'u-000001'`)
	if err := r.Run(ctx, Start("run-2", "test", []string{Products, Customers}, false, time.Now())); err != nil {
		t.Fatal(err)
	}
	second := l.read(offsets)
	want = []string{"u-000001 upsert snapshot", "p-00002 upsert snapshot", "p-00003 delete snapshot"}
	if s := summary(second); !slices.Equal(s, want) {
		t.Fatalf("second run sent %v, want only the changes %v", s, want)
	}
	if c := second[0].customer; c.IsActive || c.DeletedAt == nil {
		t.Errorf("soft delete = %+v", c)
	}
	if d := second[2].product; !d.UpdatedAt.Equal(first[4].product.UpdatedAt) || d.ChangedAt == nil || d.SourceLsn < first[4].lsn {
		t.Errorf("delete = %+v", d)
	}
	// Unchanged tables: nothing at all.
	if err := r.Run(ctx, Start("run-3", "test", []string{Products, Customers}, false, time.Now())); err != nil {
		t.Fatal(err)
	}
	if third := l.read(offsets); len(third) != 0 {
		t.Errorf("a run over unchanged tables sent %v", summary(third))
	}
	// A full run re-sends every row as backfill.
	if err := r.Run(ctx, Start("run-4", "test", []string{Products}, true, time.Now())); err != nil {
		t.Fatal(err)
	}
	if s := summary(l.read(offsets)); !slices.Equal(s, []string{"p-00001 upsert backfill", "p-00002 upsert backfill"}) {
		t.Errorf("full run sent %v", s)
	}
}

var errCrash = errors.New("injected crash")

// TestIntegrationResumeAfterCrash: a run that dies between pages (a crash
// right after a commit, or a shutdown cancelling it while it reads the next
// page) is resumed by the next instance from the progress it committed, and
// the union of the two attempts has each change once.
func TestIntegrationResumeAfterCrash(t *testing.T) {
	for _, cancelRun := range []bool{false, true} {
		name := "crash after a commit"
		if cancelRun {
			name = "shutdown cancels the run"
		}
		t.Run(name, func(t *testing.T) { resumeAfterCrash(t, cancelRun) })
	}
}

func resumeAfterCrash(t *testing.T, cancelRun bool) {
	l := newLive(t)
	ctx := context.Background()
	l.exec(`INSERT INTO $S.products (product_id, sku, name, price_minor, currency)
		SELECT format('p-%s', lpad(i::text, 5, '0')), format('SKU-%s', i), format('Product %s', i), i * 100, 'EUR'
		FROM generate_series(1, 45) i`)
	l.exec(`INSERT INTO $S.customers (customer_id, email, name, country)
		SELECT format('u-%s', lpad(i::text, 6, '0')), format('c%s@example.com', i), format('C %s', i), 'DE' FROM generate_series(1, 25) i`)
	offsets := map[string]map[int32]int64{}
	r := l.instance(10)
	commits := 0
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.AfterCommit = func(state.Progress) error {
		if commits++; commits == 3 {
			if cancelRun {
				cancel() // SIGTERM: the next page's query fails
				return nil
			}
			return errCrash // as if the process died right after its third transaction
		}
		return nil
	}
	err := r.Run(runCtx, Start("run-crash", "test", []string{Products, Customers}, false, time.Now()))
	if want := map[bool]error{false: errCrash, true: context.Canceled}[cancelRun]; !errors.Is(err, want) {
		t.Fatalf("run: %v, want %v", err, want)
	}
	before := l.read(offsets)
	if len(before) != 30 {
		t.Fatalf("before the crash %d records, want 30 (3 pages)", len(before))
	}
	// Meanwhile a product changes and one goes.
	l.exec(`UPDATE $S.products SET price_minor = 1 WHERE product_id = 'p-00044'`)
	l.exec(`DELETE FROM $S.products WHERE product_id = 'p-00002'`)

	r2 := l.instance(10) // the restarted service
	if r2.State.Progress == nil || r2.State.Progress.RunID != "run-crash" || r2.State.Progress.After != "p-00030" {
		t.Fatalf("progress after the crash = %+v", r2.State.Progress)
	}
	if err := r2.Run(ctx, *r2.State.Progress); err != nil {
		t.Fatal(err)
	}
	after := l.read(offsets)
	seen := map[string]int{}
	for _, g := range append(before, after...) {
		seen[g.key+" "+g.op]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
	// p-00002 was sent before the crash and deleted after it: the resumed
	// run's delete pass finds it.
	if len(seen) != 45+25+1 || seen["p-00002 delete"] != 1 || seen["p-00044 upsert"] != 1 {
		t.Errorf("union of both attempts: %d distinct changes %v", len(seen), seen)
	}
	st, err := state.Load(ctx, l.opts, l.stTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Table(Products)) != 44 || len(st.Table(Customers)) != 25 || st.Progress != nil {
		t.Errorf("state: %d products, %d customers, progress %+v", len(st.Table(Products)), len(st.Table(Customers)), st.Progress)
	}
}

// BenchmarkIntegrationSnapshot100k measures snapshots of 100k products
// (page size 1000) on the local stack: the first run, which sends every row;
// a run over the unchanged table, which sends nothing; loading the state of
// 100k rows at start; and opening a snapshot alone. The runs and the open
// are measured with the source the service uses (the exported snapshot of a
// temporary slot, begin=slot) and with the former one (pg_current_wal_lsn()
// read inside the transaction, begin=wal_lsn, wrong under concurrent
// commits: TestIntegrationSnapshotLSNBoundary) for comparison. Run with
// -bench Snapshot100k -benchtime 1x (the open: -benchtime 20x).
func BenchmarkIntegrationSnapshot100k(b *testing.B) {
	const n = 100_000
	l := newLive(b)
	l.exec(`INSERT INTO $S.products (product_id, sku, name, category, brand, price_minor, currency)
		SELECT format('p-%s', lpad(i::text, 6, '0')), format('SKU-%s', i), format('Product %s', i), 'kitchen', 'Acme', i, 'EUR'
		FROM generate_series(1, $1::int) i`, n)
	l.exec(`ANALYZE $S.products`)
	ctx := context.Background()
	run := func(b *testing.B, r *Runner, wantSent int) {
		sent := 0
		r.OnPage = func(p Page) { sent += p.Upserts + p.Deletes }
		if err := r.Run(ctx, Start("bench", "bench", []string{Products}, false, time.Now())); err != nil {
			b.Fatal(err)
		}
		if sent != wantSent {
			b.Fatalf("sent %d changes, want %d", sent, wantSent)
		}
	}
	sources := []struct {
		name string
		src  Source
	}{{"begin=slot", l.source()}, {"begin=wal_lsn", &walLSNSource{pool: l.cdc, schema: l.schema}}}
	for _, s := range sources {
		b.Run(s.name+"/open", func(b *testing.B) {
			for b.Loop() {
				tx, err := s.src.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/first_run_all_sent", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				r := l.instance(1000)
				r.Source, r.State = s.src, state.New()
				b.StartTimer()
				run(b, r, n)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run(s.name+"/unchanged_none_sent", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				r := l.instance(1000)
				r.Source = s.src
				b.StartTimer()
				run(b, r, 0)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
	b.Run("load_state", func(b *testing.B) {
		for b.Loop() {
			st, err := state.Load(ctx, l.opts, l.stTopic)
			if err != nil || len(st.Table(Products)) != n {
				b.Fatalf("state: %v", err)
			}
		}
	})
}

// walLSNSource is the snapshot source catalog-sync had before the exported
// snapshot (a REPEATABLE READ transaction whose first statement reads
// pg_current_wal_lsn()), kept here only for the benchmark's comparison.
type walLSNSource struct {
	pool   *pgxpool.Pool
	schema string
}

func (s *walLSNSource) Begin(ctx context.Context) (Tx, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	t := &pgTx{tx: tx, schema: s.schema}
	if err := tx.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, now()`).Scan(&t.lsn, &t.readAt); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return t, nil
}

// source is the catalog-sync role's snapshot source on the test schema.
func (l *live) source() *PG {
	return &PG{Pool: l.cdc, Schema: l.schema, ReplicationURL: os.Getenv("CATALOG_DATABASE_URL"), SlotPrefix: l.schema}
}
