package bqwh

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// PricePerGiB is taken as given: 0 (BIGQUERY_PRICE_STORAGE_WRITE_USD_PER_GIB=0) means no cost estimate, not
// a default price, and a negative price does not open.
func TestPricePerGiB(t *testing.T) {
	tests := []struct {
		name    string
		price   float64
		wantErr bool
	}{
		{name: "zero: no estimate", price: 0},
		{name: "list price", price: 0.025},
		{name: "contract price", price: 2},
		{name: "negative", price: -0.01, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.wantErr {
				if w, err := Open(t.Context(), Config{Project: "p", RawDataset: "raw", Catalog: e.cat, PricePerGiB: tt.price}); err == nil {
					_ = w.Close()
					t.Fatal("Open accepted a negative PricePerGiB")
				}
				return
			}
			reader := sdkmetric.NewManualReader()
			w := e.open(t, Config{PricePerGiB: tt.price, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")})
			res := write(t, e, w, 0, 10, true)
			if res.Bytes == 0 {
				t.Fatal("the write appended no bytes")
			}
			want := float64(res.Bytes) * tt.price / gib
			if got := sumFloat(t, reader, "ecom.bigquery.append.cost"); got < want*0.999 || got > want*1.001 {
				t.Errorf("cost %g, want %g (%d bytes at %g/GiB)", got, want, res.Bytes, tt.price)
			}
		})
	}
}
