package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	ddl "github.com/ecomstream/platform/sql"
)

var _ Warehouse = (*DuckDB)(nil)

// DefaultDedupWindow is how far apart two copies of an event_id may be stamped and still be one
// event (the later a duplicate). See WithDedupWindow for why it is a minute and not a day.
const DefaultDedupWindow = time.Minute

// DefaultCheckpointThreshold is the WAL size that triggers a checkpoint. See WithCheckpointThreshold.
const DefaultCheckpointThreshold = "128MB"

// DefaultDedupIndexSize is the default cap on event_ids held in memory for the dedup check: ~47
// bytes each, so ~180MB; at 20,000 events/s it covers the default window plus 30s of lateness
// (1.8M ids) with room to spare.
const DefaultDedupIndexSize = 4_000_000

// DuckDB is the embedded warehouse: one database file holding fact_events and stream_positions.
//
// Exactly-once: Write inserts the rows and moves stream_positions in one DuckDB transaction, so
// after a crash the stored positions say exactly which records are in the file.
//
// Write and Migrate run on one pinned connection (the appender must share the transaction's
// connection); Query, Positions and Ping take other connections from the pool and read committed
// snapshots (DuckDB is MVCC), so they never see half a batch and never block a Write.
type DuckDB struct {
	db     *sql.DB
	writer *sql.Conn
	opts   options
	log    *slog.Logger

	// mu is held shared by every operation and exclusively by Close, so Close waits for the
	// in-flight Write to finish and nothing starts after it.
	mu     sync.RWMutex
	closed bool
	// closing is cancelled when Close starts, aborting in-flight Queries so Close does not wait
	// for an operator's long scan.
	closing     context.Context
	cancelClose context.CancelFunc

	// querySlots holds one token per running Query (WithMaxConcurrentQueries).
	querySlots chan struct{}

	// wmu serialises use of the writer connection (Write is documented single-goroutine; this
	// makes a misuse wait instead of corrupting the connection state).
	wmu sync.Mutex

	// recent indexes the event_ids of recently stored rows for the dedup check (nil: disabled).
	// Used only under wmu.
	recent *recentIDs

	// tables are the entities' writers (events here, orders in duckdb_orders.go, dimensions in
	// duckdb_dims.go), run in
	// Write's transaction in this order.
	tables []tableWriter

	// beforeCommit, when set by tests, runs after the rows and positions are written and before
	// COMMIT; an error aborts the transaction.
	beforeCommit func() error
}

// Option configures OpenDuckDB.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	dedupWindow time.Duration
	dedupIndex  int
	logger      *slog.Logger
	memoryLimit string
	threads     int
	maxQueries  int // see WithMaxConcurrentQueries

	checkpointThreshold string
}

// WithDedupWindow sets the dedup window (default DefaultDedupWindow): a copy of an event_id whose
// event_timestamp is within the window of the kept copy before it (in the order of dedup.go) is a
// source duplicate and goes to fact_events_duplicates instead of fact_events. 0 treats only
// copies with equal event_timestamps as duplicates.
//
// The window is on each copy's own event_timestamp, not on the wall clock: a resent event keeps
// its client timestamp, so its duplicate is found however late it arrives. The window only has to
// absorb producers that re-stamp a resend. Copies further apart are different rows by this rule
// (both kept); the planned prod layer's one-row-per-event_id view will be the backstop.
//
// The trade-off is cost. Rows within recentSlack (30s) of the newest stored event are checked
// against an in-memory index (WithDedupIndexSize), whose size is about rate·(window+30s). Other
// rows (late events, or all rows while the index is over its cap) are checked by scanning the
// stored rows within their window: zone maps on event_timestamp skip everything else, so the
// cost does not grow with the table, but it does with rate·2·window (at 20,000 events/s, ±1m is
// 2.4M rows, ~100ms on the 2-core target). A one-day window would mean 3.5 billion rows at the
// target rate: neither index nor scan can afford it. Index and scan also say whether the kept copy
// comes first, which settles the usual duplicate (a resend received later); only the event_ids
// where the choice may change have their stored copies read in full from both tables.
func WithDedupWindow(d time.Duration) Option {
	return optionFunc(func(o *options) { o.dedupWindow = d })
}

// WithDedupIndexSize caps the event_ids the dedup index keeps in memory (default
// DefaultDedupIndexSize; 0 disables the index, so every row is checked by a scan). When the cap is
// reached the oldest ids are dropped and the rows that needed them are scanned instead.
func WithDedupIndexSize(n int) Option {
	return optionFunc(func(o *options) { o.dedupIndex = n })
}

