package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/clickgen"
	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/stacktest"
	"github.com/ecomstream/platform/deploy/local/svcrun"
)

// chromiumPath is where Debian's chromium package (make deps-browser) puts it.
const chromiumPath = "/usr/bin/chromium"

// redWithin bounds how long a killed service may look healthy on the page:
// a scrape or two (the private Prometheus scrapes every 2 s, the stack's
// every 5 s), the page's cache and its 10 s reload.
const redWithin = 30 * time.Second

// clicksPerSecond is the stream of valid clicks the test sends.
const clicksPerSecond = 50

// healthReport is the part of GET /v1/health the test reads.
type healthReport struct {
	Monitoring      string `json:"monitoring"`
	MonitoringError string `json:"monitoring_error"`
	Overall         struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"overall"`
	Services []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"services"`
	Throughput []struct {
		Source    string   `json:"source"`
		PerMinute *float64 `json:"per_minute"`
	} `json:"throughput"`
	DQ     []dqScore `json:"dq"`
	Errors []string  `json:"errors"`
}

type dqScore struct {
	Entity    string  `json:"entity"`
	Score     float64 `json:"score"`
	Evaluated float64 `json:"evaluated"`
}

func (r healthReport) service(name string) (status, reason string) {
	for _, s := range r.Services {
		if s.Name == name {
			return s.Status, s.Reason
		}
	}
	return "", "not on the page"
}

func (r healthReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "overall %s (%s), monitoring %s %s;", r.Overall.Status, r.Overall.Reason, r.Monitoring, r.MonitoringError)
	for _, s := range r.Services {
		fmt.Fprintf(&b, " %s %s (%s);", s.Name, s.Status, s.Reason)
	}
	for _, s := range r.Throughput {
		if s.PerMinute != nil {
			fmt.Fprintf(&b, " %s %.0f/min;", s.Source, *s.PerMinute)
		}
	}
	for _, d := range r.DQ {
		fmt.Fprintf(&b, " DQ %s %.4f of %.0f;", d.Entity, d.Score, d.Evaluated)
	}
	return b.String()
}

