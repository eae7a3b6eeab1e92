// Package consoletest drives dlq-handler's web console in headless
// Chromium against the local stack: the service built from this checkout,
// real DeadLetter envelopes on a topic of the test's own, and the pages an
// operator walks through. Screenshots of every page go to the git-ignored
// <repo>/.run/consoletest/<test>-<time>/ folder.
package consoletest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/svcrun"
	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/pkg/stream"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// chromiumPath is where Debian's chromium package (make deps-browser) puts it.
const chromiumPath = "/usr/bin/chromium"

// operatorToken is the test's DLQ_OPERATOR_TOKEN.
const operatorToken = "console-test-operator-token"

// replayWired says whether this build's main passes the replay engine to
// the console: false, the test wants replay shown as unavailable; true, it
// replays a dead letter from the console and wants it replayed.
const replayWired = true

// letter is one dead letter the test produces.
type letter struct {
	stage, entity, rule, code, value string
}

// letters: several stages, codes and rules; one customer_change with
// personal data.
var letters = []letter{
	{"validator", "order", "order.total_positive", "RULE_FAILED", `{"order_id":"o-1","total":-5}`},
	{"validator", "order", "order.total_positive", "RULE_FAILED", `{"order_id":"o-2","total":-1}`},
	{"validator", "order", "order.currency_known", "RULE_FAILED", `{"order_id":"o-3","currency":"XXX"}`},
	{"validator", "customer_change", "customer.email_valid", "RULE_FAILED", `{"customer_id":"c-1","email":"ann@example.com","name":"Ann Lee"}`},
	{"ingest-clickstream", "click_event", "", "SCHEMA_MISMATCH", `{"event_id":"e-1","type":"?"}`},
	{"bq-writer", "order", "", "WAREHOUSE_REJECTED", `{"order_id":"o-4"}`},
}

