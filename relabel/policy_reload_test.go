package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
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

// merge -> keep_distinct -> merge while the genuine 500 is removed (LiteLLM
// expired it) between two scrapes: its last sample came before the merge
// went off, its stale marker after the merge is back. The restarted output
// never saw it live: it goes on from the None alone (docs/collisions.md,
// Reloads), and the count that leaves the sum, unknown to this state, is
// counted (rwfix_merge_unknown_counts_total) instead of vanishing silently.
func TestMergeBackSourceFirstSeenStaleIsCounted(t *testing.T) {
	h := newHarness(t, "")
	reg := prometheus.NewRegistry()
	h.m = NewMerger(h.cfg, reg)
	h.m.SetClock(h.clock.now)
	h.m.setPreimage(func(labels.Labels) int { return h.preimage })
	h.scrape(0, 2, 2)
	h.scrape(step, 2, 2)
	h.drain()
	merge := DefaultCollisionConfig()
	keepDistinct := merge
	keepDistinct.Policy = PolicyKeepDistinct
	h.m.setConfig(keepDistinct)
	h.m.retire(func(src, out labels.Labels) bool { return false }, false) // as Pipeline.Activate
	h.clock.add(5 * time.Second)
	h.m.setConfig(merge)
	h.m.retire(func(src, out labels.Labels) bool { return true }, false)
	h.scrape(2*step, 2, stale) // the 500 is gone: its stale marker
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(3*step, 3)))
	h.drain()
	got := h.values(outTotal)
	if got[0] != 4 || got[step] != 4 {
		t.Fatalf("before the reload: got %v, want 4 and 4", got)
	}
	if got[2*step] != 2 || got[3*step] != 3 {
		t.Fatalf("after the merge came back: got %v, want 2 then 3 (the None alone)", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "rwfix_merge_unknown_counts_total" {
			n = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if n != 1 {
		t.Fatalf("rwfix_merge_unknown_counts_total = %v, want 1 (the 500's count, unknown to the restarted merge)", n)
	}
}

// The genuine 500 is removed (LiteLLM expired it) at the scrape at which the
// merge first sees the None, which lived all along: its samples came while
// the merge was off (a reload without the preset), and a reload brought the
// merge back just before (sim all 15001395). The None's creation time, long
// before the 500's last sample, says it was not born there: the label set was
// not removed and created again, the 500 vanished alone and its count stays
// in the sum (carried) when it is born again.
// The decision is logged: a restart that replays the log (a SIGKILL right
// after that scrape's sample went out) decides alike.
func TestMergeSourceFirstSeenAsTheOtherGoesIsNotAReplacement(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "replayed"}[restart], func(t *testing.T) {
			dir := t.TempDir()
			h := newHarness(t, dir)
			t.Cleanup(func() { h.m.Close() })
			h.clock.add(time.Hour)
			t0, cNone, c500, noneBorn, _ := noneFirstSeenAsThe500Goes(h)
			h.drain()
			if got := h.values(outTotal)[t0+2*step]; got != 10 {
				t.Fatalf("as the 500 goes and the None is first seen: got %v, want 10 (all %v)", got, h.values(outTotal))
			}
			if restart {
				h.m = h.open(dir) // SIGKILL: the log is replayed
			}
			reborn := float64((t0 + 3*step) / 1000)
			h.scrapeCreated([]any{cNone, sp(t0+3*step, noneBorn), c500, sp(t0+3*step, reborn)},
				[]any{srcNone, sp(t0+3*step, 5), src500, sp(t0+3*step, 1)})
			h.scrapeCreated([]any{cNone, sp(t0+4*step, noneBorn), c500, sp(t0+4*step, reborn)},
				[]any{srcNone, sp(t0+4*step, 6), src500, sp(t0+4*step, 1)})
			h.drain()
			got := h.values(outTotal)
			want := map[int64]float64{t0: 5, t0 + step: 5, t0 + 2*step: 10, t0 + 3*step: 11, t0 + 4*step: 12}
			for ts, w := range want {
				if got[ts] != w {
					t.Fatalf("at %d: got %v, want %v (all %v)", ts-t0, got[ts], w, got)
				}
			}
		})
	}
}
