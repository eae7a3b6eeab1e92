package conformance

import (
	"time"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/bq-writer/internal/warehouse"
)

// The batch sequence both backends are fed. Every row carries its own Kafka coordinates (offsets
// grow per partition in the order records are built, as Kafka's do); a step's Positions cover its
// rows, and may move a partition without rows (its records were dead-lettered).

const (
	eventsTopic   = "ecom.events.valid.v1"
	ordersTopic   = "ecom.orders.valid.v1"
	productsTopic = "ecom.catalog.products.v1"
	usersTopic    = "ecom.catalog.customers.v1"
	group         = "conformance"
)

var (
	// T is the events' base time; D, an hour earlier, the dimension changes' (valid_from = D +
	// lsn minutes).
	T = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	D = T.Add(-time.Hour)
)

// step is one Write of the sequence, or a restart of the writers before it.
type step struct {
	name  string
	batch warehouse.Batch
	// rowErrors is how many rows of the batch Write refuses with a *warehouse.RowError; the
	// runner removes each, as the sink dead-letters it, and writes the rest.
	rowErrors int
	// restartBefore closes both writers and opens them again before this step; the BigQuery
	// writer then Claims with the kept Kafka commits.
	restartBefore bool
	// commitLost drops the Kafka commit of this step's Write (the writer died between the
	// appends and the commit): the next Claim finds the rows past the kept commit.
	commitLost bool
	// replay marks a batch written before, sent again: both backends drop it (below their
	// positions) and count it as stale.
	replay bool
}

type builder struct {
	next map[warehouse.Partition]int64
	b    warehouse.Batch
}

func ptr[V any](v V) *V { return &v }

func (f *builder) offset(topic string, part int32) int64 {
	p := warehouse.Partition{Topic: topic, Partition: part}
	o := f.next[p]
	f.next[p] = o + 1
	if f.b.Positions == nil {
		f.b.Positions = map[warehouse.Partition]int64{}
	}
	f.b.Positions[p] = o + 1
	return o
}

// skip consumes n offsets of a partition without a row (dead-lettered records).
func (f *builder) skip(topic string, part int32, n int) {
	for range n {
		f.offset(topic, part)
	}
}

// take returns the batch built so far and starts a new one.
func (f *builder) take() warehouse.Batch {
	b := f.b
	f.b = warehouse.Batch{}
	return b
}

func (f *builder) event(part int32, id string, ts time.Time, mods ...func(*warehouse.EventRow)) {
	r := warehouse.EventRow{ClickEvent: events.ClickEvent{
		EventID: id, EventTimestamp: ts, ReceivedAt: ts.Add(150 * time.Millisecond), EventType: "add_to_cart",
		UserID: ptr("u-base"), AnonymousID: ptr("anon-1"), SessionID: "sess-" + id, PageURL: "https://shop.example.com/p/1",
		Referrer: ptr("https://www.google.com/"), UserAgent: ptr("Mozilla/5.0"), DeviceType: ptr("desktop"), Os: ptr("Linux"),
		Browser: ptr("Chrome"), Country: ptr("DE"), Region: ptr("BE"), City: ptr("Berlin"), ProductID: ptr("sku-1"),
		Quantity: ptr(2), PriceMinor: ptr(int64(1999)), Currency: ptr("EUR"), Source: "kafka",
	}, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SourceTopic: eventsTopic, SourcePartition: part}
	for _, m := range mods {
		m(&r)
	}
	r.SourceOffset = f.offset(eventsTopic, part)
	f.b.Events = append(f.b.Events, r)
}

type line struct {
	product string
	qty     int
}

func (f *builder) order(part int32, id string, version int64, updated time.Time, lines ...line) {
	o := events.Order{OrderID: id, UserID: "u1", Status: "paid", OrderTimestamp: D.Add(25 * time.Minute), UpdatedAt: updated,
		Currency: "EUR", Source: "api", OrderVersion: version, ShippingCountry: ptr("DE"), PaidAt: ptr(updated),
		ReceivedAt: ptr(updated.Add(time.Second))}
	for _, l := range lines {
		o.Items = append(o.Items, events.OrderItem{ProductID: l.product, Quantity: l.qty, UnitPriceMinor: 500,
			LineID: ptr(l.product + "-line"), LineTotalMinor: ptr(int64(l.qty) * 500)})
		o.SubtotalMinor += int64(l.qty) * 500
	}
	o.TotalMinor = o.SubtotalMinor
	f.b.Orders = append(f.b.Orders, warehouse.OrderRow{Order: o, TraceID: "0af7651916cd43dd8448eb211c80319c",
		SourceTopic: ordersTopic, SourcePartition: part, SourceOffset: f.offset(ordersTopic, part)})
}

