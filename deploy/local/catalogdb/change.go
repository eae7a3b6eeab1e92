package catalogdb

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kind is what a change does, as a shop's application would do it.
type Kind string

// The kinds of change. Product kinds first, then customer kinds.
const (
	PriceChange     Kind = "price_change"     // a new list price
	SaleStart       Kind = "sale_start"       // a temporary discount
	SaleEnd         Kind = "sale_end"         // the discount ends: the list price is restored
	Rename          Kind = "rename"           // a new product name
	Recategorize    Kind = "recategorize"     // the product moves to another category
	Touch           Kind = "touch"            // an update that alters no tracked attribute (only updated_at moves)
	NewProduct      Kind = "new_product"      // an insert (also the re-creation of a hard-deleted key)
	Discontinue     Kind = "discontinue"      // soft delete: is_active = false, deleted_at = now()
	DeleteProduct   Kind = "delete_product"   // hard delete
	CategoryReprice Kind = "category_reprice" // the burst: every live product of a category re-priced by a percentage in one statement
	CustomerMove    Kind = "customer_move"    // a new country
	CustomerEmail   Kind = "customer_email"   // a new email address
	NewCustomer     Kind = "new_customer"     // an insert
	DeleteCustomer  Kind = "delete_customer"  // hard delete (an erasure request)
)

// Kinds lists every kind.
func Kinds() []Kind {
	return []Kind{PriceChange, SaleStart, SaleEnd, Rename, Recategorize, Touch, NewProduct, Discontinue,
		DeleteProduct, CategoryReprice, CustomerMove, CustomerEmail, NewCustomer, DeleteCustomer}
}

// Bad is the defect of a change that is bad on purpose (for the validator's rules); "" = a good change.
type Bad string

// The bad kinds.
const (
	NegativePrice   Bad = "negative_price"   // price_minor < 0
	UnknownCategory Bad = "unknown_category" // a category slug not in the taxonomy
	EmptyName       Bad = "empty_name"       // product name ''
	MalformedEmail  Bad = "malformed_email"  // an email without '@'
	UnknownCountry  Bad = "unknown_country"  // a country that is not ISO 3166-1 alpha-2 (ZZ)
)

// BadKinds lists every bad kind.
func BadKinds() []Bad {
	return []Bad{NegativePrice, UnknownCategory, EmptyName, MalformedEmail, UnknownCountry}
}

// BadCountry is the country code of an unknown_country change (user-assigned in ISO 3166, never a country).
const BadCountry = "ZZ"

// BadCategories are the slugs of unknown_category changes: plausible, not in seed.Categories().
var BadCategories = []string{"gadgets", "garden", "pets"}

// Change is one statement of a transaction. Which fields matter depends on Kind.
type Change struct {
	Kind Kind `json:"kind"`
	Bad  Bad  `json:"bad,omitempty"`
	// Key is the product_id or customer_id; for CategoryReprice the category slug.
	Key string `json:"key"`
	// Product and Customer are the row of NewProduct and NewCustomer.
	Product  *ProductRow  `json:"product,omitempty"`
	Customer *CustomerRow `json:"customer,omitempty"`
	// PriceMinor for PriceChange, SaleStart and SaleEnd; Name for Rename;
	// Category for Recategorize; Email and Country for the customer kinds;
	// Percent for CategoryReprice (new price = round(old * (100 + Percent) / 100)).
	PriceMinor int64  `json:"price_minor,omitempty"`
	Name       string `json:"name,omitempty"`
	Category   string `json:"category,omitempty"`
	Email      string `json:"email,omitempty"`
	Country    string `json:"country,omitempty"`
	Percent    int    `json:"percent,omitempty"`
}

// Tx is the changes of one transaction, applied in order.
type Tx struct {
	// Name says what the transaction is about (the script's step names; "" for generated ones).
	Name    string   `json:"name,omitempty"`
	Changes []Change `json:"changes"`
}

// Table is the table a kind changes.
func (k Kind) Table() string {
	switch k {
	case CustomerMove, CustomerEmail, NewCustomer, DeleteCustomer:
		return "customers"
	}
	return "products"
}

// Op is the log's op of a kind: "delete" for hard deletes, else "upsert".
func (k Kind) Op() string {
	if k == DeleteProduct || k == DeleteCustomer {
		return "delete"
	}
	return "upsert"
}

// ProductRow is a row of <schema>.products.
type ProductRow struct {
	ProductID  string     `json:"product_id" db:"product_id"`
	SKU        string     `json:"sku" db:"sku"`
	Name       string     `json:"name" db:"name"`
	Category   *string    `json:"category" db:"category"`
	Brand      *string    `json:"brand" db:"brand"`
	PriceMinor int64      `json:"price_minor" db:"price_minor"`
	Currency   string     `json:"currency" db:"currency"`
	IsActive   bool       `json:"is_active" db:"is_active"`
	DeletedAt  *time.Time `json:"deleted_at" db:"deleted_at"`
	CreatedAt  time.Time  `json:"created_at" db:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at" db:"updated_at"`
}

// CustomerRow is a row of <schema>.customers.
type CustomerRow struct {
	CustomerID string     `json:"customer_id" db:"customer_id"`
	Email      string     `json:"email" db:"email"`
	Name       string     `json:"name" db:"name"`
	Country    string     `json:"country" db:"country"`
	IsActive   bool       `json:"is_active" db:"is_active"`
	DeletedAt  *time.Time `json:"deleted_at" db:"deleted_at"`
	CreatedAt  time.Time  `json:"created_at" db:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at" db:"updated_at"`
}

