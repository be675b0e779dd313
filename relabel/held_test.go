package relabel

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHeldQueueMatchesSamples: random pushes and drops, with start
// timestamps absent (RW 1.0), present from some sample on, or on every
// sample, read back exactly as a plain []Sample holds them; the start
// timestamps cost nothing while none is queued; a snapshot round-trips.
func TestHeldQueueMatchesSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var q heldQueue
		var ref []Sample
		stFrom := []int{-1, 0, rng.IntN(400)}[round%3] // -1: no start timestamps
		for i := range 400 {
			if rng.IntN(3) == 0 && len(ref) > 0 {
				n := 1 + rng.IntN(len(ref))
				q.drop(n)
				ref = ref[n:]
			} else {
				p := Sample{T: int64(i), V: float64(rng.IntN(100))}
				if stFrom >= 0 && i >= stFrom {
					p.ST = int64(i - rng.IntN(3))
				}
				q.push(p)
				ref = append(ref, p)
			}
			if q.len() != len(ref) {
				t.Fatalf("round %d step %d: len %d, want %d", round, i, q.len(), len(ref))
			}
			for j, want := range ref {
				if got := q.at(j); got != want {
					t.Fatalf("round %d step %d: sample %d is %v, want %v", round, i, j, got, want)
				}
			}
			if ft, ok := q.first(); ok != (len(ref) > 0) || (ok && ft != ref[0].T) {
				t.Fatalf("round %d step %d: first %d %v, want %v", round, i, ft, ok, ref)
			}
			hasST := slices.ContainsFunc(ref, func(p Sample) bool { return p.ST != 0 })
			if hasST && q.st == nil {
				t.Fatalf("round %d step %d: start timestamps queued but not kept", round, i)
			}
			if len(ref) == 0 && q.st != nil {
				t.Fatalf("round %d step %d: an empty queue keeps start timestamps", round, i)
			}
			if n := len(q.s); n > 64 && cap(q.s) > n+n/4+n/8 {
				t.Fatalf("%d samples in a queue of capacity %d: more than a quarter unused", n, cap(q.s))
			}
		}
		var back heldQueue
		back.set(q.samples())
		if !slices.Equal(back.samples(), ref) {
			t.Fatalf("round %d: snapshot round trip %v, want %v", round, back.samples(), ref)
		}
	}
	var q heldQueue
	for i := range 100 {
		q.push(Sample{T: int64(i), V: 1})
	}
	if q.st != nil || q.heapBytes() > allocSize(128*heldSampleBytes) {
		t.Fatalf("100 samples without start timestamps: %d bytes (start timestamps kept: %v)", q.heapBytes(), q.st != nil)
	}
}
