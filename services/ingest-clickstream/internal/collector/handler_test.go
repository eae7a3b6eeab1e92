package collector

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecomstream/platform/pkg/deadletter"
)

// TestAcceptedAndRejectedLand: a batch of good and bad events is answered
// per event, the good ones land as ClickEvents (source http, received_at =
// the request time, collector_source, keyed by session, timestamped
// received_at, with the request's traceparent), the bad one as a dead letter
// with its original bytes and the contract's id and headers.
func TestAcceptedAndRejectedLand(t *testing.T) {
	e := newEnv(t, map[string]string{"COLLECTOR_CLIENT_IP": "truncated"})
	w := e.post(batch(rawEvent("e1"), badEvent("e2"), rawEvent("e3")))
	a := answerOf(t, w)
	if a.Accepted != 2 || a.Rejected != 1 || len(a.Events) != 3 {
		t.Fatalf("answer %s", w.Body)
	}
	if r := a.Events[1]; r.Index != 1 || r.EventID != "e2" || r.Status != "rejected" || len(r.Reasons) != 1 ||
		r.Reasons[0].Code != "MISSING_FIELD" || r.Reasons[0].Field != "session_id" || r.Reasons[0].Message != "session_id is required" {
		t.Errorf("rejected event: %+v", r)
	}
	if r := a.Events[2]; r.Index != 2 || r.EventID != "e3" || r.Status != "accepted" || r.Reasons != nil {
		t.Errorf("accepted event: %+v", r)
	}

	outs := e.consume(outTopic, 2)
	for _, r := range outs {
		ev := e.clickEvent(r)
		if ev.Source != "http" || !ev.ReceivedAt.Equal(e.now) || !r.Timestamp.Equal(e.now) || string(r.Key) != ev.SessionID ||
			ev.CollectorSource == nil || *ev.CollectorSource != "server" || ev.ClientIP == nil || *ev.ClientIP != "198.51.100.0" {
			t.Errorf("output %+v (key %q, timestamp %v)", ev, r.Key, r.Timestamp)
		}
		if tp := header(r, "traceparent"); len(tp) != 55 {
			t.Errorf("output traceparent %q", tp)
		}
	}
	dls := e.consume(deadletter.Topic, 1)
	dl := e.deadLetter(dls[0])
	if string(dl.OriginalValue) != badEvent("e2") || dl.Stage != "ingest-clickstream" || *dl.Entity != "click_event" ||
		dl.SourceTopic != inTopic || dl.SourcePartition != -1 || dl.SourceOffset != -1 ||
		dl.DeadLetterID != deadletter.ContentID("ingest-clickstream", "http", []byte(badEvent("e2"))) ||
		!strings.HasPrefix(dl.DeadLetterID, "ingest-clickstream-http-") || dl.TraceID == nil ||
		!strings.Contains(header(dls[0], "traceparent"), *dl.TraceID) || !dl.SourceTimestamp.Equal(e.now) {
		t.Errorf("dead letter %+v", dl)
	}
	hs := map[string]string{}
	for _, h := range dl.OriginalHeaders {
		hs[h.Key] = string(h.Value)
	}
	if hs["ecom-origin"] != "http" || hs["ecom-collector-source"] != "server" || len(hs) != 2 {
		t.Errorf("dead letter's original headers %v", hs)
	}
	if n := e.counter("ecom.dead_letters", "code", "MISSING_FIELD"); n != 1 {
		t.Errorf("ecom.dead_letters{code=MISSING_FIELD} = %d, want 1", n)
	}
	if n := e.counter("ecom.collector.requests", "code", "200"); n != 1 {
		t.Errorf("ecom.collector.requests{code=200} = %d", n)
	}
	if n := e.counter("ecom.collector.events", "result", "accepted"); n != 2 {
		t.Errorf("ecom.collector.events{result=accepted} = %d", n)
	}
	_ = http.StatusOK
	_ = time.Second
}
