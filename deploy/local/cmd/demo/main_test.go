package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/jaegerq"
	"github.com/ecomstream/platform/deploy/local/slice"
)

func TestShopOrigins(t *testing.T) {
	tests := []struct {
		name string
		give *net.TCPAddr
		want []string
	}{
		{name: "loopback IPv4", give: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8095},
			want: []string{"http://127.0.0.1:8095", "http://localhost:8095"}},
		{name: "every address, as -shop :8095 listens", give: &net.TCPAddr{IP: net.IPv6unspecified, Port: 8095},
			want: []string{"http://127.0.0.1:8095", "http://localhost:8095", "http://[::1]:8095"}},
		{name: "every IPv4 address", give: &net.TCPAddr{IP: net.IPv4zero, Port: 8095},
			want: []string{"http://127.0.0.1:8095", "http://localhost:8095"}},
		{name: "loopback IPv6", give: &net.TCPAddr{IP: net.IPv6loopback, Port: 8095},
			want: []string{"http://[::1]:8095", "http://localhost:8095"}},
		{name: "another IP", give: &net.TCPAddr{IP: net.IPv4(192, 168, 1, 20), Port: 8095},
			want: []string{"http://192.168.1.20:8095"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shopOrigins(tt.give); !slices.Equal(got, tt.want) {
				t.Errorf("shopOrigins(%s) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestShopOriginsOfAListener(t *testing.T) {
	ln, err := net.Listen("tcp", ":0") // what -shop :8095 does
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, o := range shopOrigins(ln.Addr()) {
		if strings.Contains(o, "[::]") || strings.Contains(o, "0.0.0.0") || strings.HasPrefix(o, "http://:") {
			t.Errorf("origin %q of a listener on %s: a browser cannot open it", o, ln.Addr())
		}
	}
	if got := browserAddr(ln.Addr()); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("browserAddr(%s) = %q, want 127.0.0.1:<port>", ln.Addr(), got)
	}
}

func TestTakePorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name            string
		shop, collector string
		wantErr         string
	}{
		{name: "both free", shop: "127.0.0.1:0", collector: "127.0.0.1:0"},
		{name: "shop busy", shop: busy.Addr().String(), collector: "127.0.0.1:0", wantErr: "-shop"},
		{name: "collector busy", shop: "127.0.0.1:0", collector: busy.Addr().String(), wantErr: "-collector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shop, collector, err := takePorts(tt.shop, tt.collector)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				shop.Close()
				collector.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("takePorts(%s, %s) error %v, want address in use naming %s", tt.shop, tt.collector, err, tt.wantErr)
			}
		})
	}
	// A refused collector port leaves the shop's free again.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	if _, _, err := takePorts(addr, busy.Addr().String()); err == nil {
		t.Fatal("takePorts with the collector's port busy: no error")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the shop's port %s is still held after takePorts failed: %v", addr, err)
	}
	ln.Close()
}

func TestStatusLineCountsThisRun(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	before := counts{rows: 5000, shop: 40} // earlier runs' rows in the same file
	now := counts{rows: 5900, shop: 52}
	got := statusLine(at, 1000, 10, 10, before, now)
	for _, want := range []string{"landed in the warehouse 900 (table total 5900)", "from the shop 12", "dead-lettered 10 (1.00%)"} {
		if !strings.Contains(got, want) {
			t.Errorf("statusLine() = %q, want it to say %q", got, want)
		}
	}
	if got := statusLine(at, 10, 1, 0, before, counts{rows: 5010, shop: 40}); strings.Contains(got, "from the shop") {
		t.Errorf("statusLine() with no shop row this run = %q", got)
	}
}

