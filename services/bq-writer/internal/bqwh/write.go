package bqwh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// outRow is one row bound for a raw table: its source offset and position within the record
// (the line number for order items) order it; vals are in writerColumns order.
type outRow struct {
	off  int64
	sub  int
	vals []any
}

type streamKey struct {
	p     warehouse.Partition
	table string
}

// work is what one Write does with one (partition, table).
type work struct {
	key     streamKey
	ts      *tableStream
	before  tableStream                   // the state before this Write, to restore on failure
	rows    [][]byte                      // serialized rows to append, in offset order
	dp      *descriptorpb.DescriptorProto // the rows' schema, for a writer reopened on the stream
	size    int64
	skipped int
}

// Write appends the batch's rows to the raw tables (see the package documentation) and returns
// the commit metadata of every partition in b.Positions. On error nothing is committed; a retry
// of the same batch appends each row once.
func (w *Warehouse) Write(ctx context.Context, group string, b warehouse.Batch) (warehouse.WriteResult, error) {
	var res warehouse.WriteResult
	if err := warehouse.ValidateBatch(group, b); err != nil {
		return res, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return res, warehouse.ErrClosed
	}
	for p := range b.Positions {
		if w.parts[p] == nil {
			return res, fmt.Errorf("bqwh: %s/%d is not claimed: no stream to name in its commit (Claim it, and commit the claim, before writing)", p.Topic, p.Partition)
		}
	}
	if err := w.dropStale(&b, &res); err != nil {
		return res, err
	}
	loadedAt := time.Now().UTC()
	byKey := map[streamKey][]outRow{}
	add := func(p warehouse.Partition, table string, r outRow) {
		k := streamKey{p, table}
		byKey[k] = append(byKey[k], r)
	}
	for i := range b.Events {
		r := &b.Events[i]
		add(warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}, TableEvents, outRow{off: r.SourceOffset, vals: eventValues(r, loadedAt)})
	}
	for i := range b.Orders {
		r := &b.Orders[i]
		p := warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}
		add(p, TableOrders, outRow{off: r.SourceOffset, vals: orderValues(r, loadedAt)})
		for n := range r.Items {
			add(p, TableOrderItems, outRow{off: r.SourceOffset, sub: n, vals: itemValues(r, n, loadedAt)})
		}
	}
	for i := range b.Products {
		r := &b.Products[i]
		add(warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}, TableProducts, outRow{off: r.SourceOffset, vals: productValues(r, loadedAt)})
	}
	for i := range b.Users {
		r := &b.Users[i]
		add(warehouse.Partition{Topic: r.SourceTopic, Partition: r.SourcePartition}, TableUsers, outRow{off: r.SourceOffset, vals: userValues(r, loadedAt)})
	}

	works := make([]*work, 0, len(byKey))
	for k, rows := range byKey {
		slices.SortStableFunc(rows, func(a, b outRow) int {
			return cmp.Or(cmp.Compare(a.off, b.off), cmp.Compare(a.sub, b.sub))
		})
		ts := w.parts[k.p][k.table]
		if ts == nil || ts.ms == nil {
			w.restore(works)
			return res, fmt.Errorf("bqwh: %s/%d has no claimed stream on %s: Claim the partition with the entity whose rows these are, and commit its metadata, before writing",
				k.p.Topic, k.p.Partition, k.table)
		}
		wk := &work{key: k, ts: ts, before: *ts}
		// The first rows are those already in the warehouse past the commit: skip them.
		wk.skipped = int(min(ts.owed(), int64(len(rows))))
		ts.skip(int64(wk.skipped))
		rows = rows[wk.skipped:]
		if len(rows) > 0 {
			s, err := w.schema(ctx, k.table)
			if err != nil {
				w.restore(append(works, wk))
				return res, err
			}
			wk.dp = s.dp
			wk.rows = make([][]byte, len(rows))
			for i := range rows {
				if wk.rows[i], err = s.encode(rows[i].vals); err != nil {
					w.restore(append(works, wk))
					return res, err
				}
				wk.size += int64(len(wk.rows[i]))
			}
		}
		works = append(works, wk)
	}

	var wg sync.WaitGroup
	errs := make([]error, len(works))
	for i, wk := range works {
		if len(wk.rows) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.appendAll(ctx, wk)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		w.restore(works)
		return res, err
	}

	for _, wk := range works {
		n := len(wk.rows)
		switch wk.key.table {
		case TableEvents:
			res.Inserted += n
			res.Stale += wk.skipped
		case TableOrders:
			res.Orders.Inserted += n
			res.Orders.Stale += wk.skipped
		case TableProducts:
			res.Products.Logged += n
			res.Products.Stale += wk.skipped
		case TableUsers:
			res.Users.Logged += n
			res.Users.Stale += wk.skipped
		}
		res.Bytes += wk.size
	}
	res.Commits = make(map[warehouse.Partition]string, len(b.Positions))
	for p := range b.Positions {
		md, err := w.commitMetadata(p)
		if err != nil {
			return warehouse.WriteResult{}, err
		}
		res.Commits[p] = md
	}
	w.posMu.Lock()
	for p, next := range b.Positions {
		w.positions[p] = warehouse.Position{Next: next, UpdatedAt: loadedAt}
	}
	w.posMu.Unlock()
	return res, nil
}

