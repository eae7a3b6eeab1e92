// Package poller polls the storefront's order listing and produces every
// order version it sees, together with the advanced cursor, in one Kafka
// transaction per page.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-orders/internal/cursor"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

// Config is the poller's configuration.
type Config struct {
	Interval    time.Duration `env:"ORDERS_POLL_INTERVAL" default:"15s" usage:"pause between two polling rounds (a round reads every page there is)"`
	Overlap     time.Duration `env:"ORDERS_POLL_OVERLAP" default:"2m" usage:"each round starts this long before the cursor: at least the API's max_lateness, so late updates are seen"`
	PageSize    int           `env:"ORDERS_PAGE_SIZE" default:"500" usage:"limit of one page request (the API serves at most 500)"`
	CursorName  string        `env:"ORDERS_CURSOR_NAME" default:"live" usage:"name of the cursor (key in the cursor topic; part of the fixed transactional id)"`
	CursorTopic string        `env:"ORDERS_CURSOR_TOPIC" default:"ecom.ingest-orders.cursor.v1" usage:"compacted topic of cursors, written only by this service"`
	BackoffMin  time.Duration `env:"ORDERS_BACKOFF_MIN" default:"500ms" usage:"first backoff after an API or Kafka error"`
	BackoffMax  time.Duration `env:"ORDERS_BACKOFF_MAX" default:"1m" usage:"backoff cap; a Retry-After longer than this is still honoured"`
	StaleAfter  time.Duration `env:"ORDERS_POLL_STALE_AFTER" default:"5m" usage:"/readyz fails when no round has succeeded for this long"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	return config.First(
		config.Positive("ORDERS_POLL_INTERVAL", c.Interval),
		config.Between("ORDERS_POLL_OVERLAP", c.Overlap, 0, 24*time.Hour),
		config.Between("ORDERS_PAGE_SIZE", c.PageSize, 1, 500),
		config.NotEmpty("ORDERS_CURSOR_NAME", c.CursorName),
		config.NotEmpty("ORDERS_CURSOR_TOPIC", c.CursorTopic),
		config.Positive("ORDERS_BACKOFF_MIN", c.BackoffMin),
		config.Between("ORDERS_BACKOFF_MAX", c.BackoffMax, c.BackoffMin, time.Hour),
		config.Between("ORDERS_POLL_STALE_AFTER", c.StaleAfter, c.Interval+c.BackoffMax, 30*24*time.Hour),
	)
}

// Deps are the poller's collaborators.
type Deps struct {
	API    *storefront.Client
	Txn    *kgo.Client // transactional, with the cursor's fixed transactional id, already fenced (cursor.Fence)
	Orders stream.Encoder
	Topic  string
	Start  cursor.Cursor // as loaded after fencing
	Tracer trace.Tracer  // one span per page (SpanPage); nil = none
	Meter  metric.Meter
	Log    *slog.Logger
}

// Poller is one cursor's poller. Only one instance of a cursor runs: the
// transactional id fences the others.
type Poller struct {
	cfg    Config
	d      Deps
	cur    cursor.Cursor
	reader *storefront.Reader
	// recent is what was produced (and committed) at or after cur.Since -
	// overlap: the overlap re-reads them every round, and skipping them here
	// saves the downstream dedup that work. After a restart it is empty and
	// the repeats are produced, which the platform tolerates.
	recent map[string]recentVersion
	lastOK atomic.Int64
	m      metrics
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

type recentVersion struct {
	version   int64
	updatedAt time.Time
}

// SpanPage is the span of one page: its requests, and the transaction of its
// orders and cursor. Every order record produced from the page carries it.
const SpanPage = "orders.poll.page"

// New returns a poller starting at d.Start.
func New(cfg Config, d Deps) (*Poller, error) {
	p := &Poller{cfg: cfg, d: d, cur: d.Start, recent: map[string]recentVersion{}, now: time.Now, sleep: storefront.Sleep}
	m, err := newMetrics(d.Meter, func() time.Time { return p.now() })
	if err != nil {
		return nil, err
	}
	p.m = m
	// From the committed cursor at once (on the wall clock until a page
	// brings the shop's): after a restart into a failing API or a Kafka that
	// refuses the transaction, the lag grows and OrdersCursorLagHigh fires,
	// instead of reading 0 until a page commits.
	if !d.Start.Since.IsZero() {
		m.lag.page(d.Start.Since, time.Time{}, time.Now())
	}
	p.reader = &storefront.Reader{API: d.API, Limit: cfg.PageSize, BackoffMin: cfg.BackoffMin, BackoffMax: cfg.BackoffMax, OnError: m.apiError,
		Tracer: d.Tracer, Span: SpanPage, SpanAttrs: []attribute.KeyValue{
			attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", d.Topic), attribute.String("ecom.orders.cursor_name", cfg.CursorName),
		}}
	return p, nil
}

// Cursor is the last committed position.
func (p *Poller) Cursor() cursor.Cursor { return p.cur }

// Ready fails when no round has succeeded for StaleAfter (the first round
// counts from the start).
func (p *Poller) Ready(ctx context.Context) error {
	last := p.lastOK.Load()
	if last == 0 {
		return nil
	}
	if age := p.now().Sub(time.Unix(0, last)); age > p.cfg.StaleAfter {
		return fmt.Errorf("last successful poll %v ago", age.Round(time.Second))
	}
	return nil
}

// Run polls until ctx ends, or until the poller is fenced (another instance
// took the cursor), which it returns.
func (p *Poller) Run(ctx context.Context) error {
	p.lastOK.Store(p.now().UnixNano())
	b := p.reader.Backoff()
	for {
		err := p.Round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if stream.IsFatal(err) || errors.Is(err, ErrTransactionStuck) {
			return fmt.Errorf("poller: %w", err)
		}
		wait := p.cfg.Interval
		if err != nil {
			p.d.Log.WarnContext(ctx, "polling round failed", "err", err)
			wait = b.Next(err)
		} else {
			b.Reset()
			p.lastOK.Store(p.now().UnixNano())
		}
		if err := p.sleep(ctx, wait); err != nil {
			return nil
		}
	}
}

// Round reads every page from the cursor less the overlap, committing each
// page with its cursor. A failed request is retried (with backoff) from where
// it was; an error is returned only for what retrying cannot fix here.
func (p *Poller) Round(ctx context.Context) error {
	var since time.Time
	if !p.cur.Since.IsZero() {
		since = p.cur.Since.Add(-p.cfg.Overlap)
	}
	// A bad page token (storefront restart) ends the round: the next one
	// restarts from the cursor, which covers every committed page.
	return p.reader.Each(ctx, since, func(ctx context.Context, page *storefront.Page) (bool, error) {
		p.m.pages.Add(ctx, 1)
		if err := p.commit(ctx, page); err != nil {
			return false, err
		}
		p.m.lag.page(p.cur.Since, page.ShopTime, p.now())
		return true, nil
	})
}

// commit produces the page's new order versions and the cursor advanced to
// the page's newest updated_at in one transaction. The cursor never passes
// an order that is not in a committed transaction.
func (p *Poller) commit(ctx context.Context, page *storefront.Page) error {
	next := p.cur
	var recs []*kgo.Record
	fresh := map[string]recentVersion{}
	for i := range page.Orders {
		o := &page.Orders[i]
		if o.UpdatedAt.After(next.Since) {
			next.Since = o.UpdatedAt
		}
		if r, ok := p.recent[o.ID]; ok && r.version >= o.Version {
			continue // produced in an earlier page or round (overlap, or a repeated item)
		}
		if r, ok := fresh[o.ID]; ok && r.version >= o.Version {
			continue
		}
		rec, err := o.Record(ctx, p.d.Orders, p.d.Topic, storefront.SourceAPI, page.ReceivedAt, nil)
		if err != nil {
			return fmt.Errorf("poller: %w", err)
		}
		recs = append(recs, rec)
		fresh[o.ID] = recentVersion{version: o.Version, updatedAt: o.UpdatedAt}
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int(storefront.AttrProduced, len(recs)))
	if len(recs) == 0 && !next.Since.After(p.cur.Since) {
		return nil
	}
	next.Committed = p.now().UTC()
	cr, err := cursor.Record(p.cfg.CursorTopic, p.cfg.CursorName, next)
	if err != nil {
		return err
	}
	if err := Transact(ctx, p.d.Txn, append(recs, cr)); err != nil {
		return err
	}
	p.cur = next
	span.SetAttributes(attribute.String(storefront.AttrCursor, next.Since.UTC().Format(time.RFC3339Nano)))
	p.m.orders.Add(ctx, int64(len(recs)), metric.WithAttributes(attribute.String("source", storefront.SourceAPI)))
	for id, r := range fresh {
		p.recent[id] = r
	}
	horizon := p.cur.Since.Add(-p.cfg.Overlap)
	for id, r := range p.recent {
		if r.updatedAt.Before(horizon) {
			delete(p.recent, id)
		}
	}
	return nil
}

// ErrTransactionStuck is stream.ErrTransactionStuck: a transaction that could
// be neither committed nor aborted; the poller stops.
var ErrTransactionStuck = stream.ErrTransactionStuck

// Transact produces recs in one transaction of cl and commits it (stream.Transact).
func Transact(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	return stream.Transact(ctx, cl, recs)
}
