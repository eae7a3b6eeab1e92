package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sync/errgroup"
)

// Config configures a Stream.
type Config struct {
	// URL is a PostgreSQL connection string for a role with REPLICATION and
	// SELECT on the published tables (CATALOG_DATABASE_URL);
	// replication=database is added.
	URL string
	// Slot is the replication slot's name (created if missing: logical,
	// pgoutput, persistent).
	Slot string
	// Publication is the publication to stream (publication_names).
	Publication string
	// StatusInterval is how often a standby status update is sent, even when
	// idle (keeps the connection alive under wal_sender_timeout and reports
	// the confirmed position). Default 10s.
	StatusInterval time.Duration
	// MaxBatchChanges caps the changes of one Handler call; a batch holds
	// whole transactions, so a larger transaction is a batch of its own.
	// Default 1000.
	MaxBatchChanges int
	// QueueTxs is how many received transactions may wait for the Handler.
	// Default 64.
	QueueTxs int
	// SlotBusyTimeout is how long Run retries START_REPLICATION while the
	// slot is still active for an earlier connection (a consumer that just
	// died; PostgreSQL notices within wal_sender_timeout). Default 90s.
	SlotBusyTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate checks the settings; the messages name the service's variables.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("CATALOG_DATABASE_URL: required")
	case !identRE.MatchString(c.Slot):
		return fmt.Errorf("CATALOG_SLOT: %q is not a slot name (lower-case letters, digits, _; at most 63)", c.Slot)
	case !identRE.MatchString(c.Publication):
		return fmt.Errorf("CATALOG_PUBLICATION: %q is not a publication name (lower-case letters, digits, _; at most 63)", c.Publication)
	case c.StatusInterval < 0 || c.MaxBatchChanges < 0 || c.QueueTxs < 0 || c.SlotBusyTimeout < 0:
		return errors.New("cdc: negative interval or size")
	}
	if _, err := pgconn.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("CATALOG_DATABASE_URL: %w", err)
	}
	return nil
}

func (c *Config) defaults() {
	if c.StatusInterval == 0 {
		c.StatusInterval = 10 * time.Second
	}
	if c.MaxBatchChanges == 0 {
		c.MaxBatchChanges = 1000
	}
	if c.QueueTxs == 0 {
		c.QueueTxs = 64
	}
	if c.SlotBusyTimeout == 0 {
		c.SlotBusyTimeout = 90 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Handler receives committed transactions, whole and in commit order. It
// commits them downstream and then calls Stream.Confirm (it may confirm
// later, or from another goroutine). An error stops the Stream; the
// unconfirmed transactions are delivered again by the next Run.
type Handler func(ctx context.Context, txs []Tx) error

// Stream is one logical replication session on the slot. Run it once; a
// restart is a new Stream (it resumes from the slot's confirmed position).
type Stream struct {
	cfg Config
	pos *positions
	dec *decoder

	// wake (one slot) tells a receiver waiting for room in the queue that a
	// Confirm wants a status update.
	wake chan struct{}

	mu         sync.Mutex
	cancelRecv context.CancelFunc // wakes the receiver to report a confirm
	statusDue  bool
	started    bool
	stats      Stats

	// statusTimeout bounds the write of one status update, so a stalled
	// connection cannot block Run.
	statusTimeout time.Duration

	// onWAL, if set, sees every pgoutput message (tests record testdata).
	onWAL func([]byte)
}

// Stats are the Stream's counters, for the service's metrics and readiness.
type Stats struct {
	// Streaming: START_REPLICATION succeeded and Run has not ended.
	Streaming bool
	// Transactions and Changes received (re-deliveries included).
	Transactions, Changes int64
	// ToastFilled counts unchanged TOASTed values taken from the old row.
	ToastFilled int64
	// LastCommitTime is the commit time of the last transaction received
	// (now minus it is the replication lag while changes flow).
	LastCommitTime time.Time
	// Unconfirmed is how many received transactions wait for Confirm.
	Unconfirmed int
	// Flushed is the flush position reported to PostgreSQL.
	Flushed LSN
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.Unconfirmed = s.pos.unconfirmed()
	st.Flushed = s.pos.position()
	return st
}

// New checks cfg and returns a Stream; it connects in Run.
func New(cfg Config) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	return &Stream{cfg: cfg, pos: newPositions(0), dec: newDecoder(), wake: make(chan struct{}, 1),
		statusTimeout: 5 * time.Second}, nil
}

// Confirm tells the Stream that every delivered transaction with a commit
// LSN <= lsn is committed downstream (pass the CommitLSN of the last
// transaction committed). PostgreSQL is told at once (the next status update
// is sent now); it never learns a position past an unconfirmed transaction.
// Safe for concurrent use.
func (s *Stream) Confirm(lsn LSN) {
	if !s.pos.confirm(lsn) {
		return
	}
	s.mu.Lock()
	s.statusDue = true
	if s.cancelRecv != nil {
		s.cancelRecv()
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a wake is pending already
	}
}

// Run connects, checks the publication exists (an error naming
// CATALOG_PUBLICATION otherwise, and no slot is created), creates the slot
// if missing, streams from the slot's
// confirmed position and calls h until ctx ends (then it returns nil, after
// a last status update) or an error stops it.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("cdc: Stream.Run called twice; create a new Stream to restart")
	}
	s.started = true
	s.mu.Unlock()

	conn, err := Connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if err := CheckPublication(ctx, conn, s.cfg.Publication); err != nil {
		return err
	}
	if s.dec.keys, err = primaryKeys(ctx, conn, s.cfg.Publication); err != nil {
		return err
	}
	slot, err := EnsureSlot(ctx, conn, s.cfg.Slot)
	if err != nil {
		return err
	}
	s.pos.reset(slot.ConfirmedFlushLSN)
	if err := s.start(ctx, conn); err != nil {
		return err
	}
	s.setStreaming(true)
	defer s.setStreaming(false)
	s.cfg.Logger.Info("cdc: streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication,
		"confirmed_flush_lsn", slot.ConfirmedFlushLSN.String(), "created", slot.Created)

	queue := make(chan Tx, s.cfg.QueueTxs)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.receive(gctx, conn, queue) })
	g.Go(func() error { return s.deliver(gctx, queue, h) })
	err = g.Wait()

	// Both goroutines are done, so every Confirm the handler made is in:
	// report it before closing (the walsender reads it before the Terminate).
	if conn.IsClosed() {
		return s.stopErr(ctx, err)
	}
	if serr := s.lastStatus(ctx, conn); serr != nil && err == nil && ctx.Err() == nil {
		err = serr
	}
	return s.stopErr(ctx, err)
}