// TestE2EHealthPage: dlq-handler's health page over the clickstream slice
// and its dead-letter store, rated from a real Prometheus, is green when
// every service is up and ready, and turns the validator red within
// redWithin of a kill -9, in the JSON and in headless Chromium (the page's
// own reload). Screenshots of both states go to the run folder. Then the
// validator is started again and, once every stage caught up, the run's
// clicks balance in the reconciliation (assertReconciled) across the kill.
//
// With PROMETHEUS_URL set (the stack's Prometheus, `stack.sh env`) the
// stack's Prometheus finds the slice's services through the file_sd
// targets file the slice writes to PROMETHEUS_TARGETS_DIR; without it the
// test runs a Prometheus of its own with a static scrape config of the
// slice's addresses. Either way the page is narrowed to the slice by its
// label slice=<Slice.ID> (HEALTH_PROMETHEUS_MATCHERS).
func TestE2EHealthPage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs without -short, against the local stack and headless Chromium")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is not installed at %s (%v): `make deps-browser` (deploy/local/bootstrap.sh --browser) installs it", chromiumPath, err)
	}
	eps := stacktest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	root, binDir, _, err := svcrun.BuildTree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(root, ".run", "e2e", t.Name()+"-"+time.Now().Format("20060102-150405"))
	prefix := "e2e-" + stacktest.UniqueName(t, "") + "."
	sl, err := slice.New(slice.Options{
		BinDir: binDir, RunDir: runDir, Brokers: eps.KafkaBrokers, Registry: eps.SchemaRegistryURL,
		Prefix: prefix, QueryToken: token, DLQ: &slice.DLQOptions{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service logs and screenshots: %s", runDir)
	healthEnv := []string{"HEALTH_SERVICES=" + strings.Join(sl.Names, ","), "JAEGER_URL=" + os.Getenv("JAEGER_URL"), "HEALTH_CACHE=1s"}

	promURL := os.Getenv("PROMETHEUS_URL")
	switch {
	case promURL == "":
		// A Prometheus of the test's own, scraping exactly the slice.
		promURL = startPrometheus(ctx, t, root, runDir, sl, sl.ID)
	case sl.Opts.PrometheusTargetsDir == "":
		t.Fatal(`PROMETHEUS_URL is set but PROMETHEUS_TARGETS_DIR is not, so the stack's Prometheus cannot find the slice: eval "$(deploy/local/stack.sh env)"`)
	}
	sl.Procs["dlq-handler"].Env = append(sl.Procs["dlq-handler"].Env, append(healthEnv,
		"PROMETHEUS_URL="+promURL, "HEALTH_PROMETHEUS_MATCHERS=slice="+sl.ID)...)
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sl.Stop()
	defer func() {
		if err := sl.DropDLQ(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("drop the dead-letter store: %v", err)
		}
	}()
	t.Logf("Prometheus %s", promURL)
	base := sl.DLQ.URL

	// A steady stream of valid clicks through the slice, so the panels have
	// figures (events per minute, latency, the click DQ score): a counter's
	// first increment is not a rate, a stream is.
	prod, err := kgo.NewClient(kgo.SeedBrokers(eps.KafkaBrokers...), kgo.DefaultProduceTopic(sl.Topics.Raw))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	began := time.Now()
	streamCtx, cancelStream := context.WithCancel(ctx)
	streamDone := make(chan struct{})
	stopStream := sync.OnceFunc(func() { cancelStream(); <-streamDone })
	var produceErrs atomic.Int64
	go func() {
		defer close(streamDone)
		gen := clickgen.New(clickgen.WithSeed(uint64(time.Now().UnixNano())), clickgen.WithBrokenFraction(0), clickgen.WithDuplicateFraction(0))
		tick := time.NewTicker(time.Second / 5)
		defer tick.Stop()
		for {
			select {
			case <-streamCtx.Done():
				return
			case <-tick.C:
			}
			for range clicksPerSecond / 5 {
				r := gen.Next()
				prod.Produce(streamCtx, &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
					if err != nil && streamCtx.Err() == nil {
						produceErrs.Add(1)
					}
				})
			}
		}
	}()
	defer func() {
		stopStream()
		if n := produceErrs.Load(); n > 0 {
			t.Errorf("%d clicks not produced", n)
		}
	}()

	// The JSON needs a viewer token.
	if st, _ := getHealth(ctx, base, ""); st != http.StatusUnauthorized {
		t.Fatalf("GET /v1/health without a token: %d, want 401", st)
	}
	rep := waitHealth(ctx, t, base, sl.DLQ.ViewerToken, 90*time.Second, "overall green with the clicks counted", func(r healthReport) bool {
		return r.Overall.Status == "green" && r.Throughput[0].PerMinute != nil && *r.Throughput[0].PerMinute > 0 &&
			slices.ContainsFunc(r.DQ, func(d dqScore) bool { return d.Entity == "click" && d.Evaluated > 0 })
	})
	t.Logf("green: %s", rep)
	if i := slices.IndexFunc(rep.DQ, func(d dqScore) bool { return d.Entity == "click" }); rep.DQ[i].Score != 1 {
		t.Errorf("click DQ score %v of valid clicks only, want 1", rep.DQ[i].Score)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("panels without data on a healthy slice (a query Prometheus refused?): %q", rep.Errors)
	}
	if len(rep.Services) != len(sl.Names) {
		t.Errorf("%d services rated, want %d (%v): %s", len(rep.Services), len(sl.Names), sl.Names, rep)
	}

	br := newHealthBrowser(t, runDir)
	br.do("open /health", chromedp.Navigate(base+"/health"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	br.do("type the viewer token", chromedp.SendKeys(chromedp.CSS("#token"), sl.DLQ.ViewerToken))
	br.follow("#sign-in", "#overall") // the sign-in leads back to the health page
	if got := br.text("#overall-status"); got != "Healthy" {
		t.Errorf("overall status on the page %q, want Healthy (%s)", got, br.text("#overall"))
	}
	if got := br.attr(`#services tr[data-service="validator"]`, "data-status"); got != "green" {
		t.Errorf("validator's row is %q, want green: %s", got, br.text(`#services tr[data-service="validator"]`))
	}
	if got := br.text(`#services tr[data-service="validator"] .reason`); !strings.HasPrefix(got, "up, ready") {
		t.Errorf("validator's reason %q", got)
	}
	br.shot("1-green")

	t.Log("kill -9 validator")
	killed := time.Now()
	if err := sl.Procs["validator"].Kill(); err != nil {
		t.Fatal(err)
	}
	rep = waitHealth(ctx, t, base, sl.DLQ.ViewerToken, redWithin, "validator red", func(r healthReport) bool {
		st, _ := r.service("validator")
		return st == "red"
	})
	_, reason := rep.service("validator")
	t.Logf("validator red in the JSON %s after the kill: %s", time.Since(killed).Round(100*time.Millisecond), reason)
	if !strings.HasPrefix(reason, "down: ") || rep.Overall.Status != "red" || !strings.HasPrefix(rep.Overall.Reason, "validator: down") {
		t.Errorf("after the kill: %s", rep)
	}
	// The open page reloads itself (every 10 s): no navigation by the test.
	br.do("the page turns the validator red", chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="validator"][data-status="red"]`)))
	t.Logf("validator red on the page %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	if time.Since(killed) > redWithin {
		t.Errorf("the page showed the validator red only %s after the kill, want within %s", time.Since(killed).Round(time.Second), redWithin)
	}
	if got := br.text("#overall-status"); got != "Failing" {
		t.Errorf("overall status on the page %q, want Failing", got)
	}
	if got := br.text("#overall-reason"); !strings.HasPrefix(got, "validator: down") {
		t.Errorf("overall reason on the page %q", got)
	}
	br.shot("2-validator-red")
	t.Logf("screenshots: %s, %s", filepath.Join(runDir, "1-green.png"), filepath.Join(runDir, "2-validator-red.png"))

	// The validator back, every click of the run balances in the reconciliation, across the
	// kill -9: the stream stops (so the window ends), the validator catches up on what queued
	// while it was down, and bq-writer on what it passed on.
	stopStream()
	ended := time.Now()
	if err := sl.StartOne(ctx, "validator"); err != nil {
		t.Fatalf("restart the validator: %v", err)
	}
	for deadline := time.Now().Add(reconcileLimit); ; time.Sleep(250 * time.Millisecond) {
		ok, line, err := groupsCaughtUp(ctx, sl.Opts.Brokers,
			groupTopic{prefix + "ingest-clickstream", sl.Topics.Raw},
			groupTopic{prefix + "validator", sl.Topics.Events},
			groupTopic{prefix + "bq-writer", sl.Topics.Valid})
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up %s after the validator's restart: %s (%v)", reconcileLimit, line, err)
		}
	}
	t.Logf("validator restarted and every stage caught up %s after the stream stopped", time.Since(ended).Round(100*time.Millisecond))
	assertReconciled(ctx, t, sl, reconcile.SourceClickstream, reconcile.Window{From: began, To: ended})
	t.Logf("restart and reconciliation took %s", time.Since(ended).Round(100*time.Millisecond))
}

// startPrometheus runs a Prometheus on a free port scraping the slice's
// services every 2 s (job = the service, label slice = id) and returns its
// URL; it is stopped at the test's end.
func startPrometheus(ctx context.Context, t *testing.T, root, runDir string, sl *slice.Slice, id string) string {
	t.Helper()
	bin, err := prometheusBinary(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := svcrun.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	cfg.WriteString("global: { scrape_interval: 2s, scrape_timeout: 1s, evaluation_interval: 2s }\nscrape_configs:\n")
	for _, name := range sl.Names {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs: [ { targets: [%q], labels: { slice: %q } } ]\n", name, sl.Procs[name].HTTPAddr, id)
	}
	dir := filepath.Join(runDir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &svcrun.Process{Name: "prometheus", Bin: bin, HTTPAddr: addr, LogPath: filepath.Join(dir, "prometheus.log"),
		Args: []string{"--config.file=" + cfgPath, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr, "--storage.tsdb.retention.time=1h"}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	url := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if !p.Running() || time.Now().After(deadline) {
			t.Fatalf("prometheus %s did not become ready; log:\n%s", bin, svcrun.Tail(p.LogPath, 20))
		}
	}
}

// prometheusBinary is the stack's Prometheus (deploy/local/stack/prometheus-fetch.sh
// prints its folder, installing it on first use) or, before that script
// exists, PROMETHEUS_BIN or the unpacked Debian package in /tmp/pdl.
func prometheusBinary(ctx context.Context, root string) (string, error) {
	if bin := os.Getenv("PROMETHEUS_BIN"); bin != "" {
		return bin, nil
	}
	script := filepath.Join(root, "deploy", "local", "stack", "prometheus-fetch.sh")
	if _, err := os.Stat(script); err == nil {
		out, err := exec.CommandContext(ctx, "bash", script).Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w", script, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return filepath.Join(strings.TrimSpace(lines[len(lines)-1]), "prometheus"), nil
	}
	const unpacked = "/tmp/pdl/x/usr/bin/prometheus"
	if _, err := os.Stat(unpacked); err != nil {
		return "", errors.New("no Prometheus: set PROMETHEUS_URL (the stack's, `eval \"$(deploy/local/stack.sh env)\"`) or PROMETHEUS_BIN")
	}
	return unpacked, nil
}

func getHealth(ctx context.Context, base, token string) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/health", nil)
	if err != nil {
		return 0, nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b
}

// waitHealth polls GET /v1/health until ok holds, failing the test with the
// last report after within.
func waitHealth(ctx context.Context, t *testing.T, base, token string, within time.Duration, what string, ok func(healthReport) bool) healthReport {
	t.Helper()
	var last healthReport
	var lastErr string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		st, b := getHealth(ctx, base, token)
		if st != http.StatusOK {
			lastErr = fmt.Sprintf("HTTP %d: %s", st, b)
			continue
		}
		last, lastErr = healthReport{}, ""
		if err := json.Unmarshal(b, &last); err != nil {
			lastErr = err.Error()
			continue
		}
		if ok(last) {
			return last
		}
	}
	t.Fatalf("health page not %s after %s: %s %s", what, within, last, lastErr)
	return last
}

// healthBrowser is one headless Chromium tab (the approach of
// deploy/local/consoletest).
type healthBrowser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newHealthBrowser(t *testing.T, shots string) *healthBrowser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in CI; the pages are our own
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return &healthBrowser{t: t, ctx: ctx, shots: shots}
}

func (b *healthBrowser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", what, err, b.text("main"))
	}
}

func (b *healthBrowser) follow(sel, want string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.WaitEvent(cdppage.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
	b.do("wait for "+want, chromedp.WaitVisible(chromedp.CSS(want)))
}

func (b *healthBrowser) text(sel string) string {
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return strings.Join(strings.Fields(s), " ")
}

func (b *healthBrowser) attr(sel, name string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {getAttribute: () => "(no element)"}).getAttribute(%q) || ""`, sel, name)))
	if err != nil {
		b.t.Fatalf("attribute %s of %s: %v", name, sel, err)
	}
	return s
}

// shot saves the whole page as <name>.png in the run folder.
func (b *healthBrowser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100 = PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
