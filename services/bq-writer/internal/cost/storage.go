package cost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"time"

	"cloud.google.com/go/bigquery"
)

// Sizer reports the bytes stored by table.
type Sizer interface {
	TableBytes(ctx context.Context) (map[string]int64, error)
}

// RunStorage refreshes the stored bytes from s now and every interval until ctx ends. A failed
// refresh keeps the previous sizes (logged at warn); it never stops the service.
func (m *Meter) RunStorage(ctx context.Context, s Sizer, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.refresh(ctx, s, interval, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Meter) refresh(ctx context.Context, s Sizer, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sizes, err := s.TableBytes(ctx)
	if err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			log.WarnContext(ctx, "reading the warehouse's stored bytes for the storage cost failed; keeping the last figures", "err", err)
		}
		return
	}
	m.SetStored(sizes)
}

// Querier runs one read-only statement (the DuckDB warehouse's Query).
type Querier interface {
	Query(ctx context.Context, query string, maxRows int) (columns []string, rows [][]any, err error)
}

// DuckDBSizer estimates DuckDB's stored bytes by table: the database's used blocks plus its
// write-ahead log (not yet checkpointed rows) is what the file holds, shared among the tables by
// (estimated rows + 1) x columns. DuckDB keeps no per-table byte count that is cheap to read
// (pragma_storage_info lists every segment); the share is an estimate, the total is not.
type DuckDBSizer struct {
	Q Querier
	// Path is the database file ("" or ":memory:": no WAL file).
	Path string
}

// maxTables caps the rows the sizer reads back.
const maxTables = 10_000

// TableBytes implements Sizer.
func (d DuckDBSizer) TableBytes(ctx context.Context) (map[string]int64, error) {
	// One row per database; ATTACH is disabled (external access is), so the file is the only
	// one besides the in-memory temp database.
	_, rows, err := d.Q.Query(ctx, `SELECT block_size, used_blocks FROM pragma_database_size()`, 16)
	if err != nil {
		return nil, fmt.Errorf("cost: duckdb database size: %w", err)
	}
	var total int64
	for _, r := range rows {
		if len(r) != 2 {
			return nil, fmt.Errorf("cost: duckdb database size: %d columns", len(r))
		}
		blockSize, err1 := toInt(r[0])
		used, err2 := toInt(r[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("cost: duckdb database size: %w", err)
		}
		total += blockSize * used
	}
	if d.Path != "" && d.Path != ":memory:" {
		switch fi, err := os.Stat(d.Path + ".wal"); {
		case err == nil:
			total += fi.Size()
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("cost: duckdb wal: %w", err)
		}
	}
	_, rows, err = d.Q.Query(ctx, `SELECT schema_name, table_name, estimated_size, column_count FROM duckdb_tables()
		WHERE NOT internal AND NOT temporary ORDER BY schema_name, table_name`, maxTables)
	if err != nil {
		return nil, fmt.Errorf("cost: duckdb tables: %w", err)
	}
	type share struct {
		name   string
		weight float64
	}
	shares := make([]share, 0, len(rows))
	var sum float64
	for _, r := range rows {
		if len(r) != 4 {
			return nil, fmt.Errorf("cost: duckdb tables: %d columns", len(r))
		}
		schema, _ := r[0].(string)
		name, _ := r[1].(string)
		if schema != "main" {
			name = schema + "." + name
		}
		n, err1 := toInt(r[2])
		cols, err2 := toInt(r[3])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("cost: duckdb table %s: %w", name, err)
		}
		w := float64(max(n, 0)+1) * float64(max(cols, 1))
		shares = append(shares, share{name, w})
		sum += w
	}
	out := make(map[string]int64, len(shares))
	for _, s := range shares {
		out[s.name] = int64(float64(total) * s.weight / sum)
	}
	return out, nil
}

// toInt converts an integer the DuckDB driver returns.
func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		return int64(x), nil
	case float64:
		return int64(x), nil
	case *big.Int:
		return x.Int64(), nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("%v (%T) is not an integer", v, v)
}

// BigQuerySizer reads BigQuery's stored bytes of the raw tables from their metadata (numBytes:
// one tables.get each). The staging and prod datasets are views over them.
type BigQuerySizer struct {
	Client  *bigquery.Client
	Dataset string
	Tables  []string
}

// TableBytes implements Sizer.
func (b BigQuerySizer) TableBytes(ctx context.Context) (map[string]int64, error) {
	out := make(map[string]int64, len(b.Tables))
	for _, t := range b.Tables {
		md, err := b.Client.Dataset(b.Dataset).Table(t).Metadata(ctx)
		if err != nil {
			return nil, fmt.Errorf("cost: bigquery table %s.%s metadata: %w", b.Dataset, t, err)
		}
		out[t] = md.NumBytes
	}
	return out, nil
}
