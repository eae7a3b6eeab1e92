// Package validate is the validator's record handler, one per entity: decode
// a record of the entity (any known writer schema version), apply the
// entity's rule set, and route it to the valid topic (flagged with the ids
// of the warn rules it failed) or, with every failed error rule, to the
// dead-letter topic.
package validate

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/validator/internal/rules"
)

// WarningsHeader is the Kafka header of a valid record that failed warn
// rules: their ids, comma-separated, in rule-file order. bq-writer stores it
// in fact_events.dq_warnings.
const WarningsHeader = stream.DQWarningsHeader

// Validator is the handler of entity T (a type of pkg/events, e.g.
// events.ClickEvent).
type Validator[T any] struct {
	Codec *avroserde.Codec
	Rules *rules.Set
	Out   string

	evals   metric.Int64Counter
	attrs   map[string][3]metric.AddOption // rule id -> by rules.Outcome
	results sync.Pool
}

// New returns the Validator of T under set, whose per-rule outcomes go to
// meter as ecom.dq.rule.evaluations{rule_id, result} and whose rule-set
// version is ecom.dq.ruleset.info{entity, file, version, hash}. It reads no
// clock: a record's verdict depends on the record alone (see package rules).
func New[T any](codec *avroserde.Codec, set *rules.Set, out string, meter metric.Meter) (*Validator[T], error) {
	if t := reflect.TypeFor[T](); t != set.Entity.Type {
		return nil, fmt.Errorf("validate: %s rules on a %s handler", set.Entity.Name, t)
	}
	evals, err := meter.Int64Counter("ecom.dq.rule.evaluations",
		metric.WithDescription("Data-quality rule evaluations by rule id and result (pass, fail, warn); pass rate = pass / all."))
	if err != nil {
		return nil, err
	}
	info := metric.WithAttributes(attribute.String("entity", set.Entity.Name), attribute.String("file", set.File),
		attribute.String("version", set.Version), attribute.String("hash", set.Hash))
	// One gauge, one callback per entity's Validator: a callback given with
	// the instrument would be dropped when a second entity asks the meter
	// for the same instrument.
	gauge, err := meter.Int64ObservableGauge("ecom.dq.ruleset.info",
		metric.WithDescription("The rule set in force per entity (always 1): its file, version field and content hash."))
	if err != nil {
		return nil, err
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error { o.ObserveInt64(gauge, 1, info); return nil }, gauge); err != nil {
		return nil, err
	}
	v := &Validator[T]{Codec: codec, Rules: set, Out: out, evals: evals, attrs: map[string][3]metric.AddOption{}}
	for _, r := range set.Rules() {
		var opts [3]metric.AddOption
		for _, o := range []rules.Outcome{rules.Pass, rules.Fail, rules.Warned} {
			opts[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("rule_id", r.ID), attribute.String("result", o.String())))
		}
		v.attrs[r.ID] = opts
	}
	v.results.New = func() any { s := make([]rules.Result, 0, len(set.Rules())); return &s }
	return v, nil
}

// Handle implements stream.Handler.
func (v *Validator[T]) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var ev T
	id, err := v.Codec.Decode(ctx, rec.Value, &ev)
	if err != nil {
		return nil, err
	}
	rp := v.results.Get().(*[]rules.Result)
	defer v.results.Put(rp)
	results, reasons := v.Rules.Evaluate(&ev, rec.Timestamp, *rp)
	*rp = results
	warned := 0
	for _, r := range results {
		v.evals.Add(ctx, 1, v.attrs[r.RuleID][r.Outcome])
		if r.Outcome == rules.Warned {
			warned++
		}
	}
	if len(reasons) > 0 {
		return nil, &deadletter.Rejection{Entity: v.Rules.Entity.Name, SchemaID: id, Reasons: reasons}
	}
	value := rec.Value
	if id != v.Codec.ID() {
		// An older (or newer) writer version: publish in the current schema
		// so downstream readers see one version.
		if value, err = v.Codec.Encode(&ev); err != nil {
			return nil, err
		}
	}
	out := &kgo.Record{Topic: v.Out, Key: rec.Key, Value: value}
	if warned > 0 {
		ids := make([]string, 0, warned)
		for _, r := range results {
			if r.Outcome == rules.Warned {
				ids = append(ids, r.RuleID)
			}
		}
		out.Headers = []kgo.RecordHeader{{Key: WarningsHeader, Value: []byte(strings.Join(ids, ","))}}
	}
	return []*kgo.Record{out}, nil
}

var _ stream.Handler = (*Validator[struct{}])(nil).Handle
