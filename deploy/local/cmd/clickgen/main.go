// Command clickgen produces simulated storefront clickstream to Kafka at a
// steady rate, with a configurable share of deliberately broken records and
// source duplicates. It drives the local stack's demos and load tests; with
// -expect-out it also writes what the platform must do with every record, so
// an end-to-end test can check the warehouse and the dead-letter topic.
//
// Example:
//
//	go run ./cmd/clickgen -rate 5000 -duration 1m -broken 0.02 -expect-out /tmp/expect.jsonl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a clean shutdown; unregistering then lets a
	// second Ctrl-C kill the process if the flush takes too long for the user.
	context.AfterFunc(ctx, stop)
	// A text handler rather than the services' JSON: clickgen is run by
	// people in a terminal, and its progress lines are read, not shipped.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, log)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Error("clickgen failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, usage io.Writer, log *slog.Logger) error {
	cfg, err := parseConfig(args, getenv, usage)
	if err != nil {
		return err
	}
	if cfg.seed == 0 {
		cfg.seed = rand.Uint64()
	}
	opts := []clickgen.Option{
		clickgen.WithSeed(cfg.seed),
		clickgen.WithBrokenFraction(cfg.broken),
		clickgen.WithDuplicateFraction(cfg.duplicates),
		clickgen.WithUsers(cfg.users),
	}
	if len(cfg.kinds) > 0 {
		opts = append(opts, clickgen.WithBrokenKinds(cfg.kinds...))
	}
	gen := clickgen.New(opts...)

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.brokers...),
		kgo.ClientID("clickgen"),
		kgo.DefaultProduceTopic(cfg.topic),
		// Idempotent writes with acks=all are kgo's defaults and stay on:
		// a retried batch must not turn into duplicates that the tests
		// would count as platform bugs.
		kgo.ProducerLinger(5*time.Millisecond),
		// lz4 costs the least CPU per byte, which matters on a 2-core box
		// that also runs the broker and the services; JSON compresses well
		// with it anyway.
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.MaxBufferedRecords(50_000),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := ensureTopic(ctx, cl, cfg, log); err != nil {
		return err
	}

	var expect *expectWriter
	if cfg.expectOut != "" {
		f, err := os.Create(cfg.expectOut)
		if err != nil {
			return fmt.Errorf("-expect-out: %w", err)
		}
		expect = newExpectWriter(f)
		defer expect.Close() // error path only; the success path closes and checks
	}

	var placer *storefront.Placer
	if cfg.storefrontURL != "" {
		placer, err = storefront.NewPlacer(storefront.PlacerConfig{URL: cfg.storefrontURL, Token: cfg.storefrontToken, Log: log})
		if err != nil {
			return fmt.Errorf("-storefront-url: %w", err)
		}
	}

	log.Info("producing",
		"brokers", strings.Join(cfg.brokers, ","), "topic", cfg.topic, "rate", cfg.rate,
		"duration", cfg.duration, "count", cfg.count, "broken", cfg.broken,
		"duplicates", cfg.duplicates, "seed", cfg.seed, "storefront", cfg.storefrontURL)
	st := newStats()
	st.placer = placer
	start := time.Now()
	done := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() { reportProgress(st, log, cfg.progress, done) })
	err = produce(ctx, cfg, cl, gen, st, expect, log)
	close(done)
	progress.Wait()
	if placer != nil {
		// After the flush: every purchase that reached Kafka has been given
		// to the placer by now.
		closeCtx, cancel := context.WithTimeout(context.Background(), cfg.flushTimeout)
		err = errors.Join(err, placer.Close(closeCtx))
		cancel()
	}

	elapsed := time.Since(start)
	log.Info("done",
		"sent", st.delivered.Load(),
		"errors", st.failed.Load(),
		"generated", st.generated.Load(),
		"valid", st.byKind[0].Load(), // what the warehouse must gain: duplicates are counted apart
		"duplicates", st.duplicates.Load(),
		"elapsed", elapsed.Round(time.Millisecond),
		"rate", fmt.Sprintf("%.0f/s", float64(st.delivered.Load())/elapsed.Seconds()),
		"seed", cfg.seed,
		st.brokenAttrs(), st.orderAttrs())
	if expect != nil {
		if cerr := expect.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	// Compare with what was generated, not only with what failed: after an
	// aborted flush some records have no outcome at all.
	if gen, sent := st.generated.Load(), st.delivered.Load(); sent < gen {
		err = errors.Join(err, fmt.Errorf("%d of %d records not confirmed delivered (%d failed, %d without an answer)",
			gen-sent, gen, st.failed.Load(), gen-sent-st.failed.Load()))
	}
	if placer != nil {
		if ps := placer.Stats(); ps.Failed+ps.Dropped > 0 {
			err = errors.Join(err, fmt.Errorf("%d purchases have no order in the storefront (%d failed, %d dropped: the queue was full)",
				ps.Failed+ps.Dropped, ps.Failed, ps.Dropped))
		}
	}
	return err
}

