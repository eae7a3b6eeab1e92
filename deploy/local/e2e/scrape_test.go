package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
)

// promHint is how to start the stack's Prometheus.
const promHint = `start it with: deploy/local/stack.sh up prometheus, then eval "$(deploy/local/stack.sh env)"`

// stackPrometheus is the stack's Prometheus: PROMETHEUS_URL and
// PROMETHEUS_TARGETS_DIR (stack.sh env), defaulting to the stack's port and
// run folder.
func stackPrometheus(root string) (promURL, targets string) {
	promURL = strings.TrimRight(os.Getenv("PROMETHEUS_URL"), "/")
	if promURL == "" {
		promURL = "http://127.0.0.1:19090"
	}
	if targets = os.Getenv(slice.EnvPrometheusTargets); targets == "" {
		targets = filepath.Join(root, ".run", "prometheus", "targets")
	}
	return promURL, targets
}

// requirePrometheus fails the test, saying how to start it, when the
// stack's Prometheus is not ready.
func requirePrometheus(ctx context.Context, t *testing.T, promURL string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, promURL+"/-/ready", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /-/ready: %s", resp.Status)
		}
	}
	if err != nil {
		t.Fatalf("the stack's Prometheus at %s is not ready (%v); %s", promURL, err, promHint)
	}
}

// upBySlice asks Prometheus for up{slice=id}: the value per job.
func upBySlice(ctx context.Context, promURL, id string) (map[string]string, error) {
	q := url.Values{"query": {fmt.Sprintf("up{slice=%q}", id)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, promURL+"/api/v1/query?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("query up: %s: %.200s", resp.Status, b)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query up: %s: %s", resp.Status, out.Error)
	}
	up := map[string]string{}
	for _, r := range out.Data.Result {
		v, _ := r.Value[1].(string)
		up[r.Metric["job"]] = v
	}
	return up, nil
}

// waitScraped polls (every every, up to limit) until the stack's Prometheus scrapes
// every service of jobs in the slice successfully (up == 1, job label =
// the service): found through the slice's targets file.
func waitScraped(ctx context.Context, promURL, id string, jobs []string, every, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		up, err := upBySlice(ctx, promURL, id)
		var missing []string
		for _, j := range jobs {
			if up[j] != "1" {
				missing = append(missing, fmt.Sprintf("%s (up=%q)", j, up[j]))
			}
		}
		if err == nil && len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("Prometheus at %s: %w", promURL, err)
			}
			return fmt.Errorf("Prometheus at %s does not scrape slice %s's %s after %s", promURL, id, strings.Join(missing, ", "), limit)
		}
		time.Sleep(every)
	}
}

// TestWaitScraped checks the Prometheus helpers against a fake query API.
func TestWaitScraped(t *testing.T) {
	const id = "e2e-x"
	jobs := []string{"validator", "bq-writer"}
	answer := func(results string) string {
		return `{"status":"success","data":{"resultType":"vector","result":[` + results + `]}}`
	}
	series := func(job, v string) string {
		return `{"metric":{"__name__":"up","job":"` + job + `","slice":"` + id + `","instance":"127.0.0.1:1"},"value":[1764620000.1,"` + v + `"]}`
	}
	tests := []struct {
		name    string
		answers []string // in turn; the last repeats
		wantErr string
	}{
		{"scraped", []string{answer(series("validator", "1") + "," + series("bq-writer", "1"))}, ""},
		{"after the file is read", []string{answer(""), answer(series("validator", "1") + "," + series("bq-writer", "1"))}, ""},
		{"one down", []string{answer(series("validator", "1") + "," + series("bq-writer", "0"))}, `bq-writer (up="0")`},
		{"never there", []string{answer("")}, `validator (up=""), bq-writer (up="")`},
		{"bad query", []string{`{"status":"error","errorType":"bad_data","error":"parse error"}`}, "parse error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.URL.Query().Get("query"); got != `up{slice="e2e-x"}` {
					t.Errorf("query %q", got)
				}
				_, _ = io.WriteString(w, tt.answers[min(n, len(tt.answers)-1)])
				n++
			}))
			defer srv.Close()
			err := waitScraped(context.Background(), srv.URL, id, jobs, 20*time.Millisecond, 200*time.Millisecond)
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	root := t.TempDir()
	t.Setenv("PROMETHEUS_URL", "")
	t.Setenv(slice.EnvPrometheusTargets, "")
	if u, dir := stackPrometheus(root); u != "http://127.0.0.1:19090" || dir != filepath.Join(root, ".run", "prometheus", "targets") {
		t.Errorf("stackPrometheus defaults = %q, %q", u, dir)
	}
	t.Setenv("PROMETHEUS_URL", "http://127.0.0.1:39090/")
	t.Setenv(slice.EnvPrometheusTargets, "/tmp/x/targets")
	if u, dir := stackPrometheus(root); !slices.Equal([]string{u, dir}, []string{"http://127.0.0.1:39090", "/tmp/x/targets"}) {
		t.Errorf("stackPrometheus from env = %q, %q", u, dir)
	}
}
