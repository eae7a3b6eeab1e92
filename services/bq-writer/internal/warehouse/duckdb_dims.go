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
	fresh, stale := FreshRows(n, func(i int) (Partition, int64) { _, p, off, _ := s.row(&b, i); return p, off }, stored)
	out.Stale += stale
	for _, i := range fresh {
		key, _, _, _ := s.row(&b, i)
		if _, ok := batchChanges[key]; !ok {
			keys = append(keys, key)
		}
		batchChanges[key] = append(batchChanges[key], i)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	// The batch's keys and the plan go through connection-local staging tables filled by the
	// appender: binding them as statement parameters cost most of the write (a 5,000-change
	// batch made statements of 35,000 parameters).
	if _, err := tx.ExecContext(ctx, stagingDDL); err != nil {
		return nil, fmt.Errorf("staging tables: %w", err)
	}
	if err := w.stage(ctx, "dim_stage_keys", []string{"k"}, len(keys), func(v []driver.Value, i int) { v[0] = keys[i] }); err != nil {
		return nil, fmt.Errorf("stage keys: %w", err)
	}
	logged, err := w.loggedChanges(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.log, err)
	}
	versions, err := w.storedVersions(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.table, err)
	}

	var appendRows []int // batch rows new to the log
	var plan []planRow   // version rows to write and stored ones to drop
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
			plan = append(plan, planRow{key: key, start: v.Start, sk: sk, validTo: validTo, isCurrent: v.IsCurrent, deleted: v.Deleted})
		}
		for sk := range old {
			if !keep[sk] {
				plan = append(plan, planRow{sk: sk, drop: true})
			}
		}
	}

	if len(appendRows) > 0 {
		if err := w.appendLog(ctx, &b, appendRows, now); err != nil {
			return nil, fmt.Errorf("append %s: %w", s.log, err)
		}
	}
	if err := w.applyPlan(ctx, tx, plan, now); err != nil {
		return nil, fmt.Errorf("write %s versions: %w", s.table, err)
	}
	for _, p := range plan {
		if !p.drop {
			out.Versions++
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM dim_stage_keys; DELETE FROM dim_stage_plan`); err != nil {
		return nil, fmt.Errorf("clear staging tables: %w", err)
	}
	return nil, nil
}

// stagingDDL creates the connection-local (TEMP) staging tables of dimWriter; they are empty
// between writes (cleared at the end of each, and a rollback discards their rows too).
const stagingDDL = `CREATE TEMP TABLE IF NOT EXISTS dim_stage_keys (k VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS dim_stage_plan (k VARCHAR, lsn BIGINT, ord BIGINT, sk VARCHAR NOT NULL, valid_to TIMESTAMPTZ,
  is_current BOOLEAN, deleted BOOLEAN, "drop" BOOLEAN NOT NULL)`

// planRow is a version row to write (from the log row of its starting change) or, with drop, a
// stored row to delete.
type planRow struct {
	key                string
	start              Seq
	sk                 string
	validTo            sql.NullTime
	isCurrent, deleted bool
	drop               bool
}

// applyPlan deletes the dropped rows and inserts the new ones, taking their attributes from the
// log row of the change that started each (logged before, or by this transaction's append).
func (w dimWriter) applyPlan(ctx context.Context, tx *sql.Tx, plan []planRow, now time.Time) error {
	if len(plan) == 0 {
		return nil
	}
	s := w.spec
	err := w.stage(ctx, "dim_stage_plan", []string{"k", "lsn", "ord", "sk", "valid_to", "is_current", "deleted", "drop"}, len(plan),
		func(v []driver.Value, i int) {
			p := &plan[i]
			v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7] = nil, nil, nil, p.sk, nil, nil, nil, p.drop
			if !p.drop {
				v[0], v[1], v[2], v[5], v[6] = p.key, p.start.LSN, p.start.Ordinal, p.isCurrent, p.deleted
				if p.validTo.Valid {
					v[4] = p.validTo.Time
				}
			}
		})
	if err != nil {
		return fmt.Errorf("stage plan: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE `+s.surrogate+` IN (SELECT sk FROM dim_stage_plan WHERE "drop")`); err != nil {
		return err
	}
	cols := append([]string{s.surrogate, s.key}, s.attrs...)
	cols = append(cols, "valid_from", "valid_to", "is_current", "deleted", "source_lsn", "source_ordinal", "attr_hash", "source", "loaded_at")
	sel := append([]string{"v.sk", "c." + s.key}, prefixed("c.", s.attrs)...)
	sel = append(sel, "c.valid_from", "v.valid_to", "v.is_current", "v.deleted", "c.source_lsn", "c.source_ordinal", "c.attr_hash", "c.source", "?::TIMESTAMPTZ")
	r, err := tx.ExecContext(ctx, `INSERT INTO `+s.table+` (`+strings.Join(cols, ", ")+`)
SELECT `+strings.Join(sel, ", ")+`
FROM `+s.log+` c JOIN dim_stage_plan v ON c.`+s.key+` = v.k AND c.source_lsn = v.lsn AND c.source_ordinal = v.ord
WHERE NOT v."drop"`, now)
	if err != nil {
		return err
	}
	want := 0
	for _, p := range plan {
		if !p.drop {
			want++
		}
	}
	if got, err := r.RowsAffected(); err == nil && got != int64(want) {
		return fmt.Errorf("wrote %d version rows, want %d: the change log lacks a version's change", got, want)
	}
	return nil
}

// stage appends n rows to a staging table with the appender.
func (w dimWriter) stage(ctx context.Context, table string, cols []string, n int, fill func(v []driver.Value, i int)) error {
	return w.d.writer.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderWithColumns(dc.(driver.Conn), "temp", "main", table, cols)
		if err != nil {
			return err
		}
		vals := make([]driver.Value, len(cols))
		for i := range n {
			fill(vals, i)
			if err := a.AppendRow(vals...); err != nil {
				return errors.Join(err, a.Clear(), a.Close())
			}
		}
		return a.CloseWithCancel(ctx)
	})
}

func sameTime(a, b sql.NullTime) bool {
	return a.Valid == b.Valid && (!a.Valid || a.Time.Equal(b.Time))
}

func prefixed(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// loggedChanges reads the logged changes of the staged keys.
func (w dimWriter) loggedChanges(ctx context.Context, tx *sql.Tx) (map[string][]DimChange, error) {
	s := w.spec
	out := map[string][]DimChange{}
	rows, err := tx.QueryContext(ctx, `SELECT c.`+s.key+`, c.source_lsn, c.source_ordinal, c.valid_from, c.op = 'delete', coalesce(c.attr_hash, '')
FROM `+s.log+` c SEMI JOIN dim_stage_keys k ON c.`+s.key+` = k.k`)
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
	return out, errors.Join(rows.Err(), rows.Close())
}

// storedVersions reads the stored version rows of the staged keys, by surrogate key.
func (w dimWriter) storedVersions(ctx context.Context, tx *sql.Tx) (map[string]map[string]storedVersion, error) {
	s := w.spec
	out := map[string]map[string]storedVersion{}
	rows, err := tx.QueryContext(ctx, `SELECT d.`+s.key+`, d.`+s.surrogate+`, d.valid_to, d.is_current, d.deleted
FROM `+s.table+` d SEMI JOIN dim_stage_keys k ON d.`+s.key+` = k.k`)
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
	return out, errors.Join(rows.Err(), rows.Close())
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
