package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/ecomstream/platform/services/dlq-handler/internal/auth"
	"github.com/ecomstream/platform/services/dlq-handler/internal/query"
	"github.com/ecomstream/platform/services/dlq-handler/internal/redact"
)

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f, err := query.ParseFilter(v, "limit", "cursor")
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	p, err := query.ParsePage(v)
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	if f, err = Scope(f, identity(r)); err != nil {
		s.fail(w, r, "list", err)
		return
	}
	res, err := query.List(r.Context(), s.cfg.Pool, f, p)
	if err != nil {
		s.fail(w, r, "list", err)
		return
	}
	id := identity(r)
	for i := range res.Items {
		RedactMeta(&res.Items[i], id)
	}
	writeJSON(w, http.StatusOK, res)
}

// SearchAllowed refuses a search for an email address to a caller without
// the PII right: the answer would confirm the address is in the store.
func SearchAllowed(f query.Filter, id auth.Identity) error {
	if !id.PII && redact.HasEmail(f.Q) {
		return &query.Error{Param: "q", Msg: "searching for an email address needs the pii right"}
	}
	return nil
}

// Scope is f as id may search it: a q for an email address is refused
// (SearchAllowed), and without the PII right q searches the messages as
// RedactMeta shows them (query.Filter.Redacted), so a hit cannot confirm a
// hidden name either.
func Scope(f query.Filter, id auth.Identity) (query.Filter, error) {
	if err := SearchAllowed(f, id); err != nil {
		return f, err
	}
	f.Redacted = !id.PII
	return f, nil
}

// RedactMeta hides personal data in the messages from callers without the
// PII right (redact.Message): email-like substrings always, and the quoted
// values (the validator quotes the values it names) of every reason of a
// pii dead letter and of a reason whose field is personal on any dead
// letter. The joined message is rebuilt from the redacted reasons. It
// changes d.Reasons in place: give it a copy to keep the original.
func RedactMeta(d *query.DeadLetter, id auth.Identity) {
	if id.PII {
		return
	}
	if d.DiscardReason != nil {
		r := redact.Text(*d.DiscardReason)
		d.DiscardReason = &r
	}
	msgs := make([]string, len(d.Reasons))
	personal := false
	for i, r := range d.Reasons {
		msgs[i] = r.Message
		field := ""
		if r.Field != nil {
			field = *r.Field
		}
		personal = personal || redact.Field(field)
		d.Reasons[i].Message = redact.Message(r.Message, field, d.PII)
	}
	switch {
	case len(d.Reasons) > 0 && d.Message == strings.Join(msgs, "\n"):
		for i := range d.Reasons {
			msgs[i] = d.Reasons[i].Message
		}
		d.Message = strings.Join(msgs, "\n")
	default: // not the reasons' messages: redact it whole
		d.Message = redact.Message(d.Message, "", d.PII || personal)
	}
}

// Detail is the answer of GET /v1/dead-letters/{id}.
type Detail struct {
	DeadLetter query.DeadLetter `json:"dead_letter"`
	Original   Original         `json:"original"`
	Key        *Bytes           `json:"key"` // null: no key
	Headers    []HeaderView     `json:"headers"`
	TraceURL   string           `json:"trace_url,omitempty"`
}

// Original is the original record's value shown for reading.
type Original struct {
	// Format: avro (decoded through the registry), json, hex, empty,
	// purged (the PII retention removed it) or hidden (a PII row's bytes
	// that cannot be redacted, for a caller without the PII right).
	Format      string          `json:"format"`
	Size        int             `json:"size"` // bytes
	SchemaID    *int            `json:"schema_id,omitempty"`
	Decoded     json.RawMessage `json:"decoded,omitempty"` // avro, json: the value
	Pretty      string          `json:"pretty,omitempty"`  // avro, json: the value indented
	Hex         string          `json:"hex,omitempty"`
	Truncated   bool            `json:"truncated,omitempty"` // hex: only the first MaxHexBytes
	Redacted    bool            `json:"redacted"`            // personal data was hidden
	DecodeError string          `json:"decode_error,omitempty"`
}

// Bytes is a key or header value: UTF-8 text as it is, anything else hex
// (hidden for a PII row and a caller without the PII right).
type Bytes struct {
	Encoding string `json:"encoding"` // utf8, hex or hidden
	Value    string `json:"value"`
	Redacted bool   `json:"redacted,omitempty"`
}

// HeaderView is one header of the original.
type HeaderView struct {
	Key string `json:"key"`
	Bytes
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	rec, err := query.Get(r.Context(), s.cfg.Pool, chi.URLParam(r, "id"))
	if errors.Is(err, query.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no dead letter with this id")
		return
	}
	if err != nil {
		s.fail(w, r, "get", err)
		return
	}
	writeJSON(w, http.StatusOK, s.describe(r.Context(), rec, identity(r)))
}

// Describe is rec as GET /v1/dead-letters/{id} shows it to id: the
// original decoded (cfg.Registry, cfg.MaxHexBytes) and redacted for an
// identity without the PII right, the trace link from
// cfg.TraceURLTemplate. The console shows the same.
func Describe(ctx context.Context, cfg Config, rec query.Record, id auth.Identity) Detail {
	if cfg.MaxHexBytes <= 0 {
		cfg.MaxHexBytes = DefaultMaxHexBytes
	}
	s := &server{cfg: cfg}
	return s.describe(ctx, rec, id)
}

