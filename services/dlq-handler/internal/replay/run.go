package replay

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/pkg/stream"
)

// Timings of Run.
var (
	lockRetry = 2 * time.Second        // a standby replica tries the lock this often
	idlePoll  = 500 * time.Millisecond // the leader looks for rows planned by other replicas this often
	errPause  = time.Second            // after a failed round
)

// lockSQL takes the sender's advisory lock, one per store schema: only
// the replica holding it sends and resolves.
const lockSQL = "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.dlq-replay-sender'))"

// Run sends the outbox and settles outcomes until ctx ends. Only one
// replica does it at a time: Run holds a session advisory lock on a
// connection of its own and does all its work on that connection, so a
// lost connection (and with it the lock, which another replica may then
// take) also stops this one's work. A standby retries the lock every
// lockRetry. Errors of a round are logged and the round retried.
func (s *Service) Run(ctx context.Context) error {
	if s.kafka == nil {
		return errors.New("replay: Run needs a Kafka cluster (Deps.Kafka)")
	}
	for {
		err := s.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		pause := lockRetry
		if err != nil {
			s.log.WarnContext(ctx, "replay sender stopped; retrying", "err", err)
			pause = errPause
		}
		if sleep(ctx, pause) != nil {
			return nil
		}
	}
}

// lead takes the lock and, holding it, sends (on the locked connection)
// and resolves (beside it, on the pool); it returns nil at once when
// another replica holds the lock.
func (s *Service) lead(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, lockSQL).Scan(&got); err != nil {
		conn.Release()
		return fmt.Errorf("advisory lock: %w", err)
	}
	if !got {
		conn.Release()
		return nil
	}
	// Closing the connection releases the lock; it is never handed back to
	// the pool holding it.
	defer func() { _ = conn.Conn().Close(context.WithoutCancel(ctx)); conn.Release() }()
	s.log.InfoContext(ctx, "replay sender leads (advisory lock taken): sending what is recorded and unsent")
	l := newLeader(s, conn)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.resolveLoop(rctx) }()
	defer func() { stop(); wg.Wait() }()
	for {
		sent, err := l.sendBatch(ctx)
		if err != nil {
			return err
		}
		if sent > 0 {
			continue
		}
		t := time.NewTimer(idlePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// leader is the sender of the replica holding the lock. Its rate limit is
// a token bucket per target topic at DLQ_REPLAY_RATE, shared by every job
// sending to the topic (jobs are no way around it: a thousand single-id
// requests get no more than one), and, for a job whose rate is lower, a
// bucket of the job's as well.
type leader struct {
	s      *Service
	conn   *pgxpool.Conn
	topics map[string]*bucket // by target topic, at DLQ_REPLAY_RATE
	jobs   map[string]*bucket // by job, for a job rate below DLQ_REPLAY_RATE
}

func newLeader(s *Service, conn *pgxpool.Conn) *leader {
	return &leader{s: s, conn: conn, topics: map[string]*bucket{}, jobs: map[string]*bucket{}}
}

// outRow is a recorded, unsent replay.
type outRow struct {
	id      string
	attempt int32
	job     *string
	topic   string
	key     []byte
	value   []byte
	headers []byte
	purged  bool
	cut     string // truncatedSQL
	rate    float64
	outcome string
}

// batchSize is how many unsent rows one query reads; maxBuckets bounds
// the jobs' buckets kept.
const (
	batchSize  = 500
	maxBuckets = 1000
)

// sendBatch sends up to batchSize unsent rows, in the order recorded, and
// returns how many it took.
func (l *leader) sendBatch(ctx context.Context) (int, error) {
	s := l.s
	rows, err := l.conn.Query(ctx, `SELECT r.dead_letter_id, r.attempt, r.job_id, r.target_topic, d.original_key, d.original_value,
		d.original_headers, d.pii_purged_at IS NOT NULL, `+truncatedSQL+`, coalesce(j.rate_limit, $1), r.outcome
		FROM replays r JOIN dead_letters d USING (dead_letter_id) LEFT JOIN replay_jobs j USING (job_id)
		WHERE r.sent_at IS NULL ORDER BY r.requested_at, r.job_id, r.dead_letter_id LIMIT $2`, s.cfg.Rate, batchSize)
	if err != nil {
		return 0, fmt.Errorf("read the outbox: %w", err)
	}
	var out []outRow
	var r outRow
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.attempt, &r.job, &r.topic, &r.key, &r.value, &r.headers, &r.purged, &r.cut, &r.rate, &r.outcome}, func() error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read the outbox: %w", err)
	}
	var inflight []*flight
	flushMark := func() error {
		if len(inflight) == 0 {
			return nil
		}
		err := l.flushAndMark(ctx, inflight)
		inflight = inflight[:0]
		return err
	}
	// At the end (ctx cancelled) what was produced is still marked.
	defer func() {
		if len(inflight) > 0 {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = l.flushAndMark(ctx, inflight)
		}
	}()
	for _, r := range out {
		if r.outcome != "pending" {
			// Produced before a crash and settled since (store.Write found
			// the stage's new dead letter of it: failed_again): sending it
			// again would replay a record already rejected again. It is
			// marked sent (with no position: that was not recorded) and
			// keeps its outcome.
			if err := flushMark(); err != nil {
				return 0, err
			}
			if err := l.mark(ctx, []*flight{{row: r}}); err != nil {
				return 0, err
			}
			continue
		}
		if r.purged {
			if err := flushMark(); err != nil {
				return 0, err
			}
			if err := l.withdraw(ctx, r, "its original was purged by the pii retention before it was sent"); err != nil {
				return 0, err
			}
			continue
		}
		rec, err := Record(r.topic, r.key, r.value, r.headers, r.id, r.attempt)
		if err == nil && r.cut != "" {
			// Planned before the planner refused cut originals.
			rec, err = nil, truncatedError(r.cut)
		}
		if err != nil {
			if err := flushMark(); err != nil {
				return 0, err
			}
			if err := l.withdraw(ctx, r, err.Error()); err != nil {
				return 0, err
			}
			continue
		}
		if l.wouldWait(r, time.Now()) {
			// Mark what is produced before waiting: at a slow rate, at most
			// the one in flight is unmarked.
			if err := flushMark(); err != nil {
				return 0, err
			}
		}
		if err := sleep(ctx, l.reserve(r, time.Now())); err != nil {
			return 0, nil
		}
		f := &flight{row: r, done: make(chan struct{})}
		s.kafka.Produce(ctx, rec, func(got *kgo.Record, err error) {
			f.rec, f.err = got, err
			close(f.done)
		})
		inflight = append(inflight, f)
		if len(inflight) >= s.cfg.InFlight {
			if err := flushMark(); err != nil {
				return 0, err
			}
		}
	}
	if err := flushMark(); err != nil {
		return 0, err
	}
	return len(out), nil
}

