package sink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// commitStore is what several committing writers share: the rows (one BigQuery dataset).
type commitStore struct {
	mu   sync.Mutex
	rows map[string]int // event_id -> copies written
}

func (st *commitStore) counts() (distinct, copies int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, n := range st.rows {
		distinct++
		copies += n
	}
	return distinct, copies
}

// committing is an in-test warehouse.Committer: it keeps no positions of its own (Positions fails),
// records what Claim (the commits it was given, and the entities), Release and ResetPositions were
// given, and returns as each partition's commit metadata "<name>:<rows written to the partition so
// far>". A Write of a partition it has not claimed fails, as bqwh's does.
type committing struct {
	name  string
	store *commitStore
	// claimAs, when set, replaces the position Claim returns for a partition.
	claimAs func(p warehouse.Partition, c warehouse.Commit) (warehouse.Position, bool)
	// onWrite runs at the start of every Write.
	onWrite func(b warehouse.Batch)

	mu       sync.Mutex
	claims   []map[warehouse.Partition]warehouse.Commit // the committed partitions of each Claim
	entities map[warehouse.Partition]warehouse.Entity   // every partition claimed, with its entity
	released []warehouse.Partition
	resets   []map[warehouse.Partition]warehouse.Position
	rows     map[warehouse.Partition]int
	commits  []map[warehouse.Partition]string // WriteResult.Commits of each write
}

var (
	_ warehouse.Warehouse = (*committing)(nil)
	_ warehouse.Committer = (*committing)(nil)
)

func newCommitting(name string, st *commitStore) *committing {
	return &committing{name: name, store: st, rows: map[warehouse.Partition]int{}, entities: map[warehouse.Partition]warehouse.Entity{}}
}

func (c *committing) Migrate(context.Context) error { return nil }
func (c *committing) Ping(context.Context) error    { return nil }
func (c *committing) Close() error                  { return nil }

func (c *committing) Positions(context.Context, string) (map[warehouse.Partition]warehouse.Position, error) {
	return nil, errors.New("Positions called on a Committer: its positions are claimed")
}

func (c *committing) ResetPositions(_ context.Context, _ string, positions map[warehouse.Partition]warehouse.Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets = append(c.resets, maps.Clone(positions))
	for p := range positions {
		c.rows[p] = 0 // its streams are forgotten
	}
	return nil
}

func (c *committing) Claim(_ context.Context, _ string, claims map[warehouse.Partition]warehouse.Assignment) (map[warehouse.Partition]warehouse.Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	committed := map[warehouse.Partition]warehouse.Commit{}
	out := map[warehouse.Partition]warehouse.Position{}
	for p, a := range claims {
		c.entities[p] = a.Entity
		c.rows[p] = 0
		if a.Commit == nil {
			continue
		}
		cm := *a.Commit
		committed[p] = cm
		if c.claimAs != nil {
			if pos, ok := c.claimAs(p, cm); ok {
				out[p] = pos
				continue
			}
		}
		out[p] = warehouse.Position{Next: cm.Next}
		var who string
		var n int
		if _, err := fmt.Sscanf(strings.Replace(cm.Metadata, ":", " ", 1), "%s %d", &who, &n); err == nil {
			c.rows[p] = n // resume the stream's row count from the commit
		}
	}
	c.claims = append(c.claims, committed)
	return out, nil
}

func (c *committing) Release(_ context.Context, ps []warehouse.Partition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = append(c.released, ps...)
}

func (c *committing) Write(_ context.Context, _ string, b warehouse.Batch) (warehouse.WriteResult, error) {
	if c.onWrite != nil {
		c.onWrite(b)
	}
	if err := warehouse.ValidateBatch("g", b); err != nil {
		return warehouse.WriteResult{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	res := warehouse.WriteResult{Commits: map[warehouse.Partition]string{}}
	for p := range b.Positions {
		if _, ok := c.entities[p]; !ok {
			return warehouse.WriteResult{}, fmt.Errorf("write of unclaimed partition %v", p)
		}
	}
	for _, r := range b.Events {
		c.store.rows[r.EventID]++
		c.rows[warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}]++
		res.Inserted++
	}
	for p := range b.Positions {
		res.Commits[p] = fmt.Sprintf("%s:%d", c.name, c.rows[p])
	}
	c.commits = append(c.commits, maps.Clone(res.Commits))
	return res, nil
}

func (c *committing) snapshot() (claims []map[warehouse.Partition]warehouse.Commit, released []warehouse.Partition, commits []map[warehouse.Partition]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.claims), slices.Clone(c.released), slices.Clone(c.commits)
}

