// Package health is dlq-handler's pipeline health page: a fixed set of
// PromQL queries against the platform's Prometheus (PROMETHEUS_URL) rated
// into a green/amber/red status per service and overall, each with the
// reason, beside throughput per source, end-to-end latency, the DQ score
// per entity, the warehouse's cost today, and the dead letters waiting,
// which this service reads from its own store.
//
// A Prometheus that is not configured or does not answer rates every
// service unknown, never green. The report is served as JSON (Handler,
// GET /v1/health); the console renders it as the page (GET /health).
package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// WaitingFunc reads the dead letters waiting from the store.
type WaitingFunc func(ctx context.Context) (DeadLetters, error)

// querier is the Prometheus client as the Checker uses it (*Client).
type querier interface {
	Query(ctx context.Context, q string, at time.Time) ([]Sample, error)
}

// ConsoleDeadLetters is the console's list of the dead letters waiting.
const ConsoleDeadLetters = "/console/dead-letters?state=new,failed_again"

// Checker builds health reports.
type Checker struct {
	cfg     Config
	q       queries
	prom    querier // nil: PROMETHEUS_URL not set
	hc      *http.Client
	waiting WaitingFunc
	log     *slog.Logger
	now     func() time.Time

	turn     chan struct{} // one report at a time; others wait for it, or give up
	mu       sync.Mutex    // guards last and lastTime
	last     Report
	lastTime time.Time
	lastErr  string // the status queries' last error, logged when it changes
}

// Option changes a Checker.
type Option interface{ apply(*Checker) }

type optionFunc func(*Checker)

func (f optionFunc) apply(c *Checker) { f(c) }

// WithHTTPClient sets the client Prometheus is queried with.
func WithHTTPClient(h *http.Client) Option {
	return optionFunc(func(c *Checker) { c.hc = h })
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return optionFunc(func(c *Checker) { c.now = now }) }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *Checker) { c.log = l }) }

// New returns a Checker of a valid cfg; waiting may be nil (no store: the
// panel says so).
func New(cfg Config, waiting WaitingFunc, opts ...Option) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, q: buildQueries(cfg), waiting: waiting, log: slog.New(slog.DiscardHandler), now: time.Now,
		turn: make(chan struct{}, 1)}
	for _, o := range opts {
		o.apply(c)
	}
	if cfg.PrometheusURL != "" {
		cl, err := NewClient(cfg.PrometheusURL, cfg.Timeout, c.hc)
		if err != nil {
			return nil, err
		}
		c.prom = cl
	}
	return c, nil
}

// Report returns the current report, reused for HEALTH_CACHE. One report is
// built at a time; a caller that gives up waiting for it (its ctx ends) gets
// the last one, so a hung dependency never queues the page's requests.
func (c *Checker) Report(ctx context.Context) Report {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last
	}
	defer func() { <-c.turn }()
	c.mu.Lock()
	last, lastTime := c.last, c.lastTime
	c.mu.Unlock()
	if !lastTime.IsZero() && c.now().Sub(lastTime) < c.cfg.CacheFor {
		return last
	}
	r := c.build(ctx)
	if ctx.Err() == nil { // a report cut short by its caller is not kept
		c.mu.Lock()
		c.last, c.lastTime = r, c.now()
		c.mu.Unlock()
	}
	return r
}

func (c *Checker) build(ctx context.Context) Report {
	now := c.now().UTC()
	r := Report{GeneratedAt: now, Services: []ServiceHealth{}, Throughput: []Throughput{}, DQ: []DQScore{},
		Links:      Links{DeadLetters: ConsoleDeadLetters, Runbooks: strings.TrimSuffix(RunbookBase, "/")},
		Thresholds: Thresholds{LagAmber: c.cfg.LagAmber, ErrorRateAmber: c.cfg.ErrorAmber}}
	if c.cfg.JaegerURL != "" {
		r.Links.Traces = strings.TrimSuffix(c.cfg.JaegerURL, "/") + "/search"
	}
	done := make(chan DeadLetters, 1)
	go func() { done <- c.deadLetters(ctx) }()
	c.rate(ctx, now, &r)
	r.DeadLetters = <-done
	return r
}

// rate fills the statuses and, when Prometheus answered them, the panels.
func (c *Checker) rate(ctx context.Context, now time.Time, r *Report) {
	if c.prom == nil {
		r.Monitoring = MonitoringNotConfigured
		r.Services = unknown(c.cfg, "monitoring not configured (PROMETHEUS_URL is empty)")
		r.Overall = overall(r.Services)
		return
	}
	f, err := c.statusFigures(ctx, now)
	if err != nil && ctx.Err() != nil {
		// The caller hung up: not Prometheus's failure, nothing to log.
		r.Monitoring, r.MonitoringError = MonitoringUnreachable, ctx.Err().Error()
		r.Services = unknown(c.cfg, "the request ended before monitoring answered")
		r.Overall = overall(r.Services)
		return
	}
	if err != nil {
		r.Monitoring, r.MonitoringError = MonitoringUnreachable, err.Error()
		reason := "monitoring unreachable"
		if !IsUnreachable(err) {
			reason = "monitoring query failed"
		}
		if msg := err.Error(); msg != c.lastErr {
			c.log.WarnContext(ctx, "health: the status queries failed; the page rates every service unknown", "err", err)
			c.lastErr = msg
		}
		r.Services = unknown(c.cfg, reason)
		r.Overall = overall(r.Services)
		return
	}
	if c.lastErr != "" {
		c.log.InfoContext(ctx, "health: Prometheus answers again")
		c.lastErr = ""
	}
	r.Monitoring = MonitoringOK
	r.Services = rate(c.cfg, f)
	r.Overall = overall(r.Services)
	c.panels(ctx, now, r)
}

