package bqwh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	// PricePerGiB is the Storage Write API price for the cost metric (USD); 0 = no cost estimate
	// (the counter stays 0). No default: main passes BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB.
	PricePerGiB float64
	Meter       metric.Meter
	Log         *slog.Logger
}

// retryPolicy bounds the in-backend retries of one append.
type retryPolicy struct {
	attempts      int
	base, max     time.Duration
	getTimeout    time.Duration
	appendTimeout time.Duration // bounds one append and its ack; 0 is defaultAppendTimeout (write.go)
}

var defaultRetry = retryPolicy{attempts: 8, base: 100 * time.Millisecond, max: 5 * time.Second, getTimeout: 30 * time.Second, appendTimeout: defaultAppendTimeout}

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
	// finals are the final row counts of the streams this process finalized, kept across
	// Release, so that claiming a partition again (a retried Claim; Claim, a claim commit refused
	// by a rebalance, Release, Claim) reads the counts instead of finalizing a finalized stream,
	// whose answer may give none.
	finals finalCounts

	posMu     sync.Mutex
	positions map[warehouse.Partition]warehouse.Position
}

// tableStream is the state of one (partition, raw table): the stream its rows go to and how many
// rows the next records must match before anything is appended.
type tableStream struct {
	name string
	// ms is the open writer of name, opened by Claim; nil only for a stream this writer must
	// not append to.
	ms *managedwriter.ManagedStream
	// end is the stream's row count: the offset of the next append.
	end int64
	// owedOld and owedHere count rows already in the warehouse past the partition's committed
	// offset: the next owedOld+owedHere rows of this table from this partition, in offset
	// order, are those rows and are skipped. The first owedOld are in older, finalized streams
	// (found at the claim: a zombie's, or the last writer's after its last commit); the
	// owedHere after them are the last rows of this stream (appended by a Write that failed, and
	// skipped by its retry). The commit metadata says r = end - owedHere, k = owedOld.
	owedOld, owedHere int64
	unsure            unsureAppend // the append at end that may have landed unacknowledged (see appendOne)
}

func (ts *tableStream) owed() int64 { return ts.owedOld + ts.owedHere }

// skip consumes n owed rows, the older ones first.
func (ts *tableStream) skip(n int64) {
	old := min(n, ts.owedOld)
	ts.owedOld -= old
	ts.owedHere -= n - old
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

// ResetPositions drops what the partitions' claims found pending (the rows to skip belong to
// the records after the old commit, not after the reset offset) and records the positions. The
// streams Claim opened stay: the sink commits the reset offsets with the metadata of an empty
// Write, which names them, before it consumes.
func (w *Warehouse) ResetPositions(_ context.Context, _ string, positions map[warehouse.Partition]warehouse.Position) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return warehouse.ErrClosed
	}
	for p := range positions {
		if w.parts[p] == nil {
			return fmt.Errorf("bqwh: reset %s/%d: the partition is not claimed", p.Topic, p.Partition)
		}
	}
	w.posMu.Lock()
	defer w.posMu.Unlock()
	for p, pos := range positions {
		for _, ts := range w.parts[p] {
			ts.owedOld, ts.owedHere = 0, 0
		}
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
// metadata names, counts the rows those streams hold past the commit, and opens a new stream on
// every table the partition feeds (see the package documentation). Nothing of the partitions is
// appended before the sink commits the metadata of an empty Write naming the new streams.
func (w *Warehouse) Claim(ctx context.Context, _ string, claims map[warehouse.Partition]warehouse.Assignment) (map[warehouse.Partition]warehouse.Position, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, warehouse.ErrClosed
	}
	out := make(map[warehouse.Partition]warehouse.Position, len(claims))
	opened := map[warehouse.Partition]map[string]*tableStream{}
	fail := func(err error) (map[warehouse.Partition]warehouse.Position, error) {
		for p, state := range opened {
			w.parts[p] = state
			w.dropLocked(p)
		}
		return nil, err
	}
	for p, a := range claims {
		w.dropLocked(p)
		state, positioned, err := w.claimOne(ctx, p, a)
		opened[p] = state
		if err != nil {
			return fail(fmt.Errorf("bqwh: claim %s/%d: %w", p.Topic, p.Partition, err))
		}
		if positioned {
			out[p] = warehouse.Position{Next: a.Commit.Next}
		}
	}
	maps.Copy(w.parts, opened)
	w.posMu.Lock()
	for p := range claims {
		delete(w.positions, p)
	}
	maps.Copy(w.positions, out)
	w.posMu.Unlock()
	return out, nil
}

