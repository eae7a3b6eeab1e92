package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// dimWriter writes one dimension's changes (Batch.Products or Batch.Users) by the rule of
// dims.go: it logs the changes new to the entity's change log, recomputes the history of every
// key the batch touched from the whole log, and rewrites only the version rows that differ
// (new versions, and stored ones whose valid_to, is_current or deleted changed). All of it in
// Write's transaction, before the positions.
type dimWriter struct {
	d    *DuckDB
	spec *dimSpec
}

// dimSpec describes one dimension for dimWriter.
type dimSpec struct {
	entity Entity
	// table is the dimension, log its change log; key is the natural key column in both,
	// surrogate the version key column of table.
	table, log, key, surrogate string
	// logColumns are the appender's columns of log; attrs the columns table copies from the log
	// row of the change that started a version (between the natural key and valid_from).
	logColumns, attrs []string
	// n is the number of the entity's rows in b; row returns row i's natural key, partition,
	// offset and change; values fills logColumns for row i.
	n      func(b *Batch) int
	row    func(b *Batch, i int) (string, Partition, int64, DimChange)
	values func(vals []driver.Value, b *Batch, i int, loadedAt time.Time)
	result func(res *WriteResult) *DimResult
}

var productsDim = &dimSpec{
	entity: EntityProduct, table: "dim_products", log: "dim_products_changes", key: "product_id", surrogate: "product_key",
	logColumns: []string{"product_id", "source_lsn", "source_ordinal", "op", "sku", "name", "category", "brand", "price_minor",
		"currency", "is_active", "deleted_at", "valid_from", "updated_at", "synced_at", "source", "attr_hash",
		"source_topic", "source_partition", "source_offset", "loaded_at"},
	attrs: []string{"sku", "name", "category", "brand", "price_minor", "currency", "is_active"},
	n:     func(b *Batch) int { return len(b.Products) },
	row: func(b *Batch, i int) (string, Partition, int64, DimChange) {
		r := &b.Products[i]
		return r.ProductID, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset, r.change()
	},
	values: func(v []driver.Value, b *Batch, i int, loadedAt time.Time) {
		r := &b.Products[i]
		v[0], v[1], v[2], v[3] = r.ProductID, r.SourceLsn, r.SourceOrdinal, r.Op
		v[4], v[5], v[6], v[7], v[8] = optStr(r.Sku), r.Name, optStr(r.Category), optStr(r.Brand), r.PriceMinor
		v[9], v[10], v[11], v[12] = r.Currency, r.IsActive, optTime(r.DeletedAt), r.ValidFrom()
		v[13], v[14], v[15], v[16] = r.UpdatedAt.UTC(), r.SyncedAt.UTC(), r.Source, nullIfEmpty(r.AttrHash())
		v[17], v[18], v[19], v[20] = r.SourceTopic, r.SourcePartition, r.SourceOffset, loadedAt
	},
	result: func(res *WriteResult) *DimResult { return &res.Products },
}

var usersDim = &dimSpec{
	entity: EntityUser, table: "dim_users", log: "dim_users_changes", key: "user_id", surrogate: "user_key",
	logColumns: []string{"user_id", "source_lsn", "source_ordinal", "op", "email_hash", "email_domain", "country", "is_active",
		"created_at", "deleted_at", "valid_from", "updated_at", "synced_at", "source", "attr_hash",
		"source_topic", "source_partition", "source_offset", "loaded_at"},
	attrs: []string{"email_hash", "email_domain", "country", "is_active", "created_at"},
	n:     func(b *Batch) int { return len(b.Users) },
	row: func(b *Batch, i int) (string, Partition, int64, DimChange) {
		r := &b.Users[i]
		return r.UserID, Partition{r.SourceTopic, r.SourcePartition}, r.SourceOffset, r.change()
	},
	values: func(v []driver.Value, b *Batch, i int, loadedAt time.Time) {
		r := &b.Users[i]
		v[0], v[1], v[2], v[3] = r.UserID, r.SourceLsn, r.SourceOrd, r.Op
		v[4], v[5], v[6], v[7] = optStr(r.EmailHash), optStr(r.EmailDomain), optStr(r.Country), r.IsActive
		v[8], v[9], v[10], v[11] = optTime(r.CreatedAt), optTime(r.DeletedAt), r.ValidFrom(), r.UpdatedAt.UTC()
		v[12], v[13], v[14] = r.SyncedAt.UTC(), r.Source, nullIfEmpty(r.AttrHash())
		v[15], v[16], v[17], v[18] = r.SourceTopic, r.SourcePartition, r.SourceOffset, loadedAt
	},
	result: func(res *WriteResult) *DimResult { return &res.Users },
}

