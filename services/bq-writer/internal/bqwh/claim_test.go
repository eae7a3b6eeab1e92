package bqwh

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// finalizeCounter counts the fake's finalize requests, and answers a second finalize of a stream
// with STREAM_FINALIZED (no row count): the answer BigQuery does not document.
type finalizeCounter struct {
	mu           sync.Mutex
	first, again int
}

func (c *finalizeCounter) hook(f bqfake.Finalize) *bqfake.Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Finalized {
		c.again++
		return bqfake.FinalizedAgain()
	}
	c.first++
	return nil
}

func (c *finalizeCounter) counts() (first, again int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first, c.again
}

// TestClaimWithoutPosition: a Kafka commit whose metadata is not bq-writer's, or names the streams
// of another project, dataset or table, is no BigQuery position: Claim returns none for the
// partition (the sink then refuses it unless POSITION_RECOVERY allows a start), finalizes nothing
// and still opens the partition's streams, so that a reset and the claim commit work.
func TestClaimWithoutPosition(t *testing.T) {
	tests := []struct {
		name string
		// metadata rewrites the events partition's committed metadata.
		metadata func(md string) string
		wantLog  []string // in the warning
		wantErr  string
	}{
		{name: "empty (a reset with the Kafka CLI)", metadata: func(string) string { return "" }, wantLog: []string{"is empty"}},
		{name: "franz-go's default: the member id (the group ran on DuckDB)", metadata: func(string) string { return "kgo-0c7a6e2b-8d7e-4f0e-9b1a-2f3c4d5e6f70" }, wantLog: []string{"is not bq-writer's"}},
		{name: "another tool's JSON", metadata: func(string) string { return `{"owner":"tool"}` }, wantLog: []string{"is not bq-writer's"}},
		{name: "another project", metadata: func(md string) string { return strings.ReplaceAll(md, "projects/"+project+"/", "projects/old/") },
			wantLog: []string{"projects/old/datasets/" + dataset + "/tables/" + TableEvents + "/streams/", "projects/" + project + "/datasets/" + dataset + "/tables/" + TableEvents}},
		{name: "another dataset", metadata: func(md string) string {
			return strings.ReplaceAll(md, "/datasets/"+dataset+"/", "/datasets/stage_raw/")
		},
			wantLog: []string{"/datasets/stage_raw/tables/", "datasets/" + dataset + "/tables/" + TableEvents}},
		{name: "another table's stream", metadata: func(md string) string {
			return strings.ReplaceAll(md, "/tables/"+TableEvents+"/", "/tables/"+TableUsers+"/")
		}, wantLog: []string{"/tables/" + TableUsers + "/streams/", "tables/" + TableEvents}},
		{name: "bq-writer's, another version: an error", metadata: func(string) string { return `{"v":2,"s":{},"r":{}}` }, wantErr: "version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.open(t, Config{})
			write(t, e, w, 0, 10, true)
			write(t, e, w, 10, 20, false) // rows past the commit in the old streams
			c := e.commits[pEvents]
			c.Metadata = tt.metadata(c.Metadata)
			e.commits[pEvents] = c
			fc := &finalizeCounter{}
			e.fake.SetHooks(bqfake.Hooks{Finalize: fc.hook})

			var logs bytes.Buffer
			next := e.openUnclaimed(t, Config{Log: slog.New(slog.NewTextHandler(&logs, nil))})
			got, err := next.Claim(context.Background(), group, e.assignments())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("claim: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("claim: %v", err)
			}
			if pos, ok := got[pEvents]; ok {
				t.Fatalf("claimed position %+v of %v, want none", pos, pEvents)
			}
			for _, p := range []warehouse.Partition{pOrders, pProducts, pUsers} {
				if got[p].Next != 10 {
					t.Errorf("%v: claimed %+v, want next 10", p, got[p])
				}
			}
			if first, _ := fc.counts(); first != 4 { // the other partitions' five tables' streams, less the events'
				t.Errorf("finalized %d streams, want 4 (those of the orders, items, products and users)", first)
			}
			for _, s := range tt.wantLog {
				if !strings.Contains(logs.String(), s) || !strings.Contains(logs.String(), "no BigQuery position") {
					t.Errorf("log does not name %q:\n%s", s, logs.String())
				}
			}
			// POSITION_RECOVERY=committed: the sink resets the partition to the commit's offset.
			if err := next.ResetPositions(context.Background(), group, map[warehouse.Partition]warehouse.Position{pEvents: {Next: 10}}); err != nil {
				t.Fatalf("reset: %v", err)
			}
			e.commitClaim(t, next)
			res := write(t, e, next, 10, 20, true)
			if res.Inserted != 10 || res.Stale != 0 {
				t.Errorf("events after the reset: %d inserted, %d stale; want 10, 0 (the old streams' rows are not skipped)", res.Inserted, res.Stale)
			}
			if n := copies(e.rows(TableEvents))[fmt.Sprintf("%s/%d@15", pEvents.Topic, pEvents.Partition)]; n != 2 {
				t.Errorf("event 15: %d copies, want 2 (at-least-once past a commit without a position)", n)
			}
		})
	}
}

