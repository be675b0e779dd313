package remotewrite

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// observed keeps every report.
type observed struct {
	mu      sync.Mutex
	changes []Change
	rejects []string
	answers []UpstreamAnswer
}

func (o *observed) ObserveChanges(c []Change) {
	o.mu.Lock()
	o.changes = append(o.changes, c...)
	o.mu.Unlock()
}

func (o *observed) ObserveReject(reason, msg string) {
	o.mu.Lock()
	o.rejects = append(o.rejects, reason+": "+msg)
	o.mu.Unlock()
}

func (o *observed) ObserveUpstream(a UpstreamAnswer) {
	o.mu.Lock()
	o.answers = append(o.answers, a)
	o.mu.Unlock()
}

func TestObserverReportsWhatTheHandlerDid(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	obs := &observed{}
	p := litellmPipeline(t, "relabel_configs: [{source_labels: [__name__], regex: dropme, action: drop}]")
	h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithObserver(obs, 0))
	dropped := labels.FromStrings("__name__", "dropme")
	if rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(fixedTotal, prompb.Sample{Value: 5, Timestamp: 10}),
		v1Series(okTotal, prompb.Sample{Value: 9, Timestamp: 10}),
		v1Series(dropped, prompb.Sample{Value: 1, Timestamp: 10}),
	}})); rec.Code != http.StatusNoContent {
		t.Fatalf("answered %d: %s", rec.Code, rec.Body)
	}
	if len(obs.changes) != 2 {
		t.Fatalf("want a merge and a drop, got %+v", obs.changes)
	}
	m, d := obs.changes[0], obs.changes[1]
	if m.Action != ChangeMerged || !labels.Equal(m.Output, fixedTotal) || len(m.Samples) != 1 || m.Samples[0].V != 8 ||
		len(m.Sources) != 2 || !labels.Equal(m.Sources[0].Labels, noneTotal) || m.Sources[0].Samples[0].V != 3 ||
		!labels.Equal(m.Sources[1].Labels, fixedTotal) || m.Sources[1].Samples[0].V != 5 {
		t.Errorf("merge: %+v", m)
	}
	if d.Action != ChangeRemoved || len(d.Sources) != 1 || !labels.Equal(d.Sources[0].Labels, dropped) {
		t.Errorf("drop: %+v", d)
	}
	if len(obs.answers) != 1 || obs.answers[0].Code != http.StatusNoContent || obs.answers[0].Protocol != "1.0" || obs.answers[0].Upstream == "" {
		t.Errorf("upstream answers: %+v", obs.answers)
	}
	if rec := post(t, h, ctV1, []byte("not snappy")); rec.Code != http.StatusBadRequest {
		t.Fatalf("corrupt body answered %d", rec.Code)
	}
	if len(obs.rejects) != 1 || obs.rejects[0][:len(ReasonCorrupt)] != ReasonCorrupt {
		t.Errorf("rejects: %v", obs.rejects)
	}
	// At most maxChanges per request.
	obs.changes = nil
	h = NewHandler(p, []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithObserver(obs, 1))
	post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(dropped, prompb.Sample{Value: 1, Timestamp: 20}),
		v1Series(noneTotal, prompb.Sample{Value: 4, Timestamp: 20}),
	}}))
	if len(obs.changes) != 1 {
		t.Errorf("maxChanges 1: got %d changes", len(obs.changes))
	}
}

// TestObserverNoPerSeriesAllocation: observing costs no allocation per
// untouched series (the whole request through the handler, 200 and 2000
// untouched series: the difference stays far below one per series).
func TestObserverNoPerSeriesAllocation(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.Discard())
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}, WithObserver(&observed{}, 4))
	allocs := func(series int) float64 {
		bodies, _ := rwtest.Workload{Series: series, BatchSize: series, Rounds: 1, Untouched: true}.RW1()
		post(t, h, ctV1, bodies[0]) // warm the pools
		return testing.AllocsPerRun(10, func() {
			if rec := post(t, h, ctV1, bodies[0]); rec.Code != http.StatusNoContent {
				t.Fatalf("answered %d", rec.Code)
			}
		})
	}
	small, large := allocs(200), allocs(2000)
	t.Logf("allocations per request: %v for 200 untouched series, %v for 2000", small, large)
	if large-small > 100 {
		t.Errorf("%v allocations for 2000 untouched series, %v for 200: observing allocates per series", large, small)
	}
}
