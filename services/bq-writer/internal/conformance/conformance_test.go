package conformance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/civil"

	"github.com/ecomstream/platform/services/bq-writer/internal/prodmodel"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// relationKeys are the columns each prod relation is sorted by before the comparison (the rest
// of the row breaks ties, so a view that repeats a key is compared too). A prod relation without
// an entry fails the suite: a new one must say its key.
var relationKeys = map[string][]string{
	"fact_events":          {"event_id"},
	"fact_orders":          {"order_id"},
	"fact_order_items":     {"order_id", "line_number"},
	"dim_products":         {"product_key"},
	"dim_users":            {"user_key"},
	"dim_date":             {"date_key"},
	"fact_events_pit":      {"event_id"},
	"fact_orders_pit":      {"order_id"},
	"fact_order_items_pit": {"order_id", "line_number"},
}

// skipColumns are the columns whose values may differ between backends (CONTRACT10: loaded_at).
var skipColumns = map[string]bool{"loaded_at": true}

// relation is one prod relation as the suite reads it: the compared columns and the key's
// positions among them.
type relation struct {
	name string
	cols []string
	key  []int
}

func relations(t *testing.T) []relation {
	t.Helper()
	rels, err := prodmodel.Relations()
	if err != nil {
		t.Fatal(err)
	}
	var out []relation
	for _, r := range rels {
		keys, ok := relationKeys[r.Name]
		if !ok {
			t.Fatalf("prod.%s has no key in relationKeys: add one so the suite compares it", r.Name)
		}
		rel := relation{name: r.Name}
		for _, c := range r.Columns {
			if !skipColumns[c] {
				rel.cols = append(rel.cols, c)
			}
		}
		for _, k := range keys {
			i := slices.Index(rel.cols, k)
			if i < 0 {
				t.Fatalf("prod.%s: key column %s is not among its columns %v", r.Name, k, rel.cols)
			}
			rel.key = append(rel.key, i)
		}
		out = append(out, rel)
	}
	return out
}

// selectSQL reads the relation's compared columns from table.
func (r relation) selectSQL(table string) string {
	return "SELECT " + strings.Join(r.cols, ", ") + " FROM " + table
}

// cell is one normalised value: its kind (so a string "1" is not an integer 1) and its text.
type cell struct{ kind, text string }

func (c cell) String() string {
	if c.kind == "null" {
		return "NULL"
	}
	return c.kind + ":" + c.text
}

// normalise maps a value read from either backend to a cell: timestamps and dates to UTC
// microseconds (a DATE is its midnight), every integer width to one integer kind, NULLs to null.
// A type it does not know is an error, so a new column type cannot compare as equal by accident.
func normalise(v any) (cell, error) {
	switch x := v.(type) {
	case nil:
		return cell{kind: "null"}, nil
	case string:
		return cell{"string", x}, nil
	case bool:
		return cell{"bool", strconv.FormatBool(x)}, nil
	case int64:
		return cell{"int", strconv.FormatInt(x, 10)}, nil
	case int32:
		return cell{"int", strconv.FormatInt(int64(x), 10)}, nil
	case int16:
		return cell{"int", strconv.FormatInt(int64(x), 10)}, nil
	case int8:
		return cell{"int", strconv.FormatInt(int64(x), 10)}, nil
	case int:
		return cell{"int", strconv.Itoa(x)}, nil
	case uint8:
		return cell{"int", strconv.FormatUint(uint64(x), 10)}, nil
	case uint16:
		return cell{"int", strconv.FormatUint(uint64(x), 10)}, nil
	case uint32:
		return cell{"int", strconv.FormatUint(uint64(x), 10)}, nil
	case float64:
		return cell{"float", strconv.FormatFloat(x, 'g', -1, 64)}, nil
	case *big.Rat:
		return cell{"decimal", x.FloatString(9)}, nil
	case time.Time:
		return cell{"time", strconv.FormatInt(x.UTC().UnixMicro(), 10)}, nil
	case civil.Date:
		return cell{"time", strconv.FormatInt(x.In(time.UTC).UnixMicro(), 10)}, nil
	default:
		return cell{}, fmt.Errorf("no normal form for %T (%v)", v, v)
	}
}

