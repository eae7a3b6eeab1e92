package cdc

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgtype"
)

const (
	relProducts  = 16401
	relCustomers = 16402
)

var (
	commitAt = time.Date(2026, 12, 1, 13, 4, 5, 123456000, time.UTC)
	products = msgRelation(relProducts, "sf", "products",
		relCol{"product_id", pgtype.TextOID, true}, relCol{"name", pgtype.TextOID, true},
		relCol{"price_minor", pgtype.Int8OID, true}, relCol{"is_active", pgtype.BoolOID, true},
		relCol{"deleted_at", pgtype.TimestamptzOID, true})
	customers = msgRelation(relCustomers, "sf", "customers",
		relCol{"customer_id", pgtype.TextOID, true}, relCol{"country", pgtype.TextOID, false})
)

func productRow(id, name, price, active string, deleted *string) Row {
	r := Row{
		"product_id":  {Type: pgtype.TextOID, Text: id},
		"name":        {Type: pgtype.TextOID, Text: name},
		"price_minor": {Type: pgtype.Int8OID, Text: price},
		"is_active":   {Type: pgtype.BoolOID, Text: active},
		"deleted_at":  {Type: pgtype.TimestamptzOID, Null: true},
	}
	if deleted != nil {
		r["deleted_at"] = Value{Type: pgtype.TimestamptzOID, Text: *deleted}
	}
	return r
}

