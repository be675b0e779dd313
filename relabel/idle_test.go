package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// A partition whose sender stopped becomes idle once it has been quiet for
// the merge's wait bound (learned: 2 × 15 s + 10 s here), not before; one
// that keeps sending never does. A flush then sends what it held, and it is
// pending no more.
func TestMergeIdlePartitionFlushed(t *testing.T) {
	h := newHarness(t, "")
	p, err := New(DefaultConfig(), nil, h.m)
	if err != nil {
		t.Fatal(err)
	}
	send := func(part string, ts int64) {
		tx := h.m.Begin(part)
		tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(ts, 1+float64(ts/step)), sp(ts, 10)})
		e := tx.Collect()
		if part == "a" { // (the harness keys what it records by labels only)
			h.accept(e)
		}
		tx.Done(true, allTaken(e))
	}
	send("a", step) // tenant a: one scrape, then its sender stops
	for i := int64(1); i <= 20; i++ {
		send("b", i*step) // tenant b goes on, every 15 s
		h.clock.add(step * time.Millisecond)
	}
	// 300 s on: b's output is past learning, a's is held; both were last
	// seen now or long ago.
	if got := p.PendingPartitions(); !got["a"] || got["b"] {
		t.Fatalf("pending %v, want a idle, b not idle", got)
	}

	// Flushed, a is pending no more.
	emits, run := p.Flush("a")
	if run == nil || len(emits) != 1 || emits[0].Group != -1 {
		t.Fatalf("flush: %v, %v; want a's output", emits, run)
	}
	h.accept(emits)
	run.Done(true, allTaken(run.Retries()))
	if _, ok := p.PendingPartitions()["a"]; ok {
		t.Fatal("a still pending after its flush was taken")
	}

	// a again, once, its None series alone (the 500 sample held back):
	// then quiet for just under, and just over, the wait.
	tx := h.m.Begin("a")
	tx.Add(outTotal, []labels.Labels{srcNone}, [][]Sample{sp(21*step, 5)})
	if e := tx.Collect(); len(e) != 0 {
		t.Fatalf("emits %v, want the sample held for the 500 series", e)
	}
	tx.Done(true, nil)
	h.clock.add(39 * time.Second)
	if got := p.PendingPartitions(); got["a"] {
		t.Fatalf("pending %v: a idle 39 s after its request, want after 40 s", got)
	}
	h.clock.add(2 * time.Second)
	if got := p.PendingPartitions(); !got["a"] {
		t.Fatalf("pending %v: a not idle 41 s after its request", got)
	}
	emits, run = p.Flush("a")
	if run == nil || len(emits) != 1 {
		t.Fatalf("flush: %v, %v; want a's output", emits, run)
	}
	h.accept(emits)
	run.Done(true, allTaken(run.Retries()))
	if _, ok := p.PendingPartitions()["a"]; ok {
		t.Fatal("a still pending after its flush was taken")
	}
	wantSeries(t, h.series(outTotal), 12, 15)
	if e, run := p.Flush("a"); run != nil || e != nil {
		t.Fatalf("a second flush sent %v", e)
	}
}