// TestClaimReleaseClaim is the sink's path after a claim commit refused by a rebalance (and every
// revoke): Claim, Release, Claim. The second claim reads the final row counts the first one
// found instead of finalizing the streams again, whose answer may give none (at-least-once).
func TestClaimReleaseClaim(t *testing.T) {
	e := newEnv(t)
	w := e.open(t, Config{})
	write(t, e, w, 0, 10, true)
	write(t, e, w, 10, 20, false) // dies before the commit
	fc := &finalizeCounter{}
	e.fake.SetHooks(bqfake.Hooks{Finalize: fc.hook})

	next := e.claimed(t, Config{})
	next.Release(context.Background(), allParts) // the claim commit was refused: rejoin
	e.claim(t, next)
	if first, again := fc.counts(); first != len(Tables) || again != 0 {
		t.Fatalf("finalized %d streams and %d again; want %d and none again", first, again, len(Tables))
	}
	e.commitClaim(t, next)
	res := write(t, e, next, 10, 20, true)
	if res.Stale != 10 || res.Orders.Stale != 10 || res.Inserted != 0 {
		t.Errorf("after Claim, Release, Claim: %d events inserted, %d skipped, %d orders skipped; want 0, 10, 10", res.Inserted, res.Stale, res.Orders.Stale)
	}
	checkExactlyOnce(t, e, 20)
}

func TestFinalCountsBounded(t *testing.T) {
	var f finalCounts
	for i := range maxFinals + 10 {
		f.put(fmt.Sprint("s", i), int64(i))
	}
	f.put("s20", 20) // put again: not a new name
	tests := []struct {
		name string
		want int64
		ok   bool
	}{{"s0", 0, false}, {"s9", 0, false}, {"s10", 10, true}, {"s20", 20, true}, {fmt.Sprint("s", maxFinals+9), int64(maxFinals + 9), true}}
	for _, tt := range tests {
		if n, ok := f.get(tt.name); n != tt.want || ok != tt.ok {
			t.Errorf("get(%s) = %d, %v; want %d, %v", tt.name, n, ok, tt.want, tt.ok)
		}
	}
	if len(f.rows) != maxFinals || len(f.order) != maxFinals {
		t.Errorf("%d counts, %d names kept; want %d", len(f.rows), len(f.order), maxFinals)
	}
}

// TestStaleRows: rows below the claimed position (moved by every Write) are replays: counted as
// Stale, not appended, and not taken for the rows a skip owes.
func TestStaleRows(t *testing.T) {
	tests := []struct {
		name string
		// dead: the last writer appended [10, 20) and died before the commit (a skip of 10).
		dead      bool
		from, to  int64
		wantStale int // per entity
		wantNew   int // events inserted
	}{
		{name: "a replay below the position", from: 5, to: 15, wantStale: 5, wantNew: 5},
		{name: "all below the position", from: 0, to: 10, wantStale: 10, wantNew: 0},
		{name: "a replay before a skip", dead: true, from: 5, to: 25, wantStale: 5 + 10, wantNew: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.open(t, Config{})
			write(t, e, w, 0, 10, true)
			if tt.dead {
				write(t, e, w, 10, 20, false)
				w = e.open(t, Config{})
			}
			res := write(t, e, w, tt.from, tt.to, true)
			if res.Stale != tt.wantStale || res.Orders.Stale != tt.wantStale || res.Products.Stale != tt.wantStale || res.Users.Stale != tt.wantStale {
				t.Errorf("stale %d events, %d orders, %d products, %d users; want %d each", res.Stale, res.Orders.Stale, res.Products.Stale, res.Users.Stale, tt.wantStale)
			}
			if res.Inserted != tt.wantNew {
				t.Errorf("inserted %d events, want %d", res.Inserted, tt.wantNew)
			}
			checkExactlyOnce(t, e, max(tt.to, 10))
		})
	}
}

// TestStaleRowsOtherLog: a batch from another incarnation of the topic than the claimed position
// (after a reset that recorded the topic id) is a position conflict, and appends nothing.
func TestStaleRowsOtherLog(t *testing.T) {
	e := newEnv(t)
	w := e.claimed(t, Config{})
	if err := w.ResetPositions(context.Background(), group, map[warehouse.Partition]warehouse.Position{pEvents: {Next: 0, TopicID: "id-1"}}); err != nil {
		t.Fatal(err)
	}
	b := batch(0, 5)
	b.TopicIDs = map[string]string{pEvents.Topic: "id-2"}
	if _, err := w.Write(context.Background(), group, b); err == nil || !strings.Contains(err.Error(), "id-2") {
		t.Fatalf("write from another topic id: %v, want a position conflict", err)
	}
	if n := len(e.rows(TableEvents)); n != 0 {
		t.Errorf("%d events appended, want 0", n)
	}
}