// table is a relation's rows, normalised and sorted by its key, then by the whole row.
type table [][]cell

func normaliseRows(r relation, rows [][]any) (table, error) {
	out := make(table, 0, len(rows))
	for _, row := range rows {
		if len(row) != len(r.cols) {
			return nil, fmt.Errorf("prod.%s: a row of %d values, want %d", r.name, len(row), len(r.cols))
		}
		cells := make([]cell, len(row))
		for i, v := range row {
			c, err := normalise(v)
			if err != nil {
				return nil, fmt.Errorf("prod.%s.%s: %w", r.name, r.cols[i], err)
			}
			cells[i] = c
		}
		out = append(out, cells)
	}
	slices.SortFunc(out, func(a, b []cell) int {
		for _, k := range r.key {
			if c := compareCells(a[k], b[k]); c != 0 {
				return c
			}
		}
		return slices.CompareFunc(a, b, compareCells)
	})
	return out, nil
}

func compareCells(a, b cell) int {
	if a.kind == "int" && b.kind == "int" { // numerically: line numbers, date keys
		x, _ := strconv.ParseInt(a.text, 10, 64)
		y, _ := strconv.ParseInt(b.text, 10, 64)
		return cmp.Compare(x, y)
	}
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.text, b.text))
}

// writer is one warehouse under test, as the sink drives it.
type writer interface {
	// write writes one batch (with its Kafka commit, for a Committer).
	write(t *testing.T, ctx context.Context, s step, b warehouse.Batch) (warehouse.WriteResult, error)
	// restart closes the writer and opens it again on the same store.
	restart(t *testing.T, ctx context.Context)
}

// backend is a writer whose prod relations can be read.
type backend interface {
	writer
	// read returns the rows of a prod relation's compared columns, and its COUNT(*).
	read(t *testing.T, ctx context.Context, r relation) (rows [][]any, count int64)
}

// feed writes the sequence through b: each refused row is removed as the sink dead-letters it
// (its offset stays covered by Positions) and the rest written again. It returns the batches
// written, by step.
func feed(t *testing.T, ctx context.Context, b writer, steps []step) []warehouse.Batch {
	t.Helper()
	var written []warehouse.Batch
	for _, s := range steps {
		if s.restartBefore {
			b.restart(t, ctx)
		}
		batch := s.batch
		refused := 0
		for {
			res, err := b.write(t, ctx, s, batch)
			var re *warehouse.RowError
			if errors.As(err, &re) {
				refused++
				if refused > s.rowErrors {
					t.Fatalf("step %q: refused row %d: %v (the step expects %d refused rows)", s.name, refused, err, s.rowErrors)
				}
				batch = withoutRow(batch, re)
				continue
			}
			if err != nil {
				t.Fatalf("step %q: %v", s.name, err)
			}
			t.Logf("step %q: events: %d inserted, %d duplicates, %d stale; orders %+v; products %+v; users %+v",
				s.name, res.Inserted, res.Duplicates, res.Stale, res.Orders, res.Products, res.Users)
			break
		}
		if refused != s.rowErrors {
			t.Fatalf("step %q: %d rows refused, want %d", s.name, refused, s.rowErrors)
		}
		written = append(written, batch)
	}
	return written
}

// withoutRow returns a copy of b without the refused row; Positions stay.
func withoutRow(b warehouse.Batch, re *warehouse.RowError) warehouse.Batch {
	switch re.Entity {
	case warehouse.EntityOrder:
		b.Orders = slices.Delete(slices.Clone(b.Orders), re.Index, re.Index+1)
	case warehouse.EntityProduct:
		b.Products = slices.Delete(slices.Clone(b.Products), re.Index, re.Index+1)
	case warehouse.EntityUser:
		b.Users = slices.Delete(slices.Clone(b.Users), re.Index, re.Index+1)
	default:
		b.Events = slices.Delete(slices.Clone(b.Events), re.Index, re.Index+1)
	}
	return b
}