// waitRows waits until the store holds n distinct rows (or fails after 10s).
func (st *commitStore) waitRows(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if d, _ := st.counts(); d >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	d, copies := st.counts()
	t.Fatalf("store holds %d rows (%d copies), want %d", d, copies, n)
}

// committedOf returns the group's Kafka commits.
func (e *env) committedOf(t *testing.T, group string) map[warehouse.Partition]warehouse.Commit {
	t.Helper()
	offs, err := e.adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[warehouse.Partition]warehouse.Commit{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			out[warehouse.Partition{Topic: o.Topic, Partition: o.Partition}] = warehouse.Commit{Next: o.At, Metadata: o.Metadata}
		}
	})
	return out
}

// The metadata Write returns is what Kafka holds after the batch, and what the next writer's
// Claim gets after a restart; the next writer resumes at the committed offsets.
func TestCommitterMetadataRoundTripsThroughKafka(t *testing.T) {
	committerRoundTrip(t, newEnv(t), "bq")
}

// On the real broker, whose OffsetCommit answers may name topics by id only.
func TestIntegrationCommitterMetadataRoundTripsThroughKafka(t *testing.T) {
	e, name := newTopicEnv(t, "bqseam-commit-")
	committerRoundTrip(t, e, name)
}

func committerRoundTrip(t *testing.T, e *env, group string) {
	st := &commitStore{rows: map[string]int{}}
	e.produce("a", 40)
	first := newCommitting("w1", st)
	r := start(t, e.config(group), first)
	st.waitRows(t, 40)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	claims, released, commits := first.snapshot()
	if len(claims) == 0 || len(claims[0]) != 0 {
		t.Fatalf("first claim = %v, want one with no commits (a new group)", claims)
	}
	if len(released) == 0 {
		t.Fatal("leaving the group released no partition")
	}
	// Every partition's last metadata is in Kafka, with the batch's offset.
	last := map[warehouse.Partition]string{}
	for _, c := range commits {
		maps.Copy(last, c)
	}
	kafka := e.committedOf(t, group)
	if len(kafka) != 2 {
		t.Fatalf("kafka commits = %v, want both partitions", kafka)
	}
	total := int64(0)
	for p, c := range kafka {
		if c.Metadata != last[p] || !strings.HasPrefix(c.Metadata, "w1:") {
			t.Errorf("%v committed metadata %q, want the last Write's %q", p, c.Metadata, last[p])
		}
		total += c.Next
	}
	if total != 40 {
		t.Errorf("committed offsets sum to %d, want 40", total)
	}

	// Restart: a new writer (nothing shared but Kafka) claims with exactly those commits.
	e.produce("b", 10)
	second := newCommitting("w2", st)
	r = start(t, e.config(group), second)
	st.waitRows(t, 50)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	claims, _, _ = second.snapshot()
	if len(claims) == 0 || !maps.Equal(claims[0], kafka) {
		t.Fatalf("claim after the restart = %v, want the committed %v", claims, kafka)
	}
	if d, copies := st.counts(); d != 50 || copies != 50 {
		t.Fatalf("store holds %d rows in %d copies, want 50 once each", d, copies)
	}
	for p, c := range e.committedOf(t, group) {
		if !strings.HasPrefix(c.Metadata, "w2:") {
			t.Errorf("%v committed metadata %q after the second writer, want w2's", p, c.Metadata)
		}
	}
}

