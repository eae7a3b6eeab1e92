package validate

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/validator/internal/rules"
)

// Entity is one row of the validator's entity table: the entity's rule set
// (its name in rules.Entities and in the rule files), the topic it reads and
// the topic its valid records go to, and its handler constructor. Adding an
// entity to the validator is one row here, one row in rules.Entities and
// one rule file; the consumer, the middleware and the dead-letter path are
// shared.
type Entity struct {
	Name   string // e.g. click_event, order
	Input  string // topic of records to validate
	Output string // topic of valid records; its <Output>-value subject holds the current schema
	New    NewHandler
}

// NewHandler builds an entity's handler from its codec and rule set.
type NewHandler func(codec *avroserde.Codec, set *rules.Set, out string, meter metric.Meter) (stream.Handler, error)

// HandlerOf is the NewHandler of entity T (a type of pkg/events): a
// Validator[T].
func HandlerOf[T any](codec *avroserde.Codec, set *rules.Set, out string, meter metric.Meter) (stream.Handler, error) {
	v, err := New[T](codec, set, out, meter)
	if err != nil {
		return nil, err
	}
	return v.Handle, nil
}

// Router is the validator's one handler: it hands each record to the
// handler of the entity whose input topic it came from, so one consumer
// group and one transaction per batch serve every entity.
type Router struct {
	routes   map[string]stream.Handler // input topic -> handler
	entities []Entity
}

// NewRouter builds the handler of each entity, with the schema of its
// entity registered under its output subject and its rule set from sets.
func NewRouter(ctx context.Context, reg *avroserde.Registry, sets rules.Sets, meter metric.Meter, entities ...Entity) (*Router, error) {
	if len(entities) == 0 {
		return nil, fmt.Errorf("validate: no entities to run")
	}
	r := &Router{routes: map[string]stream.Handler{}, entities: entities}
	for _, e := range entities {
		set, ok := sets[e.Name]
		if !ok {
			return nil, fmt.Errorf("validate: no rule file for entity %s", e.Name)
		}
		for _, other := range entities {
			if other.Name != e.Name && (other.Input == e.Input || other.Output == e.Output || other.Input == e.Output) {
				return nil, fmt.Errorf("validate: entities %s and %s share a topic (%s -> %s, %s -> %s)", e.Name, other.Name, e.Input, e.Output, other.Input, other.Output)
			}
		}
		codec, err := reg.Codec(ctx, avroserde.SubjectFor(e.Output), set.Entity.Name)
		if err != nil {
			return nil, fmt.Errorf("validate: %s: %w", e.Name, err)
		}
		h, err := e.New(codec, set, e.Output, meter)
		if err != nil {
			return nil, fmt.Errorf("validate: %s: %w", e.Name, err)
		}
		r.routes[e.Input] = h
	}
	return r, nil
}

// Inputs are the entities' input topics, in table order.
func (r *Router) Inputs() []string { return r.topics(func(e Entity) string { return e.Input }) }

// Outputs are the entities' output topics, in table order.
func (r *Router) Outputs() []string { return r.topics(func(e Entity) string { return e.Output }) }

func (r *Router) topics(f func(Entity) string) []string {
	out := make([]string, 0, len(r.entities))
	for _, e := range r.entities {
		if t := f(e); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Handle implements stream.Handler.
func (r *Router) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	h, ok := r.routes[rec.Topic]
	if !ok {
		// The consumer reads only the router's inputs: a record from another
		// topic is a wiring bug. Dead-letter it rather than stall the batch.
		return nil, &deadletter.Rejection{Reasons: []deadletter.Reason{{Code: deadletter.Internal,
			Message: fmt.Sprintf("no entity of the validator reads topic %s (inputs: %v)", rec.Topic, r.Inputs())}}}
	}
	return h(ctx, rec)
}

var _ stream.Handler = (*Router)(nil).Handle
