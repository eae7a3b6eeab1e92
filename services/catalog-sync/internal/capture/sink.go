// Package capture is catalog-sync's change data capture: it turns the
// transactions internal/cdc streams from the publication into ProductChange
// and CustomerChange records (the snapshot package's row mapping, source
// cdc) and commits each delivered batch, with the state entries of the keys
// it changed, in one Kafka transaction on the state's transactional
// producer, the one the snapshots use. Only then does it confirm the batch's
// position to PostgreSQL.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/cdc"
	"github.com/ecomstream/platform/services/catalog-sync/internal/snapshot"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// SpanBatch is the span of one CDC batch's Kafka transaction.
const SpanBatch = "catalog.cdc.batch"

// Sink is the cdc.Handler of the service.
type Sink struct {
	Schema     string // the source schema: changes of <schema>.products and <schema>.customers
	State      *state.State
	StateTopic string
	Topics     map[string]string         // table -> topic
	Codecs     map[string]stream.Encoder // table -> Avro codec
	// Commit is the state's transactional Committer, shared with the
	// snapshots; Sink calls it holding State.Mu.
	Commit  snapshot.Committer
	Backoff *stream.Backoff // between attempts of a failed commit
	// ConfirmDelay holds each batch this long between its Kafka commit and
	// its Confirm (CATALOG_CDC_CONFIRM_DELAY; tests widen the crash window
	// with it); 0 = confirm at once.
	ConfirmDelay time.Duration
	Metrics      *Metrics     // nil = none
	Tracer       trace.Tracer // nil = none
	Log          *slog.Logger
	Now          func() time.Time
}

// change is one decoded change of a batch.
type change struct {
	table *snapshot.Table
	c     snapshot.Change
	meta  snapshot.Meta
	value []byte // the encoded record
	tx    *cdc.Tx
}

// ErrFatal marks an error a new stream cannot cure: the producer is fenced,
// a transaction is stuck, or a change cannot be mapped.
var ErrFatal = errors.New("fatal")

// Handler is the cdc.Handler of one stream: it confirms to that stream.
func (s *Sink) Handler(confirm func(cdc.LSN)) cdc.Handler {
	return func(ctx context.Context, txs []cdc.Tx) error { return s.Handle(ctx, txs, confirm) }
}