// TestIntegrationConsoleBrowser: an operator signs in, finds the dead
// letters of a rule, opens one, discards it with a reason and sees its new
// state; replay is shown as unavailable (the replay engine is not wired in
// this build); personal data is redacted for an identity without the pii
// right; signing out ends the session.
func TestIntegrationConsoleBrowser(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	topic, schema, group := "it-console-"+id+".ecom.dlq.v1", "dlq_console_"+id, "it-console-"+id
	source := "it-console-" + id + ".ecom.test.v1" // the stages' input a replay goes back to

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
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if err := stream.EnsureTopics(ctx, adm, stream.Config{TopicPartitions: 2, TopicReplication: 1}, stream.TopicSpec{Name: topic}, stream.TopicSpec{Name: source}); err != nil {
		t.Fatalf("kafka (KAFKA_BROKERS): %v", err)
	}
	t.Cleanup(func() {
		_, _ = adm.DeleteTopics(context.Background(), topic, source)
		_, _ = adm.DeleteGroup(context.Background(), group)
	})

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
			"DLQ_OPERATOR_TOKEN=" + operatorToken, "DLQ_TOKENS_FILE=", "DLQ_VIEWER_TOKEN=", "DLQ_RETENTION_SCHEDULE=off",
			"DLQ_TRACE_URL_TEMPLATE=http://127.0.0.1:16686/trace/{trace_id}", "LAG_REFRESH_INTERVAL=1s"}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	if err := p.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}

	// The envelopes, through the registry like a stage writes them.
	reg, err := avroserde.New(avroserde.Config{URL: registryURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := reg.Codec(ctx, avroserde.SubjectFor(topic), protoavro.DeadLetter)
	if err != nil {
		t.Fatalf("schema registry (SCHEMA_REGISTRY_URL): %v", err)
	}
	now := time.Now().UTC()
	ids := make([]string, len(letters))
	var recs []*kgo.Record
	for i, l := range letters {
		ids[i] = fmt.Sprintf("%s:%s:0:%d", l.stage, source, i)
		entity, trace := l.entity, fmt.Sprintf("%032x", i+1)
		reason := events.Reason{Code: l.code, Message: fmt.Sprintf("%s failed on record %d", cmp.Or(l.rule, l.code), i)}
		if l.rule != "" {
			rule := l.rule
			reason.RuleID = &rule
		}
		v, err := codec.Encode(&events.DeadLetter{DeadLetterID: ids[i], Stage: l.stage, Entity: &entity, SourceTopic: source,
			SourceOffset: int64(i), SourceTimestamp: now.Add(-time.Duration(len(letters)-i) * time.Minute), OriginalValue: []byte(l.value),
			OriginalHeaders: []events.Header{{Key: "source", Value: []byte("consoletest")}}, Reasons: []events.Reason{reason},
			Attempt: 1, TraceID: &trace, FailedAt: now.Add(-time.Duration(len(letters)-i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: []byte(ids[i]), Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, strings.ReplaceAll(q, "$schema", schema), args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(60 * time.Second); count("SELECT count(*) FROM $schema.dead_letters") < len(letters); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dead letters stored after 60s; log:\n%s", count("SELECT count(*) FROM $schema.dead_letters"), len(letters), svcrun.Tail(p.LogPath, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}

	br := newBrowser(t, run)
	base := "http://" + addr

	// Sign in: / leads to the console's login.
	br.do("open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	br.shot("1-login")
	br.do("type the token", chromedp.SendKeys(chromedp.CSS("#token"), operatorToken))
	br.follow("#sign-in", "#total")
	if got := br.text("#identity"); !strings.Contains(got, "operator (operator)") {
		t.Fatalf("signed in as %q", got)
	}
	if got := br.text("#total"); got != strconv.Itoa(len(letters)) {
		t.Errorf("overview total = %q, want %d", got, len(letters))
	}
	if got := br.text("#oldest"); !strings.Contains(got, ids[0]) {
		t.Errorf("oldest unresolved = %q, want %s", got, ids[0])
	}
	br.shot("2-overview")

	// Filter by a rule.
	br.follow(`nav a[href="/console/dead-letters"]`, "#filter-form")
	br.do("type the rule", chromedp.SendKeys(chromedp.CSS("#filter-rule"), "order.total_positive"))
	br.follow("#apply-filter", "#dead-letters")
	rows := br.eval(`Array.from(document.querySelectorAll("#dead-letters tbody tr")).map(r => r.dataset.id).join(",")`)
	if want := ids[1] + "," + ids[0]; rows != want {
		t.Fatalf("rows of rule order.total_positive = %q, want %q (newest first)", rows, want)
	}
	br.shot("3-list-by-rule")

	// Open one: its reasons, the decoded original, the trace link.
	br.follow(fmt.Sprintf(`#dead-letters tr[data-id=%q] a.open`, ids[0]), "#dead-letter-id")
	if got := br.text("#dead-letter-id"); got != ids[0] {
		t.Fatalf("detail of %q, want %s", got, ids[0])
	}
	if got := br.text("#original"); !strings.Contains(got, `"order_id": "o-1"`) {
		t.Errorf("original = %q", got)
	}
	if got := br.eval(`document.querySelector("#trace-link").href`); got != "http://127.0.0.1:16686/trace/"+fmt.Sprintf("%032x", 1) {
		t.Errorf("trace link = %q", got)
	}
	if !replayWired {
		if got := br.text("#replay-unavailable"); !strings.Contains(got, "unavailable") {
			t.Errorf("replay note = %q, want replay shown as unavailable", got)
		}
	}
	br.shot("4-detail")

	// Discard it: the confirmation counts one, the reason is required.
	br.follow("#discard", "#affected")
	if got := br.eval(`document.querySelector("#affected").dataset.matched`); got != "1" {
		t.Fatalf("the confirmation counts %s, want 1", got)
	}
	br.shot("5-confirm-discard")
	br.do("type the reason", chromedp.SendKeys(chromedp.CSS("#reason"), "duplicate of o-2, fixed at the source"))
	br.follow("#confirm", "#done")
	if got := br.eval(`document.querySelector("#done").dataset.done`); got != "1" {
		t.Fatalf("discarded %s, want 1", got)
	}
	br.shot("6-discarded")
	br.follow("#back-to-detail", "#state")
	if got := br.text("#state"); got != "discarded" {
		t.Fatalf("state after the discard = %q", got)
	}
	if got := br.text("#discard-reason"); !strings.Contains(got, "duplicate of o-2") || !strings.Contains(got, "operator") {
		t.Errorf("discard reason = %q", got)
	}
	br.shot("7-detail-discarded")
	if n := count("SELECT count(*) FROM $schema.dead_letters WHERE dead_letter_id = $1 AND state = 'discarded' AND discarded_by = 'operator'", ids[0]); n != 1 {
		t.Errorf("the store does not hold the discard")
	}
	if n := count("SELECT count(*) FROM $schema.audit_log WHERE action = 'discard' AND actor = 'operator'"); n != 1 {
		t.Errorf("%d discard audit rows, want 1", n)
	}

	if replayWired {
		// Replay the other one of the rule: one affected, a job, and its state.
		br.do("open "+ids[1], chromedp.Navigate(base+"/console/dead-letters/"+ids[1]), chromedp.WaitVisible(chromedp.CSS("#replay")))
		br.follow("#replay", "#affected")
		if got := br.eval(`document.querySelector("#affected").dataset.matched`); got != "1" {
			t.Fatalf("the replay confirmation counts %s, want 1", got)
		}
		br.shot("7a-confirm-replay")
		br.follow("#confirm", "#done")
		if got := br.eval(`document.querySelector("#done").dataset.done`); got != "1" {
			t.Fatalf("planned %s for replay, want 1", got)
		}
		br.shot("7b-replayed")
		br.follow("#job-link", "#job-state")
		br.shot("7c-replay-job")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			br.do("open "+ids[1], chromedp.Navigate(base+"/console/dead-letters/"+ids[1]), chromedp.WaitVisible(chromedp.CSS("#state")))
			if got := br.text("#state"); got != "new" {
				if got != "replayed" && got != "resolved" {
					t.Fatalf("state after the replay = %q", got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("still new 30s after the replay")
			}
		}
		br.shot("7d-detail-replayed")
	}

	// Personal data: the operator token has no pii right.
	br.do("open the pii dead letter", chromedp.Navigate(base+"/console/dead-letters/"+ids[3]), chromedp.WaitVisible(chromedp.CSS("#original")))
	if got := br.text("#original"); strings.Contains(got, "ann@example.com") || strings.Contains(got, "Ann Lee") || !strings.Contains(got, "[redacted]") || !strings.Contains(got, "c-1") {
		t.Errorf("pii original shown as %q, want the email and name redacted", got)
	}
	br.shot("8-detail-pii-redacted")

	// A phone-sized window.
	br.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/console/dead-letters?stage=validator"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
	if got := br.eval(`String(document.documentElement.scrollWidth <= window.innerWidth + 1)`); got != "true" {
		t.Errorf("the list scrolls sideways on a phone")
	}
	br.shot("9-list-phone")
	br.do("laptop viewport", chromedp.EmulateViewport(1280, 900))

	// Sign out: the console asks for the token again.
	br.do("open the overview", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#total")))
	br.follow("#logout", "#login-form")
	br.do("the overview after signing out", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	br.shot("10-signed-out")
}

// browser is one headless Chromium tab (the approach of
// deploy/local/webdemo/browser_test.go).
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T, shots string) *browser {
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
	return &browser{t: t, ctx: ctx, shots: shots}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", what, err, b.text("main"))
	}
}

// follow clicks sel (a link or a submit button), waits for the next page to
// load and for want on it.
func (b *browser) follow(sel, want string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.WaitEvent(cdppage.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
	b.do("wait for "+want, chromedp.WaitVisible(chromedp.CSS(want)))
}

func (b *browser) text(sel string) string {
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return strings.TrimSpace(s)
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// shot saves the whole page as <name>.png in the run folder.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100 = PNG; less is JPEG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
