package bqwh

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqfake"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// total is how far every crash-point scenario writes.
const total = 30

// faultFirst injects f into the next n appends after it is installed.
func faultFirst(n int, f *bqfake.Fault) func(bqfake.Append) *bqfake.Fault {
	var mu sync.Mutex
	return func(bqfake.Append) *bqfake.Fault {
		mu.Lock()
		defer mu.Unlock()
		if n > 0 {
			n--
			return f
		}
		return nil
	}
}

// faultEvery injects f into every second append, as the emulator answers NotFound.
func faultEvery(f *bqfake.Fault) func(bqfake.Append) *bqfake.Fault {
	var mu sync.Mutex
	i := 0
	return func(bqfake.Append) *bqfake.Fault {
		mu.Lock()
		defer mu.Unlock()
		i++
		if i%2 == 0 {
			return f
		}
		return nil
	}
}

func write(t *testing.T, e *env, w *Warehouse, from, to int64, commit bool) warehouse.WriteResult {
	t.Helper()
	b := batch(from, to)
	res, err := w.Write(context.Background(), group, b)
	if err != nil {
		t.Fatalf("write [%d,%d): %v", from, to, err)
	}
	if commit {
		e.commit(t, b, res)
	}
	return res
}

// finish is a new process taking over: it claims from the kept commits and writes up to total.
func finish(t *testing.T, e *env) warehouse.WriteResult {
	t.Helper()
	w := e.open(t, Config{})
	res := write(t, e, w, e.next(), total, true)
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return res
}

