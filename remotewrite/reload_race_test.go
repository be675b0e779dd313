package remotewrite

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// TestReloadToKeepDistinctWithARequestInFlight: the reloader activates the
// new configuration in the merge state (retiring the outputs) before it
// swaps the handler's route, and a request that loaded the old route
// before the swap runs its merge after the retirement: here the 500's
// sample of step 3, its None on another shard. Every request the sender
// sends afterwards must be taken (guarantee 6): the 500 raw at step 4 goes
// first, so nothing may send the output at step 3 after it in a sender's
// request (out of order: the batch refused). Before the merge knew its
// configuration's generation, the request on the old route brought the
// retired output back, holding the 500's sample of step 3, and its sum went
// out after the raw sample of step 4, in the sender's request (400). Now
// that request is answered 503 and sent again.
func TestReloadToKeepDistinctWithARequestInFlight(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	none, five := userSeries(0)
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	p := policyPipeline(t, merger, relabel.PolicyMerge)
	p.Activate(false)
	h := NewHandler(p, ups)
	for k := int64(1); k <= 2; k++ {
		clock.Add(retryStep * time.Millisecond)
		sendStep(t, h, none, k, float64(k))
		sendStep(t, h, five, k, float64(10*k))
	}
	clock.Add(retryStep * time.Millisecond)
	kd := policyPipeline(t, merger, relabel.PolicyKeepDistinct)
	kd.Activate(false) // the reload: the merge state first ...
	raw3 := oneSeries(t, five, prompb.Sample{Timestamp: 3 * retryStep, Value: 30})
	rec := post(t, h, ctV1, raw3) // ... a request on the old route meanwhile ...
	h.Update(kd, ups)             // ... then the route
	if rec.Code != http.StatusNoContent {
		// Not taken: the sender sends it again, to the new route.
		if rec = post(t, h, ctV1, raw3); rec.Code != http.StatusNoContent {
			t.Fatalf("the request on the old route, sent again: %d %s", rec.Code, rec.Body)
		}
	}
	sendStep(t, h, none, 3, 3) // under keep_distinct: raw, marked
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, five, 4, 40) // raw
	sendStep(t, h, none, 4, 4)
	for k := int64(5); k <= 12; k++ { // the sender goes on
		clock.Add(retryStep * time.Millisecond)
		for _, ls := range [][2]any{{none, float64(k)}, {five, float64(10 * k)}, {okTotal, float64(k)}} {
			body := oneSeries(t, ls[0].(labels.Labels), prompb.Sample{Timestamp: k * retryStep, Value: ls[1].(float64)})
			if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
				t.Fatalf("step %d %v: the sender's request answered %d %s", k, ls[0], rec.Code, rec.Body)
			}
		}
	}
	if c := up.HeadConflicts(); len(c) > 0 {
		t.Fatalf("two values at one timestamp: %v", c)
	}
}
