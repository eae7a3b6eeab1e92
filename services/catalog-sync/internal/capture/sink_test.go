package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type jsonCodec struct{}

func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

var (
	commitTime = time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)
	updated    = "2026-12-01 08:59:59.5+00"
	syncedAt   = time.Date(2026, 12, 1, 9, 0, 1, 0, time.UTC)
)

func text(s string) cdc.Value   { return cdc.Value{Type: pgtype.TextOID, Text: s} }
func null(oid uint32) cdc.Value { return cdc.Value{Type: oid, Null: true} }

// productRow is a products row as pgoutput sends it.
func productRow(id, name string, price int64, active bool) cdc.Row {
	a := "f"
	if active {
		a = "t"
	}
	return cdc.Row{"product_id": text(id), "sku": text("SKU-" + id), "name": text(name), "category": text("kitchen"),
		"brand": null(pgtype.TextOID), "price_minor": {Type: pgtype.Int8OID, Text: fmt.Sprint(price)}, "currency": text("EUR"),
		"is_active": {Type: pgtype.BoolOID, Text: a}, "deleted_at": null(pgtype.TimestamptzOID),
		"created_at": {Type: pgtype.TimestamptzOID, Text: updated}, "updated_at": {Type: pgtype.TimestamptzOID, Text: updated}}
}

func customerRow(id, country string) cdc.Row {
	return cdc.Row{"customer_id": text(id), "email": text(id + "@example.com"), "name": text("N"), "country": text(country),
		"is_active": {Type: pgtype.BoolOID, Text: "t"}, "deleted_at": null(pgtype.TimestamptzOID),
		"created_at": {Type: pgtype.TimestamptzOID, Text: updated}, "updated_at": {Type: pgtype.TimestamptzOID, Text: updated}}
}

func tx(lsn cdc.LSN, changes ...cdc.Change) cdc.Tx {
	for i := range changes {
		changes[i].LSN, changes[i].Ordinal, changes[i].CommitTime = lsn, i+1, commitTime
	}
	return cdc.Tx{CommitLSN: lsn, EndLSN: lsn + 8, CommitTime: commitTime, Changes: changes}
}

// recorder is a Committer that keeps its transactions; fail decides the
// outcome of each call (nil = commit). It reports overlapping calls.
type recorder struct {
	mu      sync.Mutex
	txns    [][]*kgo.Record
	calls   int
	fail    func(call int) error
	busy    atomic.Bool
	overlap atomic.Bool
	hold    time.Duration
}

func (r *recorder) commit(_ context.Context, recs []*kgo.Record) error {
	if !r.busy.CompareAndSwap(false, true) {
		r.overlap.Store(true)
	}
	defer r.busy.Store(false)
	time.Sleep(r.hold)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		if err := r.fail(r.calls); err != nil {
			return err
		}
	}
	r.txns = append(r.txns, slices.Clone(recs))
	return nil
}

type confirms struct {
	mu  sync.Mutex
	got []cdc.LSN
}

func (c *confirms) confirm(l cdc.LSN) { c.mu.Lock(); c.got = append(c.got, l); c.mu.Unlock() }

func newSink(st *state.State, rec *recorder, _ *confirms) *Sink {
	return &Sink{Schema: "sf", State: st, StateTopic: "state",
		Topics:  map[string]string{snapshot.Products: "products", snapshot.Customers: "customers"},
		Codecs:  map[string]stream.Encoder{snapshot.Products: jsonCodec{}, snapshot.Customers: jsonCodec{}},
		Commit:  rec.commit,
		Backoff: stream.NewBackoff(stream.Config{RetryBackoffMin: time.Millisecond, RetryBackoffMax: 2 * time.Millisecond}),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return syncedAt }}
}

