// Command validator applies the declarative data-quality rules of
// services/validator/rules (or RULES_DIR) to every ClickEvent, Order,
// ProductChange and CustomerChange: valid records go on to their entity's
// valid topic, flagged with the warn rules they failed; invalid ones go to
// the dead-letter topic with every error rule they failed. One consumer group reads every entity's input
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
	InputTopic           string        `env:"INPUT_TOPIC" default:"ecom.events.v1" usage:"topic of Avro ClickEvents to validate"`
	OutputTopic          string        `env:"OUTPUT_TOPIC" default:"ecom.events.valid.v1" usage:"topic of valid ClickEvents"`
	OrdersInputTopic     string        `env:"ORDERS_INPUT_TOPIC" default:"ecom.orders.v1" usage:"topic of Avro Orders to validate; empty = orders off"`
	OrdersOutputTopic    string        `env:"ORDERS_OUTPUT_TOPIC" default:"ecom.orders.valid.v1" usage:"topic of valid Orders"`
	ProductsInputTopic   string        `env:"PRODUCTS_INPUT_TOPIC" default:"ecom.products.v1" usage:"topic of Avro ProductChanges to validate; empty = products off"`
	ProductsOutputTopic  string        `env:"PRODUCTS_OUTPUT_TOPIC" default:"ecom.products.valid.v1" usage:"topic of valid ProductChanges"`
	CustomersInputTopic  string        `env:"CUSTOMERS_INPUT_TOPIC" default:"ecom.customers.v1" usage:"topic of Avro CustomerChanges to validate; empty = customers off"`
	CustomersOutputTopic string        `env:"CUSTOMERS_OUTPUT_TOPIC" default:"ecom.customers.valid.v1" usage:"topic of valid CustomerChanges"`
	ConsumerGroup        string        `env:"KAFKA_CONSUMER_GROUP" default:"validator" usage:"consumer group"`
	RulesDir             string        `env:"RULES_DIR" default:"" usage:"directory of *.yaml rule files, one per entity; empty = the files built into the binary"`
	AllowedEventTypes    []string      `env:"ALLOWED_EVENT_TYPES" default:"page_view,product_view,search,add_to_cart,remove_from_cart,begin_checkout,purchase" usage:"event types rule click.event_type_allowed accepts"`
	MaxFutureSkew        time.Duration `env:"MAX_FUTURE_SKEW" default:"5m" usage:"rules click.timestamp_not_future and click.received_at_plausible: tolerated clock skew"`
	MaxEventAge          time.Duration `env:"MAX_EVENT_AGE" default:"168h" usage:"rule click.timestamp_within_window: oldest accepted event_timestamp, before received_at"`
	OrderMaxAhead        time.Duration `env:"ORDER_MAX_AHEAD" default:"5m" usage:"rule order.freshness (warn): an order's updated_at at most this far after received_at (the shop's clock ahead of ingest's)"`
	OrderMaxLag          time.Duration `env:"ORDER_MAX_LAG" default:"1h" usage:"rule order.freshness (warn): an order's updated_at at most this far before received_at (a slow poll or a late webhook)"`
	ProductMaxPriceMinor int64         `env:"PRODUCT_MAX_PRICE_MINOR" default:"10000000" usage:"rule product.price_range: the highest list price of a product, in minor units of its currency"`
	LagInterval          time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("OUTPUT_TOPIC", c.OutputTopic),
		c.validateTopics(),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		dirOrEmpty("RULES_DIR", c.RulesDir),
		config.NonEmptyList("ALLOWED_EVENT_TYPES", c.AllowedEventTypes),
		config.Between("MAX_FUTURE_SKEW", c.MaxFutureSkew, 0, 24*time.Hour),
		config.Positive("MAX_EVENT_AGE", c.MaxEventAge),
		config.Positive("ORDER_MAX_AHEAD", c.OrderMaxAhead),
		config.Positive("ORDER_MAX_LAG", c.OrderMaxLag),
		config.Positive("PRODUCT_MAX_PRICE_MINOR", c.ProductMaxPriceMinor),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
	)
}

// optional is an entity the validator runs unless its input topic is
// empty: its rule set's entity, its topics and the variables that set them.
type optional struct {
	entity        string
	inVar, outVar string
	input, output string
	new           validate.NewHandler
}

// optionals is the table of the entities besides clicks, in the order
// their topics are checked and consumed.
func (c *Config) optionals() []optional {
	return []optional{
		{"order", "ORDERS_INPUT_TOPIC", "ORDERS_OUTPUT_TOPIC", c.OrdersInputTopic, c.OrdersOutputTopic, validate.HandlerOf[events.Order]},
		{"product_change", "PRODUCTS_INPUT_TOPIC", "PRODUCTS_OUTPUT_TOPIC", c.ProductsInputTopic, c.ProductsOutputTopic, validate.HandlerOf[events.ProductChange]},
		{"customer_change", "CUSTOMERS_INPUT_TOPIC", "CUSTOMERS_OUTPUT_TOPIC", c.CustomersInputTopic, c.CustomersOutputTopic, validate.HandlerOf[events.CustomerChange]},
	}
}

// validateTopics: every entity that is on has its output topic set, and no
// two topics of the entities that are on are the same (a shared topic would
// mix entities or loop). The error names the later variable of the pair.
func (c *Config) validateTopics() error {
	named := []struct{ name, topic string }{{"INPUT_TOPIC", c.InputTopic}, {"OUTPUT_TOPIC", c.OutputTopic}}
	for _, o := range c.optionals() {
		if o.input == "" {
			continue
		}
		if err := config.NotEmpty(o.outVar, o.output); err != nil {
			return err
		}
		named = append(named, struct{ name, topic string }{o.inVar, o.input}, struct{ name, topic string }{o.outVar, o.output})
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

// entities is the table of entities the validator runs: clicks always, each
// optional entity unless its input topic is empty.
func entities(cfg *Config) []validate.Entity {
	es := []validate.Entity{
		{Name: "click_event", Input: cfg.InputTopic, Output: cfg.OutputTopic, New: validate.HandlerOf[events.ClickEvent]},
	}
	for _, o := range cfg.optionals() {
		if o.input != "" {
			es = append(es, validate.Entity{Name: o.entity, Input: o.input, Output: o.output, New: o.new})
		}
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
		OrderMaxAhead: cfg.OrderMaxAhead, OrderMaxLag: cfg.OrderMaxLag, ProductMaxPriceMinor: cfg.ProductMaxPriceMinor}.Params()
	if cfg.RulesDir == "" {
		return rules.Embedded(params)
	}
	return rules.Load(os.DirFS(cfg.RulesDir), cfg.RulesDir, params)
}