// statusFigures runs the status queries in parallel; any failure fails
// them all (a half-rated service would look better than it is).
func (c *Checker) statusFigures(ctx context.Context, at time.Time) (figures, error) {
	f := figures{targets: map[string]int{}, targetsUp: map[string]int{}, downInstances: map[string][]string{},
		ready: map[string]float64{}, failing: map[string][]string{}, lag: map[string]float64{}, errorRate: map[string]float64{}}
	var up, ready, checks, lag, errs []Sample
	g, gctx := errgroup.WithContext(ctx)
	for _, q := range []struct {
		query string
		out   *[]Sample
	}{{c.q.Up, &up}, {c.q.Ready, &ready}, {c.q.ReadyChecks, &checks}, {c.q.Lag, &lag}, {c.q.ErrorRate, &errs}} {
		g.Go(func() error {
			s, err := c.prom.Query(gctx, q.query, at)
			*q.out = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return f, err
	}
	for _, s := range up {
		job := s.Labels["job"]
		f.targets[job]++
		if s.Value == 1 {
			f.targetsUp[job]++
		} else {
			f.downInstances[job] = append(f.downInstances[job], s.Labels["instance"])
		}
	}
	for _, s := range ready {
		f.ready[s.Labels["job"]] = s.Value
	}
	for _, s := range checks {
		f.failing[s.Labels["job"]] = append(f.failing[s.Labels["job"]], s.Labels["check"])
	}
	for job := range f.failing {
		slices.Sort(f.failing[job])
	}
	for job := range f.downInstances {
		slices.Sort(f.downInstances[job])
	}
	for _, s := range lag {
		f.lag[s.Labels["job"]] = s.Value
	}
	for _, s := range errs {
		f.errorRate[s.Labels["job"]] = s.Value
	}
	return f, nil
}

// panels fills throughput, latency, DQ and cost; a failed query leaves its
// panel without data and is listed in r.Errors.
func (c *Checker) panels(ctx context.Context, at time.Time, r *Report) {
	var mu sync.Mutex
	fail := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		r.Errors = append(r.Errors, what+": "+err.Error())
	}
	scalar := func(what, q string, out **float64) func() error {
		return func() error {
			s, err := c.prom.Query(ctx, q, at)
			switch {
			case err != nil:
				fail(what, err)
			case len(s) > 0:
				v := s[0].Value
				*out = &v
			}
			return nil
		}
	}
	var g errgroup.Group
	r.Throughput = make([]Throughput, len(c.q.Throughput))
	for i, t := range c.q.Throughput {
		r.Throughput[i].Source = t.Source
		g.Go(scalar("throughput "+t.Source, t.Query, &r.Throughput[i].PerMinute))
	}
	g.Go(scalar("latency p50", c.q.P50, &r.Latency.P50))
	g.Go(scalar("latency p99", c.q.P99, &r.Latency.P99))
	g.Go(scalar("cost today", c.q.Cost, &r.CostTodayUSD))
	var pass, all []Sample
	var dqErr error
	g.Go(func() error {
		var err1, err2 error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); pass, err1 = c.prom.Query(ctx, c.q.DQPass, at) }()
		go func() { defer wg.Done(); all, err2 = c.prom.Query(ctx, c.q.DQAll, at) }()
		wg.Wait()
		dqErr = errors.Join(err1, err2)
		return nil
	})
	_ = g.Wait()
	if dqErr != nil {
		fail("dq score", dqErr)
		return
	}
	passed := map[string]float64{}
	for _, s := range pass {
		passed[s.Labels["entity"]] = s.Value
	}
	for _, s := range all {
		if s.Value <= 0 {
			continue
		}
		e := s.Labels["entity"]
		r.DQ = append(r.DQ, DQScore{Entity: e, Score: passed[e] / s.Value, Evaluated: s.Value, Window: window(c.cfg.DQWindow)})
	}
	slices.SortFunc(r.DQ, func(a, b DQScore) int { return strings.Compare(a.Entity, b.Entity) })
	slices.Sort(r.Errors)
}

func (c *Checker) deadLetters(ctx context.Context) DeadLetters {
	d := DeadLetters{ByStage: []StageCount{}, Link: ConsoleDeadLetters, States: WaitingStates}
	if c.waiting == nil {
		d.Error = "the store is not connected"
		return d
	}
	// The store's own deadline: a hung database must not hold the page.
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	got, err := c.waiting(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "health: reading the dead letters waiting failed", "err", err)
		d.Error = "the store did not answer; see the service log"
		return d
	}
	d.Waiting, d.ByStage, d.Oldest = got.Waiting, got.ByStage, got.Oldest
	if d.ByStage == nil {
		d.ByStage = []StageCount{}
	}
	return d
}

// Handler serves the report as JSON (GET /v1/health); mount it behind the
// viewer role.
func (c *Checker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		rep := c.Report(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
