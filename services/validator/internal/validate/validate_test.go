package validate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/validator/internal/rules"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, meter metric.Meter) (*Validator[events.ClickEvent], *avroserde.Codec, *srfake.Registry) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	r, err := avroserde.New(avroserde.Config{URL: reg.URL(), AutoRegister: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Codec(context.Background(), "valid-value", protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.ClickEvents(rules.Config{AllowedEventTypes: []string{"page_view", "add_to_cart", "purchase"}, MaxFutureSkew: time.Minute, MaxEventAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New[events.ClickEvent](c, set, "valid", meter)
	if err != nil {
		t.Fatal(err)
	}
	return v, c, reg
}

func TestHandle(t *testing.T) {
	v, c, _ := setup(t, noop.NewMeterProvider().Meter("t"))
	anon := "a1"
	good := events.ClickEvent{EventID: "e1", EventTimestamp: now, ReceivedAt: now, EventType: "page_view",
		AnonymousID: &anon, SessionID: "s1", PageURL: "https://x.example/", Source: "kafka"}
	bad := good
	bad.PageURL, bad.EventType = "nope", "search"
	// Read by ingest a day ago (MAX_EVENT_AGE is an hour here), validated now:
	// a validator catching up judges it as it would have then.
	late := good
	late.ReceivedAt = now.Add(-24 * time.Hour)
	late.EventTimestamp = late.ReceivedAt.Add(-time.Second)
	ahead := good
	ahead.ReceivedAt = now.Add(time.Hour)
	ahead.EventTimestamp = ahead.ReceivedAt

	tests := []struct {
		name      string
		ev        events.ClickEvent
		record    time.Time // the input record's timestamp
		wantRules []string
	}{
		{name: "valid passes through unchanged", ev: good, record: now},
		{name: "invalid reports every failed rule", ev: bad, record: now, wantRules: []string{rules.EventTypeAllowed, rules.PageURLValid}},
		{name: "caught up a day later", ev: late, record: late.ReceivedAt.Add(time.Second)},
		{name: "received_at ahead of the record", ev: ahead, record: now, wantRules: []string{rules.ReceivedAtPlausible}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := c.Encode(&tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := v.Handle(context.Background(), &kgo.Record{Topic: "in", Key: []byte("k"), Value: b, Timestamp: tt.record})
			if tt.wantRules == nil {
				if err != nil || len(outs) != 1 || outs[0].Topic != "valid" || string(outs[0].Value) != string(b) || string(outs[0].Key) != "k" {
					t.Fatalf("outs %v err %v", outs, err)
				}
				return
			}
			rej, ok := deadletter.AsRejection(err)
			if !ok {
				t.Fatalf("err = %v, want a rejection", err)
			}
			if rej.SchemaID != c.ID() || rej.Entity != "click_event" || len(rej.Reasons) != len(tt.wantRules) {
				t.Fatalf("rejection %+v", rej)
			}
			for i, r := range rej.Reasons {
				if r.RuleID != tt.wantRules[i] {
					t.Errorf("reason %d = %s, want %s", i, r.RuleID, tt.wantRules[i])
				}
			}
		})
	}
}

func TestHandleRewritesOlderWriterVersionToCurrent(t *testing.T) {
	v, c, reg := setup(t, noop.NewMeterProvider().Meter("t"))
	old := `{"type":"record","name":"ClickEvent","namespace":"ecom.events","fields":[
	 {"name":"event_id","type":"string"},
	 {"name":"event_timestamp","type":{"type":"long","logicalType":"timestamp-micros"}},
	 {"name":"received_at","type":{"type":"long","logicalType":"timestamp-micros"}},
	 {"name":"event_type","type":"string"},
	 {"name":"anonymous_id","type":["null","string"],"default":null},
	 {"name":"session_id","type":"string"},
	 {"name":"page_url","type":"string"}]}`
	id, _, err := reg.RegisterSchema("legacy-value", sr.Schema{Schema: old, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	anon := "a"
	body, err := avro.Marshal(avro.MustParse(old), map[string]any{"event_id": "e-old", "event_timestamp": now, "received_at": now,
		"event_type": "page_view", "anonymous_id": map[string]any{"string": anon}, "session_id": "s", "page_url": "https://x/"})
	if err != nil {
		t.Fatal(err)
	}
	var h sr.ConfluentHeader
	in, _ := h.AppendEncode(nil, id, nil)
	outs, err := v.Handle(context.Background(), &kgo.Record{Value: append(in, body...)})
	if err != nil || len(outs) != 1 {
		t.Fatalf("outs %v err %v", outs, err)
	}
	var ev events.ClickEvent
	gotID, err := c.Decode(context.Background(), outs[0].Value, &ev)
	if err != nil || gotID != c.ID() || ev.EventID != "e-old" || ev.Source != "kafka" {
		t.Errorf("output not in the current schema: id %d (want %d) %+v %v", gotID, c.ID(), ev, err)
	}
}

// TestHandleWarn: a seed-shaped add_to_cart (no quantity, price or
// currency) passes to the valid topic flagged with the warn rule, counted as
// a warn; a present but invalid commerce field is still dead-lettered.
func TestHandleWarn(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	v, c, _ := setup(t, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"))
	user, product := "u1", "p1"
	seed := events.ClickEvent{EventID: "e1", EventTimestamp: now, ReceivedAt: now, EventType: "add_to_cart",
		UserID: &user, SessionID: "s1", PageURL: "https://x.example/p/1", ProductID: &product, Source: "kafka"}
	b, err := c.Encode(&seed)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := v.Handle(context.Background(), &kgo.Record{Topic: "in", Key: []byte("k"), Value: b, Timestamp: now})
	if err != nil || len(outs) != 1 || outs[0].Topic != "valid" {
		t.Fatalf("outs %v err %v", outs, err)
	}
	if len(outs[0].Headers) != 1 || outs[0].Headers[0].Key != WarningsHeader || string(outs[0].Headers[0].Value) != rules.CommerceFieldsValid {
		t.Errorf("headers %v, want %s: %s", outs[0].Headers, WarningsHeader, rules.CommerceFieldsValid)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts, info := map[string]int64{}, 0
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
					if h, ok := p.Attributes.Value("hash"); ok && h.AsString() == v.Rules.Hash && p.Value == 1 {
						info++
					}
				}
			}
		}
	}
	if counts[rules.CommerceFieldsValid+"/warn"] != 1 || counts[rules.PageURLValid+"/pass"] != 1 || info != 1 {
		t.Errorf("metrics %v, ruleset info points %d", counts, info)
	}

	bad := seed
	neg := -1
	bad.Quantity = &neg
	b, err = c.Encode(&bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Handle(context.Background(), &kgo.Record{Topic: "in", Value: b, Timestamp: now})
	rej, ok := deadletter.AsRejection(err)
	if !ok || len(rej.Reasons) != 1 || rej.Reasons[0].RuleID != rules.CommerceFieldsValid {
		t.Fatalf("err = %v, want a rejection by %s", err, rules.CommerceFieldsValid)
	}
	if want := "sha256:" + v.Rules.Hash; !strings.Contains(rej.Reasons[0].Message, want) {
		t.Errorf("reason %q does not name the rule set (%s)", rej.Reasons[0].Message, want)
	}
}