// buckets returns r's buckets: its topic's and, when its job's rate is
// below DLQ_REPLAY_RATE, its job's.
func (l *leader) buckets(r outRow, now time.Time) []*bucket {
	t, ok := l.topics[r.topic]
	if !ok {
		if len(l.topics) >= maxBuckets {
			clear(l.topics) // a full bucket again is at most one burst more
		}
		t = newBucket(l.s.cfg.Rate, now)
		l.topics[r.topic] = t
	}
	if r.job == nil || r.rate >= l.s.cfg.Rate {
		return []*bucket{t}
	}
	j, ok := l.jobs[*r.job]
	if !ok || j.rate != r.rate {
		if len(l.jobs) >= maxBuckets {
			clear(l.jobs) // jobs are sent one after the other: the old ones are done
		}
		j = newBucket(r.rate, now)
		l.jobs[*r.job] = j
	}
	return []*bucket{t, j}
}

// reserve takes a token of each of r's buckets and returns how long to
// wait before producing r.
func (l *leader) reserve(r outRow, now time.Time) time.Duration {
	var d time.Duration
	for _, b := range l.buckets(r, now) {
		d = max(d, b.reserve(now))
	}
	return d
}

// wouldWait reports whether r would wait for a token.
func (l *leader) wouldWait(r outRow, now time.Time) bool {
	for _, b := range l.buckets(r, now) {
		if b.wouldWait(now) {
			return true
		}
	}
	return false
}

// flight is a produced record awaiting its ack.
type flight struct {
	row  outRow
	rec  *kgo.Record
	err  error
	done chan struct{}
}

// flushAndMark waits for the acks and marks the sent rows in one
// transaction; a record the cluster refuses for good is withdrawn, one
// that failed otherwise (the brokers are away) stays unsent and the round
// fails (retried).
func (l *leader) flushAndMark(ctx context.Context, fs []*flight) error {
	_ = l.s.kafka.Flush(ctx)
	for _, f := range fs {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var sent []*flight
	var firstErr error
	for _, f := range fs {
		switch {
		case f.err == nil:
			sent = append(sent, f)
		case permanent(f.err):
			if err := l.withdraw(ctx, f.row, fmt.Sprintf("topic %s refused it: %v", f.row.topic, f.err)); err != nil {
				return err
			}
		case firstErr == nil:
			firstErr = fmt.Errorf("produce %s to %s: %w", f.row.id, f.row.topic, f.err)
		}
	}
	if len(sent) > 0 {
		if err := l.mark(ctx, sent); err != nil {
			return err
		}
	}
	return firstErr
}

// permanent reports whether a produce error repeats on retry.
func permanent(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.MessageTooLarge) ||
		errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidTopicException) || errors.Is(err, kerr.InvalidRecord)
}

