package sink

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requireKafka returns the local stack's brokers (KAFKA_BROKERS, default 127.0.0.1:19092), or
// fails the test saying how to start the stack.
func requireKafka(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (deploy/local/stack.sh up); skipped under -short")
	}
	brokers := strings.Split(cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092"), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err == nil && len(resp.Brokers) == 0 {
		err = context.DeadlineExceeded
	}
	if err != nil {
		t.Fatalf("kafka %v not reachable: %v\nstart the local stack with: deploy/local/stack.sh up   (or: make stack-up)", brokers, err)
	}
	return brokers
}

// newTopicEnv creates a two-partition topic (and group) named prefix plus a random suffix on the
// local stack, removed when the test ends, and an env for it.
func newTopicEnv(t *testing.T, prefix string) (*env, string) {
	t.Helper()
	brokers := requireKafka(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	e := newEnvOn(t, brokers, name)
	if _, err := e.adm.CreateTopic(context.Background(), 2, 1, nil, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.adm.DeleteTopic(context.Background(), name)
		_, _ = e.adm.DeleteGroup(context.Background(), name)
	})
	return e, name
}

// On the real broker: a topic deleted and recreated under the same name gets a new topic id; the
// sink stops on the stored positions of the old one instead of dropping the new records as
// stale, and with POSITION_RECOVERY=earliest it loads the new topic from its start.
func TestIntegrationTopicRecreated(t *testing.T) {
	e, name := newTopicEnv(t, "it-bqsink-recreated-")
	ctx := context.Background()

	path := tempFile(t, "w.duckdb")
	wh := openFile(t, path)
	first := start(t, e.config(name), wh)
	e.produce("old", 20)
	wh.waitInserted(t, 20)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	pos, err := wh.Positions(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := e.adm.ListTopics(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	oldID := topicID(topics[name].ID)
	meta, err := e.adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for p, st := range pos {
		if st.TopicID != oldID || st.ClusterID != meta.Cluster || meta.Cluster == "" {
			t.Fatalf("%v stored as %+v, want topic id %s on cluster %s", p, st, oldID, meta.Cluster)
		}
	}

	e.recreate()
	e.produce("new", 6)
	second := start(t, e.config(name), wh)
	err, stopped := second.stopped(30 * time.Second)
	_, inserted, stale := wh.counts()
	switch {
	case !stopped:
		t.Fatalf("the sink kept running (inserted %d, stale %d)", inserted-20, stale)
	case err == nil || !strings.Contains(err.Error(), "deleted and recreated") || !strings.Contains(err.Error(), oldID):
		t.Fatalf("Run = %v, want a stop naming the old topic id %s", err, oldID)
	case inserted != 20 || stale != 0:
		t.Fatalf("the sink wrote before stopping: inserted %d, stale %d", inserted-20, stale)
	}
	t.Logf("stopped with: %v", err)

	cfg := e.config(name)
	cfg.Recovery = RecoveryEarliest
	third := start(t, cfg, wh)
	wh.waitInserted(t, 26)
	if err := third.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, stale := wh.counts(); stale != 0 {
		t.Fatalf("%d rows dropped as stale", stale)
	}
}

// On the real broker: a second writer (another file, same group) stops before writing, naming
// the first.
func TestIntegrationSecondWriterStops(t *testing.T) {
	e, name := newTopicEnv(t, "it-bqsink-members-")
	whA := openFile(t, tempFile(t, "a.duckdb"))
	a := start(t, e.config(name), whA)
	e.produce("a", 20)
	whA.waitInserted(t, 20)

	whB := openFile(t, tempFile(t, "b.duckdb"))
	cfgB := e.config(name)
	cfgB.Kafka.ClientID = "bq-writer-b"
	second := start(t, cfgB, whB)
	e.produce("b", 20)
	err, stopped := second.stopped(45 * time.Second)
	_, insertedB, _ := whB.counts()
	switch {
	case !stopped:
		t.Fatalf("the second writer kept running (file B has %d rows)", insertedB)
	case err == nil || !strings.Contains(err.Error(), "another member") || !strings.Contains(err.Error(), "client_id bq-writer"):
		t.Fatalf("Run = %v, want an error naming the first writer", err)
	case insertedB != 0:
		t.Fatalf("the second writer wrote %d rows", insertedB)
	}
	t.Logf("second writer stopped with: %v", err)
	if err := a.stop(); err != nil && !strings.Contains(err.Error(), "another member") {
		t.Fatal(err)
	}
}
