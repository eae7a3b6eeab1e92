package slice

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestCatalogSchema: a prefix becomes a schema PostgreSQL takes unquoted,
// short enough for its publication and slot names (63 bytes).
func TestCatalogSchema(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{"production names", "", "storefront"},
		{"e2e prefix", "e2e-TestE2ECatalog-1a2b.", "sf_e2e_teste2ecatalog_1a2b"},
		{"underscores kept", "demo_1.", "sf_demo_1"},
		{"long", strings.Repeat("x", 80) + ".", "sf_" + strings.Repeat("x", 45)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CatalogSchema(tt.prefix)
			if got != tt.want {
				t.Errorf("CatalogSchema(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
			if len(got+"_catalog") > 63 || len(got+"_slot") > 63 {
				t.Errorf("%q: publication or slot name longer than 63 bytes", got)
			}
		})
	}
}

// TestCatalogEnv: catalog-sync gets the slice's schema, slot, publication,
// state topic and the slice's products/customers topics, the schedule off
// unless asked; bq-writer gets the slice's email hash key.
func TestCatalogEnv(t *testing.T) {
	tests := []struct {
		name      string
		opts      CatalogOptions
		wantSched string
		// catalog-sync's topics; the validator reads t-1.ecom.products.v1 and t-1.ecom.customers.v1 always.
		wantProducts, wantCustomers string
	}{
		{"defaults", CatalogOptions{}, "off", "t-1.ecom.products.v1", "t-1.ecom.customers.v1"},
		{"scheduled, own schema", CatalogOptions{Schema: "sf_mine", SnapshotSchedule: "@every 1m"}, "@every 1m", "t-1.ecom.products.v1", "t-1.ecom.customers.v1"},
		{"relay", CatalogOptions{Relay: true}, "off", "t-1.ecom.products.sync.v1", "t-1.ecom.customers.sync.v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t-1.", Catalog: &opts})
			if err != nil {
				t.Fatal(err)
			}
			schema := "sf_t_1"
			if tt.opts.Schema != "" {
				schema = tt.opts.Schema
			}
			if s.CatalogSchema() != schema {
				t.Errorf("CatalogSchema %q, want %q", s.CatalogSchema(), schema)
			}
			want := map[string]string{
				"CATALOG_SCHEMA": schema, "CATALOG_SLOT": schema + "_slot", "CATALOG_PUBLICATION": schema + "_catalog",
				"CATALOG_STATE_TOPIC": "t-1.ecom.catalog-sync.state.v1",
				"PRODUCTS_TOPIC":      tt.wantProducts, "CUSTOMERS_TOPIC": tt.wantCustomers,
				"CATALOG_SNAPSHOT_SCHEDULE": tt.wantSched, "HTTP_OPERATOR_TOKEN": s.Catalog.OperatorToken,
				"CATALOG_DATABASE_URL": s.Catalog.CDCDatabaseURL,
			}
			got := envMap(s.Procs["catalog-sync"].Env)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("catalog-sync %s=%q, want %q", k, got[k], v)
				}
			}
			if len(s.Catalog.OperatorToken) < 16 {
				t.Errorf("operator token %q: catalog-sync wants at least 16 characters", s.Catalog.OperatorToken)
			}
			val := envMap(s.Procs["validator"].Env)
			if s.Topics.SyncProducts != got["PRODUCTS_TOPIC"] || s.Topics.SyncCustomers != got["CUSTOMERS_TOPIC"] ||
				val["PRODUCTS_INPUT_TOPIC"] != "t-1.ecom.products.v1" || val["CUSTOMERS_INPUT_TOPIC"] != "t-1.ecom.customers.v1" ||
				s.Topics.Products != val["PRODUCTS_INPUT_TOPIC"] || s.Topics.Customers != val["CUSTOMERS_INPUT_TOPIC"] {
				t.Errorf("topics: catalog-sync %q %q (slice %q %q), validator %q %q (slice %q %q)",
					got["PRODUCTS_TOPIC"], got["CUSTOMERS_TOPIC"], s.Topics.SyncProducts, s.Topics.SyncCustomers,
					val["PRODUCTS_INPUT_TOPIC"], val["CUSTOMERS_INPUT_TOPIC"], s.Topics.Products, s.Topics.Customers)
			}
			if k := envMap(s.Procs["bq-writer"].Env)["USER_EMAIL_HASH_KEY"]; k != s.Catalog.EmailHashKey || len(k) < 32 {
				t.Errorf("bq-writer USER_EMAIL_HASH_KEY %q, want the slice's key of at least 32 bytes %q", k, s.Catalog.EmailHashKey)
			}
		})
	}
}

// TestCatalogNamesOrder: catalog-sync is upstream of the validator (and
// downstream of the orders path's simulator, which it has nothing to do with).
func TestCatalogNamesOrder(t *testing.T) {
	tests := []struct {
		name   string
		orders *OrdersOptions
		want   []string
	}{
		{"catalog", nil, []string{"catalog-sync", "ingest-clickstream", "validator", "bq-writer"}},
		{"catalog and orders", &OrdersOptions{}, []string{"storefront", "ingest-orders", "catalog-sync", "ingest-clickstream", "validator", "bq-writer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{RunDir: t.TempDir(), Prefix: "t.", Orders: tt.orders, Catalog: &CatalogOptions{}})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Names, tt.want) {
				t.Errorf("Names %v, want %v", s.Names, tt.want)
			}
			if len(s.Names) != len(s.Procs) {
				t.Errorf("%d names, %d processes", len(s.Names), len(s.Procs))
			}
		})
	}
}

// TestCatalogAPIWithoutCatalog: the catalog calls of a slice without the
// catalog path fail with a message, and DropCatalog has nothing to do.
func TestCatalogAPIWithoutCatalog(t *testing.T) {
	s, err := New(Options{RunDir: t.TempDir(), Prefix: "t."})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CatalogSync(context.Background(), "", false); err == nil || !strings.Contains(err.Error(), "Options.Catalog") {
		t.Errorf("CatalogSync without a catalog: %v, want an error naming Options.Catalog", err)
	}
	if err := s.DropCatalog(context.Background()); err != nil {
		t.Errorf("DropCatalog without a catalog: %v", err)
	}
	if s.CatalogSchema() != "" {
		t.Errorf("CatalogSchema %q, want empty", s.CatalogSchema())
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v // the last one wins, as in a process's environment
	}
	return m
}
