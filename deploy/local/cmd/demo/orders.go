package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/storefront"
	protoavro "github.com/ecomstream/platform/proto/avro"
)

// The warehouse's order rows: orders (one row per order, its latest version)
// and their lines.
const (
	ordersCount = "SELECT count(*) FROM fact_orders"
	linesCount  = "SELECT count(*) FROM fact_order_items"
)

// joinSQL is the example the demo prints and runs: purchases in fact_events
// with the order the storefront holds for them.
const joinSQL = `SELECT e.order_id, e.user_id, o.status, o.total_minor, o.currency, e.event_timestamp
FROM fact_events e JOIN fact_orders o ON o.order_id = e.order_id
WHERE e.event_type = 'purchase'
ORDER BY e.event_timestamp DESC
LIMIT 5`

// joinCountSQL counts the purchases loaded since a time (%s, RFC 3339), the
// ones with their order in fact_orders, and those whose order is the same
// user's.
const joinCountSQL = `SELECT count(*), count(o.order_id), count(*) FILTER (WHERE o.user_id = e.user_id)
FROM fact_events e LEFT JOIN fact_orders o ON o.order_id = e.order_id
WHERE e.event_type = 'purchase' AND e.loaded_at >= TIMESTAMPTZ '%s'`

// orderCounts are fact_orders' and fact_order_items' row counts.
type orderCounts struct{ orders, lines int64 }

func queryOrderCounts(ctx context.Context, sl *slice.Slice) (orderCounts, error) {
	var c orderCounts
	var err error
	if c.orders, err = sl.QueryInt(ctx, ordersCount); err != nil {
		return c, err
	}
	c.lines, err = sl.QueryInt(ctx, linesCount)
	return c, err
}

// storefrontStats is the part of the simulator's GET /v1/admin/stats the
// demo shows.
type storefrontStats struct {
	Orders   int            `json:"orders"`   // created in all: its own arrivals and placed ones
	Arrivals int            `json:"arrivals"` // its own
	Placed   int            `json:"placed"`   // placed from outside (the clickstream's purchases)
	Versions int            `json:"versions"` // versions made
	Broken   map[string]int `json:"broken"`   // broken orders per kind
}

func (s storefrontStats) broken() int {
	n := 0
	for _, v := range s.Broken {
		n += v
	}
	return n
}

// metrics are the ecom_ samples of each process, by process name.
type metrics map[string][]slice.Series

func scrapeAll(ctx context.Context, sl *slice.Slice) metrics {
	m := metrics{}
	for _, n := range sl.Names {
		if n == "storefront" { // the simulator has no /metrics
			continue
		}
		if series, err := slice.Scrape(ctx, sl.Procs[n].HTTPAddr, "ecom_"); err == nil {
			m[n] = series
		}
	}
	return m
}

// deadLetters are the dead letters of the clickstream, of the orders and of
// the catalog, apart: totals and the reasons ("stage code [rule_id]").
type deadLetters struct {
	clicks, orders             float64
	clickReasons, orderReasons map[string]float64
	// catalog counts change records by entity (product_change, customer_change).
	catalog        map[string]float64
	catalogReasons map[string]float64
}

// splitDeadLetters reads ecom_dead_letters_total (one increment per reason)
// and ecom_records_processed_total (one per record). A reason is an order's
// by the counter's entity label, a click's otherwise; a reason whose entity
// is neither (a handler panic: "unknown") is listed with the clicks' under
// its entity. Clicks count reasons, as the demo always has. Orders count order versions: the validator's and
// bq-writer's records of the order topics dead-lettered, and ingest-orders'
// webhook bodies (one reason each). The catalog's reasons are those of the
// entities product_change and customer_change; its counts are change
// records, the validator's and bq-writer's of the catalog topics.
func splitDeadLetters(m metrics, t slice.Topics) deadLetters {
	d := deadLetters{clickReasons: map[string]float64{}, orderReasons: map[string]float64{},
		catalog: map[string]float64{protoavro.ProductChange: 0, protoavro.CustomerChange: 0}, catalogReasons: map[string]float64{}}
	for _, n := range slices.Sorted(maps.Keys(m)) {
		for _, s := range m[n] {
			if s.Name != "ecom_dead_letters_total" {
				continue
			}
			key := s.Labels["stage"] + " " + s.Labels["code"]
			if r := s.Labels["rule_id"]; r != "" {
				key += " " + r
			}
			switch e := s.Labels["entity"]; e {
			case protoavro.Order:
				d.orderReasons[key] += s.Value
				continue
			case protoavro.ProductChange, protoavro.CustomerChange:
				if s.Labels["rule_id"] == "" {
					key += " (" + e + ")"
				}
				d.catalogReasons[key] += s.Value
				continue
			case protoavro.ClickEvent:
			default:
				key += " (entity " + e + ")"
			}
			d.clickReasons[key] += s.Value
			d.clicks += s.Value
		}
	}
	dead := map[string]string{"outcome": "dead_lettered"}
	for _, topic := range []string{t.Orders, t.OrdersValid} {
		dead["topic"] = topic
		d.orders += slice.Sum(m["validator"], "ecom_records_processed_total", dead) + slice.Sum(m["bq-writer"], "ecom_records_processed_total", dead)
	}
	d.orders += slice.Sum(m["ingest-orders"], "ecom_dead_letters_total", nil)
	for entity, topics := range map[string][2]string{protoavro.ProductChange: {t.Products, t.ProductsValid}, protoavro.CustomerChange: {t.Customers, t.CustomersValid}} {
		dead["topic"] = topics[0]
		d.catalog[entity] += slice.Sum(m["validator"], "ecom_records_processed_total", dead)
		dead["topic"] = topics[1]
		d.catalog[entity] += slice.Sum(m["bq-writer"], "ecom_records_processed_total", dead)
	}
	return d
}

