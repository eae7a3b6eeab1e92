package prodmodel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/ecomstream/platform/services/bq-writer/internal/bqemu"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
	ddl "github.com/ecomstream/platform/sql"
)

const emulatorProject = bqemu.Project

// emulatorClient connects to the emulator's REST API and fails the test with how to start it when
// nothing answers there. The prod-model test needs only SQL, so it uses no gRPC endpoint.
func emulatorClient(t *testing.T, ctx context.Context) *bigquery.Client {
	t.Helper()
	c, err := bigquery.NewClient(ctx, emulatorProject, bqemu.Require(t).RESTOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exec runs one query job (a statement or a script) and returns its error, the job's included.
func exec(ctx context.Context, c *bigquery.Client, sql string) error {
	job, err := c.Query(sql).Run(ctx)
	if err != nil {
		return err
	}
	st, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	return st.Err()
}

func read(t *testing.T, ctx context.Context, c *bigquery.Client, sql string) ([][]any, bigquery.Schema) {
	t.Helper()
	it, err := c.Query(sql).Read(ctx)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var rows [][]any
	for {
		var vals []bigquery.Value
		err := it.Next(&vals)
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			row[i] = v
		}
		rows = append(rows, row)
	}
	return rows, it.Schema
}

// The BigQuery SQL model on the emulator: the DDL applies (twice) to fresh datasets, raw rows
// inserted with SQL (every copy, version and replay of the fixture) read back from the prod
// views as the Go rules say, and every prod relation has the columns the DDL names.
func TestIntegrationProdModelEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the BigQuery emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := emulatorClient(t, ctx)

	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	base := "prodmodel_" + hex.EncodeToString(suffix)
	dss := ddl.Datasets{Raw: base + "_raw", Staging: base + "_staging", Prod: base + "_prod"}
	for _, id := range []string{dss.Raw, dss.Staging, dss.Prod} {
		if err := c.Dataset(id).Create(ctx, &bigquery.DatasetMetadata{Location: "US"}); err != nil {
			t.Fatalf("create dataset %s: %v", id, err)
		}
		t.Cleanup(func() {
			if err := c.Dataset(id).DeleteWithContents(context.Background()); err != nil {
				t.Errorf("drop dataset %s: %v", id, err)
			}
		})
	}
	stmts, err := ddl.BigQuery(emulatorProject, dss)
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ { // the second round checks that the DDL is idempotent
		for _, s := range stmts {
			if err := exec(ctx, c, s.SQL); err != nil {
				t.Fatalf("apply %s (round %d): %v", s.Name, round, err)
			}
		}
	}
	table := func(ds, name string) string { return "`" + emulatorProject + "." + ds + "." + name + "`" }

	recs := fixture()
	for _, ins := range rawInserts(recs) {
		if err := exec(ctx, c, ins.sql(table(dss.Raw, ins.table))); err != nil {
			t.Fatalf("insert into raw.%s: %v", ins.table, err)
		}
	}
	// Counted explicitly: a failed query reads as an empty result on the emulator.
	rawCounts := map[string]int{}
	stagingCounts := map[string]int{}
	for _, r := range recs {
		for _, tbl := range rawTables(&r) {
			rawCounts[tbl.name] += tbl.rows
			if !r.replay {
				stagingCounts[tbl.name] += tbl.rows
			}
		}
	}
	for name, n := range rawCounts {
		for _, layer := range []struct {
			ds   string
			want int
		}{{dss.Raw, n}, {dss.Staging, stagingCounts[name]}} {
			rows, _ := read(t, ctx, c, "SELECT COUNT(*) FROM "+table(layer.ds, name))
			if len(rows) != 1 || rows[0][0] != int64(layer.want) {
				t.Errorf("%s.%s: COUNT(*) = %v, want %d", layer.ds, name, rows, layer.want)
			}
		}
	}

	w := want(recs, false)
	for _, chk := range checks {
		rows, _ := read(t, ctx, c, chk.sql(func(rel string) string { return table(dss.Prod, rel) }))
		compareRows(t, chk.name, rows, w[chk.name])
	}

	rels, err := Relations()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		rows, schema := read(t, ctx, c, "SELECT * FROM "+table(dss.Prod, r.Name)+" LIMIT 1")
		var got []string
		for _, f := range schema {
			got = append(got, f.Name)
		}
		if len(rows) != 1 || !slices.Equal(got, r.Columns) {
			t.Errorf("prod.%s: %d rows, columns %v; want 1 row, columns %v", r.Name, len(rows), got, r.Columns)
		}
	}
}

