package slice

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestBigQueryOptionsEnv(t *testing.T) {
	tests := []struct {
		name       string
		give       BigQueryOptions
		wantEnv    []string
		wantRaw    string
		wantPrefix string // "" = random bqslice_<hex>
		wantErr    string
	}{
		{name: "explicit", give: BigQueryOptions{REST: "http://127.0.0.1:19050/", GRPC: "127.0.0.1:19060", Project: "p-1", DatasetPrefix: "e2e_x"},
			wantEnv: []string{"WAREHOUSE=bigquery", "BIGQUERY_EMULATOR=true", "BIGQUERY_PROJECT=p-1", "BIGQUERY_DATASET_PREFIX=e2e_x",
				"BIGQUERY_API_ENDPOINT=http://127.0.0.1:19050", "BIGQUERY_STORAGE_ENDPOINT=127.0.0.1:19060"},
			wantRaw: "e2e_x_raw", wantPrefix: "e2e_x"},
		{name: "defaults", give: BigQueryOptions{REST: "http://127.0.0.1:1", GRPC: "127.0.0.1:2"},
			wantEnv: []string{"WAREHOUSE=bigquery", "BIGQUERY_PROJECT=ecom-local"}},
		{name: "no endpoints", give: BigQueryOptions{}, wantErr: "REST and GRPC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.give
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t.", BigQuery: &o})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.BigQuery.Client.Close()
			env := s.Procs["bq-writer"].Env
			for _, kv := range tt.wantEnv {
				if !slices.Contains(env, kv) {
					t.Errorf("bq-writer's environment lacks %s: %v", kv, env)
				}
			}
			prefix := s.Opts.BigQuery.DatasetPrefix
			if tt.wantPrefix != "" && prefix != tt.wantPrefix || tt.wantPrefix == "" && !strings.HasPrefix(prefix, "bqslice_") {
				t.Errorf("dataset prefix %q", prefix)
			}
			if b := s.BigQuery; b.Raw != prefix+"_raw" || b.Staging != prefix+"_staging" || b.Prod != prefix+"_prod" || tt.wantRaw != "" && b.Raw != tt.wantRaw {
				t.Errorf("datasets %s %s %s for prefix %s", b.Raw, b.Staging, b.Prod, prefix)
			}
			if o != tt.give {
				t.Errorf("New changed the caller's options: %+v, was %+v", o, tt.give)
			}
		})
	}
}

func TestQualify(t *testing.T) {
	b := &BigQuery{Project: "ecom-local", Raw: "x_raw", Staging: "x_staging", Prod: "x_prod"}
	tests := []struct{ give, want string }{
		{"SELECT COUNT(*) FROM raw.fact_events", "SELECT COUNT(*) FROM `ecom-local.x_raw`.fact_events"},
		{"SELECT a FROM prod.fact_orders o JOIN prod.fact_order_items i USING (order_id)",
			"SELECT a FROM `ecom-local.x_prod`.fact_orders o JOIN `ecom-local.x_prod`.fact_order_items i USING (order_id)"},
		{"select 1 from staging.fact_events", "select 1 from `ecom-local.x_staging`.fact_events"},
		{"SELECT COUNT(*) FROM (SELECT DISTINCT a FROM raw.t)", "SELECT COUNT(*) FROM (SELECT DISTINCT a FROM `ecom-local.x_raw`.t)"},
		{"SELECT raw.x FROM t", "SELECT raw.x FROM t"}, // not a table name
		{"SELECT 1 FROM `p.d`.t", "SELECT 1 FROM `p.d`.t"},
	}
	for _, tt := range tests {
		if got := b.Qualify(tt.give); got != tt.want {
			t.Errorf("Qualify(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestCheckEmulator(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bigquery/v2/projects/ecom-local/datasets" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"kind":"bigquery#datasetList"}`))
	}))
	defer ok.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	tests := []struct {
		name    string
		give    BigQueryOptions
		wantErr bool
	}{
		{"answers", BigQueryOptions{REST: ok.URL}, false},
		{"another project", BigQueryOptions{REST: ok.URL, Project: "other"}, true},
		{"down", BigQueryOptions{REST: down.URL}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckEmulator(context.Background(), tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "stack.sh up") {
				t.Errorf("error %q does not say how to start the emulator", err)
			}
		})
	}
}
