package relabel

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// The shard's index of outputs (outs, and more for the rare keys with
// several) behaves as a list per key in arrival order, whatever the
// sequence of links and unlinks, and its walks see every output once even
// when the loop's body unlinks the output it is given. A reference model,
// the list per key that the index replaced, is driven alongside.
func TestOutputIndexMatchesAListPerKey(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		m := &shard{outs: map[outKey]*output{}}
		ref := map[outKey][]*output{}
		keys := []outKey{{"", 1}, {"", 2}, {"a", 1}, {"b", 3}}
		ls := labels.FromStrings("__name__", "x")
		var live []*output
		check := func(step int) {
			t.Helper()
			for _, k := range keys {
				got := slices.Collect(m.under(k))
				if !slices.Equal(got, ref[k]) {
					t.Fatalf("seed %d step %d: under %v = %p, want %p", seed, step, k, got, ref[k])
				}
			}
			all := slices.Collect(m.all())
			if len(all) != len(live) {
				t.Fatalf("seed %d step %d: all yields %d outputs, want %d", seed, step, len(all), len(live))
			}
			for _, o := range live {
				if !slices.Contains(all, o) {
					t.Fatalf("seed %d step %d: all misses an output", seed, step)
				}
			}
			for k, l := range m.more {
				if len(l) == 0 || m.outs[k] == nil {
					t.Fatalf("seed %d step %d: more[%v] = %d outputs, outs[%v] = %p", seed, step, k, len(l), k, m.outs[k])
				}
			}
		}
		for step := range 60 {
			if len(live) == 0 || rng.IntN(3) > 0 {
				k := keys[rng.IntN(len(keys))]
				o := &output{part: k.part, labels: ls}
				m.link(k, o)
				ref[k] = append(ref[k], o)
				live = append(live, o)
			} else {
				o := live[rng.IntN(len(live))]
				var k outKey
				for kk, l := range ref {
					if slices.Contains(l, o) {
						k = kk
					}
				}
				m.delink(k, o)
				ref[k] = slices.DeleteFunc(ref[k], func(x *output) bool { return x == o })
				live = slices.DeleteFunc(live, func(x *output) bool { return x == o })
			}
			check(step)
		}
		// A walk whose body unlinks what it is given (as gc forgets) sees
		// every output once and leaves the index empty.
		seen := 0
		for o := range m.all() {
			seen++
			for k, l := range ref {
				if slices.Contains(l, o) {
					m.delink(k, o)
				}
			}
			o.set(outGone, true)
		}
		if seen != len(live) || len(m.outs) != 0 || len(m.more) != 0 {
			t.Fatalf("seed %d: a forgetting walk saw %d of %d outputs and left %d keys, %d with more", seed, seen, len(live), len(m.outs), len(m.more))
		}
	}
}

// Two idle outputs under one key (a hash collision; no other path makes
// them) are both forgotten by one idle clean-up. The index before this one
// (a slice per key, unlinked in place while gc walked a copy of its header)
// skipped the second and read a nil output.
func TestIdleCleanUpForgetsEveryOutputOfAKey(t *testing.T) {
	m := NewMerger(DefaultCollisionConfig(), nil)
	ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500")
	sh := m.shardOf(ls.Hash())
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.newOutput(m.nextID.Add(1), "", ls, stampOf(now))
	b := sh.newOutput(m.nextID.Add(1), "", ls, stampOf(now))
	if got := slices.Collect(sh.under(outKey{"", ls.Hash()})); !slices.Equal(got, []*output{a, b}) {
		t.Fatalf("under the key: %p, want %p and %p", got, a, b)
	}
	sh.gc(now.Add(10 * time.Duration(sh.cfg.IdleTimeout)))
	if !a.is(outGone) || !b.is(outGone) || sh.n != 0 || len(sh.outs) != 0 || len(sh.more) != 0 {
		t.Fatalf("after idle clean-up: gone %v %v, %d outputs, %d keys, %d with more", a.is(outGone), b.is(outGone), sh.n, len(sh.outs), len(sh.more))
	}
}
