// Command validator applies the declarative data-quality rules of
// services/validator/rules (or RULES_DIR) to every ClickEvent: valid records
// go on to ecom.events.valid.v1, flagged with the warn rules they failed;
// invalid ones go to the dead-letter topic with every error rule they failed.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/service"
	protoavro "github.com/ecomstream/platform/proto/avro"
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
	ConsumerGroup     string        `env:"KAFKA_CONSUMER_GROUP" default:"validator" usage:"consumer group"`
	RulesDir          string        `env:"RULES_DIR" default:"" usage:"directory of *.yaml rule files, one per entity; empty = the files built into the binary"`
	AllowedEventTypes []string      `env:"ALLOWED_EVENT_TYPES" default:"page_view,product_view,search,add_to_cart,remove_from_cart,begin_checkout,purchase" usage:"event types rule click.event_type_allowed accepts"`
	MaxFutureSkew     time.Duration `env:"MAX_FUTURE_SKEW" default:"5m" usage:"rules click.timestamp_not_future and click.received_at_plausible: tolerated clock skew"`
	MaxEventAge       time.Duration `env:"MAX_EVENT_AGE" default:"168h" usage:"rule click.timestamp_within_window: oldest accepted event_timestamp, before received_at"`
	LagInterval       time.Duration `env:"LAG_REFRESH_INTERVAL" default:"15s" usage:"how often consumer lag is refreshed"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.NotEmpty("INPUT_TOPIC", c.InputTopic),
		config.NotEmpty("OUTPUT_TOPIC", c.OutputTopic),
		config.NotEmpty("KAFKA_CONSUMER_GROUP", c.ConsumerGroup),
		dirOrEmpty("RULES_DIR", c.RulesDir),
		config.NonEmptyList("ALLOWED_EVENT_TYPES", c.AllowedEventTypes),
		config.Between("MAX_FUTURE_SKEW", c.MaxFutureSkew, 0, 24*time.Hour),
		config.Positive("MAX_EVENT_AGE", c.MaxEventAge),
		config.Positive("LAG_REFRESH_INTERVAL", c.LagInterval),
	)
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
	codec, err := rt.Registry.Codec(ctx, avroserde.SubjectFor(cfg.OutputTopic), protoavro.ClickEvent)
	if err != nil {
		return err
	}
	set, ok := sets["click_event"]
	if !ok {
		return fmt.Errorf("RULES_DIR %s: no rule file for entity click_event", cfg.RulesDir)
	}
	for _, s := range sets {
		rt.Log.Info("rule set loaded", slog.String("entity", s.Entity.Name), slog.String("rules", s.Label()), slog.Int("count", len(s.Rules())))
	}
	v, err := validate.New[events.ClickEvent](codec, set, cfg.OutputTopic, rt.Tel.Meter)
	if err != nil {
		return err
	}
	return rt.RunStage(ctx, service.Stage{
		Kafka: cfg.Kafka, Group: cfg.ConsumerGroup, LagInterval: cfg.LagInterval,
		Inputs: []string{cfg.InputTopic}, Outputs: []string{cfg.OutputTopic},
	}, v.Handle)
}

// loadRules loads the rule files (RULES_DIR, else the embedded ones), with
// the rule parameters the environment overrides.
func loadRules(cfg *Config) (rules.Sets, error) {
	params := rules.Config{AllowedEventTypes: cfg.AllowedEventTypes, MaxFutureSkew: cfg.MaxFutureSkew, MaxEventAge: cfg.MaxEventAge}.Params()
	if cfg.RulesDir == "" {
		return rules.Embedded(params)
	}
	return rules.Load(os.DirFS(cfg.RulesDir), cfg.RulesDir, params)
}
