package stream

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var _ trace.Tracer = boundaryTracer{}

const (
	producerTrace = "0af7651916cd43dd8448eb211c80319c"
	producerSpan  = "b7ad6b7169203331"
)

// TestTrustBoundary: behind the boundary the service's own ratio decides
// sampling whatever the producer's traceparent says, the producer's span is
// a link of a new root, and its baggage goes no further. Without it (the
// downstream stages) the platform's trace is continued as before.
func TestTrustBoundary(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	tests := []struct {
		name        string
		boundary    bool
		ratio       float64
		traceparent string // "" = none
		wantSampled bool
		wantLink    bool
		wantTrace   string // "" = a new trace id
	}{
		{"producer forces sampling, ratio 0", true, 0, "00-" + producerTrace + "-" + producerSpan + "-01", false, true, ""},
		{"producer hides itself, ratio 1", true, 1, "00-" + producerTrace + "-" + producerSpan + "-00", true, true, ""},
		{"no traceparent, ratio 1", true, 1, "", true, false, ""},
		{"malformed traceparent", true, 1, "00-zz-yy-01", true, false, ""},
		{"downstream continues the platform's trace", false, 0, "00-" + producerTrace + "-" + producerSpan + "-01", true, false, producerTrace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
				sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(tt.ratio))))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			var tracer trace.Tracer = tp.Tracer("test")
			if tt.boundary {
				tracer = TrustBoundary(tracer)
			}
			in := &kgo.Record{Topic: "clickstream", Value: []byte("{}"), Headers: []kgo.RecordHeader{{Key: "baggage", Value: []byte("tenant=evil")}}}
			if tt.traceparent != "" {
				in.Headers = append(in.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(tt.traceparent)})
			}
			var inner trace.SpanContext
			h := Chain(func(ctx context.Context, _ *kgo.Record) ([]*kgo.Record, error) {
				inner = trace.SpanContextFromContext(ctx)
				return []*kgo.Record{{Topic: "out"}}, nil
			}, Trace(tracer, "g"))
			outs, err := h(context.Background(), in)
			if err != nil || len(outs) != 1 {
				t.Fatalf("handler: %v, %d outputs", err, len(outs))
			}

			if inner.IsSampled() != tt.wantSampled {
				t.Errorf("sampled = %v, want %v", inner.IsSampled(), tt.wantSampled)
			}
			if tt.wantTrace != "" && inner.TraceID().String() != tt.wantTrace {
				t.Errorf("trace = %s, want the producer's %s", inner.TraceID(), tt.wantTrace)
			}
			if tt.wantTrace == "" && inner.TraceID().String() == producerTrace {
				t.Error("the producer's trace id was continued")
			}
			tpOut, _ := header(outs[0], "traceparent")
			if !strings.Contains(tpOut, inner.TraceID().String()) {
				t.Errorf("output traceparent %q is not the stage's trace %s", tpOut, inner.TraceID())
			}
			if b, ok := header(outs[0], "baggage"); ok && tt.boundary {
				t.Errorf("untrusted baggage forwarded: %q", b)
			}

			spans := rec.Ended()
			if len(spans) != map[bool]int{true: 1, false: 0}[tt.wantSampled] {
				t.Fatalf("%d spans recorded, want sampled=%v", len(spans), tt.wantSampled)
			}
			if len(spans) == 0 {
				return
			}
			s := spans[0]
			if tt.boundary && s.Parent().IsValid() {
				t.Errorf("span has parent %v, want a new root", s.Parent())
			}
			links := s.Links()
			if !tt.wantLink {
				if len(links) != 0 {
					t.Errorf("links = %v, want none", links)
				}
				return
			}
			if len(links) != 1 || links[0].SpanContext.TraceID().String() != producerTrace ||
				links[0].SpanContext.SpanID().String() != producerSpan {
				t.Fatalf("links = %+v, want one to the producer's span", links)
			}
			if len(links[0].Attributes) != 1 || string(links[0].Attributes[0].Key) != UntrustedParentAttr {
				t.Errorf("link attributes = %v", links[0].Attributes)
			}
		})
	}
}
