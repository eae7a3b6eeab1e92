package queryapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// appendValue appends v, a value as the DuckDB driver returns it, as JSON. Every value gives
// well-formed JSON, including those encoding/json refuses:
//
//	DOUBLE/FLOAT NaN, +Inf, -Inf   "NaN", "Infinity", "-Infinity" (strings; JSON has no such numbers)
//	MAP                            object; non-string keys as their text (as DuckDB's to_json)
//	TIMESTAMP 'infinity', years    RFC 3339 text whatever the year (encoding/json refuses
//	outside 0..9999                years outside 0..9999)
//	HUGEINT, UHUGEINT, BIGNUM      number, exact (may exceed what a float64 client reads exactly)
//	DECIMAL                        number, exact
//	UUID column                    "xxxxxxxx-xxxx-..." (inside a list, struct or map: base64 of its 16 bytes)
//	INTERVAL                       {"months": m, "days": d, "micros": u}
//	UNION                          {"tag": t, "value": v}
//	BIT                            "0101"
//	BLOB                           base64 text (as encoding/json)
//
// Lists, structs and maps are encoded element by element, so a NaN inside them is handled too. A
// type not listed falls back to encoding/json and, if that fails, to its fmt text.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case string:
		return appendString(b, v)
	case int8:
		return strconv.AppendInt(b, int64(v), 10)
	case int16:
		return strconv.AppendInt(b, int64(v), 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case float32:
		return appendFloat(b, float64(v), 32)
	case float64:
		return appendFloat(b, v, 64)
	case *big.Int:
		if v == nil {
			return append(b, "null"...)
		}
		return v.Append(b, 10)
	case duckdb.Decimal:
		if v.Value == nil {
			return append(b, "null"...)
		}
		return append(b, v.String()...)
	case duckdb.UUID:
		return appendString(b, v.String())
	case time.Time:
		return appendString(b, v.Format(time.RFC3339Nano))
	case []byte:
		return appendString(b, base64.StdEncoding.EncodeToString(v))
	case duckdb.Interval:
		b = append(b, `{"months":`...)
		b = strconv.AppendInt(b, int64(v.Months), 10)
		b = append(b, `,"days":`...)
		b = strconv.AppendInt(b, int64(v.Days), 10)
		b = append(b, `,"micros":`...)
		b = strconv.AppendInt(b, v.Micros, 10)
		return append(b, '}')
	case duckdb.Union:
		b = append(b, `{"tag":`...)
		b = appendString(b, v.Tag)
		b = append(b, `,"value":`...)
		b = appendValue(b, v.Value)
		return append(b, '}')
	case duckdb.Bit:
		return appendString(b, v.String())
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, x)
		}
		return append(b, ']')
	case map[string]any: // STRUCT: fields in name order
		names := slices.Sorted(maps.Keys(v))
		keys, vals := make([]any, len(names)), make([]any, len(names))
		for i, n := range names {
			keys[i], vals[i] = n, v[n]
		}
		return appendMap(b, keys, vals)
	case duckdb.OrderedMap: // MAP (the driver returns no other map type when scanning into any)
		return appendMap(b, v.Keys(), v.Values())
	default:
		if js, err := json.Marshal(v); err == nil {
			return append(b, js...)
		}
		return appendString(b, fmt.Sprint(v))
	}
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendMap(b []byte, keys, vals []any) []byte {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, keyText(k))
		b = append(b, ':')
		b = appendValue(b, vals[i])
	}
	return append(b, '}')
}

// keyText is a map key as an object key: strings as they are, anything else as its JSON text
// (so a NaN key is "NaN", a timestamp key its RFC 3339 text).
func keyText(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	js := appendValue(nil, k)
	var s string
	if json.Unmarshal(js, &s) == nil {
		return s
	}
	return string(js)
}

// appendString appends s as a JSON string. encoding/json replaces invalid UTF-8 with U+FFFD, so
// the output stays valid JSON whatever bytes a VARCHAR holds.
func appendString(b []byte, s string) []byte {
	js, err := json.Marshal(s)
	if err != nil { // cannot happen for a string; keep the output well-formed anyway
		return append(b, `""`...)
	}
	return append(b, js...)
}