// product logs a change of product id at (lsn, ord); ord 0 is the snapshot's.
func (f *builder) product(id string, lsn, ord int64, op, name string, price int64) {
	at := D.Add(time.Duration(lsn) * time.Minute)
	source := "cdc"
	if ord == 0 {
		source = "snapshot"
	}
	c := events.ProductChange{ProductID: id, Op: op, Sku: ptr("sku-" + id), Name: name, Category: ptr("kitchen"), PriceMinor: price,
		Currency: "EUR", IsActive: true, UpdatedAt: at, SyncedAt: at.Add(time.Second), Source: source, SourceLsn: lsn,
		SourceOrdinal: ord, ChangedAt: ptr(at)}
	if op == warehouse.OpDelete {
		c.DeletedAt, c.IsActive = ptr(at), false
	}
	f.b.Products = append(f.b.Products, warehouse.ProductRow{ProductChange: c, SourceTopic: productsTopic, SourcePartition: 0,
		SourceOffset: f.offset(productsTopic, 0)})
}

func (f *builder) user(id string, lsn, ord int64, op, country string) {
	at := D.Add(time.Duration(lsn) * time.Minute)
	source := "cdc"
	if ord == 0 {
		source = "snapshot"
	}
	c := events.CustomerChange{CustomerID: id, Op: op, IsActive: op == warehouse.OpUpsert, CreatedAt: ptr(D), UpdatedAt: at,
		SyncedAt: at.Add(time.Second), Source: source, SourceLsn: lsn, SourceOrdinal: ord, ChangedAt: ptr(at)}
	if op == warehouse.OpUpsert {
		c.Email, c.Name, c.Country = ptr(id+"@Example.com "), ptr("Name "+id), ptr(country)
	} else {
		c.DeletedAt = ptr(at)
	}
	u := warehouse.NewUserRow(&c, []byte("conformance-key"))
	u.SourceTopic, u.SourcePartition, u.SourceOffset = usersTopic, 0, f.offset(usersTopic, 0)
	f.b.Users = append(f.b.Users, u)
}

