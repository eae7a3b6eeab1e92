package cdc

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// ErrUnchangedToast is returned when an update's new tuple leaves a TOASTed
// column unchanged (pgoutput does not send its value) and the message has no
// full old row to take it from (no old tuple, or only the key columns of a
// key-changing update): the table is not REPLICA IDENTITY FULL. Emitting the
// row without the column would publish a wrong value, so the stream stops;
// README.md says how to recover.
var ErrUnchangedToast = errors.New("cdc: unchanged TOASTed value without an old tuple (is the table REPLICA IDENTITY FULL?)")

// decoder turns pgoutput (protocol version 1) messages into transactions. It
// keeps the relations the server described (they stay valid for the
// session) and the transaction being received. Not safe for concurrent use.
type decoder struct {
	relations map[uint32]*pglogrepl.RelationMessage
	// keys maps "schema.table" to its primary key columns (read by Run). A
	// REPLICA IDENTITY FULL relation flags every column as part of the
	// identity, so the flags do not tell its key.
	keys map[string][]string
	tx   *Tx // between BEGIN and COMMIT
	// toastFilled counts unchanged TOASTed values taken from the old tuple.
	toastFilled int
}

func newDecoder() *decoder {
	return &decoder{relations: map[uint32]*pglogrepl.RelationMessage{}}
}

// inTx reports whether a BEGIN was received without its COMMIT yet.
func (d *decoder) inTx() bool { return d.tx != nil }

// decode handles one pgoutput message and returns the transaction it
// completes (on COMMIT), or nil.
func (d *decoder) decode(data []byte) (*Tx, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cdc: parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		if d.tx != nil {
			return nil, fmt.Errorf("cdc: BEGIN of xid %d inside xid %d", m.Xid, d.tx.Xid)
		}
		d.tx = &Tx{Xid: m.Xid, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime.UTC()}
	case *pglogrepl.CommitMessage:
		if d.tx == nil {
			return nil, fmt.Errorf("cdc: COMMIT at %s without BEGIN", m.CommitLSN)
		}
		tx := d.tx
		d.tx = nil
		if m.CommitLSN != tx.CommitLSN {
			return nil, fmt.Errorf("cdc: xid %d: COMMIT LSN %s differs from BEGIN's final LSN %s", tx.Xid, m.CommitLSN, tx.CommitLSN)
		}
		tx.EndLSN = m.TransactionEndLSN
		return tx, nil
	case *pglogrepl.InsertMessage:
		return nil, d.change(m.RelationID, OpUpsert, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return nil, d.update(m)
	case *pglogrepl.DeleteMessage:
		return nil, d.change(m.RelationID, OpDelete, nil, m.OldTuple)
	case *pglogrepl.TruncateMessage:
		if d.tx == nil {
			return nil, errors.New("cdc: TRUNCATE outside a transaction")
		}
		for _, id := range m.RelationIDs {
			rel, ok := d.relations[id]
			if !ok {
				return nil, fmt.Errorf("cdc: TRUNCATE of unknown relation %d", id)
			}
			d.tx.Truncated = append(d.tx.Truncated, rel.Namespace+"."+rel.RelationName)
		}
	default:
		// Origin, Type and logical decoding messages carry no row changes.
	}
	return nil, nil
}

// update appends an update's changes. An update that changes the row's key
// (its old tuple, full 'O' or key-only 'K', has another key) is a delete of
// the old key followed by an upsert of the new row, so the old key does not
// live on downstream. Only a full old row ('O', REPLICA IDENTITY FULL) fills
// the new row's unchanged TOASTed columns: a key-only one holds NULL for
// every other column.
func (d *decoder) update(m *pglogrepl.UpdateMessage) error {
	var full *pglogrepl.TupleData
	if m.OldTuple != nil {
		if d.tx == nil {
			return fmt.Errorf("cdc: %s of relation %d outside a transaction", OpUpsert, m.RelationID)
		}
		rel, ok := d.relations[m.RelationID]
		if !ok {
			return fmt.Errorf("cdc: change of unknown relation %d (no RELATION message)", m.RelationID)
		}
		if m.NewTuple == nil || len(m.OldTuple.Columns) != len(rel.Columns) || len(m.NewTuple.Columns) != len(rel.Columns) {
			return fmt.Errorf("cdc: %s.%s: tuple does not match the relation's %d columns", rel.Namespace, rel.RelationName, len(rel.Columns))
		}
		if d.keyChanged(rel, m.OldTuple, m.NewTuple) {
			if err := d.change(m.RelationID, OpDelete, nil, m.OldTuple); err != nil {
				return err
			}
		}
		if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld {
			full = m.OldTuple
		}
	}
	return d.change(m.RelationID, OpUpsert, full, m.NewTuple)
}

