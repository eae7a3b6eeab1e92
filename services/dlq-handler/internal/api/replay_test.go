package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/replay"
)

// fakeReplayer answers like the replay service, from canned values.
type fakeReplayer struct {
	got  []replay.Request
	who  []auth.Identity
	res  replay.Result
	err  error
	jobs []replay.Job
}

func (f *fakeReplayer) Replay(_ context.Context, who auth.Identity, req replay.Request) (replay.Result, error) {
	f.got, f.who = append(f.got, req), append(f.who, who)
	return f.res, f.err
}

func (f *fakeReplayer) Job(_ context.Context, id string) (replay.Job, error) {
	for _, j := range f.jobs {
		if j.ID == id {
			return j, nil
		}
	}
	return replay.Job{}, replay.ErrNotFound
}

func (f *fakeReplayer) Jobs(_ context.Context, limit int) ([]replay.Job, error) {
	return f.jobs[:min(limit, len(f.jobs))], nil
}

func TestReplayRoutes(t *testing.T) {
	job := replay.Job{ID: "rj-1", RequestedBy: "operator", Filter: map[string]any{"q": "ann@shop.example"}, Error: "dl ann@shop.example: purged",
		State: "running", Total: 3, Outcomes: map[string]int{"pending": 3}}
	tests := []struct {
		name         string
		fake         *fakeReplayer // nil = no Replay configured
		method, path string
		token, body  string
		want         int
		wantIn       string // in the body
		wantNot      string // not in the body
		wantLocation string
	}{
		{name: "no replayer", method: "POST", path: ReplayPath, token: operatorTok, body: `{"ids":["a"]}`, want: 503, wantIn: "unavailable"},
		{name: "no replayer for jobs", method: "GET", path: ReplayJobsPath, token: viewerTok, want: 503},
		{name: "viewer may not replay", fake: &fakeReplayer{}, method: "POST", path: ReplayPath, token: viewerTok, body: `{"ids":["a"]}`, want: 403},
		{name: "planned", fake: &fakeReplayer{res: replay.Result{Matched: 2, Planned: 2, JobID: "rj-1"}}, method: "POST", path: ReplayPath,
			token: operatorTok, body: `{"filter":{"rule_id":["r1"]},"rate":5}`, want: 202, wantIn: `"planned":2`, wantLocation: "/v1/replay-jobs/rj-1"},
		{name: "dry run", fake: &fakeReplayer{res: replay.Result{DryRun: true, Matched: 2}}, method: "POST", path: ReplayPath,
			token: operatorTok, body: `{"ids":["a","b"],"dry_run":true}`, want: 200, wantIn: `"matched":2`},
		{name: "repeated: nothing planned", fake: &fakeReplayer{res: replay.Result{Skipped: 2}}, method: "POST", path: ReplayPath,
			token: operatorTok, body: `{"ids":["a","b"]}`, want: 200, wantIn: `"planned":0`},
		{name: "invalid request", fake: &fakeReplayer{err: &query.Error{Param: "ids", Msg: "give either ids or filter"}}, method: "POST", path: ReplayPath,
			token: operatorTok, body: `{}`, want: 400, wantIn: "give either ids or filter"},
		{name: "unknown field", fake: &fakeReplayer{}, method: "POST", path: ReplayPath, token: operatorTok, body: `{"idz":["a"]}`, want: 400, wantIn: "idz"},
		{name: "email search without pii", fake: &fakeReplayer{}, method: "POST", path: ReplayPath, token: operatorTok,
			body: `{"filter":{"q":"ann@shop.example"}}`, want: 400, wantIn: "pii right"},
		{name: "refused ids redacted", fake: &fakeReplayer{res: replay.Result{Unreplayable: 1, Refused: []replay.Refused{{ID: "x:ann@shop.example", Reason: "purged"}}}},
			method: "POST", path: ReplayPath, token: operatorTok, body: `{"ids":["x"]}`, want: 200, wantIn: `"unreplayable":1`, wantNot: "ann@shop"},
		{name: "jobs", fake: &fakeReplayer{jobs: []replay.Job{job}}, method: "GET", path: ReplayJobsPath + "?limit=5", token: viewerTok, want: 200,
			wantIn: `"job_id":"rj-1"`, wantNot: "ann@shop"},
		{name: "jobs bad limit", fake: &fakeReplayer{}, method: "GET", path: ReplayJobsPath + "?limit=0", token: viewerTok, want: 400, wantIn: "limit"},
		{name: "job", fake: &fakeReplayer{jobs: []replay.Job{job}}, method: "GET", path: ReplayJobsPath + "/rj-1", token: viewerTok, want: 200,
			wantIn: `"outcomes":{"pending":3}`, wantNot: "ann@shop"},
		{name: "unknown job", fake: &fakeReplayer{}, method: "GET", path: ReplayJobsPath + "/rj-9", token: viewerTok, want: 404, wantIn: "no replay job"},
		{name: "jobs need a token", fake: &fakeReplayer{}, method: "GET", path: ReplayJobsPath, want: 401},
	}
	for _, tt := range tests {
		cfg := Config{}
		if tt.fake != nil {
			cfg.Replay = tt.fake
		}
		h := unitServer(t, cfg)
		rec := do(h, tt.method, tt.path, tt.token, "", tt.body)
		body := rec.Body.String()
		if rec.Code != tt.want || !strings.Contains(body, tt.wantIn) || (tt.wantNot != "" && strings.Contains(body, tt.wantNot)) {
			t.Errorf("%s: %d %s; want %d with %q without %q", tt.name, rec.Code, body, tt.want, tt.wantIn, tt.wantNot)
		}
		if got := rec.Header().Get("Location"); got != tt.wantLocation {
			t.Errorf("%s: Location %q, want %q", tt.name, got, tt.wantLocation)
		}
		if tt.want == http.StatusAccepted {
			if len(tt.fake.got) != 1 || tt.fake.got[0].Filter == nil || tt.fake.got[0].Rate != 5 || tt.fake.who[0].Name != "operator" {
				t.Errorf("%s: replayer got %+v by %+v", tt.name, tt.fake.got, tt.fake.who)
			}
			var res replay.Result
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.JobID != "rj-1" {
				t.Errorf("%s: result %+v, %v", tt.name, res, err)
			}
		}
	}
}
