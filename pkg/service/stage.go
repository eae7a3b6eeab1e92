package service

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// Stage describes a Kafka-to-Kafka stage.
type Stage struct {
	Kafka       stream.Config
	Group       string
	Inputs      []string
	Outputs     []string // topics it produces to, besides the dead-letter topic
	LagInterval time.Duration
	// TrustBoundary marks a stage whose input comes from outside the
	// platform: its spans start new traces, sampled by the service's own
	// ratio, linked to (not continuing) the producers' traceparent
	// (stream.TrustBoundary). Stages reading the platform's own topics
	// leave it false and continue the trace.
	TrustBoundary bool
	// Parts run next to the stage (e.g. ingest-clickstream's HTTP
	// collector), started once the topics exist; the first to fail stops
	// the stage, and the stage's end stops them.
	Parts []func(context.Context) error
}

// DeadLetterCodec registers the DeadLetter schema and returns its codec.
func (rt *Runtime) DeadLetterCodec(ctx context.Context) (*avroserde.Codec, error) {
	return rt.Registry.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
}

// RunStage runs h as a transactional stage until ctx is done: the standard
// middleware (tracing, metrics, dead-lettering, recovery) on a Processor, run
// as a Consumer.
func (rt *Runtime) RunStage(ctx context.Context, s Stage, h stream.Handler, opts ...stream.ProcessorOption) error {
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		return err
	}
	tracer := rt.Tel.Tracer
	if s.TrustBoundary {
		tracer = stream.TrustBoundary(tracer)
	}
	h = stream.Chain(h, stream.Standard(rt.Name, s.Group, tracer, dlq, stream.DeadLetterLimit(s.Kafka), rt.Metrics, rt.Log)...)
	opts = append([]stream.ProcessorOption{stream.WithRegisterer(rt.Tel.Registry)}, opts...)
	proc, err := stream.NewProcessor(s.Kafka, stream.ProcessorConfig{
		Stage: rt.Name, Group: s.Group, Topics: s.Inputs,
		TransactionalID: s.Kafka.DefaultTransactionalID(rt.Name),
	}, h, rt.Metrics, rt.Log, opts...)
	if err != nil {
		return err
	}
	topics := []stream.TopicSpec{stream.DeadLetterTopic(s.Kafka)}
	for _, t := range append(append([]string{}, s.Inputs...), s.Outputs...) {
		topics = append(topics, stream.TopicSpec{Name: t})
	}
	return rt.RunConsumer(ctx, Consumer{Kafka: s.Kafka, Group: s.Group, LagInterval: s.LagInterval,
		Admin: proc.Admin(), Topics: topics, Ping: proc.Ping, Run: proc.Run, Parts: s.Parts})
}

// Consumer is a service's Kafka consumer as RunConsumer needs it.
type Consumer struct {
	Kafka       stream.Config
	Group       string
	LagInterval time.Duration
	Admin       *kadm.Client
	Topics      []stream.TopicSpec // created when KAFKA_CREATE_TOPICS is on
	Ping        httpserver.Check   // the brokers answer, for /readyz
	Run         func(context.Context) error
	Parts       []func(context.Context) error // run next to Run, after the topics exist
}

// RunConsumer creates c's topics, reports its group's lag, makes /readyz check
// the brokers, and runs c with the HTTP server until ctx is done.
func (rt *Runtime) RunConsumer(ctx context.Context, c Consumer) error {
	if c.Kafka.CreateTopics {
		if err := stream.EnsureTopics(ctx, c.Admin, c.Kafka, c.Topics...); err != nil {
			return err
		}
	}
	lag, err := stream.NewLagReporter(c.Admin, c.Group, c.LagInterval, rt.Tel.Meter, rt.Log)
	if err != nil {
		return err
	}
	rt.HTTP.AddCheck("kafka", c.Ping)
	return rt.Run(ctx, append([]func(context.Context) error{c.Run, lag.Run}, c.Parts...)...)
}
