package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// fakeSource is the catalog tables in memory, in key order.
type fakeSource struct {
	rows  map[string][]Row // table -> rows sorted by key
	lsn   int64
	pages int // pages served, all tables
}

func (s *fakeSource) Begin(context.Context) (Tx, error) { return &fakeTx{s: s}, nil }

type fakeTx struct{ s *fakeSource }

func (t *fakeTx) LSN() int64        { return t.s.lsn }
func (t *fakeTx) ReadAt() time.Time { return readAt }
func (t *fakeTx) Page(_ context.Context, tb *Table, after string, first bool, limit int) ([]Row, error) {
	t.s.pages++
	var out []Row
	for _, r := range t.s.rows[tb.Name] {
		if (first || r.Key > after) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}
func (t *fakeTx) Existing(_ context.Context, tb *Table, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range t.s.rows[tb.Name] {
		if slices.Contains(keys, r.Key) {
			out[r.Key] = true
		}
	}
	return out, nil
}
func (t *fakeTx) Close(context.Context) error { return nil }

var readAt = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// jsonCodec stands in for the Avro codec: the tests read the records back.
type jsonCodec struct{}

func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func product(id, name string, price int64) Row {
	p := &events.ProductChange{ProductID: id, Op: OpUpsert, Name: name, PriceMinor: price, Currency: "EUR", IsActive: true,
		UpdatedAt: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	return Row{Key: id, UpdatedAt: p.UpdatedAt, Hash: ProductHash(p), Value: p}
}

func customer(id, country string) Row {
	email, name := id+"@example.com", "Name "+id
	c := &events.CustomerChange{CustomerID: id, Op: OpUpsert, Email: &email, Name: &name, Country: &country, IsActive: true,
		UpdatedAt: time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)}
	return Row{Key: id, UpdatedAt: c.UpdatedAt, Hash: CustomerHash(c), Value: c}
}

// sent is a change record as the tests compare it.
type sent struct{ table, key, op, source string }

// recorder is a Committer that keeps what it committed, failing the
// transaction numbered failAt (from 1) when set.
type recorder struct {
	txns   [][]*kgo.Record
	failAt int
	calls  int
}

func (r *recorder) commit(_ context.Context, recs []*kgo.Record) error {
	r.calls++
	if r.calls == r.failAt {
		return errors.New("broker gone")
	}
	r.txns = append(r.txns, slices.Clone(recs))
	return nil
}

func (r *recorder) changes(t *testing.T) []sent {
	t.Helper()
	var out []sent
	for _, txn := range r.txns {
		for _, rec := range txn {
			if rec.Topic == "state" {
				continue
			}
			var v struct {
				Op     string `json:"op"`
				Source string `json:"source"`
				Lsn    int64  `json:"source_lsn"`
			}
			if err := json.Unmarshal(rec.Value, &v); err != nil {
				t.Fatal(err)
			}
			if v.Lsn != 4242 {
				t.Errorf("%s %s: source_lsn %d, want the snapshot's 4242", rec.Topic, rec.Key, v.Lsn)
			}
			out = append(out, sent{table: strings.TrimSuffix(rec.Topic, "-topic"), key: string(rec.Key), op: v.Op, source: v.Source})
		}
	}
	return out
}

func newRunner(src Source, st *state.State, rec *recorder, pageSize int) *Runner {
	return &Runner{Source: src, Commit: rec.commit, State: st, StateTopic: "state",
		Topics:   map[string]string{Products: "products-topic", Customers: "customers-topic"},
		Codecs:   map[string]stream.Encoder{Products: jsonCodec{}, Customers: jsonCodec{}},
		PageSize: pageSize, ProgressEvery: 10, Now: func() time.Time { return readAt.Add(time.Minute) }}
}

// stateOf is a state that says rows were sent as they are.
func stateOf(rows map[string][]Row) *state.State {
	st := state.New()
	for table, rs := range rows {
		for _, r := range rs {
			st.Table(table)[r.Key] = state.Entry{Hash: r.Hash, UpdatedAt: r.UpdatedAt}
		}
	}
	return st
}

func TestSnapshotDiff(t *testing.T) {
	base := map[string][]Row{
		Products:  {product("p-001", "Mug", 900), product("p-002", "Cup", 500), product("p-003", "Pot", 2500)},
		Customers: {customer("u-001", "DE"), customer("u-002", "FR")},
	}
	tests := []struct {
		name   string
		sent   map[string][]Row // what the state says was last sent
		now    map[string][]Row // the tables now
		tables []string
		full   bool
		want   []sent
	}{
		{name: "first run sends every row", sent: nil, now: base, tables: []string{Products, Customers},
			want: []sent{{Products, "p-001", OpUpsert, SourceSnapshot}, {Products, "p-002", OpUpsert, SourceSnapshot},
				{Products, "p-003", OpUpsert, SourceSnapshot}, {Customers, "u-001", OpUpsert, SourceSnapshot}, {Customers, "u-002", OpUpsert, SourceSnapshot}}},
		{name: "no-op: nothing changed, nothing sent", sent: base, now: base, tables: []string{Products, Customers}, want: nil},
		{name: "insert", sent: base, now: map[string][]Row{
			Products:  append(slices.Clone(base[Products]), product("p-004", "Jug", 1200)),
			Customers: base[Customers]}, tables: []string{Products, Customers},
			want: []sent{{Products, "p-004", OpUpsert, SourceSnapshot}}},
		{name: "update", sent: base, now: map[string][]Row{
			Products:  {base[Products][0], product("p-002", "Cup", 450), base[Products][2]},
			Customers: {base[Customers][0], customer("u-002", "BE")}}, tables: []string{Products, Customers},
			want: []sent{{Products, "p-002", OpUpsert, SourceSnapshot}, {Customers, "u-002", OpUpsert, SourceSnapshot}}},
		{name: "touch only (updated_at moved, no attribute): nothing sent", sent: base, now: map[string][]Row{
			Products: {base[Products][0], touched(base[Products][1]), base[Products][2]}, Customers: base[Customers]},
			tables: []string{Products, Customers}, want: nil},
		{name: "delete", sent: base, now: map[string][]Row{
			Products: {base[Products][0], base[Products][2]}, Customers: {base[Customers][1]}}, tables: []string{Products, Customers},
			want: []sent{{Products, "p-002", OpDelete, SourceSnapshot}, {Customers, "u-001", OpDelete, SourceSnapshot}}},
		{name: "one table only leaves the other alone", sent: base, now: map[string][]Row{
			Products: {base[Products][0]}, Customers: nil}, tables: []string{Products},
			want: []sent{{Products, "p-002", OpDelete, SourceSnapshot}, {Products, "p-003", OpDelete, SourceSnapshot}}},
		{name: "full re-sends every row as backfill", sent: base, now: base, tables: []string{Products}, full: true,
			want: []sent{{Products, "p-001", OpUpsert, SourceBackfill}, {Products, "p-002", OpUpsert, SourceBackfill}, {Products, "p-003", OpUpsert, SourceBackfill}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := stateOf(tt.sent)
			rec := &recorder{}
			r := newRunner(&fakeSource{rows: tt.now, lsn: 4242}, st, rec, 2)
			if err := r.Run(context.Background(), Start("run-1", "test", tt.tables, tt.full, readAt)); err != nil {
				t.Fatal(err)
			}
			got := rec.changes(t)
			if !slices.Equal(got, tt.want) {
				t.Errorf("sent %v\nwant %v", got, tt.want)
			}
			// Afterwards the state is the tables (of the tables run), and no run is pending.
			for _, table := range tt.tables {
				if want := stateOf(tt.now).Table(table); !mapsEqual(st.Table(table), want) {
					t.Errorf("state of %s = %v, want %v", table, st.Table(table), want)
				}
			}
			if st.Progress != nil {
				t.Errorf("progress left: %+v", st.Progress)
			}
			last := rec.txns[len(rec.txns)-1]
			if len(last) != 1 || string(last[0].Key) != state.ProgressKey || last[0].Value != nil {
				t.Errorf("last transaction is not the progress tombstone: %v", last)
			}
		})
	}
}

// TestSnapshotTransactions: every change travels with its state record and
// the progress in one transaction; a delete carries the last updated_at and
// the snapshot's read time as changed_at.
func TestSnapshotTransactions(t *testing.T) {
	sentRows := map[string][]Row{Products: {product("p-001", "Mug", 900), product("p-002", "Cup", 500)}}
	st := stateOf(sentRows)
	rec := &recorder{}
	r := newRunner(&fakeSource{rows: map[string][]Row{Products: {product("p-001", "Mug", 950)}}, lsn: 4242}, st, rec, 10)
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	r.Tracer = tp.Tracer("test")
	if err := r.Run(context.Background(), Start("run-1", "test", []string{Products}, false, readAt)); err != nil {
		t.Fatal(err)
	}
	if len(rec.txns) != 3 {
		t.Fatalf("%d transactions, want 3 (rows page, deletes page, end)", len(rec.txns))
	}
	for i, want := range []struct{ key, stateKey string }{{"p-001", "products/p-001"}, {"p-002", "products/p-002"}} {
		txn := rec.txns[i]
		if len(txn) != 3 || string(txn[0].Key) != want.key || string(txn[1].Key) != want.stateKey || string(txn[2].Key) != state.ProgressKey {
			t.Fatalf("transaction %d = %v", i, keys(txn))
		}
	}
	for i := range 2 {
		var traceparent string
		for _, h := range rec.txns[i][0].Headers {
			if h.Key == "traceparent" {
				traceparent = string(h.Value)
			}
		}
		if len(traceparent) != 55 {
			t.Errorf("change record %d carries no trace context: %v", i, rec.txns[i][0].Headers)
		}
	}
	if rec.txns[1][1].Value != nil {
		t.Error("the deleted row's state record is not a tombstone")
	}
	var del events.ProductChange
	if err := json.Unmarshal(rec.txns[1][0].Value, &del); err != nil {
		t.Fatal(err)
	}
	if del.Op != OpDelete || !del.UpdatedAt.Equal(sentRows[Products][1].UpdatedAt) || del.ChangedAt == nil || !del.ChangedAt.Equal(readAt) {
		t.Errorf("delete = %+v", del)
	}
	var prog state.Progress
	if err := json.Unmarshal(rec.txns[1][2].Value, &prog); err != nil {
		t.Fatal(err)
	}
	if prog.RunID != "run-1" || prog.Table != Products || prog.Phase != state.PhaseDeletes || prog.After != "p-002" {
		t.Errorf("progress = %+v", prog)
	}
}

// TestSnapshotResume: a run that fails between pages resumes from its last
// committed progress, and the union of what both attempts committed has
// every change once.
func TestSnapshotResume(t *testing.T) {
	var prods, custs []Row
	for i := range 9 {
		prods = append(prods, product("p-00"+string(rune('1'+i)), "P", int64(100*i)))
		custs = append(custs, customer("u-00"+string(rune('1'+i)), "DE"))
	}
	now := map[string][]Row{Products: prods[1:], Customers: custs} // p-001 deleted
	sentBefore := map[string][]Row{Products: prods[:1]}
	for _, tc := range []struct {
		failAt int
		full   bool
	}{{1, false}, {2, false}, {4, false}, {6, false}, {7, false}, {2, true}, {3, true}, {5, true}, {7, true}} {
		failAt, full := tc.failAt, tc.full
		src := SourceSnapshot
		if full {
			src = SourceBackfill
		}
		st := stateOf(sentBefore)
		rec := &recorder{failAt: failAt}
		r := newRunner(&fakeSource{rows: now, lsn: 4242}, st, rec, 2)
		err := r.Run(context.Background(), Start("run-1", "test", []string{Products, Customers}, full, readAt))
		if err == nil {
			t.Fatalf("failAt %d: run did not fail", failAt)
		}
		// The service restarts: the state (with the progress) is what was committed.
		st2 := stateOf(sentBefore)
		for _, txn := range rec.txns {
			for _, rc := range txn {
				if rc.Topic == "state" {
					if err := st2.Apply(rc.Key, rc.Value); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if failAt > 1 && st2.Progress == nil {
			t.Fatalf("failAt %d: no progress committed", failAt)
		}
		p := Start("run-2", "test", []string{Products, Customers}, full, readAt)
		if st2.Progress != nil {
			p = *st2.Progress
		}
		rec.failAt = 0
		src2 := &fakeSource{rows: now, lsn: 4242}
		r2 := newRunner(src2, st2, rec, 2)
		if err := r2.Run(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if failAt > 2 && src2.pages >= 11 { // 4 + 1 pages of products, 5 + 1 of customers
			t.Errorf("failAt %d: the resumed run read %d pages: restarted, not resumed", failAt, src2.pages)
		}
		got := rec.changes(t)
		sort.Slice(got, func(a, b int) bool { return got[a].key < got[b].key })
		var want []sent
		want = append(want, sent{Products, "p-001", OpDelete, src})
		for _, r := range prods[1:] {
			want = append(want, sent{Products, r.Key, OpUpsert, src})
		}
		for _, r := range custs {
			want = append(want, sent{Customers, r.Key, OpUpsert, src})
		}
		sort.Slice(want, func(a, b int) bool { return want[a].key < want[b].key })
		if !slices.Equal(got, want) {
			t.Errorf("failAt %d full %v: union of both attempts\n%v\nwant each change once\n%v", failAt, full, got, want)
		}
	}
}

func containsKey(s []sent, key string) bool {
	return slices.ContainsFunc(s, func(x sent) bool { return x.key == key })
}

func touched(r Row) Row {
	p := *r.Value.(*events.ProductChange)
	p.UpdatedAt = p.UpdatedAt.Add(time.Hour)
	return Row{Key: r.Key, UpdatedAt: p.UpdatedAt, Hash: ProductHash(&p), Value: &p}
}

func keys(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Key))
	}
	return out
}

func mapsEqual(a, b map[string]state.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.Hash != v.Hash {
			return false
		}
	}
	return true
}
