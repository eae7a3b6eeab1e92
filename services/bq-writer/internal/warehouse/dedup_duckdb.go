package warehouse

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// The DuckDB side of the dedup (dedup.go holds the rule): finding the batch's event_ids that have a
// kept copy stored nearby, reading the stored copies of those, and moving stored rows between
// fact_events and fact_events_duplicates.

// duplicatesTable holds every copy the rule did not keep, with the same columns as fact_events.
const duplicatesTable = "fact_events_duplicates"

// dedupPlan is what Write does with the fresh (not stale) rows of a batch and with the stored
// copies they affect.
type dedupPlan struct {
	keep []int // indexes into the batch: rows for fact_events, in batch order
	drop []int // rows for fact_events_duplicates, in batch order
	// demote are fact_events rows that become duplicates; promote are fact_events_duplicates
	// rows that become kept.
	demote, promote []movedCopy
}

type movedCopy struct {
	rowid    int64
	id       string
	ts, recv time.Time
}

// batchGroups groups a batch's fresh rows by event_id, as positions in fresh. One row per id is
// the common case: the other rows of a repeated id go to more, which is allocated only when there
// is a repeat.
type batchGroups struct {
	group map[string]int32 // event_id -> group
	of    []int32          // position in fresh -> group
	heads []int32          // first row of each group
	more  map[int32][]int32
}

func (g *batchGroups) rows(k int32) []int32 {
	return append([]int32{g.heads[k]}, g.more[k]...)
}

// dedup decides the fresh rows of a batch (indexes into events, in batch order).
//
// Most event_ids have no kept copy stored within the window of any of their rows (checked in the
// in-memory index, or by a scan where it does not cover the row). Their rows are decided among
// themselves, and no stored decision changes: a stored duplicate has a kept copy within the
// window before it, so it is not near these rows either, and every stored kept copy stays more
// than the window from any row kept here. The usual duplicate, a resend received after its kept
// copy, is settled from the same check: when every row of an id has a kept copy within the window
// before it in dedup order, the rows are all duplicates and nothing stored changes (the walk of
// dedup.go passes them with the same last kept copy). Only the other ids ("contested") need their
// stored copies read from both tables (resolveStored).
func (d *DuckDB) dedup(ctx context.Context, tx *sql.Tx, events []EventRow, fresh []int) (dedupPlan, error) {
	var p dedupPlan
	if len(fresh) == 0 {
		return p, nil
	}
	g := batchGroups{group: make(map[string]int32, len(fresh)), of: make([]int32, len(fresh)), heads: make([]int32, 0, len(fresh))}
	for pos, i := range fresh {
		id := events[i].EventID
		if k, ok := g.group[id]; ok {
			if g.more == nil {
				g.more = make(map[int32][]int32)
			}
			g.more[k] = append(g.more[k], int32(pos))
			g.of[pos] = k
			continue
		}
		k := int32(len(g.heads))
		g.group[id] = k
		g.of[pos] = k
		g.heads = append(g.heads, int32(pos))
	}
	near, err := d.neighbours(ctx, tx, events, fresh, &g)
	if err != nil {
		return p, err
	}
	// What each group's rows have near them: a bit per neighbour value.
	seen := make([]uint8, len(g.heads))
	for pos, n := range near {
		seen[g.of[pos]] |= 1 << n
	}

	p.keep = make([]int, 0, len(g.heads))
	var slow []int32
	for k, head := range g.heads {
		switch seen[k] {
		case 1 << noNeighbour:
			if g.more[int32(k)] == nil {
				p.keep = append(p.keep, fresh[head])
				continue
			}
			// Repeated within the batch only.
			rows := g.rows(int32(k))
			copies := make([]dedupCopy, len(rows))
			for j, pos := range rows {
				i := fresh[pos]
				copies[j] = dedupCopy{row: &events[i], origin: inBatch, ref: int64(i)}
			}
			sortCopies(copies)
			sweep(copies, d.opts.dedupWindow)
			p.apply(copies)
		case 1 << keptBefore:
			for _, pos := range g.rows(int32(k)) {
				p.drop = append(p.drop, fresh[pos])
			}
		default:
			slow = append(slow, int32(k))
		}
	}
	if len(slow) > 0 {
		if err := d.resolveStored(ctx, tx, events, fresh, &g, slow, &p); err != nil {
			return p, err
		}
	}
	// Batch order keeps the event_timestamp zone maps tight.
	slices.Sort(p.keep)
	slices.Sort(p.drop)
	return p, nil
}