// WithLogger sets the logger (default: discard). Write logs nothing per batch: the caller owns
// metrics and logging of results.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithMemoryLimit caps DuckDB's buffer memory, in DuckDB's syntax ("512MB", "2GB"). Default: DuckDB's
// (80% of RAM), which is too much on a machine shared with a broker.
func WithMemoryLimit(limit string) Option {
	return optionFunc(func(o *options) { o.memoryLimit = limit })
}

// WithCheckpointThreshold sets the WAL size at which DuckDB checkpoints (folds the WAL into the
// database file), in DuckDB's syntax (default DefaultCheckpointThreshold).
//
// DuckDB's own default (16MB) is about 20,000 of these rows, a sixth of a row group: every
// checkpoint rewrites the partly filled last row group, so with small checkpoints each row is
// compressed and written several times. A larger threshold writes each row group about once,
// at the cost of memory (the data since the last checkpoint) and a longer WAL replay after a
// crash (a few seconds for 128MB).
func WithCheckpointThreshold(size string) Option {
	return optionFunc(func(o *options) { o.checkpointThreshold = size })
}

// WithThreads caps DuckDB's worker threads (default: DuckDB's, one per core).
func WithThreads(n int) Option {
	return optionFunc(func(o *options) { o.threads = n })
}

func (o options) validate() error {
	if o.dedupWindow < 0 {
		return fmt.Errorf("dedup window %v is negative", o.dedupWindow)
	}
	if o.dedupIndex < 0 {
		return fmt.Errorf("dedup index size %d is negative", o.dedupIndex)
	}
	if o.threads < 0 {
		return fmt.Errorf("threads %d is negative", o.threads)
	}
	if err := o.validateQueries(); err != nil {
		return err
	}
	if strings.ContainsAny(o.memoryLimit, "&=#?") {
		return fmt.Errorf("memory limit %q is not a size", o.memoryLimit)
	}
	if strings.ContainsAny(o.checkpointThreshold, "&=#?") {
		return fmt.Errorf("checkpoint threshold %q is not a size", o.checkpointThreshold)
	}
	return nil
}

// OpenDuckDB opens (creating if needed) the database file at path; "" or ":memory:" is an
// in-memory database. Call Migrate before Write.
//
// External access is disabled for the life of the database (no reading or writing other files,
// no ATTACH, no extension install or load): the writer needs none, and it keeps the operator
// Query endpoint inside this one file.
func OpenDuckDB(path string, opts ...Option) (*DuckDB, error) {
	o := options{dedupWindow: DefaultDedupWindow, dedupIndex: DefaultDedupIndexSize, checkpointThreshold: DefaultCheckpointThreshold,
		maxQueries: DefaultMaxConcurrentQueries}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("warehouse: open duckdb: %w", err)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("warehouse: open duckdb: path %q must not contain '?'", path)
	}

	cfg := url.Values{}
	cfg.Set("enable_external_access", "false")
	cfg.Set("autoinstall_known_extensions", "false")
	cfg.Set("autoload_known_extensions", "false")
	if o.threads > 0 {
		cfg.Set("threads", strconv.Itoa(o.threads))
	}
	if o.memoryLimit != "" {
		cfg.Set("memory_limit", o.memoryLimit)
	}
	if o.checkpointThreshold != "" {
		cfg.Set("checkpoint_threshold", o.checkpointThreshold)
	}
	connector, err := duckdb.NewConnector(path+"?"+cfg.Encode(), initConn)
	if err != nil {
		return nil, fmt.Errorf("warehouse: open duckdb %q: %w", path, err)
	}
	db := sql.OpenDB(connector) // db.Close closes the connector.
	db.SetMaxOpenConns(poolSize(o))
	db.SetMaxIdleConns(poolSize(o))

	writer, err := db.Conn(context.Background())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("warehouse: open duckdb %q: %w", path, err), db.Close())
	}
	closing, cancel := context.WithCancel(context.Background())
	d := &DuckDB{
		db:          db,
		writer:      writer,
		opts:        o,
		log:         o.logger,
		closing:     closing,
		cancelClose: cancel,
		querySlots:  make(chan struct{}, o.maxQueries),
	}
	d.tables = []tableWriter{eventsWriter{d}, ordersWriter{d}, dimWriter{d, productsDim}, dimWriter{d, usersDim}}
	if o.dedupIndex > 0 {
		d.recent = newRecentIDs(o.dedupWindow, o.dedupIndex)
	}
	d.log.Info("duckdb warehouse opened", "path", path, "dedup_window", o.dedupWindow,
		"threads", o.threads, "memory_limit", o.memoryLimit)
	return d, nil
}

