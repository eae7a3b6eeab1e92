package main

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/avroserde"
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
		{name: "catalog off", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "", "CUSTOMERS_INPUT_TOPIC": "", "PRODUCTS_OUTPUT_TOPIC": "", "CUSTOMERS_OUTPUT_TOPIC": ""}},
		{name: "everything but clicks off", env: map[string]string{"ORDERS_INPUT_TOPIC": "", "PRODUCTS_INPUT_TOPIC": "", "CUSTOMERS_INPUT_TOPIC": ""}},
		{name: "products on without an output", env: map[string]string{"PRODUCTS_OUTPUT_TOPIC": ""}, want: "config: PRODUCTS_OUTPUT_TOPIC: must not be empty"},
		{name: "customers on without an output", env: map[string]string{"CUSTOMERS_OUTPUT_TOPIC": ""}, want: "config: CUSTOMERS_OUTPUT_TOPIC: must not be empty"},
		{name: "products read the order input", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "ecom.orders.v1"}, want: `config: PRODUCTS_INPUT_TOPIC: "ecom.orders.v1" is also ORDERS_INPUT_TOPIC`},
		{name: "products read the order input, orders off", env: map[string]string{"PRODUCTS_INPUT_TOPIC": "ecom.orders.v1", "ORDERS_INPUT_TOPIC": ""}},
		{name: "valid products back into their input", env: map[string]string{"PRODUCTS_OUTPUT_TOPIC": "ecom.products.v1"}, want: `config: PRODUCTS_OUTPUT_TOPIC: "ecom.products.v1" is also PRODUCTS_INPUT_TOPIC`},
		{name: "valid products into the click output", env: map[string]string{"PRODUCTS_OUTPUT_TOPIC": "ecom.events.valid.v1"}, want: `config: PRODUCTS_OUTPUT_TOPIC: "ecom.events.valid.v1" is also OUTPUT_TOPIC`},
		{name: "customers read the product input", env: map[string]string{"CUSTOMERS_INPUT_TOPIC": "ecom.products.v1"}, want: `config: CUSTOMERS_INPUT_TOPIC: "ecom.products.v1" is also PRODUCTS_INPUT_TOPIC`},
		{name: "customers read valid products", env: map[string]string{"CUSTOMERS_INPUT_TOPIC": "ecom.products.valid.v1"}, want: `config: CUSTOMERS_INPUT_TOPIC: "ecom.products.valid.v1" is also PRODUCTS_OUTPUT_TOPIC`},
		{name: "valid customers into the order output", env: map[string]string{"CUSTOMERS_OUTPUT_TOPIC": "ecom.orders.valid.v1"}, want: `config: CUSTOMERS_OUTPUT_TOPIC: "ecom.orders.valid.v1" is also ORDERS_OUTPUT_TOPIC`},
		{name: "valid customers back into their input", env: map[string]string{"CUSTOMERS_OUTPUT_TOPIC": "ecom.customers.v1"}, want: `config: CUSTOMERS_OUTPUT_TOPIC: "ecom.customers.v1" is also CUSTOMERS_INPUT_TOPIC`},
		{name: "price cap zero", env: map[string]string{"PRODUCT_MAX_PRICE_MINOR": "0"}, want: "config: PRODUCT_MAX_PRICE_MINOR: "},
		{name: "price cap not a number", env: map[string]string{"PRODUCT_MAX_PRICE_MINOR": "100k"}, want: "config: PRODUCT_MAX_PRICE_MINOR: "},
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
	tests := []struct {
		name string
		env  map[string]string
		want []string // entity input -> output
	}{
		{name: "defaults", want: []string{
			"click_event ecom.events.v1 -> ecom.events.valid.v1", "order ecom.orders.v1 -> ecom.orders.valid.v1",
			"product_change ecom.products.v1 -> ecom.products.valid.v1", "customer_change ecom.customers.v1 -> ecom.customers.valid.v1"}},
		{name: "orders off", env: map[string]string{"ORDERS_INPUT_TOPIC": ""}, want: []string{
			"click_event ecom.events.v1 -> ecom.events.valid.v1",
			"product_change ecom.products.v1 -> ecom.products.valid.v1", "customer_change ecom.customers.v1 -> ecom.customers.valid.v1"}},
		{name: "products off", env: map[string]string{"PRODUCTS_INPUT_TOPIC": ""}, want: []string{
			"click_event ecom.events.v1 -> ecom.events.valid.v1", "order ecom.orders.v1 -> ecom.orders.valid.v1",
			"customer_change ecom.customers.v1 -> ecom.customers.valid.v1"}},
		{name: "customers renamed", env: map[string]string{"CUSTOMERS_INPUT_TOPIC": "t.c", "CUSTOMERS_OUTPUT_TOPIC": "t.c.valid", "PRODUCTS_INPUT_TOPIC": ""}, want: []string{
			"click_event ecom.events.v1 -> ecom.events.valid.v1", "order ecom.orders.v1 -> ecom.orders.valid.v1", "customer_change t.c -> t.c.valid"}},
		{name: "clicks only", env: map[string]string{"ORDERS_INPUT_TOPIC": "", "PRODUCTS_INPUT_TOPIC": "", "CUSTOMERS_INPUT_TOPIC": ""}, want: []string{
			"click_event ecom.events.v1 -> ecom.events.valid.v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			if err := config.LoadFrom(config.MapLookup(tt.env), &cfg); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entities(&cfg) {
				got = append(got, e.Name+" "+e.Input+" -> "+e.Output)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entities %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRun: one validator process, one consumer group, reads clicks,
// orders, products and customers: each valid record lands on its entity's
// valid topic, each broken one in the dead-letter topic with its entity and
// every failed rule, and a customer's bad email is not in the reasons.
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

	codec := func(subject, entity string) *avroserde.Codec {
		c, err := rt.Registry.Codec(ctx, subject, entity)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	encode := func(c *avroserde.Codec, v any) []byte {
		b, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	clicks := codec("ecom.events.v1-value", protoavro.ClickEvent)
	orders := codec("ecom.orders.v1-value", protoavro.Order)
	products := codec("ecom.products.v1-value", protoavro.ProductChange)
	customers := codec("ecom.customers.v1-value", protoavro.CustomerChange)
	now := time.Now().UTC().Truncate(time.Millisecond)
	anon := "a1"
	click := encode(clicks, &events.ClickEvent{EventID: "e1", EventTimestamp: now, ReceivedAt: now, EventType: "page_view",
		AnonymousID: &anon, SessionID: "s1", PageURL: "https://x.example/", Source: "kafka"})
	order := events.Order{OrderID: "o-good", UserID: "c1", Status: "created", OrderTimestamp: now, UpdatedAt: now, Currency: "EUR",
		SubtotalMinor: 1000, TaxMinor: 190, ShippingMinor: 499, TotalMinor: 1689, Items: []events.OrderItem{{ProductID: "p1", Quantity: 1, UnitPriceMinor: 1000}},
		Source: "api", OrderVersion: 1, ReceivedAt: &now}
	goodOrder := encode(orders, &order)
	order.OrderID, order.Items, order.Currency = "o-bad", nil, "ZZZ"
	badOrder := encode(orders, &order)
	str := func(s string) *string { return &s }
	product := events.ProductChange{ProductID: "p-00001", Op: "upsert", Sku: str("SHO-00001"), Name: "Velo Trail Runner Pro",
		Category: str("shoes"), PriceMinor: 8999, Currency: "USD", IsActive: true, UpdatedAt: now, SyncedAt: now,
		Source: "cdc", SourceLsn: 4242, SourceOrdinal: 1, ChangedAt: &now}
	goodProduct := encode(products, &product)
	product.ProductID, product.Name, product.PriceMinor, product.Category = "p-00002", "", -1, str("garden")
	badProduct := encode(products, &product)
	deleted := encode(products, &events.ProductChange{ProductID: "p-00003", Op: "delete", UpdatedAt: now, SyncedAt: now,
		Source: "cdc", SourceLsn: 4243, SourceOrdinal: 1})
	customer := events.CustomerChange{CustomerID: "u-000001", Op: "upsert", Email: str("ann.smith.1@example.com"), Name: str("Ann Smith"),
		Country: str("DE"), IsActive: true, UpdatedAt: now, SyncedAt: now, Source: "snapshot", SourceLsn: 4200}
	goodCustomer := encode(customers, &customer)
	customer.CustomerID, customer.Email, customer.Country = "u-000002", str("ann.smith.2@@example.com"), str("UK")
	badCustomer := encode(customers, &customer)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(cfg.OutputTopic, cfg.OrdersOutputTopic, cfg.ProductsOutputTopic, cfg.CustomersOutputTopic, deadletter.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	in := []*kgo.Record{
		{Topic: cfg.InputTopic, Key: []byte("s1"), Value: click},
		{Topic: cfg.OrdersInputTopic, Key: []byte("o-good"), Value: goodOrder},
		{Topic: cfg.OrdersInputTopic, Key: []byte("o-bad"), Value: badOrder},
		{Topic: cfg.ProductsInputTopic, Key: []byte("p-00001"), Value: goodProduct},
		{Topic: cfg.ProductsInputTopic, Key: []byte("p-00002"), Value: badProduct},
		{Topic: cfg.ProductsInputTopic, Key: []byte("p-00003"), Value: deleted},
		{Topic: cfg.CustomersInputTopic, Key: []byte("u-000001"), Value: goodCustomer},
		{Topic: cfg.CustomersInputTopic, Key: []byte("u-000002"), Value: badCustomer},
	}
	if err := cl.ProduceSync(ctx, in...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dlq, err := rt.DeadLetterCodec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	got := map[string][]string{} // topic -> keys, or the dead letters' entity, source and rules
	n := 0
	for n < len(in) && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			n++
			if r.Topic != deadletter.Topic {
				got[r.Topic] = append(got[r.Topic], string(r.Key))
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
				if strings.Contains(rs.Message, "ann.smith") {
					t.Errorf("reason %q shows the email", rs.Message)
				}
			}
			entity := ""
			if dl.Entity != nil {
				entity = *dl.Entity
			}
			got[r.Topic] = append(got[r.Topic], entity+" "+dl.SourceTopic+" "+strings.Join(ids, ","))
		})
	}
	for _, keys := range got {
		slices.Sort(keys)
	}
	want := map[string][]string{
		cfg.OutputTopic:          {"s1"},
		cfg.OrdersOutputTopic:    {"o-good"},
		cfg.ProductsOutputTopic:  {"p-00001", "p-00003"},
		cfg.CustomersOutputTopic: {"u-000001"},
		deadletter.Topic: {
			"customer_change ecom.customers.v1 customer.email_valid,customer.country_iso3166",
			"order ecom.orders.v1 order.currency_iso4217,order.has_lines,order.lines_sum_to_subtotal",
			"product_change ecom.products.v1 product.name_present,product.price_range,product.category_known",
		},
	}
	for topic, w := range want {
		if !slices.Equal(got[topic], w) {
			t.Errorf("%s: got %q, want %q", topic, got[topic], w)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