// readAll reads every prod relation of b, normalised and sorted. Each relation's rows are
// counted with COUNT(*) too (a failed emulator query reads as an empty result) and must not be
// empty: the sequence gives every relation rows.
func readAll(t *testing.T, ctx context.Context, b backend, name string, rels []relation) map[string]table {
	t.Helper()
	out := map[string]table{}
	for _, r := range rels {
		rows, count := b.read(t, ctx, r)
		if int64(len(rows)) != count || count == 0 {
			t.Fatalf("%s prod.%s: read %d rows, COUNT(*) = %d; want the same, not 0", name, r.name, len(rows), count)
		}
		tbl, err := normaliseRows(r, rows)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[r.name] = tbl
	}
	return out
}

// compareTables reports every row of every relation that differs between the backends.
func compareTables(t *testing.T, rels []relation, duck, bq map[string]table) {
	t.Helper()
	for _, r := range rels {
		d, b := duck[r.name], bq[r.name]
		if len(d) != len(b) {
			t.Errorf("prod.%s: duckdb %d rows, bigquery %d", r.name, len(d), len(b))
		}
		diffs := 0
		for i := range max(len(d), len(b)) {
			var dr, br []cell
			if i < len(d) {
				dr = d[i]
			}
			if i < len(b) {
				br = b[i]
			}
			if slices.Equal(dr, br) {
				continue
			}
			if diffs++; diffs > 10 {
				t.Errorf("prod.%s: more rows differ", r.name)
				break
			}
			t.Errorf("prod.%s row %d differs:\n%s", r.name, i, rowDiff(r, dr, br))
		}
	}
}

func rowDiff(r relation, d, b []cell) string {
	var sb strings.Builder
	at := func(row []cell, i int) string {
		if row == nil {
			return "(no row)"
		}
		return row[i].String()
	}
	for i, c := range r.cols {
		mark := "  "
		if at(d, i) != at(b, i) {
			mark = "≠ "
		}
		fmt.Fprintf(&sb, "  %s%-20s duckdb %-40s bigquery %s\n", mark, c, at(d, i), at(b, i))
	}
	return sb.String()
}

// duckBackend is the DuckDB warehouse in a temporary file.
type duckBackend struct {
	path string
	d    *warehouse.DuckDB
}

func newDuck(t *testing.T, ctx context.Context) *duckBackend {
	t.Helper()
	b := &duckBackend{path: filepath.Join(t.TempDir(), "warehouse.duckdb")}
	b.open(t, ctx)
	t.Cleanup(func() {
		if err := b.d.Close(); err != nil {
			t.Errorf("close duckdb: %v", err)
		}
	})
	return b
}

