package cdc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPositions(t *testing.T) {
	// Three transactions: commit LSN and end LSN of each.
	tx1, tx2, tx3 := &Tx{CommitLSN: 0x200, EndLSN: 0x230}, &Tx{CommitLSN: 0x300, EndLSN: 0x330}, &Tx{CommitLSN: 0x400, EndLSN: 0x430}
	type step struct {
		received *Tx
		confirm  LSN
		idle     LSN
		inTx     bool
	}
	tests := []struct {
		name  string
		steps []step
		want  LSN
	}{
		{"nothing happens: the slot's position", nil, 0x100},
		{"received, not confirmed: stays", []step{{received: tx1}, {received: tx2}}, 0x100},
		{"confirm the first: its end", []step{{received: tx1}, {received: tx2}, {confirm: 0x200}}, 0x230},
		{"confirm the last: its end", []step{{received: tx1}, {received: tx2}, {confirm: 0x300}}, 0x330},
		{"confirm between two commits: the earlier", []step{{received: tx1}, {received: tx2}, {confirm: 0x2ff}}, 0x230},
		{"confirm past everything received: only what was received",
			[]step{{received: tx1}, {confirm: 0xffff}, {received: tx2}}, 0x230},
		{"confirm before any commit: stays", []step{{received: tx1}, {confirm: 0x1ff}}, 0x100},
		{"confirm again lower: never backwards",
			[]step{{received: tx1}, {received: tx2}, {confirm: 0x300}, {received: tx3}, {confirm: 0x200}}, 0x330},
		{"idle keepalive with nothing pending: advances", []step{{idle: 0x900}}, 0x900},
		{"idle keepalive with a pending transaction: stays", []step{{received: tx1}, {idle: 0x900}}, 0x100},
		{"idle keepalive inside a transaction: stays", []step{{idle: 0x900, inTx: true}}, 0x100},
		{"idle keepalive after all confirmed: advances",
			[]step{{received: tx1}, {confirm: 0x200}, {idle: 0x900}}, 0x900},
		{"idle keepalive behind the position: stays",
			[]step{{received: tx3}, {confirm: 0x400}, {idle: 0x300}}, 0x430},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPositions(0x100)
			for _, s := range tt.steps {
				switch {
				case s.received != nil:
					p.received(s.received)
				case s.confirm != 0:
					p.confirm(s.confirm)
				default:
					p.idle(s.idle, s.inTx)
				}
			}
			if got := p.position(); got != tt.want {
				t.Errorf("position = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDeliverBatches(t *testing.T) {
	tx := func(xid uint32, changes int) Tx {
		return Tx{Xid: xid, Changes: make([]Change, changes)}
	}
	tests := []struct {
		name string
		give []Tx
		max  int
		want [][]uint32 // xids per batch
	}{
		{"small transactions share a batch", []Tx{tx(1, 1), tx(2, 2), tx(3, 1)}, 10, [][]uint32{{1, 2, 3}}},
		{"a batch holds whole transactions up to the cap", []Tx{tx(1, 2), tx(2, 2), tx(3, 2)}, 4, [][]uint32{{1, 2}, {3}}},
		{"a transaction over the cap is a batch of its own", []Tx{tx(1, 1), tx(2, 7), tx(3, 1)}, 4, [][]uint32{{1}, {2}, {3}}},
		{"truncate-only transactions (no changes) are delivered", []Tx{tx(1, 0), tx(2, 0)}, 1, [][]uint32{{1, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Stream{cfg: Config{MaxBatchChanges: tt.max}}
			queue := make(chan Tx, len(tt.give))
			for _, tx := range tt.give {
				queue <- tx
			}
			want := 0
			for _, b := range tt.want {
				want += len(b)
			}
			var got [][]uint32
			seen := 0
			errDone := errors.New("done")
			err := s.deliver(context.Background(), queue, func(_ context.Context, txs []Tx) error {
				var xids []uint32
				for _, tx := range txs {
					xids = append(xids, tx.Xid)
				}
				got = append(got, xids)
				if seen += len(txs); seen == want {
					return errDone
				}
				return nil
			})
			if !errors.Is(err, errDone) {
				t.Fatalf("deliver: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batches (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ends with its context", func(t *testing.T) {
		s := &Stream{cfg: Config{MaxBatchChanges: 10}}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := s.deliver(ctx, make(chan Tx), func(context.Context, []Tx) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deliver = %v, want the context's error", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "postgres://ecom_cdc:x@127.0.0.1:15432/ecom", Slot: "ecom_catalog_sync", Publication: "storefront_catalog"}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no URL", func(c *Config) { c.URL = "" }, "CATALOG_DATABASE_URL"},
		{"bad URL", func(c *Config) { c.URL = "postgres://%zz" }, "CATALOG_DATABASE_URL"},
		{"slot with a quote", func(c *Config) { c.Slot = "a'b" }, "CATALOG_SLOT"},
		{"slot upper case", func(c *Config) { c.Slot = "Slot" }, "CATALOG_SLOT"},
		{"slot too long", func(c *Config) { c.Slot = strings.Repeat("s", 64) }, "CATALOG_SLOT"},
		{"no publication", func(c *Config) { c.Publication = "" }, "CATALOG_PUBLICATION"},
		{"negative interval", func(c *Config) { c.StatusInterval = -time.Second }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