// Several members may share a Committer's group: no MemberError, each claims partitions, a
// rebalance hands a partition over at its last commit, and every record is written once.
func TestCommitterAllowsSeveralMembers(t *testing.T) {
	e := newEnv(t)
	const group = "bq"
	st := &commitStore{rows: map[string]int{}}
	a, b := newCommitting("a", st), newCommitting("b", st)
	e.produce("x", 30)
	ra := start(t, e.config(group), a)
	st.waitRows(t, 30)
	rb := start(t, e.config(group), b)
	deadline := time.Now().Add(15 * time.Second)
	for {
		claims, _, _ := b.snapshot()
		claimed := 0
		for _, c := range claims {
			claimed += len(c)
		}
		if claimed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second member never claimed a partition")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.produce("y", 30)
	st.waitRows(t, 60)
	for name, r := range map[string]*running{"a": ra, "b": rb} {
		if err, stopped := r.stopped(200 * time.Millisecond); stopped {
			t.Fatalf("member %s stopped: %v", name, err)
		}
	}
	if err := rb.stop(); err != nil {
		t.Fatal(err)
	}
	if err := ra.stop(); err != nil {
		t.Fatal(err)
	}
	if d, copies := st.counts(); d != 60 || copies != 60 {
		t.Fatalf("store holds %d rows in %d copies, want 60 once each", d, copies)
	}
	_, released, _ := a.snapshot()
	if len(released) == 0 {
		t.Fatal("the first member released nothing when the second joined")
	}
}

// A reset (POSITION_RECOVERY) is committed, with the metadata of the claim (the streams it
// opened), before the first record of the partition is written: the Kafka commit is the
// Committer's position.
func TestCommitterResetCommitsBeforeConsuming(t *testing.T) {
	e := newEnv(t)
	const group = "bq"
	e.produce("r", 20)
	// An earlier writer's commit that does not fit the log (beyond its end).
	p0 := warehouse.Partition{Topic: e.topic, Partition: 0}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: e.topic, Partition: 0, At: 1000, LeaderEpoch: -1, Metadata: "old:7"})
	if resp, err := e.adm.CommitOffsets(context.Background(), group, os); err != nil || resp.Error() != nil {
		t.Fatalf("seed commit: %v %v", err, resp.Error())
	}
	st := &commitStore{rows: map[string]int{}}
	w := newCommitting("w", st)
	var atFirstWrite map[warehouse.Partition]warehouse.Commit
	var once sync.Once
	w.onWrite = func(b warehouse.Batch) {
		if len(b.Events) > 0 {
			once.Do(func() { atFirstWrite = e.committedOf(t, group) })
		}
	}
	cfg := e.config(group)
	cfg.Recovery = RecoveryEarliest
	r := start(t, cfg, w)
	st.waitRows(t, 20)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	claims, _, _ := w.snapshot()
	if len(claims) == 0 || claims[0][p0] != (warehouse.Commit{Next: 1000, Metadata: "old:7"}) {
		t.Fatalf("claims = %v, want the seeded commit of %v", claims, p0)
	}
	w.mu.Lock()
	resets := slices.Clone(w.resets)
	w.mu.Unlock()
	if len(resets) != 1 || len(resets[0]) != 1 || resets[0][p0].Next != 0 {
		t.Fatalf("resets = %v, want %v reset to 0", resets, p0)
	}
	if got := atFirstWrite[p0]; got != (warehouse.Commit{Next: 0, Metadata: "w:0"}) {
		t.Fatalf("commit of %v at the first write = %+v, want the reset offset 0 with the claim's metadata w:0", p0, got)
	}
}

