package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/ecomstream/platform/pkg/httpserver"
	"github.com/ecomstream/platform/pkg/stream"
)

// NewProducer is the collector's own Kafka client: idempotent and
// acknowledged by all in-sync replicas, but not transactional (there is no
// input offset to commit with the outputs, and a transaction per request
// would cost two round trips more). It lingers KAFKA_PRODUCER_LINGER, not
// the commit interval: a client waits for the acks. Keys are partitioned as
// the Kafka path's stage does, so a session's events share a partition
// whichever door they came in by. Its client metrics are kafka_collector_*
// (reg may be nil).
//
// Its buffer matches the in-flight budget (COLLECTOR_MAX_INFLIGHT_BYTES
// counts the same record bytes), so a Produce blocks only when the budget
// is spent anyway; and a record is failed once it has waited
// DeliveryTimeout, so the bytes of a request answered 503 are released even
// if the broker never answers. (kgo measures that from the record's
// timestamp, received_at.) extra options come last, over these.
func NewProducer(kafka stream.Config, cfg Config, service string, log *slog.Logger, reg prometheus.Registerer, extra ...kgo.Opt) (*kgo.Client, error) {
	base, err := kafka.ClientOpts(service)
	if err != nil {
		return nil, err
	}
	opts := append(base,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.WithLogger(stream.Logger(log)),
		kgo.MaxBufferedBytes(cfg.MaxInflightBytes),
		kgo.MaxBufferedRecords(max(10_000, cfg.MaxInflightBytes/minRecordBytes)),
		kgo.RecordDeliveryTimeout(DeliveryTimeout(cfg)),
	)
	opts = append(opts, extra...)
	if reg != nil {
		opts = append(opts, kgo.WithHooks(kprom.NewMetrics("kafka", kprom.Registerer(reg), kprom.Subsystem("collector"))))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("collector kafka client: %w", err)
	}
	return cl, nil
}

// minRecordBytes is about the smallest ClickEvent record (ids, type, time,
// url and a traceparent): the in-flight budget holds at most this many.
const minRecordBytes = 128

// DeliveryTimeout is how long the producer keeps trying a record before it
// fails it: well past COLLECTOR_PRODUCE_TIMEOUT (a request answered 503 may
// still land, deduplicated downstream), but bounded, so its bytes are not
// held for ever. kgo counts it from the record's timestamp, received_at,
// which is when the request arrived: the time its body took to upload
// (up to COLLECTOR_READ_TIMEOUT) is spent already when the record is
// produced, so it is added, or a slow upload's records would time out
// before they were sent.
func DeliveryTimeout(cfg Config) time.Duration {
	return max(time.Second, cfg.ReadTimeout+3*cfg.ProduceTimeout)
}

// idleTimeout is how long a keep-alive connection may wait for its next
// request. Short: a browser sends a batch every few seconds at most, and an
// idle connection holds a place under COLLECTOR_MAX_CONNECTIONS.
const idleTimeout = 15 * time.Second

// Server serves a Collector on its own listener (COLLECTOR_ADDR), apart
// from the operational server: this one faces the public, that one stays
// private.
type Server struct {
	cfg             Config
	c               *Collector
	flush           func(context.Context) error // the producer's Flush
	shutdownTimeout time.Duration
	log             *slog.Logger
	started         chan string
}

// NewServer returns the server of c; flush (the producer's) is called on
// shutdown once the last request is answered.
func NewServer(cfg Config, c *Collector, flush func(context.Context) error, shutdownTimeout time.Duration, log *slog.Logger) *Server {
	return &Server{cfg: cfg, c: c, flush: flush, shutdownTimeout: shutdownTimeout, log: log, started: make(chan string, 1)}
}

// Addr returns the bound address once Run listens.
func (s *Server) Addr(ctx context.Context) (string, error) {
	select {
	case a := <-s.started:
		s.started <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Run serves until ctx is done, then stops taking requests, lets those in
// flight finish (their produce included) within the shutdown timeout, waits
// for the records of requests already answered 503, and flushes the producer.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("collector: listen %s: %w", s.cfg.Addr, err)
	}
	// Connections beyond the cap wait in the kernel's backlog: each open one
	// costs a goroutine and buffers whether or not it sends a request. At
	// the cap, idle keep-alive connections are closed to make room.
	reaper := newIdleReaper()
	ln = newCapListener(ln, s.cfg.MaxConnections, reaper)
	srv := &http.Server{
		ConnState:         reaper.connState,
		Handler:           s.c,
		ReadHeaderTimeout: min(5*time.Second, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		// Reading, producing (up to the produce timeout) and answering.
		WriteTimeout:   s.cfg.ReadTimeout + s.cfg.ProduceTimeout + 5*time.Second,
		IdleTimeout:    idleTimeout,
		MaxHeaderBytes: 32 << 10,
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if s.cfg.TLS() {
		if srv.TLSConfig, err = httpserver.TLSConfig(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, s.log); err != nil {
			ln.Close()
			return fmt.Errorf("collector: tls: %w", err)
		}
		scheme = "https"
	}
	s.started <- ln.Addr().String()
	s.log.InfoContext(ctx, "collector listening", "addr", ln.Addr().String(), "scheme", scheme, "path", Path)
	if !s.cfg.TLS() && !(&httpserver.Config{Addr: s.cfg.Addr}).Loopback() {
		s.log.WarnContext(ctx, "collector serves plain HTTP on a network address (COLLECTOR_ALLOW_PLAINTEXT=true): write keys travel in clear unless a proxy terminates TLS", "addr", s.cfg.Addr)
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS() {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("collector: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	errs := []error{srv.Shutdown(sctx)}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, s.c.Wait(sctx))
	if s.flush != nil {
		errs = append(errs, s.flush(sctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collector: shutdown: %w", err)
	}
	return nil
}
