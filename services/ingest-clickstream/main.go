// Command ingest-clickstream reads raw JSON clickstream events from Kafka, and
// from HTTP clients through its collector (COLLECTOR_ADDR), and publishes
// them as Avro ClickEvents; unusable input is dead-lettered.
package main

import (
	"context"
	"time"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/clickparse"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/collector"
	"github.com/ecomstream/platform/services/ingest-clickstream/internal/ingest"
)

const name = "ingest-clickstream"

var version = "dev" // set with -ldflags "-X main.version=..."

// Config is ingest-clickstream's configuration.
type Config struct {
	service.Base
	InputTopic    string        `env:"INPUT_TOPIC" default:"clickstream" usage:"topic of raw JSON events"`
	OutputTopic   string        `env:"OUTPUT_TOPIC" default:"ecom.events.v1" usage:"topic of Avro ClickEvents"`
	ConsumerGroup string        `env:"KAFKA_CONSUMER_GROUP" default:"ingest-clickstream" usage:"consumer group"`
	MaxEventBytes int           `env:"MAX_EVENT_BYTES" default:"65536" usage:"raw events larger than this are dead-lettered as OVERSIZED (Kafka path) or refuse their request with 413 (collector)"`
	LagInterval   time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
	Collector     collector.Config
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("OUTPUT_TOPIC", c.OutputTopic),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		config.Between("MAX_EVENT_BYTES", c.MaxEventBytes, 256, 16<<20),
		stream.CheckInputLimit("MAX_EVENT_BYTES", c.MaxEventBytes, c.Kafka),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
	) // Collector validates itself (config.Load calls every nested Validate)
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	events, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.OutputTopic), protoavro.ClickEvent)
	if err != nil {
		return err
	}
	parser := &clickparse.Parser{MaxBytes: cfg.MaxEventBytes, Source: "kafka"}
	stage := service.Stage{
		Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Inputs: []string{cfg.InputTopic}, Outputs: []string{cfg.OutputTopic},
		TrustBoundary: true, // raw input from producers outside the platform: new trace root, their traceparent a link
	}
	if cfg.Collector.Enabled() {
		srv, closeProducer, err := newCollector(ctx, rt, cfg, parser, events)
		if err != nil {
			return err
		}
		defer closeProducer()
		stage.Parts = append(stage.Parts, srv.Run)
	}
	return rt.RunStage(ctx, stage, ingest.Handler(parser, events, cfg.OutputTopic, time.Now))
}

// newCollector builds the HTTP collector and its producer, and makes /readyz
// check that the producer reaches Kafka.
func newCollector(ctx context.Context, rt *service.Runtime, cfg *Config, parser *clickparse.Parser, events stream.Encoder) (*collector.Server, func(), error) {
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		return nil, nil, err
	}
	cl, err := collector.NewProducer(cfg.Kafka, cfg.Collector, name, rt.Log, rt.Tel.Registry)
	if err != nil {
		return nil, nil, err
	}
	c, err := collector.New(cfg.Collector, collector.Deps{
		Parser: parser, Events: events, DeadLetters: dlq, OutputTopic: cfg.OutputTopic, InputTopic: cfg.InputTopic,
		Stage: name, DeadLetterBudget: stream.DeadLetterLimit(cfg.Kafka), Producer: cl,
		Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter, Metrics: rt.Metrics, Log: rt.Log,
	})
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	rt.HTTP.AddCheck("collector_kafka", cl.Ping)
	return collector.NewServer(cfg.Collector, c, cl.Flush, cfg.HTTP.ShutdownTimeout, rt.Log), cl.Close, nil
}