func (s *server) describe(ctx context.Context, rec query.Record, id auth.Identity) Detail {
	d := Detail{DeadLetter: rec.DeadLetter, Headers: []HeaderView{}}
	d.DeadLetter.Reasons = slices.Clone(rec.Reasons) // redacted below; rec stays as it is
	RedactMeta(&d.DeadLetter, id)
	d.Original = s.original(ctx, rec, id)
	if rec.Key != nil {
		k := s.bytesView(rec.Key, rec.PII, id)
		d.Key = &k
	}
	for _, h := range rec.Headers {
		d.Headers = append(d.Headers, HeaderView{Key: h.Key, Bytes: s.bytesView(h.Value, rec.PII, id)})
	}
	if s.cfg.TraceURLTemplate != "" && rec.TraceID != nil && *rec.TraceID != "" {
		d.TraceURL = strings.ReplaceAll(s.cfg.TraceURLTemplate, "{trace_id}", url.PathEscape(*rec.TraceID))
	}
	return d
}

// original renders rec's value: Avro through the registry, else JSON, else
// hex; redacted for callers without the PII right.
func (s *server) original(ctx context.Context, rec query.Record, id auth.Identity) Original {
	o := Original{Size: len(rec.Value)}
	switch {
	case rec.Value == nil && rec.PIIPurgedAt != nil:
		o.Format = "purged"
		return o
	case len(rec.Value) == 0:
		o.Format = "empty"
		return o
	}
	var decoded any
	if rec.SchemaID != nil {
		sid := int(*rec.SchemaID)
		o.SchemaID = &sid
		if s.cfg.Registry == nil {
			o.DecodeError = "no schema registry configured"
		} else if _, v, err := s.cfg.Registry.Decode(ctx, rec.Value); err != nil {
			o.DecodeError = err.Error()
		} else if decoded, err = normalise(v); err != nil {
			o.DecodeError = "the decoded value has no JSON form: " + err.Error()
		} else {
			o.Format = "avro"
		}
	}
	if o.Format == "" && json.Valid(rec.Value) {
		dec := json.NewDecoder(bytes.NewReader(rec.Value))
		dec.UseNumber()
		if err := dec.Decode(&decoded); err == nil {
			o.Format = "json"
		}
	}
	if o.Format != "" {
		if !id.PII {
			decoded, o.Redacted = redact.Value(decoded)
		}
		raw, _ := json.Marshal(decoded)
		pretty, _ := json.MarshalIndent(decoded, "", "  ")
		o.Decoded, o.Pretty = raw, string(pretty)
		return o
	}
	if rec.PII && !id.PII {
		o.Format, o.Redacted = "hidden", true
		return o
	}
	o.Format = "hex"
	b := rec.Value
	if len(b) > s.cfg.MaxHexBytes {
		b, o.Truncated = b[:s.cfg.MaxHexBytes], true
	}
	o.Hex = hex.EncodeToString(b)
	return o
}

// normalise turns a decoded Avro value into plain JSON values (maps,
// slices, strings, json.Number, bools, nil) so it can be redacted.
func normalise(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	return out, dec.Decode(&out)
}

func (s *server) bytesView(b []byte, pii bool, id auth.Identity) Bytes {
	if printable(b) {
		if id.PII {
			return Bytes{Encoding: "utf8", Value: string(b)}
		}
		t := redact.Text(string(b))
		return Bytes{Encoding: "utf8", Value: t, Redacted: t != string(b)}
	}
	if pii && !id.PII {
		return Bytes{Encoding: "hidden", Redacted: true}
	}
	if len(b) > s.cfg.MaxHexBytes {
		b = b[:s.cfg.MaxHexBytes]
	}
	return Bytes{Encoding: "hex", Value: hex.EncodeToString(b)}
}

// printable: valid UTF-8 without control characters other than white space.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	req, err := query.ParseStats(r.URL.Query())
	if err == nil {
		req.Filter, err = Scope(req.Filter, identity(r))
	}
	if err != nil {
		s.fail(w, r, "stats", err)
		return
	}
	ctx := r.Context()
	tx, err := s.cfg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		s.fail(w, r, "stats", err)
		return
	}
	defer func() { _ = tx.Rollback(ctx) }()
	st, err := query.GetStats(ctx, tx, req, s.cfg.Now())
	if err != nil {
		s.fail(w, r, "stats", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) audit(w http.ResponseWriter, r *http.Request) {
	f, p, err := query.ParseAudit(r.URL.Query())
	if err != nil {
		s.fail(w, r, "audit", err)
		return
	}
	res, err := query.ListAudit(r.Context(), s.cfg.Pool, f, p)
	if err != nil {
		s.fail(w, r, "audit", err)
		return
	}
	if !identity(r).PII {
		// Reasons and filters are free text an operator typed.
		for i := range res.Items {
			res.Items[i].Target = redactJSON(res.Items[i].Target)
			res.Items[i].Detail = redactJSON(res.Items[i].Detail)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// redactJSON redacts a stored JSON document (an audit entry's target or
// detail, a replay job's filter) for a caller without the PII right: as
// redact.Value, and every non-empty "q" (a filter's search text) whole;
// one that does not parse is replaced whole.
func redactJSON(raw json.RawMessage) json.RawMessage {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`"` + redact.Mask + `"`)
	}
	v, changed := redact.Walk(v, func(k string, x any) bool { return redact.SearchText(k, x) || redact.PersonalValue(k, x) })
	if !changed {
		return raw
	}
	out, _ := json.Marshal(v)
	return out
}
