package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the reconciliation's gauges, for the latest window per source:
//
//	ecom_reconciliation_difference{source}                      the source's difference (the alert: != 0 on a settled window)
//	ecom_reconciliation_records{source,term}                    each term of its equation (consumed, written, ...)
//	ecom_reconciliation_hop_difference{source,stage}            each stage's difference (where the loss is)
//	ecom_reconciliation_unmatched{source}                       records listed as not balancing (a loss and a duplicate cancel in the difference, not here)
//	ecom_reconciliation_settled{source}                         1 when nothing of the window was in flight
//	ecom_reconciliation_window_end_timestamp_seconds{source}    the window's end (unix seconds): how current the figures are
type Metrics struct {
	diff, terms, hops, unmatched, settled, end *prometheus.GaugeVec
}

// NewMetrics registers the gauges on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	diff := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_difference",
		Help: "Records consumed minus every outcome (written, deduplicated, dead-lettered, superseded, stale, in flight) of the source's latest reconciled window; non-zero on a settled window is a loss (positive) or a duplication (negative)."}, []string{"source"})
	terms := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_records",
		Help: "Each term of the source's reconciliation equation in its latest window, by term (consumed, written, deduplicated, dead_lettered, superseded, stale, in_flight)."}, []string{"source", "term"})
	hops := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_hop_difference",
		Help: "One stage's difference (its consumed records minus their outcomes) in the source's latest window."}, []string{"source", "stage"})
	unmatched := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_unmatched",
		Help: "Records of the source's latest window listed as not balancing at some stage (consumed with no outcome, stored twice, an outcome of nothing consumed): a loss and a duplicate cancel in the difference, not here."}, []string{"source"})
	settled := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_settled",
		Help: "1 when no stage had records of the window still to consume (the difference is final), else 0."}, []string{"source"})
	end := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ecom_reconciliation_window_end_timestamp_seconds",
		Help: "End of the source's latest reconciled window, unix seconds."}, []string{"source"})
	for _, c := range []prometheus.Collector{diff, terms, hops, unmatched, settled, end} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &Metrics{diff: diff, terms: terms, hops: hops, unmatched: unmatched, settled: settled, end: end}, nil
}

// Set replaces each reported source's figures with r's.
func (m *Metrics) Set(reports ...*Report) {
	for _, r := range reports {
		for _, v := range []*prometheus.GaugeVec{m.diff, m.terms, m.hops, m.unmatched, m.settled, m.end} {
			v.DeletePartialMatch(prometheus.Labels{"source": r.Source})
		}
		diff, terms, hops, settled, end := m.diff, m.terms, m.hops, m.settled, m.end
		diff.WithLabelValues(r.Source).Set(float64(r.Difference()))
		terms.WithLabelValues(r.Source, TermConsumed).Set(float64(r.Terms[TermConsumed]))
		for _, t := range Terms {
			terms.WithLabelValues(r.Source, t).Set(float64(r.Terms[t]))
		}
		listed := 0
		for _, h := range r.Hops {
			hops.WithLabelValues(r.Source, h.Stage).Set(float64(h.Difference()))
			listed += len(h.Differences)
		}
		m.unmatched.WithLabelValues(r.Source).Set(float64(listed))
		s := 0.0
		if r.Settled() {
			s = 1
		}
		settled.WithLabelValues(r.Source).Set(s)
		end.WithLabelValues(r.Source).Set(float64(r.Window.To.UnixNano()) / 1e9)
	}
}
