package warehouse

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The neutral checks are what a second backend calls instead of re-implementing them: these
// pin their answers without a store.
func TestValidateBatch(t *testing.T) {
	good := batch(row("t", 0, 3, "e1", t0))
	tests := []struct {
		name    string
		group   string
		give    func(b Batch) Batch
		wantErr error
		wantRow int // RowError index, -1 for none
	}{
		{name: "valid", group: testGroup, give: func(b Batch) Batch { return b }, wantRow: -1},
		{name: "no group", group: "", give: func(b Batch) Batch { return b }, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "negative position", group: testGroup, give: func(b Batch) Batch {
			b.Positions[Partition{"t", 1}] = -1
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "row not covered", group: testGroup, give: func(b Batch) Batch {
			b.Positions[Partition{"t", 0}] = 3
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "row without a position", group: testGroup, give: func(b Batch) Batch {
			b.Positions = map[Partition]int64{{"u", 0}: 9}
			return b
		}, wantErr: ErrInvalidBatch, wantRow: -1},
		{name: "bad row", group: testGroup, give: func(b Batch) Batch {
			b.Events[0].EventID = ""
			return b
		}, wantErr: ErrInvalidBatch, wantRow: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good
			b.Events = slices.Clone(good.Events)
			b.Positions = map[Partition]int64{{"t", 0}: 4}
			err := ValidateBatch(tt.group, tt.give(b))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var re *RowError
			if got := errors.As(err, &re); got != (tt.wantRow >= 0) || (got && re.Index != tt.wantRow) {
				t.Fatalf("RowError = %v, want index %d", re, tt.wantRow)
			}
		})
	}
}

func TestFreshRows(t *testing.T) {
	b := batch(row("t", 0, 5, "a", t0), row("t", 0, 6, "b", t0), row("t", 1, 0, "c", t0), row("u", 0, 2, "d", t0))
	tests := []struct {
		name      string
		stored    map[Partition]int64
		wantFresh []int
		wantStale int
	}{
		{name: "nothing stored", stored: nil, wantFresh: []int{0, 1, 2, 3}},
		{name: "replay below the stored offset", stored: map[Partition]int64{{"t", 0}: 6}, wantFresh: []int{1, 2, 3}, wantStale: 1},
		{name: "stored offset is the next one, not written", stored: map[Partition]int64{{"t", 1}: 0}, wantFresh: []int{0, 1, 2, 3}},
		{name: "all stale", stored: map[Partition]int64{{"t", 0}: 7, {"t", 1}: 1, {"u", 0}: 3}, wantStale: 4, wantFresh: []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fresh, stale := FreshRows(len(b.Events), EventAt(&b), tt.stored)
			if !slices.Equal(fresh, tt.wantFresh) || stale != tt.wantStale {
				t.Fatalf("FreshRows = %v, %d; want %v, %d", fresh, stale, tt.wantFresh, tt.wantStale)
			}
		})
	}
}

func TestCheckSameLog(t *testing.T) {
	p := Partition{"t", 0}
	tests := []struct {
		name     string
		stored   Position
		topicID  string
		cluster  string
		conflict bool
	}{
		{name: "same ids", stored: Position{Next: 4, TopicID: "A", ClusterID: "C"}, topicID: "A", cluster: "C"},
		{name: "unknown ids match", stored: Position{Next: 4}, topicID: "A", cluster: "C"},
		{name: "batch without ids", stored: Position{Next: 4, TopicID: "A", ClusterID: "C"}},
		{name: "recreated topic", stored: Position{Next: 4, TopicID: "A"}, topicID: "B", conflict: true},
		{name: "other cluster", stored: Position{Next: 4, ClusterID: "C"}, cluster: "D", conflict: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Batch{Positions: map[Partition]int64{p: 9}, ClusterID: tt.cluster, TopicIDs: map[string]string{"t": tt.topicID}}
			next, err := CheckSameLog(map[Partition]Position{p: tt.stored, {"other", 0}: {Next: 1, TopicID: "Z"}}, b)
			if tt.conflict {
				if !errors.Is(err, ErrPositionConflict) {
					t.Fatalf("err = %v, want ErrPositionConflict", err)
				}
				return
			}
			if err != nil || next[p] != 4 || next[Partition{"other", 0}] != 1 {
				t.Fatalf("CheckSameLog = %v, %v", next, err)
			}
		})
	}
}

