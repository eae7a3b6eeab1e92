// Command ingest-orders polls the storefront's orders API and produces every
// order version as an Avro Order, exactly once at the source: the orders and
// the advanced cursor commit in one Kafka transaction.
package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/ingest-orders/internal/backfill"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/poller"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
	"github.com/ecomstream/platform/services/ingest-orders/internal/webhook"
)

const name = "ingest-orders"

var version = "dev" // set with -ldflags "-X main.version=..."

// Config is ingest-orders' configuration.
type Config struct {
	service.Base
	OrdersTopic string `env:"ORDERS_TOPIC" default:"ecom.orders.v1" usage:"topic of Avro Orders, keyed by order_id"`
	Storefront  storefront.Config
	Poller      poller.Config
	Webhook     webhook.Config
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("ORDERS_TOPIC", c.OrdersTopic),
		stream.CheckInputLimit("WEBHOOK_MAX_BODY_BYTES", c.Webhook.MaxBodyBytes, c.Kafka),
	) // nested configs validate themselves
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
		specs := []stream.TopicSpec{{Name: cfg.OrdersTopic}, cursor.Topic(cfg.Poller.CursorTopic)}
		if cfg.Webhook.Enabled() {
			specs = append(specs, stream.DeadLetterTopic(cfg.Kafka))
		}
		if err := stream.EnsureTopics(ctx, kadm.NewClient(txn), cfg.Kafka, specs...); err != nil {
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
		Start: start, Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter, Log: rt.Log,
	})
	if err != nil {
		return err
	}
	rt.HTTP.AddCheck("kafka", txn.Ping)
	rt.HTTP.AddCheck("last_poll", p.Ready)
	// Webhooks and backfills produce outside the cursor's transactions, with
	// an idempotent producer of their own (acks=all).
	side, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(3*cfg.Webhook.ProduceTimeout))...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer side.Close()
	rt.HTTP.AddCheck("side_kafka", side.Ping)
	if cfg.Webhook.Enabled() {
		if err := mountWebhooks(ctx, rt, cfg, side, orders); err != nil {
			return err
		}
	}
	bf := backfill.New(backfill.Deps{
		Reader: &storefront.Reader{API: storefront.New(cfg.Storefront, nil), Limit: cfg.Poller.PageSize,
			BackoffMin: cfg.Poller.BackoffMin, BackoffMax: cfg.Poller.BackoffMax, Tracer: rt.Tel.Tracer},
		Producer: side, Orders: orders, Topic: cfg.OrdersTopic, OperatorToken: cfg.HTTP.OperatorToken, Log: rt.Log,
	})
	bf.Routes(rt.HTTP.Router)
	return rt.Run(ctx, p.Run, bf.Run)
}

// mountWebhooks serves the webhook receiver on the service's HTTP server,
// producing with cl: the transactional client belongs to the cursor.
func mountWebhooks(ctx context.Context, rt *service.Runtime, cfg *Config, cl *kgo.Client, orders stream.Encoder) error {
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		return err
	}
	h, err := webhook.New(cfg.Webhook, webhook.Deps{
		Producer: cl, Orders: orders, DeadLetters: dlq, Topic: cfg.OrdersTopic, Stage: name,
		DeadLetterBudget: stream.DeadLetterLimit(cfg.Kafka), Tracer: rt.Tel.Tracer, Meter: rt.Tel.Meter,
		Metrics: rt.Metrics, Log: rt.Log,
	})
	if err != nil {
		return err
	}
	rt.HTTP.Router.Method(http.MethodPost, webhook.Path, h)
	return nil
}
