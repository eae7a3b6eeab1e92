package bqwh

import (
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"

	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// The raw tables bq-writer appends to.
const (
	TableEvents     = "fact_events"
	TableOrders     = "fact_orders"
	TableOrderItems = "fact_order_items"
	TableProducts   = "dim_products_changes"
	TableUsers      = "dim_users_changes"
)

// Tables lists the raw tables in the order Migrate checks them.
var Tables = []string{TableEvents, TableOrders, TableOrderItems, TableProducts, TableUsers}

// EntityTables are the raw tables each entity's rows go to: Claim opens a stream on every one
// of them for a partition carrying the entity, before the first row (an order's lines go to
// fact_order_items, so that stream is open and committed before the first order with lines).
var EntityTables = map[warehouse.Entity][]string{
	warehouse.EntityEvent:   {TableEvents},
	warehouse.EntityOrder:   {TableOrders, TableOrderItems},
	warehouse.EntityProduct: {TableProducts},
	warehouse.EntityUser:    {TableUsers},
}

// column is one column the writer fills.
type column struct {
	name string
	typ  storagepb.TableFieldSchema_Type
}

const (
	tString    = storagepb.TableFieldSchema_STRING
	tInt64     = storagepb.TableFieldSchema_INT64
	tBool      = storagepb.TableFieldSchema_BOOL
	tTimestamp = storagepb.TableFieldSchema_TIMESTAMP
	tDate      = storagepb.TableFieldSchema_DATE
)

func cols(typ storagepb.TableFieldSchema_Type, names ...string) []column {
	out := make([]column, len(names))
	for i, n := range names {
		out[i] = column{n, typ}
	}
	return out
}

func concat(parts ...[]column) []column {
	var out []column
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// writerColumns are the columns the writer fills, per raw table, in the order the row builders
// return values. A value is nil (NULL), a string, an int64, a bool or a time.Time (TIMESTAMP, or
// the UTC day for DATE).
var writerColumns = map[string][]column{
	TableEvents: concat(
		cols(tString, "event_id"), cols(tTimestamp, "event_timestamp"), cols(tDate, "event_date"), cols(tInt64, "date_key"),
		cols(tString, "event_type", "user_id", "anonymous_id", "session_id", "page_url", "referrer", "user_agent",
			"device_type", "os", "browser", "country", "region", "city", "product_id", "search_query"),
		cols(tInt64, "quantity", "price_minor"), cols(tString, "currency", "order_id", "source"),
		cols(tTimestamp, "received_at"), cols(tString, "trace_id", "source_topic"), cols(tInt64, "source_partition", "source_offset"),
		cols(tTimestamp, "loaded_at"), cols(tString, "client_ip", "collector_source", "dq_warnings"),
	),
	TableOrders: concat(
		cols(tString, "order_id"), cols(tInt64, "order_version"), cols(tString, "user_id", "status", "currency"),
		cols(tInt64, "subtotal_minor", "tax_minor", "shipping_minor", "discount_minor", "total_minor", "refunded_minor"),
		cols(tTimestamp, "order_timestamp"), cols(tDate, "order_date"), cols(tInt64, "date_key"),
		cols(tTimestamp, "updated_at", "paid_at", "shipped_at", "delivered_at", "cancelled_at", "refunded_at"),
		cols(tString, "shipping_country", "source"), cols(tTimestamp, "received_at"), cols(tString, "dq_warnings", "trace_id", "source_topic"),
		cols(tInt64, "source_partition", "source_offset"), cols(tTimestamp, "loaded_at"),
	),
	TableOrderItems: concat(
		cols(tString, "order_id"), cols(tInt64, "line_number"), cols(tString, "line_id", "product_id"),
		cols(tInt64, "quantity", "unit_price_minor", "line_total_minor", "order_version", "date_key"), cols(tTimestamp, "loaded_at"),
		cols(tString, "source_topic"), cols(tInt64, "source_partition", "source_offset"),
	),
	TableProducts: concat(
		cols(tString, "product_id"), cols(tInt64, "source_lsn", "source_ordinal"), cols(tString, "op", "sku", "name", "category", "brand"),
		cols(tInt64, "price_minor"), cols(tString, "currency"), cols(tBool, "is_active"),
		cols(tTimestamp, "deleted_at", "valid_from", "updated_at", "synced_at"), cols(tString, "source", "attr_hash", "source_topic"),
		cols(tInt64, "source_partition", "source_offset"), cols(tTimestamp, "loaded_at"), cols(tString, "product_key"),
	),
	TableUsers: concat(
		cols(tString, "user_id"), cols(tInt64, "source_lsn", "source_ordinal"), cols(tString, "op", "email_hash", "email_domain", "country"),
		cols(tBool, "is_active"), cols(tTimestamp, "created_at", "deleted_at", "valid_from", "updated_at", "synced_at"),
		cols(tString, "source", "attr_hash", "source_topic"), cols(tInt64, "source_partition", "source_offset"),
		cols(tTimestamp, "loaded_at"), cols(tString, "user_key"),
	),
}

func optS(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func optT(p *time.Time) any {
	if p == nil {
		return nil
	}
	return p.UTC()
}

func optI(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func emptyNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// day returns t's UTC day and its yyyymmdd key.
func day(t time.Time) (time.Time, int64) {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), int64(y*10000 + int(m)*100 + d)
}

func eventValues(r *warehouse.EventRow, loadedAt time.Time) []any {
	e := &r.ClickEvent
	d, key := day(e.EventTimestamp)
	var qty any
	if e.Quantity != nil {
		qty = int64(*e.Quantity)
	}
	return []any{
		e.EventID, e.EventTimestamp.UTC(), d, key,
		e.EventType, optS(e.UserID), optS(e.AnonymousID), e.SessionID, e.PageURL, optS(e.Referrer), optS(e.UserAgent),
		optS(e.DeviceType), optS(e.Os), optS(e.Browser), optS(e.Country), optS(e.Region), optS(e.City), optS(e.ProductID), optS(e.SearchQuery),
		qty, optI(e.PriceMinor), optS(e.Currency), optS(e.OrderID), e.Source,
		e.ReceivedAt.UTC(), emptyNull(r.TraceID), r.SourceTopic, int64(r.SourcePartition), r.SourceOffset,
		loadedAt, optS(e.ClientIP), optS(e.CollectorSource), emptyNull(r.DQWarnings),
	}
}

func orderValues(r *warehouse.OrderRow, loadedAt time.Time) []any {
	o := &r.Order
	d, key := day(o.OrderTimestamp)
	return []any{
		o.OrderID, o.OrderVersion, o.UserID, o.Status, o.Currency,
		o.SubtotalMinor, o.TaxMinor, o.ShippingMinor, o.DiscountMinor, o.TotalMinor, o.RefundedMinor,
		o.OrderTimestamp.UTC(), d, key,
		o.UpdatedAt.UTC(), optT(o.PaidAt), optT(o.ShippedAt), optT(o.DeliveredAt), optT(o.CancelledAt), optT(o.RefundedAt),
		optS(o.ShippingCountry), o.Source, optT(o.ReceivedAt), emptyNull(r.DQWarnings), emptyNull(r.TraceID), r.SourceTopic,
		int64(r.SourcePartition), r.SourceOffset, loadedAt,
	}
}

func itemValues(r *warehouse.OrderRow, n int, loadedAt time.Time) []any {
	it := &r.Items[n]
	_, key := day(r.OrderTimestamp)
	return []any{
		r.OrderID, int64(n), optS(it.LineID), it.ProductID,
		int64(it.Quantity), it.UnitPriceMinor, optI(it.LineTotalMinor), r.OrderVersion, key, loadedAt,
		r.SourceTopic, int64(r.SourcePartition), r.SourceOffset,
	}
}

func productValues(r *warehouse.ProductRow, loadedAt time.Time) []any {
	return []any{
		r.ProductID, r.SourceLsn, r.SourceOrdinal, r.Op, optS(r.Sku), r.Name, optS(r.Category), optS(r.Brand),
		r.PriceMinor, r.Currency, r.IsActive,
		optT(r.DeletedAt), r.ValidFrom(), r.UpdatedAt.UTC(), r.SyncedAt.UTC(), r.Source, emptyNull(r.AttrHash()), r.SourceTopic,
		int64(r.SourcePartition), r.SourceOffset, loadedAt,
		warehouse.SurrogateKey(r.ProductID, warehouse.Seq{LSN: r.SourceLsn, Ordinal: r.SourceOrdinal}),
	}
}

func userValues(r *warehouse.UserRow, loadedAt time.Time) []any {
	return []any{
		r.UserID, r.SourceLsn, r.SourceOrd, r.Op, optS(r.EmailHash), optS(r.EmailDomain), optS(r.Country),
		r.IsActive, optT(r.CreatedAt), optT(r.DeletedAt), r.ValidFrom(), r.UpdatedAt.UTC(), r.SyncedAt.UTC(),
		r.Source, emptyNull(r.AttrHash()), r.SourceTopic, int64(r.SourcePartition), r.SourceOffset,
		loadedAt, warehouse.SurrogateKey(r.UserID, warehouse.Seq{LSN: r.SourceLsn, Ordinal: r.SourceOrd}),
	}
}
