package bqwh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// Catalog is the table side of BigQuery the writer needs (package bqcatalog implements it).
type Catalog interface {
	Migrate(ctx context.Context) error // datasets + DDL, idempotent
	Ping(ctx context.Context) error
	// Schema returns a raw-dataset table's columns.
	Schema(ctx context.Context, table string) (*storagepb.TableSchema, error)
	// AddColumns adds NULLABLE columns to a raw table (idempotent) and returns the schema once
	// the new columns are visible to writes.
	AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error)
}

// Defaults and limits of Config.
const (
	DefaultMaxAppendBytes = 8 << 20
	MaxAppendBytesLimit   = 9 << 20 // the request limit is 10 MB
	DefaultPricePerGiB    = 0.025
)

// Config configures Open.
type Config struct {
	Project, RawDataset string
	Catalog             Catalog
	// ApplyDDL makes Migrate create the datasets and apply the DDL (Catalog.Migrate) before it
	// checks the raw tables' schemas.
	ApplyDDL bool
	// ClientOptions are for managedwriter (endpoint, credentials).
	ClientOptions []option.ClientOption
	// MaxAppendBytes caps the serialized rows of one append: default 8 MiB, at most 9 MiB.
	MaxAppendBytes int
	// PricePerGiB is the Storage Write API price for the cost metric, default 0.025 (USD).
	PricePerGiB float64
	Meter       metric.Meter
	Log         *slog.Logger
}

// retryPolicy bounds the in-backend retries of one append.
type retryPolicy struct {
	attempts   int
	base, max  time.Duration
	getTimeout time.Duration
}

var defaultRetry = retryPolicy{attempts: 8, base: 100 * time.Millisecond, max: 5 * time.Second, getTimeout: 30 * time.Second}

// Warehouse appends batches to the raw tables exactly once (see the package documentation). It
// implements warehouse.Warehouse and warehouse.Committer.
type Warehouse struct {
	cfg     Config
	client  *managedwriter.Client
	m       *metrics
	log     *slog.Logger
	retry   retryPolicy
	maxRows int // rows per append cap besides bytes (0 = none); tests only

	mu      sync.Mutex // held by Write, Claim, Release, ResetPositions, Close
	closed  bool
	schemas map[string]*tableSchema
	parts   map[warehouse.Partition]map[string]*tableStream

	posMu     sync.Mutex
	positions map[warehouse.Partition]warehouse.Position
}

// tableStream is the state of one (partition, raw table): the stream its rows go to and how many
// rows in it the next records must match before anything is appended.
type tableStream struct {
	name string
	// ms is the open writer of name; nil when name is a stream this writer must not append to
	// (finalized at a claim): the next append opens a new stream.
	ms *managedwriter.ManagedStream
	// end is the stream's row count: the offset of the next append.
	end int64
	// owed counts rows already in the warehouse past the partition's committed offset (a
	// zombie's, our own from a failed attempt): the next rows of this table from this partition,
	// in offset order, are those rows and are skipped. The committed row count is end - owed.
	owed int64
}

var (
	_ warehouse.Warehouse = (*Warehouse)(nil)
	_ warehouse.Committer = (*Warehouse)(nil)
)

// ErrFenced is returned by Write when a stream of this writer was finalized by a new owner of its
// partition: the writer lost the partition. It is not transient.
var ErrFenced = errors.New("bqwh: write stream finalized by a new owner of the partition")