// TestTraceLine: the latest event's trace as a Jaeger UI link, with the
// services Jaeger has spans from in pipeline order, or why there are none.
func TestTraceLine(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name string
		tr   jaegerq.Trace
		err  error
		want string
	}{
		{"all three", jaegerq.Trace{ID: tid, Spans: []jaegerq.Span{{Service: "bq-writer"}, {Service: "ingest-clickstream"}, {Service: "validator"}, {Service: "validator"}}}, nil,
			"      latest event e1: trace http://127.0.0.1:16686/trace/" + tid + " has spans from ingest-clickstream -> validator -> bq-writer"},
		{"not yet in Jaeger", jaegerq.Trace{}, jaegerq.ErrNotFound,
			"      latest event e1: trace http://127.0.0.1:16686/trace/" + tid + " (jaegerq: trace not found)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := traceLine("e1", "http://127.0.0.1:16686", tid, tt.tr, tt.err); got != tt.want {
				t.Errorf("traceLine() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFirstTraceID(t *testing.T) {
	tests := []struct {
		name string
		rows [][]any
		want string
		ok   bool
	}{
		{"one row", [][]any{{"e1", "abc"}}, "abc", true},
		{"no row", nil, "", false},
		{"null trace id", [][]any{{"e1", nil}}, "", false},
		{"two rows", [][]any{{"e1", "a"}, {"e2", "b"}}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := firstTraceID(tt.rows); got != tt.want || ok != tt.ok {
				t.Errorf("firstTraceID() = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPortsFree(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	flags := map[string]string{"storefront": "-storefront", "ingest-orders": "-ingest-orders"}
	tests := []struct {
		name  string
		addrs map[string]string
		want  []string // in the error; none = no error
	}{
		{name: "free", addrs: map[string]string{"storefront": "127.0.0.1:0", "validator": "127.0.0.1:0"}},
		{name: "busy with a flag", addrs: map[string]string{"storefront": "127.0.0.1:0", "ingest-orders": busy.Addr().String()},
			want: []string{"ingest-orders: ", "address already in use", "choose another with -ingest-orders"}},
		{name: "busy and fixed", addrs: map[string]string{"validator": busy.Addr().String()},
			want: []string{"validator: ", "address already in use", "fixed address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := portsFree(tt.addrs, flags)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("portsFree() = %v, want nil", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("portsFree() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

func TestWhereToLook(t *testing.T) {
	w := where{
		Ingest: "127.0.0.1:8081", Validator: "127.0.0.1:8084", Writer: "127.0.0.1:8086", IngestOrders: "127.0.0.1:8088",
		QueryToken: "qtok", DuckDB: "/r/.run/demo/warehouse.duckdb", RunDir: "/r/.run/demo", Brokers: "127.0.0.1:19092",
		Registry: "http://127.0.0.1:18081/apis/ccompat/v7", Shop: "http://127.0.0.1:8095", Collector: "http://127.0.0.1:8090/v1/events",
		WriteKey: "wk_web_1", WriteKeys: "/r/.run/demo/write-keys.json",
		Storefront: &slice.Storefront{URL: "http://127.0.0.1:8097", Token: "sf_tok", VersionsFile: "/r/.run/demo/storefront-versions.jsonl"},
		Topics: slice.Topics{Raw: "clickstream", Events: "ecom.events.v1", Valid: "ecom.events.valid.v1",
			Orders: "ecom.orders.v1", OrdersValid: "ecom.orders.valid.v1", OrdersCursor: "ecom.ingest-orders.cursor.v1",
			Products: "ecom.products.v1", ProductsValid: "ecom.products.valid.v1", Customers: "ecom.customers.v1", CustomersValid: "ecom.customers.valid.v1"},
		CatalogSync: "127.0.0.1:8089", MutatorLog: "/r/.run/demo/catalog-mutator.jsonl",
		Catalog: &slice.Catalog{Schema: "storefront", Slot: "ecom_catalog_sync", Publication: "storefront_catalog",
			StateTopic: "ecom.catalog-sync.state.v1", OperatorToken: "op_tok"},
		DLQ:    &slice.DLQ{URL: "http://127.0.0.1:8091", Schema: "dlq", OperatorToken: "dlqop_tok", ViewerToken: "dlqview_tok"},
		Jaeger: "http://127.0.0.1:16686", Prometheus: "http://127.0.0.1:19090", TargetsFile: "/r/.run/prometheus/targets/demo.json",
	}
	var b strings.Builder
	if err := whereText.Execute(&b, w); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"curl -s -H 'Authorization: Bearer sf_tok' 'http://127.0.0.1:8097/v1/orders?limit=2'",
		"curl -s -H 'Authorization: Bearer sf_tok' http://127.0.0.1:8097/v1/admin/stats",
		"curl -s http://127.0.0.1:8088/readyz   (ingest-orders)",
		"curl -s http://127.0.0.1:8088/metrics | grep ^ecom_orders",
		"FROM fact_orders GROUP BY 1",
		"ecom.orders.v1, ecom.orders.valid.v1, ecom.ingest-orders.cursor.v1",
		"curl -s -H 'Authorization: Bearer qtok' \\\n",
		"open http://127.0.0.1:8095",
		"PostgreSQL schema storefront, changed by the mutator (every row it changed, with its commit time: /r/.run/demo/catalog-mutator.jsonl)",
		"(CDC: slot ecom_catalog_sync, publication storefront_catalog)",
		"curl -s -H 'Authorization: Bearer op_tok' http://127.0.0.1:8089/v1/runs\n",
		"curl -s -H 'Authorization: Bearer op_tok' -X POST http://127.0.0.1:8089/v1/sync",
		"curl -s http://127.0.0.1:8089/readyz   (catalog-sync)",
		"curl -s http://127.0.0.1:8089/metrics | grep ^ecom_catalog",
		"FROM dim_products WHERE valid_from",
		"ecom.products.v1, ecom.products.valid.v1, ecom.customers.v1, ecom.customers.valid.v1, ecom.catalog-sync.state.v1, ecom.dlq.v1",
		"open http://127.0.0.1:8091/console/   login: dlqop_tok   (the operator token)",
		"curl -s -H 'Authorization: Bearer dlqop_tok' 'http://127.0.0.1:8091/v1/dead-letters?stage=validator&limit=5'",
		"curl -s http://127.0.0.1:8091/readyz   (dlq-handler)",
		"Traces      Jaeger http://127.0.0.1:16686   (every event is one trace",
		"curl -s 'http://127.0.0.1:16686/api/traces?service=validator&limit=5'",
		"Prometheus  http://127.0.0.1:19090   (scrapes every service every 5 s; this demo's targets: /r/.run/prometheus/targets/demo.json)",
		"curl -s 'http://127.0.0.1:19090/api/v1/query?query=up'",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("where to look lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<no value>") {
		t.Errorf("where to look has an unset field:\n%s", got)
	}
}

// TestDLQLine: the store's counts by state, in a fixed order, zeros left
// out; an unreachable API says so.
func TestDLQLine(t *testing.T) {
	tests := []struct {
		name string
		st   slice.DLQStats
		err  error
		want string
	}{
		{"empty", slice.DLQStats{}, nil, "  dead-letter store: 0 stored (empty) | 0 failed in the last hour"},
		{"states", slice.DLQStats{Total: 7, ByState: map[string]int{"resolved": 3, "new": 10, "discarded": 0, "failed_again": 1}}, nil,
			"  dead-letter store: 14 stored (new 10, failed_again 1, resolved 3) | 7 failed in the last hour"},
		{"down", slice.DLQStats{}, errors.New("dlq-handler: connection refused"), "  dead-letter store: dlq-handler: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dlqLine(tt.st, tt.err); got != tt.want {
				t.Errorf("dlqLine() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestObservability: where the demo's traces and metrics go, from the
// environment stack.sh env prints, with the stack's defaults; a Jaeger that
// does not answer stops the demo, saying how to start it.
func TestObservability(t *testing.T) {
	jaeger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":[],"errors":null}`))
	}))
	defer jaeger.Close()
	down := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	downURL := down.URL
	down.Close()
	root := t.TempDir()
	tests := []struct {
		name                   string
		env                    map[string]string
		wantOTLP, wantProm     string
		wantTargets, wantError string
	}{
		{name: "defaults", env: map[string]string{"JAEGER_URL": jaeger.URL},
			wantOTLP: "http://127.0.0.1:14318", wantProm: "http://127.0.0.1:19090", wantTargets: filepath.Join(root, ".run", "prometheus", "targets")},
		{name: "stack.sh env", env: map[string]string{"JAEGER_URL": jaeger.URL, "JAEGER_OTLP_ENDPOINT": "http://127.0.0.1:34318",
			"PROMETHEUS_URL": "http://127.0.0.1:39090/", "PROMETHEUS_TARGETS_DIR": "/tmp/s/prometheus/targets"},
			wantOTLP: "http://127.0.0.1:34318", wantProm: "http://127.0.0.1:39090", wantTargets: "/tmp/s/prometheus/targets"},
		{name: "OTEL_EXPORTER_OTLP_ENDPOINT wins", env: map[string]string{"JAEGER_URL": jaeger.URL, "JAEGER_OTLP_ENDPOINT": "http://127.0.0.1:34318",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			wantOTLP: "http://127.0.0.1:4318", wantProm: "http://127.0.0.1:19090", wantTargets: filepath.Join(root, ".run", "prometheus", "targets")},
		{name: "Jaeger down", env: map[string]string{"JAEGER_URL": downURL}, wantError: "deploy/local/stack.sh up jaeger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"JAEGER_URL", "JAEGER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "PROMETHEUS_URL", "PROMETHEUS_TARGETS_DIR"} {
				t.Setenv(k, tt.env[k])
			}
			o, err := observability(context.Background(), root)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.otlp != tt.wantOTLP || o.prometheus != tt.wantProm || o.targets != tt.wantTargets || o.jaeger.URL() != jaeger.URL {
				t.Errorf("observability() = otlp %q, prometheus %q, targets %q, jaeger %q; want %q, %q, %q, %q",
					o.otlp, o.prometheus, o.targets, o.jaeger.URL(), tt.wantOTLP, tt.wantProm, tt.wantTargets, jaeger.URL)
			}
		})
	}
}