// firstError returns the appends' errors as one: a permanent one if any (a fenced or broken
// stream must stop the sink even when another stream only hit a transient error), else all of them.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil && !warehouse.IsTransient(err) {
			return err
		}
	}
	return errors.Join(errs...)
}

// restore makes the rows a failed Write appended owed: a retry of the batch skips them (and those
// it skipped itself) instead of appending them again. A Write never changes a stream (Claim
// opens them), so what it appended are the last rows of the stream.
func (w *Warehouse) restore(works []*work) {
	for _, wk := range works {
		wk.ts.owedOld = wk.before.owedOld
		wk.ts.owedHere = wk.before.owedHere + wk.ts.end - wk.before.end
	}
}

func (w *Warehouse) schema(ctx context.Context, table string) (*tableSchema, error) {
	if s := w.schemas[table]; s != nil {
		return s, nil
	}
	s, err := loadSchema(ctx, w.cfg.Catalog, table)
	if err != nil {
		return nil, err
	}
	w.schemas[table] = s
	return s, nil
}

// appendAll appends wk.rows to its stream in appends of at most MaxAppendBytes, each at an
// explicit offset, and waits for every acknowledgement.
func (w *Warehouse) appendAll(ctx context.Context, wk *work) error {
	ts := wk.ts
	for _, chunk := range split(wk.rows, w.cfg.MaxAppendBytes, w.maxRows) {
		start := time.Now()
		if err := w.appendOne(ctx, wk, chunk); err != nil {
			return fmt.Errorf("bqwh: append %d rows to %s at offset %d (%s/%d): %w", len(chunk), wk.key.table, ts.end, wk.key.p.Topic, wk.key.p.Partition, err)
		}
		ts.end += int64(len(chunk))
		var n int64
		for _, r := range chunk {
			n += int64(len(r))
		}
		w.m.appended(ctx, wk.key.table, len(chunk), n, time.Since(start).Seconds())
	}
	return nil
}

// openStream opens a new COMMITTED stream on table for partition p and makes it ts's stream.
func (w *Warehouse) openStream(ctx context.Context, p warehouse.Partition, table string, ts *tableStream) error {
	s, err := w.schema(ctx, table)
	if err != nil {
		return err
	}
	ms, err := w.client.NewManagedStream(ctx,
		managedwriter.WithDestinationTable(w.tablePath(table)),
		managedwriter.WithType(managedwriter.CommittedStream),
		managedwriter.WithSchemaDescriptor(s.dp),
		managedwriter.EnableWriteRetries(false))
	if err != nil {
		err = fmt.Errorf("bqwh: open a stream on %s for %s/%d: %w", table, p.Topic, p.Partition, err)
		if o := classify(err); o == outcomeRetry || o == outcomeAmbiguous {
			err = fmt.Errorf("%w: %w", warehouse.ErrTransient, err)
		}
		return err
	}
	ts.name, ts.ms, ts.end, ts.owedOld, ts.owedHere, ts.unsure = ms.StreamName(), ms, 0, 0, 0, unsureAppend{}
	w.m.stream(ctx, "opened")
	return nil
}

