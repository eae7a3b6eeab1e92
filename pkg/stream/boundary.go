package stream

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
)

// TrustBoundary returns the tracer for a stage whose input comes from
// producers outside the platform (ingest-clickstream reads JSON from
// storefronts nobody here controls). Give it to Trace (through Standard) in
// place of the service's tracer.
//
// Trace continues the trace in each record's traceparent. Behind a trust
// boundary that would let a producer choose our sampling, since the
// parent-based sampler obeys the parent's sampled flag (force 100% of its
// records into the trace backend, or hide them from it), and graft its trace
// ids and baggage onto the platform's traces. With this tracer, a span whose
// parent is remote (extracted from the record) starts a new trace instead:
// the provider's own sampler decides on its own ratio, and the producer's
// span context is kept as a link, so its trace can still be found from ours.
// Incoming baggage is dropped, so none of it is forwarded to the outputs.
// Stages downstream read only records the platform wrote and keep
// continuing the trace with the plain tracer.
//
// It is a tracer rather than a middleware because Trace extracts the
// headers itself: wrapping the place where the span's parent is chosen
// leaves Trace, the records and their dead letters (which keep the
// producer's headers as received) untouched.
func TrustBoundary(t trace.Tracer) trace.Tracer { return boundaryTracer{t} }

// UntrustedParentAttr marks the link to the producer's span context.
const UntrustedParentAttr = "ecom.link.untrusted_parent"

type boundaryTracer struct{ trace.Tracer }

func (b boundaryTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx = baggage.ContextWithoutBaggage(ctx)
	if parent := trace.SpanContextFromContext(ctx); parent.IsRemote() {
		opts = append(opts[:len(opts):len(opts)], trace.WithNewRoot(), trace.WithLinks(trace.Link{
			SpanContext: parent,
			Attributes:  []attribute.KeyValue{attribute.Bool(UntrustedParentAttr, true)},
		}))
	}
	return b.Tracer.Start(ctx, name, opts...)
}
