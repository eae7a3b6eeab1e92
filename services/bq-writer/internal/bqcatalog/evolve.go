package bqcatalog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
)

// AddColumns adds cols to a raw table as NULLABLE (or REPEATED) columns and returns the table's
// schema once tables.get shows every one of them. Columns the table has already are left alone,
// so a second call, or a call racing another writer, is a no-op.
//
// It reads the table first and changes nothing when every column is there (table updates have a
// small per-table quota, shared by every writer). Each missing column is one `ALTER TABLE ... ADD
// COLUMN IF NOT EXISTS` (BigQuery: that is all it takes; the emulator changes only its storage).
// If tables.get still lacks a column afterwards (the emulator), the catalog patches the schema
// with the missing columns appended, under the etag it read; a concurrent change (412) makes it
// read the table again and retry once. Calls are serialised within the process, so partitions
// discovering the same field at once cost one change.
func (c *Catalog) AddColumns(ctx context.Context, table string, cols []*storagepb.TableFieldSchema) (*storagepb.TableSchema, error) {
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("bqcatalog: invalid table name %q", table)
	}
	defs := make([]string, len(cols))
	for i, col := range cols {
		def, err := columnType(col)
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: add column to %s: %w", table, err)
		}
		defs[i] = def
	}
	c.evolveMu.Lock()
	defer c.evolveMu.Unlock()
	md, err := c.tableMetadata(ctx, table)
	if err != nil {
		return nil, err
	}
	missing, err := missingColumns(md.Schema, cols)
	if err != nil {
		return nil, fmt.Errorf("bqcatalog: add columns to %s: %w", table, err)
	}
	if len(missing) == 0 {
		return toStorage(table, md.Schema)
	}
	for i, col := range cols {
		if !slices.Contains(missing, col) {
			continue
		}
		sql := fmt.Sprintf("ALTER TABLE `%s.%s.%s` ADD COLUMN IF NOT EXISTS `%s` %s",
			c.cfg.Project, c.cfg.Datasets.Raw, table, col.GetName(), defs[i])
		if err := c.exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("bqcatalog: add column %s to %s: %w", col.GetName(), table, err)
		}
	}
	for attempt := 0; ; attempt++ {
		md, err := c.tableMetadata(ctx, table)
		if err != nil {
			return nil, err
		}
		missing, err := missingColumns(md.Schema, cols)
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: add columns to %s: %w", table, err)
		}
		if len(missing) == 0 {
			return toStorage(table, md.Schema)
		}
		add, err := adapt.StorageTableSchemaToBQSchema(&storagepb.TableSchema{Fields: missing})
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: add columns to %s: %w", table, err)
		}
		schema := append(append(bigquery.Schema{}, md.Schema...), add...)
		tbl := c.bq.Dataset(c.cfg.Datasets.Raw).Table(table)
		md, err = tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, md.ETag)
		if isStatus(err, http.StatusPreconditionFailed) && attempt == 0 {
			continue // changed since we read it: read again, patch what is still missing
		}
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: patch schema of %s.%s.%s: %w", c.cfg.Project, c.cfg.Datasets.Raw, table, err)
		}
		missing, err = missingColumns(md.Schema, cols)
		if err != nil {
			return nil, fmt.Errorf("bqcatalog: patch schema of %s: %w", table, err)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("bqcatalog: patch schema of %s: columns still missing after the patch: %s", table, fieldNames(missing))
		}
		return toStorage(table, md.Schema)
	}
}

// missingColumns returns the cols the schema lacks (BigQuery column names are case-insensitive)
// and fails when a column exists with another type: no write could carry it.
func missingColumns(have bigquery.Schema, cols []*storagepb.TableFieldSchema) ([]*storagepb.TableFieldSchema, error) {
	ts, err := adapt.BQSchemaToStorageTableSchema(have)
	if err != nil {
		return nil, err
	}
	byName := map[string]*storagepb.TableFieldSchema{}
	for _, f := range ts.GetFields() {
		byName[strings.ToLower(f.GetName())] = f
	}
	var missing []*storagepb.TableFieldSchema
	var errs []error
	for _, col := range cols {
		f, ok := byName[strings.ToLower(col.GetName())]
		if !ok {
			missing = append(missing, col)
			continue
		}
		if f.GetType() != col.GetType() || (f.GetMode() == storagepb.TableFieldSchema_REPEATED) != (col.GetMode() == storagepb.TableFieldSchema_REPEATED) {
			errs = append(errs, fmt.Errorf("column %s is %s %s, want %s %s", f.GetName(), f.GetMode(), f.GetType(), col.GetMode(), col.GetType()))
		}
	}
	return missing, errors.Join(errs...)
}

func fieldNames(fs []*storagepb.TableFieldSchema) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.GetName()
	}
	return strings.Join(names, ", ")
}

var sqlTypes = map[storagepb.TableFieldSchema_Type]string{
	storagepb.TableFieldSchema_STRING:     "STRING",
	storagepb.TableFieldSchema_INT64:      "INT64",
	storagepb.TableFieldSchema_DOUBLE:     "FLOAT64",
	storagepb.TableFieldSchema_BYTES:      "BYTES",
	storagepb.TableFieldSchema_BOOL:       "BOOL",
	storagepb.TableFieldSchema_TIMESTAMP:  "TIMESTAMP",
	storagepb.TableFieldSchema_DATE:       "DATE",
	storagepb.TableFieldSchema_TIME:       "TIME",
	storagepb.TableFieldSchema_DATETIME:   "DATETIME",
	storagepb.TableFieldSchema_GEOGRAPHY:  "GEOGRAPHY",
	storagepb.TableFieldSchema_NUMERIC:    "NUMERIC",
	storagepb.TableFieldSchema_BIGNUMERIC: "BIGNUMERIC",
	storagepb.TableFieldSchema_INTERVAL:   "INTERVAL",
	storagepb.TableFieldSchema_JSON:       "JSON",
}

// columnType renders a column's GoogleSQL type for ADD COLUMN. A new column cannot be REQUIRED
// (rows written before it have no value), at any depth.
func columnType(f *storagepb.TableFieldSchema) (string, error) {
	if !identRE.MatchString(f.GetName()) {
		return "", fmt.Errorf("invalid column name %q", f.GetName())
	}
	if f.GetMode() == storagepb.TableFieldSchema_REQUIRED {
		return "", fmt.Errorf("column %s is REQUIRED; an added column must be NULLABLE or REPEATED", f.GetName())
	}
	var t string
	if f.GetType() == storagepb.TableFieldSchema_STRUCT {
		if len(f.GetFields()) == 0 {
			return "", fmt.Errorf("column %s is a STRUCT without fields", f.GetName())
		}
		parts := make([]string, len(f.GetFields()))
		for i, sub := range f.GetFields() {
			st, err := columnType(sub)
			if err != nil {
				return "", fmt.Errorf("%s.%w", f.GetName(), err)
			}
			parts[i] = "`" + sub.GetName() + "` " + st
		}
		t = "STRUCT<" + strings.Join(parts, ", ") + ">"
	} else {
		var ok bool
		if t, ok = sqlTypes[f.GetType()]; !ok {
			return "", fmt.Errorf("column %s has type %s, which ADD COLUMN cannot take", f.GetName(), f.GetType())
		}
	}
	if f.GetMode() == storagepb.TableFieldSchema_REPEATED {
		t = "ARRAY<" + t + ">"
	}
	return t, nil
}
