package registry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	orderV1 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`
	orderV2 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"total","type":["null","long"],"default":null}]}`
	event   = `{"type":"record","name":"Event","fields":[{"name":"event_id","type":"string"}]}`
	product = `{"type":"record","name":"Product","fields":[{"name":"sku","type":"string"}]}`
	later   = `{"type":"record","name":"Later","fields":[{"name":"x","type":"int"}]}`
)

// server is one "process lifetime" of the registry over a journal file.
type server struct {
	reg *Registry
	srv *httptest.Server
	cl  *sr.Client
}

func start(t *testing.T, journal string) *server {
	t.Helper()
	reg, err := Open(journal, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	srv := httptest.NewServer(reg.Handler())
	cl, err := sr.NewClient(sr.URLs(srv.URL), sr.HTTPClient(srv.Client()))
	if err != nil {
		t.Fatalf("sr.NewClient: %v", err)
	}
	s := &server{reg: reg, srv: srv, cl: cl}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	_ = s.reg.Close()
	s.srv = nil
}

func (s *server) create(t *testing.T, subject, schema string) sr.SubjectSchema {
	t.Helper()
	ss, err := s.cl.CreateSchema(context.Background(), subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("CreateSchema(%s): %v", subject, err)
	}
	return ss
}

func TestJournalReplayKeepsIDs(t *testing.T) {
	ctx := context.Background()
	journal := filepath.Join(t.TempDir(), "sr", "journal.jsonl")

	first := start(t, journal)
	registered := []sr.SubjectSchema{
		first.create(t, "ecom.orders.v1-value", orderV1),
		first.create(t, "ecom.events.v1-value", event),
		first.create(t, "ecom.orders.v1-value", orderV2),
		// Same schema under a second subject: shares the id.
		first.create(t, "ecom.orders.valid.v1-value", orderV1),
		first.create(t, "ecom.products.v1-value", product),
	}
	if registered[3].ID != registered[0].ID {
		t.Fatalf("shared schema got id %d, want %d", registered[3].ID, registered[0].ID)
	}
	// Registering a known schema again must not add a journal entry.
	again := first.create(t, "ecom.events.v1-value", event)
	if again.ID != registered[1].ID || again.Version != registered[1].Version {
		t.Fatalf("re-register = %+v, want %+v", again, registered[1])
	}
	if _, err := first.cl.DeleteSubject(ctx, "ecom.products.v1-value", sr.SoftDelete); err != nil {
		t.Fatalf("DeleteSubject: %v", err)
	}
	first.stop()

	second := start(t, journal)
	for _, want := range registered[:4] {
		got, err := second.cl.SchemaByVersion(ctx, want.Subject, want.Version)
		if err != nil {
			t.Fatalf("after restart, SchemaByVersion(%s, %d): %v", want.Subject, want.Version, err)
		}
		if got.ID != want.ID || got.Schema.Schema != want.Schema.Schema {
			t.Errorf("after restart %s v%d = id %d, want id %d", want.Subject, want.Version, got.ID, want.ID)
		}
		byID, err := second.cl.SchemaByID(ctx, want.ID)
		if err != nil || byID.Schema != want.Schema.Schema {
			t.Errorf("after restart SchemaByID(%d) = %q, %v", want.ID, byID.Schema, err)
		}
	}
	subjects, err := second.cl.Subjects(ctx)
	if err != nil {
		t.Fatalf("Subjects: %v", err)
	}
	for _, s := range subjects {
		if s == "ecom.products.v1-value" {
			t.Errorf("soft-deleted subject is back after restart: %v", subjects)
		}
	}
	// Product's id stays taken; a new schema gets the next id.
	next := second.create(t, "ecom.later.v1-value", later)
	if want := registered[4].ID + 1; next.ID != want {
		t.Errorf("new schema after restart got id %d, want %d", next.ID, want)
	}
	second.stop()

	third := start(t, journal)
	got, err := third.cl.SchemaByVersion(ctx, "ecom.later.v1-value", 1)
	if err != nil || got.ID != next.ID {
		t.Errorf("after second restart ecom.later.v1-value v1 = id %d, %v; want id %d", got.ID, err, next.ID)
	}
	if n := third.reg.Replayed(); n != 7 { // 6 registrations + 1 delete
		t.Errorf("replayed %d journal entries, want 7", n)
	}
}

func TestJournalTornTail(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	s := start(t, journal)
	want := s.create(t, "a-value", orderV1)
	s.stop()

	// A crash in the middle of a write leaves a partial last line.
	f, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"op":"register","subj`); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	s = start(t, journal)
	b := s.create(t, "b-value", event)
	s.stop()

	s = start(t, journal)
	for subject, id := range map[string]int{"a-value": want.ID, "b-value": b.ID} {
		got, err := s.cl.SchemaByVersion(context.Background(), subject, 1)
		if err != nil || got.ID != id {
			t.Errorf("%s v1 = id %d, %v; want id %d", subject, got.ID, err, id)
		}
	}
}

func TestJournalCorruptEntryRefusesToStart(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	if err := os.WriteFile(journal, []byte("not json\n{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(journal, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("Open = %v, want an error naming line 1", err)
	}
}

func TestHealthz(t *testing.T) {
	s := start(t, filepath.Join(t.TempDir(), "journal.jsonl"))
	resp, err := s.srv.Client().Get(s.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz = %d", resp.StatusCode)
	}
}
