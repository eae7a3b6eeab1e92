package cdc

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// ErrUnchangedToast is returned when an update's new tuple leaves a TOASTed
// column unchanged (pgoutput does not send its value) and the message has no
// old tuple to take it from: the table is not REPLICA IDENTITY FULL. Emitting
// the row without the column would publish a wrong value, so the stream stops;
// README.md says how to recover.
var ErrUnchangedToast = errors.New("cdc: unchanged TOASTed value without an old tuple (is the table REPLICA IDENTITY FULL?)")

// decoder turns pgoutput (protocol version 1) messages into transactions. It
// keeps the relations the server described (they stay valid for the
// session) and the transaction being received. Not safe for concurrent use.
type decoder struct {
	relations map[uint32]*pglogrepl.RelationMessage
	tx        *Tx // between BEGIN and COMMIT
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
		return nil, d.change(m.RelationID, OpUpsert, m.OldTuple, m.NewTuple)
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

// change appends one row change to the transaction. tuple is the new row
// (insert, update) or the old row (delete); old is an update's old tuple, if
// the message has one, and fills the new tuple's unchanged TOASTed columns.
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
