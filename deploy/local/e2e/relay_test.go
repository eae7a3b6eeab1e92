package e2e

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// relay is the catalog test's delayed path: a consumer group of its own
// that moves catalog-sync's records (slice.CatalogOptions.Relay) to the
// validator's input topics, key, value and headers as they are. Once armed,
// it holds back the first record of every key hold picks and forwards the
// rest at once; release sends the held ones after the caller let the
// pipeline apply everything else, so they reach bq-writer late, after newer
// changes of the same key: out of order.
type relay struct {
	cl     *kgo.Client
	routes map[string]string // catalog-sync's topic -> the validator's
	hold   func(topic string, key []byte) bool
	cancel context.CancelFunc
	done   chan error

	mu        sync.Mutex
	armed     bool
	forwarded int
	held      []*kgo.Record
	heldKeys  map[string]bool // topic + key: held once already
	overtaken map[string]bool // held keys with a newer record forwarded before their release
}

// startRelay starts moving records from routes' keys to their values.
func startRelay(ctx context.Context, brokers []string, group string, routes map[string]string, hold func(topic string, key []byte) bool) (*relay, error) {
	var topics []string
	for from := range routes {
		topics = append(topics, from)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.AllowAutoTopicCreation())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &relay{cl: cl, routes: routes, hold: hold, cancel: cancel, done: make(chan error, 1),
		heldKeys: map[string]bool{}, overtaken: map[string]bool{}}
	go func() { r.done <- r.run(ctx) }()
	return r, nil
}

func (r *relay) run(ctx context.Context) error {
	for {
		fs := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("relay: poll: %w", err)
		}
		var out []*kgo.Record
		r.mu.Lock()
		fs.EachRecord(func(rec *kgo.Record) {
			k := rec.Topic + "\x00" + string(rec.Key)
			fwd := &kgo.Record{Topic: r.routes[rec.Topic], Key: rec.Key, Value: rec.Value, Headers: rec.Headers}
			if r.armed && !r.heldKeys[k] && r.hold(rec.Topic, rec.Key) {
				r.heldKeys[k] = true
				r.held = append(r.held, fwd)
				return
			}
			if r.heldKeys[k] {
				r.overtaken[k] = true
			}
			out = append(out, fwd)
		})
		r.mu.Unlock()
		if err := r.cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return fmt.Errorf("relay: produce: %w", err)
		}
		if err := r.cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("relay: commit: %w", err)
		}
		r.mu.Lock()
		r.forwarded += len(out)
		r.mu.Unlock()
	}
}

// arm starts holding records back.
func (r *relay) arm() {
	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
}

// release stops holding back and sends the held records, in the order they
// came. It returns how many it sent and how many of them were overtaken by a
// newer change of their key (out of order, not only late).
func (r *relay) release(ctx context.Context) (sent, overtaken int, err error) {
	r.mu.Lock()
	held := r.held
	r.held, r.armed = nil, false
	for _, rec := range held {
		if r.overtaken[relayKey(rec, r.routes)] {
			overtaken++
		}
	}
	r.mu.Unlock()
	if len(held) == 0 {
		return 0, 0, nil
	}
	if err := r.cl.ProduceSync(ctx, held...).FirstErr(); err != nil {
		return 0, 0, fmt.Errorf("relay: release: %w", err)
	}
	return len(held), overtaken, nil
}

// relayKey is a forwarded record's key in heldKeys: its source topic and key.
func relayKey(fwd *kgo.Record, routes map[string]string) string {
	for from, to := range routes {
		if to == fwd.Topic {
			return from + "\x00" + string(fwd.Key)
		}
	}
	return ""
}

// stop ends the relay and returns the first error it met.
func (r *relay) stop() error {
	r.cancel()
	err := <-r.done
	r.cl.Close()
	return err
}

// err returns the relay's error if it has stopped on one (nil while it runs).
func (r *relay) err() error {
	select {
	case err := <-r.done:
		r.done <- err
		return err
	default:
		return nil
	}
}
