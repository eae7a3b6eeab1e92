package main

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/deploy/local/storefront"
)

func TestFormatTable(t *testing.T) {
	tests := []struct {
		name string
		cols []string
		rows [][]any
		want string
	}{
		{
			name: "aligned columns, numbers without exponent, NULL",
			cols: []string{"order_id", "total_minor", "paid_at"},
			rows: [][]any{{"o-1", 1234567.0, nil}, {"o-22", 5.0, "2026-12-01T12:00:00Z"}},
			want: "order_id  total_minor  paid_at\n" +
				"o-1       1234567      NULL\n" +
				"o-22      5            2026-12-01T12:00:00Z\n",
		},
		{name: "header only", cols: []string{"a", "bb"}, want: "a  bb\n"},
		{name: "short row", cols: []string{"a", "b"}, rows: [][]any{{"x"}}, want: "a  b\nx  \n"},
		{name: "non-ASCII width in runes", cols: []string{"name", "n"}, rows: [][]any{{"Zürich", 1.5}, {"x", true}},
			want: "name    n\nZürich  1.5\nx       true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatTable(tt.cols, tt.rows); got != tt.want {
				t.Errorf("formatTable() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestIndent(t *testing.T) {
	if got, want := indent("a\nb\n", "  "), "  a\n  b\n"; got != want {
		t.Errorf("indent() = %q, want %q", got, want)
	}
	if got, want := indent("a", "> "), "> a\n"; got != want {
		t.Errorf("indent() = %q, want %q", got, want)
	}
}

func series(name string, v float64, kv ...string) slice.Series {
	s := slice.Series{Name: name, Labels: map[string]string{}, Value: v}
	for i := 0; i+1 < len(kv); i += 2 {
		s.Labels[kv[i]] = kv[i+1]
	}
	return s
}

func TestSplitDeadLetters(t *testing.T) {
	topics := slice.Topics{Raw: "clickstream", Events: "ecom.events.v1", Valid: "ecom.events.valid.v1", Orders: "ecom.orders.v1", OrdersValid: "ecom.orders.valid.v1",
		Products: "ecom.products.v1", ProductsValid: "ecom.products.valid.v1", Customers: "ecom.customers.v1", CustomersValid: "ecom.customers.valid.v1"}
	m := metrics{
		"ingest-clickstream": {
			series("ecom_dead_letters_total", 4, "stage", "ingest-clickstream", "entity", "click_event", "code", "MALFORMED_JSON", "rule_id", ""),
		},
		"validator": {
			series("ecom_dead_letters_total", 3, "stage", "validator", "entity", "click_event", "code", "RULE_FAILED", "rule_id", "click.required_fields"),
			// one broken order version failing two rules: two reasons, one record
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "order", "code", "RULE_FAILED", "rule_id", "order.total_matches"),
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "order", "code", "RULE_FAILED", "rule_id", "order.lines_sum_to_subtotal"),
			// an order version that does not decode: no rule id, still an order's
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "order", "code", "UNDECODABLE", "rule_id", ""),
			// a handler panic: no entity known
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "unknown", "code", "INTERNAL", "rule_id", ""),
			series("ecom_records_processed_total", 2, "stage", "validator", "topic", "ecom.orders.v1", "outcome", "dead_lettered"),
			series("ecom_records_processed_total", 50, "stage", "validator", "topic", "ecom.orders.v1", "outcome", "ok"),
			series("ecom_records_processed_total", 3, "stage", "validator", "topic", "ecom.events.v1", "outcome", "dead_lettered"),
			// a product change with a negative price and an empty name: two reasons, one record
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "product_change", "code", "RULE_FAILED", "rule_id", "product.price_range"),
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "product_change", "code", "RULE_FAILED", "rule_id", "product.name_present"),
			series("ecom_dead_letters_total", 2, "stage", "validator", "entity", "customer_change", "code", "RULE_FAILED", "rule_id", "customer.email_valid"),
			series("ecom_dead_letters_total", 1, "stage", "validator", "entity", "customer_change", "code", "UNDECODABLE", "rule_id", ""),
			series("ecom_records_processed_total", 1, "stage", "validator", "topic", "ecom.products.v1", "outcome", "dead_lettered"),
			series("ecom_records_processed_total", 40, "stage", "validator", "topic", "ecom.products.v1", "outcome", "ok"),
			series("ecom_records_processed_total", 3, "stage", "validator", "topic", "ecom.customers.v1", "outcome", "dead_lettered"),
		},
		"bq-writer": {
			series("ecom_dead_letters_total", 2, "stage", "bq-writer", "entity", "order", "code", "INVALID_VALUE", "rule_id", ""),
			series("ecom_dead_letters_total", 1, "stage", "bq-writer", "entity", "click_event", "code", "INVALID_VALUE", "rule_id", ""),
			series("ecom_records_processed_total", 2, "stage", "bq-writer", "topic", "ecom.orders.valid.v1", "outcome", "dead_lettered"),
			series("ecom_records_processed_total", 1, "stage", "bq-writer", "topic", "ecom.events.valid.v1", "outcome", "dead_lettered"),
			series("ecom_records_processed_total", 1, "stage", "bq-writer", "topic", "ecom.products.valid.v1", "outcome", "dead_lettered"),
		},
		"ingest-orders": {
			series("ecom_dead_letters_total", 1, "stage", "ingest-orders", "entity", "order", "code", "MALFORMED_JSON", "rule_id", ""),
		},
	}
	d := splitDeadLetters(m, topics)
	if d.clicks != 9 {
		t.Errorf("clicks = %v, want 9 (4 + 3 + 1 reasons, 1 unknown, no order's)", d.clicks)
	}
	if d.orders != 5 {
		t.Errorf("orders = %v, want 5 (2 validator + 2 bq-writer records of the order topics, 1 webhook body)", d.orders)
	}
	wantClicks := map[string]float64{"ingest-clickstream MALFORMED_JSON": 4, "validator RULE_FAILED click.required_fields": 3,
		"bq-writer INVALID_VALUE": 1, "validator INTERNAL (entity unknown)": 1}
	if !maps.Equal(d.clickReasons, wantClicks) {
		t.Errorf("clickReasons = %v, want %v", d.clickReasons, wantClicks)
	}
	wantOrders := map[string]float64{"validator RULE_FAILED order.total_matches": 1, "validator RULE_FAILED order.lines_sum_to_subtotal": 1,
		"validator UNDECODABLE": 1, "bq-writer INVALID_VALUE": 2, "ingest-orders MALFORMED_JSON": 1}
	if !maps.Equal(d.orderReasons, wantOrders) {
		t.Errorf("orderReasons = %v, want %v", d.orderReasons, wantOrders)
	}
	wantCatalog := map[string]float64{"product_change": 2, "customer_change": 3} // validator + bq-writer records of the catalog topics
	if !maps.Equal(d.catalog, wantCatalog) {
		t.Errorf("catalog = %v, want %v", d.catalog, wantCatalog)
	}
	wantCatalogReasons := map[string]float64{"validator RULE_FAILED product.price_range": 1, "validator RULE_FAILED product.name_present": 1,
		"validator RULE_FAILED customer.email_valid": 2, "validator UNDECODABLE (customer_change)": 1}
	if !maps.Equal(d.catalogReasons, wantCatalogReasons) {
		t.Errorf("catalogReasons = %v, want %v", d.catalogReasons, wantCatalogReasons)
	}
	if e := splitDeadLetters(metrics{}, topics); e.clicks != 0 || e.orders != 0 || len(e.clickReasons)+len(e.orderReasons)+len(e.catalogReasons) != 0 ||
		!maps.Equal(e.catalog, map[string]float64{"product_change": 0, "customer_change": 0}) {
		t.Errorf("splitDeadLetters of no scrape = %+v, want zeros", e)
	}
}

