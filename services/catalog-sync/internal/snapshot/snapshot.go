// Package snapshot reads the catalog tables in one consistent PostgreSQL
// snapshot and sends what changed since the last run: every row whose
// content hash differs from the one in the state topic (or every row, for a
// backfill), and a delete for every key in the state that is no longer in
// the table. Each page's changes, its state records and the run's progress
// commit in one Kafka transaction, so a crash resumes the run where its
// last page ended and every change is sent once.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// Source is the database side of a run.
type Source interface {
	// Begin opens the run's snapshot (REPEATABLE READ, read only), a new
	// one for every run and every resumed run.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is one snapshot of the catalog tables.
type Tx interface {
	// LSN is the snapshot's boundary in the WAL, its records' source_lsn:
	// every transaction whose commit record precedes it is visible, none
	// after (PG: the consistent point of the slot that exported it).
	LSN() int64
	ReadAt() time.Time // the transaction's now()
	// Page returns up to limit rows of t with a key after after (all rows
	// from the first when first), in key order.
	Page(ctx context.Context, t *Table, after string, first bool, limit int) ([]Row, error)
	// Existing returns which of keys are rows of t.
	Existing(ctx context.Context, t *Table, keys []string) (map[string]bool, error)
	Close(ctx context.Context) error
}

// Rechecker is a Source that can also tell which keys are rows now,
// outside any snapshot. The delete pass asks it about the keys whose entry
// CDC wrote and that the snapshot does not see. A snapshot whose LSN is its
// exact boundary (PG's) never misses such a row; the recheck stays as a
// second guard, because a row wrongly deleted is a wrong current version
// downstream, and it costs a query only for those few keys. A row that
// exists now is left to CDC, which delivers every change after its entry.
type Rechecker interface {
	ExistingNow(ctx context.Context, t *Table, keys []string) (map[string]bool, error)
}

// Committer produces recs in one Kafka transaction and commits it; nothing
// of recs is visible when it fails.
type Committer func(ctx context.Context, recs []*kgo.Record) error

// Change is one record to send.
type Change struct {
	Key   string
	Op    string      // OpUpsert, OpDelete, or OpForget (no record: the state entry goes)
	Row   *Row        // an upsert's row
	Entry state.Entry // a delete's last state
}

// OpForget removes a deleted marker (state.Entry.Deleted) from the state
// without sending anything: the delete was sent by CDC, and this snapshot,
// newer than it, confirms the row is gone.
const OpForget = "forget"

// Upserts are the rows of a page, read in a snapshot with sequence seq,
// that differ from what st says was last sent (every row when full). A row
// whose entry is newer than seq (a CDC change committed after the snapshot
// was taken) is left alone: the snapshot's view of it is older.
func Upserts(rows []Row, st map[string]state.Entry, full bool, seq state.Seq) []Change {
	var out []Change
	for i := range rows {
		e, ok := st[rows[i].Key]
		if !state.Replaces(seq, e, ok) || staleView(rows[i], e, ok) {
			continue
		}
		if full || !ok || e.Deleted || e.Hash != rows[i].Hash {
			out = append(out, Change{Key: rows[i].Key, Op: OpUpsert, Row: &rows[i]})
		}
	}
	return out
}

// staleView reports a row whose updated_at is older than the one of the
// CDC change its entry records: the snapshot missed that change although its
// LSN is newer. A snapshot whose LSN is its exact boundary (PG's) cannot;
// the check stays as a second guard (it costs a comparison). updated_at is
// set by the trigger on every write, so a later write of the row never
// carries an earlier one.
func staleView(r Row, e state.Entry, ok bool) bool {
	return ok && e.Seq.Ordinal > 0 && !e.Deleted && r.UpdatedAt.Before(e.UpdatedAt)
}

// Deletes are the keys of st among keys that are no longer rows in a
// snapshot with sequence seq: a delete for a row that was sent, a forget
// for a deleted marker. Entries newer than seq are left alone (a row CDC
// inserted after the snapshot was taken is not in it, yet exists).
func Deletes(keys []string, existing map[string]bool, st map[string]state.Entry, seq state.Seq) []Change {
	var out []Change
	for _, k := range keys {
		e, ok := st[k]
		if !ok || existing[k] || !state.Replaces(seq, e, ok) {
			continue
		}
		op := OpDelete
		if e.Deleted {
			op = OpForget
		}
		out = append(out, Change{Key: k, Op: op, Entry: e})
	}
	return out
}

// Page is what one committed page did, for the run's counters and metrics.
type Page struct {
	Table    string
	RowsRead int
	Upserts  int
	Deletes  int
}

// Runner runs snapshots against one state. It is not safe for concurrent
// runs: the run manager runs one at a time.
type Runner struct {
	Source     Source
	Commit     Committer
	State      *state.State // as loaded after fencing; kept up to date with every commit
	StateTopic string
	Topics     map[string]string         // table -> topic
	Codecs     map[string]stream.Encoder // table -> Avro codec of its topic's subject
	PageSize   int
	// ProgressEvery bounds how many pages without changes may pass without
	// committing the progress: re-reading them after a crash sends nothing.
	ProgressEvery int
	Now           func() time.Time
	// Tracer starts one span (SpanPage) per committed page, a trace of its
	// own whose context every record of the page carries; nil = none.
	Tracer trace.Tracer
	OnPage func(Page) // after each committed page; nil = none
	// AfterCommit, when set, runs after each committed transaction; an
	// error stops the run there (tests inject crashes with it).
	AfterCommit func(p state.Progress) error
}

// SpanPage is the span of one page's transaction; its attributes name the
// run (AttrRun), the table and the records sent.
const (
	SpanPage = "catalog.snapshot.page"
	AttrRun  = "ecom.catalog.run_id"
)

// Start is the progress of a new run of tables from their first row.
func Start(id, trigger string, tables []string, full bool, now time.Time) state.Progress {
	return state.Progress{RunID: id, Tables: tables, Full: full, Trigger: trigger, Started: now.UTC(),
		Table: tables[0], Phase: state.PhaseRows}
}

// Run runs the snapshot from p (a new run's Start, or an interrupted run's
// progress from the state topic) to its end, when it commits the progress
// tombstone.
func (r *Runner) Run(ctx context.Context, p state.Progress) (err error) {
	if len(p.Tables) == 0 {
		return errors.New("snapshot: no tables")
	}
	begin := slices.Index(p.Tables, p.Table)
	if begin < 0 {
		return fmt.Errorf("snapshot: progress names table %q outside the run's %v", p.Table, p.Tables)
	}
	tx, err := r.Source.Begin(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: begin: %w", err)
	}
	defer func() {
		if cerr := tx.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("snapshot: close: %w", cerr)
		}
	}()
	meta := Meta{Source: SourceSnapshot, LSN: tx.LSN(), ReadAt: tx.ReadAt().UTC()}
	if p.Full {
		meta.Source = SourceBackfill
	}
	for _, name := range p.Tables[begin:] {
		t, ok := TableNamed(name)
		if !ok {
			return fmt.Errorf("snapshot: unknown table %q", name)
		}
		if p.Table != name { // the next table, from its start
			p.Table, p.Phase, p.After = name, state.PhaseRows, ""
		}
		if p.Phase == state.PhaseRows {
			if err := r.rows(ctx, tx, t, &p, meta); err != nil {
				return err
			}
			p.Phase, p.After = state.PhaseDeletes, ""
			if err := r.deletes(ctx, tx, t, &p, meta, false); err != nil {
				return err
			}
		} else if err := r.deletes(ctx, tx, t, &p, meta, true); err != nil {
			return err
		}
	}
	r.State.Mu.Lock()
	defer r.State.Mu.Unlock()
	if err := r.commit(ctx, []*kgo.Record{state.ProgressRecord(r.StateTopic, nil)}, p); err != nil {
		return err
	}
	r.State.Progress = nil
	return nil
}

