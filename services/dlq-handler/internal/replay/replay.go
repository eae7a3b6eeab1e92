package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// ErrNotFound is Job's error for an unknown job id.
var ErrNotFound = errors.New("replay job not found")

// Limits of a request.
const (
	MaxIDs     = 1000 // ids per request; replay more by filter
	MaxRefused = 100  // refused dead letters listed in a Result
	maxJobs    = 200  // jobs per Jobs call
	maxError   = 4000 // characters of a job's error
)

// Service plans replays (Replay), shows their jobs (Job, Jobs) and, in Run,
// sends the outbox and settles the outcomes.
type Service struct {
	pool   *pgxpool.Pool
	cfg    Config
	topics map[string]string // DLQ_REPLAY_TOPICS
	groups map[string]string // DLQ_STAGE_GROUPS
	kafka  Cluster
	dlq    DLQ
	log    *slog.Logger
	now    func() time.Time
	wake   chan struct{}
	m      *metrics
}

// DLQ names what the resolver checks before it calls a replay resolved:
// dlq-handler's own topic and consumer group (positions in the store).
type DLQ struct {
	Topic string
	Group string
}

// Deps are what a Service works with besides its Config.
type Deps struct {
	Pool  *pgxpool.Pool // search_path = the store's schema
	Kafka Cluster       // produces replays, reads groups' offsets; nil = Replay, Job and Jobs only (Run refuses)
	DLQ   DLQ
	Meter Meter // nil = no metrics
	Log   *slog.Logger
	Now   func() time.Time
}