// Open checks cfg and connects the Storage Write API client.
func Open(ctx context.Context, cfg Config) (*Warehouse, error) {
	switch {
	case cfg.Project == "":
		return nil, errors.New("bqwh: no project")
	case cfg.RawDataset == "":
		return nil, errors.New("bqwh: no raw dataset")
	case cfg.Catalog == nil:
		return nil, errors.New("bqwh: no catalog")
	case cfg.MaxAppendBytes < 0 || cfg.MaxAppendBytes > MaxAppendBytesLimit:
		return nil, fmt.Errorf("bqwh: MaxAppendBytes %d is not in 1..%d", cfg.MaxAppendBytes, MaxAppendBytesLimit)
	case cfg.PricePerGiB < 0:
		return nil, fmt.Errorf("bqwh: PricePerGiB %v is negative", cfg.PricePerGiB)
	}
	if cfg.MaxAppendBytes == 0 {
		cfg.MaxAppendBytes = DefaultMaxAppendBytes
	}
	if cfg.PricePerGiB == 0 {
		cfg.PricePerGiB = DefaultPricePerGiB
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Meter, cfg.PricePerGiB)
	if err != nil {
		return nil, err
	}
	client, err := managedwriter.NewClient(ctx, cfg.Project, cfg.ClientOptions...)
	if err != nil {
		return nil, fmt.Errorf("bqwh: storage write client: %w", err)
	}
	return &Warehouse{
		cfg: cfg, client: client, m: m, log: cfg.Log, retry: defaultRetry,
		schemas:   map[string]*tableSchema{},
		parts:     map[warehouse.Partition]map[string]*tableStream{},
		positions: map[warehouse.Partition]warehouse.Position{},
	}, nil
}

func (w *Warehouse) tablePath(table string) string {
	return managedwriter.TableParentFromParts(w.cfg.Project, w.cfg.RawDataset, table)
}

// Migrate applies the DDL (when ApplyDDL) and checks every raw table's schema against the
// writer's columns, adding the columns a table lacks.
func (w *Warehouse) Migrate(ctx context.Context) error {
	if w.cfg.ApplyDDL {
		if err := w.cfg.Catalog.Migrate(ctx); err != nil {
			return fmt.Errorf("bqwh: migrate: %w", err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return warehouse.ErrClosed
	}
	for _, t := range Tables {
		s, err := loadSchema(ctx, w.cfg.Catalog, t)
		if err != nil {
			return err
		}
		w.schemas[t] = s
	}
	return nil
}

// Ping is Catalog.Ping.
func (w *Warehouse) Ping(ctx context.Context) error { return w.cfg.Catalog.Ping(ctx) }

// Positions returns the positions Claim returned, moved by every successful Write.
func (w *Warehouse) Positions(context.Context, string) (map[warehouse.Partition]warehouse.Position, error) {
	w.posMu.Lock()
	defer w.posMu.Unlock()
	return maps.Clone(w.positions), nil
}

// ResetPositions forgets the partitions' streams (the sink commits the reset offsets with empty
// metadata) and records the positions.
func (w *Warehouse) ResetPositions(_ context.Context, _ string, positions map[warehouse.Partition]warehouse.Position) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return warehouse.ErrClosed
	}
	w.posMu.Lock()
	defer w.posMu.Unlock()
	for p, pos := range positions {
		w.dropLocked(p)
		w.positions[p] = warehouse.Position{Next: pos.Next, TopicID: pos.TopicID, ClusterID: pos.ClusterID}
	}
	return nil
}

// dropLocked closes and forgets a partition's streams.
func (w *Warehouse) dropLocked(p warehouse.Partition) {
	for _, ts := range w.parts[p] {
		if ts.ms != nil {
			_ = ts.ms.Close() // io.EOF on a normal close; nothing is in flight outside Write
		}
	}
	delete(w.parts, p)
}