func (l *leader) mark(ctx context.Context, fs []*flight) error {
	jobs := map[string]int{}
	// replays rows in (dead_letter_id, attempt) order, then the jobs in id
	// order: the lock order of store.Write (dead_letters, then each one's
	// replays row, by dead_letter_id) and the resolver.
	fs = slices.Clone(fs)
	slices.SortFunc(fs, func(a, b *flight) int {
		return cmp.Or(strings.Compare(a.row.id, b.row.id), cmp.Compare(a.row.attempt, b.row.attempt))
	})
	err := pgx.BeginFunc(ctx, l.conn, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, f := range fs {
			var partition *int32
			var offset *int64
			if f.rec != nil {
				partition, offset = &f.rec.Partition, &f.rec.Offset
			}
			// Only a pending replay becomes sent: store.Write may have set
			// failed_again already (the stage rejected the record again
			// before this mark), which must stay.
			b.Queue(`UPDATE replays SET sent_at = now(), target_partition = $3, target_offset = $4,
				outcome = CASE WHEN outcome = 'pending' THEN 'sent' ELSE outcome END
				WHERE dead_letter_id = $1 AND attempt = $2 AND sent_at IS NULL`, f.row.id, f.row.attempt, partition, offset)
			if f.row.job != nil {
				jobs[*f.row.job]++
			}
		}
		for _, job := range slices.Sorted(maps.Keys(jobs)) {
			n := jobs[job]
			b.Queue(`UPDATE replay_jobs SET sent = sent + $2,
				state = CASE WHEN state = 'running' AND sent + $2 >= total THEN (CASE WHEN error IS NULL THEN 'succeeded' ELSE 'failed' END) ELSE state END,
				finished_at = CASE WHEN state = 'running' AND sent + $2 >= total THEN now() ELSE finished_at END
				WHERE job_id = $1`, job, n)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("mark %d replays sent: %w", len(fs), err)
	}
	l.s.m.sent(ctx, len(fs))
	return nil
}

// withdraw takes back a replay that cannot be sent: its row goes, the dead
// letter is new again, and the job records why (and counts one less).
func (l *leader) withdraw(ctx context.Context, r outRow, why string) error {
	msg := fmt.Sprintf("%s (attempt %d) not replayed: %s", r.id, r.attempt, why)
	l.s.log.WarnContext(ctx, "replay withdrawn", "dead_letter_id", r.id, "attempt", r.attempt, "reason", why)
	err := pgx.BeginFunc(ctx, l.conn, func(tx pgx.Tx) error {
		// dead_letters before replays, the order every writer locks them in
		// (several rows: by dead_letter_id; here one).
		if _, err := tx.Exec(ctx, "UPDATE dead_letters SET state = 'new', state_changed_at = now() WHERE dead_letter_id = $1 AND state = 'replayed'", r.id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM replays WHERE dead_letter_id = $1 AND attempt = $2 AND sent_at IS NULL", r.id, r.attempt); err != nil {
			return err
		}
		if r.job == nil {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE replay_jobs SET total = total - 1,
			error = left(coalesce(error || E'\n', '') || $2, $3),
			state = CASE WHEN state = 'running' AND sent >= total - 1 THEN 'failed' ELSE state END,
			finished_at = CASE WHEN state = 'running' AND sent >= total - 1 THEN now() ELSE finished_at END
			WHERE job_id = $1`, *r.job, msg, maxError)
		return err
	})
	if err != nil {
		return fmt.Errorf("withdraw the replay of %s: %w", r.id, err)
	}
	l.s.m.withdrawn(ctx)
	return nil
}

// Record builds the replayed record: the original key, value and headers
// (stored as [{"key", "value": base64}]) after ReplayOfHeader = id and
// ReplayAttemptHeader = attempt, which replace headers of those names.
func Record(topic string, key, value, headersJSON []byte, id string, attempt int32) (*kgo.Record, error) {
	var hs []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if len(headersJSON) > 0 {
		if err := json.Unmarshal(headersJSON, &hs); err != nil {
			return nil, fmt.Errorf("its original headers cannot be read: %w", err)
		}
	}
	// The replay headers first: a stage's dead letter of this record keeps
	// them whole (deadletter.Envelope, Minimal), and they are what makes its
	// rejection failed_again rather than resolved.
	rec := &kgo.Record{Topic: topic, Key: key, Value: value, Headers: []kgo.RecordHeader{
		{Key: stream.ReplayOfHeader, Value: []byte(id)},
		{Key: stream.ReplayAttemptHeader, Value: []byte(strconv.Itoa(int(attempt)))}}}
	for _, h := range hs {
		if h.Key == stream.ReplayOfHeader || h.Key == stream.ReplayAttemptHeader {
			continue
		}
		v, err := base64.StdEncoding.DecodeString(h.Value)
		if err != nil {
			return nil, fmt.Errorf("its original header %q is not base64: %w", h.Key, err)
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: v})
	}
	return rec, nil
}