// New returns the service; cfg must be valid (Validate).
func New(cfg Config, d Deps) (*Service, error) {
	if d.Pool == nil {
		return nil, errors.New("replay: a pool is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	topics, _ := ParsePairs("DLQ_REPLAY_TOPICS", cfg.Topics)
	groups, _ := ParsePairs("DLQ_STAGE_GROUPS", cfg.StageGroups)
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	m, err := newMetrics(d.Meter)
	if err != nil {
		return nil, err
	}
	return &Service{pool: d.Pool, cfg: cfg, topics: topics, groups: groups, kafka: d.Kafka, dlq: d.DLQ, log: d.Log, now: d.Now,
		wake: make(chan struct{}, 1), m: m}, nil
}

// validate checks req like a discard request (a *query.Error names the
// parameter) and returns the job's rate: DLQ_REPLAY_RATE, or the request's
// when lower.
func (req *Request) validate(maxRate float64) (float64, error) {
	switch {
	case (len(req.IDs) > 0) == (req.Filter != nil):
		return 0, &query.Error{Param: "ids", Msg: "give either ids or filter"}
	case len(req.IDs) > MaxIDs:
		return 0, &query.Error{Param: "ids", Msg: fmt.Sprintf("at most %d ids per request; replay more by filter", MaxIDs)}
	case req.Filter != nil && req.Filter.Empty():
		return 0, &query.Error{Param: "filter", Msg: "an empty filter would select every dead letter; narrow it"}
	case math.IsNaN(req.Rate) || math.IsInf(req.Rate, 0) || req.Rate < 0:
		return 0, &query.Error{Param: "rate", Msg: "must be a number of records per second, 0 = the service's DLQ_REPLAY_RATE"}
	case req.Filter != nil:
		if err := req.Filter.Validate(); err != nil {
			var qe *query.Error
			if errors.As(err, &qe) {
				return 0, &query.Error{Param: "filter." + qe.Param, Msg: qe.Msg}
			}
			return 0, err
		}
	}
	for _, id := range req.IDs {
		if id == "" {
			return 0, &query.Error{Param: "ids", Msg: "an id is empty"}
		}
	}
	if req.Rate == 0 || req.Rate > maxRate {
		return maxRate, nil
	}
	return req.Rate, nil
}

// candidate is a dead letter a replay considers.
type candidate struct {
	id       string
	state    string
	attempt  int32
	stage    string
	source   string
	purged   bool
	failedAt time.Time
	cut      string // the original's parts cut to fit the dead-letter topic (truncatedSQL), "" when whole
	target   string
	refusal  error
}

// plan splits replayable candidates into those to send (target set) and
// the refused.
func (s *Service) plan(cs []candidate) (send []candidate, refused []Refused, n int) {
	for _, c := range cs {
		t, err := Target(s.topics, c.stage, c.source, c.purged)
		if err == nil && c.cut != "" {
			err = truncatedError(c.cut)
		}
		if err != nil {
			n++
			if len(refused) < MaxRefused {
				refused = append(refused, Refused{ID: c.id, Reason: err.Error()})
			}
			continue
		}
		c.target = t
		send = append(send, c)
	}
	return send, refused, n
}

// truncatedSQL names the parts of a dead letter's original its envelope
// cut (deadletter.Truncated: an OVERSIZED reason whose field is an
// original's part, or "original" for the minimal envelope), comma-separated,
// "" when it holds the original whole. Such a dead letter cannot be
// replayed from the store: a cut value is a different record, a cut key
// routes it to another partition, cut headers lose the trace and the
// replay headers.
var truncatedSQL = fmt.Sprintf(`coalesce((SELECT string_agg(DISTINCT e->>'field', ',' ORDER BY e->>'field') FROM jsonb_array_elements(reasons) e
	WHERE e->>'code' = '%s' AND e->>'field' IN ('%s', '%s', '%s', '%s')), '')`,
	deadletter.Oversized, deadletter.FieldOriginalValue, deadletter.FieldOriginalKey, deadletter.FieldOriginalHeaders, deadletter.FieldOriginal)

// truncatedError is why a dead letter whose original was cut (cut: its
// parts) is not replayed.
func truncatedError(cut string) error {
	return fmt.Errorf("its original was cut to fit the dead-letter topic (OVERSIZED: %s): the dead letter does not hold the record to replay; "+
		"re-send it from its source topic at source_partition/source_offset, or discard it", cut)
}

var candidateCols = "dead_letter_id, state, attempt, stage, source_topic, pii_purged_at IS NOT NULL, failed_at, " + truncatedSQL

func scanCandidates(rows pgx.Rows) ([]candidate, error) {
	var out []candidate
	var c candidate
	_, err := pgx.ForEachRow(rows, []any{&c.id, &c.state, &c.attempt, &c.stage, &c.source, &c.purged, &c.failedAt, &c.cut}, func() error {
		out = append(out, c)
		return nil
	})
	// Locked in dead_letter_id order; planned (sent) oldest first.
	slices.SortStableFunc(out, func(a, b candidate) int { return a.failedAt.Compare(b.failedAt) })
	return out, err
}

// lockOrder is how every transaction that locks several dead_letters rows
// orders them (the planner here, the resolver, the sender, store.Write,
// discard): by dead_letter_id, and dead_letters before replays. Two
// transactions locking overlapping sets in different orders deadlock.
const lockOrder = " ORDER BY dead_letter_id FOR UPDATE"

// maxAttempts bounds the tries of a replay request that lost a
// serialisation or deadlock race (40001, 40P01).
const maxAttempts = 4

// retryable reports whether err is a transaction PostgreSQL rolled back
// for a race another transaction won: trying again can succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// MaxFilterReplay is the most dead letters one replay by filter plans (all
// in the request's transaction); a filter matching more is refused, to be
// narrowed (from/to, stage, rule_id) and replayed in parts.
var MaxFilterReplay = 10000

// Replay plans the replay of req's dead letters in one transaction: a
// replay_jobs row, one replays row per dead letter in a Replayable state
// (ON CONFLICT DO NOTHING: one already recorded is not planned again),
// their state replayed, and the audit row. Run sends them. A dry run
// counts and records nothing.
func (s *Service) Replay(ctx context.Context, who auth.Identity, req Request) (Result, error) {
	rate, err := req.validate(s.cfg.Rate)
	if err != nil {
		return Result{}, err
	}
	var res Result
	for try := 1; ; try++ {
		res, err = s.replay(ctx, who, req, rate)
		if err == nil || !retryable(err) || try == maxAttempts {
			break
		}
		s.log.InfoContext(ctx, "replay request lost a race to another transaction; trying again", "err", err, "attempt", try)
		if sleep(ctx, time.Duration(try)*(20*time.Millisecond+time.Duration(mrand.N(int64(20*time.Millisecond))))) != nil {
			break
		}
	}
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("replay: %w", err)
	}
	if res.Planned > 0 {
		s.m.planned(ctx, res.Planned)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return res, nil
}

// replay is one try of Replay's transaction.
func (s *Service) replay(ctx context.Context, who auth.Identity, req Request, rate float64) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = Result{DryRun: req.DryRun}
		var cs []candidate
		var err error
		if req.Filter != nil {
			cs, err = filterCandidates(ctx, tx, *req.Filter, &res)
		} else {
			cs, err = idCandidates(ctx, tx, req.IDs, &res)
		}
		if err != nil {
			return err
		}
		send, refused, nRefused := s.plan(cs)
		res.Matched, res.Refused, res.Unreplayable = len(send), refused, nRefused
		if req.DryRun {
			return nil
		}
		target := map[string]any{"ids": req.IDs}
		if req.Filter != nil {
			target = map[string]any{"filter": req.Filter}
		}
		if len(send) > 0 {
			if err := s.record(ctx, tx, who, target, rate, send, refused, nRefused, &res); err != nil {
				return err
			}
		}
		detail := map[string]any{"matched": res.Matched, "planned": res.Planned, "skipped": res.Skipped,
			"not_found": len(res.NotFound), "unreplayable": res.Unreplayable, "rate_limit": rate}
		if res.JobID != "" {
			target["job_id"] = res.JobID
		}
		aid, err := insertAudit(ctx, tx, who, "replay", target, detail)
		res.AuditID = &aid
		return err
	})
	return res, err
}

