package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecomstream/platform/pkg/avroserde"
	"github.com/ecomstream/platform/pkg/events"
	protoavro "github.com/ecomstream/platform/proto/avro"
	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/fixture"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
)

// Tokens of the integration tests' file: a viewer and an operator without
// the PII right, a viewer with it.
const (
	bobTok   = "bob-viewer-token-0123456789"
	opTok    = "op-operator-token-0123456789"
	carolTok = "carol-pii-viewer-token-0123456789"
)

type itest struct {
	pool *pgxpool.Pool
	srv  *httptest.Server
	now  time.Time
}

func newITest(t *testing.T, cfg Config) *itest {
	t.Helper()
	pool := fixture.Pool(t)
	path := filepath.Join(t.TempDir(), "tokens.json")
	tokens := []map[string]any{
		{"name": "bob", "role": "viewer", "pii": false, "sha256": sha(bobTok)},
		{"name": "op", "role": "operator", "pii": false, "sha256": sha(opTok)},
		{"name": "carol", "role": "viewer", "pii": true, "sha256": sha(carolTok)},
	}
	raw, _ := json.Marshal(tokens)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	tk, err := auth.New(auth.Config{TokensFile: path})
	if err != nil {
		t.Fatal(err)
	}
	it := &itest{pool: pool, now: time.Date(2026, 3, 4, 10, 0, 30, 0, time.UTC)}
	cfg.Pool, cfg.Auth, cfg.Now = pool, tk, func() time.Time { return it.now }
	// Mounted as main mounts it, beside the service's own routes.
	outer := chi.NewRouter()
	outer.Handle("/v1/*", New(cfg))
	it.srv = httptest.NewServer(outer)
	t.Cleanup(it.srv.Close)
	return it
}

// call sends a request and decodes the JSON answer into out (when not nil).
func (it *itest) call(t *testing.T, method, path, token string, body any, out any) int {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, it.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func sha(tok string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(tok)))
}

var base = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestIntegrationListAndStats(t *testing.T) {
	it := newITest(t, Config{})
	var rows []fixture.Row
	for i := range 9 {
		rows = append(rows, fixture.Row{
			ID: fmt.Sprintf("dl-%d", i), Stage: []string{"validator", "bq-writer", "ingest-clickstream"}[i%3],
			FailedAt: base.Add(-time.Duration(i) * time.Minute),
			Reasons: []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule("order.email_valid"),
				Message: fmt.Sprintf("email u%d@shop.example is not valid", i)}},
		})
	}
	fixture.Insert(t, it.pool, rows...)

	// Paginated through HTTP: every row once, newest first.
	var got []string
	next := ""
	for pages := 0; ; pages++ {
		var page query.ListResult
		path := "/v1/dead-letters?limit=4&code=RULE_FAILED"
		if next != "" {
			path += "&cursor=" + url.QueryEscape(next)
		}
		if st := it.call(t, "GET", path, bobTok, nil, &page); st != 200 {
			t.Fatalf("list: %d", st)
		}
		for _, d := range page.Items {
			got = append(got, d.ID)
			if strings.Contains(d.Message, "@") || strings.Contains(d.Reasons[0].Message, "@") {
				t.Errorf("viewer without pii sees %q / %q", d.Message, d.Reasons[0].Message)
			}
		}
		if next = page.NextCursor; next == "" || pages > 5 {
			break
		}
	}
	want := []string{"dl-0", "dl-1", "dl-2", "dl-3", "dl-4", "dl-5", "dl-6", "dl-7", "dl-8"}
	if !slices.Equal(got, want) {
		t.Errorf("walked %v, want %v", got, want)
	}
	var page query.ListResult
	it.call(t, "GET", "/v1/dead-letters?stage=validator&q=valid", carolTok, nil, &page)
	if len(page.Items) != 3 || !strings.Contains(page.Items[0].Message, "u0@shop.example") {
		t.Errorf("pii viewer, validator: %+v", page.Items)
	}

	// Searching for an address: the pii viewer finds it.
	it.call(t, "GET", "/v1/dead-letters?q="+url.QueryEscape("u3@shop.example"), carolTok, nil, &page)
	if len(page.Items) != 1 || page.Items[0].ID != "dl-3" {
		t.Errorf("pii viewer's email search: %+v", page.Items)
	}

	var st query.Stats
	if code := it.call(t, "GET", "/v1/stats?window=5m&buckets=2", bobTok, nil, &st); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	// Buckets [09:55, 10:00) and [10:00, 10:05) hold minutes -5..-1 and 0; -8..-6 are before.
	if st.Total != 6 || len(st.ByRule) != 1 || !slices.Equal(st.ByRule[0].Counts, []int{5, 1}) ||
		st.ByState["new"] != 9 || st.Oldest == nil || st.Oldest.ID != "dl-8" {
		t.Errorf("stats %+v", st)
	}
}

