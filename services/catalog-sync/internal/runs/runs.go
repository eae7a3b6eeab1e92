// Package runs starts snapshot runs (on the cron schedule, on POST /v1/sync,
// and at start to resume an interrupted run), one at a time, and keeps the
// history of the last runs in memory for GET /v1/runs.
package runs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// Config is the run manager's configuration.
type Config struct {
	Schedule   string        `env:"CATALOG_SNAPSHOT_SCHEDULE" default:"0 * * * *" usage:"cron expression (UTC; 5 fields or @hourly, @daily, @every 30m) of scheduled snapshot runs; empty or off = no schedule (Airflow starts runs with POST /v1/sync)"`
	History    int           `env:"CATALOG_RUN_HISTORY" default:"100" usage:"runs kept (in memory) for GET /v1/runs; older ones are dropped, and a restart forgets them"`
	StaleAfter time.Duration `env:"CATALOG_FAILED_RUN_STALE_AFTER" default:"3h" usage:"/readyz fails when the last run failed and none has succeeded for this long"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	_, err := ParseSchedule(c.Schedule)
	return config.First(err,
		config.Between("CATALOG_RUN_HISTORY", c.History, 1, 100_000),
		config.Positive("CATALOG_FAILED_RUN_STALE_AFTER", c.StaleAfter))
}

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerAPI      = "api"
	TriggerResume   = "resume" // an interrupted run, continued at start
)

// Run outcomes.
const (
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
	Cancelled = "cancelled" // the service stopped under it; the next start resumes it
)

// Run is one snapshot run as GET /v1/runs shows it. Counters are this
// process's: a resumed run counts from where it resumed.
type Run struct {
	ID       string     `json:"id"`
	Trigger  string     `json:"trigger"`
	Tables   []string   `json:"tables"`
	Full     bool       `json:"full"`
	Resumed  bool       `json:"resumed"`
	Outcome  string     `json:"outcome"`
	Started  time.Time  `json:"started_at"`
	Finished *time.Time `json:"finished_at,omitempty"`
	RowsRead int64      `json:"rows_read"`
	Changes  int64      `json:"changes_sent"` // upserts and deletes
	Deletes  int64      `json:"deletes"`
	Error    string     `json:"error,omitempty"`
}

func (r *Run) clone() Run {
	c := *r
	c.Tables = slices.Clone(r.Tables)
	return c
}

// RunFunc runs a snapshot from p, calling onPage after each committed page.
type RunFunc func(ctx context.Context, p state.Progress, onPage func(snapshot.Page)) error

// Deps are the manager's collaborators.
type Deps struct {
	Run RunFunc
	// Pending is the progress of the interrupted run (nil = none): at start,
	// as loaded from the state topic; after a run, as it last committed.
	// Called only while no run is active.
	Pending func() *state.Progress
	Meter   metric.Meter
	Log     *slog.Logger
	Now     func() time.Time // nil = time.Now
}

// Manager runs one snapshot at a time.
type Manager struct {
	cfg      Config
	d        Deps
	schedule cron.Schedule
	m        metrics

	mu      sync.Mutex
	ctx     context.Context
	active  *Run
	done    chan struct{} // closed when active ends
	history []*Run        // oldest first, at most cfg.History
	lastOK  time.Time
	lastBad bool
	fatal   chan error
	wg      sync.WaitGroup
}

// New returns a manager; runs start once Run runs.
func New(cfg Config, d Deps) (*Manager, error) {
	sched, err := ParseSchedule(cfg.Schedule)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Meter)
	if err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Manager{cfg: cfg, d: d, schedule: sched, m: m, lastOK: d.Now(), fatal: make(chan error, 1)}, nil
}

// ErrBusy is a request a running run does not cover (another table, or a
// full re-send while an incremental run is active).
var ErrBusy = errors.New("another run is active")

// ErrStopped is a request while the manager is not running.
var ErrStopped = errors.New("not accepting runs (starting or stopping)")

// Trigger starts a run of tables (nil = all) now, or joins the active run
// when it covers the request: same or more tables, and full if full was
// asked. joined tells which. With an interrupted run pending, the run
// started is its continuation (Resumed), whatever was asked.
func (m *Manager) Trigger(trigger string, tables []string, full bool) (r Run, joined bool, err error) {
	if len(tables) == 0 {
		for _, t := range snapshot.Tables {
			tables = append(tables, t.Name)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return Run{}, false, ErrStopped
	}
	if a := m.active; a != nil {
		covers := !full || a.Full
		for _, t := range tables {
			covers = covers && slices.Contains(a.Tables, t)
		}
		if !covers {
			return a.clone(), false, ErrBusy
		}
		return a.clone(), true, nil
	}
	now := m.d.Now().UTC()
	var p state.Progress
	if pend := m.d.Pending(); pend != nil {
		p, trigger = *pend, TriggerResume
	} else {
		p = snapshot.Start(newID(), trigger, tables, full, now)
	}
	run := &Run{ID: p.RunID, Trigger: trigger, Tables: slices.Clone(p.Tables), Full: p.Full, Resumed: trigger == TriggerResume,
		Outcome: Running, Started: now}
	m.active, m.done = run, make(chan struct{})
	m.history = append(m.history, run)
	if over := len(m.history) - m.cfg.History; over > 0 {
		m.history = slices.Delete(m.history, 0, over)
	}
	m.wg.Add(1)
	go m.run(m.ctx, run, p)
	return run.clone(), false, nil
}

func (m *Manager) run(ctx context.Context, run *Run, p state.Progress) {
	defer m.wg.Done()
	source := snapshot.SourceSnapshot
	if p.Full {
		source = snapshot.SourceBackfill
	}
	m.d.Log.InfoContext(ctx, "snapshot run started", "run_id", run.ID, "trigger", run.Trigger, "tables", run.Tables,
		"full", run.Full, "resume_table", p.Table, "resume_phase", p.Phase, "resume_after", p.After)
	err := m.d.Run(ctx, p, func(pg snapshot.Page) {
		m.m.page(ctx, pg, source)
		m.mu.Lock()
		run.RowsRead += int64(pg.RowsRead)
		run.Changes += int64(pg.Upserts + pg.Deletes)
		run.Deletes += int64(pg.Deletes)
		m.mu.Unlock()
	})
	now := m.d.Now().UTC()
	m.mu.Lock()
	run.Finished = &now
	switch {
	case err == nil:
		run.Outcome = Succeeded
		m.lastOK, m.lastBad = now, false
		m.m.lastSuccess.Store(now.Unix())
	case ctx.Err() != nil:
		run.Outcome = Cancelled
	default:
		run.Outcome, run.Error = Failed, err.Error()
		m.lastBad = true
	}
	m.active = nil
	close(m.done)
	out := run.clone()
	m.mu.Unlock()
	attrs := metric.WithAttributes(attribute.String("outcome", out.Outcome), attribute.String("trigger", out.Trigger))
	m.m.runs.Add(context.WithoutCancel(ctx), 1, attrs)
	m.m.duration.Record(context.WithoutCancel(ctx), now.Sub(out.Started).Seconds(), metric.WithAttributes(attribute.String("outcome", out.Outcome)))
	log := []any{"run_id", out.ID, "outcome", out.Outcome, "rows_read", out.RowsRead, "changes_sent", out.Changes,
		"deletes", out.Deletes, "seconds", now.Sub(out.Started).Seconds()}
	if out.Outcome == Failed {
		m.d.Log.WarnContext(ctx, "snapshot run failed", append(log, "err", err)...)
	} else {
		m.d.Log.InfoContext(ctx, "snapshot run ended", log...)
	}
	// Fenced (another instance owns the state) or a transaction that can be
	// neither committed nor aborted: this instance cannot go on.
	if err != nil && (stream.IsFatal(err) || errors.Is(err, snapshot.ErrTransactionStuck)) {
		select {
		case m.fatal <- fmt.Errorf("runs: %w", err):
		default:
		}
	}
}

// Wait blocks until the run id is no longer active (or ctx ends).
func (m *Manager) Wait(ctx context.Context, id string) (Run, error) {
	m.mu.Lock()
	done := m.done
	active := m.active != nil && m.active.ID == id
	m.mu.Unlock()
	if active {
		select {
		case <-done:
		case <-ctx.Done():
			return Run{}, ctx.Err()
		}
	}
	r, ok := m.Get(id)
	if !ok {
		return Run{}, fmt.Errorf("runs: no run %s", id)
	}
	return r, nil
}

// Get returns run id from the history.
func (m *Manager) Get(id string) (Run, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.history {
		if r.ID == id {
			return r.clone(), true
		}
	}
	return Run{}, false
}

// List returns the history, newest first.
func (m *Manager) List() []Run {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Run, 0, len(m.history))
	for i := len(m.history) - 1; i >= 0; i-- {
		out = append(out, m.history[i].clone())
	}
	return out
}

// Ready fails when the last run failed and no run has succeeded for
// StaleAfter (counting from the start when none has).
func (m *Manager) Ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		// POST /v1/sync answers 503 now: not ready, so that a caller (a
		// probe, an Airflow task) waits for /readyz instead of failing.
		return ErrStopped
	}
	if age := m.d.Now().Sub(m.lastOK); m.lastBad && age > m.cfg.StaleAfter {
		return fmt.Errorf("last snapshot run failed, none succeeded for %v", age.Round(time.Second))
	}
	return nil
}

// Run accepts runs until ctx ends: it resumes an interrupted run at once,
// then starts one at every time of the schedule (a time that falls while a
// run is active joins it). It returns when the runs have stopped; with an
// error when one found this instance fenced.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	defer m.wg.Wait()
	if m.d.Pending() != nil {
		if _, _, err := m.Trigger(TriggerResume, nil, false); err != nil {
			return err
		}
	}
	var tick <-chan time.Time
	var timer *time.Timer
	arm := func() {
		if m.schedule == nil {
			return
		}
		now := m.d.Now()
		next := m.schedule.Next(now.UTC())
		if timer == nil {
			timer = time.NewTimer(next.Sub(now))
		} else {
			timer.Reset(next.Sub(now))
		}
		tick = timer.C
	}
	arm()
	if timer != nil {
		defer timer.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-m.fatal:
			return err
		case <-tick:
			if _, _, err := m.Trigger(TriggerSchedule, nil, false); err != nil && !errors.Is(err, ErrBusy) {
				return err
			}
			arm()
		}
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "run-" + hex.EncodeToString(b[:])
}