// primaryKeys reads the primary key columns of the publication's tables
// ("schema.table" -> columns): the decoder needs them to see a key-changing
// update of a REPLICA IDENTITY FULL table, whose RELATION message flags every
// column as identity.
func primaryKeys(ctx context.Context, conn *pgconn.PgConn, publication string) (map[string][]string, error) {
	// publication is a checked identifier (Validate).
	res, err := conn.Exec(ctx, `SELECT pt.schemaname || '.' || pt.tablename, a.attname
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
WHERE pt.pubname = '`+publication+`'
ORDER BY 1, 2`).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("cdc: read the primary keys of publication %s: %w", publication, err)
	}
	keys := map[string][]string{}
	for _, r := range res {
		for _, row := range r.Rows {
			keys[string(row[0])] = append(keys[string(row[0])], string(row[1]))
		}
	}
	return keys, nil
}

func (s *Stream) setStreaming(on bool) {
	s.mu.Lock()
	s.stats.Streaming = on
	s.mu.Unlock()
}

func (s *Stream) stopErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// start sends START_REPLICATION from the slot's confirmed position (LSN 0
// means exactly that), retrying while an earlier session still holds the slot.
func (s *Stream) start(ctx context.Context, conn *pgconn.PgConn) error {
	opts := pglogrepl.StartReplicationOptions{PluginArgs: []string{
		"proto_version '1'",
		"publication_names '" + s.cfg.Publication + "'",
	}}
	deadline := time.Now().Add(s.cfg.SlotBusyTimeout)
	wait := 100 * time.Millisecond
	for {
		err := pglogrepl.StartReplication(ctx, conn, s.cfg.Slot, 0, opts)
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			return fmt.Errorf("cdc: START_REPLICATION slot %s: %w", s.cfg.Slot, err)
		}
		s.cfg.Logger.Info("cdc: slot still active for an earlier session; retrying", "slot", s.cfg.Slot, "error", pgErr.Message)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// receive owns the connection: it reads the stream, decodes it, queues
// complete transactions and sends the status updates.
func (s *Stream) receive(ctx context.Context, conn *pgconn.PgConn, queue chan<- Tx) error {
	next := time.Now().Add(s.cfg.StatusInterval)
	for {
		s.mu.Lock()
		due := s.statusDue
		s.mu.Unlock()
		if due || !time.Now().Before(next) {
			if err := s.sendStatus(ctx, conn); err != nil {
				return err
			}
			next = time.Now().Add(s.cfg.StatusInterval)
		}

		recvCtx, cancel := context.WithDeadline(ctx, next)
		s.mu.Lock()
		s.cancelRecv = cancel
		if s.statusDue { // a Confirm came in since the check above
			cancel()
		}
		s.mu.Unlock()
		raw, err := conn.ReceiveMessage(recvCtx)
		s.mu.Lock()
		s.cancelRecv = nil
		s.mu.Unlock()
		woken := recvCtx.Err() != nil // the status deadline, or a Confirm
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// pgconn turns a context's end into a read deadline; a timed-out
			// read leaves the connection usable.
			if woken || pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("cdc: receive: %w", err)
		}

		switch m := raw.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(ctx, conn, m.Data, queue); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("cdc: replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("cdc: the server ended the replication stream")
		default:
			// NoticeResponse, ParameterStatus: nothing to do.
		}
	}
}

