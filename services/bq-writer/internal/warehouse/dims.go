package warehouse

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ecomstream/platform/pkg/events"
)

// This file holds the backend-neutral Slowly Changing Dimension (Type 2) rule for dim_products
// and dim_users; duckdb_dims.go applies it to DuckDB, and a BigQuery backend applies the same
// History to the same change log (sql/README.md).
//
// The rule. Every change of a key that reached the warehouse is kept in the entity's change log
// (dim_products_changes, dim_users_changes), once per source sequence (source_lsn,
// source_ordinal): a replay of a change already logged is a no-op. The versions of a key are a
// pure function of its logged changes, History, so they do not depend on the order the changes
// arrived in:
//
//   - changes are folded in source-sequence order, never arrival order;
//   - an upsert whose attr_hash equals the version in force starts no version (a no-op change);
//     any other upsert starts a version (valid_from = its changed_at, or updated_at when null),
//     which ends the one before it (valid_to = the new valid_from);
//   - a hard delete ends the version in force (valid_to = the delete's valid_from, deleted =
//     true) and makes no version of its own; with no version in force it does nothing;
//   - an upsert after a delete re-creates the key: a new version even when its attributes equal
//     those before the delete. A late delete (one older than changes already stored) ends the
//     version in force at its place and the changes after it still apply, so a later upsert
//     re-creates the key: the source's own history (delete, then insert) is what the dimension
//     shows;
//   - is_current = the key's last version, unless a delete ended it.
//
// Why a log and not only the versions: a no-op change must be remembered. Changes A (attributes
// x), C (x, later) then, late, B (y, between them): folded by sequence the key is x, y, x, and C
// starts a version; had C been dropped as a no-op when it arrived, the warehouse would show y as
// current for ever.

// Seq is the source sequence of a change: (source_lsn, source_ordinal), compared
// lexicographically. A snapshot record has ordinal 0, so a CDC change at the same LSN (ordinal
// >= 1) follows it and wins.
type Seq struct {
	LSN, Ordinal int64
}

// Compare orders sequences.
func (s Seq) Compare(o Seq) int {
	if c := cmp.Compare(s.LSN, o.LSN); c != 0 {
		return c
	}
	return cmp.Compare(s.Ordinal, o.Ordinal)
}

// DimChange is one logged change of one key, as History needs it.
type DimChange struct {
	Seq       Seq
	ValidFrom time.Time
	Delete    bool
	// AttrHash is the hash of the tracked attributes (empty for a delete).
	AttrHash string
}

// DimVersion is one version of a key: the interval [ValidFrom, ValidTo) in which the attributes
// of the change that started it (Start) held.
type DimVersion struct {
	// Start is the sequence of the change that started the version; with the natural key it
	// gives the surrogate key (SurrogateKey).
	Start     Seq
	ValidFrom time.Time
	// ValidTo is zero while the version is open.
	ValidTo   time.Time
	IsCurrent bool
	// Deleted: a hard delete ended the version (ValidTo is the delete's valid_from).
	Deleted  bool
	AttrHash string
}

// History returns the versions of one key given all its logged changes, in any order and with
// duplicates (same Seq: the first is kept); the result is in sequence order.
func History(changes []DimChange) []DimVersion {
	cs := slices.Clone(changes)
	slices.SortStableFunc(cs, func(a, b DimChange) int { return a.Seq.Compare(b.Seq) })
	cs = slices.CompactFunc(cs, func(a, b DimChange) bool { return a.Seq == b.Seq })
	var out []DimVersion
	open := false // out's last version is in force (not ended by a delete)
	for _, c := range cs {
		switch {
		case c.Delete:
			if open {
				last := &out[len(out)-1]
				last.ValidTo, last.Deleted = c.ValidFrom, true
				open = false
			}
		case open && out[len(out)-1].AttrHash == c.AttrHash:
			// A no-op change: the version in force already has these attributes.
		default:
			if open {
				out[len(out)-1].ValidTo = c.ValidFrom
			}
			out = append(out, DimVersion{Start: c.Seq, ValidFrom: c.ValidFrom, AttrHash: c.AttrHash})
			open = true
		}
	}
	if open {
		out[len(out)-1].IsCurrent = true
	}
	return out
}

// SurrogateKey is the deterministic key of the version of key started by the change at seq: the
// first 16 hex digits of sha256("<key>|<source_lsn>|<source_ordinal>"). A replay, or a rebuild of
// the history, gives every version the same key.
func SurrogateKey(key string, seq Seq) string {
	sum := sha256.Sum256([]byte(key + "|" + strconv.FormatInt(seq.LSN, 10) + "|" + strconv.FormatInt(seq.Ordinal, 10)))
	return hex.EncodeToString(sum[:8])
}

