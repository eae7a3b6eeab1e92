// Package backfill re-reads the storefront's listing for a time range into
// the orders topic, as operator-started jobs, without touching the live
// cursor.
package backfill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/pkg/stream"
	"github.com/ecomstream/platform/services/ingest-orders/internal/storefront"
)

// Path is where jobs are started and listed; a job is at Path/<id>.
const Path = "/v1/backfill"

// SpanPage is the span of one page a job reads and produces; AttrJob, its
// attribute, names the job.
const (
	SpanPage = "orders.backfill.page"
	AttrJob  = "ecom.backfill.job_id"
)

// Job states.
const (
	Running   = "running"
	Done      = "done"
	Failed    = "failed"
	Cancelled = "cancelled" // the service stopped under it
)

// Job is one backfill.
type Job struct {
	ID       string     `json:"id"`
	From     time.Time  `json:"from"`
	To       time.Time  `json:"to"`
	State    string     `json:"state"`
	Pages    int64      `json:"pages"`
	Orders   int64      `json:"orders"`
	Position *time.Time `json:"position,omitempty"` // newest updated_at read so far
	Error    string     `json:"error,omitempty"`
	Started  time.Time  `json:"started_at"`
	Finished *time.Time `json:"finished_at,omitempty"`
}

// Deps are the jobs' collaborators.
type Deps struct {
	Reader        *storefront.Reader
	Producer      *kgo.Client // idempotent, acks=all; not the cursor's transactional client
	Orders        stream.Encoder
	Topic         string
	OperatorToken string
	Log           *slog.Logger
}

// Manager runs jobs, one at a time, under the context Run was given.
type Manager struct {
	d    Deps
	now  func() time.Time
	mu   sync.Mutex
	jobs map[string]*Job
	busy bool
	ctx  context.Context
	wg   sync.WaitGroup
}

// New returns a manager; jobs start once Run runs.
func New(d Deps) *Manager { return &Manager{d: d, now: time.Now, jobs: map[string]*Job{}} }

// Run makes the manager accept jobs until ctx ends, then waits for the
// running job to stop.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
	return nil
}

// Routes mounts the API on r.
func (m *Manager) Routes(r chi.Router) {
	r.Post(Path, m.start)
	r.Get(Path, m.list)
	r.Get(Path+"/{id}", m.get)
}

type request struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (m *Manager) start(w http.ResponseWriter, r *http.Request) {
	if !httpserver.BearerMatches(r.Header.Get("Authorization"), m.d.OperatorToken) {
		writeError(w, http.StatusUnauthorized, "operator token required (HTTP_OPERATOR_TOKEN)")
		return
	}
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be {\"from\": RFC 3339, \"to\": RFC 3339}: "+err.Error())
		return
	}
	if req.From.IsZero() || req.To.IsZero() || !req.From.Before(req.To) {
		writeError(w, http.StatusBadRequest, "from and to are required, from before to")
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "not accepting jobs (starting or stopping)")
		return
	}
	if m.busy {
		writeError(w, http.StatusConflict, "a backfill is running; one at a time")
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	j := &Job{ID: "bf-" + hex.EncodeToString(b[:]), From: req.From.UTC(), To: req.To.UTC(), State: Running, Started: m.now().UTC()}
	m.jobs[j.ID] = j
	m.busy = true
	m.wg.Add(1)
	go m.run(m.ctx, j)
	writeJSON(w, http.StatusAccepted, *j)
}

func (m *Manager) get(w http.ResponseWriter, r *http.Request) {
	if !httpserver.BearerMatches(r.Header.Get("Authorization"), m.d.OperatorToken) {
		writeError(w, http.StatusUnauthorized, "operator token required (HTTP_OPERATOR_TOKEN)")
		return
	}
	j, ok := m.Job(chi.URLParam(r, "id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such job")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (m *Manager) list(w http.ResponseWriter, r *http.Request) {
	if !httpserver.BearerMatches(r.Header.Get("Authorization"), m.d.OperatorToken) {
		writeError(w, http.StatusUnauthorized, "operator token required (HTTP_OPERATOR_TOKEN)")
		return
	}
	m.mu.Lock()
	out := make([]Job, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, *j)
	}
	m.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
}

// Job returns a copy of job id.
func (m *Manager) Job(id string) (Job, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

// run reads [From, To) and produces every order version listed there
// (source backfill). The listing holds each order at its latest version, so
// a backfill restores the latest state of the orders changed in the range,
// not their intermediate versions.
func (m *Manager) run(ctx context.Context, j *Job) {
	defer m.wg.Done()
	// A job's pages are spans of their own (SpanPage), marked with the job.
	r := *m.d.Reader
	r.Span = SpanPage
	r.SpanAttrs = append(r.SpanAttrs[:len(r.SpanAttrs):len(r.SpanAttrs)], attribute.String(AttrJob, j.ID),
		attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
		attribute.String("messaging.destination.name", m.d.Topic))
	err := r.Each(ctx, j.From, func(ctx context.Context, page *storefront.Page) (bool, error) {
		var recs []*kgo.Record
		more := true
		var newest time.Time
		for i := range page.Orders {
			o := &page.Orders[i]
			if o.UpdatedAt.After(newest) {
				newest = o.UpdatedAt
			}
			if !o.UpdatedAt.Before(j.To) {
				more = false // ordered by updated_at: nothing in range follows
				continue
			}
			if o.UpdatedAt.Before(j.From) {
				continue
			}
			rec, err := o.Record(ctx, m.d.Orders, m.d.Topic, storefront.SourceBackfill, page.ReceivedAt, nil)
			if err != nil {
				return false, err
			}
			recs = append(recs, rec)
		}
		trace.SpanFromContext(ctx).SetAttributes(attribute.Int(storefront.AttrProduced, len(recs)))
		if len(recs) > 0 {
			if err := m.d.Producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return false, fmt.Errorf("produce: %w", err)
			}
		}
		m.mu.Lock()
		j.Pages++
		j.Orders += int64(len(recs))
		if !newest.IsZero() {
			j.Position = &newest
		}
		m.mu.Unlock()
		return more, nil
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	fin := m.now().UTC()
	j.Finished = &fin
	switch {
	case ctx.Err() != nil:
		j.State, j.Error = Cancelled, "the service stopped; start the range again"
	case err != nil:
		j.State, j.Error = Failed, err.Error()
	default:
		j.State = Done
	}
	m.busy = false
	m.d.Log.Info("backfill ended", "job", j.ID, "state", j.State, "orders", j.Orders, "pages", j.Pages)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