// keyChanged reports whether an update's new tuple has another key than its
// old tuple. The key is the table's primary key when Run read it, else the
// relation's replica identity columns; a relation flagging every column (FULL)
// with no known primary key has no key to compare, so no change is seen. A
// key column that cannot be compared (an unchanged TOASTed value in the old
// tuple only) counts as changed: a delete too many is followed by the upsert.
func (d *decoder) keyChanged(rel *pglogrepl.RelationMessage, old, tuple *pglogrepl.TupleData) bool {
	var idx []int
	if names, ok := d.keys[rel.Namespace+"."+rel.RelationName]; ok {
		for _, n := range names {
			for i, c := range rel.Columns {
				if c.Name == n {
					idx = append(idx, i)
				}
			}
		}
	} else {
		for i, c := range rel.Columns {
			if c.Flags&1 != 0 {
				idx = append(idx, i)
			}
		}
		if len(idx) == len(rel.Columns) {
			idx = nil
		}
	}
	for _, i := range idx {
		o, n := old.Columns[i], tuple.Columns[i]
		switch {
		case n.DataType == pglogrepl.TupleDataTypeToast:
			// unchanged
		case o.DataType != n.DataType || string(o.Data) != string(n.Data):
			return true
		}
	}
	return false
}

// change appends one row change to the transaction. tuple is the new row
// (insert, update) or the old row (delete); old, if not nil, is an update's
// full old row and fills the new tuple's unchanged TOASTed columns.
func (d *decoder) change(relID uint32, op Op, old, tuple *pglogrepl.TupleData) error {
	if d.tx == nil {
		return fmt.Errorf("cdc: %s of relation %d outside a transaction", op, relID)
	}
	rel, ok := d.relations[relID]
	if !ok {
		return fmt.Errorf("cdc: change of unknown relation %d (no RELATION message)", relID)
	}
	table := rel.Namespace + "." + rel.RelationName
	if tuple == nil || len(tuple.Columns) != len(rel.Columns) {
		return fmt.Errorf("cdc: %s: tuple does not match the relation's %d columns", table, len(rel.Columns))
	}
	row := make(Row, len(rel.Columns))
	for i, col := range tuple.Columns {
		rc := rel.Columns[i]
		v := Value{Type: rc.DataType}
		switch col.DataType {
		case pglogrepl.TupleDataTypeText:
			v.Text = string(col.Data)
		case pglogrepl.TupleDataTypeNull:
			v.Null = true
		case pglogrepl.TupleDataTypeToast:
			if old == nil || len(old.Columns) != len(rel.Columns) || old.Columns[i].DataType == pglogrepl.TupleDataTypeToast {
				return fmt.Errorf("%w: %s.%s", ErrUnchangedToast, table, rc.Name)
			}
			o := old.Columns[i]
			v.Null = o.DataType == pglogrepl.TupleDataTypeNull
			v.Text = string(o.Data)
			d.toastFilled++
		default:
			return fmt.Errorf("cdc: %s.%s: unsupported tuple data type %q (binary mode is not requested)", table, rc.Name, col.DataType)
		}
		row[rc.Name] = v
	}
	d.tx.Changes = append(d.tx.Changes, Change{
		Table:      table,
		Op:         op,
		Row:        row,
		LSN:        d.tx.CommitLSN,
		Ordinal:    len(d.tx.Changes) + 1,
		CommitTime: d.tx.CommitTime,
		Xid:        d.tx.Xid,
	})
	return nil
}
