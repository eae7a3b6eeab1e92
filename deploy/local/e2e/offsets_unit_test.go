package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupsCaughtUp: a group is at the end of a transactional topic when
// only markers and aborted records follow its committed offset, and behind
// while a committed record does.
func TestGroupsCaughtUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	txn := func(commit bool, n int) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(prod)
	commit := func(at int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "t", Partition: 0, At: at, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, "g", offs); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want bool) {
		t.Helper()
		got, progress, err := groupsCaughtUp(ctx, brokers, groupTopic{"g", "t"})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got != want {
			t.Errorf("%s: caught up %v (%s), want %v", step, got, progress, want)
		}
	}

	txn(true, 3) // records 0-2, commit marker 3
	check("nothing committed", false)
	commit(2)
	check("one record left", false)
	commit(3)
	check("only the commit marker left", true)
	txn(false, 2) // aborted records 4-5, abort marker 6
	check("an aborted transaction after the group", true)
	txn(true, 1) // record 7, marker 8
	check("a committed record after the aborted ones", false)
	commit(8)
	check("at the last record", true)
}
