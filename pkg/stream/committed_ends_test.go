package stream

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCommittedEndsWaitsForANewTopic: a topic created while CommittedEnds asks is waited for
// (UNKNOWN_TOPIC_OR_PARTITION is retried), and its ends are returned.
func TestCommittedEndsWaitsForANewTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		time.Sleep(500 * time.Millisecond)
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, "late"); err != nil {
			t.Errorf("create topic: %v", err)
		}
	}()
	ends, err := CommittedEnds(ctx, adm, "late")
	if err != nil {
		t.Fatalf("CommittedEnds of a topic created 0.5 s later: %v", err)
	}
	if n := len(ends["late"]); n != 2 {
		t.Fatalf("ends of %d partitions, want 2: %v", n, ends)
	}
	// A cancelled caller is not kept waiting for a topic that never comes.
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	if _, err := CommittedEnds(cctx, adm, "never"); err == nil {
		t.Fatal("CommittedEnds of a topic that never exists: no error")
	}
}
