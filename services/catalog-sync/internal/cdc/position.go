package cdc

import "sync"

// positions decides the flush position reported to PostgreSQL. It never
// passes a transaction that was received and not confirmed, so a restart
// re-delivers it.
type positions struct {
	mu      sync.Mutex
	flushed LSN
	// pending are the received, unconfirmed transactions in commit order.
	pending []txPos
}

type txPos struct{ commit, end LSN }

func newPositions(start LSN) *positions { return &positions{flushed: start} }

// reset starts from the slot's confirmed position, nothing pending.
func (p *positions) reset(start LSN) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushed, p.pending = start, nil
}

// received records a transaction handed to the consumer.
func (p *positions) received(tx *Tx) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, txPos{commit: tx.CommitLSN, end: tx.EndLSN})
}

// confirm marks every received transaction with a commit LSN <= lsn as
// committed downstream; the flush position moves to the end of the last of
// them. An LSN past everything received confirms only what was received.
// It reports whether the position moved.
func (p *positions) confirm(lsn LSN) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.pending) && p.pending[n].commit <= lsn {
		n++
	}
	if n == 0 {
		return false
	}
	end := p.pending[n-1].end
	p.pending = append(p.pending[:0], p.pending[n:]...)
	if end > p.flushed {
		p.flushed = end
		return true
	}
	return false
}

// idle moves the position to walEnd, a server keepalive's position, when
// nothing received is unconfirmed and no transaction is being received. The
// WAL up to there holds nothing for this stream (all of it was decoded and
// sent before the keepalive), and without this the slot would retain the
// WAL of every other table's changes for as long as the catalog is quiet.
func (p *positions) idle(walEnd LSN, inTx bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inTx || len(p.pending) > 0 || walEnd <= p.flushed {
		return
	}
	p.flushed = walEnd
}

// position is the flush position to report.
func (p *positions) position() LSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flushed
}

// unconfirmed is how many received transactions wait for Confirm.
func (p *positions) unconfirmed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}