// ordersStatus is what the progress report says about the orders path.
type ordersStatus struct {
	stats      *storefrontStats        // nil: the simulator did not answer
	placer     *storefront.PlacerStats // the clickstream's purchases placed as orders
	produced   map[string]float64      // ingest-orders' order versions by source (api, webhook)
	before     orderCounts             // the warehouse's at the start of the run
	now        orderCounts
	dead       float64 // order versions dead-lettered
	lag        float64 // seconds the cursor is behind the API
	lagKnown   bool    // false before the first poll
	warehouseE error   // the warehouse did not answer
}

// producedBySource reads ecom_orders_produced_total by its source label.
func producedBySource(series []slice.Series) map[string]float64 {
	out := map[string]float64{}
	for _, s := range series {
		if s.Name == "ecom_orders_produced_total" {
			out[s.Labels["source"]] += s.Value
		}
	}
	return out
}

// cursorLag reads ecom_orders_cursor_lag_seconds; false when absent.
func cursorLag(series []slice.Series) (float64, bool) {
	for _, s := range series {
		if s.Name == "ecom_orders_cursor_lag_seconds" {
			return s.Value, true
		}
	}
	return 0, false
}

// lines are the orders' progress lines: what the storefront made; what
// ingest-orders produced by source, what landed this run (the warehouse file
// outlives runs), what was dead-lettered and how far the cursor is behind
// the API; and the clickstream purchases that could not be placed.
func (o ordersStatus) lines() string {
	var b strings.Builder
	if o.stats != nil {
		fmt.Fprintf(&b, "      storefront: %d orders (%d its own, %d placed for clickstream purchases), %d versions, %d broken on purpose\n",
			o.stats.Orders, o.stats.Arrivals, o.stats.Placed, o.stats.Versions, o.stats.broken())
	}
	b.WriteString("      orders: produced")
	if len(o.produced) == 0 {
		b.WriteString(" 0")
	}
	for i, src := range slices.Sorted(maps.Keys(o.produced)) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %.0f", src, o.produced[src])
	}
	if o.warehouseE != nil {
		fmt.Fprintf(&b, " | warehouse: %v", o.warehouseE)
	} else {
		fmt.Fprintf(&b, " | landed %d orders, %d lines (table total %d)", o.now.orders-o.before.orders, o.now.lines-o.before.lines, o.now.orders)
	}
	fmt.Fprintf(&b, " | dead-lettered %.0f versions", o.dead)
	if o.lagKnown {
		fmt.Fprintf(&b, " | cursor %s behind the API", (time.Duration(o.lag * float64(time.Second))).Round(100*time.Millisecond))
	} else {
		b.WriteString(" | cursor: no poll yet")
	}
	if p := o.placer; p != nil && p.Failed+p.Dropped > 0 {
		fmt.Fprintf(&b, "\n      purchases without an order: %d failed, %d dropped (the placer's queue was full)", p.Failed, p.Dropped)
	}
	return b.String()
}

// printReasons prints the dead-letter reasons, sorted.
func printReasons(reasons map[string]float64) {
	for _, k := range slices.Sorted(maps.Keys(reasons)) {
		fmt.Printf("      %-70s %6.0f\n", k, reasons[k])
	}
}

// printJoin runs the example join and prints it with its result: how many
// of this run's purchases (loaded since start) have their order in
// fact_orders, then the query and its rows.
func printJoin(ctx context.Context, sl *slice.Slice, start time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fmt.Println("\n  Purchases joined to their orders (fact_events.order_id = fact_orders.order_id):")
	_, rs, err := sl.Query(ctx, fmt.Sprintf(joinCountSQL, start.UTC().Format(time.RFC3339)))
	if err != nil {
		fmt.Println("    ", err)
		return
	}
	if len(rs) == 1 && len(rs[0]) == 3 {
		fmt.Printf("    this run: %s purchase events, %s with their order in fact_orders, %s of the same user\n",
			cell(rs[0][0]), cell(rs[0][1]), cell(rs[0][2]))
	}
	cols, rows, err := sl.Query(ctx, joinSQL)
	if err != nil {
		fmt.Println("    ", err)
		return
	}
	fmt.Print(indent(joinSQL, "    "))
	if len(rows) == 0 {
		fmt.Println("    (no rows: no purchase has its order in fact_orders yet)")
		return
	}
	fmt.Print(indent(formatTable(cols, rows), "    "))
}

// formatTable lays out a query result as aligned text columns, one line
// per row, with a header.
func formatTable(cols []string, rows [][]any) string {
	cells := make([][]string, 0, len(rows)+1)
	cells = append(cells, cols)
	for _, r := range rows {
		line := make([]string, len(cols))
		for i := range cols {
			if i < len(r) {
				line[i] = cell(r[i])
			}
		}
		cells = append(cells, line)
	}
	width := make([]int, len(cols))
	for _, line := range cells {
		for i, c := range line {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, line := range cells {
		for i, c := range line {
			if i == len(line)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cell is one value of a query answer (decoded JSON) as text: numbers
// without exponent, NULL for null.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// indent prefixes every line of s with p.
func indent(s, p string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i := range lines {
		lines[i] = p + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