// split cuts rows into appends of at most maxBytes serialized bytes (a single larger row goes
// alone and the service judges it) and, when maxRows > 0, at most maxRows rows.
func split(rows [][]byte, maxBytes, maxRows int) [][][]byte {
	var out [][][]byte
	start, size := 0, 0
	for i, r := range rows {
		if i > start && (size+len(r) > maxBytes || (maxRows > 0 && i-start >= maxRows)) {
			out = append(out, rows[start:i])
			start, size = i, 0
		}
		size += len(r)
	}
	if start < len(rows) {
		out = append(out, rows[start:])
	}
	return out
}

// storageError returns the StorageError detail of err, or nil.
func storageError(err error) *storagepb.StorageError {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Proto().GetDetails() {
		se := &storagepb.StorageError{}
		if anypb.UnmarshalTo(d, se, proto.UnmarshalOptions{}) == nil {
			return se
		}
	}
	return nil
}

// defaultAppendTimeout bounds one append attempt, from sending it to its acknowledgement. An
// append of MaxAppendBytesLimit is acknowledged in seconds; a connection silent for this long is
// hung, and without the bound it would block Write (and with it w.mu: the rebalance and Close)
// for ever.
const defaultAppendTimeout = 2 * time.Minute

// errAppendTimeout marks an attempt that had no answer within retryPolicy.appendTimeout.
var errAppendTimeout = errors.New("no answer within the append timeout")

// unsureAppend is an append that failed ambiguously (UNAVAILABLE, a dropped connection or
// acknowledgement, no answer in time): rows rows at offset off that may or may not be stored.
type unsureAppend struct {
	off  int64
	rows int
}

// attemptState is what one attempt of an append leaves the next.
type attemptState struct {
	// reconnect: the last attempt had no answer in time; the next one goes to a new writer on
	// the stream (a new connection: the old one may be hung, and an append sent on it would
	// queue behind the one that hangs).
	reconnect bool
	// stuck: the hung attempt's send itself did not return, so it may hold the old connection's
	// lock; closing that writer would wait for it (see reopen).
	stuck bool
}