func optStr(p *string) driver.Value {
	if p == nil {
		return nil
	}
	return *p
}

func optTime(t *time.Time) driver.Value {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// storedVersion is what the diff needs of a stored version row.
type storedVersion struct {
	validTo            sql.NullTime
	isCurrent, deleted bool
}

func (w dimWriter) write(ctx context.Context, tx *sql.Tx, b Batch, stored map[Partition]int64, now time.Time, res *WriteResult) (func(), error) {
	s := w.spec
	n := s.n(&b)
	if n == 0 {
		return nil, nil
	}
	out := s.result(res)
	// Fresh changes by key, in batch order; keys in first-seen order.
	batchChanges := map[string][]int{}
	var keys []string
	for i := range n {
		key, p, off, _ := s.row(&b, i)
		if next, ok := stored[p]; ok && off < next {
			out.Stale++
			continue
		}
		if _, ok := batchChanges[key]; !ok {
			keys = append(keys, key)
		}
		batchChanges[key] = append(batchChanges[key], i)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	logged, err := w.loggedChanges(ctx, tx, keys)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.log, err)
	}
	versions, err := w.storedVersions(ctx, tx, keys)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.table, err)
	}

	var appendRows []int // batch rows new to the log
	var deleteKeys []any // surrogate keys of stored rows that go
	var insertVals []any // (key, lsn, ordinal, surrogate, valid_to, is_current, deleted) per version row written
	for _, key := range keys {
		all := logged[key]
		seen := make(map[Seq]bool, len(all))
		for _, c := range all {
			seen[c.Seq] = true
		}
		for _, i := range batchChanges[key] {
			_, _, _, c := s.row(&b, i)
			if seen[c.Seq] {
				out.Duplicates++
				continue
			}
			seen[c.Seq] = true
			all = append(all, c)
			appendRows = append(appendRows, i)
			out.Logged++
		}
		old := versions[key]
		keep := map[string]bool{}
		for _, v := range History(all) {
			sk := SurrogateKey(key, v.Start)
			validTo := sql.NullTime{Time: v.ValidTo, Valid: !v.ValidTo.IsZero()}
			if o, ok := old[sk]; ok && sameTime(o.validTo, validTo) && o.isCurrent == v.IsCurrent && o.deleted == v.Deleted {
				keep[sk] = true
				continue
			}
			var to any
			if validTo.Valid {
				to = validTo.Time
			}
			insertVals = append(insertVals, key, v.Start.LSN, v.Start.Ordinal, sk, to, v.IsCurrent, v.Deleted)
		}
		for sk := range old {
			if !keep[sk] {
				deleteKeys = append(deleteKeys, sk)
			}
		}
	}

	if len(appendRows) > 0 {
		if err := w.appendLog(ctx, &b, appendRows, now); err != nil {
			return nil, fmt.Errorf("append %s: %w", s.log, err)
		}
	}
	for start := 0; start < len(deleteKeys); start += lookupChunk {
		chunk := deleteKeys[start:min(start+lookupChunk, len(deleteKeys))]
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE `+s.surrogate+` IN (`+placeholders(len(chunk))+`)`, chunk...); err != nil {
			return nil, fmt.Errorf("delete %s versions: %w", s.table, err)
		}
	}
	const perRow = 7
	for start := 0; start < len(insertVals); start += lookupChunk * perRow {
		chunk := insertVals[start:min(start+lookupChunk*perRow, len(insertVals))]
		if err := w.insertVersions(ctx, tx, chunk, len(chunk)/perRow, now); err != nil {
			return nil, fmt.Errorf("write %s versions: %w", s.table, err)
		}
	}
	out.Versions += len(insertVals) / perRow
	return nil, nil
}

func sameTime(a, b sql.NullTime) bool {
	return a.Valid == b.Valid && (!a.Valid || a.Time.Equal(b.Time))
}

// insertVersions writes n version rows, taking their attributes from the log row of the change
// that started each one (logged before, or by this transaction's append).
func (w dimWriter) insertVersions(ctx context.Context, tx *sql.Tx, vals []any, n int, now time.Time) error {
	s := w.spec
	row := "(?::VARCHAR, ?::BIGINT, ?::BIGINT, ?::VARCHAR, ?::TIMESTAMPTZ, ?::BOOLEAN, ?::BOOLEAN)"
	values := strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	cols := append([]string{s.surrogate, s.key}, s.attrs...)
	cols = append(cols, "valid_from", "valid_to", "is_current", "deleted", "source_lsn", "source_ordinal", "attr_hash", "source", "loaded_at")
	sel := append([]string{"v.sk", "c." + s.key}, prefixed("c.", s.attrs)...)
	sel = append(sel, "c.valid_from", "v.valid_to", "v.is_current", "v.deleted", "c.source_lsn", "c.source_ordinal", "c.attr_hash", "c.source", "?::TIMESTAMPTZ")
	q := `INSERT INTO ` + s.table + ` (` + strings.Join(cols, ", ") + `)
SELECT ` + strings.Join(sel, ", ") + `
FROM ` + s.log + ` c JOIN (VALUES ` + values + `) AS v(k, lsn, ord, sk, valid_to, is_current, deleted)
  ON c.` + s.key + ` = v.k AND c.source_lsn = v.lsn AND c.source_ordinal = v.ord`
	args := append([]any{now}, vals...)
	r, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	if got, err := r.RowsAffected(); err == nil && got != int64(n) {
		return fmt.Errorf("wrote %d version rows, want %d: the change log lacks a version's change", got, n)
	}
	return nil
}

func prefixed(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// loggedChanges reads the logged changes of keys.
func (w dimWriter) loggedChanges(ctx context.Context, tx *sql.Tx, keys []string) (map[string][]DimChange, error) {
	s := w.spec
	out := make(map[string][]DimChange, len(keys))
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		rows, err := tx.QueryContext(ctx, `SELECT `+s.key+`, source_lsn, source_ordinal, valid_from, op = 'delete', coalesce(attr_hash, '') FROM `+
			s.log+` WHERE `+s.key+` IN (`+placeholders(len(chunk))+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var key string
			var c DimChange
			if err := rows.Scan(&key, &c.Seq.LSN, &c.Seq.Ordinal, &c.ValidFrom, &c.Delete, &c.AttrHash); err != nil {
				return nil, errors.Join(err, rows.Close())
			}
			out[key] = append(out[key], c)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// storedVersions reads the stored version rows of keys, by surrogate key.
func (w dimWriter) storedVersions(ctx context.Context, tx *sql.Tx, keys []string) (map[string]map[string]storedVersion, error) {
	s := w.spec
	out := make(map[string]map[string]storedVersion, len(keys))
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		rows, err := tx.QueryContext(ctx, `SELECT `+s.key+`, `+s.surrogate+`, valid_to, is_current, deleted FROM `+
			s.table+` WHERE `+s.key+` IN (`+placeholders(len(chunk))+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var key, sk string
			var v storedVersion
			if err := rows.Scan(&key, &sk, &v.validTo, &v.isCurrent, &v.deleted); err != nil {
				return nil, errors.Join(err, rows.Close())
			}
			if out[key] == nil {
				out[key] = map[string]storedVersion{}
			}
			out[key][sk] = v
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// appendLog appends b's rows idx to the change log with the appender (flushed into the open
// transaction, like the facts).
func (w dimWriter) appendLog(ctx context.Context, b *Batch, idx []int, loadedAt time.Time) error {
	s := w.spec
	return w.d.writer.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), "", "", s.log, s.logColumns)
		if err != nil {
			return err
		}
		vals := make([]driver.Value, len(s.logColumns))
		for _, i := range idx {
			s.values(vals, b, i, loadedAt)
			if err := a.AppendRow(vals...); err != nil {
				return errors.Join(err, a.Clear(), a.Close())
			}
		}
		return a.CloseWithCancel(ctx)
	})
}
