package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/storefront"
)

// TestRunPlacesPurchases runs clickgen against a fake Kafka and a real
// storefront API: every purchase event in the topic names an order the
// storefront holds, for the event's user, and the duplicates found their
// order already placed.
func TestRunPlacesPurchases(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	sim := storefront.NewSimulator(storefront.SimConfig{Seed: 1, RatePerMinute: -1}) // only placed orders
	api, err := storefront.NewAPI(sim, storefront.APIConfig{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	shop := httptest.NewServer(api)
	defer shop.Close()

	tests := []struct {
		name  string
		extra []string
		env   map[string]string
		want  bool // orders placed
	}{
		{"off by default", nil, map[string]string{"STOREFRONT_TOKEN": "tok"}, false},
		{"placing", []string{"-storefront-url", shop.URL}, map[string]string{"STOREFRONT_TOKEN": "tok"}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sim.Stats().Placed
			expect := filepath.Join(t.TempDir(), "expect.jsonl")
			args := append([]string{"-brokers", strings.Join(cluster.ListenAddrs(), ","), "-topic", "clicks",
				"-count", "20000", "-rate", "0", "-duplicates", "0.05", "-seed", "7", "-expect-out", expect}, tt.extra...)
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			if err := run(context.Background(), args, func(k string) string { return tt.env[k] }, io.Discard, log); err != nil {
				t.Fatalf("run: %v\n%s", err, logs.String())
			}
			purchases, dups, err := purchaseEvents(cluster.ListenAddrs(), int64(i)*20000, 20000, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(purchases) == 0 || dups == 0 {
				t.Fatalf("%d purchases, %d of them duplicated: the test needs both", len(purchases), dups)
			}
			placed := sim.Stats().Placed - before
			if !tt.want {
				if placed != 0 || strings.Contains(logs.String(), "orders.placed") {
					t.Fatalf("%d orders placed with placing off", placed)
				}
				return
			}
			for id, user := range purchases {
				o, ok := sim.Order(id)
				if !ok || o.CustomerID != user || len(o.Lines) == 0 {
					t.Fatalf("purchase %s by %s: order %+v (found %v)", id, user, o, ok)
				}
			}
			if placed != len(purchases) {
				t.Fatalf("%d orders placed for %d purchases", placed, len(purchases))
			}
			if !strings.Contains(logs.String(), "orders.placed="+strconv.Itoa(len(purchases))) ||
				!strings.Contains(logs.String(), "orders.already="+strconv.Itoa(dups)) || !strings.Contains(logs.String(), "orders.failed=0") {
				t.Fatalf("the done line does not count %d placed and %d already placed:\n%s", len(purchases), dups, logs.String())
			}
		})
	}
}

// purchaseEvents reads want records of the topic from offset from on: the
// order_id and user_id of every purchase, and how many purchase records were
// duplicates. It gives up after timeout, with the count read, if fewer
// records arrive.
func purchaseEvents(brokers []string, from int64, want int, timeout time.Duration) (map[string]string, int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"clicks": {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := map[string]string{}
	dups, n := 0, 0
	var bad []error
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("read %d of %d records in %s", n, want, timeout)
		}
		if err := fs.Err(); err != nil {
			return nil, 0, fmt.Errorf("after %d of %d records: %w", n, want, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var e struct {
				EventType string  `json:"event_type"`
				OrderID   *string `json:"order_id"`
				UserID    *string `json:"user_id"`
			}
			if json.Unmarshal(r.Value, &e) != nil || e.EventType != "purchase" {
				return
			}
			if e.OrderID == nil || e.UserID == nil {
				bad = append(bad, fmt.Errorf("purchase without order or user: %s", r.Value))
				return
			}
			if _, seen := out[*e.OrderID]; seen {
				dups++
			}
			out[*e.OrderID] = *e.UserID
		})
	}
	return out, dups, errors.Join(bad...)
}

// TestPurchaseEventsGivesUp: reading fewer records than wanted fails with
// the count read once the timeout has passed, instead of hanging until the
// test binary's timeout.
func TestPurchaseEventsGivesUp(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(`{"event_type":"page_view","n":` + strconv.Itoa(i) + `}`)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := purchaseEvents(cluster.ListenAddrs(), 0, 20, 300*time.Millisecond)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "read 10 of 20 records") {
			t.Fatalf("err %v, want one saying 10 of 20 records were read", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("purchaseEvents still waiting 10 s after a 300 ms timeout")
	}
}
