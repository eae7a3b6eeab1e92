package slice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/deadletter"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// DLQOptions add the dead-letter store to a slice: dlq-handler with a
// PostgreSQL schema and consumer group of the slice's own.
//
// Every stage writes its dead letters to the one topic deadletter.Topic
// (ecom.dlq.v1, a constant of pkg/stream): slices cannot be given a topic of
// their own. A slice with a prefix therefore relays its own dead letters
// (those whose source_topic starts with the prefix, HTTP collector ones
// included: their source_topic is the slice's raw topic) from ecom.dlq.v1,
// from its end at Start, to Topics.DLQ ("<prefix>ecom.dlq.v1"), and its
// dlq-handler reads that. So its store holds the slice's dead letters and
// nothing else: a replay by filter can never send another run's (or the
// stack's) dead letters back to their stages, and a new store does not
// first copy the shared topic's whole history. Without a prefix (the demo)
// dlq-handler reads ecom.dlq.v1 itself, as in production.
type DLQOptions struct {
	// DatabaseURL is the store's database (DLQ_DATABASE_URL); "" = the
	// local stack's (stacktest.FromEnv).
	DatabaseURL string
	// Schema is DLQ_SCHEMA; "" = DLQSchema(prefix).
	Schema string
}

// DLQ is a slice's dead-letter store: dlq-handler's API and what it runs with.
type DLQ struct {
	URL         string // API base, e.g. http://127.0.0.1:40123 (GET /v1/dead-letters)
	DatabaseURL string
	Schema      string // DLQ_SCHEMA
	Group       string // KAFKA_CONSUMER_GROUP
	Topic       string // DLQ_TOPIC: Topics.DLQ
	// OperatorToken and ViewerToken are DLQ_OPERATOR_TOKEN and DLQ_VIEWER_TOKEN.
	OperatorToken, ViewerToken string

	relay   *dlqRelay
	relayed atomic.Int64
	resume  map[int32]int64 // where the next relay starts: where the last one stopped
}

// DLQSchema names a prefix's dead-letter store schema: "dlq_" and the
// prefix sanitised as CatalogSchema does; "" = dlq-handler's default "dlq".
func DLQSchema(prefix string) string {
	if prefix == "" {
		return "dlq"
	}
	return "dlq_" + strings.TrimPrefix(CatalogSchema(prefix), "sf_")
}

// DLQStageGroups are the stages whose dead letters a replay may resolve,
// each with the slice's consumer group (DLQ_STAGE_GROUPS).
var DLQStageGroups = []string{"ingest-clickstream", "validator", "bq-writer"}

// addDLQ adds dlq-handler's environment.
func (s *Slice) addDLQ(env map[string][]string, addrs map[string]string) {
	o, prefix := s.Opts.DLQ, s.Opts.Prefix
	d := &DLQ{URL: "http://" + addrs["dlq-handler"], DatabaseURL: o.DatabaseURL, Schema: o.Schema,
		Group: prefix + "dlq-handler", Topic: s.Topics.DLQ,
		OperatorToken: "dlqop_" + randomHex(16), ViewerToken: "dlqview_" + randomHex(16)}
	if d.DatabaseURL == "" {
		d.DatabaseURL = stacktest.FromEnv().DatabaseURL
	}
	if d.Schema == "" {
		d.Schema = DLQSchema(prefix)
	}
	groups := make([]string, len(DLQStageGroups))
	for i, st := range DLQStageGroups {
		groups[i] = st + "=" + prefix + st
	}
	env["dlq-handler"] = []string{"DLQ_DATABASE_URL=" + d.DatabaseURL, "DLQ_SCHEMA=" + d.Schema, "DLQ_TOPIC=" + d.Topic,
		"KAFKA_CONSUMER_GROUP=" + d.Group, "DLQ_OPERATOR_TOKEN=" + d.OperatorToken, "DLQ_VIEWER_TOKEN=" + d.ViewerToken,
		"DLQ_STAGE_GROUPS=" + strings.Join(groups, ","), "DLQ_REPLAY_TOPICS=http:/v1/events=" + s.Topics.Raw}
	s.DLQ = d
}

