package relabel

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestPendArrivalsNeverEarly drives one output's pend with random arrivals
// (mostly in timestamp order, some inside earlier runs, some repeated, the
// clock moving by random steps) and random finalizations, and checks against
// the exact record of first arrivals: each queued timestamp's arrival, as
// arrivedAt gives it, is never earlier than its own first sample's (the birth
// wait is never cut short); when every timestamp comes in order, at most
// pendQuantum later; and timestamps coming in order within one quantum share
// an entry. (A timestamp inside a run makes the run's earlier ones wait from
// its arrival: later, never earlier.)
func TestPendArrivalsNeverEarly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := time.Now()
	for round := range 600 {
		ordered := round%2 == 1
		o := &output{}
		first := map[int64]stamp{} // queued timestamp -> its first arrival
		now, last, fin := base, int64(0), int64(0)
		for range 400 {
			now = now.Add(time.Duration(rng.IntN(int(120 * time.Millisecond))))
			var ts int64
			switch r := rng.IntN(10); {
			case r < 7 || last == fin || (ordered && r < 9): // the next scrape
				last += 1 + int64(rng.IntN(3))
				ts = last
			case r < 9: // one inside the queued ones (another source, or a late shard)
				ts = fin + 1 + rng.Int64N(last-fin)
			default: // finalize the oldest few
				fin += 1 + rng.Int64N(last-fin)
				o.pendDone(fin)
				for q := range first {
					if q <= fin {
						delete(first, q)
					}
				}
				continue
			}
			if _, ok := first[ts]; !ok {
				first[ts] = stampOf(now)
			}
			o.arrived(ts, stampOf(now))
			for q, at := range first {
				got, ok := o.arrivedAt(q)
				if !ok || got < at {
					t.Fatalf("round %d: timestamp %d arrived at %d, pend says %d (ok %v): the wait would end early", round, q, at, got, ok)
				}
				if ordered && got-at >= pendQuantum {
					t.Fatalf("round %d: timestamp %d, in order, arrived at %d, pend says %d: more than pendQuantum later", round, q, at, got)
				}
			}
		}
	}
	// In order within one quantum: one entry.
	o := &output{}
	now := base
	for ts := range int64(50) {
		o.arrived(ts+1, stampOf(now.Add(time.Duration(ts)*time.Millisecond)))
	}
	if n := len(o.pend); n > 2 { // the 50 ms may cross one quantum's end
		t.Fatalf("50 timestamps in order within 50 ms: %d pend entries, want at most 2", n)
	}
}
