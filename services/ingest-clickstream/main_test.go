package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/goleak"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/config/configtest"
	"github.com/ecomstream/platform/pkg/service"
)

// TestConfig: the service starts with no configuration at all, and its
// README documents every variable it reads.
func TestConfig(t *testing.T) { configtest.Check(t, &Config{}, "README.md") }

// TestMaxEventBytesFitsTheProducerLimit: an event limit the producer's record
// limit cannot carry (with its dead letter) stops the service at start.
func TestMaxEventBytesFitsTheProducerLimit(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{name: "defaults", env: map[string]string{}},
		{name: "event limit as large as the record limit", env: map[string]string{"MAX_EVENT_BYTES": "1048576"}, wantErr: true},
		{name: "record limit lowered under the event limit", env: map[string]string{"MAX_EVENT_BYTES": "65536", "KAFKA_PRODUCER_MAX_RECORD_BYTES": "100000"}, wantErr: true},
		{name: "both raised", env: map[string]string{"MAX_EVENT_BYTES": "1048576", "KAFKA_PRODUCER_MAX_RECORD_BYTES": "4194304"}},
	}
	for _, tt := range tests {
		var cfg Config
		err := config.LoadFrom(config.MapLookup(tt.env), &cfg) // validates
		if (err != nil) != tt.wantErr || (err != nil && !strings.Contains(err.Error(), "MAX_EVENT_BYTES")) {
			t.Errorf("%s: Validate() = %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}

// TestRunWiresTheCollector: with COLLECTOR_ADDR set the service serves the
// collector on its own listener next to the Kafka input, which keeps
// working, and /readyz checks the collector's producer.
func TestRunWiresTheCollector(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := srfake.New()
	defer reg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	collectorAddr := ln.Addr().String()
	ln.Close()
	const key = "wk_web_0123456789abcdef"
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ","), "SCHEMA_REGISTRY_URL": reg.URL(), "HTTP_ADDR": "127.0.0.1:0",
		"KAFKA_TRANSACTIONAL_ID": "ingest-test-0", "LOG_LEVEL": "error",
		"COLLECTOR_ADDR": collectorAddr, "COLLECTOR_WRITE_KEYS": "web=" + key,
	}
	var cfg Config
	if err := config.LoadFrom(config.MapLookup(env), &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := service.Start(ctx, name, "test", cfg.Base)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	done := make(chan error, 1)
	go func() { done <- run(ctx, rt, &cfg) }()

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	event := func(id string) string {
		return `{"event_id":"` + id + `","event_timestamp":"2026-11-25T21:00:00Z","event_type":"page_view","session_id":"s","page_url":"https://x.example/"}`
	}
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; {
		rq, _ := http.NewRequest(http.MethodPost, "http://"+collectorAddr+"/v1/events", strings.NewReader("["+event("http-1")+"]"))
		rq.Header.Set("Content-Type", "application/json")
		rq.Header.Set("X-Write-Key", key)
		if resp, err = hc.Do(rq); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("collector: %d", resp.StatusCode)
	}
	opsAddr, err := rt.HTTP.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := hc.Get("http://" + opsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(ready.Body)
	ready.Body.Close()
	if !strings.Contains(string(body), `"collector_kafka":{"status":"ok"}`) {
		t.Errorf("/readyz: %s", body)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(cfg.OutputTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.InputTopic, Value: []byte(event("kafka-1"))}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	sources := map[string]bool{}
	for len(sources) < 2 && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			if strings.Contains(string(r.Value), "http-1") {
				sources["http"] = true
			}
			if strings.Contains(string(r.Value), "kafka-1") {
				sources["kafka"] = true
			}
		})
	}
	if !sources["http"] || !sources["kafka"] {
		t.Errorf("outputs seen: %v, want the collector's and the Kafka input's", sources)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
