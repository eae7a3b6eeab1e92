package e2e

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// Limits the HTTP test sets low, so its refused requests stay small.
const (
	httpMaxBody   = 256 << 10 // COLLECTOR_MAX_BODY_BYTES
	httpMaxEvents = 100       // COLLECTOR_MAX_EVENTS
	allowedOrigin = "http://127.0.0.1:8095"
	limitedBurst  = httpMaxEvents // the rate-limited key's bucket (at least COLLECTOR_MAX_EVENTS), refilled at 1 event/s
)

// TestE2EHTTPCollector proves, on the real stack with the real binaries, for
// a mix of requests to ingest-clickstream's HTTP collector (good batches of 1
// to 50 events as JSON arrays, NDJSON, envelopes and single objects, some
// gzip-encoded, with the write key in every place it may be; batches holding
// broken events of every kind; an oversized event in a batch; refused
// requests: too large a body, a gzip bomb, too many events, no or a wrong
// key, a disallowed origin, a malformed body, an unknown encoding, a
// rate-limited key; the same batch sent twice) and across a kill -9 of
// ingest-clickstream with requests in flight:
//   - every answer has the status and per-event verdicts the contract gives;
//   - every event answered accepted and valid is in fact_events exactly once,
//     with source http, the key's collector_source and the client IP
//     truncated; one sent twice is once more in fact_events_duplicates;
//   - every event answered rejected is dead-lettered once per accepted
//     request that carried it, with its code, its original bytes, the raw
//     topic as source, offset -1 and the same id for the same bytes; events
//     only the validator can reject are dead-lettered by the validator;
//   - refused requests produced nothing;
//   - across the kill, every event of a request answered 2xx is stored once,
//     and an event of a request that failed at most once;
//   - the run balances in the reconciliation (assertReconciled).
func TestE2EHTTPCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack")
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()

	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	webKey := "wk_web_" + randHex(16)
	limitedKey := "wk_lim_" + randHex(16)
	killKey := "wk_web_" + randHex(16) // the kill -9 phase's senders: source web too, no rate limit in the way
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token,
		CollectorOrigins: []string{allowedOrigin},
		WriteKeys: []slice.WriteKey{
			{Source: "web", Key: webKey},
			{Source: "limited", Key: limitedKey, RateLimit: 1, Burst: limitedBurst},
			{Source: "web", Key: killKey, RateLimit: 1e9, Burst: 1 << 30},
		},
		Env: map[string][]string{"ingest-clickstream": {
			"COLLECTOR_CLIENT_IP=truncated",
			"COLLECTOR_MAX_BODY_BYTES=" + strconv.Itoa(httpMaxBody),
			"COLLECTOR_MAX_EVENTS=" + strconv.Itoa(httpMaxEvents),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs: %s", runDir)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()
	dlqFrom := endOffsets(ctx, t, eps.KafkaBrokers, deadletter.Topic)
	started := time.Now()

	c := &collectorClient{t: t, ctx: ctx, url: sl.CollectorURL(), webKey: webKey, http: &http.Client{Timeout: 20 * time.Second},
		led: newLedger()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("clickgen seed %d", seed)
	good := clickgen.New(clickgen.WithSeed(seed), clickgen.WithBrokenFraction(0))
	bad := newBrokenSource(seed + 1)
	goods := func(n int) []clickgen.Record {
		out := make([]clickgen.Record, n)
		for i := range out {
			out[i] = good.Next()
		}
		return out
	}

	// Good batches: every body format, gzip or not, the key in each place.
	for _, g := range []struct {
		size   int
		format string
		gzip   bool
		auth   string
	}{
		{1, "single", false, "bearer"}, {2, "array", false, "bearer"}, {5, "ndjson", false, "header"},
		{8, "envelope", false, "envelope"}, {13, "array", true, "query"}, {21, "ndjson", true, "bearer"},
		{34, "envelope", true, "header"}, {50, "array", false, "bearer"}, {50, "ndjson", true, "query"},
		{1, "array", false, "header"}, {3, "spaced", false, "bearer"},
	} {
		c.call(httpCall{name: fmt.Sprintf("good %s of %d (gzip %v, key by %s)", g.format, g.size, g.gzip, g.auth),
			recs: goods(g.size), format: g.format, gzip: g.gzip, auth: g.auth, want: http.StatusOK})
	}

	// Batches with broken events: every kind twice; malformed JSON only in
	// NDJSON (in an array it would make the whole body malformed).
	mixes := []struct {
		format string
		gzip   bool
		broken []clickgen.Record
	}{{format: "ndjson"}, {format: "array"}, {format: "ndjson", gzip: true}, {format: "envelope"}, {format: "array", gzip: true}}
	next := 0
	for _, kind := range append(clickgen.BrokenKinds(), clickgen.BrokenKinds()...) {
		if kind == clickgen.KindOversized {
			continue // refuses its whole request (413): the oversized case below
		}
		i := next % len(mixes)
		if kind == clickgen.KindMalformedJSON {
			i = 2 * (next % 2) // mixes 0 and 2
		} else {
			next++
		}
		mixes[i].broken = append(mixes[i].broken, bad.next(kind))
	}
	for _, m := range mixes {
		c.call(httpCall{name: fmt.Sprintf("%s with %d broken events (gzip %v)", m.format, len(m.broken), m.gzip),
			recs: interleave(goods(8), m.broken), format: m.format, gzip: m.gzip, auth: "bearer", want: http.StatusOK})
	}
	// An oversized event inside a batch refuses the whole request with 413
	// naming MAX_EVENT_BYTES; nothing of it lands (the ledger records its
	// events as refused), not even a dead letter.
	c.call(httpCall{name: "oversized event in a batch", recs: interleave(goods(3), []clickgen.Record{bad.next(clickgen.KindOversized)}),
		format: "array", auth: "bearer", want: http.StatusRequestEntityTooLarge, wantErr: []string{"limit is 65536 (MAX_EVENT_BYTES)"}})

	// Allowed origin and its preflight.
	c.call(httpCall{name: "allowed origin", recs: goods(4), format: "array", auth: "bearer", origin: allowedOrigin, want: http.StatusOK})
	c.preflight(allowedOrigin)

	// The same batch twice (a client retry after a lost answer): its good
	// events are stored once; its broken one is dead-lettered per request,
	// under one id.
	dup := append(goods(20), bad.next(clickgen.KindWrongType))
	for i := range 2 {
		c.call(httpCall{name: fmt.Sprintf("duplicate batch, copy %d", i+1), recs: dup, format: "array", auth: "bearer", want: http.StatusOK})
	}

	// Refused requests: nothing of theirs may land anywhere.
	var bigBody []clickgen.Record
	for size := 0; size <= httpMaxBody; {
		r := bad.next(clickgen.KindOversized)
		bigBody = append(bigBody, r)
		size += len(r.Value)
	}
	c.call(httpCall{name: "body over COLLECTOR_MAX_BODY_BYTES", recs: interleave(goods(3), bigBody), format: "array", auth: "bearer",
		want: http.StatusRequestEntityTooLarge, wantErr: []string{"COLLECTOR_MAX_BODY_BYTES", strconv.Itoa(httpMaxBody)}})
	c.call(httpCall{name: "gzip bomb", recs: goods(3), format: "padded", gzip: true, auth: "bearer",
		want: http.StatusRequestEntityTooLarge, wantErr: []string{"COLLECTOR_MAX_DECOMPRESSED_BYTES"}})
	c.call(httpCall{name: "too many events", recs: goods(httpMaxEvents + 1), format: "array", auth: "bearer",
		want: http.StatusRequestEntityTooLarge, wantErr: []string{"COLLECTOR_MAX_EVENTS", strconv.Itoa(httpMaxEvents)}})
	c.call(httpCall{name: "no write key", recs: goods(2), format: "array", auth: "none", want: http.StatusUnauthorized})
	c.call(httpCall{name: "unknown write key", recs: append(goods(2), bad.next(clickgen.KindMissingField)), format: "array", auth: "bearer",
		key: "wk_web_" + randHex(16), want: http.StatusUnauthorized})
	c.call(httpCall{name: "unknown write key in the query", recs: goods(2), format: "ndjson", auth: "query",
		key: "wk_web_" + randHex(16), want: http.StatusUnauthorized})
	c.call(httpCall{name: "disallowed origin", recs: goods(2), format: "array", auth: "bearer", origin: "http://evil.example", want: http.StatusForbidden})
	c.call(httpCall{name: "malformed body", recs: goods(3), format: "unclosed", auth: "bearer", want: http.StatusBadRequest})
	c.call(httpCall{name: "unsupported encoding", recs: goods(2), format: "array", auth: "bearer", encoding: "br", want: http.StatusUnsupportedMediaType})
	c.call(httpCall{name: "GET", method: http.MethodGet, auth: "bearer", want: http.StatusMethodNotAllowed})
	// The rate-limited key: a burst's worth passes, the next batch is refused.
	c.call(httpCall{name: "rate-limited key within its burst", recs: goods(limitedBurst * 3 / 5), format: "array", auth: "bearer",
		key: limitedKey, source: "limited", want: http.StatusOK})
	ans := c.call(httpCall{name: "rate-limited key beyond its burst", recs: goods(limitedBurst * 3 / 5), format: "array", auth: "bearer",
		key: limitedKey, want: http.StatusTooManyRequests})
	if ra, err := strconv.Atoi(ans.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("429 without a usable Retry-After (%q): want whole seconds >= 1", ans.header.Get("Retry-After"))
	}
	mixDone := time.Now()

	// kill -9 with requests in flight.
	killWhileSending(ctx, t, sl, c, killKey, seed+2)
	killDone := time.Now()

	// What landed in the warehouse: wait until every event answered
	// accepted is in fact_events and every second copy in
	// fact_events_duplicates, then a little longer (an extra row would show
	// up now).
	led := c.led
	const stored = "SELECT event_id, source, client_ip, collector_source FROM fact_events"
	const duplicates = "SELECT event_id FROM fact_events_duplicates"
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		have, err := queryIDs(ctx, sl, stored)
		if err != nil || !allIn(led.once, have) {
			continue
		}
		if haveDups, err := queryIDs(ctx, sl, duplicates); err == nil && allIn(led.dups, haveDups) {
			break
		}
	}
	time.Sleep(2 * time.Second)
	_, rows, err := sl.Query(ctx, stored)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var wrong []string
	for _, r := range rows {
		id, _ := r[0].(string)
		src, _ := r[1].(string)
		ip, _ := r[2].(string)
		cs, _ := r[3].(string)
		seen[id]++
		want := led.once[id]
		if want == "" {
			want = led.maybe[id]
		}
		if src != "http" || ip != "127.0.0.0" || (want != "" && cs != want) {
			wrong = append(wrong, fmt.Sprintf("%s: source %q client_ip %q collector_source %q", id, src, ip, cs))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d rows not marked as the collector's (want source http, client_ip 127.0.0.0, the key's source), e.g. %v", len(wrong), first(wrong))
	}
	var missing, dups, extra, refusedStored []string
	for id := range led.once {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range seen {
		if n > 1 {
			dups = append(dups, id)
		}
		switch {
		case led.refused[id]:
			refusedStored = append(refusedStored, id)
		case led.once[id] == "" && led.maybe[id] == "":
			extra = append(extra, id)
		}
	}
	if len(missing)+len(dups)+len(extra)+len(refusedStored) > 0 {
		t.Errorf("fact_events: %d rows; %d accepted events missing (e.g. %v), %d stored more than once (e.g. %v), %d of refused requests (e.g. %v), %d unexpected (e.g. %v)",
			len(rows), len(missing), first(missing), len(dups), first(dups), len(refusedStored), first(refusedStored), len(extra), first(extra))
	}
	maybeStored := 0
	for id := range led.maybe {
		if seen[id] > 0 {
			maybeStored++
		}
	}
	inDups, err := queryIDs(ctx, sl, duplicates)
	if err != nil {
		t.Fatal(err)
	}
	for id := range led.dups {
		if !inDups[id] {
			t.Errorf("event %s was accepted twice but its second copy is not in fact_events_duplicates", id)
		}
	}

	// Dead letters of this run.
	reg, err := avroserde.New(avroserde.Config{URL: eps.SchemaRegistryURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dlqCodec, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	clickCodec, err := reg.Codec(ctx, avroserde.SubjectFor(sl.Topics.Events), protoavro.ClickEvent)
	if err != nil {
		t.Fatal(err)
	}
	wantDead := 0
	for _, d := range led.dead {
		wantDead += d.copies
	}
	got := consumeDeadLetters(ctx, t, eps.KafkaBrokers, dlqFrom, dlqCodec, clickCodec, prefix, wantDead)
	checkHTTPDeadLetters(t, sl, led, got)
	// Every event the collector produced or dead-lettered balances in the reconciliation,
	// across the kill -9 (its input, requests, is not durable: its hop is its outcomes).
	reconciled := time.Now()
	assertReconciled(ctx, t, sl, reconcile.SourceClickstream, reconcile.Window{From: began, To: reconciled})
	t.Logf("%d requests: %d events stored once, %d dead letters; kill -9 phase: %d of %d events of failed requests stored; took: build %s, start %s, requests %s, kill phase %s, checks %s, reconciliation %s",
		c.requests, len(led.once), wantDead, maybeStored, len(led.maybe), built.Sub(began).Round(time.Second), started.Sub(built).Round(time.Second),
		mixDone.Sub(started).Round(time.Second), killDone.Sub(mixDone).Round(time.Second), reconciled.Sub(killDone).Round(time.Second), time.Since(reconciled).Round(time.Second))
}

// checkHTTPDeadLetters compares the dead letters of the run with the ledger.
func checkHTTPDeadLetters(t *testing.T, sl *slice.Slice, led *ledger, got map[string][]events.DeadLetter) {
	t.Helper()
	for key, dls := range got {
		want, ok := led.dead[key]
		if !ok {
			t.Errorf("unexpected dead letter (stage %s, reasons %v) for %.80q", dls[0].Stage, reasons(dls[0]), key)
			continue
		}
		if len(dls) != want.copies {
			t.Errorf("%d dead letters for %.80q, want %d (one per accepted request that carried it)", len(dls), key, want.copies)
		}
		for _, dl := range dls {
			if dl.Stage != want.exp.Stage || !hasReason(dl, want.exp.Code, want.exp.RuleID) {
				t.Errorf("dead letter for %.80q (%s): stage %s reasons %v; want stage %s code %s rule %q",
					key, want.exp.Kind, dl.Stage, reasons(dl), want.exp.Stage, want.exp.Code, want.exp.RuleID)
			}
			if dl.Stage != clickgen.StageIngest {
				continue
			}
			sum := sha256.Sum256(dl.OriginalValue)
			id, ok := strings.CutPrefix(dl.DeadLetterID, "ingest-clickstream-http-")
			switch {
			case "raw:"+string(dl.OriginalValue) != key:
				t.Errorf("dead letter for %.80q holds other bytes: %.80q", key, dl.OriginalValue)
			case dl.SourceTopic != sl.Topics.Raw || dl.SourcePartition != -1 || dl.SourceOffset != -1:
				t.Errorf("dead letter for %.80q: source %s/%d/%d, want %s/-1/-1", key, dl.SourceTopic, dl.SourcePartition, dl.SourceOffset, sl.Topics.Raw)
			case !ok || len(id) < 12 || !strings.HasPrefix(hex.EncodeToString(sum[:]), id):
				t.Errorf("dead letter for %.80q: id %q, want ingest-clickstream-http-<hex of the bytes' sha256>", key, dl.DeadLetterID)
			case dl.DeadLetterID != dls[0].DeadLetterID:
				t.Errorf("dead letters for the same bytes %.80q have ids %q and %q", key, dls[0].DeadLetterID, dl.DeadLetterID)
			case header(dl, "ecom-origin") != "http" || header(dl, "ecom-collector-source") != want.source:
				t.Errorf("dead letter for %.80q: headers ecom-origin %q ecom-collector-source %q, want http and %s",
					key, header(dl, "ecom-origin"), header(dl, "ecom-collector-source"), want.source)
			}
		}
	}
	for key, want := range led.dead {
		if _, ok := got[key]; !ok {
			t.Errorf("event answered rejected (%s, want %s %s %s) was not dead-lettered: %.80q", want.exp.Kind, want.exp.Stage, want.exp.Code, want.exp.RuleID, key)
		}
	}
}

// queryIDs is the set of the first column of query's rows.
func queryIDs(ctx context.Context, sl *slice.Slice, query string) (map[string]bool, error) {
	_, rows, err := sl.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		id, _ := r[0].(string)
		ids[id] = true
	}
	return ids, nil
}

// allIn reports whether every key of want is in have.
func allIn[V any](want map[string]V, have map[string]bool) bool {
	for id := range want {
		if !have[id] {
			return false
		}
	}
	return true
}

func header(dl events.DeadLetter, name string) string {
	for _, h := range dl.OriginalHeaders {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// killRounds bounds the kill -9 rounds: a round in which no request was cut
// off in flight proved nothing and is repeated.
const killRounds = 4

// killTally is what the kill -9 phase's requests got.
type killTally struct {
	okBefore, okAfter int // answered 200 with every event accepted, before and after the restart
	cut               int // broken in flight: the connection died after the request went out
	refused           int // connection refused (nothing listened)
	busy              int // answered 429 or 503 (backpressure, the rate limit)
	other             int // any other answer
}

// killWhileSending kills ingest-clickstream with kill -9 while eight clients
// send batches continuously with key (no rate limit), restarts it, and sends
// on for a while; a round in which no request was cut off in flight is
// repeated, up to killRounds. Events of requests answered 2xx must be stored
// once, those of failed requests at most once (a request whose events were
// acknowledged by Kafka may have been killed before it answered).
func killWhileSending(ctx context.Context, t *testing.T, sl *slice.Slice, c *collectorClient, key string, seed uint64) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var tally killTally
	restarted := false
	cl := &http.Client{Timeout: 5 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			gen := clickgen.New(clickgen.WithSeed(seed+uint64(w)*7919), clickgen.WithBrokenFraction(0))
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				recs := make([]clickgen.Record, 1+rng.IntN(20))
				for i := range recs {
					recs[i] = gen.Next()
				}
				status, ans, err := c.post(ctx, cl, httpCall{recs: recs, format: "array", auth: "bearer", key: key})
				ok := err == nil && status == http.StatusOK && ans.Accepted == len(recs)
				mu.Lock()
				for _, r := range recs {
					if ok {
						c.led.once[r.EventID] = "web"
					} else {
						c.led.maybe[r.EventID] = "web"
					}
				}
				switch {
				case ok && restarted:
					tally.okAfter++
				case ok:
					tally.okBefore++
				case err != nil && errors.Is(err, syscall.ECONNREFUSED):
					tally.refused++
				case err != nil:
					tally.cut++ // in flight when the process died
				case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
					tally.busy++
				default:
					tally.other++
				}
				mu.Unlock()
				if !ok {
					time.Sleep(20 * time.Millisecond) // a refused connection fails at once
				}
			}
		})
	}
	finish := func() {
		close(stop)
		wg.Wait()
	}
	snapshot := func() killTally {
		mu.Lock()
		defer mu.Unlock()
		return tally
	}
	for round := 1; ; round++ {
		time.Sleep(1500 * time.Millisecond)
		before := snapshot()
		t.Logf("kill -9 ingest-clickstream with requests in flight (round %d)", round)
		if err := sl.Procs["ingest-clickstream"].Kill(); err != nil {
			finish()
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := sl.StartOne(ctx, "ingest-clickstream"); err != nil {
			finish()
			t.Fatalf("restart: %v", err)
		}
		mu.Lock()
		restarted = true
		mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		after := snapshot()
		if after.cut > before.cut || round == killRounds {
			break
		}
		t.Logf("round %d cut no request off in flight (%+v); again", round, after)
	}
	finish()
	t.Logf("kill -9 phase: %d requests answered 200 before the first restart, %d after it; %d cut off in flight, %d refused a connection, %d answered 429/503, %d answered otherwise",
		tally.okBefore, tally.okAfter, tally.cut, tally.refused, tally.busy, tally.other)
	if tally.okBefore == 0 || tally.okAfter == 0 || tally.cut == 0 {
		t.Errorf("kill -9 phase, up to %d rounds: %d requests answered 200 before the restart, %d after it, %d cut off in flight: want some of each", killRounds, tally.okBefore, tally.okAfter, tally.cut)
	}
	if tally.other > 0 {
		t.Errorf("kill -9 phase: %d answers other than 200, 429 and 503", tally.other)
	}
}

// ledger is what the collector answered, hence what must land where.
type ledger struct {
	once    map[string]string   // valid event answered accepted -> its key's source: once in fact_events
	maybe   map[string]string   // event of a request that failed: at most once
	refused map[string]bool     // events of refused requests: nowhere
	dups    map[string]bool     // valid events accepted twice: once more in fact_events_duplicates
	dead    map[string]deadWant // "raw:"+bytes for the collector's rejections, else the event id
}

type deadWant struct {
	exp    clickgen.Expectation
	source string // the key's source, in the dead letter's headers
	copies int    // accepted requests that carried it
}

func newLedger() *ledger {
	return &ledger{once: map[string]string{}, maybe: map[string]string{}, refused: map[string]bool{}, dups: map[string]bool{}, dead: map[string]deadWant{}}
}

// httpCall is one request to the collector.
type httpCall struct {
	name   string
	recs   []clickgen.Record
	format string // array, spaced (array with blanks between elements), ndjson, envelope, single, padded (a gzip bomb), unclosed (malformed)
	gzip   bool
	// auth is where the write key goes: bearer (Authorization), header
	// (X-Write-Key), query (?write_key=), envelope (the body's write_key) or none.
	auth     string
	key      string // "" = the slice's web key
	source   string // the key's source; "" = web
	origin   string
	encoding string // Content-Encoding other than gzip
	method   string
	want     int      // the status the contract gives
	wantErr  []string // what a refusal's error must name
}

// collectorAnswer is the collector's JSON answer.
type collectorAnswer struct {
	header   http.Header
	Accepted int    `json:"accepted"`
	Rejected int    `json:"rejected"`
	Error    string `json:"error"`
	Events   []struct {
		Index   int             `json:"index"`
		EventID string          `json:"event_id"`
		Status  string          `json:"status"`
		Reasons []verdictReason `json:"reasons"`
	} `json:"events"`
}

type verdictReason struct {
	Code    string `json:"code"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

type collectorClient struct {
	t        *testing.T
	ctx      context.Context // the test's
	url      string
	webKey   string
	http     *http.Client
	led      *ledger
	requests int
}

// call sends one request, checks the answer against the contract and
// records in the ledger what must land where.
func (c *collectorClient) call(hc httpCall) collectorAnswer {
	c.t.Helper()
	c.requests++
	status, ans, err := c.post(c.ctx, c.http, hc)
	if err != nil {
		c.t.Fatalf("%s: %v", hc.name, err)
	}
	if status != hc.want {
		c.t.Errorf("%s: status %d (%s), want %d", hc.name, status, ans.Error, hc.want)
	}
	source := cmp.Or(hc.source, "web")
	if status/100 != 2 {
		for _, w := range hc.wantErr {
			if !strings.Contains(ans.Error, w) {
				c.t.Errorf("%s: error %q does not name %s", hc.name, ans.Error, w)
			}
		}
		if ans.Error == "" && hc.method != http.MethodGet {
			c.t.Errorf("%s: refusal without an error sentence", hc.name)
		}
		for _, r := range hc.recs {
			if r.EventID != "" {
				c.led.refused[r.EventID] = true
			}
		}
		return ans
	}
	if hc.origin != "" && (ans.header.Get("Access-Control-Allow-Origin") != hc.origin || !strings.Contains(strings.Join(ans.header.Values("Vary"), ","), "Origin")) {
		c.t.Errorf("%s: Access-Control-Allow-Origin %q, Vary %q; want %s and Origin", hc.name,
			ans.header.Get("Access-Control-Allow-Origin"), ans.header.Values("Vary"), hc.origin)
	}
	if len(ans.Events) != len(hc.recs) {
		c.t.Errorf("%s: %d verdicts for %d events", hc.name, len(ans.Events), len(hc.recs))
		return ans
	}
	accepted := 0
	for i, r := range hc.recs {
		v := ans.Events[i]
		ingestRejects := !r.Expect.Valid && r.Expect.Stage == clickgen.StageIngest
		wantStatus := map[bool]string{true: "rejected", false: "accepted"}[ingestRejects]
		// A rejected event's id may be left out: the collector does not read
		// the fields of an event it refuses unread (oversized, not JSON).
		idOK := v.EventID == r.EventID || (ingestRejects && v.EventID == "")
		if v.Index != i || v.Status != wantStatus || !idOK {
			c.t.Errorf("%s: event %d (%s, id %q): verdict %+v, want index %d, status %s", hc.name, i, r.Expect.Kind, r.EventID, v, i, wantStatus)
			continue
		}
		switch {
		case ingestRejects:
			if !slices.ContainsFunc(v.Reasons, func(rs verdictReason) bool { return rs.Code == r.Expect.Code }) {
				c.t.Errorf("%s: event %d (%s) rejected with %+v, want code %s", hc.name, i, r.Expect.Kind, v.Reasons, r.Expect.Code)
			}
			d := c.led.dead["raw:"+string(r.Value)]
			d.exp, d.source = r.Expect, source
			d.copies++
			c.led.dead["raw:"+string(r.Value)] = d
		case r.Expect.Valid:
			accepted++
			if _, ok := c.led.once[r.EventID]; ok {
				c.led.dups[r.EventID] = true
			}
			c.led.once[r.EventID] = source
		default: // accepted by the collector, rejected by a rule of the validator
			accepted++
			d := c.led.dead[r.EventID]
			d.exp, d.source = r.Expect, source
			d.copies++
			c.led.dead[r.EventID] = d
		}
	}
	if ans.Accepted != accepted || ans.Rejected != len(hc.recs)-accepted {
		c.t.Errorf("%s: answered %d accepted, %d rejected; want %d and %d", hc.name, ans.Accepted, ans.Rejected, accepted, len(hc.recs)-accepted)
	}
	return ans
}

// preflight checks a CORS preflight for origin.
func (c *collectorClient) preflight(origin string) {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(c.ctx, http.MethodOptions, c.url, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type, x-write-key")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("preflight: %v", err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "x-write-key") {
		c.t.Errorf("preflight: %s, Allow-Origin %q, Allow-Methods %q, Allow-Headers %q; want 204, %s, POST, X-Write-Key",
			resp.Status, h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"), origin)
	}
}

// post builds and sends hc; a transport error is returned, not fatal.
func (c *collectorClient) post(ctx context.Context, cl *http.Client, hc httpCall) (int, collectorAnswer, error) {
	key := cmp.Or(hc.key, c.webKey)
	vals := make([][]byte, len(hc.recs))
	for i, r := range hc.recs {
		vals[i] = r.Value
	}
	ctype := "application/json"
	var body []byte
	switch hc.format {
	case "array":
		body = slices.Concat([]byte("["), bytes.Join(vals, []byte(",")), []byte("]"))
	case "spaced":
		body = slices.Concat([]byte("[\n  "), bytes.Join(vals, []byte(" ,\n\t")), []byte("\n]\n"))
	case "unclosed":
		body = slices.Concat([]byte("["), bytes.Join(vals, []byte(",")), []byte(","))
	case "padded":
		body = slices.Concat([]byte("["), bytes.Repeat([]byte(" "), 5<<20), bytes.Join(vals, []byte(",")), []byte("]"))
	case "ndjson":
		body = append(bytes.Join(vals, []byte("\n")), '\n')
		ctype = "application/x-ndjson"
	case "single":
		body = vals[0]
	case "envelope":
		kb, _ := json.Marshal(key)
		head := `{"events":[`
		if hc.auth == "envelope" {
			head = `{"write_key":` + string(kb) + `,"events":[`
		}
		body = slices.Concat([]byte(head), bytes.Join(vals, []byte(",")), []byte("]}"))
		ctype = "text/plain;charset=UTF-8" // what navigator.sendBeacon sends for a string
	}
	if hc.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = b.Bytes()
	}
	u := c.url
	if hc.auth == "query" {
		u += "?write_key=" + url.QueryEscape(key)
	}
	req, err := http.NewRequestWithContext(ctx, cmp.Or(hc.method, http.MethodPost), u, bytes.NewReader(body))
	if err != nil {
		return 0, collectorAnswer{}, err
	}
	req.Header.Set("Content-Type", ctype)
	switch hc.auth {
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+key)
	case "header":
		req.Header.Set("X-Write-Key", key)
	}
	if hc.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if hc.encoding != "" {
		req.Header.Set("Content-Encoding", hc.encoding)
	}
	if hc.origin != "" {
		req.Header.Set("Origin", hc.origin)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, collectorAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, collectorAnswer{}, err
	}
	ans := collectorAnswer{header: resp.Header}
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &ans); err != nil {
			return 0, ans, fmt.Errorf("%s: answer is not JSON: %.200q", resp.Status, b)
		}
	} else if resp.StatusCode/100 == 2 {
		return 0, ans, fmt.Errorf("%s: answer is not JSON (Content-Type %q): %.200q", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return resp.StatusCode, ans, nil
}

// brokenSource gives broken events of a chosen kind.
type brokenSource struct {
	gens map[string]*clickgen.Generator
}

func newBrokenSource(seed uint64) *brokenSource {
	b := &brokenSource{gens: map[string]*clickgen.Generator{}}
	for i, k := range clickgen.BrokenKinds() {
		b.gens[k] = clickgen.New(clickgen.WithSeed(seed+uint64(i)), clickgen.WithBrokenFraction(1), clickgen.WithBrokenKinds(k))
	}
	return b
}

func (b *brokenSource) next(kind string) clickgen.Record { return b.gens[kind].Next() }

// interleave spreads broken among good: good, broken, good, good, broken, ...
func interleave(good, broken []clickgen.Record) []clickgen.Record {
	out := make([]clickgen.Record, 0, len(good)+len(broken))
	for i := 0; i < len(good) || i < len(broken); i++ {
		if i < len(good) {
			out = append(out, good[i])
		}
		if i < len(broken) {
			out = append(out, broken[i])
		}
	}
	return out
}

// endOffsets are topic's partitions' end offsets now: this run's records come
// after. A topic that does not exist yet (a fresh stack, before any service
// created it) is nil: read it from the start.
func endOffsets(ctx context.Context, t *testing.T, brokers []string, topic string) map[int32]kgo.Offset {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]kgo.Offset{}
	missing := false
	ends.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
			missing = true
		case o.Err != nil:
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		default:
			out[o.Partition] = kgo.NewOffset().At(o.Offset)
		}
	})
	if missing {
		return nil
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b)
}
