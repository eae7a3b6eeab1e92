package slice

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestDLQSchema: a prefix becomes a schema name dlq-handler accepts
// ([a-z_][a-z0-9_]{0,50}); no prefix is the service's default.
func TestDLQSchema(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{"production names", "", "dlq"},
		{"e2e prefix", "e2e-TestE2EReplay-1a2b.", "dlq_e2e_teste2ereplay_1a2b"},
		{"long", strings.Repeat("x", 80) + ".", "dlq_" + strings.Repeat("x", 45)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DLQSchema(tt.prefix)
			if got != tt.want {
				t.Errorf("DLQSchema(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
			if len(got) > 51 {
				t.Errorf("%q is longer than dlq-handler's 51", got)
			}
		})
	}
}

// TestDLQEnv: dlq-handler runs last in Names (started first) with the
// slice's schema, group, topic, tokens, stage groups and replay topics; no
// DLQ option, no dlq-handler.
func TestDLQEnv(t *testing.T) {
	tests := []struct {
		name, prefix        string
		opts                *DLQOptions
		wantTopic, wantSchm string
	}{
		{"off", "t-1.", nil, "", ""},
		{"prefixed", "t-1.", &DLQOptions{}, "t-1.ecom.dlq.v1", "dlq_t_1"},
		{"own schema", "t-1.", &DLQOptions{Schema: "dlq_mine"}, "t-1.ecom.dlq.v1", "dlq_mine"},
		{"production names", "", &DLQOptions{}, "ecom.dlq.v1", "dlq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{RunDir: t.TempDir(), Prefix: tt.prefix, DLQ: tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			if tt.opts == nil {
				if s.DLQ != nil || s.Procs["dlq-handler"] != nil || slices.Contains(s.Names, "dlq-handler") {
					t.Errorf("dlq-handler configured without Options.DLQ: %v", s.Names)
				}
				return
			}
			if s.Names[len(s.Names)-1] != "dlq-handler" || s.StartOrder()[0] != "dlq-handler" {
				t.Errorf("Names %v: want dlq-handler last (started first)", s.Names)
			}
			if s.Topics.DLQ != tt.wantTopic || s.DLQ.Topic != tt.wantTopic {
				t.Errorf("DLQ topic %q/%q, want %q", s.Topics.DLQ, s.DLQ.Topic, tt.wantTopic)
			}
			if len(s.DLQ.OperatorToken) < 16 || len(s.DLQ.ViewerToken) < 16 || s.DLQ.OperatorToken == s.DLQ.ViewerToken {
				t.Errorf("tokens %q %q: want two different ones of at least 16 characters", s.DLQ.OperatorToken, s.DLQ.ViewerToken)
			}
			p := tt.prefix
			want := []string{"DLQ_SCHEMA=" + tt.wantSchm, "DLQ_TOPIC=" + tt.wantTopic, "KAFKA_CONSUMER_GROUP=" + p + "dlq-handler",
				"DLQ_OPERATOR_TOKEN=" + s.DLQ.OperatorToken, "DLQ_VIEWER_TOKEN=" + s.DLQ.ViewerToken,
				"DLQ_STAGE_GROUPS=ingest-clickstream=" + p + "ingest-clickstream,validator=" + p + "validator,bq-writer=" + p + "bq-writer",
				"DLQ_REPLAY_TOPICS=http:/v1/events=" + p + "clickstream"}
			env := s.Procs["dlq-handler"].Env
			for _, w := range want {
				if !slices.Contains(env, w) {
					t.Errorf("dlq-handler's env lacks %s: %v", w, env)
				}
			}
			if s.DLQ.URL != "http://"+s.Procs["dlq-handler"].HTTPAddr {
				t.Errorf("URL %q, HTTP address %q", s.DLQ.URL, s.Procs["dlq-handler"].HTTPAddr)
			}
		})
	}
}

