package avroserde

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Generic decodes wire-format records of any entity with their own writer
// schema into generic values (map[string]any for records, []any for arrays,
// time.Time for timestamps, ...): for tools that show records rather than
// process them, such as dlq-handler's inspection API. Unlike a Codec it does
// not resolve against a reader schema, so any Avro schema the registry holds
// can be read.
type Generic struct {
	reg *Registry

	mu      sync.RWMutex
	schemas map[int]avro.Schema // writer id -> parsed schema
}

// maxGeneric bounds Generic's cache of schemas (ids come from stored input).
const maxGeneric = 1024

// ErrNotFramed is returned by Generic.Decode for bytes that are not in the
// Confluent wire format.
var ErrNotFramed = errors.New("not Confluent-framed Avro")

// Generic returns a decoder of any schema the registry knows.
func (r *Registry) Generic() *Generic {
	return &Generic{reg: r, schemas: map[int]avro.Schema{}}
}

// Decode reads wire-format b with the writer schema its id names and returns
// the id and the value.
func (g *Generic) Decode(ctx context.Context, b []byte) (int, any, error) {
	var h sr.ConfluentHeader
	id, body, err := h.DecodeID(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrNotFramed, err)
	}
	schema, err := g.schema(ctx, id)
	if err != nil {
		return id, nil, err
	}
	var v any
	if err := avro.Unmarshal(schema, body, &v); err != nil {
		return id, nil, fmt.Errorf("avro body does not match writer schema %d: %w", id, err)
	}
	return id, v, nil
}

func (g *Generic) schema(ctx context.Context, id int) (avro.Schema, error) {
	g.mu.RLock()
	s, ok := g.schemas[id]
	g.mu.RUnlock()
	if ok {
		return s, nil
	}
	got, err := g.reg.cl.SchemaByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("schema registry: fetch schema %d: %w", id, err)
	}
	if got.Type != sr.TypeAvro {
		return nil, fmt.Errorf("schema id %d is %s, not Avro", id, got.Type)
	}
	s, err = avro.Parse(got.Schema)
	if err != nil {
		return nil, fmt.Errorf("schema id %d does not parse: %w", id, err)
	}
	g.mu.Lock()
	if len(g.schemas) >= maxGeneric {
		clear(g.schemas)
	}
	g.schemas[id] = s
	g.mu.Unlock()
	return s, nil
}
