package service

import (
	"context"
	"time"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
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
}

// DeadLetterCodec registers the DeadLetter schema and returns its codec.
func (rt *Runtime) DeadLetterCodec(ctx context.Context) (*avroserde.Codec, error) {
	return rt.Registry.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
}

// RunStage runs h as a transactional stage until ctx is done: the standard
// middleware (tracing, metrics, dead-lettering, recovery), topic creation,
// consumer-lag reporting, a Kafka readiness check and the HTTP server.
func (rt *Runtime) RunStage(ctx context.Context, s Stage, h stream.Handler, opts ...stream.ProcessorOption) error {
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		return err
	}
	h = stream.Chain(h, stream.Standard(rt.Name, s.Group, rt.Tel.Tracer, dlq, stream.DeadLetterLimit(s.Kafka), rt.Metrics, rt.Log)...)
	opts = append([]stream.ProcessorOption{stream.WithRegisterer(rt.Tel.Registry)}, opts...)
	proc, err := stream.NewProcessor(s.Kafka, stream.ProcessorConfig{
		Stage: rt.Name, Group: s.Group, Topics: s.Inputs,
		TransactionalID: s.Kafka.DefaultTransactionalID(rt.Name),
	}, h, rt.Metrics, rt.Log, opts...)
	if err != nil {
		return err
	}
	if s.Kafka.CreateTopics {
		specs := []stream.TopicSpec{stream.DeadLetterTopic(s.Kafka)}
		for _, t := range append(append([]string{}, s.Inputs...), s.Outputs...) {
			specs = append(specs, stream.TopicSpec{Name: t})
		}
		if err := stream.EnsureTopics(ctx, proc.Admin(), s.Kafka, specs...); err != nil {
			return err
		}
	}
	lag, err := stream.NewLagReporter(proc.Admin(), s.Group, s.LagInterval, rt.Tel.Meter, rt.Log)
	if err != nil {
		return err
	}
	rt.HTTP.AddCheck("kafka", proc.Ping)
	return rt.Run(ctx, proc.Run, lag.Run)
}