func filterCandidates(ctx context.Context, tx pgx.Tx, f query.Filter, res *Result) ([]candidate, error) {
	cond, args := f.Where([]any{Replayable})
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM dead_letters WHERE NOT state = ANY($1) AND "+cond, args...).Scan(&res.Skipped); err != nil {
		return nil, fmt.Errorf("count the filter's dead letters: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT "+candidateCols+" FROM dead_letters WHERE state = ANY($1) AND "+cond+
		fmt.Sprintf(" ORDER BY dead_letter_id LIMIT %d FOR UPDATE", MaxFilterReplay+1), args...)
	if err != nil {
		return nil, fmt.Errorf("lock the filter's dead letters: %w", err)
	}
	cs, err := scanCandidates(rows)
	if err != nil {
		return nil, fmt.Errorf("lock the filter's dead letters: %w", err)
	}
	if len(cs) > MaxFilterReplay {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM dead_letters WHERE state = ANY($1) AND "+cond, args...).Scan(&n); err != nil {
			return nil, fmt.Errorf("count the filter's dead letters: %w", err)
		}
		return nil, &query.Error{Param: "filter", Msg: fmt.Sprintf("matches %d dead letters to replay, more than %d per request: narrow it (from/to, stage, rule_id) and replay in parts",
			n, MaxFilterReplay)}
	}
	return cs, nil
}

func idCandidates(ctx context.Context, tx pgx.Tx, ids []string, res *Result) ([]candidate, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows, err := tx.Query(ctx, "SELECT "+candidateCols+" FROM dead_letters WHERE dead_letter_id = ANY($1)"+lockOrder, ids)
	if err != nil {
		return nil, fmt.Errorf("lock the listed dead letters: %w", err)
	}
	all, err := scanCandidates(rows)
	if err != nil {
		return nil, fmt.Errorf("lock the listed dead letters: %w", err)
	}
	found := map[string]bool{}
	var cs []candidate
	for _, c := range all {
		found[c.id] = true
		if slices.Contains(Replayable, c.state) {
			cs = append(cs, c)
		} else {
			res.SkippedIDs = append(res.SkippedIDs, Skipped{ID: c.id, State: c.state})
		}
	}
	slices.SortFunc(res.SkippedIDs, func(a, b Skipped) int { return strings.Compare(a.ID, b.ID) })
	for _, id := range ids {
		if !found[id] {
			res.NotFound = append(res.NotFound, id)
		}
	}
	res.Skipped = len(res.SkippedIDs)
	return cs, nil
}

