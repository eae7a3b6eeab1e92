package query

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of a stats request.
const (
	DefaultWindow  = time.Hour
	DefaultBuckets = 24
	MinWindow      = time.Minute
	MaxBuckets     = 1000
	maxSpan        = 400 * 24 * time.Hour // window × buckets
)

// StatsRequest asks for counts in Buckets consecutive windows of Window,
// the last one holding now, of the dead letters matching Filter (whose
// From and To must be unset: the windows say the time range).
type StatsRequest struct {
	Filter  Filter
	Window  time.Duration
	Buckets int
}

// ParseStats reads window (a Go duration such as 1h or 15m, default 1h),
// buckets (default 24) and the filter parameters except from and to.
func ParseStats(v url.Values) (StatsRequest, error) {
	r := StatsRequest{Window: DefaultWindow, Buckets: DefaultBuckets}
	for _, k := range []string{"from", "to"} {
		if v.Has(k) {
			return r, badf(k, "not a stats parameter: window and buckets give the time range")
		}
	}
	f, err := ParseFilter(v, "window", "buckets")
	if err != nil {
		return r, err
	}
	r.Filter = f
	if s := v.Get("window"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < MinWindow || d%time.Second != 0 {
			return r, badf("window", "want a duration of whole seconds, at least %s, such as 1h or 15m; got %q", MinWindow, s)
		}
		r.Window = d
	}
	if s := v.Get("buckets"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxBuckets {
			return r, badf("buckets", "want a number from 1 to %d, got %q", MaxBuckets, s)
		}
		r.Buckets = n
	}
	if time.Duration(r.Buckets)*r.Window > maxSpan || time.Duration(r.Buckets)*r.Window < 0 {
		return r, badf("buckets", "window × buckets must not exceed %s", maxSpan)
	}
	return r, nil
}

// Series is the counts of one key (a stage, code or rule id) per bucket.
type Series struct {
	Key    string `json:"key"`
	Total  int    `json:"total"`
	Counts []int  `json:"counts"` // one per bucket, oldest first
}

// Oldest is the oldest unresolved dead letter (the alert signal).
type Oldest struct {
	ID         string    `json:"dead_letter_id"`
	FailedAt   time.Time `json:"failed_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Stats is the answer of Stats.
type Stats struct {
	Window       string         `json:"window"`
	Buckets      int            `json:"buckets"`
	From         time.Time      `json:"from"` // the first bucket's start
	To           time.Time      `json:"to"`   // the last bucket's end (exclusive)
	BucketStarts []time.Time    `json:"bucket_starts"`
	Total        int            `json:"total"` // in [From, To)
	ByStage      []Series       `json:"by_stage"`
	ByCode       []Series       `json:"by_code"`
	ByRule       []Series       `json:"by_rule"`
	ByState      map[string]int `json:"by_state"` // all time, every state
	Oldest       *Oldest        `json:"oldest_unresolved"`
}

// Bins returns the start of the first bucket and the end of the last of r
// at now: windows aligned to the Unix epoch, the last holding now.
func (r StatsRequest) Bins(now time.Time) (from, to time.Time) {
	w := r.Window.Microseconds()
	end := (now.UnixMicro()/w + 1) * w
	to = time.UnixMicro(end).UTC()
	return to.Add(-time.Duration(r.Buckets) * r.Window), to
}

// GetStats counts the dead letters of r at now. Run it in a REPEATABLE READ
// transaction for counts that agree with each other.
func GetStats(ctx context.Context, q Querier, r StatsRequest, now time.Time) (Stats, error) {
	from, to := r.Bins(now)
	s := Stats{
		Window: r.Window.String(), Buckets: r.Buckets, From: from, To: to,
		ByStage: []Series{}, ByCode: []Series{}, ByRule: []Series{}, ByState: map[string]int{},
	}
	for i := range r.Buckets {
		s.BucketStarts = append(s.BucketStarts, from.Add(time.Duration(i)*r.Window))
	}
	for _, g := range []struct {
		key  string // the grouped expression
		from string
		out  *[]Series
	}{
		{"stage", "dead_letters", &s.ByStage},
		{"c", "dead_letters CROSS JOIN LATERAL unnest(codes) AS c", &s.ByCode},
		{"r", "dead_letters CROSS JOIN LATERAL unnest(rule_ids) AS r", &s.ByRule},
	} {
		w := where{}
		r.Filter.apply(&w)
		w.add("failed_at >= %s", from)
		w.add("failed_at < %s", to)
		sql := fmt.Sprintf("SELECT date_bin(%s::interval, failed_at, %s) AS b, %s, count(*) FROM %s WHERE %s GROUP BY 1, 2",
			w.arg(r.Window), w.arg(from), g.key, g.from, w.sql())
		series, err := collect(ctx, q, sql, w.args, from, r)
		if err != nil {
			return s, err
		}
		*g.out = series
	}
	for _, x := range s.ByStage {
		s.Total += x.Total
	}

	w := where{}
	r.Filter.apply(&w)
	rows, err := q.Query(ctx, "SELECT state, count(*) FROM dead_letters WHERE "+w.sql()+" GROUP BY state", w.args...)
	if err != nil {
		return s, fmt.Errorf("stats by state: %w", err)
	}
	for _, st := range States {
		s.ByState[st] = 0
	}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return s, fmt.Errorf("stats by state: %w", err)
		}
		s.ByState[st] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("stats by state: %w", err)
	}

	w = where{}
	r.Filter.apply(&w)
	w.add("state = ANY(%s)", Unresolved)
	rows, err = q.Query(ctx, "SELECT dead_letter_id, failed_at FROM dead_letters WHERE "+w.sql()+
		" ORDER BY failed_at, dead_letter_id LIMIT 1", w.args...)
	if err != nil {
		return s, fmt.Errorf("oldest unresolved: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		var o Oldest
		if err := rows.Scan(&o.ID, &o.FailedAt); err != nil {
			return s, fmt.Errorf("oldest unresolved: %w", err)
		}
		o.FailedAt = o.FailedAt.UTC()
		o.AgeSeconds = now.Sub(o.FailedAt).Seconds()
		s.Oldest = &o
	}
	return s, rows.Err()
}

// collect reads (bucket, key, count) rows into series ordered by total,
// largest first (then by key).
func collect(ctx context.Context, q Querier, sql string, args []any, from time.Time, r StatsRequest) ([]Series, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	byKey := map[string]*Series{}
	for rows.Next() {
		var b time.Time
		var key string
		var n int
		if err := rows.Scan(&b, &key, &n); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		i := int(b.Sub(from) / r.Window)
		if i < 0 || i >= r.Buckets {
			continue // cannot happen with the WHERE clause; never index out of range
		}
		x, ok := byKey[key]
		if !ok {
			x = &Series{Key: key, Counts: make([]int, r.Buckets)}
			byKey[key] = x
		}
		x.Counts[i] += n
		x.Total += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	out := make([]Series, 0, len(byKey))
	for _, x := range byKey {
		out = append(out, *x)
	}
	slices.SortFunc(out, func(a, b Series) int {
		if a.Total != b.Total {
			return b.Total - a.Total
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}
