// Package registry makes franz-go's in-memory srfake schema registry durable
// for the local stack: every change that succeeds is appended to a journal
// file, and the journal is replayed on start so that subjects, versions and,
// above all, schema ids are the same after a restart. Kafka records carry the
// schema id in their Confluent wire-format prefix, so an id that changed
// across restarts would make every stored record unreadable.
//
// This is a stand-in for local runs and tests only. Production points
// SCHEMA_REGISTRY_URL at a real Confluent-compatible registry.
package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Journal entry kinds.
const (
	// OpRegister records a schema stored under subject/version with id.
	OpRegister = "register"
	// OpRequest records any other state-changing request (DELETE of a
	// subject or version, PUT of config or mode) to be replayed verbatim.
	OpRequest = "request"
)

// maxBody bounds request bodies, as srfake does.
const maxBody = 1 << 20

// Entry is one line of the journal (JSON Lines).
type Entry struct {
	Op   string    `json:"op"`
	Time time.Time `json:"time"`

	// OpRegister.
	Subject string     `json:"subject,omitempty"`
	Version int        `json:"version,omitempty"`
	ID      int        `json:"id,omitempty"`
	Schema  *sr.Schema `json:"schema,omitempty"`

	// OpRequest.
	Method string `json:"method,omitempty"`
	URI    string `json:"uri,omitempty"`
	Body   string `json:"body,omitempty"`
}

// Registry is an srfake registry whose changes are journaled to a file.
type Registry struct {
	fake    *srfake.Registry
	log     *slog.Logger
	handler http.Handler

	// mu serialises every state-changing request together with its journal
	// append, so the journal order is the order srfake applied changes in.
	mu        sync.Mutex
	journal   *os.File
	journaled map[subjectVersion]struct{}
	replayed  int
}

type subjectVersion struct {
	subject string
	version int
}

// Open replays the journal at path (creating it and its folder if missing)
// and returns a registry ready to serve. A journal whose last line was cut
// short by a crash is truncated to its last complete entry; any other
// unreadable entry is an error, because guessing could reassign an id.
func Open(path string, log *slog.Logger) (*Registry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create journal folder: %w", err)
	}
	r := &Registry{
		fake:      srfake.NewRegistry(),
		log:       log,
		journaled: make(map[subjectVersion]struct{}),
	}
	good, err := r.replay(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	// Drop a torn tail (if any) and append after the last good entry.
	if err := f.Truncate(good); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("truncate journal to %d bytes: %w", good, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seek journal: %w", err)
	}
	r.journal = f

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", r.handleHealthz)
	mux.HandleFunc("POST /subjects/{subject}/versions", r.handleRegister)
	mux.HandleFunc("POST /contexts/{context}/subjects/{subject}/versions", r.handleRegister)
	mux.HandleFunc("PUT /", r.handleMutation)
	mux.HandleFunc("DELETE /", r.handleMutation)
	mux.Handle("/", r.fake.Handler())
	r.handler = mux
	return r, nil
}

// Handler serves the Confluent schema registry REST API plus GET /healthz.
func (r *Registry) Handler() http.Handler { return r.handler }

// Replayed is the number of journal entries applied by Open.
func (r *Registry) Replayed() int { return r.replayed }

// Close closes the journal file.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.journal.Close()
}

// replay applies the journal at path and returns the length of its valid
// prefix in bytes.
func (r *Registry) replay(path string) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()

	seeded := make(map[int]bool) // ids present in srfake
	br := bufio.NewReader(f)
	var good int64
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(bytes.TrimSpace(line)) > 0 {
				r.log.Warn("journal ends in a partial entry (crash while writing?); dropping it",
					"line", lineNo, "bytes", len(line))
			}
			return good, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read journal: %w", err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			good += int64(len(line))
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return 0, fmt.Errorf("journal %s line %d: %w (fix or remove the line; ids depend on it)", path, lineNo, err)
		}
		if err := r.apply(e, seeded); err != nil {
			return 0, fmt.Errorf("journal %s line %d: %w", path, lineNo, err)
		}
		good += int64(len(line))
		r.replayed++
	}
}

