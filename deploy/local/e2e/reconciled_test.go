package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/pkg/avroserde"
)

// reconcileLimit bounds how long assertReconciled waits for a window to settle: every stage
// past the window's records. The tests call it once their own checks saw the data land, so
// it settles at the first or second reading.
const reconcileLimit = 90 * time.Second

// assertReconciled reconciles source (reconcile.SourceClickstream, SourceOrders or
// SourceCatalog) on the slice in w, the run's window (a test's start until now: a slice's
// topics are its own, and dead letters are its by their original's topic), waiting
// (bounded) until nothing of the window is in flight, and fails listing every difference:
// each hop's equation and each record that does not balance. The slice's bq-writer must be
// running (the warehouse is read through its query endpoint). It returns the report.
func assertReconciled(ctx context.Context, t *testing.T, sl *slice.Slice, source string, w reconcile.Window) *reconcile.Report {
	t.Helper()
	began := time.Now()
	fn, err := reconciler(ctx, sl, source)
	if err != nil {
		t.Fatalf("reconcile %s: %v", source, err)
	}
	var rep *reconcile.Report
	off := 0 // settled readings in a row that did not balance
	for deadline := time.Now().Add(reconcileLimit); ; time.Sleep(time.Second) {
		r, err := fn(ctx, w)
		switch {
		case err != nil:
			t.Logf("reconcile %s: %v; again", source, err)
		case r.Balanced():
			t.Logf("reconciliation of %s balances (%s):\n%s", source, time.Since(began).Round(100*time.Millisecond), reportText(r))
			return r
		case r.Settled():
			// A stage's committed position can be visible a moment before its
			// transaction's markers make the outputs readable: read again.
			rep = r
			if off++; off == 3 {
				t.Errorf("reconciliation of %s does not balance (settled):\n%s", source, allDifferences(r))
				return r
			}
			time.Sleep(time.Second)
			continue
		default:
			rep = r
		}
		off = 0
		if time.Now().After(deadline) {
			if rep == nil {
				t.Fatalf("reconcile %s: no report within %s: %v", source, reconcileLimit, err)
			}
			t.Errorf("reconciliation of %s not settled within %s (records in flight):\n%s", source, reconcileLimit, allDifferences(rep))
			return rep
		}
	}
}

// allDifferences is the report with every difference listed (Print lists 50 per hop).
func allDifferences(r *reconcile.Report) string {
	var b strings.Builder
	r.Print(&b)
	for _, h := range r.Hops {
		if len(h.Differences) > 50 {
			fmt.Fprintf(&b, "  every difference of %s:\n", h.Stage)
			for _, d := range h.Differences {
				fmt.Fprintf(&b, "      %s\n", d)
			}
		}
	}
	return b.String()
}

// reconciler is source's Reconcile on the slice's topics, groups and warehouse.
func reconciler(ctx context.Context, sl *slice.Slice, source string) (func(context.Context, reconcile.Window) (*reconcile.Report, error), error) {
	opts := []kgo.Opt{kgo.SeedBrokers(sl.Opts.Brokers...)}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	// The client lives as long as the test binary's slice does: closed with the context.
	context.AfterFunc(ctx, cl.Close)
	reg, err := avroserde.New(avroserde.Config{URL: sl.Opts.Registry, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	log := &reconcile.Log{Opts: opts, Adm: kadm.NewClient(cl), Lateness: time.Minute}
	wh := &reconcile.QueryAPI{URL: "http://" + sl.Procs["bq-writer"].HTTPAddr, Token: sl.Opts.QueryToken}
	return reconcile.ForSource(ctx, source, sl.Opts.Prefix, log, wh, reg)
}