// rows sends the changed rows of t after p.After, a page per transaction.
func (r *Runner) rows(ctx context.Context, tx Tx, t *Table, p *state.Progress, meta Meta) error {
	r.State.Mu.Lock()
	st := r.State.Table(t.Name) // the map is read and written only under the lock
	r.State.Mu.Unlock()
	first := p.After == ""
	unsaved := 0
	for {
		rows, err := tx.Page(ctx, t, p.After, first, r.PageSize)
		if err != nil {
			return fmt.Errorf("snapshot: read %s: %w", t.Name, err)
		}
		if len(rows) == 0 {
			return nil
		}
		first = false
		next := *p
		next.After = rows[len(rows)-1].Key
		unsaved++
		r.State.Mu.Lock()
		changes := Upserts(rows, st, p.Full, meta.Seq())
		if len(changes) > 0 || unsaved >= max(r.ProgressEvery, 1) {
			if err := r.send(ctx, t, changes, next, meta); err != nil {
				r.State.Mu.Unlock()
				return err
			}
			unsaved = 0
		}
		r.State.Mu.Unlock()
		*p = next
		if r.OnPage != nil {
			r.OnPage(Page{Table: t.Name, RowsRead: len(rows), Upserts: len(changes)})
		}
		if len(rows) < r.PageSize {
			return nil
		}
	}
}

