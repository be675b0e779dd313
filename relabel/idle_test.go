package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// A partition whose sender stopped right after a None sample (its 500
// sample of that scrape never comes) becomes idle once it has been quiet for
// the merge's wait bound (learned: 2 × 15 s + 10 s here), not before, while
// another partition's requests go on. A flush then sends what it held, and
// it is pending no more.
func TestMergeIdlePartitionFlushed(t *testing.T) {
	h := newHarness(t, "")
	p, err := New(DefaultConfig(), nil, h.m)
	if err != nil {
		t.Fatal(err)
	}
	send := func(part string, ts int64, sources ...labels.Labels) {
		t.Helper()
		tx := h.m.Begin(part)
		var smp [][]Sample
		for _, s := range sources {
			v := 10.0 // the 500 series
			if labels.Equal(s, srcNone) {
				v = 1 + float64(ts/step)
			}
			smp = append(smp, sp(ts, v))
		}
		tx.Add(outTotal, sources, smp)
		e := tx.Collect()
		if part == "a" { // (the harness keys what it records by labels only)
			h.accept(e)
		}
		tx.Done(true, allTaken(e))
	}
	// Both tenants send full scrapes long enough for every output to be
	// past any learning: nothing is pending.
	for i := int64(1); i <= 20; i++ {
		send("a", i*step, srcNone, src500)
		send("b", i*step, srcNone, src500)
		h.clock.add(step * time.Millisecond)
	}
	if got := p.PendingPartitions(); len(got) != 0 {
		t.Fatalf("pending %v, want none", got)
	}

	send("a", 21*step, srcNone) // then a's sender stops
	h.clock.add(step * time.Millisecond)
	send("b", 21*step, srcNone, src500)
	h.clock.add(step * time.Millisecond)
	send("b", 22*step, srcNone, src500)
	h.clock.add(9 * time.Second)
	if got := p.PendingPartitions(); len(got) != 1 || got["a"] {
		t.Fatalf("pending %v 39 s after a's request: want a, not idle", got)
	}
	h.clock.add(2 * time.Second)
	if got := p.PendingPartitions(); len(got) != 1 || !got["a"] {
		t.Fatalf("pending %v 41 s after a's request: want a, idle", got)
	}
	emits, run := p.Flush("a")
	if run == nil || len(emits) != 1 || emits[0].Group != -1 {
		t.Fatalf("flush: %v, %v; want a's output", emits, run)
	}
	h.accept(emits)
	run.Done(true, allTaken(run.Retries()))
	if got := p.PendingPartitions(); len(got) != 0 {
		t.Fatalf("pending %v after a's flush was taken", got)
	}
	// Its last sample: None at 21 (22) plus the 500 series' latest (10).
	if got := h.series(outTotal); len(got) != 21 || got[20].T != 21*step || got[20].V != 32 {
		t.Fatalf("a's output: %v, want 21 samples, the last 32 at %d", got, 21*step)
	}
	if e, run := p.Flush("a"); run != nil || e != nil {
		t.Fatalf("a second flush sent %v", e)
	}
}
