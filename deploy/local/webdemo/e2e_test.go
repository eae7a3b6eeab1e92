package webdemo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// TestE2EDemoPage is the demo as a newcomer sees it: the real service
// binaries against the real local stack, the shop served beside them, and
// headless Chromium clicking through it (home, a product, add to cart,
// remove, add again, checkout, place the order). Every event the page sent
// must be in fact_events once, from the HTTP collector (source = 'http'),
// in the page's session, and the page must have shown the collector's
// acceptance of each event it sent with fetch.
func TestE2EDemoPage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack, with headless Chromium")
	}
	requireChromium(t)
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}

	runDir := runFolder(t, "-"+time.Now().Format("20060102-150405"))
	ln := listen(t)
	shopURL := Origin(ln.Addr().String())
	const token = "e2e-query-token-0123456789"
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: "e2e-" + stacktest.UniqueName(t, "") + ".", QueryToken: token,
		CollectorOrigins: []string{shopURL},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs and screenshots: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()
	s, err := New(Config{CollectorURL: "http://" + sl.CollectorAddr, WriteKey: sl.WriteKey, FlushInterval: neverFlush})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)

	clicking := time.Now()
	b := newBrowser(t, runDir, browserBudget)
	orderID := shop(b, shopURL)
	ordered := time.Now()
	entries := b.log()
	statuses, logged := statusOf(t, entries)
	if len(logged) == 0 {
		t.Fatal("the panel logged no event")
	}
	session := str(t, logged[0], "session_id")
	byTransport := map[string]int{}
	for _, e := range entries {
		byTransport[e.Transport] += len(e.Sent)
	}
	t.Logf("clicked through the shop in %s: %d events (by transport %v), order %s, session %s",
		ordered.Sub(clicking).Round(time.Millisecond), len(logged), byTransport, orderID, session)

	// The page showed the collector's acceptance: each event sent with
	// fetch accepted, none rejected or refused (the answer to a beacon, or
	// to a fetch in flight when its page was left, cannot be read; the
	// warehouse check below covers those).
	accepted := 0
	for _, ev := range logged {
		switch st := statuses[str(t, ev, "event_id")]; st {
		case "accepted":
			accepted++
		case "beacon", "keepalive", "resent":
		default:
			t.Errorf("the page shows %s %s as %q, want accepted", ev["event_type"], ev["event_id"], st)
		}
	}
	if panel := b.text("#tracking-summary"); accepted == 0 || !strings.Contains(panel, fmt.Sprintf("accepted %d · rejected 0", accepted)) {
		t.Errorf("the panel's summary %q does not show %d accepted, 0 rejected", panel, accepted)
	}

	want := map[string]string{} // event_id -> event_type
	for _, ev := range logged {
		want[str(t, ev, "event_id")] = str(t, ev, "event_type")
	}
	const q = "SELECT event_id, event_type, session_id, source, collector_source, order_id FROM fact_events ORDER BY event_timestamp"
	var rows [][]any
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, rows, err = sl.Query(ctx, q)
		if (err == nil && len(rows) >= len(want)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	landed := time.Since(ordered)
	// A little longer: a duplicate would show up now.
	time.Sleep(2 * time.Second)
	if _, rows, err = sl.Query(ctx, q); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	var types []string
	for _, r := range rows {
		id, typ, sess, src, csrc, order := r[0], r[1], r[2], r[3], r[4], r[5]
		sid, _ := id.(string)
		seen[sid]++
		if seen[sid] > 1 {
			t.Errorf("event %s is in fact_events %d times", sid, seen[sid])
			continue
		}
		if want[sid] == "" {
			t.Errorf("fact_events holds %v %v, which the page never sent", typ, id)
			continue
		}
		if typ != want[sid] || sess != session || src != "http" || csrc != "web" {
			t.Errorf("row %v: event_type %v session_id %v source %v collector_source %v; want %s, %s, http, web", id, typ, sess, src, csrc, want[sid], session)
		}
		if typ == "purchase" && order != orderID {
			t.Errorf("purchase order_id %v, want the page's %s", order, orderID)
		}
		styp, _ := typ.(string)
		types = append(types, styp)
	}
	for id, typ := range want {
		if seen[id] == 0 {
			t.Errorf("%s %s (sent by %s) is not in fact_events", typ, id, transportOf(entries, id))
		}
	}
	slices.Sort(types)
	types = slices.Compact(types)
	if all := []string{"add_to_cart", "begin_checkout", "page_view", "product_view", "purchase", "remove_from_cart"}; !slices.Equal(types, all) {
		t.Errorf("event types in fact_events %v, want %v", types, all)
	}
	t.Logf("%d rows in fact_events, all there %s after the order was placed", len(rows), landed.Round(time.Millisecond))
}

func transportOf(entries []logEntry, id string) string {
	for _, e := range entries {
		for _, ev := range e.Sent {
			if ev["event_id"] == id {
				return e.Transport
			}
		}
	}
	return "?"
}
