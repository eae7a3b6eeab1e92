package warehouse

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
)

// up and del build changes at LSN lsn (ordinal ord), valid from t0+lsn minutes.
func up(lsn, ord int64, hash string) DimChange {
	return DimChange{Seq: Seq{lsn, ord}, ValidFrom: t0.Add(time.Duration(lsn) * time.Minute), AttrHash: hash}
}

func del(lsn, ord int64) DimChange {
	return DimChange{Seq: Seq{lsn, ord}, ValidFrom: t0.Add(time.Duration(lsn) * time.Minute), Delete: true}
}

// show renders versions as "hash@from-to[*][D]" with minutes after t0 (to empty = open; * current,
// D deleted).
func show(vs []DimVersion) string {
	var parts []string
	for _, v := range vs {
		to := "" // open
		if !v.ValidTo.IsZero() {
			to = fmt.Sprint(int(v.ValidTo.Sub(t0).Minutes()))
		}
		s := fmt.Sprintf("%s@%d-%s", v.AttrHash, int(v.ValidFrom.Sub(t0).Minutes()), to)
		if v.IsCurrent {
			s += "*"
		}
		if v.Deleted {
			s += "D"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestHistory(t *testing.T) {
	tests := []struct {
		name string
		// batches arrive in this order; History sees the log after each (all of them so far).
		batches [][]DimChange
		want    string
	}{
		{name: "in order", batches: [][]DimChange{{up(1, 1, "a")}, {up(2, 1, "b")}, {up(3, 1, "c")}}, want: "a@1-2 b@2-3 c@3-*"},
		{name: "out of order", batches: [][]DimChange{{up(3, 1, "c")}, {up(1, 1, "a")}, {up(2, 1, "b")}}, want: "a@1-2 b@2-3 c@3-*"},
		{name: "duplicate", batches: [][]DimChange{{up(1, 1, "a")}, {up(2, 1, "b")}, {up(2, 1, "b"), up(1, 1, "a")}}, want: "a@1-2 b@2-*"},
		{name: "no-op change", batches: [][]DimChange{{up(1, 1, "a")}, {up(2, 1, "a")}}, want: "a@1-*"},
		{name: "a no-op made a version by a late change before it", batches: [][]DimChange{{up(1, 1, "a")}, {up(3, 1, "a")}, {up(2, 1, "b")}},
			want: "a@1-2 b@2-3 a@3-*"},
		{name: "delete", batches: [][]DimChange{{up(1, 1, "a")}, {del(2, 1)}}, want: "a@1-2D"},
		{name: "delete then re-create", batches: [][]DimChange{{up(1, 1, "a")}, {del(2, 1)}, {up(3, 1, "a")}}, want: "a@1-2D a@3-*"},
		{name: "late delete", batches: [][]DimChange{{up(1, 1, "a")}, {up(3, 1, "b")}, {del(2, 1)}}, want: "a@1-2D b@3-*"},
		{name: "delete arriving before the upsert it ends", batches: [][]DimChange{{del(2, 1)}, {up(1, 1, "a")}}, want: "a@1-2D"},
		{name: "delete of nothing", batches: [][]DimChange{{del(1, 1)}}, want: ""},
		{name: "two deletes", batches: [][]DimChange{{up(1, 1, "a"), del(2, 1), del(3, 1)}}, want: "a@1-2D"},
		{name: "two changes in one batch", batches: [][]DimChange{{up(2, 1, "b"), up(1, 1, "a")}}, want: "a@1-2 b@2-*"},
		{name: "two changes in one transaction", batches: [][]DimChange{{up(1, 2, "b"), up(1, 1, "a")}}, want: "a@1-1 b@1-*"},
		{name: "snapshot ties with CDC at one LSN: CDC wins", batches: [][]DimChange{{up(5, 1, "cdc")}, {up(5, 0, "snap")}}, want: "snap@5-5 cdc@5-*"},
		{name: "snapshot equal to the CDC state", batches: [][]DimChange{{up(5, 1, "a")}, {up(5, 0, "a")}}, want: "a@5-*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []DimChange
			var got []DimVersion
			for _, b := range tt.batches {
				log = append(log, b...)
				got = History(log)
			}
			if s := show(got); s != tt.want {
				t.Fatalf("history = %q, want %q", s, tt.want)
			}
		})
	}
}

// Every arrival order of the same changes gives the same history, one change per batch.
func TestHistoryPermutations(t *testing.T) {
	sets := [][]DimChange{
		{up(1, 1, "a"), up(2, 1, "b"), up(3, 1, "c")},
		{up(1, 1, "a"), up(2, 1, "b"), up(3, 1, "a")},
		{up(1, 1, "a"), del(2, 1), up(3, 1, "a")},
		{up(1, 1, "a"), up(1, 0, "s"), del(3, 1)},
	}
	for _, set := range sets {
		want := show(History(set))
		for _, p := range permutations(len(set)) {
			var log []DimChange
			for _, i := range p {
				log = append(log, set[i])
			}
			if got := show(History(log)); got != want {
				t.Errorf("order %v: %q, want %q", p, got, want)
			}
		}
	}
}

func TestSurrogateKey(t *testing.T) {
	k := SurrogateKey("p-00042", Seq{1234, 2})
	if len(k) != 16 || k != SurrogateKey("p-00042", Seq{1234, 2}) {
		t.Fatalf("key %q is not 16 stable hex digits", k)
	}
	for _, other := range []string{SurrogateKey("p-00042", Seq{1234, 1}), SurrogateKey("p-00043", Seq{1234, 2}), SurrogateKey("p-0004", Seq{21234, 2})} {
		if other == k {
			t.Errorf("collision with %q", other)
		}
	}
}

func TestAttrHashTracksOnlyTrackedAttributes(t *testing.T) {
	base := ProductRow{ProductChange: events.ProductChange{ProductID: "p-1", Op: OpUpsert, Sku: ptr("SKU-1"), Name: "Mug",
		Category: ptr("kitchen"), Brand: ptr("Acme"), PriceMinor: 999, Currency: "EUR", IsActive: true, UpdatedAt: t0, SyncedAt: t0, Source: "cdc"}}
	tests := []struct {
		name    string
		change  func(r *ProductRow)
		changed bool
	}{
		{"updated_at", func(r *ProductRow) { r.UpdatedAt = t0.Add(time.Hour) }, false},
		{"synced_at and source", func(r *ProductRow) { r.SyncedAt = t0.Add(time.Hour); r.Source = "snapshot" }, false},
		{"price", func(r *ProductRow) { r.PriceMinor = 899 }, true},
		{"name", func(r *ProductRow) { r.Name = "Cup" }, true},
		{"brand null", func(r *ProductRow) { r.Brand = nil }, true},
		{"brand empty", func(r *ProductRow) { r.Brand = ptr("") }, true},
		{"is_active", func(r *ProductRow) { r.IsActive = false }, true},
		{"sku", func(r *ProductRow) { r.Sku = ptr("SKU-2") }, true},
		{"category", func(r *ProductRow) { r.Category = ptr("garden") }, true},
		{"currency", func(r *ProductRow) { r.Currency = "USD" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.change(&r)
			if got := r.AttrHash() != base.AttrHash(); got != tt.changed {
				t.Fatalf("hash changed = %v, want %v", got, tt.changed)
			}
		})
	}
}

func TestNewUserRowKeepsNoEmail(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	c := events.CustomerChange{CustomerID: "u-000042", Op: OpUpsert, Email: ptr("  Jane.Doe@Example.COM "), Name: ptr("Jane Doe"),
		Country: ptr("DE"), IsActive: true, UpdatedAt: t0}
	u := NewUserRow(&c, key)
	// HMAC-SHA256(key, "jane.doe@example.com"), computed independently with openssl.
	const want = "3df35d89db698ff001ad76feea7c7835e8e88189dfaaf76cd9005ce0500105cf"
	if u.EmailHash == nil || *u.EmailHash != want {
		t.Fatalf("hash %v, want %s", u.EmailHash, want)
	}
	if u.EmailDomain == nil || *u.EmailDomain != "example.com" {
		t.Fatalf("domain %v", u.EmailDomain)
	}
	s := fmt.Sprintf("%+v", u)
	if strings.Contains(strings.ToLower(s), "jane") {
		t.Fatalf("the row holds the email or name: %s", s)
	}
	if other := NewUserRow(&c, []byte("another key of thirty-two bytes!")); *other.EmailHash == *u.EmailHash {
		t.Fatal("the hash does not depend on the key")
	}
	d := NewUserRow(&events.CustomerChange{CustomerID: "u-1", Op: OpDelete, UpdatedAt: t0}, key)
	if d.EmailHash != nil || d.EmailDomain != nil || d.AttrHash() != "" {
		t.Fatalf("delete row %+v", d)
	}
}