// DropDLQ stops dlq-handler and drops the store's schema (for a slice of a
// test; the demo keeps the stack's own). The relay's topic stays, like every
// topic of a slice.
func (s *Slice) DropDLQ(ctx context.Context) error {
	d := s.DLQ
	if d == nil {
		return nil
	}
	var errs []error
	if err := s.Procs["dlq-handler"].Stop(30 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("stop dlq-handler: %w", err))
	}
	errs = append(errs, d.stopRelay(ctx))
	conn, err := pgx.Connect(ctx, d.DatabaseURL)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("slice: dlq database: %w", err))...)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{d.Schema}.Sanitize()+" CASCADE"); err != nil {
		errs = append(errs, fmt.Errorf("slice: drop dlq schema %s: %w", d.Schema, err))
	}
	return errors.Join(errs...)
}

// dlqRelay copies a slice's dead letters from the shared dead-letter topic
// to the slice's own (see DLQOptions). One runs from Start to Stop; the
// next Start runs a new one from where it stopped.
type dlqRelay struct {
	brokers []string
	from    map[int32]kgo.Offset
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	once    sync.Once
	stopErr error

	mu   sync.Mutex
	next map[int32]int64 // per partition: every offset below was relayed or passed over
}

// drainTimeout bounds how long Stop waits for the relay to copy what the
// stages wrote before they stopped.
const drainTimeout = 15 * time.Second

// endOffsets lists where the shared dead-letter topic ends now: its high
// watermark, or with committed its last stable offset (what read_committed
// can read: a transaction still open, another run's stage killed mid-batch,
// holds it back).
func endOffsets(ctx context.Context, brokers []string, committed bool) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	list := kadm.NewClient(cl).ListEndOffsets
	if committed {
		list = kadm.NewClient(cl).ListCommittedOffsets
	}
	ends, err := list(ctx, deadletter.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("slice: end offsets of %s: %w", deadletter.Topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// prepareRelay notes where the shared topic ends now, before any stage of
// the slice runs: every dead letter of the slice comes after. After a Stop
// it resumes where the last relay stopped.
func (s *Slice) prepareRelay(ctx context.Context) error {
	if s.DLQ == nil || s.Opts.Prefix == "" || s.DLQ.relay != nil {
		return nil
	}
	ends := s.DLQ.resume
	if ends == nil {
		var err error
		if ends, err = endOffsets(ctx, s.Opts.Brokers, false); err != nil {
			return err
		}
	}
	r := &dlqRelay{brokers: s.Opts.Brokers, next: map[int32]int64{}}
	// A topic that does not exist yet has no partitions: read it from the start.
	if len(ends) > 0 {
		r.from = map[int32]kgo.Offset{}
		for p, o := range ends {
			r.from[p] = kgo.NewOffset().At(o)
			r.next[p] = o
		}
	}
	s.DLQ.relay = r
	return nil
}

// startRelay runs the relay until Stop (dlq-handler has created the slice's topic).
func (s *Slice) startRelay(ctx context.Context) error {
	r := s.DLQ.relay
	if r == nil || r.done != nil {
		return nil
	}
	reg, err := avroserde.New(avroserde.Config{URL: s.Opts.Registry, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	codec, err := reg.Codec(ctx, avroserde.SubjectFor(deadletter.Topic), protoavro.DeadLetter)
	if err != nil {
		return fmt.Errorf("slice: dlq relay: %w", err)
	}
	consume := kgo.ConsumeTopics(deadletter.Topic)
	if r.from != nil {
		consume = kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{deadletter.Topic: r.from})
	}
	// Control records are kept (and passed over) so that the progress
	// reaches the topic's end offsets, which count the transaction markers.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Opts.Brokers...), consume, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan struct{})
	prefix, topic, n := s.Opts.Prefix, s.DLQ.Topic, &s.DLQ.relayed
	go func() {
		defer close(r.done)
		defer cl.Close()
		r.err = r.run(rctx, cl, codec, prefix, topic, n)
	}()
	return nil
}

func (r *dlqRelay) run(ctx context.Context, cl *kgo.Client, codec *avroserde.Codec, prefix, topic string, n *atomic.Int64) error {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("slice: dlq relay: fetch: %w", err)
		}
		var out []*kgo.Record
		next := map[int32]int64{}
		for _, rec := range fs.Records() {
			next[rec.Partition] = rec.Offset + 1
			if rec.Attrs.IsControl() {
				continue
			}
			var dl events.DeadLetter
			// Not a DeadLetter: nothing says whose it is, so it is not the slice's.
			if _, err := codec.Decode(ctx, rec.Value, &dl); err != nil || !strings.HasPrefix(dl.SourceTopic, prefix) {
				continue
			}
			out = append(out, &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Timestamp: rec.Timestamp})
		}
		if len(out) > 0 {
			if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("slice: dlq relay: produce: %w", err)
			}
			n.Add(int64(len(out)))
		}
		r.mu.Lock()
		for p, o := range next {
			r.next[p] = max(r.next[p], o)
		}
		r.mu.Unlock()
	}
}