func TestOrdersMetrics(t *testing.T) {
	ss := []slice.Series{
		series("ecom_orders_produced_total", 40, "source", "api"),
		series("ecom_orders_produced_total", 41, "source", "webhook"),
		series("ecom_orders_pages_polled_total", 9),
		series("ecom_orders_cursor_lag_seconds", 3.5),
	}
	if got, want := producedBySource(ss), map[string]float64{"api": 40, "webhook": 41}; !maps.Equal(got, want) {
		t.Errorf("producedBySource() = %v, want %v", got, want)
	}
	if lag, ok := cursorLag(ss); !ok || lag != 3.5 {
		t.Errorf("cursorLag() = %v, %v, want 3.5, true", lag, ok)
	}
	if _, ok := cursorLag(ss[:3]); ok {
		t.Error("cursorLag() without the gauge: ok, want not known")
	}
}

func TestOrdersLines(t *testing.T) {
	var st storefrontStats
	// The simulator's GET /v1/admin/stats body (fields the demo does not show included).
	body := `{"orders":42,"arrivals":30,"placed":12,"open":20,"versions":97,"broken":{"negative_amount":1,"no_lines":0,"total_mismatch":1},"shop_time":"2026-12-01T12:00:00Z"}`
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		give      ordersStatus
		want      []string
		wantNotIn []string
	}{
		{
			name: "everything known",
			give: ordersStatus{stats: &st, placer: &storefront.PlacerStats{Queued: 12, Placed: 12}, produced: map[string]float64{"webhook": 95, "api": 90},
				before: orderCounts{orders: 100, lines: 250}, now: orderCounts{orders: 140, lines: 350}, dead: 4, lag: 3.46, lagKnown: true},
			want: []string{"      storefront: 42 orders (30 its own, 12 placed for clickstream purchases), 97 versions, 2 broken on purpose\n      orders: produced api 90, webhook 95 |",
				"landed 40 orders, 100 lines (table total 140)", "dead-lettered 4 versions", "cursor 3.5s behind the API"},
			wantNotIn: []string{"without an order", "\n\n"},
		},
		{
			name:      "no stats, nothing produced, no poll yet",
			give:      ordersStatus{},
			want:      []string{"produced 0 |", "landed 0 orders, 0 lines (table total 0)", "cursor: no poll yet"},
			wantNotIn: []string{"storefront:", "\n"},
		},
		{
			name:      "warehouse down",
			give:      ordersStatus{warehouseE: errors.New("query: 503")},
			want:      []string{"warehouse: query: 503"},
			wantNotIn: []string{"landed"},
		},
		{
			name: "purchases not placed",
			give: ordersStatus{placer: &storefront.PlacerStats{Queued: 10, Placed: 7, Failed: 2, Dropped: 1}},
			want: []string{"\n      purchases without an order: 2 failed, 1 dropped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.give.lines()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("lines() = %q, want it to say %q", got, w)
				}
			}
			for _, w := range tt.wantNotIn {
				if strings.Contains(got, w) {
					t.Errorf("lines() = %q, want no %q", got, w)
				}
			}
		})
	}
}