func TestDecode(t *testing.T) {
	long := strings.Repeat("x", 5000)
	del := "2026-12-01 13:04:05.123456+00"
	change := func(ord int, table string, op Op, row Row) Change {
		return Change{Table: table, Op: op, Row: row, LSN: 0x16B3748, Ordinal: ord, CommitTime: commitAt, Xid: 771}
	}
	tests := []struct {
		name       string
		give       [][]byte
		keys       map[string][]string // primary keys, as Run reads them
		want       []Tx
		wantToast  int
		wantErr    error
		wantErrSub string
	}{
		{
			name: "insert, update, delete in one transaction: ordinals from 1, commit LSN and time from BEGIN",
			give: [][]byte{
				products, customers,
				msgBegin(0x16B3748, commitAt, 771),
				msgInsert(relProducts, txt("p-1"), txt("Mug"), txt("1299"), txt("t"), null),
				msgUpdate(relProducts,
					[]col{txt("p-1"), txt("Mug"), txt("1299"), txt("t"), null},
					[]col{txt("p-1"), txt("Mug"), txt("999"), txt("f"), txt(del)}),
				msgInsert(relCustomers, txt("u-1"), txt("DE")),
				msgDelete(relProducts, 'O', txt("p-2"), txt("Pen"), txt("-5"), txt("t"), null),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{
					change(1, "sf.products", OpUpsert, productRow("p-1", "Mug", "1299", "t", nil)),
					change(2, "sf.products", OpUpsert, productRow("p-1", "Mug", "999", "f", &del)),
					change(3, "sf.customers", OpUpsert, Row{"customer_id": {Type: pgtype.TextOID, Text: "u-1"}, "country": {Type: pgtype.TextOID, Text: "DE"}}),
					change(4, "sf.products", OpDelete, productRow("p-2", "Pen", "-5", "t", nil)),
				},
			}},
		},
		{
			name: "unchanged TOASTed value filled from the FULL old tuple",
			give: [][]byte{
				products,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdate(relProducts,
					[]col{txt("p-1"), txt(long), txt("1299"), txt("t"), null},
					[]col{txt("p-1"), toasted, txt("999"), txt("t"), null}),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{change(1, "sf.products", OpUpsert, productRow("p-1", long, "999", "t", nil))},
			}},
			wantToast: 1,
		},
		{
			name: "unchanged TOASTed value without an old tuple stops the stream",
			give: [][]byte{
				products,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdate(relProducts, nil, []col{txt("p-1"), toasted, txt("999"), txt("t"), null}),
			},
			wantErr: ErrUnchangedToast,
		},
		{
			name: "unchanged TOASTed value with a key-only old tuple ('K') stops the stream instead of writing NULL",
			give: [][]byte{
				customers,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdateKind(relCustomers, 'K', []col{txt("u-1"), null}, []col{txt("u-2"), toasted}),
			},
			wantErr: ErrUnchangedToast,
		},
		{
			name: "key-changing update with a key-only old tuple: delete of the old key, then the upsert",
			give: [][]byte{
				customers,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdateKind(relCustomers, 'K', []col{txt("u-1"), null}, []col{txt("u-2"), txt("FR")}),
				msgInsert(relCustomers, txt("u-3"), txt("DE")),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{
					change(1, "sf.customers", OpDelete, Row{"customer_id": {Type: pgtype.TextOID, Text: "u-1"}, "country": {Type: pgtype.TextOID, Null: true}}),
					change(2, "sf.customers", OpUpsert, Row{"customer_id": {Type: pgtype.TextOID, Text: "u-2"}, "country": {Type: pgtype.TextOID, Text: "FR"}}),
					change(3, "sf.customers", OpUpsert, Row{"customer_id": {Type: pgtype.TextOID, Text: "u-3"}, "country": {Type: pgtype.TextOID, Text: "DE"}}),
				},
			}},
		},
		{
			name: "key-changing update with the full old row (FULL, primary key known): delete of the old row, then the filled upsert",
			keys: map[string][]string{"sf.products": {"product_id"}},
			give: [][]byte{
				products,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdate(relProducts,
					[]col{txt("p-1"), txt(long), txt("1299"), txt("t"), null},
					[]col{txt("p-9"), toasted, txt("999"), txt("t"), null}),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{
					change(1, "sf.products", OpDelete, productRow("p-1", long, "1299", "t", nil)),
					change(2, "sf.products", OpUpsert, productRow("p-9", long, "999", "t", nil)),
				},
			}},
			wantToast: 1,
		},
		{
			name: "update keeping the key with the full old row (FULL, primary key known): the upsert only",
			keys: map[string][]string{"sf.products": {"product_id"}},
			give: [][]byte{
				products,
				msgBegin(0x16B3748, commitAt, 771),
				msgUpdate(relProducts,
					[]col{txt("p-1"), txt("Mug"), txt("1299"), txt("t"), null},
					[]col{txt("p-1"), txt("Cup"), txt("999"), txt("f"), null}),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{change(1, "sf.products", OpUpsert, productRow("p-1", "Cup", "999", "f", nil))},
			}},
		},
		{
			name: "delete with a key-only old tuple (identity DEFAULT) carries the key, the rest NULL",
			give: [][]byte{
				customers,
				msgBegin(0x16B3748, commitAt, 771),
				msgDelete(relCustomers, 'K', txt("u-9"), null),
				msgCommit(0x16B3748, 0x16B3780, commitAt),
			},
			want: []Tx{{
				Xid: 771, CommitLSN: 0x16B3748, EndLSN: 0x16B3780, CommitTime: commitAt,
				Changes: []Change{change(1, "sf.customers", OpDelete, Row{"customer_id": {Type: pgtype.TextOID, Text: "u-9"}, "country": {Type: pgtype.TextOID, Null: true}})},
			}},
		},
		{
			name: "truncate is reported, relation redefined mid-stream is used, two transactions",
			give: [][]byte{
				products, customers,
				msgBegin(0x100, commitAt, 5),
				msgTruncate(relProducts, relCustomers),
				msgCommit(0x100, 0x140, commitAt),
				msgRelation(relCustomers, "sf", "customers", relCol{"customer_id", pgtype.TextOID, true}),
				msgBegin(0x200, commitAt.Add(time.Second), 6),
				msgInsert(relCustomers, txt("u-2")),
				msgCommit(0x200, 0x240, commitAt.Add(time.Second)),
			},
			want: []Tx{
				{Xid: 5, CommitLSN: 0x100, EndLSN: 0x140, CommitTime: commitAt, Truncated: []string{"sf.products", "sf.customers"}},
				{Xid: 6, CommitLSN: 0x200, EndLSN: 0x240, CommitTime: commitAt.Add(time.Second), Changes: []Change{{
					Table: "sf.customers", Op: OpUpsert, Row: Row{"customer_id": {Type: pgtype.TextOID, Text: "u-2"}},
					LSN: 0x200, Ordinal: 1, CommitTime: commitAt.Add(time.Second), Xid: 6,
				}}},
			},
		},
		{
			name:       "change of a relation never described",
			give:       [][]byte{msgBegin(0x100, commitAt, 5), msgInsert(relProducts, txt("p-1"))},
			wantErrSub: "unknown relation",
		},
		{
			name:       "tuple with fewer columns than the relation",
			give:       [][]byte{customers, msgBegin(0x100, commitAt, 5), msgInsert(relCustomers, txt("u-1"))},
			wantErrSub: "does not match",
		},
		{
			name:       "commit without begin",
			give:       [][]byte{msgCommit(0x100, 0x140, commitAt)},
			wantErrSub: "without BEGIN",
		},
		{
			name:       "commit LSN differs from BEGIN's",
			give:       [][]byte{msgBegin(0x100, commitAt, 5), msgCommit(0x108, 0x140, commitAt)},
			wantErrSub: "differs",
		},
		{
			name:       "insert outside a transaction",
			give:       [][]byte{customers, msgInsert(relCustomers, txt("u-1"), txt("DE"))},
			wantErrSub: "outside a transaction",
		},
		{
			name:       "unknown message type",
			give:       [][]byte{{'Z', 0, 0}},
			wantErrSub: "parse pgoutput message",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder()
			d.keys = tt.keys
			var got []Tx
			var err error
			for _, m := range tt.give {
				var tx *Tx
				if tx, err = d.decode(m); err != nil {
					break
				}
				if tx != nil {
					got = append(got, *tx)
				}
			}
			switch {
			case tt.wantErr != nil || tt.wantErrSub != "":
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("error = %v, want %v %q", err, tt.wantErr, tt.wantErrSub)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("transactions (-want +got):\n%s", diff)
			}
			if d.toastFilled != tt.wantToast {
				t.Errorf("toast filled = %d, want %d", d.toastFilled, tt.wantToast)
			}
			if d.inTx() {
				t.Error("decoder still inside a transaction")
			}
		})
	}
}