func TestValidatePositions(t *testing.T) {
	tests := []struct {
		name    string
		group   string
		give    map[Partition]Position
		wantErr string
	}{
		{name: "valid", group: testGroup, give: map[Partition]Position{{"t", 0}: {Next: 0}}},
		{name: "no group", give: map[Partition]Position{{"t", 0}: {Next: 0}}, wantErr: "empty consumer group"},
		{name: "no topic", group: testGroup, give: map[Partition]Position{{"", 0}: {Next: 1}}, wantErr: "bad position"},
		{name: "negative partition", group: testGroup, give: map[Partition]Position{{"t", -1}: {Next: 1}}, wantErr: "bad position"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePositions(tt.group, tt.give)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidBatch)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSortedPartitions(t *testing.T) {
	got := SortedPartitions(map[Partition]int{{"b", 0}: 1, {"a", 10}: 1, {"a", 2}: 1})
	want := []Partition{{"a", 2}, {"a", 10}, {"b", 0}}
	if !slices.Equal(got, want) {
		t.Fatalf("SortedPartitions = %v, want %v", got, want)
	}
}

// A value BigQuery cannot store is a *RowError in ValidateBatch (so every backend dead-letters it)
// rather than an INVALID_ARGUMENT append that fails the batch forever: per entity, each timestamp
// column at both ends of the range, and the string bytes of a row.
func TestValidateBatchBigQueryLimits(t *testing.T) {
	before := MinTimestamp.Add(-time.Microsecond)
	after := MaxTimestamp
	last := MaxTimestamp.Add(-time.Microsecond)
	huge := strings.Repeat("x", MaxRowStringBytes+1)
	half := strings.Repeat("x", MaxRowStringBytes/2+1)
	fits := strings.Repeat("x", MaxRowStringBytes-1024)
	type edit struct {
		name     string
		event    func(r *EventRow)
		order    func(r *OrderRow)
		product  func(r *ProductRow)
		user     func(r *UserRow)
		wantBad  bool
		wantText string
	}
	tests := []edit{
		{name: "event as built", event: func(*EventRow) {}},
		{name: "event_timestamp before 0001", event: func(r *EventRow) { r.EventTimestamp = before }, wantBad: true, wantText: "event_timestamp"},
		{name: "event_timestamp after 9999", event: func(r *EventRow) { r.EventTimestamp = after }, wantBad: true, wantText: "event_timestamp"},
		{name: "event_timestamp at the ends", event: func(r *EventRow) { r.EventTimestamp, r.ReceivedAt = MinTimestamp, last }},
		{name: "received_at in another zone after 9999", event: func(r *EventRow) { r.ReceivedAt = after.In(time.FixedZone("x", 3600)) }, wantBad: true, wantText: "received_at"},
		{name: "event page_url too large", event: func(r *EventRow) { r.PageURL = huge }, wantBad: true, wantText: "string bytes"},
		{name: "event two strings together too large", event: func(r *EventRow) { r.PageURL, r.UserAgent = half, &half }, wantBad: true, wantText: "string bytes"},
		{name: "event just under the row limit", event: func(r *EventRow) { r.PageURL = fits }},

		{name: "order as built", order: func(*OrderRow) {}},
		{name: "order_timestamp after 9999", order: func(r *OrderRow) { r.OrderTimestamp = after }, wantBad: true, wantText: "order_timestamp"},
		{name: "updated_at before 0001", order: func(r *OrderRow) { r.UpdatedAt = before }, wantBad: true, wantText: "updated_at"},
		{name: "paid_at after 9999", order: func(r *OrderRow) { r.PaidAt = &after }, wantBad: true, wantText: "paid_at"},
		{name: "shipped_at after 9999", order: func(r *OrderRow) { r.ShippedAt = &after }, wantBad: true, wantText: "shipped_at"},
		{name: "delivered_at after 9999", order: func(r *OrderRow) { r.DeliveredAt = &after }, wantBad: true, wantText: "delivered_at"},
		{name: "cancelled_at before 0001", order: func(r *OrderRow) { r.CancelledAt = &before }, wantBad: true, wantText: "cancelled_at"},
		{name: "refunded_at after 9999", order: func(r *OrderRow) { r.RefundedAt = &after }, wantBad: true, wantText: "refunded_at"},
		{name: "order received_at after 9999", order: func(r *OrderRow) { r.ReceivedAt = &after }, wantBad: true, wantText: "received_at"},
		{name: "order timestamps at the ends", order: func(r *OrderRow) { r.PaidAt, r.RefundedAt = &MinTimestamp, &last }},
		{name: "order line strings too large", order: func(r *OrderRow) { r.Items[0].ProductID, r.Items[1].LineID = half, &half }, wantBad: true, wantText: "string bytes"},
		{name: "order webhook id too large", order: func(r *OrderRow) { r.WebhookDeliveryID = &huge }, wantBad: true, wantText: "string bytes"},

		{name: "product as built", product: func(*ProductRow) {}},
		{name: "product updated_at after 9999", product: func(r *ProductRow) { r.UpdatedAt = after }, wantBad: true, wantText: "updated_at"},
		{name: "product synced_at before 0001", product: func(r *ProductRow) { r.SyncedAt = before }, wantBad: true, wantText: "synced_at"},
		{name: "product changed_at after 9999", product: func(r *ProductRow) { r.ChangedAt = &after }, wantBad: true, wantText: "changed_at"},
		{name: "product deleted_at after 9999", product: func(r *ProductRow) { r.DeletedAt = &after }, wantBad: true, wantText: "deleted_at"},
		{name: "product name too large", product: func(r *ProductRow) { r.Name = huge }, wantBad: true, wantText: "string bytes"},

		{name: "user as built", user: func(*UserRow) {}},
		{name: "user created_at before 0001", user: func(r *UserRow) { r.CreatedAt = &before }, wantBad: true, wantText: "created_at"},
		{name: "user updated_at after 9999", user: func(r *UserRow) { r.UpdatedAt = after }, wantBad: true, wantText: "updated_at"},
		{name: "user synced_at after 9999", user: func(r *UserRow) { r.SyncedAt = after }, wantBad: true, wantText: "synced_at"},
		{name: "user changed_at before 0001", user: func(r *UserRow) { r.ChangedAt = &before }, wantBad: true, wantText: "changed_at"},
		{name: "user deleted_at after 9999", user: func(r *UserRow) { r.DeletedAt = &after }, wantBad: true, wantText: "deleted_at"},
		{name: "user country too large", user: func(r *UserRow) { r.Country = &huge }, wantBad: true, wantText: "string bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Batch
			var want Entity
			switch {
			case tt.event != nil:
				b, want = batch(row("t", 0, 0, "ok", t0), row("t", 0, 1, "e1", t0)), EntityEvent
				tt.event(&b.Events[1])
			case tt.order != nil:
				b, want = orderBatch(order(0, "ok", 1, 1), order(1, "o1", 1, 2)), EntityOrder
				tt.order(&b.Orders[1])
			case tt.product != nil:
				b = Batch{Products: []ProductRow{product(0, "ok", 1, 100), product(1, "p1", 1, 100)}, Positions: map[Partition]int64{{productsTopic, 0}: 2}}
				want = EntityProduct
				tt.product(&b.Products[1])
			default:
				b = Batch{Users: []UserRow{customer(0, "ok", 1, "a@x.test", "DE"), customer(1, "u1", 1, "b@x.test", "DE")}, Positions: map[Partition]int64{{customersTopic, 0}: 2}}
				want = EntityUser
				tt.user(&b.Users[1])
			}
			err := ValidateBatch(testGroup, b)
			if !tt.wantBad {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var re *RowError
			if !errors.As(err, &re) || re.Entity != want || re.Index != 1 || !strings.Contains(re.Reason, tt.wantText) {
				t.Fatalf("err = %v, want a RowError for %s row 1 naming %q", err, want, tt.wantText)
			}
		})
	}
}

// DuckDB could store these values, but refuses them as BigQuery must, so the row is dead-lettered
// by either backend and the prod layers stay equal; the batch without it then writes.
func TestDuckDBRefusesWhatBigQueryCannotStore(t *testing.T) {
	far := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		give   Batch
		entity Entity
	}{
		{"event in year 12000", func() Batch { b := batch(row("t", 0, 0, "ok", t0), row("t", 0, 1, "far", far)); return b }(), EntityEvent},
		{"order paid in year 12000", func() Batch {
			o := order(1, "o-far", 1, 1)
			o.PaidAt = &far
			return orderBatch(order(0, "o-ok", 1, 1), o)
		}(), EntityOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := openTest(t)
			_, err := d.Write(context.Background(), testGroup, tt.give)
			var re *RowError
			if !errors.As(err, &re) || re.Entity != tt.entity || re.Index != 1 || !strings.Contains(re.Reason, "outside the TIMESTAMP range") {
				t.Fatalf("err = %v, want a %s RowError for row 1", err, tt.entity)
			}
			b := tt.give
			b.Events, b.Orders = b.Events[:min(len(b.Events), 1)], b.Orders[:min(len(b.Orders), 1)]
			mustWrite(t, d, b)
		})
	}
}