// Claim fences every earlier writer of the partitions by finalizing the streams their commit
// metadata names, and records how many rows past the commit those streams hold.
func (w *Warehouse) Claim(ctx context.Context, _ string, committed map[warehouse.Partition]warehouse.Commit) (map[warehouse.Partition]warehouse.Position, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, warehouse.ErrClosed
	}
	out := make(map[warehouse.Partition]warehouse.Position, len(committed))
	for p, c := range committed {
		w.dropLocked(p)
		state := map[string]*tableStream{}
		if c.Metadata != "" {
			md, err := decodeMetadata(c.Metadata)
			if err != nil {
				return nil, fmt.Errorf("bqwh: claim %s/%d: %w", p.Topic, p.Partition, err)
			}
			for table, name := range md.S {
				f, gone, err := w.finalize(ctx, name)
				if err != nil {
					err = fmt.Errorf("bqwh: claim %s/%d: finalize %s: %w", p.Topic, p.Partition, name, err)
					if o := classify(err); o == outcomeRetry || o == outcomeAmbiguous {
						err = fmt.Errorf("%w: %w", warehouse.ErrTransient, err)
					}
					return nil, err
				}
				if gone {
					w.m.stream(ctx, "gone")
					w.log.WarnContext(ctx, "write stream named by the Kafka commit is gone; rows past the commit may be appended twice (the staging views deduplicate them)",
						"topic", p.Topic, "partition", p.Partition, "table", table, "stream", name)
					continue
				}
				w.m.stream(ctx, "finalized")
				r := md.R[table]
				if f < r {
					return nil, fmt.Errorf("bqwh: claim %s/%d: stream %s has %d rows, the commit says %d", p.Topic, p.Partition, name, f, r)
				}
				if f > r {
					w.log.InfoContext(ctx, "rows past the Kafka commit found at claim; the same records will be skipped",
						"topic", p.Topic, "partition", p.Partition, "table", table, "rows", f-r)
				}
				ts := &tableStream{name: name, end: f, owed: f - r}
				if ts.owed == 0 {
					// Open this owner's stream now, so that the metadata of any commit from
					// here on names it, even before its first append (see the package doc on
					// the commit after Claim).
					if err := w.openStream(ctx, p, table, ts); err != nil {
						return nil, fmt.Errorf("bqwh: claim %s/%d: %w", p.Topic, p.Partition, err)
					}
				}
				state[table] = ts
			}
		}
		w.parts[p] = state
		out[p] = warehouse.Position{Next: c.Next}
	}
	w.posMu.Lock()
	maps.Copy(w.positions, out)
	w.posMu.Unlock()
	return out, nil
}

// finalize finalizes a stream by name and returns its final row count; gone reports a stream that
// does not exist (any more).
func (w *Warehouse) finalize(ctx context.Context, name string) (rows int64, gone bool, err error) {
	if _, err := w.client.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: name, View: storagepb.WriteStreamView_BASIC}); err != nil {
		if status.Code(err) == codes.NotFound {
			return 0, true, nil
		}
		return 0, false, err
	}
	ms, err := w.client.NewManagedStream(ctx, managedwriter.WithStreamName(name))
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = ms.Close() }()
	rows, err = ms.Finalize(ctx)
	if status.Code(err) == codes.NotFound {
		return 0, true, nil
	}
	return rows, false, err
}

// Release closes the partitions' streams and forgets them.
func (w *Warehouse) Release(_ context.Context, ps []warehouse.Partition) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.posMu.Lock()
	defer w.posMu.Unlock()
	for _, p := range ps {
		w.dropLocked(p)
		delete(w.positions, p)
	}
}

// Close waits for an in-flight Write, closes every stream and the client.
func (w *Warehouse) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	for p := range w.parts {
		w.dropLocked(p)
	}
	if err := w.client.Close(); err != nil {
		return fmt.Errorf("bqwh: close client: %w", err)
	}
	return nil
}

// commitMetadata is the metadata of partition p for its Kafka commit.
func (w *Warehouse) commitMetadata(p warehouse.Partition) (string, error) {
	md := metadata{V: metadataVersion, S: map[string]string{}, R: map[string]int64{}}
	for table, ts := range w.parts[p] {
		if ts.name == "" {
			continue // a stream that failed to open: nothing of it to name
		}
		r := ts.end - ts.owed
		if r < 0 {
			return "", fmt.Errorf("bqwh: %s/%d %s: %d rows owed past the end %d of %s", p.Topic, p.Partition, table, ts.owed, ts.end, ts.name)
		}
		md.S[table], md.R[table] = ts.name, r
	}
	return md.encode()
}
