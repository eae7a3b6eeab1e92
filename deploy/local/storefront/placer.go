package storefront

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults for PlacerConfig.
const (
	DefaultPlacerQueue      = 1024
	DefaultPlacerWorkers    = 2
	DefaultPlacerAttempts   = 8
	DefaultPlacerBackoff    = 200 * time.Millisecond
	DefaultPlacerMaxBackoff = 5 * time.Second
)

// PlacerConfig configures a Placer. Zero values take the defaults.
type PlacerConfig struct {
	URL         string       // the storefront's base URL, e.g. http://127.0.0.1:8097 (required)
	Token       string       // its bearer token (required)
	Client      *http.Client // default: 10 s timeout, redirects not followed
	QueueSize   int          // orders waiting to be sent; Place drops beyond it
	Workers     int          // requests in flight at once
	MaxAttempts int          // per order, on transport errors, 429 and 5xx
	Backoff     time.Duration
	MaxBackoff  time.Duration // cap of the doubling, jittered backoff
	Log         *slog.Logger
}

// PlacerStats counts what became of the orders given to Place.
type PlacerStats struct {
	Queued  int `json:"queued"`  // taken by Place
	Placed  int `json:"placed"`  // 201: created
	Already int `json:"already"` // 409: the id was already an order (a duplicate, or a retry whose first answer was lost)
	Failed  int `json:"failed"`  // given up: another 4xx, out of attempts, or cut off by Close
	Dropped int `json:"dropped"` // not taken: the queue was full, or the placer closed
	Retries int `json:"retries"` // attempts after the first
}

// Placer places orders with POST /v1/admin/orders in the background, for a
// caller that must not wait for HTTP (clickgen turning purchase events into
// orders at its event rate). Place never blocks: it queues, or drops when the
// queue is full. It is safe for concurrent use; Close stops it.
type Placer struct {
	cfg    PlacerConfig
	url    string
	queue  chan PlaceRequest
	ctx    context.Context // ends when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
	own    bool // the client is the placer's own

	mu     sync.Mutex
	closed bool
	stats  PlacerStats
	cut    int  // failures because Close gave up
	warned bool // the first failure is logged, later ones only counted
}

// NewPlacer checks the config and starts the workers.
func NewPlacer(cfg PlacerConfig) (*Placer, error) {
	if cfg.URL == "" {
		return nil, errors.New("storefront: the placer's URL is empty")
	}
	if cfg.Token == "" {
		return nil, errors.New("storefront: the placer's token is empty")
	}
	own := cfg.Client == nil
	if own {
		cfg.Client = &http.Client{
			Transport:     http.DefaultTransport.(*http.Transport).Clone(), // its own, so Close can close its connections
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.QueueSize, DefaultPlacerQueue)
	def(&cfg.Workers, DefaultPlacerWorkers)
	def(&cfg.MaxAttempts, DefaultPlacerAttempts)
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultPlacerBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultPlacerMaxBackoff
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Placer{
		cfg:    cfg,
		url:    strings.TrimSuffix(cfg.URL, "/") + "/v1/admin/orders",
		queue:  make(chan PlaceRequest, cfg.QueueSize),
		ctx:    ctx,
		cancel: cancel,
		own:    own,
	}
	for range cfg.Workers {
		p.wg.Go(func() {
			for req := range p.queue {
				p.place(req)
			}
		})
	}
	return p, nil
}

// Place queues an order and reports whether it was taken; it never blocks.
// A request with an ID is safe to give twice: the second is counted as
// Already.
func (p *Placer) Place(req PlaceRequest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		select {
		case p.queue <- req:
			p.stats.Queued++
			return true
		default:
		}
	}
	p.stats.Dropped++
	return false
}

// Stats returns the counters so far.
func (p *Placer) Stats() PlacerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops taking orders and waits until the queued ones are sent or ctx
// ends; then it cuts off what is left (counted as Failed) and returns an
// error saying how many. Calling it again returns nil at once.
func (p *Placer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		p.cancel() // in-flight requests and backoffs end; the rest of the queue fails at once
		<-done
		p.mu.Lock()
		err = fmt.Errorf("storefront placer: %d orders not placed before the deadline: %w", p.cut, ctx.Err())
		p.mu.Unlock()
	}
	p.cancel()
	if p.own {
		p.cfg.Client.CloseIdleConnections()
	}
	return err
}

// outcome of one attempt.
type outcome int

const (
	placed outcome = iota
	already
	retry
	permanent
)

// place sends one order until it is placed, exists, fails for good or the
// placer is cut off.
func (p *Placer) place(req PlaceRequest) {
	body, err := json.Marshal(req)
	if err != nil { // cannot happen: PlaceRequest is plain data
		p.fail(req, err)
		return
	}
	for attempt := 1; ; attempt++ {
		res, err := p.send(body)
		switch res {
		case placed:
			p.count(func(s *PlacerStats) { s.Placed++ })
			return
		case already:
			p.count(func(s *PlacerStats) { s.Already++ })
			return
		case permanent:
			p.fail(req, err)
			return
		}
		if p.ctx.Err() != nil || attempt >= p.cfg.MaxAttempts {
			p.fail(req, fmt.Errorf("after %d attempts: %w", attempt, err))
			return
		}
		wait := min(p.cfg.Backoff<<min(attempt-1, 20), p.cfg.MaxBackoff)
		wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1)) // jitter in [wait/2, wait]
		p.count(func(s *PlacerStats) { s.Retries++ })
		if !sleep(p.ctx, wait) {
			p.fail(req, fmt.Errorf("cut off by Close after %d attempts: %w", attempt, err))
			return
		}
	}
}

func (p *Placer) send(body []byte) (outcome, error) {
	r, err := http.NewRequestWithContext(p.ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return permanent, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	r.Header.Set("User-Agent", "storefront-placer/1")
	resp, err := p.cfg.Client.Do(r)
	if err != nil {
		return retry, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c == http.StatusCreated || c == http.StatusOK:
		return placed, nil
	case c == http.StatusConflict:
		return already, nil
	case c == http.StatusTooManyRequests || c >= 500:
		return retry, fmt.Errorf("storefront answered %s", resp.Status)
	default:
		return permanent, fmt.Errorf("storefront answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
}

func (p *Placer) fail(req PlaceRequest, err error) {
	p.mu.Lock()
	p.stats.Failed++
	if p.ctx.Err() != nil {
		p.cut++
	}
	first := !p.warned
	p.warned = true
	p.mu.Unlock()
	if first {
		p.cfg.Log.Warn("order not placed (further failures are only counted)", "order_id", req.ID, "err", err)
	}
}

func (p *Placer) count(f func(*PlacerStats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}