// TestIntegrationGetAvro: a customer_change original in Avro, registered
// in the stack's registry, decoded to JSON: redacted for a viewer without
// the PII right, shown to one with it; the key, headers and trace link.
func TestIntegrationGetAvro(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	regURL := os.Getenv("SCHEMA_REGISTRY_URL")
	if regURL == "" {
		t.Fatal(`SCHEMA_REGISTRY_URL is not set: start the local stack and eval "$(deploy/local/stack.sh env)"`)
	}
	reg, err := avroserde.New(avroserde.Config{URL: regURL, AutoRegister: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The current customer_change schema under its topic's subject: registering it
	// again is a no-op that answers its id.
	codec, err := reg.Codec(ctx, avroserde.SubjectFor("ecom.customers.v1"), protoavro.CustomerChange)
	if err != nil {
		t.Fatal(err)
	}
	email, name, country := "ann.lee@shop.example", "Ann Lee", "CH"
	value, err := codec.Encode(events.CustomerChange{
		CustomerID: "c-42", Op: "upsert", Email: &email, Name: &name, Country: &country, IsActive: true,
		UpdatedAt: base, SyncedAt: base, Source: "cdc", SourceLsn: 77,
	})
	if err != nil {
		t.Fatal(err)
	}
	sid := int32(codec.ID())
	it := newITest(t, Config{Registry: reg.Generic(), TraceURLTemplate: "http://127.0.0.1:16686/trace/{trace_id}"})
	fixture.Insert(t, it.pool,
		fixture.Row{ID: "dl-avro", Stage: "bq-writer", Entity: "customer_change", Topic: "ecom.customers.v1", Key: []byte("c-42"),
			Value: value, SchemaID: &sid, PII: true, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", FailedAt: base,
			Headers: []fixture.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
				{Key: "bin", Value: []byte{0, 1, 2}}},
			Reasons: []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule("customer.email_domain"), Field: fixture.Rule("email"),
				Message: "email ann.lee@shop.example: domain not allowed"}}},
		fixture.Row{ID: "dl-bin", PII: true, Value: []byte{0xff, 0x00, 0x10}},
	)

	var bob, carol Detail
	if st := it.call(t, "GET", "/v1/dead-letters/dl-avro", bobTok, nil, &bob); st != 200 {
		t.Fatalf("get as bob: %d", st)
	}
	if st := it.call(t, "GET", "/v1/dead-letters/dl-avro", carolTok, nil, &carol); st != 200 {
		t.Fatalf("get as carol: %d", st)
	}
	for _, d := range []Detail{bob, carol} {
		if d.Original.Format != "avro" || d.Original.SchemaID == nil || *d.Original.SchemaID != int(sid) || d.Original.DecodeError != "" {
			t.Fatalf("original %+v", d.Original)
		}
		if d.TraceURL != "http://127.0.0.1:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("trace url %q", d.TraceURL)
		}
		if d.Key == nil || d.Key.Encoding != "utf8" || d.Key.Value != "c-42" {
			t.Errorf("key %+v", d.Key)
		}
		if len(d.Headers) != 2 || d.Headers[0].Key != "traceparent" || d.Headers[0].Encoding != "utf8" {
			t.Errorf("headers %+v", d.Headers)
		}
	}
	var bobV, carolV map[string]any
	if err := json.Unmarshal(bob.Original.Decoded, &bobV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(carol.Original.Decoded, &carolV); err != nil {
		t.Fatal(err)
	}
	if carolV["email"] != email || carolV["name"] != name || carolV["customer_id"] != "c-42" || carolV["source_lsn"] != float64(77) || carol.Original.Redacted {
		t.Errorf("pii viewer sees %v (redacted %v)", carolV, carol.Original.Redacted)
	}
	if bobV["email"] != "[redacted]" || bobV["name"] != "[redacted]" || bobV["country"] != "CH" || bobV["customer_id"] != "c-42" || !bob.Original.Redacted {
		t.Errorf("viewer without pii sees %v (redacted %v)", bobV, bob.Original.Redacted)
	}
	if strings.Contains(bob.Original.Pretty, email) || strings.Contains(bob.DeadLetter.Message, email) ||
		strings.Contains(bob.DeadLetter.Reasons[0].Message, email) || !strings.Contains(bob.Original.Pretty, "\n  \"country\": \"CH\"") {
		t.Errorf("viewer without pii: pretty %q, message %q", bob.Original.Pretty, bob.DeadLetter.Message)
	}
	if !strings.Contains(carol.DeadLetter.Message, email) {
		t.Errorf("pii viewer's message %q", carol.DeadLetter.Message)
	}
	if bob.Headers[1].Encoding != "hidden" || carol.Headers[1].Encoding != "hex" || carol.Headers[1].Value != "000102" {
		t.Errorf("binary header: bob %+v, carol %+v", bob.Headers[1], carol.Headers[1])
	}

	// A pii row's bytes that are neither Avro nor JSON.
	var bin Detail
	it.call(t, "GET", "/v1/dead-letters/dl-bin", bobTok, nil, &bin)
	if bin.Original.Format != "hidden" || bin.Original.Hex != "" {
		t.Errorf("pii binary for bob: %+v", bin.Original)
	}
	it.call(t, "GET", "/v1/dead-letters/dl-bin", carolTok, nil, &bin)
	if bin.Original.Format != "hex" || bin.Original.Hex != "ff0010" {
		t.Errorf("pii binary for carol: %+v", bin.Original)
	}
	var e apiError
	if st := it.call(t, "GET", "/v1/dead-letters/nope", bobTok, nil, &e); st != 404 || e.Error.Code != "not_found" {
		t.Errorf("unknown id: %d %+v", st, e)
	}
}

