package catalogdb

import (
	"bytes"
	"strings"
	"testing"
)

// TestParseTxID: the log carries the 64-bit xid8 and, apart, the 32-bit xid
// CDC reports (txid % 2^32), which differ once the epoch is past 0.
func TestParseTxID(t *testing.T) {
	tests := []struct {
		in      string
		txid    uint64
		xid     uint32
		wantErr bool
	}{
		{in: "748", txid: 748, xid: 748},
		{in: "4294967295", txid: 1<<32 - 1, xid: 1<<32 - 1},
		{in: "4294967296", txid: 1 << 32, xid: 0},
		{in: "12884901893", txid: 3<<32 + 5, xid: 5},
		{in: "", wantErr: true},
		{in: "-1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			txid, xid, err := parseTxID(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseTxID(%q) = %d, %d; want an error", tt.in, txid, xid)
				}
				return
			}
			if err != nil || txid != tt.txid || xid != tt.xid {
				t.Fatalf("parseTxID(%q) = %d, %d, %v; want %d, %d", tt.in, txid, xid, err, tt.txid, tt.xid)
			}
		})
	}
	var buf bytes.Buffer
	if err := WriteLog(&buf, []Entry{{TxID: 3<<32 + 5, Xid: 5}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"txid":12884901893,"xid":5,`) {
		t.Errorf("log line %s lacks txid and xid", buf.String())
	}
	back, err := ReadLog(&buf)
	if err != nil || len(back) != 1 || back[0].Xid != 5 || back[0].TxID != 3<<32+5 {
		t.Errorf("ReadLog = %+v, %v", back, err)
	}
}