// TestDLQRelay: the relay copies the slice's dead letters (source topic
// with its prefix) from where the shared topic ended at Start, with key,
// value and headers, and nothing else: not other slices', not the stack's,
// not records that are no DeadLetter, not what was there before. Stopping
// drains what the topic holds; the next start resumes where it stopped.
func TestDLQRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const prefix = "t-1."
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, deadletter.Topic, prefix+deadletter.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	reg := srfake.New()
	defer reg.Close()
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := r.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(id, source string) {
		t.Helper()
		b, err := codec.Encode(&events.DeadLetter{DeadLetterID: id, Stage: "validator", SourceTopic: source,
			SourceTimestamp: time.Now().UTC(), OriginalValue: []byte("x"), OriginalHeaders: []events.Header{},
			Reasons: []events.Reason{{Code: "RULE_FAILED", Message: "m"}}, Attempt: 1, FailedAt: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: deadletter.Topic, Key: []byte("k-" + id), Value: b, Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(id)}}}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send("before", prefix+"ecom.events.v1") // before Start: not the slice's run
	s, err := New(Options{RunDir: t.TempDir(), Prefix: prefix, Brokers: cluster.ListenAddrs(), Registry: reg.URL(), DLQ: &DLQOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.prepareRelay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.startRelay(ctx); err != nil {
		t.Fatal(err)
	}
	send("mine-1", prefix+"ecom.events.v1")
	send("other", "t-2.ecom.events.v1")
	send("stack", "ecom.events.v1")
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: deadletter.Topic, Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	send("mine-2", prefix+"clickstream")

	cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(s.Topics.DLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got []string
	for len(got) < 2 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cons.PollFetches(pctx)
		pcancel()
		for _, rec := range fs.Records() {
			var dl events.DeadLetter
			if _, err := codec.Decode(ctx, rec.Value, &dl); err != nil {
				t.Fatal(err)
			}
			if string(rec.Key) != "k-"+dl.DeadLetterID || len(rec.Headers) != 1 || string(rec.Headers[0].Value) != dl.DeadLetterID {
				t.Errorf("relayed %s: key %q headers %v, want the original's", dl.DeadLetterID, rec.Key, rec.Headers)
			}
			got = append(got, dl.DeadLetterID)
		}
	}
	// Anything else would arrive within a moment.
	pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	for _, rec := range cons.PollFetches(pctx).Records() {
		got = append(got, string(rec.Key))
	}
	pcancel()
	slices.Sort(got)
	if !slices.Equal(got, []string{"mine-1", "mine-2"}) {
		t.Errorf("relayed %v, want [mine-1 mine-2]", got)
	}
	// Stop drains: what reached the shared topic before is copied first.
	send("mine-3", prefix+"ecom.events.v1")
	if err := s.DLQ.stopRelay(ctx); err != nil {
		t.Errorf("relay stopped with %v", err)
	}
	if n := s.DLQ.Relayed(); n != 3 {
		t.Errorf("Relayed() = %d after the drain, want 3", n)
	}
	// The next Start relays from where the last relay stopped: a dead letter
	// written in between is not lost.
	send("mine-between", prefix+"ecom.events.v1")
	if err := s.prepareRelay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.startRelay(ctx); err != nil {
		t.Fatal(err)
	}
	send("mine-4", prefix+"ecom.events.v1")
	for deadline := time.Now().Add(10 * time.Second); s.DLQ.Relayed() < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.DLQ.stopRelay(ctx); err != nil {
		t.Errorf("second relay stopped with %v", err)
	}
	var rest []string
	pctx, pcancel = context.WithTimeout(ctx, 2*time.Second)
	for len(rest) < 3 {
		fs := cons.PollFetches(pctx)
		if pctx.Err() != nil {
			break
		}
		for _, rec := range fs.Records() {
			rest = append(rest, strings.TrimPrefix(string(rec.Key), "k-"))
		}
	}
	pcancel()
	slices.Sort(rest)
	if !slices.Equal(rest, []string{"mine-3", "mine-4", "mine-between"}) || s.DLQ.Relayed() != 5 {
		t.Errorf("after the restart: relayed %v (%d in all), want [mine-3 mine-4 mine-between] (5)", rest, s.DLQ.Relayed())
	}
}