// appendOne appends rows at ts.end until it is acknowledged, retrying what retrying can fix.
//
// ALREADY_EXISTS says that the stream holds rows at the offset, not whose. It means "these rows
// are stored" only for a resend of exactly the append that may have landed unacknowledged (an
// ambiguous failure in this call, or in a failed Write before it: ts.unsure), at the same offset
// with the same number of rows. Any other ALREADY_EXISTS (a first send, or a resend after a
// refusal that stored nothing) means someone else wrote there: it is fatal.
func (w *Warehouse) appendOne(ctx context.Context, wk *work, rows [][]byte) error {
	ts := wk.ts
	this := unsureAppend{off: ts.end, rows: len(rows)}
	var st attemptState
	for attempt := 1; ; attempt++ {
		o, code, err := w.try(ctx, wk, rows, &st)
		if err == nil {
			ts.unsure = unsureAppend{}
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w (%w)", cerr, err)
		}
		switch o {
		case outcomeDone:
			if ts.unsure == this {
				// Our own resend: the append that may have landed did, and an append is all or
				// nothing.
				ts.unsure = unsureAppend{}
				return nil
			}
			hint := "no earlier attempt of this append may have landed"
			if ts.unsure.off == ts.end && ts.unsure.rows > 0 {
				hint = fmt.Sprintf("an earlier append of %d rows at this offset may have landed, this one has %d", ts.unsure.rows, len(rows))
			}
			return fmt.Errorf("bqwh: stream %s already holds rows at offset %d that this append did not store (%s): another writer on the stream, or a bug: %w",
				ts.name, ts.end, hint, err)
		case outcomeFenced:
			return fmt.Errorf("%w: %s: %w", ErrFenced, ts.name, err)
		case outcomeGone:
			return fmt.Errorf("bqwh: stream %s is gone: %w", ts.name, err)
		case outcomeRetry:
		case outcomeAmbiguous:
			// The append may or may not have been applied. Resending it at the same offset is
			// safe (the answer tells: done, ALREADY_EXISTS or STREAM_FINALIZED); first make sure
			// the stream still exists.
			ts.unsure = this
			gctx, cancel := context.WithTimeout(ctx, w.retry.getTimeout)
			_, gerr := w.client.GetWriteStream(gctx, &storagepb.GetWriteStreamRequest{Name: ts.name, View: storagepb.WriteStreamView_BASIC})
			cancel()
			if status.Code(gerr) == codes.NotFound {
				return fmt.Errorf("bqwh: stream %s is gone: %w", ts.name, err)
			}
		default:
			if code == codes.OutOfRange {
				return fmt.Errorf("bqwh: offset %d is past the end of %s (a bug, or another writer on the stream): %w", ts.end, ts.name, err)
			}
			return fmt.Errorf("bqwh: append to %s: %w", ts.name, err)
		}
		if attempt >= w.retry.attempts {
			if st.reconnect && w.reopen(ctx, wk, !st.stuck) != nil {
				// Left as it is: the next Write's first append times out and reopens again.
				w.log.WarnContext(ctx, "reconnecting after an append timeout failed", "stream", ts.name)
			}
			return fmt.Errorf("bqwh: append to %s gave up after %d attempts: %w: %w", ts.name, attempt, warehouse.ErrTransient, err)
		}
		w.m.retried(ctx, code.String())
		if errors.Is(err, errAppendTimeout) || (attempt == 1 && o == outcomeAmbiguous) {
			// A timeout has waited already. Otherwise the client reconnects on the next
			// append: retry at once (bqemulator fails every second append of a connection
			// this way).
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.retry.pause(attempt)):
		}
	}
}

// try makes one attempt of the append at ts.end, on a new writer when the last attempt had no
// answer in time, and says what its answer means. An attempt with no answer within the append
// timeout is ambiguous, with code DEADLINE_EXCEEDED.
func (w *Warehouse) try(ctx context.Context, wk *work, rows [][]byte, st *attemptState) (outcome, codes.Code, error) {
	ts := wk.ts
	if st.reconnect {
		if err := w.reopen(ctx, wk, !st.stuck); err != nil {
			// Nothing was sent: the next attempt reopens again.
			return outcomeRetry, status.Code(err), err
		}
		*st = attemptState{}
	}
	d := cmp.Or(w.retry.appendTimeout, defaultAppendTimeout)
	actx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	sent := false
	res, err := ts.ms.AppendRows(actx, rows, managedwriter.WithOffset(ts.end))
	if err == nil {
		sent = true
		_, err = res.GetResult(actx)
	}
	switch {
	case err == nil:
		return outcomeDone, codes.OK, nil
	case ctx.Err() == nil && actx.Err() != nil:
		*st = attemptState{reconnect: true, stuck: !sent}
		return outcomeAmbiguous, codes.DeadlineExceeded, fmt.Errorf("%w (%s): %w", errAppendTimeout, d, err)
	}
	return classify(err), status.Code(err), err
}