func TestIntegrationDiscard(t *testing.T) {
	it := newITest(t, Config{})
	fixture.Insert(t, it.pool,
		fixture.Row{ID: "a", Stage: "validator", State: "new"},
		fixture.Row{ID: "b", Stage: "validator", State: "failed_again"},
		fixture.Row{ID: "c", Stage: "validator", State: "replayed"},
		fixture.Row{ID: "d", Stage: "validator", State: "resolved"},
		fixture.Row{ID: "e", Stage: "bq-writer", State: "new"},
		fixture.Row{ID: "f", Stage: "bq-writer", State: "new", Reasons: []fixture.Reason{{Code: "RULE_FAILED", RuleID: fixture.Rule("r9"), Message: "x"}}},
		fixture.Row{ID: "g", Stage: "bq-writer", State: "discarded"},
	)
	states := func() map[string]string {
		out := map[string]string{}
		rows, err := it.pool.Query(context.Background(), "SELECT dead_letter_id, state, coalesce(discarded_by, '') FROM dead_letters")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, st, by string
			if err := rows.Scan(&id, &st, &by); err != nil {
				t.Fatal(err)
			}
			out[id] = st + "/" + by
		}
		return out
	}
	auditCount := func() int {
		var n int
		if err := it.pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_log WHERE action = 'discard'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A dry run by ids says what would happen and changes nothing.
	var res DiscardResponse
	body := map[string]any{"ids": []string{"a", "b", "c", "d", "zz", "a"}, "reason": "test noise", "dry_run": true}
	if st := it.call(t, "POST", "/v1/dead-letters/discard", opTok, body, &res); st != 200 {
		t.Fatalf("dry run: %d", st)
	}
	if !res.DryRun || res.Matched != 2 || res.Discarded != 0 || res.Skipped != 2 ||
		!slices.Equal(res.NotFound, []string{"zz"}) || len(res.SkippedIDs) != 2 || res.SkippedIDs[0] != (Skipped{ID: "c", State: "replayed"}) || res.AuditID != nil {
		t.Errorf("dry run %+v", res)
	}
	if states()["a"] != "new/" || auditCount() != 0 {
		t.Error("the dry run changed something")
	}

	// For real.
	body["dry_run"] = false
	res = DiscardResponse{}
	if st := it.call(t, "POST", "/v1/dead-letters/discard", opTok, body, &res); st != 200 {
		t.Fatalf("discard: %d", st)
	}
	if res.DryRun || res.Discarded != 2 || res.Matched != 2 || res.AuditID == nil {
		t.Errorf("discard %+v", res)
	}
	s := states()
	if s["a"] != "discarded/op" || s["b"] != "discarded/op" || s["c"] != "replayed/" || s["d"] != "resolved/" {
		t.Errorf("states after discard %v", s)
	}
	var reason string
	if err := it.pool.QueryRow(context.Background(), "SELECT discard_reason FROM dead_letters WHERE dead_letter_id = 'a'").Scan(&reason); err != nil || reason != "test noise" {
		t.Errorf("discard_reason %q, %v", reason, err)
	}
	// Again: nothing left to discard.
	res = DiscardResponse{}
	it.call(t, "POST", "/v1/dead-letters/discard", opTok, body, &res)
	if res.Discarded != 0 || res.Skipped != 4 {
		t.Errorf("repeated discard %+v", res)
	}

	// By filter: bq-writer's discardable ones.
	filter := map[string]any{"filter": map[string]any{"stage": []string{"bq-writer"}}, "reason": "bq-writer bug fixed elsewhere", "dry_run": true}
	res = DiscardResponse{}
	it.call(t, "POST", "/v1/dead-letters/discard", opTok, filter, &res)
	if res.Matched != 2 || res.Skipped != 1 || res.Discarded != 0 {
		t.Errorf("filter dry run %+v", res)
	}
	filter["dry_run"] = false
	filter["filter"] = map[string]any{"stage": []string{"bq-writer"}, "rule_id": []string{"r9"}}
	res = DiscardResponse{}
	it.call(t, "POST", "/v1/dead-letters/discard", opTok, filter, &res)
	if res.Discarded != 1 || states()["f"] != "discarded/op" || states()["e"] != "new/" {
		t.Errorf("filter discard %+v, states %v", res, states())
	}

	// The audit log: three discards (the ids, its repeat, the filter; dry runs are not
	// actions), newest first, filterable by actor and action.
	var audit query.AuditResult
	if st := it.call(t, "GET", "/v1/audit?actor=op&action=discard", bobTok, nil, &audit); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	if len(audit.Items) != 3 || audit.Items[0].Actor != "op" || audit.Items[0].Role != "operator" {
		t.Fatalf("audit %+v", audit.Items)
	}
	var newest struct {
		Filter query.Filter `json:"filter"`
	}
	var detail map[string]any
	_ = json.Unmarshal(audit.Items[0].Target, &newest)
	_ = json.Unmarshal(audit.Items[0].Detail, &detail)
	if !slices.Equal(newest.Filter.RuleID, []string{"r9"}) || detail["reason"] != "bq-writer bug fixed elsewhere" || detail["discarded"] != float64(1) {
		t.Errorf("newest audit entry: target %s detail %s", audit.Items[0].Target, audit.Items[0].Detail)
	}
	if *res.AuditID != audit.Items[0].ID {
		t.Errorf("audit_id %d, newest entry %d", *res.AuditID, audit.Items[0].ID)
	}
	// A reason typed with an address is redacted for viewers without pii.
	it.call(t, "POST", "/v1/dead-letters/discard", opTok, map[string]any{"ids": []string{"e"}, "reason": "asked by ann@shop.example"}, &res)
	var bobD, carolD Detail
	it.call(t, "GET", "/v1/dead-letters/e", bobTok, nil, &bobD)
	it.call(t, "GET", "/v1/dead-letters/e", carolTok, nil, &carolD)
	if *bobD.DeadLetter.DiscardReason != "asked by [redacted]" || *carolD.DeadLetter.DiscardReason != "asked by ann@shop.example" {
		t.Errorf("discard reason: bob %q, carol %q", *bobD.DeadLetter.DiscardReason, *carolD.DeadLetter.DiscardReason)
	}
	it.call(t, "GET", "/v1/audit?action=discard&limit=1", bobTok, nil, &audit)
	if strings.Contains(string(audit.Items[0].Detail), "ann@") || !strings.Contains(string(audit.Items[0].Detail), "[redacted]") {
		t.Errorf("audit detail for bob: %s", audit.Items[0].Detail)
	}

	var e apiError
	if st := it.call(t, "POST", "/v1/dead-letters/discard", bobTok, body, &e); st != 403 {
		t.Errorf("viewer discard: %d", st)
	}
}

