package storefront_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

var placeReq = storefront.PlaceRequest{ID: "o-click-1", CustomerID: "u-000001", Lines: []storefront.PlaceLine{{ProductID: "p-00001", Quantity: 2}}}

func newPlacer(t *testing.T, url string, cfg storefront.PlacerConfig) *storefront.Placer {
	t.Helper()
	cfg.URL, cfg.Token = url, testToken
	if cfg.Backoff == 0 {
		cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 4*time.Millisecond
	}
	p, err := storefront.NewPlacer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func closePlacer(t *testing.T, p *storefront.Placer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPlacerOutcomes: what each answer of the storefront counts as, and
// that transport errors, 429 and 5xx are retried while other 4xx are not.
func TestPlacerOutcomes(t *testing.T) {
	const cut = -1 // the connection is closed without an answer
	tests := []struct {
		name    string
		answers []int // one per attempt
		want    storefront.PlacerStats
	}{
		{"created", []int{201}, storefront.PlacerStats{Queued: 1, Placed: 1}},
		{"exists", []int{409}, storefront.PlacerStats{Queued: 1, Already: 1}},
		{"5xx then created", []int{503, 500, 201}, storefront.PlacerStats{Queued: 1, Placed: 1, Retries: 2}},
		{"429 then exists", []int{429, 409}, storefront.PlacerStats{Queued: 1, Already: 1, Retries: 1}},
		{"transport error then created", []int{cut, 201}, storefront.PlacerStats{Queued: 1, Placed: 1, Retries: 1}},
		{"bad request is not retried", []int{400, 201}, storefront.PlacerStats{Queued: 1, Failed: 1}},
		{"unauthorized is not retried", []int{401, 201}, storefront.PlacerStats{Queued: 1, Failed: 1}},
		{"out of attempts", []int{500, 500, 500, 201}, storefront.PlacerStats{Queued: 1, Failed: 1, Retries: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			var bad atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var got storefront.PlaceRequest
				err := json.NewDecoder(r.Body).Decode(&got)
				if r.Method != "POST" || r.URL.Path != "/v1/admin/orders" || r.Header.Get("Authorization") != "Bearer "+testToken ||
					r.Header.Get("Content-Type") != "application/json" || err != nil || !reflect.DeepEqual(got, placeReq) {
					bad.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Authorization"))
				}
				i := int(n.Add(1)) - 1
				switch code := tt.answers[min(i, len(tt.answers)-1)]; code {
				case cut:
					panic(http.ErrAbortHandler)
				default:
					w.WriteHeader(code)
				}
			}))
			defer srv.Close()
			p := newPlacer(t, srv.URL+"/", storefront.PlacerConfig{MaxAttempts: 3}) // the trailing slash is trimmed
			if !p.Place(placeReq) {
				t.Fatal("not queued")
			}
			closePlacer(t, p)
			if got := p.Stats(); got != tt.want {
				t.Fatalf("stats %+v, want %+v", got, tt.want)
			}
			if b := bad.Load(); b != nil {
				t.Fatalf("unexpected request %v", b)
			}
		})
	}
}

// TestPlacerAgainstTheStorefront: the same purchase placed twice (a
// duplicated click) makes one order; the second is counted as already placed.
func TestPlacerAgainstTheStorefront(t *testing.T) {
	s := newServer(t, storefront.SimConfig{Seed: 4})
	p := newPlacer(t, s.URL, storefront.PlacerConfig{Workers: 1})
	p.Place(placeReq)
	p.Place(placeReq)
	bad := placeReq
	bad.ID, bad.CustomerID = "o-click-2", "u-999999"
	p.Place(bad)
	closePlacer(t, p)
	if got, want := p.Stats(), (storefront.PlacerStats{Queued: 3, Placed: 1, Already: 1, Failed: 1}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	o, ok := s.sim.Order(placeReq.ID)
	if !ok || o.CustomerID != placeReq.CustomerID || len(o.Lines) != 1 || o.Lines[0].Quantity != 2 || s.sim.Stats().Placed != 1 {
		t.Fatalf("order %+v (found %v), stats %+v", o, ok, s.sim.Stats())
	}
}

// blocking is a storefront that holds every request until released (or the
// client gives up), and says when one has arrived.
type blocking struct {
	*httptest.Server
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlocking() *blocking {
	b := &blocking{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.arrived <- struct{}{}
		select {
		case <-b.release:
			w.WriteHeader(201)
		case <-r.Context().Done():
		}
	}))
	return b
}

func (b *blocking) Close() {
	b.once.Do(func() { close(b.release) })
	b.Server.Close()
}

// TestPlacerQueueFull: Place never blocks; beyond the queue it drops and
// counts. Close then waits for the queue to drain.
func TestPlacerQueueFull(t *testing.T) {
	srv := newBlocking()
	defer srv.Close()
	p := newPlacer(t, srv.URL, storefront.PlacerConfig{QueueSize: 2, Workers: 1})
	p.Place(placeReq)
	<-srv.arrived // the worker holds the first; the queue is empty again
	start := time.Now()
	taken := []bool{p.Place(placeReq), p.Place(placeReq), p.Place(placeReq), p.Place(placeReq)}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Place blocked for %s", d)
	}
	if want := []bool{true, true, false, false}; !reflect.DeepEqual(taken, want) {
		t.Fatalf("taken %v, want %v", taken, want)
	}
	srv.once.Do(func() { close(srv.release) })
	closePlacer(t, p)
	if got, want := p.Stats(), (storefront.PlacerStats{Queued: 3, Placed: 3, Dropped: 2}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if p.Place(placeReq) || p.Stats().Dropped != 3 {
		t.Fatalf("Place after Close was taken: %+v", p.Stats())
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestPlacerCloseDeadline: a storefront that never answers does not hold
// Close past its deadline; what is left counts as failed.
func TestPlacerCloseDeadline(t *testing.T) {
	srv := newBlocking()
	defer srv.Close()
	p := newPlacer(t, srv.URL, storefront.PlacerConfig{Workers: 1})
	for range 5 {
		p.Place(placeReq)
	}
	<-srv.arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "5 orders not placed") {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s with a 100ms deadline", d)
	}
	if got, want := p.Stats(), (storefront.PlacerStats{Queued: 5, Failed: 5}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestPlacerConfig(t *testing.T) {
	for _, cfg := range []storefront.PlacerConfig{{Token: "t"}, {URL: "http://x"}} {
		if _, err := storefront.NewPlacer(cfg); err == nil {
			t.Errorf("NewPlacer(%+v) took a config without URL or token", cfg)
		}
	}
}
