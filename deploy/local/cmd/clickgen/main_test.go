package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
			purchases, dups := purchaseEvents(t, cluster.ListenAddrs(), int64(i)*20000)
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

// purchaseEvents reads the topic from offset from on: the order_id and
// user_id of every purchase, and how many purchase records were duplicates.
func purchaseEvents(t *testing.T, brokers []string, from int64) (map[string]string, int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"clicks": {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]string{}
	dups, n := 0, 0
	for n < 20000 {
		fs := cl.PollFetches(context.Background())
		if err := fs.Err(); err != nil {
			t.Fatal(err)
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
				t.Errorf("purchase without order or user: %s", r.Value)
				return
			}
			if _, seen := out[*e.OrderID]; seen {
				dups++
			}
			out[*e.OrderID] = *e.UserID
		})
	}
	return out, dups
}