func (s *Stream) handleCopyData(ctx context.Context, conn *pgconn.PgConn, data []byte, queue chan<- Tx) error {
	if len(data) == 0 {
		return errors.New("cdc: empty CopyData message")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("cdc: keepalive: %w", err)
		}
		s.pos.idle(ka.ServerWALEnd, s.dec.inTx())
		if ka.ReplyRequested {
			return s.sendStatus(ctx, conn)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("cdc: XLogData: %w", err)
		}
		if s.onWAL != nil {
			s.onWAL(xld.WALData)
		}
		tx, err := s.dec.decode(xld.WALData)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.stats.ToastFilled = int64(s.dec.toastFilled)
		if tx != nil {
			s.stats.Transactions++
			s.stats.Changes += int64(len(tx.Changes))
			s.stats.LastCommitTime = tx.CommitTime
		}
		s.mu.Unlock()
		if tx != nil {
			s.pos.received(tx)
			return s.enqueue(ctx, conn, queue, *tx)
		}
	}
	return nil
}

// enqueue hands a transaction to the deliverer; while the queue is full it
// keeps sending status updates so the server does not time the session out,
// and sends one at once when a Confirm comes in.
func (s *Stream) enqueue(ctx context.Context, conn *pgconn.PgConn, queue chan<- Tx, tx Tx) error {
	tick := time.NewTicker(s.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case queue <- tx:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := s.sendStatus(ctx, conn); err != nil {
				return err
			}
		case <-s.wake:
			if err := s.sendStatus(ctx, conn); err != nil {
				return err
			}
		}
	}
}

// lastStatus sends the status update after streaming ended, usually
// because ctx did: it is sent all the same, within statusTimeout.
func (s *Stream) lastStatus(ctx context.Context, conn *pgconn.PgConn) error {
	return s.sendStatus(context.WithoutCancel(ctx), conn)
}

// sendStatus sends a standby status update with the flush position. The
// write gives up when ctx ends or after statusTimeout (pglogrepl ignores its
// context, so the connection's write deadline does it); the connection is
// unusable then and the error ends Run.
func (s *Stream) sendStatus(ctx context.Context, conn *pgconn.PgConn) error {
	s.mu.Lock()
	s.statusDue = false
	s.mu.Unlock()
	select {
	case <-s.wake: // this update reports that Confirm too
	default:
	}
	lsn := s.pos.position()
	ctx, cancel := context.WithTimeout(ctx, s.statusTimeout)
	defer cancel()
	nc := conn.Conn()
	deadline, _ := ctx.Deadline()
	_ = nc.SetWriteDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetWriteDeadline(time.Now())
		close(fired)
	})
	err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn,
	})
	if !stop() {
		<-fired
	}
	_ = nc.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("cdc: standby status update: %w", err)
	}
	return nil
}

// deliver calls the handler with batches of whole transactions.
func (s *Stream) deliver(ctx context.Context, queue <-chan Tx, h Handler) error {
	var carry *Tx // the transaction that did not fit the last batch
	for {
		var batch []Tx
		if carry != nil {
			batch, carry = append(batch, *carry), nil
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case tx := <-queue:
				batch = append(batch, tx)
			}
		}
		n := len(batch[0].Changes)
	fill:
		for n < s.cfg.MaxBatchChanges {
			select {
			case tx := <-queue:
				if n+len(tx.Changes) > s.cfg.MaxBatchChanges {
					carry = &tx
					break fill
				}
				batch = append(batch, tx)
				n += len(tx.Changes)
			default:
				break fill
			}
		}
		if err := h(ctx, batch); err != nil {
			return fmt.Errorf("cdc: handler: %w", err)
		}
	}
}
