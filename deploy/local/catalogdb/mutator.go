package catalogdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of the mutator: a few changes a minute, a burst every ten minutes, 5% bad.
const (
	DefaultRatePerMinute = 6
	DefaultBurstEvery    = 10 * time.Minute
	DefaultBadFraction   = 0.05
)

// MutatorConfig configures a Mutator. Zero values take the defaults; a
// negative RatePerMinute, BurstEvery or BadFraction means none.
type MutatorConfig struct {
	Schema        string
	RatePerMinute float64       // mean changes per minute (Poisson arrivals)
	BurstEvery    time.Duration // a category re-price every so often
	BadFraction   float64       // share of changes bad on purpose
	Seed          uint64        // the change stream's random seed
	Log           io.Writer     // JSON Lines, one Entry per changed row; nil = none
	Logger        *slog.Logger
	// MaxChanges stops Run after that many transactions (bursts included); 0 = never.
	MaxChanges int
}

// Stats counts what the mutator did.
type Stats struct {
	Transactions int          `json:"transactions"`
	Rows         int          `json:"rows"`
	Bursts       int          `json:"bursts"`
	Failed       int          `json:"failed"`
	Unlogged     int          `json:"unlogged"` // committed (or maybe) but not logged: stops Run
	Kinds        map[Kind]int `json:"kinds"`
	Bad          map[Bad]int  `json:"bad"`
}

// Mutator changes the catalog like a shop's application: one transaction per
// change, a bulk re-price (one transaction) now and then.
type Mutator struct {
	db  DB
	cfg MutatorConfig
	gen *Generator
	rng *rand.Rand

	mu    sync.Mutex
	stats Stats
}

// NewMutator reads the schema's current rows and returns a mutator over them.
func NewMutator(ctx context.Context, db DB, cfg MutatorConfig) (*Mutator, error) {
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = DefaultRatePerMinute
	}
	if cfg.BurstEvery == 0 {
		cfg.BurstEvery = DefaultBurstEvery
	}
	if cfg.BadFraction == 0 {
		cfg.BadFraction = DefaultBadFraction
	}
	if cfg.BadFraction > 1 {
		return nil, fmt.Errorf("catalogdb: mutator: bad fraction %g: must be at most 1", cfg.BadFraction)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := LoadState(ctx, db, cfg.Schema)
	if err != nil {
		return nil, err
	}
	return &Mutator{db: db, cfg: cfg, gen: NewGenerator(cfg.Seed, st, max(cfg.BadFraction, 0)),
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x71e)), stats: Stats{Kinds: map[Kind]int{}, Bad: map[Bad]int{}}}, nil
}

// Step applies one generated change now.
func (m *Mutator) Step(ctx context.Context) ([]Entry, error) { return m.apply(ctx, m.gen.Next()) }

// Burst applies one bulk re-price now.
func (m *Mutator) Burst(ctx context.Context) ([]Entry, error) { return m.apply(ctx, m.gen.Burst()) }

// Stats returns a copy of the counters.
func (m *Mutator) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Kinds, s.Bad = map[Kind]int{}, map[Bad]int{}
	for k, v := range m.stats.Kinds {
		s.Kinds[k] = v
	}
	for k, v := range m.stats.Bad {
		s.Bad[k] = v
	}
	return s
}

func (m *Mutator) apply(ctx context.Context, tx Tx) ([]Entry, error) {
	entries, err := Apply(ctx, m.db, m.cfg.Schema, tx)
	var unlogged *UnloggedCommitError
	m.mu.Lock()
	switch {
	case errors.As(err, &unlogged):
		m.stats.Unlogged++
	case err != nil:
		m.stats.Failed++
	default:
		m.stats.Transactions++
		m.stats.Rows += len(entries)
		for _, c := range tx.Changes {
			m.stats.Kinds[c.Kind]++
			if c.Bad != "" {
				m.stats.Bad[c.Bad]++
			}
			if c.Kind == CategoryReprice {
				m.stats.Bursts++
			}
		}
	}
	m.mu.Unlock()
	if err != nil {
		// Someone else changed the tables (a key the generator made up now
		// exists): start again from what is there.
		if st, lerr := LoadState(ctx, m.db, m.cfg.Schema); lerr == nil && ctx.Err() == nil {
			m.gen = NewGenerator(m.rng.Uint64(), st, max(m.cfg.BadFraction, 0))
		}
		return nil, err
	}
	m.gen.Observe(entries)
	if m.cfg.Log != nil {
		if err := WriteLog(m.cfg.Log, entries); err != nil {
			return entries, &logError{err}
		}
	}
	return entries, nil
}

// Run changes the tables until ctx ends (or MaxChanges). A failed change is
// logged and counted, and the run goes on; a failed log write, or a
// transaction that committed (or may have) but could not be logged
// (UnloggedCommitError), stops it (the log is the test oracle: a gap in it
// would be silent).
func (m *Mutator) Run(ctx context.Context) error {
	next := time.NewTimer(m.interval())
	defer next.Stop()
	var burst <-chan time.Time
	if m.cfg.BurstEvery > 0 {
		t := time.NewTicker(m.cfg.BurstEvery)
		defer t.Stop()
		burst = t.C
	}
	if m.cfg.RatePerMinute <= 0 {
		next.Stop()
	}
	for done := 0; m.cfg.MaxChanges == 0 || done < m.cfg.MaxChanges; done++ {
		var entries []Entry
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-next.C:
			entries, err = m.Step(ctx)
			next.Reset(m.interval())
		case <-burst:
			entries, err = m.Burst(ctx)
		}
		var (
			logErr   *logError
			unlogged *UnloggedCommitError
		)
		// A gap in the log stops the run even when it coincides with the end of ctx.
		if errors.As(err, &logErr) || errors.As(err, &unlogged) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			m.cfg.Logger.Warn("catalog change failed", "err", err)
		case len(entries) > 0 && entries[0].Bad != "":
			m.cfg.Logger.Info("bad catalog change", "kind", entries[0].Kind, "bad", entries[0].Bad, "key", entries[0].Key)
		}
	}
	return nil
}

type logError struct{ err error }

func (e *logError) Error() string { return e.err.Error() }
func (e *logError) Unwrap() error { return e.err }

// interval is the wait before the next change: exponential with the configured mean.
func (m *Mutator) interval() time.Duration {
	if m.cfg.RatePerMinute <= 0 {
		return time.Hour
	}
	return time.Duration(m.rng.ExpFloat64() / m.cfg.RatePerMinute * float64(time.Minute))
}