// attrHash hashes tracked attributes: sha256 hex of an unambiguous encoding (a NULL differs from
// "", and no value can run into the next).
func attrHash(vals ...*string) string {
	var b strings.Builder
	for _, v := range vals {
		if v == nil {
			b.WriteString("N;")
			continue
		}
		fmt.Fprintf(&b, "S%d:%s;", len(*v), *v)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func strp(s string) *string { return &s }

// Change ops.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// ProductRow is one ProductChange plus where bq-writer read it from.
type ProductRow struct {
	events.ProductChange
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// ValidFrom is the change's business time: changed_at, or updated_at when null (v1 data).
func (r *ProductRow) ValidFrom() time.Time {
	if r.ChangedAt != nil {
		return r.ChangedAt.UTC()
	}
	return r.UpdatedAt.UTC()
}

// AttrHash hashes the tracked attributes of dim_products: sku, name, category, brand,
// price_minor, currency, is_active (not updated_at, synced_at or source: a re-read of an unchanged
// row is no change). Empty for a delete.
func (r *ProductRow) AttrHash() string {
	if r.Op == OpDelete {
		return ""
	}
	return attrHash(r.Sku, strp(r.Name), r.Category, r.Brand, strp(strconv.FormatInt(r.PriceMinor, 10)), strp(r.Currency),
		strp(strconv.FormatBool(r.IsActive)))
}

func (r *ProductRow) change() DimChange {
	return DimChange{Seq: Seq{r.SourceLsn, r.SourceOrdinal}, ValidFrom: r.ValidFrom(), Delete: r.Op == OpDelete, AttrHash: r.AttrHash()}
}

// UserRow is one CustomerChange as the warehouse may hold it: the email only as a keyed hash and
// its domain, no name. NewUserRow builds it.
type UserRow struct {
	UserID string
	Op     string
	// EmailHash is HMAC-SHA256(key, lower(trim(email))) in hex; nil for a delete.
	EmailHash   *string
	EmailDomain *string
	Country     *string
	IsActive    bool
	CreatedAt   *time.Time
	UpdatedAt   time.Time
	SyncedAt    time.Time
	Source      string
	SourceLsn   int64
	SourceOrd   int64
	ChangedAt   *time.Time
	DeletedAt   *time.Time

	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// NewUserRow converts a CustomerChange with the email hash key (USER_EMAIL_HASH_KEY). The email
// and the name go no further.
func NewUserRow(c *events.CustomerChange, emailKey []byte) UserRow {
	u := UserRow{UserID: c.CustomerID, Op: c.Op, Country: c.Country, IsActive: c.IsActive, CreatedAt: c.CreatedAt,
		UpdatedAt: c.UpdatedAt, SyncedAt: c.SyncedAt, Source: c.Source, SourceLsn: c.SourceLsn, SourceOrd: c.SourceOrdinal,
		ChangedAt: c.ChangedAt, DeletedAt: c.DeletedAt}
	if c.Email != nil {
		norm := strings.ToLower(strings.TrimSpace(*c.Email))
		u.EmailHash = strp(EmailHash(emailKey, norm))
		if at := strings.LastIndexByte(norm, '@'); at >= 0 && at < len(norm)-1 {
			u.EmailDomain = strp(norm[at+1:])
		}
	}
	return u
}

// EmailHash is HMAC-SHA256(key, email) in lower-case hex; email is already normalised
// (lower(trim(email))).
func EmailHash(key []byte, email string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(email))
	return hex.EncodeToString(m.Sum(nil))
}

// ValidFrom is as for ProductRow.
func (r *UserRow) ValidFrom() time.Time {
	if r.ChangedAt != nil {
		return r.ChangedAt.UTC()
	}
	return r.UpdatedAt.UTC()
}

// AttrHash hashes the tracked attributes of dim_users: email_hash, email_domain, country,
// is_active. Empty for a delete.
func (r *UserRow) AttrHash() string {
	if r.Op == OpDelete {
		return ""
	}
	return attrHash(r.EmailHash, r.EmailDomain, r.Country, strp(strconv.FormatBool(r.IsActive)))
}

func (r *UserRow) change() DimChange {
	return DimChange{Seq: Seq{r.SourceLsn, r.SourceOrd}, ValidFrom: r.ValidFrom(), Delete: r.Op == OpDelete, AttrHash: r.AttrHash()}
}

// DimResult counts what Write did with a batch's changes of one dimension.
// Logged+Duplicates+Stale == the entity's rows in the batch.
type DimResult struct {
	// Logged changes were new to the change log (they may still start no version: a no-op
	// change, or a delete with nothing in force).
	Logged int
	// Duplicates were already logged (same key and sequence): a replay, or a snapshot and CDC
	// both sending one state at one sequence.
	Duplicates int
	// Stale changes were below the stored position of their partition (a replay).
	Stale int
	// Versions counts version rows written (new ones, and stored ones whose valid_to,
	// is_current or deleted changed).
	Versions int
}

// invalidProduct returns why the change cannot be stored, or "".
func invalidProduct(r *ProductRow) string {
	p := &r.ProductChange
	if p.ProductID == "" {
		return "empty product_id"
	}
	if reason := invalidChange(p.Op, r.ValidFrom()); reason != "" {
		return reason
	}
	strs := []*string{&p.ProductID, &p.Name, &p.Currency, &p.Source, &r.SourceTopic, p.Sku, p.Category, p.Brand}
	for _, s := range strs {
		if s != nil && !utf8.ValidString(*s) {
			return "a string field is not valid UTF-8"
		}
	}
	return ""
}

// invalidUser returns why the change cannot be stored, or "".
func invalidUser(r *UserRow) string {
	if r.UserID == "" {
		return "empty customer_id"
	}
	if reason := invalidChange(r.Op, r.ValidFrom()); reason != "" {
		return reason
	}
	for _, s := range []*string{&r.UserID, &r.Source, &r.SourceTopic, r.Country, r.EmailDomain} {
		if s != nil && !utf8.ValidString(*s) {
			return "a string field is not valid UTF-8"
		}
	}
	return ""
}

func invalidChange(op string, validFrom time.Time) string {
	if op != OpUpsert && op != OpDelete {
		return fmt.Sprintf("op %q is neither upsert nor delete", op)
	}
	if validFrom.IsZero() {
		return "zero changed_at and updated_at"
	}
	return ""
}
