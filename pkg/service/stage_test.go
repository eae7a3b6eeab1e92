package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/deadletter"
)

// TestRunStageTrustBoundary: a stage marked TrustBoundary does not let a
// producer's traceparent choose sampling (ratio 0 here, the producer says
// sampled): its output carries a new, unsampled trace. A stage without it
// continues the trace it was given.
func TestRunStageTrustBoundary(t *testing.T) {
	const producerTrace = "0af7651916cd43dd8448eb211c80319c"
	incoming := "00-" + producerTrace + "-b7ad6b7169203331-01"
	tests := []struct {
		name          string
		boundary      bool
		wantContinued bool
	}{
		{"trust boundary: new root", true, false},
		{"inside the platform: continued", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", deadletter.Topic))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			reg := srfake.New()
			defer reg.Close()
			var base Base
			env := map[string]string{
				"KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ","), "SCHEMA_REGISTRY_URL": reg.URL(),
				"HTTP_ADDR": "127.0.0.1:0", "OTEL_TRACES_SAMPLER_ARG": "0", "KAFKA_CREATE_TOPICS": "false",
				"KAFKA_TRANSACTIONAL_ID": "stage-test-0", "LOG_LEVEL": "error",
			}
			if err := config.LoadFrom(config.MapLookup(env), &base); err != nil {
				t.Fatal(err)
			}
			rt, err := Start(context.Background(), "stage-test", "test", base)
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- rt.RunStage(ctx, Stage{Kafka: base.Kafka, Group: "g", Inputs: []string{"in"}, Outputs: []string{"out"},
					LagInterval: time.Second, TrustBoundary: tt.boundary},
					func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
						return []*kgo.Record{{Topic: "out", Value: rec.Value}}, nil
					})
			}()

			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("out"),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte("v"),
				Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(incoming)}}}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			defer pcancel()
			var out *kgo.Record
			for out == nil {
				fs := cl.PollFetches(pctx)
				if pctx.Err() != nil {
					t.Fatal("no output record within 20s")
				}
				fs.EachRecord(func(r *kgo.Record) { out = r })
			}
			var tp string
			for _, h := range out.Headers {
				if h.Key == "traceparent" {
					tp = string(h.Value)
				}
			}
			continued := strings.Contains(tp, producerTrace)
			if continued != tt.wantContinued {
				t.Errorf("output traceparent %q: continued the producer's trace = %v, want %v", tp, continued, tt.wantContinued)
			}
			if !tt.wantContinued && !strings.HasSuffix(tp, "-00") {
				t.Errorf("output traceparent %q is sampled: the producer's flag won over ratio 0", tp)
			}

			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("RunStage: %v", err)
			}
		})
	}
}

// TestRunStageParts: a part given with the stage starts once the stage's
// topics exist, and its failure ends RunStage with that error; the stage's
// end (ctx) ends the part.
func TestRunStageParts(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := srfake.New()
	defer reg.Close()
	var base Base
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ","), "SCHEMA_REGISTRY_URL": reg.URL(),
		"HTTP_ADDR": "127.0.0.1:0", "KAFKA_TRANSACTIONAL_ID": "parts-test-0", "LOG_LEVEL": "error",
	}
	if err := config.LoadFrom(config.MapLookup(env), &base); err != nil {
		t.Fatal(err)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	partErr := errors.New("part failed")
	tests := []struct {
		name    string
		fail    bool
		wantErr error
	}{
		{"failing part ends the stage", true, partErr},
		{"stage end ends the part", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := Start(context.Background(), "parts-test", "test", base) // a Runtime runs once
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var topicsAtStart []string
			part := func(pctx context.Context) error {
				md, err := kadm.NewClient(adm).ListTopics(pctx)
				if err != nil {
					return err
				}
				topicsAtStart = md.Names()
				if tt.fail {
					return partErr
				}
				cancel() // the stage stops; the part must see it
				<-pctx.Done()
				return nil
			}
			err = rt.RunStage(ctx, Stage{Kafka: base.Kafka, Group: "g", Inputs: []string{"in"}, Outputs: []string{"out"},
				LagInterval: time.Second, Parts: []func(context.Context) error{part}},
				func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) { return nil, nil })
			if !errors.Is(err, tt.wantErr) && !(tt.wantErr == nil && errors.Is(err, context.Canceled)) {
				t.Errorf("RunStage = %v, want %v", err, tt.wantErr)
			}
			for _, want := range []string{"in", "out", deadletter.Topic} {
				if !slices.Contains(topicsAtStart, want) {
					t.Errorf("topic %s missing when the part started: %v", want, topicsAtStart)
				}
			}
		})
	}
}