// rawInsert is one INSERT of many rows into one raw table.
type rawInsert struct {
	table string
	cols  []string
	rows  [][]any
}

func (r rawInsert) sql(table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES\n", table, strings.Join(r.cols, ", "))
	for i, row := range r.rows {
		if i > 0 {
			b.WriteString(",\n")
		}
		lits := make([]string, len(row))
		for j, v := range row {
			lits[j] = literal(v)
		}
		b.WriteString("(" + strings.Join(lits, ", ") + ")")
	}
	return b.String()
}

type tableRows struct {
	name string
	rows int
}

// rawTables says which raw tables a record appends to and how many rows.
func rawTables(r *record) []tableRows {
	switch {
	case r.event != nil:
		return []tableRows{{"fact_events", 1}}
	case r.order != nil:
		return []tableRows{{"fact_orders", 1}, {"fact_order_items", len(r.order.Items)}}
	case r.product != nil:
		return []tableRows{{"dim_products_changes", 1}}
	default:
		return []tableRows{{"dim_users_changes", 1}}
	}
}

// loadedAt is the arrival's load time: arrival order, one second apart.
func loadedAt(r *record) time.Time {
	return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.arrival) * time.Second)
}

// date is a DATE literal's value.
type date time.Time

func dateKey(t time.Time) int64 {
	y, m, d := t.UTC().Date()
	return int64(y*10000 + int(m)*100 + d)
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// rawInserts are the rows bq-writer would append for the records, replays included, with the
// columns of sql/bigquery/raw.
func rawInserts(recs []record) []rawInsert {
	ev := rawInsert{table: "fact_events", cols: []string{"event_id", "event_timestamp", "event_date", "date_key", "event_type",
		"user_id", "anonymous_id", "session_id", "page_url", "referrer", "user_agent", "device_type", "os", "browser", "country",
		"region", "city", "product_id", "search_query", "quantity", "price_minor", "currency", "order_id", "source", "received_at",
		"trace_id", "source_topic", "source_partition", "source_offset", "loaded_at", "client_ip", "collector_source", "dq_warnings"}}
	ord := rawInsert{table: "fact_orders", cols: []string{"order_id", "order_version", "user_id", "status", "currency",
		"subtotal_minor", "tax_minor", "shipping_minor", "discount_minor", "total_minor", "refunded_minor", "order_timestamp",
		"order_date", "date_key", "updated_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at", "refunded_at",
		"shipping_country", "source", "received_at", "dq_warnings", "trace_id", "source_topic", "source_partition", "source_offset",
		"loaded_at"}}
	items := rawInsert{table: "fact_order_items", cols: []string{"order_id", "line_number", "line_id", "product_id", "quantity",
		"unit_price_minor", "line_total_minor", "order_version", "date_key", "loaded_at", "source_topic", "source_partition",
		"source_offset"}}
	prod := rawInsert{table: "dim_products_changes", cols: []string{"product_id", "source_lsn", "source_ordinal", "op", "sku", "name",
		"category", "brand", "price_minor", "currency", "is_active", "deleted_at", "valid_from", "updated_at", "synced_at", "source",
		"attr_hash", "source_topic", "source_partition", "source_offset", "loaded_at", "product_key"}}
	users := rawInsert{table: "dim_users_changes", cols: []string{"user_id", "source_lsn", "source_ordinal", "op", "email_hash",
		"email_domain", "country", "is_active", "created_at", "deleted_at", "valid_from", "updated_at", "synced_at", "source",
		"attr_hash", "source_topic", "source_partition", "source_offset", "loaded_at", "user_key"}}
	for i := range recs {
		r := &recs[i]
		at := loadedAt(r)
		switch {
		case r.event != nil:
			e := r.event
			ev.rows = append(ev.rows, []any{e.EventID, e.EventTimestamp, date(e.EventTimestamp), dateKey(e.EventTimestamp), e.EventType,
				e.UserID, e.AnonymousID, e.SessionID, e.PageURL, e.Referrer, e.UserAgent, e.DeviceType, e.Os, e.Browser, e.Country,
				e.Region, e.City, e.ProductID, e.SearchQuery, e.Quantity, e.PriceMinor, e.Currency, e.OrderID, e.Source, e.ReceivedAt,
				nullIfEmpty(e.TraceID), e.SourceTopic, e.SourcePartition, e.SourceOffset, at, e.ClientIP, e.CollectorSource,
				nullIfEmpty(e.DQWarnings)})
		case r.order != nil:
			o := r.order
			ord.rows = append(ord.rows, []any{o.OrderID, o.OrderVersion, o.UserID, o.Status, o.Currency, o.SubtotalMinor, o.TaxMinor,
				o.ShippingMinor, o.DiscountMinor, o.TotalMinor, o.RefundedMinor, o.OrderTimestamp, date(o.OrderTimestamp),
				dateKey(o.OrderTimestamp), o.UpdatedAt, o.PaidAt, o.ShippedAt, o.DeliveredAt, o.CancelledAt, o.RefundedAt,
				o.ShippingCountry, o.Source, o.ReceivedAt, nullIfEmpty(o.DQWarnings), nullIfEmpty(o.TraceID), o.SourceTopic,
				o.SourcePartition, o.SourceOffset, at})
			for n, it := range o.Items {
				items.rows = append(items.rows, []any{o.OrderID, n, it.LineID, it.ProductID, it.Quantity, it.UnitPriceMinor,
					it.LineTotalMinor, o.OrderVersion, dateKey(o.OrderTimestamp), at, o.SourceTopic, o.SourcePartition, o.SourceOffset})
			}
		case r.product != nil:
			p := r.product
			prod.rows = append(prod.rows, []any{p.ProductID, p.SourceLsn, p.SourceOrdinal, p.Op, p.Sku, p.Name, p.Category, p.Brand,
				p.PriceMinor, p.Currency, p.IsActive, p.DeletedAt, p.ValidFrom(), p.UpdatedAt, p.SyncedAt, p.Source,
				nullIfEmpty(p.AttrHash()), p.SourceTopic, p.SourcePartition, p.SourceOffset, at,
				warehouse.SurrogateKey(p.ProductID, warehouse.Seq{LSN: p.SourceLsn, Ordinal: p.SourceOrdinal})})
		default:
			u := r.user
			users.rows = append(users.rows, []any{u.UserID, u.SourceLsn, u.SourceOrd, u.Op, u.EmailHash, u.EmailDomain, u.Country,
				u.IsActive, u.CreatedAt, u.DeletedAt, u.ValidFrom(), u.UpdatedAt, u.SyncedAt, u.Source, nullIfEmpty(u.AttrHash()),
				u.SourceTopic, u.SourcePartition, u.SourceOffset, at,
				warehouse.SurrogateKey(u.UserID, warehouse.Seq{LSN: u.SourceLsn, Ordinal: u.SourceOrd})})
		}
	}
	return []rawInsert{ev, ord, items, prod, users}
}

// literal writes a GoogleSQL literal. The fixture's strings hold no quote or backslash, so none
// needs escaping; one that did would be a fixture bug, and panics.
func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case *string:
		if x == nil {
			return "NULL"
		}
		return literal(*x)
	case string:
		if strings.ContainsAny(x, `'\`) {
			panic(fmt.Sprintf("prodmodel fixture: string %q needs escaping", x))
		}
		return "'" + x + "'"
	case *time.Time:
		if x == nil {
			return "NULL"
		}
		return literal(*x)
	case time.Time:
		return "TIMESTAMP '" + x.UTC().Format("2006-01-02 15:04:05.000000") + "+00'"
	case date:
		return "DATE '" + time.Time(x).UTC().Format("2006-01-02") + "'"
	case *int:
		if x == nil {
			return "NULL"
		}
		return strconv.Itoa(*x)
	case *int64:
		if x == nil {
			return "NULL"
		}
		return strconv.FormatInt(*x, 10)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strings.ToUpper(strconv.FormatBool(x))
	default:
		panic(fmt.Sprintf("prodmodel fixture: no literal for %T", v))
	}
}
