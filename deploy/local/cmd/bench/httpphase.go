package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/slice"
)

// The HTTP phase drives ingest-clickstream's collector (POST /v1/events) with
// concurrent keep-alive clients, one run per batch size, and follows the
// events to the warehouse. The bodies are built before a run starts, so the
// generator's CPU is not in the figures; a run's events have fresh ids, so the
// warehouse counts each once.

// httpRun is one run of the HTTP phase: this many events in batches of this size.
type httpRun struct{ batch, events int }

// parseHTTPRuns reads -http-runs, "batch:events,batch:events".
func parseHTTPRuns(s string) ([]httpRun, error) {
	var out []httpRun
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b, e, ok := strings.Cut(part, ":")
		batch, err1 := strconv.Atoi(b)
		events, err2 := strconv.Atoi(e)
		if !ok || err1 != nil || err2 != nil || batch < 1 || events < batch {
			return nil, fmt.Errorf("-http-runs %q: want batch:events pairs such as 1:20000,50:200000 (batch at least 1, events at least batch)", s)
		}
		out = append(out, httpRun{batch: batch, events: events})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-http-runs %q: no run", s)
	}
	return out, nil
}

// httpRequest is one prepared POST: a JSON array of raw events, and what the
// collector must do with them.
type httpRequest struct {
	body   []byte
	events int
	accept int // events the collector must accept: valid ones and those only the validator rejects
	valid  int // events that must reach the warehouse
}

// httpBrokenKinds are the broken kinds the HTTP phase sends: all but those
// that refuse the whole request instead of the one event: malformed_json
// cannot sit inside a JSON array (400), and an event over MAX_EVENT_BYTES
// refuses its request (413).
func httpBrokenKinds() []string {
	return slices.DeleteFunc(clickgen.BrokenKinds(), func(k string) bool {
		return k == clickgen.KindMalformedJSON || k == clickgen.KindOversized
	})
}

// buildRequests prepares run.events events from gen as JSON arrays of
// run.batch events (the last one shorter when events is not a multiple).
func buildRequests(gen *clickgen.Generator, run httpRun) []httpRequest {
	out := make([]httpRequest, 0, (run.events+run.batch-1)/run.batch)
	var buf bytes.Buffer
	for left := run.events; left > 0; {
		n := min(run.batch, left)
		left -= n
		buf.Reset()
		buf.WriteByte('[')
		r := httpRequest{events: n}
		for i := range n {
			rec := gen.Next()
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(rec.Value)
			if rec.Expect.Valid {
				r.valid++
			}
			if rec.Expect.Valid || rec.Expect.Stage != clickgen.StageIngest {
				r.accept++
			}
		}
		buf.WriteByte(']')
		r.body = bytes.Clone(buf.Bytes())
		out = append(out, r)
	}
	return out
}

// driveResult is what the clients saw.
type driveResult struct {
	ok         int             // requests answered 2xx
	events     int             // events in them
	accepted   int             // events answered accepted
	valid      int             // valid events in them: what the warehouse must receive
	mismatched int             // 2xx answers whose accepted count is not what their events call for
	retried    map[int]int     // 429 and 503 answers by status (the request is sent again)
	latencies  []time.Duration // answer: of the attempt answered 2xx, request written to response read
	perceived  []time.Duration // client-perceived: first attempt to the 2xx read, 429/503 waits and resends included
	start, end time.Time
}

// maxRetryWait caps a Retry-After wait, so a long hint does not stall a run.
const maxRetryWait = 2 * time.Second

