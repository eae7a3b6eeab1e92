package collector

import (
	"net"
	"net/http"
	"sync"
)

// capListener accepts at most limit connections open at once
// (COLLECTOR_MAX_CONNECTIONS): each open one costs a goroutine and buffers
// whether or not it sends a request. Unlike netutil.LimitListener it
// accepts first and then waits for a place, so it knows a client is
// waiting: at the cap it has the reaper close an idle keep-alive connection
// to make room. Without that, a few hundred visitors' browsers holding
// connections open, or a client sending one tiny request a minute on each
// of many connections, would keep every new client waiting in the backlog
// until an idle timeout. A connection between requests is the cheapest to
// give up: its client reconnects for its next request. At most one
// accepted connection waits beyond the cap (Accept is called serially).
type capListener struct {
	net.Listener
	places chan struct{}
	reaper *idleReaper
	closed chan struct{}
	once   sync.Once
}

func newCapListener(ln net.Listener, limit int, reaper *idleReaper) *capListener {
	return &capListener{Listener: ln, places: make(chan struct{}, limit), reaper: reaper, closed: make(chan struct{})}
}

// Accept returns the next connection once it has a place under the cap.
func (l *capListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.places <- struct{}{}:
	default:
		l.reaper.waiting(true)
		select {
		case l.places <- struct{}{}:
			l.reaper.waiting(false)
		case <-l.closed:
			l.reaper.waiting(false)
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
	return &capConn{Conn: c, release: func() { <-l.places }}, nil
}

// Close stops accepting and lets a connection waiting for a place go.
func (l *capListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// capConn gives its place back when it is closed (once).
type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// idleReaper tracks the server's idle keep-alive connections (the
// http.Server's ConnState hook) and closes one when a new connection waits
// for a place: at once if one is idle, else the next that becomes idle.
type idleReaper struct {
	mu   sync.Mutex
	want bool // a connection waits for a place and no idle one was there
	idle map[net.Conn]struct{}
}

func newIdleReaper() *idleReaper {
	return &idleReaper{idle: map[net.Conn]struct{}{}}
}

// waiting is called with true when an accepted connection finds no place
// and with false when it has one (or gave up).
func (r *idleReaper) waiting(w bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !w {
		r.want = false
		return
	}
	for ic := range r.idle { // any idle one will do: the oldest is not known
		delete(r.idle, ic)
		_ = ic.Close() // reported as StateClosed; its place goes back
		return
	}
	r.want = true
}

// connState is the http.Server's ConnState hook.
func (r *idleReaper) connState(c net.Conn, state http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch state {
	case http.StateIdle:
		if r.want {
			r.want = false
			_ = c.Close()
			return
		}
		r.idle[c] = struct{}{}
	case http.StateActive, http.StateClosed, http.StateHijacked:
		delete(r.idle, c)
	}
}
