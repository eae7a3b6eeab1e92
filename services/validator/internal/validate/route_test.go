package validate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/validator/internal/rules"
)

var ruleCfg = rules.Config{AllowedEventTypes: []string{"page_view"}, MaxFutureSkew: time.Minute, MaxEventAge: time.Hour,
	OrderMaxAhead: 5 * time.Minute, OrderMaxLag: time.Hour, ProductMaxPriceMinor: 10_000_000}

func table() []Entity {
	return []Entity{
		{Name: "click_event", Input: "clicks", Output: "clicks.valid", New: HandlerOf[events.ClickEvent]},
		{Name: "order", Input: "orders", Output: "orders.valid", New: HandlerOf[events.Order]},
		{Name: "product_change", Input: "products", Output: "products.valid", New: HandlerOf[events.ProductChange]},
		{Name: "customer_change", Input: "customers", Output: "customers.valid", New: HandlerOf[events.CustomerChange]},
	}
}

func newRouter(t *testing.T, meter *sdkmetric.MeterProvider, es ...Entity) (*Router, *avroserde.Registry, error) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sets, err := rules.Embedded(ruleCfg.Params())
	if err != nil {
		t.Fatal(err)
	}
	router, err := NewRouter(context.Background(), r, sets, meter.Meter("t"), es...)
	return router, r, err
}

func anOrder() events.Order {
	paid := now.Add(-time.Minute)
	return events.Order{OrderID: "o1", UserID: "c1", Status: "paid", OrderTimestamp: now.Add(-time.Hour), UpdatedAt: paid,
		Currency: "USD", SubtotalMinor: 1000, TaxMinor: 80, ShippingMinor: 0, TotalMinor: 1080,
		Items:  []events.OrderItem{{ProductID: "p1", Quantity: 2, UnitPriceMinor: 500}},
		Source: "api", OrderVersion: 2, PaidAt: &paid, ReceivedAt: &now}
}