// drained reports whether everything below ends was relayed or passed over.
func (r *dlqRelay) drained(ends map[int32]int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, end := range ends {
		if r.next[p] < end {
			return false
		}
	}
	return true
}

// stop waits until the relay has copied what the shared topic holds now
// and read_committed can read (call it once the stages have stopped), then
// ends it; it returns why the relay stopped early or could not drain, if it
// did.
func (r *dlqRelay) stop(ctx context.Context) error {
	if r == nil || r.done == nil {
		return nil
	}
	r.once.Do(func() {
		defer func() { r.cancel(); <-r.done }()
		ends, err := endOffsets(ctx, r.brokers, true)
		if err != nil {
			r.stopErr = err
			return
		}
		deadline := time.Now().Add(drainTimeout)
		for !r.drained(ends) {
			select {
			case <-r.done:
				return // r.err says why
			case <-ctx.Done():
				r.stopErr = fmt.Errorf("slice: dlq relay: drain: %w", ctx.Err())
				return
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				r.stopErr = fmt.Errorf("slice: dlq relay: not drained within %s", drainTimeout)
				return
			}
		}
	})
	return errors.Join(r.err, r.stopErr)
}

// stopRelay drains and ends the running relay; the next Start runs a new
// one from where this one stopped.
func (d *DLQ) stopRelay(ctx context.Context) error {
	if d == nil || d.relay == nil {
		return nil
	}
	err := d.relay.stop(ctx)
	d.relay.mu.Lock()
	d.resume = d.relay.next
	d.relay.mu.Unlock()
	d.relay = nil
	return err
}

// Relayed is how many dead letters the relays copied to the slice's topic.
func (d *DLQ) Relayed() int64 { return d.relayed.Load() }