// claimOne claims one partition: it finalizes the streams its commit names and opens the new
// ones, returning them (also those opened before an error, for the caller to close), and whether
// the commit is a BigQuery position of this writer's tables. A commit without bq-writer's
// metadata (empty, another writer's) or naming the streams of another project, dataset or table
// is none: the sink then refuses the partition unless POSITION_RECOVERY allows a start.
func (w *Warehouse) claimOne(ctx context.Context, p warehouse.Partition, a warehouse.Assignment) (map[string]*tableStream, bool, error) {
	tables, ok := EntityTables[a.Entity]
	if !ok {
		return nil, false, fmt.Errorf("entity %q feeds no raw table", a.Entity)
	}
	skips := map[string]int64{}
	for _, t := range tables {
		skips[t] = 0
	}
	md, positioned, err := w.claimedMetadata(ctx, p, a.Commit)
	if err != nil {
		return nil, false, err
	}
	if positioned {
		for _, table := range slices.Sorted(maps.Keys(md.S)) {
			name, r, k := md.S[table], md.R[table], md.K[table]
			// Kept as they are read: a claim that fails on a later table and is retried does
			// not finalize the earlier ones a second time.
			f, known := w.finals.get(name)
			res := finalFound
			if !known {
				var err error
				if f, res, err = w.finalize(ctx, name); err != nil {
					err = fmt.Errorf("finalize %s: %w", name, err)
					if o := classify(err); o == outcomeRetry || o == outcomeAmbiguous {
						err = fmt.Errorf("%w: %w", warehouse.ErrTransient, err)
					}
					return nil, false, err
				}
			}
			switch res {
			case finalGone, finalUnknown:
				// The rows past the commit in that stream cannot be counted: they are appended
				// again (the staging views keep one row per source record).
				event, why := "gone", "is gone"
				if res == finalUnknown {
					event, why = "unknown", "was finalized before and its row count is not given again"
				}
				w.m.stream(ctx, event)
				w.log.WarnContext(ctx, "write stream named by the Kafka commit "+why+"; rows past the commit may be appended twice (the staging views deduplicate them)",
					"topic", p.Topic, "partition", p.Partition, "table", table, "stream", name)
				skips[table] = k
				continue
			}
			if !known {
				w.m.stream(ctx, "finalized")
			}
			w.finals.put(name, f)
			if f < r {
				return nil, false, fmt.Errorf("stream %s has %d rows, the commit says %d", name, f, r)
			}
			skips[table] = k + f - r
			if f > r {
				w.log.InfoContext(ctx, "rows past the Kafka commit found at claim; the same records will be skipped",
					"topic", p.Topic, "partition", p.Partition, "table", table, "rows", f-r, "skip", k+f-r)
			}
		}
	}
	state := map[string]*tableStream{}
	for _, table := range slices.Sorted(maps.Keys(skips)) {
		ts := &tableStream{}
		if err := w.openStream(ctx, p, table, ts); err != nil {
			return state, false, err
		}
		ts.owedOld = skips[table]
		state[table] = ts
	}
	return state, positioned, nil
}