func (r *Registry) apply(e Entry, seeded map[int]bool) error {
	switch e.Op {
	case OpRegister:
		if e.Schema == nil || e.Subject == "" || e.ID <= 0 || e.Version <= 0 {
			return fmt.Errorf("incomplete register entry %+v", e)
		}
		if seeded[e.ID] {
			// The same schema under a second subject shares the id;
			// SeedSchema refuses a known id, RegisterSchema reuses it.
			id, version, err := r.fake.RegisterSchema(e.Subject, *e.Schema)
			if err != nil {
				return fmt.Errorf("re-register %s: %w", e.Subject, err)
			}
			if id != e.ID {
				return fmt.Errorf("subject %s: replay gave schema id %d, journal says %d", e.Subject, id, e.ID)
			}
			if version != e.Version {
				r.log.Warn("replay assigned a different version", "subject", e.Subject,
					"journal_version", e.Version, "version", version, "id", id)
			}
		} else if err := seed(r.fake, e); err != nil {
			return err
		}
		seeded[e.ID] = true
		r.journaled[subjectVersion{e.Subject, e.Version}] = struct{}{}
		return nil
	case OpRequest:
		req := httptest.NewRequest(e.Method, e.URI, bytes.NewReader([]byte(e.Body)))
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		rec := httptest.NewRecorder()
		r.fake.Handler().ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			r.log.Warn("replayed request did not succeed", "method", e.Method, "uri", e.URI,
				"status", rec.Code, "response", rec.Body.String())
		}
		return nil
	default:
		return fmt.Errorf("unknown op %q", e.Op)
	}
}

// seed wraps SeedSchema, which panics on conflicts, into an error.
func seed(fake *srfake.Registry, e Entry) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("seed %s version %d id %d: %v", e.Subject, e.Version, e.ID, p)
		}
	}()
	fake.SeedSchema(e.Subject, e.Version, e.ID, *e.Schema)
	return nil
}

// append writes e to the journal and syncs it. Callers hold r.mu.
func (r *Registry) append(e Entry) error {
	e.Time = time.Now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	if _, err := r.journal.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := r.journal.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	return nil
}

func (r *Registry) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

// handleRegister lets srfake register the schema, then journals the
// subject/version/id it stored before answering the client: a client never
// sees an id that is not yet on disk.
func (r *Registry) handleRegister(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	subject := req.PathValue("subject")

	r.mu.Lock()
	defer r.mu.Unlock()

	rec := forward(r.fake.Handler(), req, body)
	if rec.Code == http.StatusOK {
		if err := r.journalRegistration(subject, body, rec.Body.Bytes()); err != nil {
			r.log.Error("schema registered in memory but not journaled; its id may change on restart",
				"subject", subject, "error", err)
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	copyResponse(w, rec)
}

func (r *Registry) journalRegistration(subject string, reqBody, respBody []byte) error {
	var resp struct {
		ID int `json:"id"`
	}
	if err := json.Unmarshal(respBody, &resp); err != nil || resp.ID <= 0 {
		return fmt.Errorf("unexpected registration response %q", respBody)
	}
	// The response carries only the id; ask srfake which version of the
	// subject holds this schema (POST /subjects/{subject} is the lookup).
	lookup := httptest.NewRequest(http.MethodPost, "/subjects/"+url.PathEscape(subject), bytes.NewReader(reqBody))
	rec := httptest.NewRecorder()
	r.fake.Handler().ServeHTTP(rec, lookup)
	var found struct {
		Version int `json:"version"`
		ID      int `json:"id"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &found) != nil || found.ID != resp.ID {
		return fmt.Errorf("look up version of id %d in %s: status %d: %s", resp.ID, subject, rec.Code, rec.Body.Bytes())
	}
	key := subjectVersion{subject, found.Version}
	if _, ok := r.journaled[key]; ok {
		return nil // re-registration of a known schema: nothing new
	}
	stored, ok := r.fake.GetSchema(subject, found.Version)
	if !ok {
		return fmt.Errorf("subject %s version %d vanished", subject, found.Version)
	}
	schema := stored.Schema
	if err := r.append(Entry{Op: OpRegister, Subject: subject, Version: found.Version, ID: stored.ID, Schema: &schema}); err != nil {
		return err
	}
	r.journaled[key] = struct{}{}
	r.log.Info("schema registered", "subject", subject, "version", found.Version, "id", stored.ID)
	return nil
}

// handleMutation forwards PUT and DELETE requests (config, mode, deletes) to
// srfake and journals the ones that succeed, to be replayed verbatim.
func (r *Registry) handleMutation(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}

	r.mu.Lock()
	defer r.mu.Unlock()

	rec := forward(r.fake.Handler(), req, body)
	if rec.Code/100 == 2 {
		e := Entry{Op: OpRequest, Method: req.Method, URI: req.URL.RequestURI(), Body: string(body)}
		if err := r.append(e); err != nil {
			r.log.Error("change applied in memory but not journaled", "method", req.Method, "uri", e.URI, "error", err)
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		r.log.Info("change journaled", "method", req.Method, "uri", e.URI)
	}
	copyResponse(w, rec)
}

// forward serves req with body through h into a recorder, so the caller can
// journal before anything reaches the client.
func forward(h http.Handler, req *http.Request, body []byte) *httptest.ResponseRecorder {
	inner := req.Clone(req.Context())
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, inner)
	return rec
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, vs := range rec.Header() {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(rec.Body.Len()))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// writeError answers in the registry's error shape; 50001 is the Confluent
// "error in the backend data store" code.
func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": 50001, "message": err.Error()})
}
