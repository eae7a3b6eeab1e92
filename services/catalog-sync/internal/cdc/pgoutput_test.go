package cdc

import (
	"encoding/binary"
	"time"
)

// pgoutput protocol version 1 messages, encoded as the server sends them
// (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html),
// for the decoder's unit tests.

type enc []byte

func (e enc) u8(b byte) enc      { return append(e, b) }
func (e enc) u16(v uint16) enc   { return binary.BigEndian.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc   { return binary.BigEndian.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc   { return binary.BigEndian.AppendUint64(e, v) }
func (e enc) str(s string) enc   { return append(append(e, s...), 0) }
func (e enc) ts(t time.Time) enc { return e.u64(uint64(t.UnixMicro() - 946684800000000)) }
func (e enc) tuple(cols ...col) enc {
	e = e.u16(uint16(len(cols)))
	for _, c := range cols {
		e = e.u8(c.kind)
		if c.kind == 't' {
			e = e.u32(uint32(len(c.text))).raw(c.text)
		}
	}
	return e
}
func (e enc) raw(s string) enc { return append(e, s...) }

// col is one tuple column: t (text), n (NULL) or u (unchanged TOAST).
type col struct {
	kind byte
	text string
}

func txt(s string) col { return col{kind: 't', text: s} }

var (
	null    = col{kind: 'n'}
	toasted = col{kind: 'u'}
)

type relCol struct {
	name string
	oid  uint32
	key  bool
}

func msgRelation(id uint32, ns, name string, cols ...relCol) []byte {
	e := enc{'R'}.u32(id).str(ns).str(name).u8('f').u16(uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		e = e.u8(flags).str(c.name).u32(c.oid).u32(0xffffffff)
	}
	return e
}

func msgBegin(final LSN, commit time.Time, xid uint32) []byte {
	return enc{'B'}.u64(uint64(final)).ts(commit).u32(xid)
}

func msgCommit(commitLSN, end LSN, commit time.Time) []byte {
	return enc{'C'}.u8(0).u64(uint64(commitLSN)).u64(uint64(end)).ts(commit)
}

func msgInsert(rel uint32, cols ...col) []byte { return enc{'I'}.u32(rel).u8('N').tuple(cols...) }

// msgUpdate: old nil = no old tuple (identity DEFAULT, key unchanged); else
// the full old row ('O', REPLICA IDENTITY FULL).
func msgUpdate(rel uint32, old, new []col) []byte { return msgUpdateKind(rel, 'O', old, new) }

// msgUpdateKind: kind 'K' = a key-only old tuple (a key-changing update
// under identity DEFAULT: the key columns, NULL for the others).
func msgUpdateKind(rel uint32, kind byte, old, new []col) []byte {
	e := enc{'U'}.u32(rel)
	if old != nil {
		e = e.u8(kind).tuple(old...)
	}
	return e.u8('N').tuple(new...)
}

func msgDelete(rel uint32, kind byte, cols ...col) []byte {
	return enc{'D'}.u32(rel).u8(kind).tuple(cols...)
}

func msgTruncate(rels ...uint32) []byte {
	e := enc{'T'}.u32(uint32(len(rels))).u8(0)
	for _, r := range rels {
		e = e.u32(r)
	}
	return e
}
