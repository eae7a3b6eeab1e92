package consoletest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// viewerToken is the health test's DLQ_VIEWER_TOKEN.
const viewerToken = "console-test-viewer-token"

// fakePrometheus answers the health page's queries by the metric they
// read: every service up, the validator lagging (amber), bq-writer not
// ready on its warehouse check (red); down = a proxy's 502 for every query
// (Prometheus gone behind it).
type fakePrometheus struct{ down atomic.Bool }

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}
	q := r.PostFormValue("query")
	sample := func(labels string, v string) string {
		return fmt.Sprintf(`{"metric":{%s},"value":[%d,%q]}`, labels, time.Now().Unix(), v)
	}
	var res []string
	jobs := []string{"ingest-clickstream", "validator", "bq-writer", "dlq-handler"}
	switch {
	case strings.HasPrefix(q, "up{"):
		for i, j := range jobs {
			res = append(res, sample(fmt.Sprintf(`"job":%q,"instance":"127.0.0.1:%d"`, j, 40000+i), "1"))
		}
	case strings.Contains(q, "ecom_ready_check"):
		res = append(res, sample(`"job":"bq-writer","check":"warehouse"`, "0"))
	case strings.Contains(q, "ecom_ready{"):
		for _, j := range jobs {
			res = append(res, sample(fmt.Sprintf(`"job":%q`, j), map[bool]string{true: "0", false: "1"}[j == "bq-writer"]))
		}
	case strings.Contains(q, "ecom_consumer_lag"):
		res = append(res, sample(`"job":"validator"`, "12340"), sample(`"job":"ingest-clickstream"`, "4"))
	case strings.Contains(q, "ecom_event_latency_seconds_bucket"):
		res = append(res, sample("", map[bool]string{true: "0.18", false: "1.9"}[strings.HasPrefix(q, "histogram_quantile(0.5,")]))
	case strings.Contains(q, `stage="ingest-clickstream"`):
		res = append(res, sample("", "3000"))
	case strings.Contains(q, "ecom_dq_rule_evaluations_total"):
		res = append(res, sample(`"entity":"click"`, map[bool]string{true: "9950", false: "10000"}[strings.Contains(q, `result="pass"`)]))
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(res, ","))
}