func TestCrashPoints(t *testing.T) {
	tests := []struct {
		name string
		// run drives the writers up to the crash; the test then finishes with a new process.
		run func(t *testing.T, e *env, w *Warehouse)
		// wantStale is the rows per table the finishing writer skipped as already written.
		wantStale int
		// fresh: the partitions were never committed before run (no first batch).
		fresh bool
	}{
		{name: "crash before the append", run: func(*testing.T, *env, *Warehouse) {}},
		{name: "append applied, ack lost, resent in Write", run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, true)
			e.fake.SetHooks(bqfake.Hooks{AfterAppend: faultFirst(5, bqfake.Drop())})
			if res := write(t, e, w, 20, 25, true); res.Inserted != 5 || res.Stale != 0 {
				t.Fatalf("after a lost ack: %+v, want 5 inserted", res)
			}
			e.fake.SetHooks(bqfake.Hooks{})
		}},
		{name: "append applied, ack lost, writer gives up and crashes", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			w.retry.attempts = 1
			e.fake.SetHooks(bqfake.Hooks{AfterAppend: faultFirst(1000, bqfake.Drop())})
			_, err := w.Write(context.Background(), group, batch(10, 20))
			if !warehouse.IsTransient(err) {
				t.Fatalf("write with every ack lost: %v, want a transient error", err)
			}
			e.fake.SetHooks(bqfake.Hooks{})
		}},
		{name: "write failed half way, the sink retries the batch", run: func(t *testing.T, e *env, w *Warehouse) {
			w.retry.attempts = 1
			e.fake.SetHooks(bqfake.Hooks{AfterAppend: faultFirst(2, bqfake.Drop())})
			b := batch(10, 20)
			if _, err := w.Write(context.Background(), group, b); !warehouse.IsTransient(err) {
				t.Fatalf("write with two acks lost: %v, want a transient error", err)
			}
			e.fake.SetHooks(bqfake.Hooks{})
			res, err := w.Write(context.Background(), group, b)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			e.commit(t, b, res)
		}},
		{name: "crash after the ack, before the Kafka commit", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
		}},
		{name: "crash in the middle of a skip", wantStale: 5, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
			next := e.open(t, Config{}) // owes 10 rows per table
			if res := write(t, e, next, 10, 15, true); res.Stale != 5 || res.Inserted != 0 {
				t.Fatalf("first half of the skip: %+v, want 5 stale", res)
			}
		}},
		{name: "crash after the Kafka commit", run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, true)
		}},
		{name: "crash during the claim's finalize", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
			e.claimed(t, Config{}) // finalizes, then dies before the claim's commit
		}},
		{name: "crash after the claim commit, before the first append", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
			e.open(t, Config{}) // the commit names its new streams and the skip of 10; it dies
		}},
		{name: "brand-new partition: crash after the claim commit, before the first append", fresh: true, run: func(*testing.T, *env, *Warehouse) {}},
		{name: "brand-new partition: crash right after the first append", fresh: true, wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 0, 10, false)
		}},
		{name: "brand-new partition: zombie after the first append", fresh: true, wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 0, 10, false)
			owner := e.open(t, Config{})
			if _, err := w.Write(context.Background(), group, batch(10, 15)); !errors.Is(err, ErrFenced) {
				t.Fatalf("zombie write: %v, want ErrFenced", err)
			}
			if err := owner.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "takeover while a skip is pending that ends mid-batch", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
			next := e.open(t, Config{}) // owes 10 rows per table
			if res := write(t, e, next, 10, 15, true); res.Stale != 5 || res.Inserted != 0 {
				t.Fatalf("first half of the skip: %+v, want 5 stale", res)
			}
			// The skip ends mid-batch: 15..19 skipped, 20..24 appended to the stream the claim
			// commit named, then it dies before committing.
			if res := write(t, e, next, 15, 25, false); res.Stale != 5 || res.Inserted != 5 {
				t.Fatalf("batch that ends the skip: %+v, want 5 stale and 5 inserted", res)
			}
		}},
		{name: "takeover while a skip is pending: the previous owner is fenced mid-batch", wantStale: 5, run: func(t *testing.T, e *env, w *Warehouse) {
			write(t, e, w, 10, 20, false)
			next := e.open(t, Config{})
			write(t, e, next, 10, 15, true) // 5 of the 10 skipped and committed
			owner := e.open(t, Config{})    // owes the other 5
			// next's batch would end the skip at 20 and append 20..24: fenced on every table.
			if _, err := next.Write(context.Background(), group, batch(15, 25)); !errors.Is(err, ErrFenced) {
				t.Fatalf("previous owner's write: %v, want ErrFenced", err)
			}
			if err := owner.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "zombie appends after the takeover", wantStale: 10, run: func(t *testing.T, e *env, w *Warehouse) {
			zombie := w
			write(t, e, zombie, 10, 20, false)
			owner := e.open(t, Config{})
			_, err := zombie.Write(context.Background(), group, batch(20, 25))
			if !errors.Is(err, ErrFenced) || warehouse.IsTransient(err) {
				t.Fatalf("zombie write: %v, want ErrFenced, not transient", err)
			}
			if err := owner.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "quota and unavailable retried", run: func(t *testing.T, e *env, w *Warehouse) {
			q, u := faultFirst(2, bqfake.Quota()), faultFirst(2, bqfake.Unavailable())
			e.fake.SetHooks(bqfake.Hooks{BeforeAppend: func(a bqfake.Append) *bqfake.Fault {
				if f := q(a); f != nil {
					return f
				}
				return u(a)
			}})
			write(t, e, w, 10, 20, true)
			e.fake.SetHooks(bqfake.Hooks{})
		}},
		{name: "dropped connection", run: func(t *testing.T, e *env, w *Warehouse) {
			e.fake.SetHooks(bqfake.Hooks{BeforeAppend: faultFirst(3, bqfake.Drop())})
			write(t, e, w, 10, 20, true)
			e.fake.SetHooks(bqfake.Hooks{})
		}},
		{name: "the emulator's NotFound with an empty entity", run: func(t *testing.T, e *env, w *Warehouse) {
			e.fake.SetHooks(bqfake.Hooks{BeforeAppend: faultEvery(&bqfake.Fault{Code: codes.NotFound, Message: "Not found: "})})
			write(t, e, w, 10, 20, true)
			e.fake.SetHooks(bqfake.Hooks{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// The writer that crashes has committed a batch: its streams are named in the commits.
			w := e.open(t, Config{})
			if !tt.fresh {
				write(t, e, w, 0, 10, true)
			}
			tt.run(t, e, w)
			e.fake.SetHooks(bqfake.Hooks{})
			res := finish(t, e)
			if res.Stale != tt.wantStale || res.Orders.Stale != tt.wantStale || res.Products.Stale != tt.wantStale || res.Users.Stale != tt.wantStale {
				t.Errorf("finishing write skipped %d events, %d orders, %d products, %d users; want %d each",
					res.Stale, res.Orders.Stale, res.Products.Stale, res.Users.Stale, tt.wantStale)
			}
			checkExactlyOnce(t, e, total)
		})
	}
}