// newJobID is rj-<UTC time>-<random>: sortable by time, unique.
func newJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "rj-" + now.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// record writes the job, the outbox rows and the dead letters' state.
func (s *Service) record(ctx context.Context, tx pgx.Tx, who auth.Identity, target map[string]any, rate float64,
	send []candidate, refused []Refused, nRefused int, res *Result) error {
	jobID := newJobID(s.now())
	filter, err := json.Marshal(jobFilter(target))
	if err != nil {
		return fmt.Errorf("job filter: %w", err)
	}
	var jobErr *string
	if nRefused > 0 {
		e := refusedSummary(refused, nRefused)
		jobErr = &e
	}
	if _, err := tx.Exec(ctx, "INSERT INTO replay_jobs (job_id, requested_by, filter, rate_limit, total, error) VALUES ($1, $2, $3, $4, 0, $5)",
		jobID, who.Name, string(filter), rate, jobErr); err != nil {
		return fmt.Errorf("record the replay job: %w", err)
	}
	ids := make([]string, len(send))
	attempts := make([]int32, len(send))
	topics := make([]string, len(send))
	for i, c := range send {
		ids[i], attempts[i], topics[i] = c.id, c.attempt, c.target
	}
	// ord keeps the planned order (failed_at) for the sender, which reads
	// by (requested_at, job_id, dead_letter_id): requested_at increases by a
	// microsecond per row.
	rows, err := tx.Query(ctx, `INSERT INTO replays (dead_letter_id, attempt, job_id, requested_by, target_topic, requested_at)
		SELECT u.id, u.attempt, $4, $5, u.topic, now() + (u.ord - 1) * interval '1 microsecond'
		FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS u(id, attempt, topic, ord)
		ON CONFLICT (dead_letter_id, attempt) DO NOTHING
		RETURNING dead_letter_id`, ids, attempts, topics, jobID, who.Name)
	if err != nil {
		return fmt.Errorf("record the replays: %w", err)
	}
	planned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("record the replays: %w", err)
	}
	if len(planned) == 0 {
		// Every one is recorded already (a retried request): no job.
		if _, err := tx.Exec(ctx, "DELETE FROM replay_jobs WHERE job_id = $1", jobID); err != nil {
			return fmt.Errorf("drop the empty replay job: %w", err)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, "UPDATE dead_letters SET state = 'replayed', state_changed_at = now() WHERE dead_letter_id = ANY($1)", planned); err != nil {
		return fmt.Errorf("mark the dead letters replayed: %w", err)
	}
	if _, err := tx.Exec(ctx, "UPDATE replay_jobs SET total = $2 WHERE job_id = $1", jobID, len(planned)); err != nil {
		return fmt.Errorf("count the replay job: %w", err)
	}
	res.Planned, res.JobID = len(planned), jobID
	return nil
}

// jobFilter is the job's filter column: the filter, or {"ids": [...]}.
func jobFilter(target map[string]any) any {
	if f, ok := target["filter"]; ok {
		return f
	}
	return map[string]any{"ids": target["ids"]}
}

func refusedSummary(refused []Refused, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d dead letters not replayable", n)
	for _, r := range refused[:min(len(refused), 10)] {
		fmt.Fprintf(&b, "\n%s: %s", r.ID, r.Reason)
	}
	if n > 10 {
		fmt.Fprintf(&b, "\n... and %d more", n-10)
	}
	return b.String()
}

// insertAudit records an action in the audit log, in the action's
// transaction.
func insertAudit(ctx context.Context, q query.Querier, id auth.Identity, action string, target, detail any) (int64, error) {
	t, err := json.Marshal(target)
	if err != nil {
		return 0, fmt.Errorf("audit target: %w", err)
	}
	d, err := json.Marshal(detail)
	if err != nil {
		return 0, fmt.Errorf("audit detail: %w", err)
	}
	var aid int64
	if err := q.QueryRow(ctx, "INSERT INTO audit_log (actor, role, action, target, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id",
		id.Name, string(id.Role), action, string(t), string(d)).Scan(&aid); err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	return aid, nil
}

const jobCols = `j.job_id, j.requested_by, j.requested_at, j.filter, j.rate_limit, j.total, j.sent, j.state, j.finished_at, j.error,
	(SELECT coalesce(jsonb_object_agg(outcome, n), '{}') FROM (SELECT outcome, count(*) AS n FROM replays r WHERE r.job_id = j.job_id GROUP BY outcome) o)`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	var errText *string
	var outcomes map[string]int
	if err := row.Scan(&j.ID, &j.RequestedBy, &j.RequestedAt, &j.Filter, &j.Rate, &j.Total, &j.Sent, &j.State, &j.FinishedAt, &errText, &outcomes); err != nil {
		return Job{}, err
	}
	if errText != nil {
		j.Error = *errText
	}
	j.Outcomes = map[string]int{"pending": 0, "sent": 0, "resolved": 0, "failed_again": 0}
	for k, v := range outcomes {
		j.Outcomes[k] = v
	}
	return j, nil
}

// Job returns one job; ErrNotFound when there is none of that id.
func (s *Service) Job(ctx context.Context, id string) (Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, "SELECT "+jobCols+" FROM replay_jobs j WHERE j.job_id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("replay job %s: %w", id, err)
	}
	return j, nil
}

// Jobs returns the newest limit jobs (1 to 200; out of range = 50), newest
// first.
func (s *Service) Jobs(ctx context.Context, limit int) ([]Job, error) {
	if limit <= 0 || limit > maxJobs {
		limit = 50
	}
	rows, err := s.pool.Query(ctx, "SELECT "+jobCols+" FROM replay_jobs j ORDER BY j.requested_at DESC, j.job_id DESC LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("replay jobs: %w", err)
	}
	defer rows.Close()
	jobs := []Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("replay jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("replay jobs: %w", err)
	}
	return jobs, nil
}
