package relabel

import (
	"testing"
	"time"
)

// merge -> keep_distinct -> merge: an output held a sample when the merge
// went off; meanwhile the genuine 500 went out raw under the output's labels,
// at that timestamp and later. When the merge comes back, the held sample
// is finalized at a timestamp the upstream may already have (older than its
// newest: out of order): it must go as a retry, in a request of its own,
// never in the sender's request, whose batch the 400 would drop.
func TestMergeBackOnSendsHeldSamplesAsRetries(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 1, 10)
	h.scrape(step, 2, 20)
	h.drain()
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(2*step, 3))) // held: waits for the 500 of this scrape
	merge := DefaultCollisionConfig()
	keepDistinct := merge
	keepDistinct.Policy = PolicyKeepDistinct
	h.m.setConfig(keepDistinct) // the 500 at 2*step goes out raw, unmerged
	h.clock.add(step * time.Millisecond)
	h.m.setConfig(merge)
	var emits []Emit
	for _, gr := range []group{g(outTotal, src500, sp(3*step, 40)), g(outTotal, srcNone, sp(3*step, 4))} {
		for _, e := range h.req(gr) {
			e.Samples = append([]Sample(nil), e.Samples...) // the state reuses its queue
			emits = append(emits, e)
		}
	}
	sent := false
	for _, e := range emits {
		for _, s := range e.Samples {
			if s.T == 2*step {
				sent = true
				if !e.Retry {
					t.Fatalf("the sample held across keep_distinct rides in the sender's request: %+v", e)
				}
			}
		}
	}
	if !sent {
		t.Fatalf("the held sample was not sent at all: %+v", emits)
	}
}
