// Command validator applies the declarative data-quality rules of
// services/validator/rules (or RULES_DIR) to every ClickEvent and every
// Order: valid records go on to their entity's valid topic, flagged with the
// warn rules they failed; invalid ones go to the dead-letter topic with every
// error rule they failed. One consumer group reads every entity's input
// topic; each record goes to its topic's entity (the table in entities).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/service"
	"github.com/ecomstream/platform/services/validator/internal/rules"
	"github.com/ecomstream/platform/services/validator/internal/validate"
)

const name = "validator"

var version = "dev" // set with -ldflags "-X main.version=..."

// Config is the validator's configuration.
type Config struct {
	service.Base
	InputTopic        string        `env:"INPUT_TOPIC" default:"ecom.events.v1" usage:"topic of Avro ClickEvents to validate"`
	OutputTopic       string        `env:"OUTPUT_TOPIC" default:"ecom.events.valid.v1" usage:"topic of valid ClickEvents"`
	OrdersInputTopic  string        `env:"ORDERS_INPUT_TOPIC" default:"ecom.orders.v1" usage:"topic of Avro Orders to validate; empty = orders off"`
	OrdersOutputTopic string        `env:"ORDERS_OUTPUT_TOPIC" default:"ecom.orders.valid.v1" usage:"topic of valid Orders"`
	ConsumerGroup     string        `env:"KAFKA_CONSUMER_GROUP" default:"validator" usage:"consumer group"`
	RulesDir          string        `env:"RULES_DIR" default:"" usage:"directory of *.yaml rule files, one per entity; empty = the files built into the binary"`
	AllowedEventTypes []string      `env:"ALLOWED_EVENT_TYPES" default:"page_view,product_view,search,add_to_cart,remove_from_cart,begin_checkout,purchase" usage:"event types rule click.event_type_allowed accepts"`
	MaxFutureSkew     time.Duration `env:"MAX_FUTURE_SKEW" default:"5m" usage:"rules click.timestamp_not_future and click.received_at_plausible: tolerated clock skew"`
	MaxEventAge       time.Duration `env:"MAX_EVENT_AGE" default:"168h" usage:"rule click.timestamp_within_window: oldest accepted event_timestamp, before received_at"`
	OrderMaxAhead     time.Duration `env:"ORDER_MAX_AHEAD" default:"5m" usage:"rule order.freshness (warn): an order's updated_at at most this far after received_at (the shop's clock ahead of ingest's)"`
	OrderMaxLag       time.Duration `env:"ORDER_MAX_LAG" default:"1h" usage:"rule order.freshness (warn): an order's updated_at at most this far before received_at (a slow poll or a late webhook)"`
	LagInterval       time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("OUTPUT_TOPIC", c.OutputTopic),
		c.validateOrders(),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		dirOrEmpty("RULES_DIR", c.RulesDir),
		config.NonEmptyList("ALLOWED_EVENT_TYPES", c.AllowedEventTypes),
		config.Between("MAX_FUTURE_SKEW", c.MaxFutureSkew, 0, 24*time.Hour),
		config.Positive("MAX_EVENT_AGE", c.MaxEventAge),
		config.Positive("ORDER_MAX_AHEAD", c.OrderMaxAhead),
		config.Positive("ORDER_MAX_LAG", c.OrderMaxLag),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
	)
}

// validateOrders: with orders on, their output topic is set, and no two of
// the four topics are the same (a shared topic would mix entities or loop).
func (c *Config) validateOrders() error {
	if c.OrdersInputTopic == "" {
		return nil
	}
	if err := config.NotEmpty("ORDERS_OUTPUT_TOPIC", c.OrdersOutputTopic); err != nil {
		return err
	}
	named := []struct{ name, topic string }{
		{"INPUT_TOPIC", c.InputTopic}, {"OUTPUT_TOPIC", c.OutputTopic},
		{"ORDERS_INPUT_TOPIC", c.OrdersInputTopic}, {"ORDERS_OUTPUT_TOPIC", c.OrdersOutputTopic},
	}
	for i := 2; i < len(named); i++ {
		for j := range i {
			if named[i].topic == named[j].topic {
				return config.Errorf(named[i].name, "%q is also %s", named[i].topic, named[j].name)
			}
		}
	}
	return nil
}

// entities is the table of entities the validator runs: clicks always,
// orders unless ORDERS_INPUT_TOPIC is empty.
func entities(cfg *Config) []validate.Entity {
	es := []validate.Entity{
		{Name: "click_event", Input: cfg.InputTopic, Output: cfg.OutputTopic, New: validate.HandlerOf[events.ClickEvent]},
	}
	if cfg.OrdersInputTopic != "" {
		es = append(es, validate.Entity{Name: "order", Input: cfg.OrdersInputTopic, Output: cfg.OrdersOutputTopic, New: validate.HandlerOf[events.Order]})
	}
	return es
}

// dirOrEmpty fails unless dir is empty or an existing directory.
func dirOrEmpty(name, dir string) error {
	if dir == "" {
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return config.Errorf(name, "%q is not a directory", dir)
	}
	return nil
}

func main() {
	var cfg Config
	service.Main(name, version, &cfg, func(ctx context.Context, rt *service.Runtime) error { return run(ctx, rt, &cfg) })
}

func run(ctx context.Context, rt *service.Runtime, cfg *Config) error {
	sets, err := loadRules(cfg)
	if err != nil {
		return err
	}
	es := entities(cfg)
	for _, e := range es {
		if _, ok := sets[e.Name]; !ok {
			return fmt.Errorf("RULES_DIR %s: no rule file for entity %s", cfg.RulesDir, e.Name)
		}
	}
	for _, s := range sets {
		rt.Log.Info("rule set loaded", slog.String("entity", s.Entity.Name), slog.String("rules", s.Label()), slog.Int("count", len(s.Rules())))
	}
	router, err := validate.NewRouter(ctx, rt.Registry, sets, rt.Tel.Meter, es...)
	if err != nil {
		return err
	}
	return rt.RunStage(ctx, service.Stage{
		Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Inputs: router.Inputs(), Outputs: router.Outputs(),
	}, router.Handle)
}

// loadRules loads the rule files (RULES_DIR, else the embedded ones), with
// the rule parameters the environment overrides.
func loadRules(cfg *Config) (rules.Sets, error) {
	params := rules.Config{AllowedEventTypes: cfg.AllowedEventTypes, MaxFutureSkew: cfg.MaxFutureSkew, MaxEventAge: cfg.MaxEventAge,
		OrderMaxAhead: cfg.OrderMaxAhead, OrderMaxLag: cfg.OrderMaxLag}.Params()
	if cfg.RulesDir == "" {
		return rules.Embedded(params)
	}
	return rules.Load(os.DirFS(cfg.RulesDir), cfg.RulesDir, params)
}
