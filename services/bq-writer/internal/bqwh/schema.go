package bqwh

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// tableSchema is what the writer needs to build one raw table's rows: the message of the table's
// schema (as it was when the writer loaded it) and the field of each writer column.
type tableSchema struct {
	name   string
	md     protoreflect.MessageDescriptor
	dp     *descriptorpb.DescriptorProto
	fields []protoreflect.FieldDescriptor // by writerColumns[name] index
}

func findField(fields []*storagepb.TableFieldSchema, name string) *storagepb.TableFieldSchema {
	for _, f := range fields {
		if strings.EqualFold(f.GetName(), name) {
			return f
		}
	}
	return nil
}

// loadSchema reads a raw table's schema, adds the writer columns it lacks (NULLABLE) and builds the
// row message. A column of the wrong type, or a REQUIRED column the writer does not fill, is an
// error: no row could be stored.
func loadSchema(ctx context.Context, cat Catalog, table string) (*tableSchema, error) {
	wcols := writerColumns[table]
	ts, err := cat.Schema(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("bqwh: schema of %s: %w", table, err)
	}
	var missing []*storagepb.TableFieldSchema
	for _, c := range wcols {
		if findField(ts.GetFields(), c.name) == nil {
			missing = append(missing, &storagepb.TableFieldSchema{Name: c.name, Type: c.typ, Mode: storagepb.TableFieldSchema_NULLABLE})
		}
	}
	if len(missing) > 0 {
		if ts, err = cat.AddColumns(ctx, table, missing); err != nil {
			return nil, fmt.Errorf("bqwh: add columns to %s: %w", table, err)
		}
	}
	for _, c := range wcols {
		f := findField(ts.GetFields(), c.name)
		switch {
		case f == nil:
			return nil, fmt.Errorf("bqwh: column %s.%s is still missing after adding it", table, c.name)
		case f.GetType() != c.typ:
			return nil, fmt.Errorf("bqwh: column %s.%s is %v, the writer writes %v", table, c.name, f.GetType(), c.typ)
		}
	}
	for _, f := range ts.GetFields() {
		if f.GetMode() != storagepb.TableFieldSchema_REQUIRED {
			continue
		}
		found := false
		for _, c := range wcols {
			found = found || strings.EqualFold(c.name, f.GetName())
		}
		if !found {
			return nil, fmt.Errorf("bqwh: column %s.%s is REQUIRED and the writer does not fill it", table, f.GetName())
		}
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
	if err != nil {
		return nil, fmt.Errorf("bqwh: row message of %s: %w", table, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("bqwh: row message of %s: not a message descriptor", table)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, fmt.Errorf("bqwh: normalize row message of %s: %w", table, err)
	}
	s := &tableSchema{name: table, md: md, dp: dp, fields: make([]protoreflect.FieldDescriptor, len(wcols))}
	byName := map[string]protoreflect.FieldDescriptor{}
	fds := md.Fields()
	for i := range fds.Len() {
		byName[strings.ToLower(string(fds.Get(i).Name()))] = fds.Get(i)
	}
	for i, c := range wcols {
		if s.fields[i] = byName[strings.ToLower(c.name)]; s.fields[i] == nil {
			return nil, fmt.Errorf("bqwh: row message of %s has no field %s", table, c.name)
		}
		if k := s.fields[i].Kind(); k != kindOf[c.typ] || s.fields[i].IsList() {
			return nil, fmt.Errorf("bqwh: row message of %s: field %s is %v, want a single %v", table, c.name, k, kindOf[c.typ])
		}
	}
	return s, nil
}

// kindOf is the proto field kind adapt gives each column type the writer writes.
var kindOf = map[storagepb.TableFieldSchema_Type]protoreflect.Kind{
	tString: protoreflect.StringKind, tInt64: protoreflect.Int64Kind, tBool: protoreflect.BoolKind,
	tTimestamp: protoreflect.Int64Kind, tDate: protoreflect.Int32Kind,
}

// encode serializes one row given its values in writerColumns order, straight to the wire format
// of the row message (a dynamicpb round trip costs several times more). loadSchema checked every
// field's kind against kindOf.
func (s *tableSchema) encode(vals []any) ([]byte, error) {
	b := make([]byte, 0, 256)
	for i, v := range vals {
		fd := s.fields[i]
		num := fd.Number()
		switch x := v.(type) {
		case nil:
			if fd.Cardinality() == protoreflect.Required {
				return nil, fmt.Errorf("bqwh: %s.%s is REQUIRED and the row has no value", s.name, fd.Name())
			}
		case string:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, x)
		case int64:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(x))
		case bool:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(x))
		case time.Time:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			if fd.Kind() == protoreflect.Int32Kind { // DATE: days since the epoch
				b = protowire.AppendVarint(b, uint64(int64(int32(x.Unix()/86400))))
			} else { // TIMESTAMP: microseconds since the epoch
				b = protowire.AppendVarint(b, uint64(x.UnixMicro()))
			}
		default:
			return nil, fmt.Errorf("bqwh: %s.%s: unsupported value type %T", s.name, fd.Name(), v)
		}
	}
	return b, nil
}
