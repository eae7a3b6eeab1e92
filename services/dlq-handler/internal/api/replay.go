package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

// Replayer plans replays and shows their jobs; *replay.Service is one.
type Replayer interface {
	Replay(ctx context.Context, who auth.Identity, req replay.Request) (replay.Result, error)
	Job(ctx context.Context, id string) (replay.Job, error)
	Jobs(ctx context.Context, limit int) ([]replay.Job, error)
}

var _ Replayer = (*replay.Service)(nil)

// Replay paths.
const (
	ReplayPath     = "/v1/dead-letters/replay"
	ReplayJobsPath = "/v1/replay-jobs"
)

// JobList is the answer of GET /v1/replay-jobs.
type JobList struct {
	Items []replay.Job `json:"items"`
}

func (s *server) replayUnavailable(w http.ResponseWriter) bool {
	if s.cfg.Replay == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "replay is not available in this process")
		return true
	}
	return false
}

// replay answers 202 when it planned a job (Run sends it), 200 otherwise
// (a dry run, or nothing left to plan: a repeated request).
func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	var req replay.Request
	if !decodeBody(w, r, &req, false) {
		return
	}
	if s.replayUnavailable(w) {
		return
	}
	id := identity(r)
	if req.Filter != nil {
		f, err := Scope(*req.Filter, id)
		if err != nil {
			s.fail(w, r, "replay", err)
			return
		}
		req.Filter = &f
	}
	res, err := s.cfg.Replay.Replay(r.Context(), id, req)
	if err != nil {
		s.fail(w, r, "replay", err)
		return
	}
	if !id.PII {
		for i := range res.Refused {
			res.Refused[i].ID = redact.Text(res.Refused[i].ID)
		}
	}
	status := http.StatusOK
	if res.Planned > 0 {
		status = http.StatusAccepted
		w.Header().Set("Location", ReplayJobsPath+"/"+res.JobID)
	}
	writeJSON(w, status, res)
}

func (s *server) replayJobs(w http.ResponseWriter, r *http.Request) {
	if s.replayUnavailable(w) {
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "limit: an integer from 1 to 200")
			return
		}
		limit = n
	}
	jobs, err := s.cfg.Replay.Jobs(r.Context(), limit)
	if err != nil {
		s.fail(w, r, "replay jobs", err)
		return
	}
	id := identity(r)
	for i := range jobs {
		RedactJob(&jobs[i], id)
	}
	writeJSON(w, http.StatusOK, JobList{Items: jobs})
}

func (s *server) replayJob(w http.ResponseWriter, r *http.Request) {
	if s.replayUnavailable(w) {
		return
	}
	job, err := s.cfg.Replay.Job(r.Context(), chi.URLParam(r, "id"))
	if errors.Is(err, replay.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no replay job with this id")
		return
	}
	if err != nil {
		s.fail(w, r, "replay job", err)
		return
	}
	RedactJob(&job, identity(r))
	writeJSON(w, http.StatusOK, job)
}

// RedactJob hides personal data of a job from a caller without the PII
// right: email-like strings of its filter and error (a dead letter id) and
// the filter's q whole (free text someone with the PII right may have
// searched a name with). The API and the console show jobs through it.
func RedactJob(j *replay.Job, id auth.Identity) {
	if id.PII {
		return
	}
	j.Error = redact.Text(j.Error)
	if b, err := json.Marshal(j.Filter); err == nil {
		var f map[string]any
		if json.Unmarshal(redactJSON(b), &f) == nil {
			j.Filter = f
		}
	}
}
