package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ecomstream/platform/deploy/local/reconcile"
	"github.com/ecomstream/platform/deploy/local/slice"
	"github.com/ecomstream/platform/pkg/avroserde"
)

// The demo's reconciliation: every reconcileEvery, each source's window from reconcileLookback
// ago (not before the demo started: the topics and consumer groups are the stack's, shared
// with earlier runs whose rows are in another warehouse file) to reconcileSettle ago, which
// the stages have passed by then. Shorter than the command's -from 20m -to 5m: a round reads
// every record of the window from three topics (at 1000 events/s, 300 000 clicks), on the
// demo's machine; a lost record is still in five rounds, which ReconciliationDifference (for
// 3m) needs.
const (
	reconcileEvery    = time.Minute
	reconcileLookback = 7 * time.Minute
	reconcileSettle   = 2 * time.Minute
)

// reconcileWindow is the window reconciled at now, and whether there is one yet.
func reconcileWindow(start, now time.Time) (reconcile.Window, bool) {
	w := reconcile.Window{From: now.Add(-reconcileLookback), To: now.Add(-reconcileSettle)}
	if w.From.Before(start) {
		w.From = start
	}
	return w, w.From.Before(w.To)
}

// reconciler runs the reconciliation of the demo's sources in the background and serves the
// figures (ecom_reconciliation_*) on /metrics, which the stack's Prometheus scrapes as job
// reconcile through <targets>/<slice id>-reconcile.json (file_sd, beside the slice's own file,
// with an owner file so a later slice's sweep removes it if the demo is killed).
type reconciler struct {
	addr, id, dir string
	srv           *http.Server
	cancel        context.CancelFunc
	done          chan struct{}

	mu   sync.Mutex
	last map[string]string // source -> its latest status line
}

// startReconciler listens on 127.0.0.1 (a free port), writes the targets file and starts
// reconciling; stop ends it and removes the file.
func startReconciler(ctx context.Context, sl *slice.Slice, targetsDir string, start time.Time) (*reconciler, error) {
	reg := prometheus.NewRegistry()
	m, err := reconcile.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reconciliation metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	r := &reconciler{addr: ln.Addr().String(), id: sl.ID + "-reconcile", dir: targetsDir,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{}), last: map[string]string{}}
	go func() { _ = r.srv.Serve(ln) }()
	if err := r.writeTargets(sl.ID); err != nil {
		_ = r.srv.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sl.Opts.Brokers...))
	if err != nil {
		_ = r.srv.Close()
		return nil, err
	}
	schemas, err := avroserde.New(avroserde.Config{URL: sl.Opts.Registry, Timeout: 5 * time.Second})
	if err != nil {
		cl.Close()
		_ = r.srv.Close()
		return nil, err
	}
	log := &reconcile.Log{Opts: []kgo.Opt{kgo.SeedBrokers(sl.Opts.Brokers...)}, Adm: kadm.NewClient(cl), Lateness: time.Minute}
	wh := &reconcile.QueryAPI{URL: "http://" + sl.Procs["bq-writer"].HTTPAddr, Token: sl.Opts.QueryToken}
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		defer cl.Close()
		fns := map[string]func(context.Context, reconcile.Window) (*reconcile.Report, error){}
		t := time.NewTicker(reconcileEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w, ok := reconcileWindow(start, time.Now())
			if !ok {
				continue
			}
			for _, src := range reconcile.Sources {
				if fns[src] == nil {
					// A path's codecs exist once it has produced.
					fn, err := reconcile.ForSource(ctx, src, sl.Opts.Prefix, log, wh, schemas)
					if err != nil {
						r.status(src, "not yet: "+err.Error())
						continue
					}
					fns[src] = fn
				}
				rep, err := fns[src](ctx, w)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.status(src, "error: "+err.Error())
					continue
				}
				m.Set(rep)
				r.status(src, summary(rep))
			}
		}
	}()
	return r, nil
}

// summary is a report's status in a few words.
func summary(rep *reconcile.Report) string {
	switch {
	case !rep.Settled():
		return "not settled"
	case rep.Balanced():
		return fmt.Sprintf("balanced (%d records)", rep.Terms[reconcile.TermConsumed])
	}
	return fmt.Sprintf("DIFFERENCE %d (go run ./cmd/reconcile -source %s -from %s -to %s lists the records)",
		rep.Difference(), rep.Source, rep.Window.From.UTC().Format(time.RFC3339Nano), rep.Window.To.UTC().Format(time.RFC3339Nano))
}

// status records a source's latest status.
func (r *reconciler) status(source, s string) {
	r.mu.Lock()
	r.last[source] = s
	r.mu.Unlock()
}

// line is the status line of the demo's report: each source's latest reconciliation.
func (r *reconciler) line() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.last) == 0 {
		return fmt.Sprintf("reconciliation: first window %s after the start (http://%s/metrics)", reconcileSettle+reconcileEvery, r.addr)
	}
	s := "reconciliation:"
	for _, src := range reconcile.Sources {
		if v, ok := r.last[src]; ok {
			s += fmt.Sprintf(" %s %s;", src, v)
		}
	}
	return s + " http://" + r.addr + "/metrics"
}

// writeTargets writes the file_sd file (atomically: the scratch name is not *.json) and its
// owner file.
func (r *reconciler) writeTargets(slice string) error {
	if r.dir == "" {
		return nil
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, r.id+".owner"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	b, err := json.Marshal([]map[string]any{{"targets": []string{r.addr}, "labels": map[string]string{"job": "reconcile", "slice": slice}}})
	if err != nil {
		return err
	}
	path := filepath.Join(r.dir, r.id+".json")
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("prometheus targets: %w", err)
	}
	return nil
}

// stop ends the reconciliation, its server and its targets file.
func (r *reconciler) stop() {
	r.cancel()
	<-r.done
	_ = r.srv.Close()
	if r.dir == "" {
		return
	}
	for _, suffix := range []string{".json", ".owner"} {
		if err := os.Remove(filepath.Join(r.dir, r.id+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Println("  ", err)
		}
	}
}
