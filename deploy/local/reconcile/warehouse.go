package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Coord is a record's place in a Kafka log.
type Coord struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (c Coord) String() string { return fmt.Sprintf("%s/%d@%d", c.Topic, c.Partition, c.Offset) }

// Warehouse is what the reconciliation reads of the warehouse: where each stored row came from,
// and the writer's positions (its own record of what it consumed, stored with the rows).
type Warehouse interface {
	// Sources returns the source coordinates of table's rows read from topic whose
	// received_at is in w, one entry per row (a coordinate twice is a row written twice).
	Sources(ctx context.Context, table, topic string, w Window) ([]Coord, error)
	// Positions returns group's stored next offset per partition of topic.
	Positions(ctx context.Context, group, topic string) (map[int32]int64, error)
}

// QueryAPI is the DuckDB warehouse read through bq-writer's POST /v1/warehouse/query (the
// writer holds the file; the endpoint serves read-only SQL with WAREHOUSE_QUERY_TOKEN). Its row
// cap (WAREHOUSE_QUERY_MAX_ROWS) must exceed a window's rows per table.
type QueryAPI struct {
	URL   string // e.g. http://127.0.0.1:8084
	Token string
	HTTP  *http.Client // nil = http.DefaultClient
}

var _ Warehouse = (*QueryAPI)(nil)

// Tables a clickstream record can end in.
const (
	TableEvents     = "fact_events"
	TableDuplicates = "fact_events_duplicates"
)

// Sources implements Warehouse.
func (q *QueryAPI) Sources(ctx context.Context, table, topic string, w Window) ([]Coord, error) {
	if table != TableEvents && table != TableDuplicates {
		return nil, fmt.Errorf("reconcile: no table %q", table)
	}
	where := fmt.Sprintf("FROM %s WHERE source_topic = %s AND received_at >= %s AND received_at < %s", table, quote(topic), stamp(w.From), stamp(w.To))
	n, err := q.query(ctx, "SELECT count(*), 0 "+where)
	if err != nil {
		return nil, err
	}
	rows, err := q.query(ctx, "SELECT source_partition, source_offset "+where)
	if err != nil {
		return nil, err
	}
	if len(n) != 1 || n[0][0] != strconv.Itoa(len(rows)) {
		return nil, fmt.Errorf("reconcile: %s: the query endpoint returned %d of %v rows (WAREHOUSE_QUERY_MAX_ROWS): reconcile a shorter window", table, len(rows), n)
	}
	out := make([]Coord, 0, len(rows))
	for _, r := range rows {
		p, o, err := ints(r)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %s row: %w", table, err)
		}
		out = append(out, Coord{Topic: topic, Partition: int32(p), Offset: o})
	}
	return out, nil
}

// Positions implements Warehouse.
func (q *QueryAPI) Positions(ctx context.Context, group, topic string) (map[int32]int64, error) {
	rows, err := q.query(ctx, fmt.Sprintf(`SELECT "partition", next_offset FROM stream_positions WHERE consumer_group = %s AND topic = %s`,
		quote(group), quote(topic)))
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, r := range rows {
		p, o, err := ints(r)
		if err != nil {
			return nil, fmt.Errorf("reconcile: stream_positions row: %w", err)
		}
		out[int32(p)] = o
	}
	return out, nil
}

// query runs sql and returns its rows with every value as text (numbers as JSON writes them,
// NULL as "").
func (q *QueryAPI) query(ctx context.Context, sql string) ([][]string, error) {
	body, _ := json.Marshal(map[string]any{"sql": sql, "max_rows": 1 << 30})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.URL+"/v1/warehouse/query", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+q.Token)
	cl := q.HTTP
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reconcile: warehouse query: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("reconcile: warehouse query: %w", err)
	}
	var out struct {
		Rows  [][]any `json:"rows"`
		Error string  `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("reconcile: warehouse query: %s: %.200s", resp.Status, b)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reconcile: warehouse query: %s: %s", resp.Status, out.Error)
	}
	rows := make([][]string, len(out.Rows))
	for i, r := range out.Rows {
		rows[i] = make([]string, len(r))
		for j, v := range r {
			switch v := v.(type) {
			case nil:
			case string:
				rows[i][j] = v
			default:
				rows[i][j] = fmt.Sprint(v)
			}
		}
	}
	return rows, nil
}

func ints(r []string) (int64, int64, error) {
	if len(r) != 2 {
		return 0, 0, fmt.Errorf("%d columns, want 2", len(r))
	}
	a, err := strconv.ParseInt(r[0], 10, 64)
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.ParseInt(r[1], 10, 64)
	return a, b, err
}

// quote is a SQL string literal.
func quote(s string) string {
	return "'" + string(bytes.ReplaceAll([]byte(s), []byte("'"), []byte("''"))) + "'"
}

// stamp is a TIMESTAMPTZ literal of t, at microseconds.
func stamp(t time.Time) string {
	return "TIMESTAMPTZ '" + t.UTC().Format("2006-01-02 15:04:05.000000") + "+00'"
}
