package relabel

import (
	"testing"
	"time"
)

// allTaken is Done's taken when every upstream took every retry.
func allTaken(emits []Emit) []int {
	var taken []int
	for _, e := range emits {
		if e.Retry {
			taken = append(taken, len(e.Samples))
		}
	}
	return taken
}

// Retries taken in part (the wire side resolved the first of them, then ran
// out of its budget or met a failing upstream): those leave the queue, the
// rest stay and go again, first and as retries, before any later sample.
func TestMergeRetriesTakenInPart(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(5) {
		h.scrape(i*step, 1, 10)
	}
	h.drain()
	h.clock.add(2 * step * time.Millisecond)
	// A catch-up request with two scrapes: sent, and failed.
	tx, e := h.begin(g(outTotal,
		srcNone, []Sample{{T: 5 * step, V: 2}, {T: 6 * step, V: 3}},
		src500, []Sample{{T: 5 * step, V: 20}, {T: 6 * step, V: 30}}))
	if len(e) != 1 || e[0].Retry || len(e[0].Samples) != 2 {
		t.Fatalf("emits %v, want both samples in the request's own slot", e)
	}
	tx.Done(false, nil)

	tx, e = h.begin()
	if len(e) != 1 || !e[0].Retry || len(e[0].Samples) != 2 {
		t.Fatalf("emits %v, want both samples again, as one retry", e)
	}
	first := e[0]
	first.Samples = first.Samples[:1]
	h.accept([]Emit{first})
	tx.Done(true, []int{1})

	// (An emit's samples are the queue's: valid until Done.)
	h.clock.add(step * time.Millisecond)
	tx, e = h.begin(g(outTotal, srcNone, sp(7*step, 4), src500, sp(7*step, 40)))
	if len(e) != 1 || !e[0].Retry || len(e[0].Samples) != 1 || e[0].Samples[0].T != 6*step || e[0].Samples[0].V != 33 {
		t.Fatalf("emits %v, want the untaken 33@%d alone, as a retry", e, 6*step)
	}
	h.accept(e)
	tx.Done(true, allTaken(e))
	tx, e = h.begin()
	if len(e) != 1 || e[0].Retry || len(e[0].Samples) != 1 || e[0].Samples[0].V != 44 {
		t.Fatalf("emits %v, want 44 after the retry was taken", e)
	}
	h.accept(e)
	tx.Done(true, allTaken(e))
	wantSeries(t, h.series(outTotal)[5:], 22, 33, 44)
}
