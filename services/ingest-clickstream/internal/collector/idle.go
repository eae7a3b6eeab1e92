package collector

import (
	"net"
	"net/http"
	"sync"
)

// idleReaper closes idle keep-alive connections when the connection cap is
// reached. The cap (COLLECTOR_MAX_CONNECTIONS, netutil.LimitListener) stops
// accepting at that many open connections, idle ones included, so without
// it a few hundred visitors' browsers holding connections open, or a client
// sending one tiny request a minute on each of many connections, would keep
// every new client waiting in the backlog until an idle timeout. A
// connection between requests is the cheapest to give up: its client
// reconnects for its next request.
type idleReaper struct {
	limit int

	mu   sync.Mutex
	open int
	idle map[net.Conn]struct{}
}

func newIdleReaper(limit int) *idleReaper {
	return &idleReaper{limit: limit, idle: map[net.Conn]struct{}{}}
}

// connState is the http.Server's ConnState hook.
func (r *idleReaper) connState(c net.Conn, state http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch state {
	case http.StateNew:
		r.open++
		if r.open >= r.limit {
			// At the cap the listener accepts no more: free one place now
			// (the oldest is not known; any idle one will do).
			for ic := range r.idle {
				delete(r.idle, ic)
				_ = ic.Close() // reported as StateClosed, which counts it out
				break
			}
		}
	case http.StateIdle:
		r.idle[c] = struct{}{}
	case http.StateActive:
		delete(r.idle, c)
	case http.StateClosed, http.StateHijacked:
		delete(r.idle, c)
		r.open--
	}
}

// openIdle reports the connections open and idle (for tests).
func (r *idleReaper) openIdle() (open, idle int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.open, len(r.idle)
}
