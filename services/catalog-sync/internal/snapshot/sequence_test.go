package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// TestSequenceRule: a snapshot taken at LSN 100 (sequence (100, 0)) while
// CDC commits writes a state entry only where its view is newer than the
// entry's: it never overwrites a CDC change committed after it, never
// deletes a row CDC inserted after it, never re-sends a row CDC deleted
// after it, and removes a deleted marker it is newer than.
func TestSequenceRule(t *testing.T) {
	snap := state.Seq{LSN: 100}
	row := product("p-1", "Mug", 900)
	other := product("p-1", "Mug (new)", 950)
	entry := func(r Row, lsn int64, ord int, deleted bool) state.Entry {
		return state.Entry{Hash: r.Hash, UpdatedAt: r.UpdatedAt, Seq: state.Seq{LSN: lsn, Ordinal: ord}, Deleted: deleted}
	}
	tests := []struct {
		name     string
		entry    *state.Entry
		inTable  bool // the snapshot sees the row (as row)
		full     bool
		wantOp   string // "" = nothing
		upsertOf *Row
	}{
		{name: "new row", inTable: true, wantOp: OpUpsert},
		{name: "unchanged since the last snapshot", entry: ptr(entry(row, 50, 0, false)), inTable: true},
		{name: "changed since an older CDC change", entry: ptr(entry(other, 90, 2, false)), inTable: true, wantOp: OpUpsert},
		{name: "CDC changed it after the snapshot was taken", entry: ptr(entry(other, 120, 1, false)), inTable: true},
		{name: "older LSN but a newer CDC updated_at: the snapshot missed it", entry: ptr(state.Entry{Hash: other.Hash,
			UpdatedAt: row.UpdatedAt.Add(time.Millisecond), Seq: state.Seq{LSN: 99, Ordinal: 1}}), inTable: true},
		{name: "older snapshot entry with a newer updated_at does not block", entry: ptr(state.Entry{Hash: other.Hash,
			UpdatedAt: row.UpdatedAt.Add(time.Millisecond), Seq: state.Seq{LSN: 99}}), inTable: true, wantOp: OpUpsert},
		{name: "the last snapshot at the same LSN (no WAL between)", entry: ptr(entry(other, 100, 0, false)), inTable: true, wantOp: OpUpsert},
		{name: "CDC at the snapshot's LSN wins the tie", entry: ptr(entry(other, 100, 1, false)), inTable: true},
		{name: "backfill still skips a newer CDC entry", entry: ptr(entry(other, 120, 1, false)), inTable: true, full: true},
		{name: "backfill re-sends an older one", entry: ptr(entry(row, 50, 0, false)), inTable: true, full: true, wantOp: OpUpsert},
		{name: "CDC deleted it after the snapshot was taken", entry: ptr(entry(Row{}, 130, 1, true)), inTable: true},
		{name: "re-created after an older CDC delete", entry: ptr(entry(Row{}, 60, 1, true)), inTable: true, wantOp: OpUpsert},
		{name: "gone, sent before", entry: ptr(entry(row, 50, 0, false)), wantOp: OpDelete},
		{name: "CDC inserted it after the snapshot was taken", entry: ptr(entry(row, 140, 3, false))},
		{name: "CDC delete confirmed by a newer snapshot", entry: ptr(entry(Row{}, 60, 1, true)), wantOp: OpForget},
		{name: "CDC delete newer than the snapshot", entry: ptr(entry(Row{}, 160, 1, true))},
	}
	for _, tt := range tests {
		st := map[string]state.Entry{}
		if tt.entry != nil {
			st["p-1"] = *tt.entry
		}
		var got []Change
		if tt.inTable {
			got = Upserts([]Row{row}, st, tt.full, snap)
		} else {
			got = Deletes([]string{"p-1"}, map[string]bool{}, st, snap)
		}
		var op string
		if len(got) == 1 {
			op = got[0].Op
		}
		if len(got) > 1 || op != tt.wantOp {
			t.Errorf("%s: changes %+v, want op %q", tt.name, got, tt.wantOp)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestRowOf: the one row mapping both paths use (snapshot: pgx values;
// CDC: cdc.Value.Any) and its stamping as a snapshot and as a CDC record.
func TestRowOf(t *testing.T) {
	upd := time.Date(2026, 11, 30, 10, 0, 0, 0, time.FixedZone("x", 3600))
	del := upd.Add(time.Hour)
	commit := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		table   *Table
		vals    []any
		meta    Meta
		want    any
		wantErr string
	}{
		{name: "product, snapshot", table: productsTable,
			vals: []any{"p-1", "SKU-1", "Mug", "kitchen", nil, int64(900), "EUR", false, del, upd},
			meta: Meta{Source: SourceSnapshot, LSN: 77},
			want: &events.ProductChange{ProductID: "p-1", Op: OpUpsert, Sku: ptr("SKU-1"), Name: "Mug", Category: ptr("kitchen"),
				PriceMinor: 900, Currency: "EUR", IsActive: false, DeletedAt: ptr(del.UTC()), UpdatedAt: upd.UTC(),
				Source: SourceSnapshot, SourceLsn: 77, ChangedAt: ptr(upd.UTC())}},
		{name: "product, cdc", table: productsTable,
			vals: []any{"p-1", "SKU-1", "", nil, "Acme", int64(-5), "EUR", true, nil, upd},
			meta: Meta{Source: SourceCDC, LSN: 88, Ordinal: 3, ChangedAt: &commit},
			want: &events.ProductChange{ProductID: "p-1", Op: OpUpsert, Sku: ptr("SKU-1"), Brand: ptr("Acme"), PriceMinor: -5,
				Currency: "EUR", IsActive: true, UpdatedAt: upd.UTC(), Source: SourceCDC, SourceLsn: 88, SourceOrdinal: 3, ChangedAt: &commit}},
		{name: "customer, cdc", table: customersTable,
			vals: []any{"u-1", "a@example.com", "Ann", "DE", true, nil, upd, upd},
			meta: Meta{Source: SourceCDC, LSN: 88, Ordinal: 1, ChangedAt: &commit},
			want: &events.CustomerChange{CustomerID: "u-1", Op: OpUpsert, Email: ptr("a@example.com"), Name: ptr("Ann"), Country: ptr("DE"),
				IsActive: true, CreatedAt: ptr(upd.UTC()), UpdatedAt: upd.UTC(), Source: SourceCDC, SourceLsn: 88, SourceOrdinal: 1, ChangedAt: &commit}},
		{name: "wrong type", table: productsTable,
			vals:    []any{"p-1", "SKU-1", "Mug", nil, nil, "900", "EUR", true, nil, upd},
			wantErr: "products.price_minor: want bigint, got string"},
		{name: "NULL in a NOT NULL column", table: customersTable,
			vals:    []any{"u-1", nil, "Ann", "DE", true, nil, upd, upd},
			wantErr: "customers.email: want text"},
		{name: "too few values", table: customersTable, vals: []any{"u-1"}, wantErr: "1 values for 8 columns"},
	}
	for _, tt := range tests {
		r, err := tt.table.RowOf(tt.vals)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := tt.table.Record(Change{Key: r.Key, Op: OpUpsert, Row: &r}, tt.meta)
		if a, b := mustJSON(t, got), mustJSON(t, tt.want); a != b {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, a, b)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := jsonCodec{}.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recheckSource is a fakeSource that also answers ExistingNow.
type recheckSource struct {
	fakeSource
	now   map[string]bool
	asked []string
}

func (s *recheckSource) Begin(context.Context) (Tx, error) { return &fakeTx{s: &s.fakeSource}, nil }

func (s *recheckSource) ExistingNow(_ context.Context, _ *Table, keys []string) (map[string]bool, error) {
	s.asked = append(s.asked, keys...)
	out := map[string]bool{}
	for _, k := range keys {
		out[k] = s.now[k]
	}
	return out, nil
}

// TestRecheckBeforeDelete: a key the snapshot does not see, whose entry
// CDC wrote at an LSN before the snapshot's (a transaction the snapshot
// missed), is deleted only if it is not a row now either; entries a
// snapshot wrote are not rechecked.
func TestRecheckBeforeDelete(t *testing.T) {
	tests := []struct {
		name       string
		entry      state.Entry
		rowNow     bool
		wantDelete bool
		wantAsked  bool
	}{
		{name: "CDC insert the snapshot missed", entry: state.Entry{Seq: state.Seq{LSN: 90, Ordinal: 1}}, rowNow: true, wantAsked: true},
		{name: "CDC row gone now too", entry: state.Entry{Seq: state.Seq{LSN: 90, Ordinal: 1}}, wantDelete: true, wantAsked: true},
		{name: "snapshot entry", entry: state.Entry{Seq: state.Seq{LSN: 90}}, rowNow: true, wantDelete: true},
	}
	for _, tt := range tests {
		st := state.New()
		st.Table(Products)["p-9"] = tt.entry
		src := &recheckSource{fakeSource: fakeSource{rows: map[string][]Row{Products: {product("p-1", "Mug", 900)}}, lsn: 100},
			now: map[string]bool{"p-9": tt.rowNow}}
		rec := &recorder{}
		r := newRunner(src, st, rec, 10)
		if err := r.Run(context.Background(), Start("r", "test", []string{Products}, false, readAt)); err != nil {
			t.Fatal(err)
		}
		deleted := false
		for _, txn := range rec.txns {
			for _, rc := range txn {
				if rc.Topic == "products-topic" && string(rc.Key) == "p-9" {
					deleted = true
				}
			}
		}
		if deleted != tt.wantDelete || (len(src.asked) > 0) != tt.wantAsked {
			t.Errorf("%s: deleted %v (want %v), rechecked %v", tt.name, deleted, tt.wantDelete, src.asked)
		}
	}
}