// TestIntegrationDiscardAtomic: when the audit row cannot be written, the
// discard is rolled back with it.
func TestIntegrationDiscardAtomic(t *testing.T) {
	it := newITest(t, Config{})
	fixture.Insert(t, it.pool, fixture.Row{ID: "a", State: "new"})
	ctx := context.Background()
	if _, err := it.pool.Exec(ctx, "ALTER TABLE audit_log ADD CONSTRAINT no_discards CHECK (action <> 'discard')"); err != nil {
		t.Fatal(err)
	}
	var e apiError
	if st := it.call(t, "POST", "/v1/dead-letters/discard", opTok, map[string]any{"ids": []string{"a"}, "reason": "x"}, &e); st != 500 || e.Error.Code != "internal" {
		t.Fatalf("discard with a failing audit: %d %+v", st, e)
	}
	var state string
	if err := it.pool.QueryRow(ctx, "SELECT state FROM dead_letters WHERE dead_letter_id = 'a'").Scan(&state); err != nil || state != "new" {
		t.Errorf("state %q, %v; want new (rolled back)", state, err)
	}
}

func TestIntegrationRetention(t *testing.T) {
	fail := false
	it := newITest(t, Config{Retention: func(ctx context.Context) (any, error) {
		if fail {
			return nil, errors.New("purge: connection reset")
		}
		return map[string]int{"deleted": 3, "pii_purged": 1}, nil
	}})
	var res RetentionResponse
	if st := it.call(t, "POST", "/v1/retention", opTok, nil, &res); st != 200 {
		t.Fatalf("retention: %d", st)
	}
	if m, ok := res.Result.(map[string]any); !ok || m["deleted"] != float64(3) || res.AuditID == 0 {
		t.Errorf("retention %+v", res)
	}
	fail = true
	var e apiError
	if st := it.call(t, "POST", "/v1/retention", opTok, map[string]any{}, &e); st != 500 {
		t.Errorf("failing retention: %d", st)
	}
	var audit query.AuditResult
	it.call(t, "GET", "/v1/audit?action=retention", carolTok, nil, &audit)
	if len(audit.Items) != 2 || !strings.Contains(string(audit.Items[0].Detail), "connection reset") ||
		!strings.Contains(string(audit.Items[1].Detail), `"deleted": 3`) && !strings.Contains(string(audit.Items[1].Detail), `"deleted":3`) {
		t.Errorf("audit %+v", audit.Items)
	}
	if st := it.call(t, "POST", "/v1/retention", bobTok, nil, &e); st != 403 {
		t.Errorf("viewer retention: %d", st)
	}
}