// apply records decided copies in the plan.
func (p *dedupPlan) apply(copies []dedupCopy) {
	for _, c := range copies {
		moved := movedCopy{c.ref, c.row.EventID, c.row.EventTimestamp, c.row.ReceivedAt}
		switch {
		case c.origin == inBatch && c.keep:
			p.keep = append(p.keep, int(c.ref))
		case c.origin == inBatch:
			p.drop = append(p.drop, int(c.ref))
		case c.origin == storedKept && !c.keep:
			p.demote = append(p.demote, moved)
		case c.origin == storedDropped && c.keep:
			p.promote = append(p.promote, moved)
		}
	}
}

// Stored kept rows with one of the batch's event_ids. The constant event_timestamp range lets
// DuckDB skip row groups by zone map; the per-row window is then checked in Go. The IN (unnest(...))
// becomes a hash semi-join built on the batch's ids. The ids travel as one JSON array string:
// binding a Go []string costs one cgo call per element and was ~1.6x slower for 10k ids.
const selectStoredIDs = `SELECT event_id, event_timestamp, received_at FROM fact_events` + copyFilter

// maxProbes caps the range probes per batch. Each costs a statement (~0.5ms here) plus its scan.
const maxProbes = 8

// neighbours returns, per fresh row (by position), its strongest neighbour among the kept rows
// of its event_id stored within the window of its own event_timestamp: in memory where the index
// covers the row, by a scan otherwise.
//
// The rows to scan are split into clusters of nearby event_timestamps, and each cluster is probed
// with its own range [min-window, max+window]. A single range over the whole batch would let one
// late event (a phone that was offline for hours) stretch the scan over every row stored since.
// Clusters are cut at gaps wider than 2·window, at most maxProbes of them (the widest gaps win),
// so the scanned rows are the rows stored within window of the batch's own timestamps.
func (d *DuckDB) neighbours(ctx context.Context, tx *sql.Tx, events []EventRow, fresh []int, g *batchGroups) ([]neighbour, error) {
	w := d.opts.dedupWindow
	near := make([]neighbour, len(fresh))
	scan := fresh
	if d.recent != nil {
		if !d.recent.loaded {
			if err := d.loadRecent(ctx, tx); err != nil {
				return nil, fmt.Errorf("load dedup index: %w", err)
			}
		}
		scan = nil
		for pos, i := range fresh {
			r := &events[i]
			if !d.recent.covers(r.EventTimestamp) {
				scan = append(scan, i)
				continue
			}
			near[pos] = d.recent.lookup(r.EventID, r.EventTimestamp, r.ReceivedAt)
		}
		if len(scan) == 0 {
			return near, nil
		}
	}

	byTime := slices.Clone(scan)
	slices.SortFunc(byTime, func(a, b int) int { return events[a].EventTimestamp.Compare(events[b].EventTimestamp) })
	win := w.Microseconds()
	for _, cluster := range clusters(events, byTime, w) {
		ids := make([]string, len(cluster))
		for k, i := range cluster {
			ids[k] = events[i].EventID
		}
		lo, hi := events[cluster[0]].EventTimestamp, events[cluster[len(cluster)-1]].EventTimestamp
		// Exact: validateBatch guarantees valid UTF-8, which encoding/json round-trips unchanged.
		idsJSON, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		rows, err := tx.QueryContext(ctx, selectStoredIDs, lo.Add(-w), hi.Add(w), string(idsJSON))
		if err != nil {
			return nil, fmt.Errorf("scan stored ids: %w", err)
		}
		for rows.Next() {
			var id string
			var ts, recv time.Time
			if err := rows.Scan(&id, &ts, &recv); err != nil {
				rows.Close()
				return nil, err
			}
			k, ok := g.group[id]
			if !ok {
				continue
			}
			// Every row of the id: a row the index covers has this kept row in the index too, so
			// the result for it is the same.
			for _, pos := range g.rows(k) {
				r := &events[fresh[pos]]
				n := nearness(ts.UnixMicro(), recv.UnixMicro(), r.EventTimestamp.UnixMicro(), r.ReceivedAt.UnixMicro(), win)
				near[pos] = max(near[pos], n)
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return near, nil
}

// storedCopies holds what has been read of the stored copies of one contested event_id.
type storedCopies struct {
	copies  []dedupCopy // the batch's rows first, then the stored copies read so far
	seen    map[int64]bool
	covered coverage
}

// resolveStored decides the contested groups: it reads their stored copies (both tables) within
// the window of their rows, in a few range probes, then decides each id's components, reading
// further for one id where a component reaches beyond what was read (a chain of copies, each
// within the window of the next).
func (d *DuckDB) resolveStored(ctx context.Context, tx *sql.Tx, events []EventRow, fresh []int, g *batchGroups, slow []int32, p *dedupPlan) error {
	w := d.opts.dedupWindow
	state := make(map[string]*storedCopies, len(slow))
	var all []int
	for _, k := range slow {
		s := &storedCopies{seen: make(map[int64]bool)}
		for _, pos := range g.rows(k) {
			i := fresh[pos]
			s.copies = append(s.copies, dedupCopy{row: &events[i], origin: inBatch, ref: int64(i)})
			all = append(all, i)
		}
		state[events[fresh[g.heads[k]]].EventID] = s
	}
	slices.SortFunc(all, func(a, b int) int { return events[a].EventTimestamp.Compare(events[b].EventTimestamp) })
	win := w.Microseconds()
	for _, cluster := range clusters(events, all, w) {
		ids := make([]string, 0, len(cluster))
		inCluster := make(map[string]bool, len(cluster))
		for _, i := range cluster {
			if id := events[i].EventID; !inCluster[id] {
				inCluster[id] = true
				ids = append(ids, id)
			}
		}
		sp := span{ // in µs, as decide computes what it needs
			time.UnixMicro(events[cluster[0]].EventTimestamp.UnixMicro() - win),
			time.UnixMicro(events[cluster[len(cluster)-1]].EventTimestamp.UnixMicro() + win),
		}
		if err := readCopies(ctx, tx, ids, sp, state); err != nil {
			return err
		}
	}
	for _, k := range slow {
		id := events[fresh[g.heads[k]]].EventID
		s := state[id]
		for {
			decided, missing := decide(s.copies, w, s.covered)
			if len(missing) == 0 {
				p.apply(decided)
				break
			}
			for _, sp := range missing {
				if err := readCopies(ctx, tx, []string{id}, sp, state); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// copyColumns are the columns read of a stored copy: its rowid (to move it within this
// transaction) and everything compareCopies looks at.
const copyColumns = `rowid, event_id, event_timestamp, received_at, event_type, user_id, anonymous_id,
  session_id, page_url, referrer, user_agent, device_type, os, browser, country, region, city, product_id,
  search_query, quantity, price_minor, currency, order_id, source, trace_id, source_topic, source_partition,
  source_offset, client_ip, collector_source, dq_warnings`

const copyFilter = ` WHERE event_timestamp BETWEEN ? AND ? AND event_id IN (SELECT unnest(CAST(?::JSON AS VARCHAR[])))`

const selectCopies = `SELECT true, ` + copyColumns + ` FROM fact_events` + copyFilter + `
UNION ALL
SELECT false, ` + copyColumns + ` FROM ` + duplicatesTable + copyFilter

// readCopies adds the stored copies of ids within sp (both tables) to state, and sp to their
// coverage.
func readCopies(ctx context.Context, tx *sql.Tx, ids []string, sp span, state map[string]*storedCopies) error {
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, selectCopies, sp.from, sp.to, string(idsJSON), sp.from, sp.to, string(idsJSON))
	if err != nil {
		return fmt.Errorf("read stored copies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kept bool
		var rowid int64
		r, err := scanCopy(rows, &kept, &rowid)
		if err != nil {
			return fmt.Errorf("read stored copies: %w", err)
		}
		s := state[r.EventID]
		origin := storedDropped
		if kept {
			origin = storedKept
		}
		// rowids are per table: fact_events rows as positive keys, duplicates as negative.
		key := rowid + 1
		if !kept {
			key = -key
		}
		if s == nil || s.seen[key] {
			continue
		}
		s.seen[key] = true
		s.copies = append(s.copies, dedupCopy{row: r, origin: origin, ref: rowid})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stored copies: %w", err)
	}
	for _, id := range ids {
		if s := state[id]; s != nil {
			s.covered = append(s.covered, sp)
		}
	}
	return nil
}

func scanCopy(rows *sql.Rows, kept *bool, rowid *int64) (*EventRow, error) {
	r := new(EventRow)
	e := &r.ClickEvent
	var opt [18]sql.NullString // user_id ... order_id, trace_id, client_ip, collector_source, dq_warnings
	var qty, price sql.NullInt64
	if err := rows.Scan(kept, rowid, &e.EventID, &e.EventTimestamp, &e.ReceivedAt, &e.EventType,
		&opt[0], &opt[1], &e.SessionID, &e.PageURL, &opt[2], &opt[3], &opt[4], &opt[5], &opt[6], &opt[7],
		&opt[8], &opt[9], &opt[10], &opt[11], &qty, &price, &opt[12], &opt[13], &e.Source, &opt[14],
		&r.SourceTopic, &r.SourcePartition, &r.SourceOffset, &opt[15], &opt[16], &opt[17]); err != nil {
		return nil, err
	}
	str := func(n sql.NullString) *string {
		if !n.Valid {
			return nil
		}
		return &n.String
	}
	e.UserID, e.AnonymousID, e.Referrer, e.UserAgent = str(opt[0]), str(opt[1]), str(opt[2]), str(opt[3])
	e.DeviceType, e.Os, e.Browser, e.Country = str(opt[4]), str(opt[5]), str(opt[6]), str(opt[7])
	e.Region, e.City, e.ProductID, e.SearchQuery = str(opt[8]), str(opt[9]), str(opt[10]), str(opt[11])
	e.Currency, e.OrderID = str(opt[12]), str(opt[13])
	r.TraceID = opt[14].String // NULL is ""
	e.ClientIP, e.CollectorSource = str(opt[15]), str(opt[16])
	r.DQWarnings = opt[17].String // NULL is ""
	if qty.Valid {
		q := int(qty.Int64)
		e.Quantity = &q
	}
	if price.Valid {
		e.PriceMinor = &price.Int64
	}
	return r, nil
}

// moveCopies moves the plan's stored copies between the tables, in the writer's transaction and
// before anything is appended (the rowids are those read in this transaction). A moved row is
// copied whole, with loaded_at set to now: a row that (re)enters fact_events is seen by readers
// that load incrementally by loaded_at.
func moveCopies(ctx context.Context, tx *sql.Tx, p dedupPlan, now time.Time) error {
	if err := moveRows(ctx, tx, duplicatesTable, "fact_events", p.promote, now); err != nil {
		return fmt.Errorf("restore duplicates: %w", err)
	}
	if err := moveRows(ctx, tx, "fact_events", duplicatesTable, p.demote, now); err != nil {
		return fmt.Errorf("replace kept rows: %w", err)
	}
	return nil
}

func moveRows(ctx context.Context, tx *sql.Tx, from, to string, rows []movedCopy, now time.Time) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]int64, len(rows))
	lo, hi := rows[0].ts, rows[0].ts
	for i, r := range rows {
		ids[i] = r.rowid
		lo, hi = minTime(lo, r.ts), maxTime(hi, r.ts)
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	// The timestamp range lets the zone maps skip the row groups that hold none of the rows.
	where := ` WHERE event_timestamp BETWEEN ? AND ? AND rowid IN (SELECT unnest(CAST(?::JSON AS BIGINT[])))`
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ` + to + ` SELECT * REPLACE (?::TIMESTAMPTZ AS loaded_at) FROM ` + from + where, []any{now, lo, hi, string(idsJSON)}},
		{`DELETE FROM ` + from + where, []any{lo, hi, string(idsJSON)}},
	} {
		res, err := tx.ExecContext(ctx, q.sql, q.args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(rows)) {
			return fmt.Errorf("%d of %d rows moved from %s to %s: %w", n, len(rows), from, to, err)
		}
	}
	return nil
}

// loadRecent fills the dedup index from the table, inside the writer's transaction so that it
// matches what the transaction builds on. It loads the rows within the index's horizon of the
// newest stored event_timestamp (ignoring any stamped in the future), newest first, up to the
// index's cap.
func (d *DuckDB) loadRecent(ctx context.Context, tx *sql.Tx) error {
	r := d.recent
	start := time.Now()
	var newest sql.NullTime
	if err := tx.QueryRowContext(ctx, `SELECT max(event_timestamp) FROM fact_events WHERE event_timestamp <= ?`,
		start.Add(maxClockSkew)).Scan(&newest); err != nil {
		return err
	}
	if !newest.Valid { // empty table: the empty index covers everything
		r.loaded = true
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT event_id, event_timestamp, received_at FROM fact_events
		WHERE event_timestamp >= ? ORDER BY event_timestamp DESC LIMIT ?`, newest.Time.Add(-r.horizon()), r.max+1)
	if err != nil {
		return err
	}
	defer rows.Close()
	type entry struct {
		id       string
		ts, recv time.Time
	}
	var entries []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.id, &e.ts, &e.recv); err != nil {
			return err
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	r.coveredFrom = newest.Time.Add(-r.horizon())
	if len(entries) > r.max { // over the cap: cover only the ids newer than the first one left out
		r.coveredFrom = entries[r.max].ts.Add(time.Microsecond)
	}
	for _, e := range entries {
		r.add(e.id, e.ts, e.recv)
	}
	r.loaded = true
	d.log.Info("dedup index loaded", "ids", r.size, "covered_from", r.coveredFrom, "took", time.Since(start))
	return nil
}

// clusters splits byTime (indexes into events, sorted by event_timestamp) at the gaps wider than
// 2·window, keeping only the maxProbes-1 widest such gaps.
func clusters(events []EventRow, byTime []int, window time.Duration) [][]int {
	type gap struct {
		at    int // byTime[at] starts a new cluster
		width time.Duration
	}
	var gaps []gap
	for k := 1; k < len(byTime); k++ {
		width := events[byTime[k]].EventTimestamp.Sub(events[byTime[k-1]].EventTimestamp)
		if width > 2*window {
			gaps = append(gaps, gap{k, width})
		}
	}
	if len(gaps) > maxProbes-1 {
		slices.SortFunc(gaps, func(a, b gap) int { return cmp.Compare(b.width, a.width) })
		gaps = gaps[:maxProbes-1]
		slices.SortFunc(gaps, func(a, b gap) int { return cmp.Compare(a.at, b.at) })
	}
	out := make([][]int, 0, len(gaps)+1)
	from := 0
	for _, g := range gaps {
		out = append(out, byTime[from:g.at])
		from = g.at
	}
	return append(out, byTime[from:])
}
