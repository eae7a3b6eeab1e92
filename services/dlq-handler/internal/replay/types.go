// Package replay sends dead letters back to the topic the rejecting stage
// read, through an outbox in the store: a replay is recorded in PostgreSQL
// (the replays row, keyed by dead letter and attempt) before it is
// produced and marked sent after, so a repeated request does nothing more
// and a crash between the two re-sends it once at start (downstream
// removes the copy by its natural key). It also settles the outcome of what
// was sent: failed_again when the stage dead-letters the replayed record
// again, resolved when the stage's group has committed past it and no such
// dead letter arrived.
package replay

import (
	"time"

	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// Replayable are the states a replay sends; the others are left alone
// (replayed ones wait for their outcome; failed_again ones were followed by
// a new dead letter, which is the one to replay; discarded and resolved are
// done).
var Replayable = []string{"new"}

// Request is the body of POST /v1/dead-letters/replay: exactly one of IDs
// (at most 1000) and Filter (a non-empty one). DryRun answers how many would
// be replayed and records nothing. Rate caps the records per second of this
// job (0 = DLQ_REPLAY_RATE; at most that).
type Request struct {
	IDs    []string      `json:"ids,omitempty"`
	Filter *query.Filter `json:"filter,omitempty"`
	DryRun bool          `json:"dry_run"`
	Rate   float64       `json:"rate,omitempty"`
}

// Result is the answer of a replay request. Matched counts the dead letters
// in a replayable state (what a dry run would replay); Planned those this
// request recorded for replay (0 in a dry run; 0 again when a repeated
// request finds them recorded already). For a filter, Skipped counts the
// matching ones in another state; for ids, SkippedIDs and NotFound list them.
// JobID names the job sending them (GET /v1/replay-jobs/{id}); "" when
// nothing was planned.
type Result struct {
	DryRun     bool      `json:"dry_run"`
	Matched    int       `json:"matched"`
	Planned    int       `json:"planned"`
	Skipped    int       `json:"skipped"`
	SkippedIDs []Skipped `json:"skipped_ids,omitempty"`
	NotFound   []string  `json:"not_found,omitempty"`
	// Unreplayable counts the dead letters in a replayable state that
	// cannot be replayed (a purged pii original, an original cut to fit the
	// dead-letter topic, an HTTP source without a DLQ_REPLAY_TOPICS target,
	// an undecodable record); Refused lists the
	// first MaxRefused with why. They are left as they are.
	Unreplayable int       `json:"unreplayable,omitempty"`
	Refused      []Refused `json:"refused,omitempty"`
	JobID        string    `json:"job_id,omitempty"`
	AuditID      *int64    `json:"audit_id,omitempty"`
}

// Skipped is a listed dead letter a replay left alone.
type Skipped struct {
	ID    string `json:"dead_letter_id"`
	State string `json:"state"`
}

// Refused is a dead letter a replay cannot send, and why.
type Refused struct {
	ID     string `json:"dead_letter_id"`
	Reason string `json:"reason"`
}

// Job is a replay job as GET /v1/replay-jobs/{id} shows it (a row of
// replay_jobs with its counts from replays).
type Job struct {
	ID          string         `json:"job_id"`
	RequestedBy string         `json:"requested_by"`
	RequestedAt time.Time      `json:"requested_at"`
	Filter      map[string]any `json:"filter"` // the filter, or {"ids": [...]}
	Rate        float64        `json:"rate_limit"`
	Total       int            `json:"total"`
	Sent        int            `json:"sent"`
	State       string         `json:"state"` // running, succeeded, failed, cancelled
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	Error       string         `json:"error,omitempty"`
	Outcomes    map[string]int `json:"outcomes"` // replays by outcome: pending, sent, resolved, failed_again
}
