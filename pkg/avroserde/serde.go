// Package avroserde encodes and decodes the platform's Avro records in the
// Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro
// binary body) against a schema registry.
//
// The schemas come from proto/avro: a Codec registers (or looks up) the
// current version of its entity under its subject at start and encodes with
// it. Decoding accepts any writer schema the registry knows for that entity:
// a foreign id is fetched once, resolved against the current reader schema
// (Avro schema resolution) and cached, so producers can roll out a new schema
// version before or after consumers.
package avroserde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ecomstream/platform/pkg/config"
	"github.com/ecomstream/platform/pkg/deadletter"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// Config is the schema-registry part of a service config.
type Config struct {
	URL          string        `env:"SCHEMA_REGISTRY_URL" default:"http://127.0.0.1:18081/apis/ccompat/v7" usage:"Confluent-compatible schema registry base URL"`
	Username     string        `env:"SCHEMA_REGISTRY_USERNAME" default:"" usage:"basic-auth user (optional)"`
	Password     string        `env:"SCHEMA_REGISTRY_PASSWORD" default:"" secret:"true" usage:"basic-auth password (optional; inject from a secret)"`
	AutoRegister bool          `env:"SCHEMA_REGISTRY_AUTO_REGISTER" default:"true" usage:"register schemas at start; false = only look them up (least privilege in production)"`
	Timeout      time.Duration `env:"SCHEMA_REGISTRY_TIMEOUT" default:"5s" usage:"per-request timeout"`
}

// Validate implements config.Validator.
func (c *Config) Validate() error {
	if (c.Username == "") != (c.Password == "") {
		return config.Errorf("SCHEMA_REGISTRY_PASSWORD", "SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD must be set together")
	}
	return config.First(
		config.HTTPURL("SCHEMA_REGISTRY_URL", c.URL),
		config.Positive("SCHEMA_REGISTRY_TIMEOUT", c.Timeout),
	)
}

// Registry is a schema-registry client with the caches codecs share.
type Registry struct {
	cl  *sr.Client
	cfg Config
}