// initConn runs on every new connection. Timestamps are shown and cast to dates in UTC whatever
// the machine's zone, so operator queries agree with event_date.
func initConn(execer driver.ExecerContext) error {
	_, err := execer.ExecContext(context.Background(), "SET TimeZone = 'UTC'", nil)
	return err
}

// Migrate applies the DuckDB DDL from the sql module in one transaction.
func (d *DuckDB) Migrate(ctx context.Context) (err error) {
	defer func() { err = wrap("migrate", err) }()
	stmts, err := ddl.DuckDB()
	if err != nil {
		return err
	}
	err = d.writerTx(ctx, func(tx *sql.Tx) error {
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s.SQL); err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := make([]string, len(stmts))
	for i, s := range stmts {
		names[i] = s.Name
	}
	d.log.Info("duckdb schema applied", "files", names)
	return nil
}

// Positions returns the group's stored positions.
func (d *DuckDB) Positions(ctx context.Context, group string) (_ map[Partition]Position, err error) {
	defer func() { err = wrap("positions", err) }()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, ErrClosed
	}
	rows, err := d.db.QueryContext(ctx, selectPositions, group)
	if err != nil {
		return nil, err
	}
	return scanPositions(rows)
}

const selectPositions = `SELECT topic, "partition", next_offset, coalesce(topic_id, ''), coalesce(cluster_id, ''), updated_at
FROM stream_positions WHERE consumer_group = ?`

func scanPositions(rows *sql.Rows) (map[Partition]Position, error) {
	defer rows.Close()
	out := make(map[Partition]Position)
	for rows.Next() {
		var p Partition
		var pos Position
		if err := rows.Scan(&p.Topic, &p.Partition, &pos.Next, &pos.TopicID, &pos.ClusterID, &pos.UpdatedAt); err != nil {
			return nil, err
		}
		out[p] = pos
	}
	return out, rows.Err()
}