// A refused batch commit (here ILLEGAL_GENERATION, as a fenced writer gets) stops nothing; it is
// a warning and counted, and the next batch's commit carries the newer metadata.
func TestCommitterFailedCommitIsCountedNotFatal(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic, deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e := newEnvOn(t, cluster.ListenAddrs(), testTopic)
	refuseCommits(cluster, 1, 1, kerr.IllegalGeneration.Code) // the claim commit passes, the first batch's is refused
	const group = "bq"
	st := &commitStore{rows: map[string]int{}}
	w := newCommitting("w", st)
	cfg := e.config(group)
	cfg.Kafka.MaxPollRecords = 5
	failures := &countingMeter{}
	cfg.Meter = failures
	e.produce("f", 5)
	r := start(t, cfg, w)
	st.waitRows(t, 5)
	e.produce("g", 5)
	st.waitRows(t, 10)
	deadline := time.Now().Add(10 * time.Second)
	for e.committedOf(t, group)[warehouse.Partition{Topic: testTopic}].Next != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("commits = %v, want offset 10 after the second batch", e.committedOf(t, group))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err, stopped := r.stopped(0); stopped {
		t.Fatalf("sink stopped on a refused commit: %v", err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := failures.value("ecom.warehouse.commit.failures"); got != 1 {
		t.Fatalf("commit failures counted = %d, want 1", got)
	}
	if md := e.committedOf(t, group)[warehouse.Partition{Topic: testTopic}].Metadata; md != "w:10" {
		t.Fatalf("committed metadata = %q, want the second batch's w:10", md)
	}
}

// refuseCommits makes the cluster answer code to n OffsetCommits after the first pass ones.
func refuseCommits(cluster *kfake.Cluster, pass, n int, code int16) {
	var mu sync.Mutex
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if pass > 0 {
			pass--
			return nil, nil, false
		}
		if n == 0 {
			return nil, nil, false
		}
		n--
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			t := kmsg.NewOffsetCommitResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewOffsetCommitResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
}

// Before the first record is written, every newly assigned partition, also one never committed,
// has a Kafka commit at its start whose metadata is the claim's (it names the streams the claim
// opened), and the claim was told each partition's entity.
func TestCommitterClaimCommitsBeforeConsuming(t *testing.T) {
	e := newEnv(t)
	const group = "bq"
	e.produce("c", 20)
	st := &commitStore{rows: map[string]int{}}
	w := newCommitting("w", st)
	var atFirstWrite map[warehouse.Partition]warehouse.Commit
	var once sync.Once
	w.onWrite = func(b warehouse.Batch) {
		if len(b.Events) > 0 {
			once.Do(func() { atFirstWrite = e.committedOf(t, group) })
		}
	}
	r := start(t, e.config(group), w)
	st.waitRows(t, 20)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	want := map[warehouse.Partition]warehouse.Commit{
		{Topic: e.topic, Partition: 0}: {Next: 0, Metadata: "w:0"},
		{Topic: e.topic, Partition: 1}: {Next: 0, Metadata: "w:0"},
	}
	if !maps.Equal(atFirstWrite, want) {
		t.Fatalf("commits at the first write = %v, want %v", atFirstWrite, want)
	}
	w.mu.Lock()
	entities := maps.Clone(w.entities)
	w.mu.Unlock()
	if len(entities) != 2 || entities[warehouse.Partition{Topic: e.topic, Partition: 0}] != warehouse.EntityEvent {
		t.Fatalf("claimed entities = %v, want both partitions as events", entities)
	}
}

// A claim commit refused because the member's generation ended (ILLEGAL_GENERATION) writes
// nothing and rejoins: the next assignment claims again, commits, and every record is written
// once. One refused for another reason (here OFFSET_METADATA_TOO_LARGE) stops the sink before it
// writes anything to streams no commit names.
func TestCommitterRefusedClaimCommit(t *testing.T) {
	tests := []struct {
		name     string
		code     int16
		wantStop bool
	}{
		{name: "fenced: rejoin", code: kerr.IllegalGeneration.Code},
		{name: "refused otherwise: stop", code: kerr.OffsetMetadataTooLarge.Code, wantStop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic, deadletter.Topic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			e := newEnvOn(t, cluster.ListenAddrs(), testTopic)
			refuseCommits(cluster, 0, 1, tt.code)
			e.produce("z", 5)
			st := &commitStore{rows: map[string]int{}}
			w := newCommitting("w", st)
			var atFirstWrite map[warehouse.Partition]warehouse.Commit
			var once sync.Once
			w.onWrite = func(b warehouse.Batch) {
				if len(b.Events) > 0 {
					once.Do(func() { atFirstWrite = e.committedOf(t, "bq") })
				}
			}
			r := start(t, e.config("bq"), w)
			if tt.wantStop {
				err, stopped := r.stopped(10 * time.Second)
				if !stopped || err == nil || !strings.Contains(err.Error(), "commit the claimed partitions") {
					t.Fatalf("sink after a refused claim commit: stopped %v, %v; want it stopped by the claim commit", stopped, err)
				}
				if d, _ := st.counts(); d != 0 {
					t.Fatalf("%d rows written after a refused claim commit", d)
				}
				return
			}
			st.waitRows(t, 5)
			if err, stopped := r.stopped(0); stopped {
				t.Fatalf("sink stopped on a fenced claim commit: %v", err)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			claims, released, _ := w.snapshot()
			if len(claims) < 2 || len(released) == 0 {
				t.Fatalf("%d claims, released %v; want a second claim after releasing the first", len(claims), released)
			}
			if d, copies := st.counts(); d != 5 || copies != 5 {
				t.Fatalf("store holds %d rows in %d copies, want 5 once each", d, copies)
			}
			if got := atFirstWrite[warehouse.Partition{Topic: testTopic}]; got != (warehouse.Commit{Next: 0, Metadata: "w:0"}) {
				t.Fatalf("commit at the first write = %+v, want the second claim's (0, w:0)", got)
			}
		})
	}
}

// countingMeter is a noop meter whose Int64Counters sum what is added, by name.
type countingMeter struct {
	noop.Meter
	mu   sync.Mutex
	sums map[string]int64
}

func (m *countingMeter) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return &countingCounter{m: m, name: name}, nil
}

func (m *countingMeter) value(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sums[name]
}

type countingCounter struct {
	noop.Int64Counter
	m    *countingMeter
	name string
}

func (c *countingCounter) Add(_ context.Context, n int64, _ ...metric.AddOption) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if c.m.sums == nil {
		c.m.sums = map[string]int64{}
	}
	c.m.sums[c.name] += n
}
