package avroserde

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func TestGenericDecode(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	const schemaText = `{"type":"record","name":"Thing","namespace":"ecom.test","fields":[
 {"name":"id","type":"string"},{"name":"n","type":"int"},{"name":"email","type":["null","string"],"default":null},
 {"name":"tags","type":{"type":"array","items":"string"}}]}`
	ss, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ss.CreateSchema(context.Background(), "things-value", sr.Schema{Schema: schemaText, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(avro.MustParse(schemaText), map[string]any{"id": "t-1", "n": 7, "email": "a@b.example", "tags": []any{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{URL: reg.URL(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := r.Generic()
	tests := []struct {
		name    string
		give    []byte
		wantID  int
		wantErr error // nil = decodes
		anyErr  bool
	}{
		{name: "registered", give: frame(got.ID, body), wantID: got.ID},
		{name: "cached", give: frame(got.ID, body), wantID: got.ID},
		{name: "not framed", give: []byte(`{"id":"x"}`), wantErr: ErrNotFramed},
		{name: "unknown id", give: frame(got.ID+100, body), wantID: got.ID + 100, anyErr: true},
		{name: "body too short", give: frame(got.ID, body[:3]), wantID: got.ID, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, v, err := g.Decode(context.Background(), tt.give)
			if id != tt.wantID {
				t.Errorf("id = %d, want %d", id, tt.wantID)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.anyErr:
				if err == nil {
					t.Fatalf("decoded %v, want an error", v)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				m, ok := v.(map[string]any)
				if !ok || m["id"] != "t-1" || m["n"] != 7 || m["email"] != "a@b.example" {
					t.Fatalf("value = %#v", v)
				}
			}
		})
	}
}