// claimedMetadata decodes a partition's Kafka commit: positioned is false when there is no
// commit, or its metadata is not bq-writer's or names a stream outside this writer's tables
// (logged). Metadata of bq-writer's that does not decode is an error.
func (w *Warehouse) claimedMetadata(ctx context.Context, p warehouse.Partition, c *warehouse.Commit) (md metadata, positioned bool, err error) {
	if c == nil {
		return md, false, nil
	}
	if !isOurs(c.Metadata) {
		what := "is empty"
		if c.Metadata != "" {
			what = "is not bq-writer's"
		}
		w.log.WarnContext(ctx, "the partition's Kafka commit metadata "+what+" (a reset with the Kafka CLI, a group that ran on DuckDB, another tool): no BigQuery position",
			"topic", p.Topic, "partition", p.Partition, "committed", c.Next, "metadata_bytes", len(c.Metadata))
		return md, false, nil
	}
	if md, err = decodeMetadata(c.Metadata); err != nil {
		return md, false, err
	}
	for _, table := range slices.Sorted(maps.Keys(md.S)) {
		if name := md.S[table]; !w.belongs(table, name) {
			w.log.WarnContext(ctx, "the partition's Kafka commit names a write stream of another project, dataset or table (BIGQUERY_PROJECT or BIGQUERY_DATASET_PREFIX changed, the group kept): no BigQuery position",
				"topic", p.Topic, "partition", p.Partition, "committed", c.Next, "stream", name, "table", w.tablePath(table))
			return md, false, nil
		}
	}
	return md, true, nil
}

// maxFinals bounds the final row counts a Warehouse keeps.
const maxFinals = 4096

// finalCounts are the final row counts of finalized streams by name, the last maxFinals put. A
// finalized stream's row count never changes, so a kept count is always right. Guarded by the
// Warehouse's mu; the zero value is empty.
type finalCounts struct {
	rows  map[string]int64
	order []string // the names in rows, oldest first
}

func (f *finalCounts) get(name string) (int64, bool) {
	n, ok := f.rows[name]
	return n, ok
}

func (f *finalCounts) put(name string, rows int64) {
	if f.rows == nil {
		f.rows = map[string]int64{}
	}
	if _, ok := f.rows[name]; !ok {
		if len(f.order) >= maxFinals {
			delete(f.rows, f.order[0])
			f.order = f.order[1:]
		}
		f.order = append(f.order, name)
	}
	f.rows[name] = rows
}

// finalResult is what finalizing a stream found.
type finalResult int

const (
	finalFound   finalResult = iota // finalized (now or before): rows is its final row count
	finalGone                       // the stream does not exist (any more)
	finalUnknown                    // already finalized, and the service gives no row count
)

// finalize finalizes a stream by name and returns its final row count. Finalizing a finalized
// stream answers its row count again on bqfake and bqemulator; an answer STREAM_FINALIZED (or
// FAILED_PRECONDITION "finalized") instead is finalUnknown, not an error, so that a claim
// repeated after a crash does not loop.
func (w *Warehouse) finalize(ctx context.Context, name string) (rows int64, res finalResult, err error) {
	if _, err := w.client.GetWriteStream(ctx, &storagepb.GetWriteStreamRequest{Name: name, View: storagepb.WriteStreamView_BASIC}); err != nil {
		if status.Code(err) == codes.NotFound {
			return 0, finalGone, nil
		}
		return 0, 0, err
	}
	ms, err := w.client.NewManagedStream(ctx, managedwriter.WithStreamName(name))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = ms.Close() }()
	rows, err = ms.Finalize(ctx)
	switch {
	case err == nil:
		return rows, finalFound, nil
	case status.Code(err) == codes.NotFound:
		return 0, finalGone, nil
	case classify(err) == outcomeFenced:
		return 0, finalUnknown, nil
	}
	return 0, 0, err
}

// Release closes the partitions' streams and forgets them and their positions; the final row
// counts Claim found are kept (see Warehouse.finals).
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
	state := w.parts[p]
	if state == nil {
		return "", fmt.Errorf("bqwh: %s/%d is not claimed: no stream to name in its commit", p.Topic, p.Partition)
	}
	md := metadata{V: metadataVersion, S: map[string]string{}, R: map[string]int64{}}
	for table, ts := range state {
		r := ts.end - ts.owedHere
		if r < 0 || ts.owedOld < 0 {
			return "", fmt.Errorf("bqwh: %s/%d %s: %d+%d rows owed past the end %d of %s", p.Topic, p.Partition, table, ts.owedOld, ts.owedHere, ts.end, ts.name)
		}
		md.S[table], md.R[table] = ts.name, r
		if ts.owedOld > 0 {
			if md.K == nil {
				md.K = map[string]int64{}
			}
			md.K[table] = ts.owedOld
		}
	}
	return md.encode()
}
