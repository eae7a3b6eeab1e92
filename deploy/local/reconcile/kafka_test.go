package reconcile

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLogReadSlowFirstFetch: a new client's first fetch that takes longer
// than Idle (a loaded broker) is not the end of the topic: Read waits longer
// for the first record, so it still reads every record (before, it returned
// with none, and the reconciliation took them for missing), and it ends
// without an idle wait once every partition's last record arrived, a
// transactional one included (its commit marker is the last offset).
func TestLogReadSlowFirstFetch(t *testing.T) {
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	prod, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	txn, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("t"), kgo.TransactionalID("x"), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 6 { // plain records on partition 0
		if err := prod.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("p" + strconv.Itoa(i)), Timestamp: at}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.BeginTransaction(); err != nil { // a committed transaction on partition 1
		t.Fatal(err)
	}
	for i := range 4 {
		if err := txn.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("t" + strconv.Itoa(i)), Timestamp: at}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// The first fetch answers after 1.5 s, longer than Idle.
	delayed := false
	cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !delayed {
			delayed = true
			time.Sleep(1500 * time.Millisecond)
		}
		cluster.DropControl()
		return nil, nil, false
	})
	adm := kadm.NewClient(prod)
	l := &Log{Opts: opts, Adm: adm, Lateness: time.Minute, Idle: time.Second}
	var got int
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	err = l.Read(rctx, "t", Window{From: at.Add(-time.Minute), To: at.Add(time.Minute)}, func(*kgo.Record) error {
		got++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != 10 {
		t.Fatalf("read %d records, want 10 (the first fetch was slower than Idle)", got)
	}
	// Both partitions end at their last record: no idle wait after the
	// delayed fetch (which alone takes 1.5 s).
	t.Logf("read %d records in %s", got, time.Since(start).Round(time.Millisecond))
}