// ResetPositions replaces the given positions of the group in one transaction.
func (d *DuckDB) ResetPositions(ctx context.Context, group string, positions map[Partition]Position) (err error) {
	defer func() { err = wrap("reset positions", err) }()
	if err := ValidatePositions(group, positions); err != nil {
		return err
	}
	now := time.Now().UTC()
	return d.writerTx(ctx, func(tx *sql.Tx) error {
		for _, p := range SortedPartitions(positions) {
			pos := positions[p]
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO stream_positions
			(consumer_group, topic, "partition", next_offset, updated_at, topic_id, cluster_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				group, p.Topic, p.Partition, pos.Next, now, nullIfEmpty(pos.TopicID), nullIfEmpty(pos.ClusterID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// writerTx runs fn in one transaction on the writer connection and commits it; on an error
// nothing of it is kept.
func (d *DuckDB) writerTx(ctx context.Context, fn func(*sql.Tx) error) error {
	unlock, err := d.lockWriter()
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := d.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer rollback(tx)
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// storedPositions reads the group's positions inside the write transaction and checks that the
// batch was read from the same logs (topic incarnation, cluster) as the stored positions of its
// partitions. It returns the stored next offsets.
func storedPositions(ctx context.Context, tx *sql.Tx, group string, b Batch) (map[Partition]int64, error) {
	rows, err := tx.QueryContext(ctx, selectPositions, group)
	if err != nil {
		return nil, fmt.Errorf("read positions: %w", err)
	}
	stored, err := scanPositions(rows)
	if err != nil {
		return nil, fmt.Errorf("read positions: %w", err)
	}
	return CheckSameLog(stored, b)
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Ping checks that a pooled connection can run a statement.
func (d *DuckDB) Ping(ctx context.Context) (err error) {
	defer func() { err = wrap("ping", err) }()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	var one int
	return d.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close waits for an in-flight Write, cancels in-flight Queries, checkpoints (folds the WAL into
// the database file, so the next open starts without replaying it) and closes the database.
func (d *DuckDB) Close() error {
	d.cancelClose()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	start := time.Now()
	var errs []error
	if _, err := d.writer.ExecContext(context.Background(), "CHECKPOINT"); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint: %w", err))
	}
	errs = append(errs, d.writer.Close(), d.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("warehouse: close: %w", err)
	}
	d.log.Info("duckdb warehouse closed", "checkpoint_and_close", time.Since(start))
	return nil
}

// lockWriter takes the shared close lock and the writer lock.
func (d *DuckDB) lockWriter() (unlock func(), err error) {
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return nil, ErrClosed
	}
	d.wmu.Lock()
	return func() { d.wmu.Unlock(); d.mu.RUnlock() }, nil
}

// Write stores the batch exactly once. In one transaction on the writer connection it:
//
//  1. reads the group's stored positions, refuses the batch if it was read from another log than
//     a stored position of its partitions (ErrPositionConflict), and drops rows below them
//     (Stale: a replay);
//  2. runs each entity's writer (DuckDB.tables), which drops its rows below the positions and
//     applies its entity's rule. Events (eventsWriter): decides which of the remaining rows are
//     source duplicates (dedup.go has the rule: per event_id, a copy within the dedup window of
//     the preferred kept one is a duplicate, whatever the batch cuts and partitions), moves
//     stored copies whose side changed between fact_events and fact_events_duplicates, and
//     appends the kept rows and the duplicates with the DuckDB appender. Orders (ordersWriter):
//     keeps the latest version of each order (orders.go has the rule), replacing a stored
//     order's row and lines when a newer version came. Dimensions (dimWriter, duckdb_dims.go):
//     log the changes new to the change log and rewrite the versions of their keys that the
//     SCD2 rule of dims.go changes;
//  3. moves the positions forward (never back);
//  4. commits;
//  5. lets the writers update their in-memory state (the dedup index) with the committed rows.
//
// On any error the transaction is rolled back and nothing is written.
func (d *DuckDB) Write(ctx context.Context, group string, b Batch) (res WriteResult, err error) {
	defer func() {
		if err != nil {
			res = WriteResult{}
			err = wrap("write batch", err)
		}
	}()
	if err := ValidateBatch(group, b); err != nil {
		return res, err
	}
	if len(b.Events) == 0 && len(b.Orders) == 0 && len(b.Positions) == 0 {
		return res, nil
	}
	unlock, err := d.lockWriter()
	if err != nil {
		return res, err
	}
	defer unlock()

	tx, err := d.writer.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer rollback(tx)

	// 1. Stale replays. The positions are read inside the transaction: they are the ones this
	// commit will move, whatever an earlier, possibly crashed, writer left.
	stored, err := storedPositions(ctx, tx, group, b)
	if err != nil {
		return res, err
	}

	// 2. Rows, one writer per entity (tables): each drops its rows below the stored positions,
	// applies its rule and writes its tables in this transaction.
	now := time.Now().UTC()
	var after []func()
	for _, w := range d.tables {
		done, err := w.write(ctx, tx, b, stored, now, &res)
		if err != nil {
			return res, err
		}
		if done != nil {
			after = append(after, done)
		}
	}

	// 3. Positions.
	stmts, args := positionStatements(group, b, stored, now)
	for i, q := range stmts {
		if _, err := tx.ExecContext(ctx, q, args[i]...); err != nil {
			return res, fmt.Errorf("store positions: %w", err)
		}
	}
	if d.beforeCommit != nil {
		if err := d.beforeCommit(); err != nil {
			return res, err
		}
	}

	// 4-5. Commit. Only then may the writers update their in-memory state (the dedup index).
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	for _, f := range after {
		f()
	}
	return res, nil
}

// eventsWriter writes Batch.Events to fact_events and fact_events_duplicates by the dedup rule of
// dedup.go.
type eventsWriter struct{ d *DuckDB }

// write decides which fresh rows are kept, which are source duplicates and which stored copies
// change sides; moves the stored copies first (by the rowids this transaction read), then
// appends. The appender runs on the transaction's connection and flushes into the open
// transaction, so a rollback discards it like any INSERT (TestWriteRollsBackOnFailure checks
// this). The returned func updates the dedup index after the commit: only a committed row may
// enter it.
func (w eventsWriter) write(ctx context.Context, tx *sql.Tx, b Batch, stored map[Partition]int64, now time.Time, res *WriteResult) (func(), error) {
	d := w.d
	fresh, stale := FreshRows(len(b.Events), EventAt(&b), stored) // indexes into b.Events
	res.Stale += stale
	plan, err := d.dedup(ctx, tx, b.Events, fresh)
	if err != nil {
		return nil, fmt.Errorf("dedup: %w", err)
	}
	if err := moveCopies(ctx, tx, plan, now); err != nil {
		return nil, err
	}
	if len(plan.keep) > 0 {
		n, err := d.appendRows(ctx, "fact_events", b.Events, plan.keep, now)
		if err != nil {
			return nil, fmt.Errorf("append rows: %w", err)
		}
		res.Bytes += n
	}
	if len(plan.drop) > 0 {
		if _, err := d.appendRows(ctx, duplicatesTable, b.Events, plan.drop, now); err != nil {
			return nil, fmt.Errorf("append duplicates: %w", err)
		}
	}
	res.Inserted, res.Duplicates = len(plan.keep), len(plan.drop)
	res.Replaced = len(plan.demote) + len(plan.promote)
	return func() {
		if d.recent == nil || !d.recent.loaded {
			return
		}
		for _, c := range plan.demote {
			d.recent.remove(c.id, c.ts, c.recv)
		}
		for _, c := range plan.promote {
			d.recent.add(c.id, c.ts, c.recv)
		}
		for _, i := range plan.keep {
			r := &b.Events[i]
			d.recent.add(r.EventID, r.EventTimestamp, r.ReceivedAt)
		}
		d.recent.advance(time.Now())
	}, nil
}

// factColumns is the appender's column list, named so the appender does not depend on the
// column order of the DDL. appendRows fills them in this order.
var factColumns = []string{
	"event_id", "event_timestamp", "event_date", "date_key", "event_type",
	"user_id", "anonymous_id", "session_id", "page_url", "referrer", "user_agent",
	"device_type", "os", "browser", "country", "region", "city",
	"product_id", "search_query", "quantity", "price_minor", "currency", "order_id",
	"source", "received_at", "trace_id",
	"source_topic", "source_partition", "source_offset", "loaded_at",
	"client_ip", "collector_source", "dq_warnings",
}

// appendRows appends events[keep] to table (fact_events or the duplicates table, which have the
// same columns) and returns their approximate size in bytes.
func (d *DuckDB) appendRows(ctx context.Context, table string, events []EventRow, keep []int, loadedAt time.Time) (int64, error) {
	var size int64
	err := d.writer.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), "", "", table, factColumns)
		if err != nil {
			return err
		}
		vals := make([]driver.Value, len(factColumns))
		for _, i := range keep {
			size += rowValues(vals, &events[i], loadedAt)
			if err := a.AppendRow(vals...); err != nil {
				return errors.Join(err, a.Clear(), a.Close())
			}
		}
		return a.CloseWithCancel(ctx)
	})
	return size, err
}

// fixedWidthValues is the number of 8-byte-or-less values per row, for the size estimate.
const fixedWidthValues = 9

// rowValues fills vals in factColumns order and returns the row's approximate size. NULLs must be
// untyped nil: the appender writes a nil *string as an error, not as NULL.
func rowValues(vals []driver.Value, r *EventRow, loadedAt time.Time) int64 {
	e := &r.ClickEvent
	ts := e.EventTimestamp.UTC()
	y, m, dd := ts.Date()
	day := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
	size := int64(fixedWidthValues * 8)
	str := func(s string) driver.Value { size += int64(len(s)); return s }
	opt := func(p *string) driver.Value {
		if p == nil {
			return nil
		}
		size += int64(len(*p))
		return *p
	}
	vals[0] = str(e.EventID)
	vals[1] = ts
	vals[2] = day
	vals[3] = int32(y*10000 + int(m)*100 + dd)
	vals[4] = str(e.EventType)
	vals[5] = opt(e.UserID)
	vals[6] = opt(e.AnonymousID)
	vals[7] = str(e.SessionID)
	vals[8] = str(e.PageURL)
	vals[9] = opt(e.Referrer)
	vals[10] = opt(e.UserAgent)
	vals[11] = opt(e.DeviceType)
	vals[12] = opt(e.Os)
	vals[13] = opt(e.Browser)
	vals[14] = opt(e.Country)
	vals[15] = opt(e.Region)
	vals[16] = opt(e.City)
	vals[17] = opt(e.ProductID)
	vals[18] = opt(e.SearchQuery)
	vals[19] = nil
	if e.Quantity != nil {
		vals[19] = int32(*e.Quantity) // range checked by ValidateBatch
	}
	vals[20] = nil
	if e.PriceMinor != nil {
		vals[20] = *e.PriceMinor
	}
	vals[21] = opt(e.Currency)
	vals[22] = opt(e.OrderID)
	vals[23] = str(e.Source)
	vals[24] = e.ReceivedAt.UTC()
	vals[25] = nil
	if r.TraceID != "" {
		vals[25] = str(r.TraceID)
	}
	vals[26] = str(r.SourceTopic)
	vals[27] = r.SourcePartition
	vals[28] = r.SourceOffset
	vals[29] = loadedAt
	vals[30] = opt(e.ClientIP)
	vals[31] = opt(e.CollectorSource)
	vals[32] = nil
	if r.DQWarnings != "" {
		vals[32] = str(r.DQWarnings)
	}
	return size
}

// positionStatements builds the statements that move the batch's positions: an UPDATE for the
// partitions already stored (only forward: a batch carrying an older position, a replay, leaves
// the stored one alone) and an INSERT for new ones. Both are needed because stored was read in
// the same transaction; an INSERT ... ON CONFLICT DO UPDATE did the same at twice the cost.
// Partitions are sorted so the statement text, and so DuckDB's plan, is stable. The batch's log
// ids are stored with the positions; an unknown id (NULL) keeps the stored one.
func positionStatements(group string, b Batch, stored map[Partition]int64, now time.Time) (stmts []string, args [][]any) {
	var upd, ins strings.Builder
	var updArgs, insArgs []any
	cluster := nullIfEmpty(b.ClusterID)
	for _, p := range SortedPartitions(b.Positions) {
		next := b.Positions[p]
		topicID := nullIfEmpty(b.TopicIDs[p.Topic])
		if old, ok := stored[p]; ok {
			if next <= old {
				continue
			}
			if len(updArgs) > 0 {
				upd.WriteString(", ")
			}
			upd.WriteString("(?::VARCHAR, ?::INTEGER, ?::BIGINT, ?::TIMESTAMPTZ, ?::VARCHAR, ?::VARCHAR)")
			updArgs = append(updArgs, p.Topic, p.Partition, next, now, topicID, cluster)
			continue
		}
		if len(insArgs) > 0 {
			ins.WriteString(", ")
		}
		ins.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		insArgs = append(insArgs, group, p.Topic, p.Partition, next, now, topicID, cluster)
	}
	if len(updArgs) > 0 {
		stmts = append(stmts, `UPDATE stream_positions AS s SET next_offset = v.next_offset, updated_at = v.updated_at,
  topic_id = coalesce(v.topic_id, s.topic_id), cluster_id = coalesce(v.cluster_id, s.cluster_id)
FROM (VALUES `+upd.String()+`) AS v(topic, "partition", next_offset, updated_at, topic_id, cluster_id)
WHERE s.consumer_group = ? AND s.topic = v.topic AND s."partition" = v."partition" AND v.next_offset > s.next_offset`)
		args = append(args, append(updArgs, group))
	}
	if len(insArgs) > 0 {
		stmts = append(stmts, `INSERT INTO stream_positions (consumer_group, topic, "partition", next_offset, updated_at, topic_id, cluster_id) VALUES `+ins.String())
		args = append(args, insArgs)
	}
	return stmts, args
}

func rollback(tx *sql.Tx) {
	// After a successful Commit this returns sql.ErrTxDone; after a failure the transaction is
	// gone with the error already reported. Either way there is nothing more to do.
	_ = tx.Rollback()
}

// wrap prefixes err with the operation and marks it transient when DuckDB says retrying can help.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if isTransientCause(err) {
		return fmt.Errorf("warehouse: %s: %w: %w", op, ErrTransient, err)
	}
	return fmt.Errorf("warehouse: %s: %w", op, err)
}

func isTransientCause(err error) bool {
	switch {
	case errors.Is(err, ErrTransient):
		return false // already marked
	case errors.Is(err, context.Canceled):
		return false // the caller is stopping; retrying would be wrong
	case errors.Is(err, context.DeadlineExceeded):
		return true // a per-attempt timeout; the next attempt may be faster
	case errors.Is(err, driver.ErrBadConn):
		return true
	}
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeIO, duckdb.ErrorTypeOutOfMemory, duckdb.ErrorTypeTransaction,
			duckdb.ErrorTypeInterrupt, duckdb.ErrorTypeConnection, duckdb.ErrorTypeNetwork,
			duckdb.ErrorTypeHTTP:
			return true
		}
	}
	return false
}
