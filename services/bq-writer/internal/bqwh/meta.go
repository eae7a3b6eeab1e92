package bqwh

import (
	"encoding/json"
	"fmt"
	"strings"
)

// metadataVersion is the "v" of the Kafka commit metadata.
const metadataVersion = 1

// MaxMetadataBytes is the size the commit metadata of one partition stays under (Kafka's default
// offset.metadata.max.bytes is 4096).
const MaxMetadataBytes = 4000

// metadata is one partition's Kafka commit metadata: per raw table the COMMITTED stream the
// partition's rows go to, the stream's row count after the committed offset's records, and
// (when not 0) how many rows of the records after the committed offset are already stored in
// older, finalized streams: the next owner skips those first (see the package documentation).
type metadata struct {
	V int               `json:"v"`
	S map[string]string `json:"s"`
	R map[string]int64  `json:"r"`
	K map[string]int64  `json:"k,omitempty"`
}

func (m metadata) encode() (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("bqwh: encode commit metadata: %w", err)
	}
	if len(b) >= MaxMetadataBytes {
		return "", fmt.Errorf("bqwh: commit metadata is %d bytes, the limit is %d", len(b), MaxMetadataBytes)
	}
	return string(b), nil
}

// isOurs reports whether a Kafka commit's metadata is bq-writer's: a JSON object with a "v". Empty
// metadata (a reset with the Kafka CLI) and anything else (franz-go's default, the member id, when
// the group ran on DuckDB; another tool's) is not, and names no BigQuery position.
func isOurs(s string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &obj) != nil {
		return false
	}
	_, ok := obj["v"]
	return ok
}

// decodeMetadata decodes bq-writer's commit metadata (isOurs(s) is true).
func decodeMetadata(s string) (metadata, error) {
	var m metadata
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return m, fmt.Errorf("bqwh: commit metadata %q is not bq-writer's: %w", s, err)
	}
	if m.V != metadataVersion {
		return m, fmt.Errorf("bqwh: commit metadata version %d, want %d", m.V, metadataVersion)
	}
	for t, name := range m.S {
		if _, ok := writerColumns[t]; !ok {
			return m, fmt.Errorf("bqwh: commit metadata names an unknown table %q", t)
		}
		if name == "" {
			return m, fmt.Errorf("bqwh: commit metadata names no stream for %s", t)
		}
		if r, ok := m.R[t]; !ok || r < 0 {
			return m, fmt.Errorf("bqwh: commit metadata has no row count for %s", t)
		}
	}
	for t, k := range m.K {
		if _, ok := m.S[t]; !ok || k < 0 {
			return m, fmt.Errorf("bqwh: commit metadata skips %d rows of %s, which it names no stream for", k, t)
		}
	}
	return m, nil
}

// belongs reports whether a stream name is one of table's streams in this project and raw
// dataset: a commit of another environment (BIGQUERY_PROJECT or BIGQUERY_DATASET_PREFIX changed,
// the group kept) names streams whose rows are not in this writer's tables.
func (w *Warehouse) belongs(table, stream string) bool {
	return strings.HasPrefix(stream, w.tablePath(table)+"/streams/")
}
