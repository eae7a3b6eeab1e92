// Command ingest-orders polls the storefront's orders API and produces every
// order version as an Avro Order, exactly once at the source: the orders and
// the advanced cursor commit in one Kafka transaction.
package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/poller"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

const name = "ingest-orders"

var version = "dev" // set with -ldflags "-X main.version=..."

// Config is ingest-orders' configuration.
type Config struct {
	service.Base
	OrdersTopic string `env:"ORDERS_TOPIC" default:"ecom.orders.v1" usage:"topic of Avro Orders, keyed by order_id"`
	Storefront  storefront.Config
	Poller      poller.Config
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.NotEmpty("ORDERS_TOPIC", c.OrdersTopic) // nested configs validate themselves
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	orders, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.OrdersTopic), protoavro.Order)
	if err != nil {
		return err
	}
	opts, err := cfg.Kafka.ClientOpts(name)
	if err != nil {
		return err
	}
	opts = append(opts, kgo.WithLogger(stream.Logger(rt.Log)))
	// The fixed transactional id of the cursor: every replica uses the same,
	// so the one that initialises last owns the cursor (KIP-618 fencing).
	txn, err := kgo.NewClient(append(opts,
		kgo.TransactionalID(cursor.TransactionalID(name, cfg.Poller.CursorName)),
		kgo.TransactionTimeout(cfg.Kafka.TransactionTimeout))...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer txn.Close()
	if cfg.Kafka.CreateTopics {
		if err := stream.EnsureTopics(ctx, kadm.NewClient(txn), cfg.Kafka,
			stream.TopicSpec{Name: cfg.OrdersTopic}, cursor.Topic(cfg.Poller.CursorTopic)); err != nil {
			return err
		}
	}
	if err := cursor.Fence(ctx, txn); err != nil {
		return err
	}
	start, found, err := cursor.Load(ctx, opts, cfg.Poller.CursorTopic, cfg.Poller.CursorName)
	if err != nil {
		return err
	}
	rt.Log.InfoContext(ctx, "cursor loaded", "cursor", cfg.Poller.CursorName, "found", found, "since", start.Since)
	p, err := poller.New(cfg.Poller, poller.Deps{
		API: storefront.New(cfg.Storefront, nil), Txn: txn, Orders: orders, Topic: cfg.OrdersTopic,
		Start: start, Meter: rt.Tel.Meter, Log: rt.Log,
	})
	if err != nil {
		return err
	}
	rt.HTTP.AddCheck("kafka", txn.Ping)
	rt.HTTP.AddCheck("last_poll", p.Ready)
	return rt.Run(ctx, p.Run)
}