// DeadLetter is one dead letter as dlq-handler's API lists it.
type DeadLetter struct {
	ID              string    `json:"dead_letter_id"`
	Stage           string    `json:"stage"`
	Entity          *string   `json:"entity"`
	SourceTopic     string    `json:"source_topic"`
	SourcePartition int32     `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	Reasons         []Reason  `json:"reasons"`
	Codes           []string  `json:"codes"`
	RuleIDs         []string  `json:"rule_ids"`
	Message         string    `json:"message"`
	Attempt         int32     `json:"attempt"`
	TraceID         *string   `json:"trace_id"`
	FailedAt        time.Time `json:"failed_at"`
	ReplayOf        *string   `json:"replay_of"`
	State           string    `json:"state"`
}

// DeadLetterDetail is GET /v1/dead-letters/{id}'s answer: the dead letter
// and its original shown for reading.
type DeadLetterDetail struct {
	DeadLetter DeadLetter `json:"dead_letter"`
	Original   struct {
		Format  string          `json:"format"` // avro, json, hex, empty, purged, hidden
		Size    int             `json:"size"`
		Decoded json.RawMessage `json:"decoded,omitempty"`
		Hex     string          `json:"hex,omitempty"`
	} `json:"original"`
}

// Reason is one reason of a dead letter.
type Reason struct {
	Code    string  `json:"code"`
	RuleID  *string `json:"rule_id"`
	Field   *string `json:"field"`
	Message string  `json:"message"`
}

// DLQStats is GET /v1/stats's answer, the parts the tests and the demo read.
type DLQStats struct {
	Total   int            `json:"total"`
	ByState map[string]int `json:"by_state"`
	ByStage []DLQSeries    `json:"by_stage"`
	ByCode  []DLQSeries    `json:"by_code"`
	ByRule  []DLQSeries    `json:"by_rule"`
}

// DLQSeries is one key's count in a stats window.
type DLQSeries struct {
	Key   string `json:"key"`
	Total int    `json:"total"`
}

// ReplayRequest is POST /v1/dead-letters/replay's body: IDs or a Filter
// (the list's query parameters as JSON: stage, entity, code, rule_id,
// state, from, to, q).
type ReplayRequest struct {
	IDs    []string       `json:"ids,omitempty"`
	Filter map[string]any `json:"filter,omitempty"`
	DryRun bool           `json:"dry_run"`
	Rate   float64        `json:"rate,omitempty"`
}

// ReplayResult is the replay request's answer.
type ReplayResult struct {
	DryRun  bool   `json:"dry_run"`
	Matched int    `json:"matched"`
	Planned int    `json:"planned"`
	Skipped int    `json:"skipped"`
	JobID   string `json:"job_id,omitempty"`
}

// ReplayJob is GET /v1/replay-jobs/{id}'s answer.
type ReplayJob struct {
	ID       string         `json:"job_id"`
	Total    int            `json:"total"`
	Sent     int            `json:"sent"`
	State    string         `json:"state"` // running, succeeded, failed, cancelled
	Error    string         `json:"error,omitempty"`
	Outcomes map[string]int `json:"outcomes"`
}

// List returns every dead letter matching the filter (the API's query
// parameters), newest first, following the pages.
func (d *DLQ) List(ctx context.Context, filter url.Values) ([]DeadLetter, error) {
	var all []DeadLetter
	v := url.Values{}
	for k, vs := range filter {
		v[k] = vs
	}
	v.Set("limit", "500")
	for {
		var page struct {
			Items      []DeadLetter `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		if err := d.do(ctx, d.ViewerToken, http.MethodGet, "/v1/dead-letters?"+v.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all, nil
		}
		v.Set("cursor", page.NextCursor)
	}
}

// Get returns one dead letter with its original shown for reading.
func (d *DLQ) Get(ctx context.Context, id string) (DeadLetterDetail, error) {
	var dl DeadLetterDetail
	err := d.do(ctx, d.ViewerToken, http.MethodGet, "/v1/dead-letters/"+url.PathEscape(id), nil, &dl)
	return dl, err
}

// Stats returns the counts (params: window, buckets and the list's filters).
func (d *DLQ) Stats(ctx context.Context, params url.Values) (DLQStats, error) {
	var st DLQStats
	err := d.do(ctx, d.ViewerToken, http.MethodGet, "/v1/stats?"+params.Encode(), nil, &st)
	return st, err
}

// Replay asks for a replay as the operator.
func (d *DLQ) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	var res ReplayResult
	err := d.do(ctx, d.OperatorToken, http.MethodPost, "/v1/dead-letters/replay", req, &res)
	return res, err
}

// ReplayJob returns a replay job's progress.
func (d *DLQ) ReplayJob(ctx context.Context, id string) (ReplayJob, error) {
	var job ReplayJob
	err := d.do(ctx, d.ViewerToken, http.MethodGet, "/v1/replay-jobs/"+url.PathEscape(id), nil, &job)
	return job, err
}

// APIError is an answer of the API other than 2xx.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("dlq-handler: %d: %s", e.Status, e.Body) }

func (d *DLQ) do(ctx context.Context, token, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("dlq-handler: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("dlq-handler: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("dlq-handler: %s %s: %w", method, path, err)
	}
	return nil
}