const (
	productCols  = "product_id, sku, name, category, brand, price_minor, currency, is_active, deleted_at, created_at, updated_at"
	customerCols = "customer_id, email, name, country, is_active, deleted_at, created_at, updated_at"
)

// statement is the SQL a shop's application would run for the change, with
// RETURNING the row after it (the old row for a delete).
func (c Change) statement(schema string) (string, []any, error) {
	products := pgx.Identifier{schema, "products"}.Sanitize()
	customers := pgx.Identifier{schema, "customers"}.Sanitize()
	retP, retC := " RETURNING "+productCols, " RETURNING "+customerCols
	if c.Key == "" {
		return "", nil, fmt.Errorf("catalogdb: %s change without a key", c.Kind)
	}
	switch c.Kind {
	case PriceChange, SaleStart, SaleEnd:
		return "UPDATE " + products + " SET price_minor = $2 WHERE product_id = $1" + retP, []any{c.Key, c.PriceMinor}, nil
	case Rename:
		return "UPDATE " + products + " SET name = $2 WHERE product_id = $1" + retP, []any{c.Key, c.Name}, nil
	case Recategorize:
		return "UPDATE " + products + " SET category = $2 WHERE product_id = $1" + retP, []any{c.Key, c.Category}, nil
	case Touch:
		// What an ORM's save() of an unchanged object does.
		return "UPDATE " + products + " SET name = name WHERE product_id = $1" + retP, []any{c.Key}, nil
	case Discontinue:
		return "UPDATE " + products + " SET is_active = false, deleted_at = now() WHERE product_id = $1 AND deleted_at IS NULL" + retP, []any{c.Key}, nil
	case DeleteProduct:
		return "DELETE FROM " + products + " WHERE product_id = $1" + retP, []any{c.Key}, nil
	case NewProduct:
		p := c.Product
		if p == nil || p.ProductID != c.Key {
			return "", nil, fmt.Errorf("catalogdb: new_product %s without its row", c.Key)
		}
		return "INSERT INTO " + products + " (product_id, sku, name, category, brand, price_minor, currency) VALUES ($1, $2, $3, $4, $5, $6, $7)" + retP,
			[]any{p.ProductID, p.SKU, p.Name, p.Category, p.Brand, p.PriceMinor, p.Currency}, nil
	case CategoryReprice:
		return "UPDATE " + products + " SET price_minor = round(price_minor * (100 + $2)::numeric / 100)::bigint WHERE category = $1 AND deleted_at IS NULL" + retP,
			[]any{c.Key, c.Percent}, nil
	case CustomerMove:
		return "UPDATE " + customers + " SET country = $2 WHERE customer_id = $1" + retC, []any{c.Key, c.Country}, nil
	case CustomerEmail:
		return "UPDATE " + customers + " SET email = $2 WHERE customer_id = $1" + retC, []any{c.Key, c.Email}, nil
	case DeleteCustomer:
		return "DELETE FROM " + customers + " WHERE customer_id = $1" + retC, []any{c.Key}, nil
	case NewCustomer:
		u := c.Customer
		if u == nil || u.CustomerID != c.Key {
			return "", nil, fmt.Errorf("catalogdb: new_customer %s without its row", c.Key)
		}
		return "INSERT INTO " + customers + " (customer_id, email, name, country) VALUES ($1, $2, $3, $4)" + retC,
			[]any{u.CustomerID, u.Email, u.Name, u.Country}, nil
	}
	return "", nil, fmt.Errorf("catalogdb: unknown change kind %q", c.Kind)
}

// Entry is one line of the mutator's log: one changed row, written after its transaction committed.
type Entry struct {
	Table string `json:"table"` // products | customers
	Key   string `json:"key"`   // product_id | customer_id
	Op    string `json:"op"`    // upsert | delete (hard delete)
	Kind  Kind   `json:"kind"`
	// Bad is the defect this change made on purpose; Defects every defect the
	// row has after it (ProductDefects, CustomerDefects), also those an
	// earlier change left. Neither is set on a delete.
	Bad     Bad   `json:"bad,omitempty"`
	Defects []Bad `json:"defects,omitempty"`
	// Product or Customer is the row after the change; for a delete, the row deleted.
	Product  *ProductRow  `json:"product,omitempty"`
	Customer *CustomerRow `json:"customer,omitempty"`
	// TxID is the transaction's id (pg_current_xact_id: the 64-bit xid8,
	// epoch<<32 | xid); Xid its low 32 bits (TxID % 2^32), the xid logical
	// replication reports (pgoutput's BEGIN, catalog-sync's cdc Tx.Xid,
	// test_decoding): match CDC on Xid, not TxID (they differ once the epoch
	// is not 0; Xid wraps around, TxID does not). Ordinal is the row
	// change's 1-based position in the transaction (statement order, then
	// the order of the statement's RETURNING rows, which is the order of the
	// changes in the WAL); TxChanges the number of row changes in it.
	TxID      uint64 `json:"txid"`
	Xid       uint32 `json:"xid"`
	Ordinal   int    `json:"ordinal"`
	TxChanges int    `json:"tx_changes"`
	TxName    string `json:"tx_name,omitempty"`
	// CommitTime is pg_xact_commit_timestamp of the transaction: the commit
	// time logical replication reports in BEGIN and COMMIT.
	CommitTime time.Time `json:"commit_time"`
	// The commit record lies in [CommitLSNMin, CommitLSNMax]:
	// pg_current_wal_insert_lsn() before COMMIT and right after it. PostgreSQL
	// has no SQL function for a transaction's exact commit LSN; with no other
	// writer in between the interval holds only this commit record.
	CommitLSNMin string `json:"commit_lsn_min"`
	CommitLSNMax string `json:"commit_lsn_max"`
}