// TestMapping: a batch of transactions becomes one Kafka transaction of
// cdc records with the commit LSN, ordinal and commit time, and the state
// entries of the keys it changed; then the last commit LSN is confirmed.
func TestMapping(t *testing.T) {
	st := state.New()
	rec, conf := &recorder{}, &confirms{}
	s := newSink(st, rec, conf)
	txs := []cdc.Tx{
		tx(1000,
			cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: productRow("p-1", "Mug", 900, true)},
			cdc.Change{Table: "sf.customers", Op: cdc.OpUpsert, Row: customerRow("u-1", "DE")},
			cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: productRow("p-1", "Mug", 800, false)}),
		tx(2000,
			cdc.Change{Table: "sf.products", Op: cdc.OpDelete, Row: productRow("p-2", "Cup", 5, true)},
			cdc.Change{Table: "other.products", Op: cdc.OpUpsert, Row: productRow("p-9", "X", 1, true)}),
	}
	if err := s.Handle(context.Background(), txs, conf.confirm); err != nil {
		t.Fatal(err)
	}
	if len(rec.txns) != 1 {
		t.Fatalf("%d transactions, want 1", len(rec.txns))
	}
	type got struct {
		topic, key, op, source string
		lsn, ord               int64
		price                  int64
		active                 bool
	}
	var out []got
	stateRecs := map[string]string{}
	for _, r := range rec.txns[0] {
		if r.Topic == "state" {
			stateRecs[string(r.Key)] = string(r.Value)
			continue
		}
		var v struct {
			Op        string    `json:"op"`
			Source    string    `json:"source"`
			Lsn       int64     `json:"source_lsn"`
			Ord       int64     `json:"source_ordinal"`
			Price     int64     `json:"price_minor"`
			Active    bool      `json:"is_active"`
			ChangedAt time.Time `json:"changed_at"`
			SyncedAt  time.Time `json:"synced_at"`
			UpdatedAt time.Time `json:"updated_at"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		if !v.ChangedAt.Equal(commitTime) || !v.SyncedAt.Equal(syncedAt) || v.UpdatedAt.IsZero() {
			t.Errorf("%s %s: changed_at %v synced_at %v updated_at %v", r.Topic, r.Key, v.ChangedAt, v.SyncedAt, v.UpdatedAt)
		}
		out = append(out, got{r.Topic, string(r.Key), v.Op, v.Source, v.Lsn, v.Ord, v.Price, v.Active})
	}
	want := []got{
		{"products", "p-1", "upsert", "cdc", 1000, 1, 900, true},
		{"customers", "u-1", "upsert", "cdc", 1000, 2, 0, true},
		{"products", "p-1", "upsert", "cdc", 1000, 3, 800, false}, // a soft delete stays an upsert
		{"products", "p-2", "delete", "cdc", 2000, 1, 0, false},
	}
	if !slices.Equal(out, want) {
		t.Errorf("records\n got %+v\nwant %+v", out, want)
	}
	if len(stateRecs) != 3 {
		t.Errorf("state records %v, want one per key", stateRecs)
	}
	if e := st.Table(snapshot.Products)["p-1"]; e.Seq != (state.Seq{LSN: 1000, Ordinal: 3}) || e.Deleted {
		t.Errorf("p-1 entry %+v, want the last change's sequence", e)
	}
	if e := st.Table(snapshot.Products)["p-2"]; !e.Deleted || e.Seq != (state.Seq{LSN: 2000, Ordinal: 1}) {
		t.Errorf("p-2 entry %+v, want a deleted marker", e)
	}
	if !slices.Equal(conf.got, []cdc.LSN{2000}) {
		t.Errorf("confirmed %v, want [2000]", conf.got)
	}
	if !strings.Contains(stateRecs["products/p-1"], `"lsn":1000,"ordinal":3`) {
		t.Errorf("state record of p-1 %s lacks its sequence", stateRecs["products/p-1"])
	}
}

// TestLateChange: a CDC change older than the entry a snapshot wrote (CDC
// lagging behind the snapshot) is sent (it is history) but leaves the
// entry alone.
func TestLateChange(t *testing.T) {
	st := state.New()
	newer := state.Entry{Hash: state.Hash{7}, Seq: state.Seq{LSN: 5000}}
	st.Table(snapshot.Products)["p-1"] = newer
	rec, conf := &recorder{}, &confirms{}
	if err := newSink(st, rec, conf).handleWith(conf, []cdc.Tx{
		tx(4000, cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: productRow("p-1", "Mug", 900, true)})}); err != nil {
		t.Fatal(err)
	}
	if len(rec.txns) != 1 || len(rec.txns[0]) != 1 || rec.txns[0][0].Topic != "products" {
		t.Fatalf("transactions %v, want the change record only", rec.txns)
	}
	if st.Table(snapshot.Products)["p-1"] != newer {
		t.Errorf("entry overwritten by an older change")
	}
}

// TestCommitFailures: a failed commit is retried with backoff and nothing
// is confirmed until it succeeds; a fenced producer (or a stuck
// transaction) stops the sink without confirming.
func TestCommitFailures(t *testing.T) {
	tests := []struct {
		name        string
		fail        func(call int) error
		wantErr     bool
		wantCalls   int
		wantConfirm bool
	}{
		{name: "transient, then committed", fail: func(c int) error {
			if c < 3 {
				return errors.New("broker gone")
			}
			return nil
		}, wantCalls: 3, wantConfirm: true},
		{name: "fenced", fail: func(int) error { return fmt.Errorf("commit: %w", kerr.ProducerFenced) }, wantErr: true, wantCalls: 1},
		{name: "stuck", fail: func(int) error { return fmt.Errorf("%w: abort", snapshot.ErrTransactionStuck) }, wantErr: true, wantCalls: 1},
	}
	for _, tt := range tests {
		st := state.New()
		rec, conf := &recorder{fail: tt.fail}, &confirms{}
		err := newSink(st, rec, conf).handleWith(conf, []cdc.Tx{
			tx(1000, cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: productRow("p-1", "Mug", 900, true)})})
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrFatal)) || rec.calls != tt.wantCalls || (len(conf.got) > 0) != tt.wantConfirm {
			t.Errorf("%s: err %v, %d calls, confirmed %v", tt.name, err, rec.calls, conf.got)
		}
		if _, ok := st.Table(snapshot.Products)["p-1"]; ok != tt.wantConfirm {
			t.Errorf("%s: state applied = %v", tt.name, ok)
		}
	}
}

// TestUnmappable: a change that cannot be mapped stops the sink (skipping
// it would lose it); nothing is committed or confirmed.
func TestUnmappable(t *testing.T) {
	row := productRow("p-1", "Mug", 900, true)
	row["price_minor"] = cdc.Value{Type: pgtype.Int8OID, Text: "a lot"}
	noCol := productRow("p-2", "Mug", 900, true)
	delete(noCol, "updated_at")
	for _, r := range []cdc.Row{row, noCol} {
		rec, conf := &recorder{}, &confirms{}
		err := newSink(state.New(), rec, conf).handleWith(conf, []cdc.Tx{tx(1000, cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: r})})
		if err == nil || rec.calls != 0 || len(conf.got) != 0 {
			t.Errorf("err %v, %d commits, confirmed %v", err, rec.calls, conf.got)
		}
	}
}

// fakeSource is one products table of n rows for the snapshot runner.
type fakeSource struct{ rows []snapshot.Row }

func (s *fakeSource) Begin(context.Context) (snapshot.Tx, error) { return &fakeTx{s}, nil }

type fakeTx struct{ s *fakeSource }

func (t *fakeTx) LSN() int64        { return 1 }
func (t *fakeTx) ReadAt() time.Time { return syncedAt }
func (t *fakeTx) Page(_ context.Context, _ *snapshot.Table, after string, first bool, limit int) ([]snapshot.Row, error) {
	var out []snapshot.Row
	for _, r := range t.s.rows {
		if (first || r.Key > after) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}
func (t *fakeTx) Existing(_ context.Context, _ *snapshot.Table, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range t.s.rows {
		out[r.Key] = slices.Contains(keys, r.Key)
	}
	return out, nil
}
func (t *fakeTx) Close(context.Context) error { return nil }

// TestSerialised: a snapshot run and CDC batches on the same Committer,
// concurrently: no two transactions overlap and none mixes snapshot and
// CDC records.
func TestSerialised(t *testing.T) {
	tbl, _ := snapshot.TableNamed(snapshot.Products)
	var rows []snapshot.Row
	for i := range 50 {
		r, err := tbl.RowOf([]any{fmt.Sprintf("p-%03d", i), "S", "N", nil, nil, int64(i), "EUR", true, nil, syncedAt})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	st := state.New()
	rec, conf := &recorder{hold: time.Millisecond}, &confirms{}
	sink := newSink(st, rec, conf)
	runner := &snapshot.Runner{Source: &fakeSource{rows}, Commit: rec.commit, State: st, StateTopic: "state",
		Topics: sink.Topics, Codecs: sink.Codecs, PageSize: 5, ProgressEvery: 1}
	var wg sync.WaitGroup
	wg.Add(2)
	var runErr, cdcErr error
	go func() {
		defer wg.Done()
		runErr = runner.Run(context.Background(), snapshot.Start("r1", "api", []string{snapshot.Products}, false, syncedAt))
	}()
	go func() {
		defer wg.Done()
		for i := range 20 {
			if err := sink.handleWith(conf, []cdc.Tx{tx(cdc.LSN(100+i),
				cdc.Change{Table: "sf.products", Op: cdc.OpUpsert, Row: productRow(fmt.Sprintf("p-%03d", 100+i), "Mug", 1, true)})}); err != nil {
				cdcErr = err
				return
			}
		}
	}()
	wg.Wait()
	if runErr != nil || cdcErr != nil {
		t.Fatal(runErr, cdcErr)
	}
	if rec.overlap.Load() {
		t.Error("two transactions overlapped on the producer")
	}
	var snap, cdcTxns int
	for _, txn := range rec.txns {
		sources := map[string]bool{}
		for _, r := range txn {
			if r.Topic == "products" {
				var v struct {
					Source string `json:"source"`
				}
				_ = json.Unmarshal(r.Value, &v)
				sources[v.Source] = true
			}
		}
		switch {
		case len(sources) > 1:
			t.Errorf("a transaction mixes %v", sources)
		case sources[snapshot.SourceCDC]:
			cdcTxns++
		case sources[snapshot.SourceSnapshot]:
			snap++
		}
	}
	if snap != 10 || cdcTxns != 20 {
		t.Errorf("%d snapshot and %d CDC transactions, want 10 and 20", snap, cdcTxns)
	}
}

func (s *Sink) handleWith(c *confirms, txs []cdc.Tx) error {
	return s.Handle(context.Background(), txs, c.confirm)
}

// TestNothingToCommit: a batch without catalog changes (a truncate, another
// schema) commits nothing and is confirmed.
func TestNothingToCommit(t *testing.T) {
	rec, conf := &recorder{}, &confirms{}
	trunc := cdc.Tx{CommitLSN: 700, CommitTime: commitTime, Truncated: []string{"sf.products"}}
	other := tx(800, cdc.Change{Table: "other.products", Op: cdc.OpUpsert, Row: productRow("p-1", "Mug", 1, true)})
	if err := newSink(state.New(), rec, conf).handleWith(conf, []cdc.Tx{trunc, other}); err != nil {
		t.Fatal(err)
	}
	if rec.calls != 0 || !slices.Equal(conf.got, []cdc.LSN{800}) {
		t.Errorf("%d commits, confirmed %v; want none and [800]", rec.calls, conf.got)
	}
}
