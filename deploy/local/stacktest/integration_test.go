package stacktest_test

// Integration tests of the local stack itself: the things every service
// relies on (transactions, read_committed, transactional offset commits, the
// registry, a PostgreSQL login) work against the real processes started by
// deploy/local/stack.sh. They are skipped under -short only.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ecomstream/platform/deploy/local/stacktest"
)

func integration(t *testing.T) stacktest.Endpoints {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (deploy/local/stack.sh up); skipped under -short")
	}
	return stacktest.Require(t)
}

func newClient(t *testing.T, eps stacktest.Endpoints, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(eps.KafkaBrokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a one-partition topic that is deleted when the test ends.
func createTopic(ctx context.Context, t *testing.T, adm *kadm.Client, name string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, 1, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, name); err != nil {
			t.Logf("delete topic %s: %v", name, err)
		}
	})
}

func values(n int, prefix string) []*kgo.Record {
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	return rs
}

// consumeCommitted reads topic from the start with read_committed until it
// has want records or ctx ends, then returns the values it saw.
func consumeCommitted(ctx context.Context, t *testing.T, eps stacktest.Endpoints, topic string, want int) []string {
	t.Helper()
	cl := newClient(t, eps,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed consume of %s: got %d of %d records before %v: %q", topic, len(got), want, ctx.Err(), got)
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func TestIntegrationKafkaTransactionalRoundTrip(t *testing.T) {
	eps := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	topic := stacktest.UniqueName(t, "stacktest")
	createTopic(ctx, t, kadm.NewClient(newClient(t, eps)), topic)

	prod := newClient(t, eps,
		kgo.TransactionalID(stacktest.UniqueName(t, "txn")),
		kgo.DefaultProduceTopic(topic),
	)
	produceTxn := func(rs []*kgo.Record, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatalf("BeginTransaction: %v", err)
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("transactional produce: %v", err)
		}
		if err := prod.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("EndTransaction(%v): %v", commit, err)
		}
	}
	produceTxn(values(3, "aborted"), kgo.TryAbort)
	produceTxn(values(5, "committed"), kgo.TryCommit)

	got := consumeCommitted(ctx, t, eps, topic, 5)
	want := []string{"committed-0", "committed-1", "committed-2", "committed-3", "committed-4"}
	if !slices.Equal(got, want) {
		t.Errorf("read_committed saw %q, want %q (aborted records must be invisible)", got, want)
	}
}

// TestKafkaGroupTransactSession exercises the exactly-once path the
// Kafka-to-Kafka stages use: consume, produce and commit the input offsets in
// one transaction.
func TestIntegrationKafkaGroupTransactSession(t *testing.T) {
	eps := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	in, out := stacktest.UniqueName(t, "in"), stacktest.UniqueName(t, "out")
	group := stacktest.UniqueName(t, "group")
	adm := kadm.NewClient(newClient(t, eps))
	createTopic(ctx, t, adm, in)
	createTopic(ctx, t, adm, out)

	const n = 10
	if err := newClient(t, eps, kgo.DefaultProduceTopic(in)).ProduceSync(ctx, values(n, "in")...).FirstErr(); err != nil {
		t.Fatalf("produce input: %v", err)
	}

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(eps.KafkaBrokers...),
		kgo.TransactionalID(stacktest.UniqueName(t, "txn")),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(out),
	)
	if err != nil {
		t.Fatalf("NewGroupTransactSession: %v", err)
	}
	defer sess.Close()

	for moved := 0; moved < n; {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("moved %d of %d records before %v", moved, n, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		var rs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { rs = append(rs, &kgo.Record{Value: append([]byte("out-of-"), r.Value...)}) })
		if len(rs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if err := sess.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce output: %v", err)
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			t.Fatalf("End: %v", err)
		}
		if committed {
			moved += len(rs)
		}
	}

	if got := consumeCommitted(ctx, t, eps, out, n); len(got) != n {
		t.Errorf("output has %d records, want %d", len(got), n)
	}
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("FetchOffsets: %v", err)
	}
	if o, ok := offsets.Lookup(in, 0); !ok || o.At != n {
		t.Errorf("group %s committed offset %+v on %s/0, want %d", group, o, in, n)
	}
}

func TestIntegrationSchemaRegistry(t *testing.T) {
	eps := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	httpcl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	cl, err := sr.NewClient(sr.URLs(eps.SchemaRegistryURL), sr.HTTPClient(httpcl))
	if err != nil {
		t.Fatal(err)
	}
	subject := stacktest.UniqueName(t, "stacktest") + "-value"
	schema := fmt.Sprintf(`{"type":"record","name":"R%d","fields":[{"name":"id","type":"string"}]}`, time.Now().UnixNano())
	created, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("CreateSchema: %v", err)
	}
	byID, err := cl.SchemaByID(ctx, created.ID)
	if err != nil || byID.Schema != schema {
		t.Fatalf("SchemaByID(%d) = %q, %v; want the registered schema", created.ID, byID.Schema, err)
	}
	// The registry keeps its subjects across restarts, so clean up.
	if _, err := cl.DeleteSubject(ctx, subject, sr.SoftDelete); err != nil {
		t.Logf("soft delete %s: %v", subject, err)
	}
	if _, err := cl.DeleteSubject(ctx, subject, sr.HardDelete); err != nil {
		t.Logf("hard delete %s: %v", subject, err)
	}
}

func TestIntegrationPostgresLogin(t *testing.T) {
	eps := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var user, db string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatalf("query: %v", err)
	}
	if user != "ecom" || db != "ecom" {
		t.Errorf("logged in as %s to %s, want ecom to ecom", user, db)
	}
	// The role owns its database, so services can create their tables.
	table := "stacktest_" + fmt.Sprint(time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE "+table+" (id int)"); err != nil {
		t.Errorf("create table as ecom: %v", err)
	}
}

// TestIntegrationCatalogRoleLeastPrivilege: ecom_cdc, catalog-sync's role, may
// open a logical replication connection (replication=database: its slot) but
// not a physical one (replication=true: pg_basebackup of the whole cluster,
// password hashes included), and is no superuser; the server runs with the
// settings logical decoding and the mutator's commit times need.
func TestIntegrationCatalogRoleLeastPrivilege(t *testing.T) {
	eps := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(eps.CatalogDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"database", "true"} {
		c := cfg.Copy()
		c.RuntimeParams["replication"] = mode
		conn, err := pgconn.ConnectConfig(ctx, c)
		if mode == "true" {
			if err == nil {
				conn.Close(ctx)
				t.Fatal("ecom_cdc opened a physical replication connection")
			}
			if !strings.Contains(err.Error(), "pg_hba.conf rejects replication connection") {
				t.Fatalf("physical replication refused for another reason: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("logical replication connection as ecom_cdc: %v", err)
		}
		if _, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil {
			t.Errorf("IDENTIFY_SYSTEM: %v", err)
		}
		conn.Close(ctx)
	}
	owner, err := pgx.Connect(ctx, eps.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(context.Background())
	var super, repl bool
	var wal, commitTS string
	if err := owner.QueryRow(ctx, `SELECT rolsuper, rolreplication, current_setting('wal_level'), current_setting('track_commit_timestamp')
		FROM pg_roles WHERE rolname = 'ecom_cdc'`).Scan(&super, &repl, &wal, &commitTS); err != nil {
		t.Fatal(err)
	}
	if super || !repl || wal != "logical" || commitTS != "on" {
		t.Errorf("ecom_cdc superuser %v replication %v; wal_level %s, track_commit_timestamp %s", super, repl, wal, commitTS)
	}
}