// deletes sends a delete for every key of t's state that is no longer a row,
// checking the keys in byte order a page at a time (after p.After when
// resuming). The check is by key equality, so it does not depend on the
// column's collation.
func (r *Runner) deletes(ctx context.Context, tx Tx, t *Table, p *state.Progress, meta Meta, resume bool) error {
	r.State.Mu.Lock()
	st := r.State.Table(t.Name)
	keys := make([]string, 0, len(st))
	for k := range st {
		if !resume || k > p.After {
			keys = append(keys, k)
		}
	}
	r.State.Mu.Unlock()
	slices.Sort(keys)
	for len(keys) > 0 {
		n := min(len(keys), r.PageSize)
		batch := keys[:n]
		keys = keys[n:]
		existing, err := tx.Existing(ctx, t, batch)
		if err != nil {
			return fmt.Errorf("snapshot: check %s keys: %w", t.Name, err)
		}
		if err := r.recheck(ctx, t, st, batch, existing); err != nil {
			return err
		}
		next := *p
		next.After = batch[n-1]
		// The entries are compared again under the lock: CDC may have
		// changed them since the keys were listed.
		r.State.Mu.Lock()
		changes := Deletes(batch, existing, st, meta.Seq())
		if len(changes) > 0 {
			if err := r.send(ctx, t, changes, next, meta); err != nil {
				r.State.Mu.Unlock()
				return err
			}
		}
		r.State.Mu.Unlock()
		*p = next
		deletes := 0
		for _, c := range changes {
			if c.Op == OpDelete {
				deletes++
			}
		}
		if r.OnPage != nil && deletes > 0 {
			r.OnPage(Page{Table: t.Name, Deletes: deletes})
		}
	}
	return nil
}

// recheck adds to existing the keys of batch whose entry CDC wrote, that
// the snapshot does not see and that are rows now (Rechecker).
func (r *Runner) recheck(ctx context.Context, t *Table, st map[string]state.Entry, batch []string, existing map[string]bool) error {
	rc, ok := r.Source.(Rechecker)
	if !ok {
		return nil
	}
	var keys []string
	r.State.Mu.Lock()
	for _, k := range batch {
		if e, ok := st[k]; ok && !existing[k] && !e.Deleted && e.Seq.Ordinal > 0 {
			keys = append(keys, k)
		}
	}
	r.State.Mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	now, err := rc.ExistingNow(ctx, t, keys)
	if err != nil {
		return fmt.Errorf("snapshot: recheck %s keys: %w", t.Name, err)
	}
	for k, ok := range now {
		if ok {
			existing[k] = true
		}
	}
	return nil
}

// send commits changes of t with their state records and progress next in
// one transaction, then applies them to the state. The caller holds
// r.State.Mu.
func (r *Runner) send(ctx context.Context, t *Table, changes []Change, next state.Progress, meta Meta) (err error) {
	topic := r.Topics[t.Name]
	tracer := r.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	ctx, span := tracer.Start(ctx, SpanPage, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic), attribute.String(AttrRun, next.RunID),
			attribute.String("ecom.catalog.table", t.Name), attribute.String("ecom.catalog.phase", next.Phase),
			attribute.Int("messaging.batch.message_count", len(changes))))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	codec := r.Codecs[t.Name]
	meta.SyncedAt = r.now().UTC()
	recs := make([]*kgo.Record, 0, 2*len(changes)+1)
	for _, c := range changes {
		if c.Op == OpForget {
			recs = append(recs, state.Tombstone(r.StateTopic, t.Name, c.Key))
			continue
		}
		b, err := codec.Encode(t.Record(c, meta))
		if err != nil {
			return fmt.Errorf("snapshot: encode %s %s: %w", t.Name, c.Key, err)
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(c.Key), Value: b}
		propagation.TraceContext{}.Inject(ctx, kotel.NewRecordCarrier(rec))
		recs = append(recs, rec)
		if c.Op == OpDelete {
			recs = append(recs, state.Tombstone(r.StateTopic, t.Name, c.Key))
		} else {
			recs = append(recs, state.EntryRecord(r.StateTopic, t.Name, c.Key, state.Entry{Hash: c.Row.Hash, UpdatedAt: c.Row.UpdatedAt, Seq: meta.Seq()}))
		}
	}
	next.Committed = meta.SyncedAt
	if err := r.commit(ctx, append(recs, state.ProgressRecord(r.StateTopic, &next)), next); err != nil {
		return err
	}
	r.State.Progress = &next
	st := r.State.Table(t.Name)
	for _, c := range changes {
		if c.Op == OpUpsert {
			st[c.Key] = state.Entry{Hash: c.Row.Hash, UpdatedAt: c.Row.UpdatedAt, Seq: meta.Seq()}
		} else {
			delete(st, c.Key)
		}
	}
	return nil
}

func (r *Runner) commit(ctx context.Context, recs []*kgo.Record, p state.Progress) error {
	if err := r.Commit(ctx, recs); err != nil {
		return fmt.Errorf("snapshot: commit %s %s after %q: %w", p.Table, p.Phase, p.After, err)
	}
	if r.AfterCommit != nil {
		return r.AfterCommit(p)
	}
	return nil
}

func (r *Runner) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}