func TestValue(t *testing.T) {
	ts := time.Date(2026, 12, 1, 13, 4, 5, 123456000, time.UTC)
	tests := []struct {
		name    string
		give    Value
		want    any
		wantErr bool
	}{
		{"text", Value{Type: pgtype.TextOID, Text: "Mug"}, "Mug", false},
		{"empty text is not NULL", Value{Type: pgtype.TextOID, Text: ""}, "", false},
		{"NULL", Value{Type: pgtype.Int8OID, Null: true}, nil, false},
		{"bigint", Value{Type: pgtype.Int8OID, Text: "-1299"}, int64(-1299), false},
		{"integer", Value{Type: pgtype.Int4OID, Text: "42"}, int64(42), false},
		{"bigint garbage", Value{Type: pgtype.Int8OID, Text: "12a"}, nil, true},
		{"boolean true", Value{Type: pgtype.BoolOID, Text: "t"}, true, false},
		{"boolean false", Value{Type: pgtype.BoolOID, Text: "f"}, false, false},
		{"boolean garbage", Value{Type: pgtype.BoolOID, Text: "yes"}, nil, true},
		{"timestamptz UTC", Value{Type: pgtype.TimestamptzOID, Text: "2026-12-01 13:04:05.123456+00"}, ts, false},
		{"timestamptz offset", Value{Type: pgtype.TimestamptzOID, Text: "2026-12-01 14:34:05.123456+01:30"}, ts, false},
		{"timestamptz whole second", Value{Type: pgtype.TimestamptzOID, Text: "2026-12-01 13:04:05+00"}, ts.Truncate(time.Second), false},
		{"timestamp without zone", Value{Type: pgtype.TimestampOID, Text: "2026-12-01 13:04:05.123456"}, ts, false},
		{"timestamptz infinity", Value{Type: pgtype.TimestamptzOID, Text: "infinity"}, nil, true},
		{"timestamptz garbage", Value{Type: pgtype.TimestamptzOID, Text: "yesterday"}, nil, true},
		{"numeric stays text", Value{Type: pgtype.NumericOID, Text: "12.50"}, "12.50", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Any()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Any() error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !cmp.Equal(got, tt.want) {
				t.Errorf("Any() = %#v, want %#v", got, tt.want)
			}
		})
	}
	// The typed accessors refuse NULL instead of inventing a zero value.
	null := Value{Null: true}
	if _, err := null.Int64(); err == nil {
		t.Error("Int64 of NULL: no error")
	}
	if _, err := null.Bool(); err == nil {
		t.Error("Bool of NULL: no error")
	}
	if _, err := null.Time(); err == nil {
		t.Error("Time of NULL: no error")
	}
}