// reopen replaces ts.ms, whose connection had no answer in time, with a new writer, and so a new
// connection, on the same stream. The new writer outlives this Write as the one Claim opened does
// (Release and Close close it), so its context does not inherit ctx's end; opening it is bounded
// by getTimeout and by ctx. The old writer is closed when its send returned; a send that did not
// return may hold the old connection's lock, and closing the writer would wait for it while
// holding the client's router lock, stopping every stream's appends: that writer is left to the
// client's Close.
func (w *Warehouse) reopen(ctx context.Context, wk *work, closeOld bool) error {
	ts := wk.ts
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	timer := time.AfterFunc(w.retry.getTimeout, cancel)
	stop := context.AfterFunc(ctx, cancel)
	ms, err := w.client.NewManagedStream(octx,
		managedwriter.WithStreamName(ts.name),
		managedwriter.WithSchemaDescriptor(wk.dp),
		managedwriter.EnableWriteRetries(false))
	if inTime := timer.Stop(); !stop() || !inTime {
		// octx was cancelled: a writer opened on it is dead already.
		if err == nil {
			_ = ms.Close()
			err = cmp.Or(ctx.Err(), context.DeadlineExceeded)
		}
	}
	if err != nil {
		return fmt.Errorf("bqwh: reconnect to %s after an append timeout: %w", ts.name, err)
	}
	old := ts.ms
	ts.ms = ms
	if closeOld {
		_ = old.Close() // io.EOF on a normal close
	}
	w.m.stream(ctx, "reconnected")
	w.log.WarnContext(ctx, "an append had no answer within the append timeout; resending it at the same offset on a new connection",
		"stream", ts.name, "offset", ts.end, "timeout", cmp.Or(w.retry.appendTimeout, defaultAppendTimeout).String(), "old_writer_closed", closeOld)
	return nil
}

// pause is the wait before retry n (1-based): equal jitter on a capped exponential backoff, a
// uniform draw from [d/2, d] for d = min(base*2^(n-1), max). The jitter keeps the streams that hit
// the same quota from retrying in lockstep; the floor of d/2 keeps each one backing off.
func (p retryPolicy) pause(n int) time.Duration {
	return jitter(backoff(p.base, p.max, n), rand.N[time.Duration])
}

// backoff is min(base*2^(n-1), max), without overflow.
func backoff(base, maxD time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}

// jitter draws from [d/2, d] with draw, which returns a value in [0, n) for n > 0.
func jitter(d time.Duration, draw func(n time.Duration) time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + draw(d-half+1)
}

// outcome is what an append error means for the writer.
type outcome int

const (
	outcomeFatal     outcome = iota // retrying cannot help: OUT_OF_RANGE, row errors, bad requests
	outcomeDone                     // ALREADY_EXISTS: the rows are there
	outcomeFenced                   // the stream is finalized: a new owner claimed the partition
	outcomeGone                     // the stream does not exist
	outcomeRetry                    // the AppendRows quota: retry with backoff
	outcomeAmbiguous                // may or may not be applied: check the stream, retry at the same offset
)

// classify maps an append error to its outcome. BigQuery says finalized with a StorageError
// STREAM_FINALIZED; bqemulator with FAILED_PRECONDITION "Stream is FINALIZED" and no detail, and
// it answers NotFound with an empty entity on every second append of a connection.
func classify(err error) outcome {
	code := status.Code(err)
	se := storageError(err)
	switch {
	case se != nil && se.GetCode() == storagepb.StorageError_STREAM_FINALIZED,
		code == codes.FailedPrecondition && strings.Contains(strings.ToLower(err.Error()), "finalized"):
		return outcomeFenced
	case code == codes.AlreadyExists:
		return outcomeDone
	case code == codes.OutOfRange:
		return outcomeFatal
	case code == codes.ResourceExhausted && strings.Contains(err.Error(), "larger than max"):
		return outcomeFatal // over the request limit: BIGQUERY_MAX_APPEND_BYTES is too high
	case code == codes.ResourceExhausted:
		return outcomeRetry
	case code == codes.NotFound && se != nil && se.GetEntity() != "":
		return outcomeGone
	case code == codes.Unavailable, code == codes.Canceled, code == codes.DeadlineExceeded, code == codes.Aborted,
		code == codes.Internal, code == codes.Unknown, code == codes.NotFound:
		return outcomeAmbiguous
	}
	return outcomeFatal
}
