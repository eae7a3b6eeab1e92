// Package otlpsink is a minimal OTLP/HTTP trace receiver for tests and the
// benchmark: it records which services reported spans for each trace id, so a
// test can prove one event is one trace across services without a Jaeger.
package otlpsink

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is what the sink keeps of a span.
type Span struct {
	Service string
	Name    string
}

// Sink is a running receiver.
type Sink struct {
	URL string // base URL to use as OTEL_EXPORTER_OTLP_ENDPOINT

	srv    *http.Server
	mu     sync.Mutex
	traces map[string][]Span
	spans  int
}

// Start listens on a free loopback port.
func Start() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{URL: "http://" + ln.Addr().String(), traces: map[string][]Span{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.handle)
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *Sink) handle(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = http.MaxBytesReader(w, r.Body, 64<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer gz.Close()
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				id := hex.EncodeToString(sp.TraceId)
				s.traces[id] = append(s.traces[id], Span{Service: service, Name: sp.Name})
				s.spans++
			}
		}
	}
	s.mu.Unlock()
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// Services returns the distinct services that reported spans for traceID.
func (s *Sink) Services(traceID string) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, sp := range s.traces[traceID] {
		out[sp.Service] = true
	}
	return out
}

// Count returns how many spans were received.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spans
}

// Close stops the receiver.
func (s *Sink) Close() error { return s.srv.Close() }