// TestIntegrationHealthBrowser: the health page of the dlq-handler binary
// in headless Chromium, rated from a fake Prometheus: a viewer opening
// /health signs in, sees the worst status overall (red, with bq-writer's
// reason), an amber and a red row with their reasons as text, the panels,
// and a phone-sized page that does not scroll sideways; when Prometheus
// fails, the page says monitoring is unreachable and rates every service
// unknown, not green. Screenshots go to .run/consoletest/<test>-<time>/.
func TestIntegrationHealthBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack and Chromium; skipped under -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is not installed at %s (%v): `make deps-browser` (deploy/local/bootstrap.sh --browser) installs it", chromiumPath, err)
	}
	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		t.Fatal(`DATABASE_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	brokers := cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:19092")
	registryURL := cmp.Or(os.Getenv("SCHEMA_REGISTRY_URL"), "http://127.0.0.1:18081/apis/ccompat/v7")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	root, err := svcrun.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(root, ".run", "consoletest", t.Name()+"-"+time.Now().UTC().Format("20060102T150405"))
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots and the service log: %s", run)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	topic, schema, group := "it-health-"+id+".ecom.dlq.v1", "dlq_health_"+id, "it-health-"+id
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		pool.Close()
	})

	prom := &fakePrometheus{}
	promSrv := httptest.NewServer(prom)
	defer promSrv.Close()

	bins, err := svcrun.Build(ctx, root, t.TempDir(), "dlq-handler")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := svcrun.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := &svcrun.Process{Name: "dlq-handler", Bin: bins["dlq-handler"], HTTPAddr: addr, LogPath: filepath.Join(run, "dlq-handler.log"),
		Env: []string{"DLQ_DATABASE_URL=" + dbURL, "DLQ_SCHEMA=" + schema, "DLQ_TOPIC=" + topic, "KAFKA_CONSUMER_GROUP=" + group,
			"KAFKA_BROKERS=" + brokers, "SCHEMA_REGISTRY_URL=" + registryURL, "KAFKA_TRANSACTIONAL_ID=" + group,
			"DLQ_VIEWER_TOKEN=" + viewerToken, "DLQ_OPERATOR_TOKEN=", "DLQ_TOKENS_FILE=", "DLQ_RETENTION_SCHEDULE=off",
			"PROMETHEUS_URL=" + promSrv.URL, "PROMETHEUS_TIMEOUT=2s", "HEALTH_CACHE=0s", "JAEGER_URL=http://127.0.0.1:16686",
			"HEALTH_SERVICES=ingest-clickstream,validator,bq-writer,dlq-handler"}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	if err := p.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}

	br := newBrowser(t, run)
	base := "http://" + addr
	br.do("open /health", chromedp.Navigate(base+"/health"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	br.do("type the viewer token", chromedp.SendKeys(chromedp.CSS("#token"), viewerToken))
	br.follow("#sign-in", "#overall") // the sign-in leads back to the health page
	tests := []struct{ sel, want string }{
		{"#overall-status", "Failing"},
		{"#overall-reason", "bq-writer: not ready: warehouse failing"},
		{`#services tr[data-service="validator"] .reason`, "lag 12 340 > 10 000"},
		{`#services tr[data-service="validator"] .pill`, "▲ amber"},
		{`#services tr[data-service="bq-writer"] .pill`, "✖ red"},
		{`#services tr[data-service="ingest-clickstream"] .pill`, "✔ green"},
		{`#throughput tr[data-source="clickstream (Kafka)"] .num`, "3 000"},
		{"#latency-p50", "180 ms"},
		{"#latency-p99", "1.90 s"},
		{`#dq tr[data-entity="click"]`, "click 99.50% 10 000 evaluated in 1h"},
		{"#waiting", "0"},
		{"#cost-today", "no data"},
	}
	for _, tt := range tests {
		if got := strings.Join(strings.Fields(br.text(tt.sel)), " "); got != tt.want { // cells and no-break spaces to single spaces
			t.Errorf("%s = %q, want %q", tt.sel, got, tt.want)
		}
	}
	if got := br.eval(`document.querySelector("#traces-link").href`); got != "http://127.0.0.1:16686/search" {
		t.Errorf("trace search link %q", got)
	}
	if got := br.eval(`document.querySelector("meta[http-equiv=refresh]").content`); got != "10" {
		t.Errorf("refresh %q, want 10", got)
	}
	br.shot("health-1-mixed")

	br.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/health"), chromedp.WaitVisible(chromedp.CSS("#overall")))
	if got := br.eval(`String(document.documentElement.scrollWidth <= window.innerWidth + 1)`); got != "true" {
		t.Errorf("the health page scrolls sideways on a phone")
	}
	br.shot("health-2-phone")
	br.do("laptop viewport", chromedp.EmulateViewport(1280, 900))

	prom.down.Store(true)
	br.do("reload with Prometheus failing", chromedp.Navigate(base+"/health"), chromedp.WaitVisible(chromedp.CSS("#monitoring")))
	if got := br.text("#overall-status"); got != "Unknown" {
		t.Errorf("overall with Prometheus failing %q, want Unknown", got)
	}
	if got := br.text("#monitoring"); !strings.HasPrefix(got, "Monitoring unreachable: the statuses are unknown, not green") {
		t.Errorf("monitoring note %q", got)
	}
	if got := br.eval(`Array.from(document.querySelectorAll("#services tbody tr")).map(r => r.dataset.status).join(",")`); got != "unknown,unknown,unknown,unknown" {
		t.Errorf("statuses with Prometheus failing: %s", got)
	}
	br.shot("health-3-monitoring-unreachable")
}