// sequence returns the steps in order.
func sequence() []step {
	f := &builder{next: map[warehouse.Partition]int64{}}
	var steps []step

	// Events: copies of one event_id within the dedup window (a minute) and days beyond it, on
	// both partitions, differing in one column at a time. Orders: o1's versions out of order.
	// Dimensions: a snapshot, changes.
	f.event(0, "e01", T)
	f.event(1, "e01", T.Add(30*time.Second)) // within the window
	f.event(0, "e02", T, func(r *warehouse.EventRow) { r.ReceivedAt = T.Add(2 * time.Second) })
	f.event(1, "e02", T, func(r *warehouse.EventRow) { r.ReceivedAt = T.Add(time.Second) })
	f.event(0, "e03", T, func(r *warehouse.EventRow) { r.UserID = ptr("u-1") })
	f.event(1, "e03", T, func(r *warehouse.EventRow) { r.UserID = nil })
	f.order(0, "o1", 1, T, line{"p1", 1}, line{"p2", 1})
	f.product("p1", 10, 1, warehouse.OpUpsert, "Mug", 100)
	f.product("p2", 10, 1, warehouse.OpUpsert, "Cup", 100)
	f.product("p4", 100, 0, warehouse.OpUpsert, "Pot", 300) // snapshot
	f.user("u1", 10, 1, warehouse.OpUpsert, "DE")
	f.user("u2", 5, 0, warehouse.OpUpsert, "PL") // snapshot
	steps = append(steps, step{name: "first", batch: f.take()})

	f.event(0, "e01", T.Add(48*time.Hour)) // days later, beyond the window
	f.event(0, "e04", T, func(r *warehouse.EventRow) { r.City = ptr("Zürich") })
	f.event(1, "e04", T, func(r *warehouse.EventRow) { r.City = ptr("Zurich") })
	f.event(1, "e09", T) // two copies equal in every business column
	f.event(0, "e09", T)
	f.event(0, "e05", T, func(r *warehouse.EventRow) { r.PageURL = "https://shop.example.com/a" })
	f.event(1, "e05", T, func(r *warehouse.EventRow) { r.PageURL = "https://shop.example.com/B" })
	f.order(0, "o1", 3, T.Add(3*time.Minute), line{"p1", 4})
	f.order(1, "o1", 2, T.Add(2*time.Minute), line{"p1", 2}, line{"p2", 2}, line{"p3", 2}) // older, arrives later
	f.order(1, "o2", 2, T, line{"p1", 1})
	f.product("p1", 20, 1, warehouse.OpUpsert, "Mug", 120)
	f.product("p1", 30, 1, warehouse.OpUpsert, "Mug", 120)  // no-op
	f.product("p1", 15, 1, warehouse.OpUpsert, "Mug", 110)  // late
	f.product("p4", 100, 1, warehouse.OpUpsert, "Pot", 300) // CDC at the snapshot's LSN: no-op
	f.user("u1", 20, 1, warehouse.OpUpsert, "FR")
	f.user("u2", 5, 1, warehouse.OpUpsert, "PL") // CDC at the snapshot's LSN
	second := f.take()
	steps = append(steps, step{name: "second", batch: second})

	// A row Write refuses (no event_id), removed by the caller; a partition whose records were
	// all dead-lettered; the same order version again from a lower partition (a tie).
	f.event(0, "e06", T, func(r *warehouse.EventRow) { r.Quantity = ptr(2) })
	f.event(0, "", T)
	f.event(1, "e06", T, func(r *warehouse.EventRow) { r.Quantity = nil })
	f.event(0, "e07", T, func(r *warehouse.EventRow) { r.TraceID = "" })
	f.event(1, "e07", T, func(r *warehouse.EventRow) { r.TraceID = "ffff" })
	f.order(0, "o2", 2, T, line{"p1", 1}) // same version as o2 on partition 1: a tie
	f.order(0, "o3", 1, T, line{"p2", 1})
	f.product("p1", 40, 1, warehouse.OpDelete, "Mug", 120)
	f.product("p4", 100, 2, warehouse.OpUpsert, "Pot", 350)
	f.user("u1", 40, 1, warehouse.OpDelete, "")
	f.skip(ordersTopic, 1, 2) // a partition the batch has no row of
	f.skip(eventsTopic, 2, 3) // and one no batch ever has a row of
	steps = append(steps, step{name: "a refused row", batch: f.take(), rowErrors: 1})

	// Written, but its Kafka commit is lost; the writers restart and the consumer reads it again
	// from the kept commit.
	f.event(0, "e08", T, func(r *warehouse.EventRow) { r.DQWarnings = "click.commerce_fields" })
	f.event(1, "e08", T)
	f.event(1, "e12", T.Add(240*time.Hour))
	f.order(1, "o3", 1, T.Add(time.Second), line{"p2", 5})
	f.product("p1", 50, 1, warehouse.OpUpsert, "Mug", 120) // re-created equal to the version the delete ended
	f.user("u1", 30, 1, warehouse.OpUpsert, "FR")          // late no-op
	lost := f.take()
	steps = append(steps, step{name: "commit lost", batch: lost, commitLost: true})
	steps = append(steps, step{name: "read again after the restart", batch: lost, restartBefore: true})

	// More of everything after the restart, then a replay of an already written batch.
	f.event(0, "e12", T.Add(24*time.Hour))
	f.event(0, "e13", T, func(r *warehouse.EventRow) { r.EventType = "page_view" })
	f.event(1, "e13", T)
	f.event(0, "e14", T, func(r *warehouse.EventRow) { r.PriceMinor = ptr(int64(100)) })
	f.event(1, "e14", T, func(r *warehouse.EventRow) { r.PriceMinor = ptr(int64(99)) })
	f.event(0, "e15", T, func(r *warehouse.EventRow) { r.ClientIP = ptr("192.0.2.0"); r.Source = "http" })
	f.event(1, "e15", T, func(r *warehouse.EventRow) { r.CollectorSource = ptr("web"); r.Source = "http" })
	for _, ev := range []struct {
		id      string
		minutes int
	}{{"e20", 12}, {"e21", 17}, {"e22", 45}, {"e23", 55}, {"e24", 5}, {"e25", 105}} {
		f.event(0, ev.id, D.Add(time.Duration(ev.minutes)*time.Minute), func(r *warehouse.EventRow) {
			r.ProductID, r.UserID = ptr("p1"), ptr("u1")
		})
	}
	f.event(1, "e26", D.Add(103*time.Minute), func(r *warehouse.EventRow) { r.ProductID, r.UserID = ptr("p4"), ptr("u2") })
	f.order(0, "o4", 1, T, line{"p3", 1}, line{"p4", 1})
	f.order(1, "o1", 3, T.Add(3*time.Minute), line{"p1", 4}) // o1's latest again, from a higher partition
	f.product("p2", 30, 1, warehouse.OpUpsert, "Cup", 100)
	f.product("p2", 20, 1, warehouse.OpUpsert, "Cup", 200) // late: x, y, x
	f.product("p3", 5, 1, warehouse.OpDelete, "Pan", 900)  // a delete with nothing in force
	f.product("p3", 6, 1, warehouse.OpUpsert, "Pan", 900)
	f.product("p4", 100, 1, warehouse.OpUpsert, "Pot", 300) // read twice (another offset)
	f.user("u3", 7, 1, warehouse.OpUpsert, "IT")
	steps = append(steps, step{name: "after the restart", batch: f.take()})
	steps = append(steps, step{name: "replay of the second", batch: second, replay: true})
	return steps
}
