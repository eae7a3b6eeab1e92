// Command ingest-clickstream reads raw JSON clickstream events from Kafka and
// publishes them as Avro ClickEvents; unusable input is dead-lettered.
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
	MaxEventBytes int           `env:"MAX_EVENT_BYTES" default:"65536" usage:"raw events larger than this are dead-lettered as OVERSIZED"`
	LagInterval   time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
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
	)
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
	return rt.RunStage(ctx, service.Stage{
		Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Inputs: []string{cfg.InputTopic}, Outputs: []string{cfg.OutputTopic},
		TrustBoundary: true, // raw input from producers outside the platform: new trace root, their traceparent a link
	}, ingest.Handler(parser, events, cfg.OutputTopic, time.Now))
}