// TestRouter: one batch of a click, a valid order, an order polled late (a
// warning), a broken order, a product upsert, a product hard delete, a
// product soft-deleted but active (a warning) and a broken customer: each goes to its entity's output, flagged or
// dead-lettered with its entity's rules, and every entity's rules are
// counted and its rule set reported.
func TestRouter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	router, reg, err := newRouter(t, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), table()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(router.Inputs(), ","); got != "clicks,orders,products,customers" {
		t.Errorf("inputs %s", got)
	}
	if got := strings.Join(router.Outputs(), ","); got != "clicks.valid,orders.valid,products.valid,customers.valid" {
		t.Errorf("outputs %s", got)
	}
	ctx := context.Background()
	clicks, err := reg.Codec(ctx, "clicks-value", protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := reg.Codec(ctx, "orders-value", protoavro.Order)
	if err != nil {
		t.Fatal(err)
	}
	products, err := reg.Codec(ctx, "products-value", protoavro.ProductChange)
	if err != nil {
		t.Fatal(err)
	}
	customers, err := reg.Codec(ctx, "customers-value", protoavro.CustomerChange)
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	product := events.ProductChange{ProductID: "p-00007", Op: "upsert", Sku: str("HOM-00007"), Name: "Lumen Desk Lamp Eco", Category: str("home"),
		PriceMinor: 4999, Currency: "USD", IsActive: true, UpdatedAt: now, SyncedAt: now, Source: "snapshot", SourceLsn: 77}
	productDelete := events.ProductChange{ProductID: "p-00008", Op: "delete", UpdatedAt: now, SyncedAt: now, Source: "cdc", SourceLsn: 78, SourceOrdinal: 1}
	halfDeleted := product
	halfDeleted.DeletedAt = &now
	customer := events.CustomerChange{CustomerID: "u-000009", Op: "upsert", Email: str("x"), Country: str("EU"), UpdatedAt: now, SyncedAt: now,
		Source: "cdc", SourceLsn: 79, SourceOrdinal: 1}
	anon := "a1"
	click := events.ClickEvent{EventID: "e1", EventTimestamp: now, ReceivedAt: now, EventType: "page_view",
		AnonymousID: &anon, SessionID: "s1", PageURL: "https://x.example/", Source: "kafka"}
	late := anOrder()
	late.ReceivedAt = ptrTime(late.UpdatedAt.Add(2 * time.Hour))
	broken := anOrder()
	broken.Currency, broken.TotalMinor, broken.ShippedAt = "ZZZ", 1, &now
	encode := func(c *avroserde.Codec, v any) []byte {
		b, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := anOrder()
	batch := []struct {
		rec        *kgo.Record
		wantTopic  string   // "" = dead-lettered
		wantWarn   string   // the ecom-dq-warnings header
		wantRules  []string // of the rejection
		wantEntity string
	}{
		{rec: &kgo.Record{Topic: "clicks", Value: encode(clicks, &click), Timestamp: now}, wantTopic: "clicks.valid"},
		{rec: &kgo.Record{Topic: "orders", Value: encode(orders, &good), Timestamp: now}, wantTopic: "orders.valid"},
		{rec: &kgo.Record{Topic: "orders", Value: encode(orders, &late), Timestamp: now}, wantTopic: "orders.valid", wantWarn: rules.OrderFreshness},
		{rec: &kgo.Record{Topic: "orders", Value: encode(orders, &broken), Timestamp: now}, wantEntity: "order",
			wantRules: []string{rules.OrderCurrencyISO4217, rules.OrderTotalMatches, rules.OrderStatusConsistent, rules.OrderStageTimesOrdered}},
		{rec: &kgo.Record{Topic: "orders", Value: encode(clicks, &click), Timestamp: now}, wantEntity: "order"}, // a click on the order topic
		{rec: &kgo.Record{Topic: "products", Value: encode(products, &product), Timestamp: now}, wantTopic: "products.valid"},
		{rec: &kgo.Record{Topic: "products", Value: encode(products, &productDelete), Timestamp: now}, wantTopic: "products.valid"},
		{rec: &kgo.Record{Topic: "products", Value: encode(products, &halfDeleted), Timestamp: now}, wantTopic: "products.valid", wantWarn: rules.ProductSoftDelete},
		{rec: &kgo.Record{Topic: "customers", Value: encode(customers, &customer), Timestamp: now}, wantEntity: "customer_change",
			wantRules: []string{rules.CustomerEmailValid, rules.CustomerCountry}},
		{rec: &kgo.Record{Topic: "customers", Value: encode(products, &product), Timestamp: now}, wantEntity: "customer_change"}, // a product on the customer topic
		{rec: &kgo.Record{Topic: "payments", Value: []byte("x")}},
	}
	for i, b := range batch {
		outs, err := router.Handle(ctx, b.rec)
		if b.wantTopic != "" {
			if err != nil || len(outs) != 1 || outs[0].Topic != b.wantTopic || string(outs[0].Value) != string(b.rec.Value) {
				t.Errorf("record %d: outs %v err %v, want one record to %s", i, outs, err, b.wantTopic)
				continue
			}
			var warn string
			for _, h := range outs[0].Headers {
				if h.Key == WarningsHeader {
					warn = string(h.Value)
				}
			}
			if warn != b.wantWarn {
				t.Errorf("record %d: warnings %q, want %q", i, warn, b.wantWarn)
			}
			continue
		}
		rej, ok := deadletter.AsRejection(err)
		if !ok || outs != nil || rej.Entity != b.wantEntity {
			t.Errorf("record %d: outs %v err %v, want a rejection of entity %q", i, outs, err, b.wantEntity)
			continue
		}
		if b.wantRules == nil {
			if len(rej.Reasons) == 0 || rej.Reasons[0].RuleID != "" {
				t.Errorf("record %d: reasons %+v, want no rule", i, rej.Reasons)
			}
			continue
		}
		var ids []string
		for _, r := range rej.Reasons {
			ids = append(ids, r.RuleID)
		}
		if strings.Join(ids, ",") != strings.Join(b.wantRules, ",") {
			t.Errorf("record %d: failed %v, want %v", i, ids, b.wantRules)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts, sets := map[string]int64{}, map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					id, _ := p.Attributes.Value("rule_id")
					res, _ := p.Attributes.Value("result")
					counts[id.AsString()+"/"+res.AsString()] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					e, _ := p.Attributes.Value("entity")
					sets[e.AsString()] = true
				}
			}
		}
	}
	if counts[rules.PageURLValid+"/pass"] != 1 || counts[rules.OrderFreshness+"/warn"] != 1 || counts[rules.OrderFreshness+"/pass"] != 2 ||
		counts[rules.OrderTotalMatches+"/fail"] != 1 || counts[rules.OrderHasLines+"/pass"] != 3 || !sets["click_event"] || !sets["order"] ||
		counts[rules.ProductNamePresent+"/pass"] != 3 || counts[rules.ProductSoftDelete+"/warn"] != 1 || counts[rules.CustomerEmailValid+"/fail"] != 1 ||
		!sets["product_change"] || !sets["customer_change"] {
		t.Errorf("metrics %v, rule sets reported %v", counts, sets)
	}
}

func TestNewRouterRejects(t *testing.T) {
	noop := sdkmetric.NewMeterProvider()
	shared := table()
	shared[1].Output = "clicks.valid"
	loop := table()
	loop[1].Output = "clicks"
	unknown := table()
	unknown[1].Name = "customer"
	wrongType := table()
	wrongType[1].New = HandlerOf[events.ClickEvent]
	tests := []struct {
		name string
		give []Entity
		want string
	}{
		{name: "no entities", want: "no entities"},
		{name: "shared output", give: shared, want: "share a topic"},
		{name: "output is another's input", give: loop, want: "share a topic"},
		{name: "no rule file", give: unknown, want: "no rule file for entity customer"},
		{name: "handler of another entity", give: wrongType, want: "order rules on a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := newRouter(t, noop, tt.give...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func ptrTime(t time.Time) *time.Time { return &t }
