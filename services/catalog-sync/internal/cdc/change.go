package cdc

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// LSN is a PostgreSQL WAL position.
type LSN = pglogrepl.LSN

// Op is what a change does to its row downstream.
type Op string

const (
	// OpUpsert is an insert or an update: Row is the new row.
	OpUpsert Op = "upsert"
	// OpDelete is a hard delete: Row is the old row (complete with REPLICA
	// IDENTITY FULL, only the key columns otherwise).
	OpDelete Op = "delete"
)

// Change is one row change of a committed transaction.
type Change struct {
	// Table is "schema.name".
	Table string
	Op    Op
	// Row maps every column name to its value in PostgreSQL's text format.
	Row Row
	// LSN is the commit LSN of the change's transaction; with Ordinal it is
	// the change's source sequence, (LSN, Ordinal) ordered lexicographically.
	LSN LSN
	// Ordinal is the change's position within its transaction, from 1.
	Ordinal int
	// CommitTime is the transaction's commit timestamp (from BEGIN), equal to
	// pg_xact_commit_timestamp of the rows it wrote.
	CommitTime time.Time
	// Xid is the transaction id.
	Xid uint32
}

// Tx is one committed transaction's changes, in the order they were made.
type Tx struct {
	Xid uint32
	// CommitLSN is the LSN of the commit record (every Change's LSN); pass it
	// to Stream.Confirm once the changes are committed downstream.
	CommitLSN LSN
	// EndLSN is the end of the commit record: the slot position that
	// acknowledges this transaction.
	EndLSN     LSN
	CommitTime time.Time
	// Changes holds the row changes, Ordinal 1..len(Changes). It can be empty
	// when the transaction only truncated tables.
	Changes []Change
	// Truncated lists the tables ("schema.name") the transaction truncated.
	// A truncate carries no rows: the consumer reconciles with a snapshot.
	Truncated []string
}

// Row is a row as column name -> value.
type Row map[string]Value

// Value is one column's value as pgoutput sends it: PostgreSQL's text format
// (with the replication session's DateStyle ISO and TimeZone UTC).
type Value struct {
	// Type is the column's type OID (pgtype.TextOID, pgtype.Int8OID, ...).
	Type uint32
	Null bool
	Text string
}

// String returns the text value; "" for NULL.
func (v Value) String() string { return v.Text }

// Int64 decodes an integer column (smallint, integer, bigint).
func (v Value) Int64() (int64, error) {
	if v.Null {
		return 0, fmt.Errorf("cdc: NULL is not an integer")
	}
	n, err := strconv.ParseInt(v.Text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cdc: integer %q: %w", v.Text, err)
	}
	return n, nil
}

// Bool decodes a boolean column ("t" or "f").
func (v Value) Bool() (bool, error) {
	switch {
	case v.Null:
		return false, fmt.Errorf("cdc: NULL is not a boolean")
	case v.Text == "t":
		return true, nil
	case v.Text == "f":
		return false, nil
	}
	return false, fmt.Errorf("cdc: boolean %q: want t or f", v.Text)
}

// Time decodes a timestamptz (or timestamp, read as UTC) column. Infinite
// timestamps are an error: no catalog column holds them.
func (v Value) Time() (time.Time, error) {
	if v.Null {
		return time.Time{}, fmt.Errorf("cdc: NULL is not a timestamp")
	}
	if v.Type == pgtype.TimestampOID {
		var ts pgtype.Timestamp
		if err := ts.Scan(v.Text); err != nil {
			return time.Time{}, fmt.Errorf("cdc: timestamp %q: %w", v.Text, err)
		}
		if ts.InfinityModifier != pgtype.Finite {
			return time.Time{}, fmt.Errorf("cdc: timestamp %q is infinite", v.Text)
		}
		return ts.Time.UTC(), nil
	}
	var ts pgtype.Timestamptz
	if err := ts.Scan(v.Text); err != nil {
		return time.Time{}, fmt.Errorf("cdc: timestamptz %q: %w", v.Text, err)
	}
	if ts.InfinityModifier != pgtype.Finite {
		return time.Time{}, fmt.Errorf("cdc: timestamptz %q is infinite", v.Text)
	}
	return ts.Time.UTC(), nil
}

// Any decodes the value by its type: nil for NULL; int64 for smallint,
// integer and bigint; bool for boolean; time.Time (UTC) for timestamptz and
// timestamp; the text as a string for every other type (text, varchar,
// numeric, ...).
func (v Value) Any() (any, error) {
	if v.Null {
		return nil, nil
	}
	switch v.Type {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return v.Int64()
	case pgtype.BoolOID:
		return v.Bool()
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		return v.Time()
	}
	return v.Text, nil
}
