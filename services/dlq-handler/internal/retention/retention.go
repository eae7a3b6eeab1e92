// Package retention runs the store's retention (store.Purge) on a schedule
// and on demand (POST /v1/retention), one run at a time, and counts what it
// deleted and purged.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/services/dlq-handler/internal/store"
)

// Config is the retention's configuration.
type Config struct {
	Resolved time.Duration `env:"DLQ_RETENTION_RESOLVED" default:"2160h" usage:"resolved and discarded dead letters are deleted this long after their state last changed (default 90 days); new, replayed and failed_again ones are kept forever"`
	PII      time.Duration `env:"DLQ_RETENTION_PII" default:"720h" usage:"dead letters holding personal data (pii: an entity of DLQ_PII_ENTITIES, an email-like string in the original or a personal field named) lose their original key, value and headers, and their messages are masked, this long after they failed (default 30 days), whatever their state; audit entries and replay jobs older than it lose searched text and email-like strings"`
	Schedule string        `env:"DLQ_RETENTION_SCHEDULE" default:"@every 1h" usage:"when the retention runs: a cron expression (UTC; 5 fields or @hourly, @daily, @every 30m); off = only on demand (POST /v1/retention)"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	_, err := ParseSchedule(c.Schedule)
	return config.First(
		config.Positive("DLQ_RETENTION_RESOLVED", c.Resolved),
		config.Positive("DLQ_RETENTION_PII", c.PII),
		err)
}

// Policy is the store's policy of c.
func (c *Config) Policy() store.RetentionPolicy {
	return store.RetentionPolicy{Resolved: c.Resolved, PII: c.PII}
}

// ParseSchedule reads DLQ_RETENTION_SCHEDULE: a standard five-field cron
// expression or a descriptor (@hourly, @every 30m), evaluated in UTC; "off"
// (or empty) is no schedule (nil).
func ParseSchedule(s string) (cron.Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return nil, nil
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return nil, config.Errorf("DLQ_RETENTION_SCHEDULE", "no time zone prefix: the schedule is evaluated in UTC")
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return nil, config.Errorf("DLQ_RETENTION_SCHEDULE", "%q is not a cron expression (5 fields or @hourly, @daily, @every 30m, off): %v", s, err)
	}
	return sched, nil
}

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerAPI      = "api"
)

// PurgeFunc applies the policy as of now (store.Store.Purge).
type PurgeFunc func(ctx context.Context, now time.Time, p store.RetentionPolicy) (store.RetentionResult, error)

// Runner runs the retention.
type Runner struct {
	cfg      Config
	purge    PurgeFunc
	schedule cron.Schedule
	log      *slog.Logger
	now      func() time.Time

	mu sync.Mutex // one run at a time

	runs, deleted, purged metric.Int64Counter
}

// New returns a runner of purge with cfg's policy and schedule; now nil =
// time.Now.
func New(cfg Config, purge PurgeFunc, meter metric.Meter, log *slog.Logger, now func() time.Time) (*Runner, error) {
	sched, err := ParseSchedule(cfg.Schedule)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	r := &Runner{cfg: cfg, purge: purge, schedule: sched, log: log, now: now}
	if r.runs, err = meter.Int64Counter("ecom.dlq.retention_runs", metric.WithDescription("Retention runs, by trigger (schedule, api) and outcome (succeeded, failed).")); err != nil {
		return nil, err
	}
	if r.deleted, err = meter.Int64Counter("ecom.dlq.retention_deleted", metric.WithDescription("Resolved and discarded dead letters deleted by the retention (DLQ_RETENTION_RESOLVED).")); err != nil {
		return nil, err
	}
	if r.purged, err = meter.Int64Counter("ecom.dlq.retention_pii_purged", metric.WithDescription("Dead letters whose personal data (original key, value, headers) the retention purged (DLQ_RETENTION_PII).")); err != nil {
		return nil, err
	}
	return r, nil
}

// Purge runs the retention now (trigger: TriggerAPI or TriggerSchedule),
// after any run in progress. A run that fails part-way keeps what it did
// (each chunk commits on its own) and reports it with the error.
func (r *Runner) Purge(ctx context.Context, trigger string) (store.RetentionResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.now()
	res, err := r.purge(ctx, start, r.cfg.Policy())
	r.deleted.Add(ctx, int64(res.Deleted))
	r.purged.Add(ctx, int64(res.PIIPurged))
	outcome := "succeeded"
	if err != nil {
		outcome = "failed"
	}
	r.runs.Add(ctx, 1, metric.WithAttributes(attribute.String("trigger", trigger), attribute.String("outcome", outcome)))
	if err != nil {
		return res, fmt.Errorf("retention: %w", err)
	}
	r.log.InfoContext(ctx, "retention ran", "trigger", trigger, "deleted", res.Deleted, "pii_purged", res.PIIPurged,
		"audit_redacted", res.AuditRedacted, "jobs_redacted", res.JobsRedacted, "took", time.Since(start).String())
	return res, nil
}

// Run runs the retention at every time of the schedule until ctx ends (with
// no schedule it only waits). A failed run is logged and counted, and the
// next time of the schedule tries again: retention is never urgent enough to
// stop the service.
func (r *Runner) Run(ctx context.Context) error {
	if r.schedule == nil {
		<-ctx.Done()
		return nil
	}
	timer := time.NewTimer(time.Until(r.schedule.Next(r.now().UTC())))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if _, err := r.Purge(ctx, TriggerSchedule); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "scheduled retention failed; the next scheduled run tries again", "err", err)
		}
		timer.Reset(time.Until(r.schedule.Next(r.now().UTC())))
	}
}
