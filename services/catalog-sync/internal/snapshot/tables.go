package snapshot

import (
	"crypto/sha256"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

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

// Meta is what a snapshot stamps on every record it sends.
type Meta struct {
	Source   string
	LSN      int64     // pg_current_wal_lsn() read first in the snapshot's transaction
	ReadAt   time.Time // the snapshot transaction's now(): a delete's changed_at
	SyncedAt time.Time
}

// Table is one catalog table: how to read it and how its rows become
// records. Adding an entity is adding a Table, not a code path.
type Table struct {
	Name    string
	Key     string // the primary key column (the natural key)
	Columns string // the select list, in the order scan reads it
	scan    func(pgx.CollectableRow) (Row, error)
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

var productsTable = &Table{
	Name: Products, Key: "product_id",
	Columns: "product_id, sku, name, category, brand, price_minor, currency, is_active, deleted_at, updated_at",
	scan: func(r pgx.CollectableRow) (Row, error) {
		var p events.ProductChange
		var sku string
		if err := r.Scan(&p.ProductID, &sku, &p.Name, &p.Category, &p.Brand, &p.PriceMinor, &p.Currency,
			&p.IsActive, &p.DeletedAt, &p.UpdatedAt); err != nil {
			return Row{}, err
		}
		p.Op, p.Sku, p.UpdatedAt, p.DeletedAt = OpUpsert, &sku, p.UpdatedAt.UTC(), utc(p.DeletedAt)
		return Row{Key: p.ProductID, UpdatedAt: p.UpdatedAt, Hash: ProductHash(&p), Value: &p}, nil
	},
	stamp: func(v any, m Meta) {
		p := v.(*events.ProductChange)
		p.Source, p.SourceLsn, p.SourceOrdinal, p.SyncedAt = m.Source, m.LSN, 0, m.SyncedAt
		ca := p.UpdatedAt
		p.ChangedAt = &ca
	},
	deleted: func(key string, e state.Entry, m Meta) any {
		at := m.ReadAt
		return &events.ProductChange{ProductID: key, Op: OpDelete, UpdatedAt: e.UpdatedAt.UTC(), ChangedAt: &at,
			Source: m.Source, SourceLsn: m.LSN, SyncedAt: m.SyncedAt}
	},
}

var customersTable = &Table{
	Name: Customers, Key: "customer_id",
	Columns: "customer_id, email, name, country, is_active, deleted_at, created_at, updated_at",
	scan: func(r pgx.CollectableRow) (Row, error) {
		var c events.CustomerChange
		var email, name, country string
		var created time.Time
		if err := r.Scan(&c.CustomerID, &email, &name, &country, &c.IsActive, &c.DeletedAt, &created, &c.UpdatedAt); err != nil {
			return Row{}, err
		}
		created = created.UTC()
		c.Op, c.Email, c.Name, c.Country, c.CreatedAt = OpUpsert, &email, &name, &country, &created
		c.UpdatedAt, c.DeletedAt = c.UpdatedAt.UTC(), utc(c.DeletedAt)
		return Row{Key: c.CustomerID, UpdatedAt: c.UpdatedAt, Hash: CustomerHash(&c), Value: &c}, nil
	},
	stamp: func(v any, m Meta) {
		c := v.(*events.CustomerChange)
		c.Source, c.SourceLsn, c.SourceOrdinal, c.SyncedAt = m.Source, m.LSN, 0, m.SyncedAt
		ca := c.UpdatedAt
		c.ChangedAt = &ca
	},
	deleted: func(key string, e state.Entry, m Meta) any {
		at := m.ReadAt
		return &events.CustomerChange{CustomerID: key, Op: OpDelete, UpdatedAt: e.UpdatedAt.UTC(), ChangedAt: &at,
			Source: m.Source, SourceLsn: m.LSN, SyncedAt: m.SyncedAt}
	},
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

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
