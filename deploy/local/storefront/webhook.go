package storefront

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// Webhook headers. The signature scheme (documented in deploy/local/README.md
// and the OpenAPI contract) is:
//
//	X-Storefront-Timestamp: <unix seconds, wall clock, at sending>
//	X-Storefront-Signature: sha256=<lower-case hex of HMAC-SHA256(secret, timestamp + "." + raw body)>
//
// Every attempt is signed afresh (new timestamp); the delivery id stays the
// same across the attempts and the duplicates of one delivery.
const (
	HeaderTimestamp  = "X-Storefront-Timestamp"
	HeaderSignature  = "X-Storefront-Signature"
	HeaderDeliveryID = "X-Storefront-Delivery-Id"
	HeaderEvent      = "X-Storefront-Event"   // order.created (version 1) or order.updated
	HeaderAttempt    = "X-Storefront-Attempt" // 1, 2, ... for retries
)

// Sign returns the X-Storefront-Signature value for a timestamp and raw body.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Defaults for WebhookConfig.
const (
	DefaultWebhookAttempts   = 8
	DefaultWebhookBackoff    = 500 * time.Millisecond
	DefaultWebhookMaxBackoff = 30 * time.Second
	DefaultDuplicateFraction = 0.02
	DefaultReorderFraction   = 0.05
	DefaultReorderDelay      = 2 * time.Second
	defaultWebhookQueue      = 10000
	webhookConcurrency       = 16
)

// WebhookConfig configures webhook delivery. Zero values take the defaults;
// negative fractions mean never.
type WebhookConfig struct {
	URL               string
	Secret            []byte
	Client            *http.Client // default: 10 s timeout, redirects not followed
	MaxAttempts       int
	Backoff           time.Duration // first retry delay, doubling per attempt, with jitter
	MaxBackoff        time.Duration
	DuplicateFraction float64       // deliveries sent twice (same delivery id)
	ReorderFraction   float64       // deliveries held back up to ReorderDelay, so later versions overtake them
	ReorderDelay      time.Duration //
	Seed              uint64
	Log               *slog.Logger
	Now               func() time.Time // wall clock for the signature timestamp
	QueueSize         int
}

// WebhookStats counts deliveries.
type WebhookStats struct {
	Queued     int `json:"queued"`
	Delivered  int `json:"delivered"`  // 2xx answers, duplicates included
	Failed     int `json:"failed"`     // attempts that got an error or a non-2xx
	Abandoned  int `json:"abandoned"`  // deliveries that ran out of attempts
	Dropped    int `json:"dropped"`    // not queued: the queue was full
	Duplicated int `json:"duplicated"` // deliveries sent twice on purpose
	Reordered  int `json:"reordered"`  // deliveries held back on purpose
}

// Webhooks posts every order version to a URL. Enqueue never blocks; Run
// sends. It is safe for concurrent use.
type Webhooks struct {
	cfg   WebhookConfig
	queue chan delivery

	mu    sync.Mutex
	rng   *rand.Rand
	stats WebhookStats
}

type delivery struct {
	id    string
	event string
	body  []byte
	hold  time.Duration
	twice bool
}

// NewWebhooks checks the config and returns a sender.
func NewWebhooks(cfg WebhookConfig) (*Webhooks, error) {
	if cfg.URL == "" {
		return nil, errors.New("storefront: webhook URL is empty")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("storefront: webhook secret is empty")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: 10 * time.Second,
			// A redirect is an answer, not a success: following it would turn
			// the POST into a GET and lose the body.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultWebhookAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultWebhookBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultWebhookMaxBackoff
	}
	if cfg.ReorderDelay <= 0 {
		cfg.ReorderDelay = DefaultReorderDelay
	}
	frac := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	frac(&cfg.DuplicateFraction, DefaultDuplicateFraction)
	frac(&cfg.ReorderFraction, DefaultReorderFraction)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultWebhookQueue
	}
	return &Webhooks{
		cfg:   cfg,
		queue: make(chan delivery, cfg.QueueSize),
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x3eb)),
	}, nil
}

// Enqueue schedules a delivery of the version's order. A full queue drops
// the delivery (counted and logged): the poll path still carries the order.
func (h *Webhooks) Enqueue(v Version) {
	body, _ := json.Marshal(v.Order)
	event := "order.updated"
	if v.Order.Version == 1 {
		event = "order.created"
	}
	h.mu.Lock()
	d := delivery{id: seed.UUID(h.rng), event: event, body: body}
	if h.rng.Float64() < h.cfg.ReorderFraction {
		d.hold = time.Duration(h.rng.Int64N(int64(h.cfg.ReorderDelay)) + 1)
		h.stats.Reordered++
	}
	if h.rng.Float64() < h.cfg.DuplicateFraction {
		d.twice = true
		h.stats.Duplicated++
	}
	select {
	case h.queue <- d:
		h.stats.Queued++
		h.mu.Unlock()
	default:
		h.stats.Dropped++
		h.mu.Unlock()
		h.cfg.Log.Warn("webhook queue full, delivery dropped", "order_id", v.Order.ID, "version", v.Order.Version)
	}
}

// Stats returns the counters so far.
func (h *Webhooks) Stats() WebhookStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

func (h *Webhooks) count(f func(*WebhookStats)) {
	h.mu.Lock()
	f(&h.stats)
	h.mu.Unlock()
}

// Run sends queued deliveries, up to 16 at a time (so they may arrive in any
// order), until ctx ends; then it waits for the deliveries in flight, which
// stop at their next wait.
func (h *Webhooks) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, webhookConcurrency)
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-h.queue:
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Go(func() {
				defer func() { <-sem }()
				h.deliver(ctx, d)
			})
		}
	}
}

func (h *Webhooks) deliver(ctx context.Context, d delivery) {
	if d.hold > 0 && !sleep(ctx, d.hold) {
		return
	}
	times := 1
	if d.twice {
		times = 2
	}
	for range times {
		if !h.attempts(ctx, d) {
			return
		}
	}
}

// attempts sends d until a 2xx, with capped jittered exponential backoff.
func (h *Webhooks) attempts(ctx context.Context, d delivery) bool {
	for attempt := 1; ; attempt++ {
		err := h.send(ctx, d, attempt)
		if err == nil {
			h.count(func(s *WebhookStats) { s.Delivered++ })
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		h.count(func(s *WebhookStats) { s.Failed++ })
		if attempt >= h.cfg.MaxAttempts {
			h.count(func(s *WebhookStats) { s.Abandoned++ })
			h.cfg.Log.Warn("webhook delivery abandoned", "delivery_id", d.id, "attempts", attempt, "err", err)
			return false
		}
		wait := h.cfg.Backoff << min(attempt-1, 20)
		wait = min(wait, h.cfg.MaxBackoff)
		h.mu.Lock()
		wait = wait/2 + time.Duration(h.rng.Int64N(int64(wait/2)+1)) // jitter in [wait/2, wait]
		h.mu.Unlock()
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func (h *Webhooks) send(ctx context.Context, d delivery, attempt int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(h.cfg.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "storefront-webhooks/1")
	req.Header.Set(HeaderEvent, d.event)
	req.Header.Set(HeaderDeliveryID, d.id)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(h.cfg.Secret, ts, d.body))
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
