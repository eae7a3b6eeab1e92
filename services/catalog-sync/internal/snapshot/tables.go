package snapshot

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ecomstream/platform/pkg/events"
	"github.com/ecomstream/platform/services/catalog-sync/internal/state"
)

// Table names, as in the source schema, POST /v1/sync and the state keys.
const (
	Products  = "products"
	Customers = "customers"
)

// Sources of a record (the source field of ProductChange / CustomerChange).
const (
	SourceSnapshot = "snapshot"
	SourceBackfill = "backfill"
	SourceCDC      = "cdc"
)

// Ops of a record.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Row is one source row, read in a snapshot.
type Row struct {
	Key       string
	UpdatedAt time.Time
	Hash      state.Hash
	Value     any // *events.ProductChange or *events.CustomerChange, op upsert, unstamped
}

// Meta is what a snapshot or a CDC batch stamps on every record it sends.
type Meta struct {
	Source  string
	LSN     int64 // a snapshot: its boundary (Tx.LSN, the exporting slot's consistent point); CDC: the commit LSN
	Ordinal int   // a snapshot: 0; CDC: the change's ordinal in its transaction
	// ReadAt is a delete's changed_at: the snapshot transaction's now() (the
	// earliest time the row is known gone), or CDC's commit time.
	ReadAt time.Time
	// ChangedAt, when set, is an upsert's changed_at (CDC: the commit time);
	// unset = the row's updated_at (a snapshot).
	ChangedAt *time.Time
	SyncedAt  time.Time
}

// Seq is the source sequence of the records m stamps.
func (m Meta) Seq() state.Seq { return state.Seq{LSN: m.LSN, Ordinal: m.Ordinal} }

// Table is one catalog table: how to read it and how its rows become
// records. Adding an entity is adding a Table, not a code path.
type Table struct {
	Name    string
	Key     string   // the primary key column (the natural key)
	Columns []string // the columns read, in the order build takes them
	// build maps one row's values, in Columns order, to its Row. The values
	// are decoded Go values (string, int64, bool, time.Time; nil for NULL),
	// as pgx's Rows.Values returns them for a snapshot and cdc.Value.Any for
	// a change: one mapping for both paths.
	build   func(v values) (Row, error)
	stamp   func(v any, m Meta)                         // fills the record's source fields
	deleted func(key string, e state.Entry, m Meta) any // the record of a hard delete
}

// Tables is every catalog table, in the order a run reads them.
var Tables = []*Table{productsTable, customersTable}

// TableNamed returns the table called name.
func TableNamed(name string) (*Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}

// RowOf maps a row's values, in t.Columns order, to its Row (an upsert
// record, unstamped, with its content hash).
func (t *Table) RowOf(vals []any) (Row, error) {
	if len(vals) != len(t.Columns) {
		return Row{}, fmt.Errorf("%s: %d values for %d columns", t.Name, len(vals), len(t.Columns))
	}
	v := values{table: t, vals: vals}
	r, err := t.build(v)
	if err == nil {
		err = v.err
	}
	if err != nil {
		return Row{}, err
	}
	return r, nil
}

// Record is the record value of change c stamped with m: the row's for an
// upsert, the key fields and the last updated_at (c.Entry) for a delete.
func (t *Table) Record(c Change, m Meta) any {
	if c.Op == OpDelete {
		return t.deleted(c.Key, c.Entry, m)
	}
	t.stamp(c.Row.Value, m)
	return c.Row.Value
}

// values reads the decoded values of one row; the first type mismatch is
// kept in err (RowOf returns it).
type values struct {
	table *Table
	vals  []any
	err   error
}

func (v *values) fail(i int, want string) {
	if v.err == nil {
		v.err = fmt.Errorf("%s.%s: want %s, got %T", v.table.Name, v.table.Columns[i], want, v.vals[i])
	}
}

func (v *values) str(i int) string {
	s, ok := v.vals[i].(string)
	if !ok {
		v.fail(i, "text")
	}
	return s
}

func (v *values) optStr(i int) *string {
	if v.vals[i] == nil {
		return nil
	}
	s := v.str(i)
	return &s
}

func (v *values) int64(i int) int64 {
	n, ok := v.vals[i].(int64)
	if !ok {
		v.fail(i, "bigint")
	}
	return n
}

func (v *values) bool(i int) bool {
	b, ok := v.vals[i].(bool)
	if !ok {
		v.fail(i, "boolean")
	}
	return b
}

