package state

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var at = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestApply(t *testing.T) {
	h := Hash{1, 2, 3}
	entry := EntryRecord("s", "products", "p-1", Entry{Hash: h, UpdatedAt: at})
	prog := ProgressRecord("s", &Progress{RunID: "run-1", Tables: []string{"products"}, Table: "products", Phase: PhaseRows, After: "p-1"})
	tests := []struct {
		name     string
		recs     []*kgo.Record
		wantRows int
		wantProg bool
		wantErr  bool
	}{
		{name: "an entry", recs: []*kgo.Record{entry}, wantRows: 1},
		{name: "tombstone removes it", recs: []*kgo.Record{entry, Tombstone("s", "products", "p-1")}, wantRows: 0},
		{name: "progress", recs: []*kgo.Record{entry, prog}, wantRows: 1, wantProg: true},
		{name: "progress tombstone ends the run", recs: []*kgo.Record{prog, ProgressRecord("s", nil)}},
		{name: "key without table", recs: []*kgo.Record{{Key: []byte("p-1"), Value: []byte(`{}`)}}, wantErr: true},
		{name: "bad hash", recs: []*kgo.Record{{Key: []byte("products/p-1"), Value: []byte(`{"hash":"zz"}`)}}, wantErr: true},
		{name: "short hash", recs: []*kgo.Record{{Key: []byte("products/p-1"), Value: []byte(`{"hash":"0102"}`)}}, wantErr: true},
		{name: "bad progress", recs: []*kgo.Record{{Key: []byte(ProgressKey), Value: []byte(`[`)}}, wantErr: true},
	}
	for _, tt := range tests {
		s := New()
		var err error
		for _, r := range tt.recs {
			if err = s.Apply(r.Key, r.Value); err != nil {
				break
			}
		}
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if tt.wantErr {
			continue
		}
		if got := len(s.Table("products")); got != tt.wantRows || (s.Progress != nil) != tt.wantProg {
			t.Errorf("%s: %d rows, progress %+v", tt.name, got, s.Progress)
		}
		if tt.wantRows == 1 && (s.Table("products")["p-1"].Hash != h || !s.Table("products")["p-1"].UpdatedAt.Equal(at)) {
			t.Errorf("%s: entry = %+v", tt.name, s.Table("products")["p-1"])
		}
	}
}

// TestLoadReadsCommittedOnly: Load sees committed transactions only; an
// aborted one (a crashed page) leaves no trace.
func TestLoadReadsCommittedOnly(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	txn, err := kgo.NewClient(append(opts, kgo.TransactionalID(TransactionalID("catalog-sync", "state")))...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	commit := func(end kgo.TransactionEndTry, recs ...*kgo.Record) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	commit(kgo.TryCommit, EntryRecord("state", "products", "p-1", Entry{Hash: Hash{1}, UpdatedAt: at}),
		EntryRecord("state", "products", "p-2", Entry{Hash: Hash{2}, UpdatedAt: at}),
		ProgressRecord("state", &Progress{RunID: "run-1", Tables: []string{"products"}, Table: "products", Phase: PhaseRows, After: "p-2"}))
	commit(kgo.TryAbort, EntryRecord("state", "products", "p-3", Entry{Hash: Hash{3}, UpdatedAt: at}), Tombstone("state", "products", "p-1"),
		ProgressRecord("state", &Progress{RunID: "run-1", Tables: []string{"products"}, Table: "products", Phase: PhaseRows, After: "p-3"}))
	commit(kgo.TryCommit, EntryRecord("state", "customers", "u-1", Entry{Hash: Hash{9}, UpdatedAt: at}))
	// An aborted transaction last: Load must still end.
	commit(kgo.TryAbort, EntryRecord("state", "customers", "u-2", Entry{Hash: Hash{8}, UpdatedAt: at}))

	s, err := Load(ctx, opts, "state")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Table("products")
	if len(p) != 2 || p["p-1"].Hash != (Hash{1}) || p["p-2"].Hash != (Hash{2}) || len(s.Table("customers")) != 1 {
		t.Errorf("rows = %v, customers %v", p, s.Table("customers"))
	}
	if s.Progress == nil || s.Progress.After != "p-2" {
		t.Errorf("progress = %+v, want the committed one", s.Progress)
	}
}

// TestEntryRoundTrip: the sequence and the deleted marker survive the topic.
func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Hash: Hash{1}, UpdatedAt: at},
		{Hash: Hash{2}, UpdatedAt: at, Seq: Seq{LSN: 1 << 40, Ordinal: 7}},
		{UpdatedAt: at, Seq: Seq{LSN: 99, Ordinal: 1}, Deleted: true},
	} {
		s := New()
		r := EntryRecord("s", "products", "p-1", e)
		if err := s.Apply(r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
		if got := s.Table("products")["p-1"]; got != e {
			t.Errorf("round trip of %+v = %+v", e, got)
		}
	}
}

// TestReplaces: an entry is never replaced by an older sequence; a snapshot
// (ordinal 0) loses the tie to a CDC change at the same LSN.
func TestReplaces(t *testing.T) {
	entry := func(lsn int64, ord int) Entry { return Entry{Seq: Seq{LSN: lsn, Ordinal: ord}} }
	tests := []struct {
		name string
		seq  Seq
		e    Entry
		ok   bool
		want bool
	}{
		{name: "no entry", seq: Seq{LSN: 1}, want: true},
		{name: "newer LSN", seq: Seq{LSN: 20}, e: entry(10, 3), ok: true, want: true},
		{name: "older LSN", seq: Seq{LSN: 5, Ordinal: 9}, e: entry(10, 3), ok: true},
		{name: "same LSN, later ordinal", seq: Seq{LSN: 10, Ordinal: 4}, e: entry(10, 3), ok: true, want: true},
		{name: "snapshot loses the tie to CDC", seq: Seq{LSN: 10}, e: entry(10, 1), ok: true},
		{name: "the same sequence again", seq: Seq{LSN: 10, Ordinal: 3}, e: entry(10, 3), ok: true, want: true},
		{name: "a snapshot at the LSN of the last one", seq: Seq{LSN: 10}, e: entry(10, 0), ok: true, want: true},
		{name: "entry from before sequences", seq: Seq{LSN: 1}, e: entry(0, 0), ok: true, want: true},
	}
	for _, tt := range tests {
		if got := Replaces(tt.seq, tt.e, tt.ok); got != tt.want {
			t.Errorf("%s: Replaces = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestLoadWaitsForANewTopic: a topic created just before Load may be unknown to the broker for a
// moment (UNKNOWN_TOPIC_OR_PARTITION, seen on a fresh CI machine right after catalog-sync created
// its state topic): Load waits for it instead of stopping the service.
func TestLoadWaitsForANewTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		time.Sleep(700 * time.Millisecond)
		if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, "late-state"); err != nil {
			t.Errorf("create topic: %v", err)
		}
	}()
	s, err := Load(ctx, opts, "late-state")
	if err != nil {
		t.Fatalf("Load of a topic created 0.7 s later: %v", err)
	}
	if len(s.Table("products")) != 0 || s.Progress != nil {
		t.Errorf("state of an empty topic = %+v", s)
	}
}