func (b *duckBackend) open(t *testing.T, ctx context.Context) {
	t.Helper()
	d, err := warehouse.OpenDuckDB(b.path, warehouse.WithDedupWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b.d = d
}

func (b *duckBackend) write(_ *testing.T, ctx context.Context, _ step, batch warehouse.Batch) (warehouse.WriteResult, error) {
	return b.d.Write(ctx, group, batch)
}

func (b *duckBackend) restart(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := b.d.Close(); err != nil {
		t.Fatal(err)
	}
	b.open(t, ctx)
}

func (b *duckBackend) read(t *testing.T, ctx context.Context, r relation) ([][]any, int64) {
	t.Helper()
	const maxRows = 1 << 20
	_, rows, err := b.d.Query(ctx, r.selectSQL("prod."+r.name), maxRows)
	if err != nil {
		t.Fatalf("duckdb prod.%s: %v", r.name, err)
	}
	_, n, err := b.d.Query(ctx, "SELECT count(*) FROM prod."+r.name, 1)
	if err != nil || len(n) != 1 {
		t.Fatalf("duckdb count prod.%s: %v %v", r.name, n, err)
	}
	return rows, n[0][0].(int64)
}

// The DuckDB half of the suite, without servers: the sequence goes in, and every prod relation
// reads back with every column of the BigQuery DDL's list and the row counts the sequence
// implies (one row per event_id and per order, the order's latest lines).
func TestConformanceDuckDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rels := relations(t)
	start := time.Now()
	d := newDuck(t, ctx)
	feed(t, ctx, d, sequence())
	got := readAll(t, ctx, d, "duckdb", rels)
	t.Logf("duckdb: fed and read in %s", time.Since(start).Round(time.Millisecond))

	ids := map[string]bool{}
	orders := map[string]warehouse.OrderRow{} // the greatest version, of its copies the lowest coordinates
	for _, s := range sequence() {
		for _, e := range s.batch.Events {
			if e.EventID != "" {
				ids[e.EventID] = true
			}
		}
		for _, o := range s.batch.Orders {
			best, ok := orders[o.OrderID]
			c := warehouse.OrderVersion{Version: o.OrderVersion, UpdatedAt: o.UpdatedAt}.Compare(
				warehouse.OrderVersion{Version: best.OrderVersion, UpdatedAt: best.UpdatedAt})
			lower := cmp.Or(cmp.Compare(o.SourceTopic, best.SourceTopic), cmp.Compare(o.SourcePartition, best.SourcePartition),
				cmp.Compare(o.SourceOffset, best.SourceOffset)) < 0
			if !ok || c > 0 || (c == 0 && lower) {
				orders[o.OrderID] = o
			}
		}
	}
	// The point-in-time views resolve dimension versions (a comparison of NULLs only would
	// prove little).
	for _, pit := range []struct{ rel, col string }{
		{"fact_events_pit", "product_key"}, {"fact_events_pit", "user_key"}, {"fact_orders_pit", "user_key"},
		{"fact_order_items_pit", "product_key"},
	} {
		var r relation
		for _, x := range rels {
			if x.name == pit.rel {
				r = x
			}
		}
		i, resolved := slices.Index(r.cols, pit.col), 0
		for _, row := range got[pit.rel] {
			if i >= 0 && row[i].kind != "null" {
				resolved++
			}
		}
		if resolved == 0 {
			t.Errorf("prod.%s: no row resolves %s", pit.rel, pit.col)
		}
	}
	// The kept copy of each order is the one the contract names, whatever the arrival order (the
	// sequence delivers o2's version 2 from partition 1 first, then from partition 0).
	var ordersRel relation
	for _, r := range rels {
		if r.name == "fact_orders" {
			ordersRel = r
		}
	}
	at := func(col string) int { return slices.Index(ordersRel.cols, col) }
	for _, row := range got["fact_orders"] {
		o, ok := orders[row[at("order_id")].text]
		want := []string{strconv.FormatInt(o.OrderVersion, 10), strconv.Itoa(int(o.SourcePartition)), strconv.FormatInt(o.SourceOffset, 10)}
		have := []string{row[at("order_version")].text, row[at("source_partition")].text, row[at("source_offset")].text}
		if !ok || !slices.Equal(have, want) {
			t.Errorf("prod.fact_orders %s: version, partition, offset %v, want %v", row[at("order_id")].text, have, want)
		}
	}
	lines := 0
	for _, o := range orders {
		lines += len(o.Items)
	}
	tests := []struct {
		rel  string
		want int
	}{
		{"fact_events", len(ids)}, {"fact_events_pit", len(ids)}, {"fact_orders", len(orders)},
		{"fact_orders_pit", len(orders)}, {"fact_order_items", lines}, {"fact_order_items_pit", lines},
		{"dim_date", 5844},
	}
	for _, tt := range tests {
		if n := len(got[tt.rel]); n != tt.want {
			t.Errorf("prod.%s: %d rows, want %d", tt.rel, n, tt.want)
		}
	}
}
