// Package validate is the validator's record handler: decode a ClickEvent
// (any known writer schema version), apply the rule set, and route it to the
// valid topic or, with every failed rule, to the dead-letter topic.
package validate

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/validator/internal/rules"
)

// Entity is the dead-letter entity name of click events.
const Entity = "click_event"

// Validator holds the handler's dependencies.
type Validator struct {
	Codec *avroserde.Codec
	Rules *rules.Set
	Out   string

	evals   metric.Int64Counter
	attrs   map[string][2]metric.AddOption // rule id -> {pass, fail}
	results sync.Pool
}

// New returns a Validator whose per-rule pass/fail counts go to meter as
// ecom.dq.rule.evaluations{rule_id, result}. It reads no clock: a record's
// verdict depends on the record alone (see package rules).
func New(codec *avroserde.Codec, set *rules.Set, out string, meter metric.Meter) (*Validator, error) {
	evals, err := meter.Int64Counter("ecom.dq.rule.evaluations",
		metric.WithDescription("Data-quality rule evaluations by rule id and result (pass, fail); pass rate = pass / all."))
	if err != nil {
		return nil, err
	}
	v := &Validator{Codec: codec, Rules: set, Out: out, evals: evals, attrs: map[string][2]metric.AddOption{}}
	for _, r := range set.Rules() {
		v.attrs[r.ID] = [2]metric.AddOption{
			metric.WithAttributeSet(attribute.NewSet(attribute.String("rule_id", r.ID), attribute.String("result", "pass"))),
			metric.WithAttributeSet(attribute.NewSet(attribute.String("rule_id", r.ID), attribute.String("result", "fail"))),
		}
	}
	v.results.New = func() any { s := make([]rules.Result, 0, len(set.Rules())); return &s }
	return v, nil
}

// Handle implements stream.Handler.
func (v *Validator) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var ev events.ClickEvent
	id, err := v.Codec.Decode(ctx, rec.Value, &ev)
	if err != nil {
		return nil, err
	}
	rp := v.results.Get().(*[]rules.Result)
	defer v.results.Put(rp)
	results, reasons := v.Rules.Evaluate(&ev, rec.Timestamp, *rp)
	*rp = results
	for _, r := range results {
		if r.Passed {
			v.evals.Add(ctx, 1, v.attrs[r.RuleID][0])
		} else {
			v.evals.Add(ctx, 1, v.attrs[r.RuleID][1])
		}
	}
	if len(reasons) > 0 {
		return nil, &deadletter.Rejection{Entity: Entity, SchemaID: id, Reasons: reasons}
	}
	value := rec.Value
	if id != v.Codec.ID() {
		// An older (or newer) writer version: publish in the current schema
		// so downstream readers see one version.
		if value, err = v.Codec.Encode(&ev); err != nil {
			return nil, err
		}
	}
	return []*kgo.Record{{Topic: v.Out, Key: rec.Key, Value: value}}, nil
}

var _ stream.Handler = (*Validator)(nil).Handle