func (v *values) time(i int) time.Time {
	t, ok := v.vals[i].(time.Time)
	if !ok {
		v.fail(i, "timestamptz")
	}
	return t.UTC()
}

func (v *values) optTime(i int) *time.Time {
	if v.vals[i] == nil {
		return nil
	}
	t := v.time(i)
	return &t
}

var productsTable = &Table{
	Name: Products, Key: "product_id",
	Columns: []string{"product_id", "sku", "name", "category", "brand", "price_minor", "currency", "is_active", "deleted_at", "updated_at"},
	build: func(v values) (Row, error) {
		sku := v.str(1)
		p := events.ProductChange{ProductID: v.str(0), Op: OpUpsert, Sku: &sku, Name: v.str(2), Category: v.optStr(3),
			Brand: v.optStr(4), PriceMinor: v.int64(5), Currency: v.str(6), IsActive: v.bool(7), DeletedAt: v.optTime(8),
			UpdatedAt: v.time(9)}
		return Row{Key: p.ProductID, UpdatedAt: p.UpdatedAt, Hash: ProductHash(&p), Value: &p}, v.err
	},
	stamp: func(v any, m Meta) {
		p := v.(*events.ProductChange)
		p.Source, p.SourceLsn, p.SourceOrdinal, p.SyncedAt = m.Source, m.LSN, int64(m.Ordinal), m.SyncedAt
		p.ChangedAt = changedAt(p.UpdatedAt, m)
	},
	deleted: func(key string, e state.Entry, m Meta) any {
		at := m.ReadAt
		return &events.ProductChange{ProductID: key, Op: OpDelete, UpdatedAt: e.UpdatedAt.UTC(), ChangedAt: &at,
			Source: m.Source, SourceLsn: m.LSN, SourceOrdinal: int64(m.Ordinal), SyncedAt: m.SyncedAt}
	},
}

var customersTable = &Table{
	Name: Customers, Key: "customer_id",
	Columns: []string{"customer_id", "email", "name", "country", "is_active", "deleted_at", "created_at", "updated_at"},
	build: func(v values) (Row, error) {
		email, name, country, created := v.str(1), v.str(2), v.str(3), v.time(6)
		c := events.CustomerChange{CustomerID: v.str(0), Op: OpUpsert, Email: &email, Name: &name, Country: &country,
			IsActive: v.bool(4), DeletedAt: v.optTime(5), CreatedAt: &created, UpdatedAt: v.time(7)}
		return Row{Key: c.CustomerID, UpdatedAt: c.UpdatedAt, Hash: CustomerHash(&c), Value: &c}, v.err
	},
	stamp: func(v any, m Meta) {
		c := v.(*events.CustomerChange)
		c.Source, c.SourceLsn, c.SourceOrdinal, c.SyncedAt = m.Source, m.LSN, int64(m.Ordinal), m.SyncedAt
		c.ChangedAt = changedAt(c.UpdatedAt, m)
	},
	deleted: func(key string, e state.Entry, m Meta) any {
		at := m.ReadAt
		return &events.CustomerChange{CustomerID: key, Op: OpDelete, UpdatedAt: e.UpdatedAt.UTC(), ChangedAt: &at,
			Source: m.Source, SourceLsn: m.LSN, SourceOrdinal: int64(m.Ordinal), SyncedAt: m.SyncedAt}
	},
}

func changedAt(updated time.Time, m Meta) *time.Time {
	at := updated
	if m.ChangedAt != nil {
		at = *m.ChangedAt
	}
	return &at
}

// ProductHash is the content hash of a product's attributes: every column
// but updated_at, so an UPDATE that changes nothing (the trigger still moves
// updated_at) sends nothing; the dimensions would make no version of it.
func ProductHash(p *events.ProductChange) state.Hash {
	c := *p
	c.UpdatedAt, c.SyncedAt, c.Source, c.SourceLsn, c.SourceOrdinal, c.ChangedAt = time.Time{}, time.Time{}, "", 0, 0, nil
	return hash(c)
}

// CustomerHash is ProductHash for customers.
func CustomerHash(p *events.CustomerChange) state.Hash {
	c := *p
	c.UpdatedAt, c.SyncedAt, c.Source, c.SourceLsn, c.SourceOrdinal, c.ChangedAt = time.Time{}, time.Time{}, "", 0, 0, nil
	return hash(c)
}

func hash(v any) state.Hash {
	b, _ := json.Marshal(v) // cannot fail: structs of strings, numbers and times
	sum := sha256.Sum256(b)
	var h state.Hash
	copy(h[:], sum[:state.HashLen])
	return h
}
