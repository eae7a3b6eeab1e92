package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/config/configtest"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/service"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// TestConfig: the service starts with no configuration at all, and its
// README documents every variable it reads.
func TestConfig(t *testing.T) { configtest.Check(t, &Config{}, "README.md") }

// TestRules loads the rule files the validator would load under the
// environment's RULES_DIR (the embedded ones when unset), with the default
// parameters: `RULES_DIR=/path/to/rules go test -run TestRules .` checks a
// directory before it is deployed.
func TestRules(t *testing.T) {
	cfg := &Config{}
	if err := config.LoadFrom(config.MapLookup(map[string]string{"RULES_DIR": os.Getenv("RULES_DIR")}), cfg); err != nil {
		t.Fatal(err)
	}
	sets, err := loadRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entities(cfg) {
		if sets[e.Name] == nil {
			t.Fatalf("no %s rules", e.Name)
		}
	}
	for _, s := range sets {
		t.Logf("%s: %d rules", s.Label(), len(s.Rules()))
	}
}

func TestRulesDirMustExist(t *testing.T) {
	cfg := &Config{}
	err := config.LoadFrom(config.MapLookup(map[string]string{"RULES_DIR": "/nonexistent"}), cfg)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || err.Error() != `config: RULES_DIR: "/nonexistent" is not a directory` {
		t.Errorf("err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // the error; "" = valid
	}{
		{name: "defaults"},
		{name: "orders off", env: map[string]string{"ORDERS_INPUT_TOPIC": "", "ORDERS_OUTPUT_TOPIC": ""}},
		{name: "orders on without an output", env: map[string]string{"ORDERS_OUTPUT_TOPIC": ""}, want: "config: ORDERS_OUTPUT_TOPIC: must not be empty"},
		{name: "orders read the click input", env: map[string]string{"ORDERS_INPUT_TOPIC": "ecom.events.v1"}, want: `config: ORDERS_INPUT_TOPIC: "ecom.events.v1" is also INPUT_TOPIC`},
		{name: "valid orders into the click output", env: map[string]string{"ORDERS_OUTPUT_TOPIC": "ecom.events.valid.v1"}, want: `config: ORDERS_OUTPUT_TOPIC: "ecom.events.valid.v1" is also OUTPUT_TOPIC`},
		{name: "valid orders back into their input", env: map[string]string{"ORDERS_OUTPUT_TOPIC": "ecom.orders.v1"}, want: `config: ORDERS_OUTPUT_TOPIC: "ecom.orders.v1" is also ORDERS_INPUT_TOPIC`},
		{name: "order lag zero", env: map[string]string{"ORDER_MAX_LAG": "0s"}, want: "config: ORDER_MAX_LAG: "},
		{name: "order ahead negative", env: map[string]string{"ORDER_MAX_AHEAD": "-1m"}, want: "config: ORDER_MAX_AHEAD: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			err := config.LoadFrom(config.MapLookup(tt.env), &cfg) // validates
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEntities(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(nil), &cfg); err != nil {
		t.Fatal(err)
	}
	if es := entities(&cfg); len(es) != 2 || es[0].Name != "click_event" || es[1].Name != "order" ||
		es[1].Input != "ecom.orders.v1" || es[1].Output != "ecom.orders.valid.v1" {
		t.Errorf("entities %+v", es)
	}
	cfg.OrdersInputTopic = ""
	if es := entities(&cfg); len(es) != 1 || es[0].Name != "click_event" {
		t.Errorf("orders off: entities %+v", es)
	}
}

// TestRun: one validator process, one consumer group, reads clicks and
// orders: each valid record lands on its entity's valid topic, the broken
// order in the dead-letter topic with entity order and every failed rule.
func TestRun(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := srfake.New()
	defer reg.Close()
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ","), "SCHEMA_REGISTRY_URL": reg.URL(), "HTTP_ADDR": "127.0.0.1:0",
		"KAFKA_TRANSACTIONAL_ID": "validator-test-0", "LOG_LEVEL": "error",
	}
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(env), &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := service.Start(ctx, name, "test", cfg.Base)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	done := make(chan error, 1)
	go func() { done <- run(ctx, rt, &cfg) }()

	clicks, err := rt.Registry.Codec(ctx, "ecom.events.v1-value", protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := rt.Registry.Codec(ctx, "ecom.orders.v1-value", protoavro.Order)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	anon := "a1"
	click, err := clicks.Encode(&events.ClickEvent{EventID: "e1", EventTimestamp: now, ReceivedAt: now, EventType: "page_view",
		AnonymousID: &anon, SessionID: "s1", PageURL: "https://x.example/", Source: "kafka"})
	if err != nil {
		t.Fatal(err)
	}
	order := events.Order{OrderID: "o-good", UserID: "c1", Status: "created", OrderTimestamp: now, UpdatedAt: now, Currency: "EUR",
		SubtotalMinor: 1000, TaxMinor: 190, ShippingMinor: 499, TotalMinor: 1689, Items: []events.OrderItem{{ProductID: "p1", Quantity: 1, UnitPriceMinor: 1000}},
		Source: "api", OrderVersion: 1, ReceivedAt: &now}
	good, err := orders.Encode(&order)
	if err != nil {
		t.Fatal(err)
	}
	order.OrderID, order.Items, order.Currency = "o-bad", nil, "ZZZ"
	bad, err := orders.Encode(&order)
	if err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(cfg.OutputTopic, cfg.OrdersOutputTopic, deadletter.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: cfg.InputTopic, Key: []byte("s1"), Value: click},
		&kgo.Record{Topic: cfg.OrdersInputTopic, Key: []byte("o-good"), Value: good},
		&kgo.Record{Topic: cfg.OrdersInputTopic, Key: []byte("o-bad"), Value: bad},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	got := map[string]string{} // topic -> key, or the dead letter's entity and rules
	for len(got) < 3 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			if r.Topic != deadletter.Topic {
				got[r.Topic] = string(r.Key)
				return
			}
			var dl events.DeadLetter
			if _, err := dlq.Decode(ctx, r.Value, &dl); err != nil {
				t.Errorf("dead letter: %v", err)
				return
			}
			var ids []string
			for _, rs := range dl.Reasons {
				if rs.RuleID != nil {
					ids = append(ids, *rs.RuleID)
				}
			}
			entity := ""
			if dl.Entity != nil {
				entity = *dl.Entity
			}
			got[r.Topic] = entity + " " + dl.SourceTopic + " " + strings.Join(ids, ",")
		})
	}
	want := map[string]string{
		cfg.OutputTopic:       "s1",
		cfg.OrdersOutputTopic: "o-good",
		deadletter.Topic:      "order ecom.orders.v1 order.currency_iso4217,order.has_lines,order.lines_sum_to_subtotal",
	}
	for topic, w := range want {
		if got[topic] != w {
			t.Errorf("%s: got %q, want %q", topic, got[topic], w)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