// New returns a Registry client.
func New(cfg Config) (*Registry, error) {
	opts := []sr.ClientOpt{
		sr.URLs(cfg.URL),
		sr.HTTPClient(&http.Client{Timeout: cfg.Timeout}),
		sr.UserAgent("ecomstream"),
	}
	if cfg.Username != "" {
		opts = append(opts, sr.BasicAuth(cfg.Username, cfg.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return &Registry{cl: cl, cfg: cfg}, nil
}

// Ping checks the registry answers; used by /readyz.
func (r *Registry) Ping(ctx context.Context) error {
	_, err := r.cl.Subjects(ctx)
	return err
}

// SubjectFor is the Confluent TopicNameStrategy subject of a topic's values.
func SubjectFor(topic string) string { return topic + "-value" }

// Codec encodes values of one entity for one subject and decodes any known
// writer version of it.
type Codec struct {
	reg    *Registry
	entity string
	id     int
	schema avro.Schema
	name   string // full name of the record, e.g. ecom.events.ClickEvent
	header sr.ConfluentHeader

	mu       sync.RWMutex
	resolved map[int]avro.Schema // writer id -> schema to read it into the current type
	rejected map[int]negative    // writer id -> why it cannot be read, for negativeTTL

	now func() time.Time // tests
}

// negative is a cached "this writer id cannot be read": an unknown id, or a
// schema that is not a readable version of the entity.
type negative struct {
	err   *deadletter.Rejection
	until time.Time
}

// negativeTTL is how long an unknown or unreadable writer id is answered from
// the cache: a burst of records with a bad id costs one registry lookup, and
// an id registered meanwhile is seen this soon. A registry that cannot be
// reached is never cached: that stays a transient error.
const negativeTTL = 30 * time.Second

// maxNegative bounds the negative cache (ids come from the input, so a
// hostile stream could name many); when full, expired entries go first.
const maxNegative = 1024

// Codec registers (or looks up) the current schema of entity under subject.
func (r *Registry) Codec(ctx context.Context, subject, entity string) (*Codec, error) {
	v, err := protoavro.Latest(entity)
	if err != nil {
		return nil, err
	}
	schema, err := avro.Parse(v.Schema)
	if err != nil {
		return nil, fmt.Errorf("parse %s v%d: %w", entity, v.Version, err)
	}
	named, ok := schema.(avro.NamedSchema)
	if !ok {
		return nil, fmt.Errorf("%s: top-level schema must be a named record", entity)
	}
	s := sr.Schema{Schema: v.Schema, Type: sr.TypeAvro}
	var ss sr.SubjectSchema
	if r.cfg.AutoRegister {
		ss, err = r.cl.CreateSchema(ctx, subject, s)
	} else {
		ss, err = r.cl.LookupSchema(ctx, subject, s)
	}
	if err != nil {
		return nil, refusal(subject, entity, v.Version, r.cfg.AutoRegister, err)
	}
	return &Codec{
		reg: r, entity: entity, id: ss.ID, schema: schema,
		name: named.FullName(), resolved: map[int]avro.Schema{ss.ID: schema},
		rejected: map[int]negative{}, now: time.Now,
	}, nil
}

// ErrRefused marks a registry's "no" to a service's schema at start: the
// schema is incompatible with the subject's versions, invalid, or (without
// auto-registration) not registered. Retrying cannot help; the service stops.
var ErrRefused = errors.New("schema registry refused the schema")

// refusal explains a failed register or look-up of entity's version under
// subject: a refusal by its registry error code (Confluent's codes, which
// Apicurio's ccompat API also answers), anything else as the transport or
// server error it is.
func refusal(subject, entity string, version int, register bool, err error) error {
	what := fmt.Sprintf("subject %s (%s v%d from proto/avro)", subject, entity, version)
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("schema registry: %s: %w", what, err)
	}
	var why string
	switch code := re.ErrorCode; {
	case code == sr.ErrIncompatibleSchema.Code:
		why = "incompatible with the versions already registered under the subject's compatibility level; " +
			"a new version must read data written with the previous ones (add fields with defaults, see proto/avro)"
	case code == sr.ErrInvalidSchema.Code:
		why = "the registry finds the schema invalid"
	case !register && (code == sr.ErrSubjectNotFound.Code || code == sr.ErrSchemaNotFound.Code):
		why = "not registered there, and SCHEMA_REGISTRY_AUTO_REGISTER=false only looks schemas up; register it first"
	default:
		return fmt.Errorf("schema registry: %s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %s (HTTP %d, error code %d: %w)", ErrRefused, what, why, re.StatusCode, re.ErrorCode, err)
}

// ID is the registry id of the schema this codec writes.
func (c *Codec) ID() int { return c.id }

// Encode returns v in the wire format.
func (c *Codec) Encode(v any) ([]byte, error) {
	body, err := avro.Marshal(c.schema, v)
	if err != nil {
		return nil, fmt.Errorf("avro encode %s: %w", c.entity, err)
	}
	out := make([]byte, 5, 5+len(body))
	out, _ = c.header.AppendEncode(out[:0], c.id, nil)
	return append(out, body...), nil
}

// Decode reads wire-format b into v (a pointer to the entity's Go type) and
// returns the writer schema id. Bad input yields a *deadletter.Rejection;
// a registry that cannot be reached yields a transient error.
func (c *Codec) Decode(ctx context.Context, b []byte, v any) (int, error) {
	id, body, err := c.header.DecodeID(b)
	if err != nil {
		return 0, &deadletter.Rejection{Entity: c.entity, Reasons: []deadletter.Reason{{
			Code: deadletter.Undecodable, Message: "not Confluent-framed Avro: " + err.Error()}}}
	}
	schema, err := c.readerFor(ctx, id)
	if err != nil {
		return id, err
	}
	if err := deadletter.Pure(deadletter.Undecodable, func() error { return avro.Unmarshal(schema, body, v) }); err != nil {
		if rej, ok := deadletter.AsRejection(err); ok {
			rej.Entity, rej.SchemaID = c.entity, id
			return id, rej
		}
		return id, &deadletter.Rejection{Entity: c.entity, SchemaID: id, Reasons: []deadletter.Reason{{
			Code: deadletter.Undecodable, Message: fmt.Sprintf("avro body does not match writer schema %d: %v", id, err)}}}
	}
	return id, nil
}

func (c *Codec) readerFor(ctx context.Context, id int) (avro.Schema, error) {
	c.mu.RLock()
	s, ok := c.resolved[id]
	neg, bad := c.rejected[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	if bad && c.now().Before(neg.until) {
		return nil, neg.err
	}
	res, err := c.lookup(ctx, id)
	var rej *deadletter.Rejection
	switch {
	case err == nil:
		c.mu.Lock()
		c.resolved[id] = res
		delete(c.rejected, id)
		c.mu.Unlock()
	case errors.As(err, &rej):
		now := c.now()
		c.mu.Lock()
		if len(c.rejected) >= maxNegative {
			for k, v := range c.rejected {
				if !now.Before(v.until) {
					delete(c.rejected, k)
				}
			}
			if len(c.rejected) >= maxNegative {
				clear(c.rejected)
			}
		}
		c.rejected[id] = negative{err: rej, until: now.Add(negativeTTL)}
		c.mu.Unlock()
	}
	return res, err
}

// lookup fetches writer schema id and resolves it against the current
// schema: a *deadletter.Rejection when it cannot be read, another error when
// the registry cannot be asked.
func (c *Codec) lookup(ctx context.Context, id int) (avro.Schema, error) {
	reject := func(code deadletter.Code, format string, args ...any) error {
		return &deadletter.Rejection{Entity: c.entity, SchemaID: id, Reasons: []deadletter.Reason{{Code: code, Message: fmt.Sprintf(format, args...)}}}
	}
	got, err := c.reg.cl.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, reject(deadletter.SchemaMismatch, "schema id %d is unknown to the registry", id)
		}
		return nil, fmt.Errorf("schema registry: fetch schema %d: %w", id, err)
	}
	if got.Type != sr.TypeAvro {
		return nil, reject(deadletter.SchemaMismatch, "schema id %d is %s, not Avro", id, got.Type)
	}
	writer, err := avro.Parse(got.Schema)
	if err != nil {
		return nil, reject(deadletter.SchemaMismatch, "schema id %d does not parse: %v", id, err)
	}
	if n, ok := writer.(avro.NamedSchema); !ok || n.FullName() != c.name {
		return nil, reject(deadletter.SchemaMismatch, "schema id %d is not a %s", id, c.name)
	}
	res, err := avro.NewSchemaCompatibility().Resolve(c.schema, writer)
	if err != nil {
		return nil, reject(deadletter.SchemaMismatch, "writer schema %d cannot be read as the current %s: %v", id, c.name, err)
	}
	return res, nil
}
