package remotewrite

import (
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// policyOnLog is the default configuration under policy, with its merge
// state on a log in dir (a restart when dir holds one), its clock clock.
func policyOnLog(t *testing.T, dir string, clock *rwtest.Clock, policy relabel.Policy) (*relabel.Pipeline, *relabel.Merger) {
	t.Helper()
	m := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	m.SetClock(clock.Now)
	if _, err := m.OpenLog(dir); err != nil {
		t.Fatal(err)
	}
	p := policyPipeline(t, m, policy)
	p.Activate(false)
	return p, m
}

// TestRetiredFenceSurvivesRestart: a reload to keep_distinct retires an
// output whose last sum (22 at step 2) the upstream has; its queue is empty,
// so it is forgotten at once and only its fence keeps the 500's raw sample
// of step 2 out. The sender's request that carried that sample (answered 503:
// the upstream failed it) comes back after rwfix restarted on its log. The
// 500's raw 20 at step 2 must not reach the upstream beside the merged 22:
// a Prometheus receiver refuses the whole batch (duplicate sample, 400) and
// the sender drops it, the untouched series with it (guarantee 6; "After a
// restart on its log the fences are kept too"). Before the fences were in
// the log, the restart lost the fence, and the batch was refused.
func TestRetiredFenceSurvivesRestart(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := "SIGTERM"
		if kill {
			name = "SIGKILL"
		}
		t.Run(name, func(t *testing.T) { retiredFenceAcrossRestart(t, kill) })
	}
}

// retiredFenceAcrossRestart is TestRetiredFenceSurvivesRestart with a
// clean restart (the log closed) or a SIGKILL (the log as the requests left
// it: the first process is abandoned, closed once the test is over).
func retiredFenceAcrossRestart(t *testing.T, kill bool) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five := userSeries(0)
	var failed atomic.Int32
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		// The upstream fails the first request with the 200 series at step 2.
		for _, x := range ss {
			if labels.Equal(x.Labels, okTotal) && x.Samples[0].Timestamp == 2*retryStep {
				return failed.Add(1) == 1
			}
		}
		return false
	})
	ups := []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(0, 0))
	p, m := policyOnLog(t, dir, clock, relabel.PolicyMerge)
	h := NewHandler(p, ups)
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, none, 1, 1)
	sendStep(t, h, five, 1, 10)
	clock.Add(retryStep * time.Millisecond)
	// One shard's request: the 500 at step 2 (held for the None) and the 200.
	rb := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(five, prompb.Sample{Timestamp: 2 * retryStep, Value: 20}),
		v1Series(okTotal, prompb.Sample{Timestamp: 2 * retryStep, Value: 2}),
	}})
	if rec := post(t, h, ctV1, rb); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the request failed upstream answered %d %s, want 503", rec.Code, rec.Body)
	}
	sendStep(t, h, none, 2, 2) // the other shard: the sum at step 2 goes out with it
	if got := up.HeadSeries()[five.String()]; len(got) != 2 || got[1] != (rwtest.HeadSample{T: 2 * retryStep, V: 22}) {
		t.Fatalf("500 series %v, want the sum 22 at step 2", got)
	}
	// The reload to keep_distinct, then a restart on the log.
	kd := policyPipeline(t, m, relabel.PolicyKeepDistinct)
	kd.Activate(false)
	h.Update(kd, ups)
	if kill {
		t.Cleanup(func() { _ = m.Close() }) // after the test: as the next start would
	} else if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	p, m = policyOnLog(t, dir, clock, relabel.PolicyKeepDistinct)
	t.Cleanup(func() { _ = m.Close() })
	h = NewHandler(p, ups)
	// The sender sends its failed request again.
	if rec := post(t, h, ctV1, rb); rec.Code/100 != 2 {
		t.Fatalf("the sender's request sent again after the restart answered %d %s, want 2xx (the sender drops it)", rec.Code, rec.Body)
	}
	if got, want := up.HeadSeries()[okTotal.String()], []rwtest.HeadSample{{T: 2 * retryStep, V: 2}}; !slices.Equal(got, want) {
		t.Errorf("the untouched 200 series %v, want %v", got, want)
	}
	if c := up.HeadConflicts(); len(c) > 0 {
		t.Errorf("two values at one timestamp: %v", c)
	}
}
