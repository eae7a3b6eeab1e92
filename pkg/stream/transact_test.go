package stream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransact: a committed transaction's records are visible to a
// read_committed reader; a transaction whose produce fails is aborted, so none
// of its records is, and the producer can run the next transaction.
func TestTransact(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("tx-test"),
		kgo.DefaultProduceTopic("t"), kgo.MaxBufferedRecords(10), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	if err := Transact(ctx, cl, []*kgo.Record{{Value: []byte("a")}, {Value: []byte("b")}}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// A record to an unknown topic fails the produce: the whole transaction aborts.
	err = Transact(ctx, cl, []*kgo.Record{{Value: []byte("c")}, {Topic: "no-such-topic", Value: []byte("d")}})
	if err == nil {
		t.Fatal("a transaction with a failing record committed")
	}
	if errors.Is(err, ErrTransactionStuck) {
		t.Fatalf("the failed transaction was not aborted: %v", err)
	}
	if err := Transact(ctx, cl, []*kgo.Record{{Value: []byte("e")}}); err != nil {
		t.Fatalf("commit after an abort: %v", err)
	}

	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []string
	for len(got) < 3 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %q, want a, b, e", got)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if want := []string{"a", "b", "e"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("read_committed reader got %q, want %q", got, want)
	}
}