// drive sends reqs to url with key over clients concurrent connections, each
// request until it is answered 2xx: 429 and 503 are waited out (Retry-After)
// and sent again, like a well-behaved client. Any other answer, or a request
// failing on the network three times, ends the run with an error: the bench's
// requests are well-formed and the collector runs on this machine.
func drive(ctx context.Context, client *http.Client, url, key string, reqs []httpRequest, clients int) (driveResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	parts := make([]driveResult, clients)
	var wg sync.WaitGroup
	res := driveResult{start: time.Now()}
	for c := range clients {
		wg.Go(func() {
			p := &parts[c]
			p.retried = map[int]int{}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				if err := sendOne(ctx, client, url, key, reqs[i], p); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	res.end = time.Now()
	res.retried = map[int]int{}
	for _, p := range parts {
		res.ok += p.ok
		res.events += p.events
		res.accepted += p.accepted
		res.valid += p.valid
		res.mismatched += p.mismatched
		res.latencies = append(res.latencies, p.latencies...)
		res.perceived = append(res.perceived, p.perceived...)
		for s, n := range p.retried {
			res.retried[s] += n
		}
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	return res, ctx.Err()
}

// sendOne posts one request until it is answered 2xx and adds the answer to
// p: its latency as the answer's (the last attempt) and as the client
// perceives it (from the first attempt, waits for 429/503 included).
func sendOne(ctx context.Context, client *http.Client, url, key string, r httpRequest, p *driveResult) error {
	netErrs := 0
	first := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if netErrs++; netErrs >= 3 {
				return fmt.Errorf("POST %s: %w (three times in a row)", url, err)
			}
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if err != nil {
			if netErrs++; netErrs >= 3 {
				return fmt.Errorf("POST %s: reading the answer: %w (three times in a row)", url, err)
			}
			continue
		}
		netErrs = 0
		switch {
		case resp.StatusCode/100 == 2:
			var ans struct {
				Accepted int `json:"accepted"`
				Rejected int `json:"rejected"`
			}
			if err := json.Unmarshal(body, &ans); err != nil {
				return fmt.Errorf("POST %s: %s with a body that is not the collector's answer: %.200q", url, resp.Status, body)
			}
			p.ok++
			p.events += r.events
			p.accepted += ans.Accepted
			p.valid += r.valid
			if ans.Accepted != r.accept {
				p.mismatched++
			}
			p.latencies = append(p.latencies, took)
			p.perceived = append(p.perceived, time.Since(first))
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			p.retried[resp.StatusCode]++
			select {
			case <-time.After(retryWait(resp.Header.Get("Retry-After"))):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return fmt.Errorf("POST %s: %s: %.300s", url, resp.Status, body)
		}
	}
}

// retryWait is a Retry-After header's wait (delta-seconds), at most
// maxRetryWait; without a usable header, 100 ms.
func retryWait(h string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || s < 0 {
		return 100 * time.Millisecond
	}
	return min(time.Duration(s)*time.Second, maxRetryWait)
}

// percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted values.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*q)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// knowsCollector reports whether the ingest-clickstream binary at path has
// the collector: its configuration's variable names are in the binary (struct
// tags), so one that never reads COLLECTOR_ADDR lacks the name. Asking the
// process instead cannot tell "no collector" from "a collector that does not
// answer", which must fail the bench rather than skip the phase.
func knowsCollector(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return bytes.Contains(b, []byte("COLLECTOR_ADDR")), nil
}

// collectorAnswers reports whether something answers HTTP on addr's
// /v1/events within wait. A revision without the collector leaves
// COLLECTOR_ADDR unread, so nothing listens there.
func collectorAnswers(ctx context.Context, addr string, wait time.Duration) bool {
	if addr == "" {
		return false
	}
	deadline := time.Now().Add(wait)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, "http://"+addr+"/v1/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return true
		}
		var op *net.OpError
		if !errors.As(err, &op) || time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpPhase runs the HTTP phase: every -http-runs run, its figures and CPU.
func httpPhase(ctx context.Context, sl *slice.Slice, o options, procs watchedSet) ([]figure, error) {
	runs, err := parseHTTPRuns(o.httpRuns)
	if err != nil {
		return nil, err
	}
	bin := sl.Procs["ingest-clickstream"].Bin
	has, err := knowsCollector(bin)
	if err != nil {
		return nil, err
	}
	if !has { // a revision before the collector (-compare's base, say)
		fmt.Printf("phase 3, HTTP collector: skipped, %s has no collector (it does not read COLLECTOR_ADDR)\n\n", bin)
		return nil, nil
	}
	if !collectorAnswers(ctx, sl.CollectorAddr, 5*time.Second) {
		return nil, fmt.Errorf("the collector does not answer on COLLECTOR_ADDR %s; log: %s", sl.CollectorAddr, sl.Procs["ingest-clickstream"].LogPath)
	}
	largest := 0
	for i, r := range runs {
		if r.batch > runs[largest].batch {
			largest = i
		}
	}
	fmt.Printf("phase 3, HTTP collector: %d keep-alive clients POST JSON arrays to %s; broken fraction %g (every broken kind but malformed_json and oversized)\n",
		o.httpClients, sl.CollectorAddr, o.broken)
	tr := &http.Transport{MaxIdleConns: o.httpClients, MaxIdleConnsPerHost: o.httpClients, MaxConnsPerHost: o.httpClients,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "http://" + sl.CollectorAddr + "/v1/events"
	gen := clickgen.New(clickgen.WithBrokenFraction(o.broken), clickgen.WithBrokenKinds(httpBrokenKinds()...))
	var figs []figure
	for i, run := range runs {
		reqs := buildRequests(gen, run)
		f, err := httpOne(ctx, sl, client, url, run, reqs, o, procs, i == largest)
		if err != nil {
			return nil, fmt.Errorf("HTTP phase, batch %d: %w", run.batch, err)
		}
		figs = append(figs, f...)
	}
	fmt.Println()
	return figs, nil
}

// httpOne is one run: send, wait until the warehouse holds every valid event
// accepted, print and return the figures.
func httpOne(ctx context.Context, sl *slice.Slice, client *http.Client, url string, run httpRun, reqs []httpRequest, o options, procs watchedSet, profiled bool) ([]figure, error) {
	const count = "SELECT count(*) FROM fact_events WHERE source = 'http'"
	already, err := sl.QueryInt(ctx, count)
	if err != nil {
		return nil, err
	}
	fmt.Printf("  batch %d: %d events in %d requests\n", run.batch, run.events, len(reqs))
	snap0, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	if profiled && o.profileDir != "" && o.profPhase == 3 {
		go profile(sl, o.profileDir)
	}
	res, err := drive(ctx, client, url, sl.WriteKey, reqs, o.httpClients)
	if err != nil {
		return nil, err
	}
	sendWall := res.end.Sub(res.start).Seconds()
	// Until the warehouse holds them all; a run that stops growing for 30 s failed.
	var n int64
	grew := time.Now()
	for {
		m, err := sl.QueryInt(ctx, count)
		if err != nil {
			return nil, err
		}
		if m > n {
			n, grew = m, time.Now()
		}
		if n-already >= int64(res.valid) {
			break
		}
		if time.Since(grew) > 30*time.Second {
			return nil, fmt.Errorf("the warehouse holds %d of the %d valid events accepted, and no more for 30 s", n-already, res.valid)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	snap1, err := readSnapshot(procRoot)
	if err != nil {
		return nil, err
	}
	_, rows, err := sl.Query(ctx, "SELECT CAST(epoch_us(max(loaded_at)) AS BIGINT) FROM fact_events WHERE source = 'http'")
	if err != nil {
		return nil, err
	}
	last, err := lastLoad(rows)
	if err != nil {
		return nil, err
	}
	e2e := last.Sub(res.start).Seconds()
	n -= already

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	lat, seen := slices.Clone(res.latencies), slices.Clone(res.perceived)
	slices.Sort(lat)
	slices.Sort(seen)
	p50, p99, pmax := ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1))
	c50, c99, cmax := ms(percentile(seen, 0.50)), ms(percentile(seen, 0.99)), ms(percentile(seen, 1))
	reqRate, accRate := float64(res.ok)/sendWall, float64(res.accepted)/sendWall
	fmt.Printf("    sent in %.1f s: %.0f requests/s, %.0f events/s accepted (2xx); answer p50 %.1f ms, p99 %.1f ms, max %.1f ms (the 2xx attempt)\n",
		sendWall, reqRate, accRate, p50, p99, pmax)
	fmt.Printf("    client-perceived p50 %.1f ms, p99 %.1f ms, max %.1f ms (first attempt to the 2xx, 429/503 waits and resends included)\n", c50, c99, cmax)
	if len(res.retried) > 0 || res.mismatched > 0 {
		fmt.Printf("    answered 429 %d times and 503 %d times (waited out and sent again); %d answers accepted another number of events than expected\n",
			res.retried[http.StatusTooManyRequests], res.retried[http.StatusServiceUnavailable], res.mismatched)
	}
	fmt.Printf("    end to end: %d events into the warehouse in %.1f s = %.0f events/s (first request to the last row's load)\n", n, e2e, float64(n)/e2e)
	c := measure(snap0, snap1, procs.list, numCPU(), func(pids []int) int64 { return rssKB(procRoot, pids) })
	c.print(os.Stdout, fmt.Sprintf("HTTP batch %d, first request to the last row counted", run.batch))
	pre := fmt.Sprintf("http b%d ", run.batch)
	figs := []figure{
		{Name: pre + "requests/s", Unit: "1/s", Value: reqRate},
		{Name: pre + "accepted", Unit: "events/s", Value: accRate},
		{Name: pre + "end to end", Unit: "events/s", Value: float64(n) / e2e},
		{Name: pre + "response p50", Unit: "ms", Value: p50, Lower: true},
		{Name: pre + "response p99", Unit: "ms", Value: p99, Lower: true},
		{Name: pre + "client p50", Unit: "ms", Value: c50, Lower: true},
		{Name: pre + "client p99", Unit: "ms", Value: c99, Lower: true},
	}
	return append(figs, c.figures(pre)...), nil
}

// lastLoad reads the time of the last HTTP row's load from the answer to
// SELECT CAST(epoch_us(max(loaded_at)) AS BIGINT): one row, one number; an
// empty table gives NULL, which is an error here (the run's rows were counted
// before, so there must be one).
func lastLoad(rows [][]any) (time.Time, error) {
	if len(rows) != 1 || len(rows[0]) != 1 {
		return time.Time{}, fmt.Errorf("the last HTTP load time: %d rows, want 1 with 1 value", len(rows))
	}
	switch v := rows[0][0].(type) {
	case float64:
		return time.UnixMicro(int64(v)), nil
	case int64:
		return time.UnixMicro(v), nil
	case json.Number:
		us, err := v.Int64()
		if err != nil {
			return time.Time{}, fmt.Errorf("the last HTTP load time %q: %w", v, err)
		}
		return time.UnixMicro(us), nil
	case nil:
		return time.Time{}, errors.New("the last HTTP load time is NULL: fact_events holds no row with source = 'http'")
	default:
		return time.Time{}, fmt.Errorf("the last HTTP load time is %T %v, want a number of microseconds", v, v)
	}
}