// ensureTopic creates the topic unless it exists. It also proves the brokers
// are reachable before the loop starts, so a stack that is not up fails in
// seconds with a hint rather than with a producer retrying forever.
func ensureTopic(ctx context.Context, cl *kgo.Client, cfg config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach Kafka at %s (is the local stack up? deploy/local/stack.sh up): %w",
			strings.Join(cfg.brokers, ","), err)
	}
	// Replication factor -1: the broker's default, right for any cluster
	// size the local stack runs.
	_, err := kadm.NewClient(cl).CreateTopic(ctx, int32(cfg.partitions), -1, nil, cfg.topic)
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		log.Info("topic exists", "topic", cfg.topic)
	case err != nil:
		return fmt.Errorf("create topic %s: %w", cfg.topic, err)
	default:
		log.Info("topic created", "topic", cfg.topic, "partitions", cfg.partitions)
	}
	return nil
}

// produce runs the generate-and-send loop until -count, -duration or ctx
// ends it, then flushes what is in flight.
func produce(ctx context.Context, cfg config, cl *kgo.Client, gen *clickgen.Generator, st *stats, expect *expectWriter, log *slog.Logger) error {
	genCtx := ctx
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		genCtx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	// Records are produced under their own context, not ctx: kgo fails
	// buffered records whose context is done, and Ctrl-C should stop
	// generating, not throw away what was already generated. The context
	// is cancelled only if the flush below gives up, or if Produce is
	// still blocked on a full buffer flush-timeout after the stop.
	prodCtx, cancelProd := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProd()
	stopWatch := context.AfterFunc(genCtx, func() { time.AfterFunc(cfg.flushTimeout, cancelProd) })
	defer stopWatch()

	pace := newPacer(cfg.rate, time.Now)
	for n := int64(0); cfg.count == 0 || n < cfg.count; n++ {
		if err := pace.wait(genCtx); err != nil {
			break
		}
		rec := gen.Next()
		st.generated.Add(1)
		kind := st.index[rec.Expect.Kind]
		cl.Produce(prodCtx, &kgo.Record{Key: rec.Key, Value: rec.Value}, func(r *kgo.Record, err error) {
			if expect != nil {
				expect.write(rec, r.Topic, r.Partition, r.Offset, err)
			}
			if err != nil {
				st.failed.Add(1)
				st.firstErr.Do(func() { log.Error("produce failed (further failures are only counted)", "err", err) })
				return
			}
			st.delivered.Add(1)
			if rec.Purchase != nil && st.placer != nil {
				// Only for purchases in Kafka, so no order lacks its click;
				// a duplicate's order is placed again and found placed.
				st.placer.Place(rec.Purchase.PlaceRequest())
			}
			if rec.Duplicate {
				st.duplicates.Add(1)
				return
			}
			st.byKind[kind].Add(1)
		})
	}

	flushCtx, cancel := context.WithTimeout(prodCtx, cfg.flushTimeout)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		// Give up on what is left: fail it (and call its promises, so the
		// counts and the expectation file are complete) instead of hanging.
		cancelProd()
		abortCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cl.AbortBufferedRecords(abortCtx)
		return fmt.Errorf("flush in-flight records: %w", err)
	}
	return nil
}