// Handle commits txs in one Kafka transaction, retrying a failed commit with
// backoff (nothing is confirmed meanwhile), then confirms the last
// transaction's commit LSN. A fenced producer or a transaction that could not
// be ended stops it with the error (the service exits; a restart re-delivers
// from the last confirmed position). A change it cannot map stops it too:
// skipping it would lose a change.
func (s *Sink) Handle(ctx context.Context, txs []cdc.Tx, confirm func(cdc.LSN)) error {
	if len(txs) == 0 {
		return nil
	}
	changes, err := s.decode(txs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	for _, tx := range txs {
		if len(tx.Truncated) > 0 {
			s.Log.WarnContext(ctx, "cdc: tables truncated; the next snapshot reconciles them", "tables", tx.Truncated,
				"commit_lsn", tx.CommitLSN.String())
		}
	}
	for len(changes) > 0 { // a batch of truncates only (or other tables) has nothing to commit
		err := s.attempt(ctx, changes)
		if err == nil {
			break
		}
		if stream.IsFatal(err) || errors.Is(err, snapshot.ErrTransactionStuck) {
			return fmt.Errorf("capture: %w: %w", ErrFatal, err)
		}
		s.Log.WarnContext(ctx, "cdc: Kafka commit failed; retrying, nothing confirmed", "err", err,
			"transactions", len(txs), "first_commit_lsn", txs[0].CommitLSN.String())
		if s.Metrics != nil {
			s.Metrics.retries.Add(ctx, 1)
		}
		if werr := s.Backoff.Wait(ctx); werr != nil {
			return werr
		}
	}
	s.Backoff.Reset()
	committed := s.now()
	if s.Metrics != nil {
		s.Metrics.batch(ctx, txs, changes, committed)
	}
	if s.ConfirmDelay > 0 {
		t := time.NewTimer(s.ConfirmDelay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err() // not confirmed: the next Run re-delivers
		case <-t.C:
		}
	}
	confirm(txs[len(txs)-1].CommitLSN)
	return nil
}

// decode maps and encodes every change of txs; the records do not depend on
// the state, so a retried commit sends the same bytes.
func (s *Sink) decode(txs []cdc.Tx) ([]change, error) {
	var out []change
	now := s.now().UTC()
	for i := range txs {
		tx := &txs[i]
		for _, c := range tx.Changes {
			schema, name, _ := strings.Cut(c.Table, ".")
			t, ok := snapshot.TableNamed(name)
			if !ok || schema != s.Schema {
				continue // not a catalog table (the publication names only these)
			}
			commit := c.CommitTime.UTC()
			meta := snapshot.Meta{Source: snapshot.SourceCDC, LSN: int64(c.LSN), Ordinal: c.Ordinal,
				ReadAt: commit, ChangedAt: &commit, SyncedAt: now}
			sc, err := toChange(t, c)
			if err != nil {
				return nil, fmt.Errorf("capture: %s at %s/%d: %w", c.Table, c.LSN, c.Ordinal, err)
			}
			b, err := s.Codecs[t.Name].Encode(t.Record(sc, meta))
			if err != nil {
				return nil, fmt.Errorf("capture: encode %s %s: %w", t.Name, sc.Key, err)
			}
			out = append(out, change{table: t, c: sc, meta: meta, value: b, tx: tx})
		}
	}
	return out, nil
}

// toChange maps a cdc.Change with the snapshot's row mapping. A delete's
// Row is the old row (REPLICA IDENTITY FULL): its updated_at is the delete
// record's.
func toChange(t *snapshot.Table, c cdc.Change) (snapshot.Change, error) {
	vals := make([]any, len(t.Columns))
	for i, col := range t.Columns {
		v, ok := c.Row[col]
		if !ok {
			return snapshot.Change{}, fmt.Errorf("no column %s (is the table REPLICA IDENTITY FULL?)", col)
		}
		a, err := v.Any()
		if err != nil {
			return snapshot.Change{}, fmt.Errorf("column %s: %w", col, err)
		}
		vals[i] = a
	}
	r, err := t.RowOf(vals)
	if err != nil {
		return snapshot.Change{}, err
	}
	if c.Op == cdc.OpDelete {
		return snapshot.Change{Key: r.Key, Op: snapshot.OpDelete,
			Entry: state.Entry{UpdatedAt: r.UpdatedAt}}, nil
	}
	return snapshot.Change{Key: r.Key, Op: snapshot.OpUpsert, Row: &r}, nil
}

// attempt commits one try of the batch: under State.Mu, so no snapshot page
// shares the transaction or decides on entries this batch is changing.
func (s *Sink) attempt(ctx context.Context, changes []change) (err error) {
	tracer := s.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	ctx, span := tracer.Start(ctx, SpanBatch, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
			attribute.Int("messaging.batch.message_count", len(changes))))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	s.State.Mu.Lock()
	defer s.State.Mu.Unlock()
	// The state entries this batch writes, last per key: an entry is
	// replaced only by a sequence not older than its own (a snapshot taken after a change
	// that CDC delivers late keeps its entry).
	type key struct{ table, key string }
	next := map[key]state.Entry{}
	var order []key
	recs := make([]*kgo.Record, 0, 2*len(changes))
	for _, ch := range changes {
		rec := &kgo.Record{Topic: s.Topics[ch.table.Name], Key: []byte(ch.c.Key), Value: ch.value}
		propagation.TraceContext{}.Inject(ctx, kotel.NewRecordCarrier(rec))
		recs = append(recs, rec)
		k := key{ch.table.Name, ch.c.Key}
		cur, ok := next[k]
		if !ok {
			cur, ok = s.State.Table(k.table)[k.key]
		} else {
			ok = true
		}
		seq := ch.meta.Seq()
		if !state.Replaces(seq, cur, ok) {
			continue
		}
		e := state.Entry{UpdatedAt: ch.c.Entry.UpdatedAt, Seq: seq, Deleted: true}
		if ch.c.Op == snapshot.OpUpsert {
			e = state.Entry{Hash: ch.c.Row.Hash, UpdatedAt: ch.c.Row.UpdatedAt, Seq: seq}
		}
		if _, seen := next[k]; !seen {
			order = append(order, k)
		}
		next[k] = e
	}
	for _, k := range order {
		recs = append(recs, state.EntryRecord(s.StateTopic, k.table, k.key, next[k]))
	}
	if err := s.Commit(ctx, recs); err != nil {
		return err
	}
	for _, k := range order {
		s.State.Table(k.table)[k.key] = next[k]
	}
	return nil
}

func (s *Sink) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
