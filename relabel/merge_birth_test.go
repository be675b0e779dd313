package relabel

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// Births: a source first seen at T counted 0 before T, so the output has a
// sample at every timestamp at which any source has one, equal to the sum of
// the sources that existed then (shard.go, invariants I3 and I4).

// The None series is born first, its 500 three scrapes later (and the
// reverse): every scrape has its merged sample, from the first on.
func TestMergeBirthAtDifferentScrapes(t *testing.T) {
	for _, noneFirst := range []bool{true, false} {
		for _, durable := range []bool{false, true} {
			dir := ""
			if durable {
				dir = t.TempDir()
			}
			h := newHarness(t, dir)
			h.clock.add(5 * time.Second) // the sender's first scrape comes after rwfix started
			base := h.clock.now().UnixMilli()
			first, second := srcNone, src500
			if !noneFirst {
				first, second = src500, srcNone
			}
			var want []float64
			for i := range int64(6) {
				ts := base + i*step
				h.clock.add(step * time.Millisecond)
				h.req(g(outTotal, first, sp(ts, float64(i+1))))
				v := float64(i + 1)
				if i >= 3 {
					h.req(g(outTotal, second, sp(ts, 10*float64(i-2))))
					v += 10 * float64(i-2)
				}
				want = append(want, v)
			}
			h.drain()
			wantSeries(t, h.series(outTotal), want...)
			if n := testutil.ToFloat64(h.m.metrics.unknown); n != 0 {
				t.Fatalf("noneFirst=%v durable=%v: %v samples counted unknown", noneFirst, durable, n)
			}
		}
	}
}

// A None series born while its 500 already counts, its first sample on a
// shard that sends a few seconds after the 500's: the merged sample at its
// birth is the sum of both (the birth wait), not the 500 alone sent early
// and the None counted late.
func TestMergeBirthOnAnotherShard(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(4) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, sp(i*step, 10+float64(i))))
	}
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(4*step, 20))) // the 500's shard, first
	h.clock.add(4 * time.Second)               // batch_send_deadline is 5 s
	h.req(g(outTotal, srcNone, sp(4*step, 3))) // the None's shard: born now
	for i := int64(5); i < 8; i++ {
		h.scrape(i*step, 3+float64(i-4), 20+float64(i-4))
	}
	h.drain()
	wantSeries(t, h.series(outTotal), 10, 11, 12, 13, 23, 25, 27, 29)
	if n := testutil.ToFloat64(h.m.metrics.late); n != 0 {
		t.Fatalf("%v samples counted late", n)
	}
}

// After a LiteLLM restart every series is born again at 0; an output that
// had one source before gains one at the restart's first scrape, from
// another shard: the restart's first merged samples are exact.
func TestMergeBirthAtLiteLLMRestart(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(3) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, sp(i*step, 50+float64(i))))
	}
	// Restart: the 500 series comes back from 0, the None series is born.
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(3*step, 3)))
	h.clock.add(2 * time.Second)
	h.req(g(outTotal, srcNone, sp(3*step, 3)))
	h.scrape(4*step, 4, 5)
	h.drain()
	wantSeries(t, h.series(outTotal), 50, 51, 52, 6, 9)
}

// startWithoutStateWithBacklog starts a merge without state an hour into
// the sender's run (its data directory lost) and gives it the None's
// samples from the two scrapes before the start (its shard had failed
// against the lost process; the 500's had delivered them). start is the
// horizon.
func startWithoutStateWithBacklog(t *testing.T) (h *harness, start int64) {
	t.Helper()
	h = newHarness(t, "")
	h.clock.add(time.Hour)
	h.m = h.open(t.TempDir())
	start = h.clock.now().UnixMilli()
	h.req(g(outTotal, srcNone, []Sample{{T: start - 2*step, V: 5}, {T: start - step, V: 6}}))
	return h, start
}

// A start without state (data directory lost): a source first seen after
// the start may have counted before it, at timestamps before the horizon;
// those are a counted gap, never a low value. From the horizon on, a source
// first seen later was born then.
func TestMergeBirthBeforeTheHorizonIsAGap(t *testing.T) {
	h, start := startWithoutStateWithBacklog(t)
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(start+step, 7)))
	h.req(g(outTotal, src500, sp(start+step, 70)))
	h.scrape(start+2*step, 8, 80)
	h.drain()
	got := h.values(outTotal)
	if _, ok := got[start-2*step]; ok {
		t.Fatalf("a value before the horizon, where the 500's count is unknown: %v", got)
	}
	if got[start+step] != 77 || got[start+2*step] != 88 {
		t.Fatalf("after the horizon: %v", got)
	}
	if n := testutil.ToFloat64(h.m.metrics.unknown); n != 2 {
		t.Fatalf("%v samples counted unknown, want 2", n)
	}
}

// RW 2.0: a first sample whose start timestamp is after T says the source
// did not exist at T, even before the horizon.
func TestMergeBirthStartTimestampBeforeTheHorizon(t *testing.T) {
	h := newHarness(t, "")
	h.clock.add(time.Hour)
	h.m = h.open(t.TempDir())
	start := h.clock.now().UnixMilli()
	h.req(g(outTotal, srcNone, []Sample{{T: start - 2*step, V: 5, ST: start - 3*step}}))
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, []Sample{{T: start - step, V: 1, ST: start - step - 500}}),
		g(outTotal, srcNone, sp(start-step, 6)))
	h.drain()
	got := h.values(outTotal)
	if got[start-2*step] != 5 || got[start-step] != 7 {
		t.Fatalf("got %v", got)
	}
}

// The horizon is kept in the log: a restart with its state does not make
// the births it has seen unknowable again.
func TestMergeHorizonSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.clock.add(5 * time.Second)
	base := h.clock.now().UnixMilli()
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(base, 10)))
	h.clock.add(time.Hour) // down for an hour
	h.m = h.open(dir)
	// The None series, born at base+step while rwfix was down, is caught up.
	h.req(g(outTotal, src500, sp(base+step, 11)), g(outTotal, srcNone, sp(base+step, 1)))
	h.drain()
	wantSeries(t, h.series(outTotal), 10, 12)
	if n := testutil.ToFloat64(h.m.metrics.unknown); n != 0 {
		t.Fatalf("%v unknown", n)
	}
}

// Idle clean-up never forgets a count: an output whose stale source still
// counts beside a live one is kept, and comes back exact.
func TestMergeIdleKeepsStaleCount(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 49, 100)
	h.scrape(step, stale, 101) // the None series expired: its 49 stays in the sum
	h.drain()
	h.clock.add(3 * time.Hour) // everything silent (a sender outage)
	h.req()
	if n := h.m.outputs(); n != 1 {
		t.Fatalf("%d outputs, want the one whose stale source counts kept", n)
	}
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(2*step, 102)))
	h.drain()
	wantSeries(t, h.series(outTotal), 149, 150, 151)
}

// An output forgotten while its sources were silent (not stale) comes back
// waiting for every source it had: a shard lagging longer than the birth
// wait does not restart it from one source.
func TestMergeForgottenWaitsForItsSources(t *testing.T) {
	h := newHarness(t, "")
	h.preimage = 0 // user rules: any number of sources
	h.scrape(0, 50, 100)
	h.scrape(step, 54, 102)
	h.drain()
	h.clock.add(3 * time.Hour)
	h.req()
	if n := h.m.outputs(); n != 0 {
		t.Fatalf("%d outputs, want it forgotten", n)
	}
	ts := h.clock.now().UnixMilli()
	h.req(g(outTotal, src500, sp(ts, 103)))
	h.clock.add(40 * time.Second) // the None's shard lags 40 s
	h.req(g(outTotal, srcNone, sp(ts, 55)))
	h.drain()
	got := h.series(outTotal)
	if last := got[len(got)-1]; last.T != ts || last.V != 158 {
		t.Fatalf("after coming back: %v, want 158 at %d", got, ts)
	}
}

// A forgotten output that comes back while the state is full is merged
// again: forwarded unmerged, its counter would drop (None left unrepaired).
func TestMergeForgottenComesBackWhenFull(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 50, 100)
	h.drain()
	h.clock.add(3 * time.Hour)
	h.req()
	other := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500", "user", "b")
	cfg := DefaultCollisionConfig()
	cfg.MaxSeries = 1
	h.m.setConfig(cfg)
	h.req(g(other, other, sp(h.clock.now().UnixMilli(), 1))) // fills the state
	ts := h.clock.now().UnixMilli() + step
	tx := h.m.Begin("")
	if !tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(ts, 51), sp(ts, 101)}) {
		t.Fatal("the forgotten output was refused by the full state")
	}
	tx.Done(true, nil)
}

// The tombs are dropped oldest first, the same live and in a replay: two
// states fed the same requests keep the same tombs.
func TestMergeTombEvictionReplays(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.cfg.MaxSeries = mergeShards // one tomb per shard
	h.m.setConfig(h.cfg)
	for u := range 40 {
		out := labels.FromStrings("__name__", "x_total", "status_code", "500", "user", string(rune('a'+u)))
		h.clock.add(time.Second)
		h.req(g(out, out, sp(h.clock.now().UnixMilli(), 1)))
		h.clock.add(3 * time.Hour)
		h.req()
	}
	live := map[outKey]tomb{}
	for _, sh := range h.m.shards {
		for k, v := range sh.forgotten {
			live[k] = v
		}
	}
	h.m = h.open(dir)
	for _, sh := range h.m.shards {
		for k := range sh.forgotten {
			if _, ok := live[k]; !ok {
				t.Fatalf("replay kept tomb %v that the live state dropped", k)
			}
		}
	}
	n := 0
	for _, sh := range h.m.shards {
		n += len(sh.forgotten)
	}
	if n != len(live) {
		t.Fatalf("replay kept %d tombs, live %d", n, len(live))
	}
}

// RW 2.0: an output sent without a start timestamp never takes one later
// than its samples (a TSDB would read a reset).
func TestMergeStartTimestampNeverJumps(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 1, 10)
	h.scrape(step, 2, 20)
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, []Sample{{T: 2 * step, V: 3, ST: 2*step - 100}}, src500, sp(2*step, 30)))
	h.drain()
	for _, s := range h.series(outTotal) {
		if s.ST != 0 {
			t.Fatalf("start timestamp %d on %v", s.ST, h.series(outTotal))
		}
	}
}

// The scrape interval survives a restart from a snapshot: samples are not
// held for max_wait after every restart.
func TestMergeIntervalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	for i := range int64(3) {
		h.scrape(i*step, 1, 10)
	}
	h.drain()
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	h.m = h.open(dir)
	for _, sh := range h.m.shards {
		if sh.n > 0 && sh.interval != step {
			t.Fatalf("interval %d after the restart, want %d", sh.interval, step)
		}
	}
}

// An old log (written before the horizon was kept) replays; its horizon is
// the restart.
func TestMergeOldLogWithoutHorizon(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 1, 10)
	h.drain()
	// Drop the meta record from the snapshot, as an old version wrote it.
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, logName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, k := uvarintLen(b)
	if err := os.WriteFile(path, b[k+4+int(n):], 0o640); err != nil {
		t.Fatal(err)
	}
	h.m = h.open(dir)
	if h.m.outputs() != 1 || h.m.horizon == math.MinInt64 {
		t.Fatalf("outputs %d horizon %d", h.m.outputs(), h.m.horizon)
	}
}

func uvarintLen(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// A source that went stale (LiteLLM expired it) and is reborn at a scrape
// whose other sample travels first, on another shard: it counts at its
// rebirth, as at a birth.
func TestMergeRebirthOfStaleSourceOnAnotherShard(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 5, 10)
	h.scrape(step, stale, 11) // the None series expired
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(2*step, 12)))
	h.clock.add(3 * time.Second)
	h.req(g(outTotal, srcNone, sp(2*step, 1))) // reborn, on a slower shard
	h.drain()
	wantSeries(t, h.series(outTotal), 15, 16, 18)
	if n := testutil.ToFloat64(h.m.metrics.late); n != 0 {
		t.Fatalf("%v samples counted late", n)
	}
}

// A reload that changes the partitions (forward_headers): the outputs of
// the old partition are orphans until a request of the new one adopts them,
// with everything they held — the tenant's counter goes on exactly, across a
// restart in between too. Two tenants' orphans with one label set cannot be
// told apart: they are retired, and the new output starts after them.
func TestMergePartitionChangeAdopts(t *testing.T) {
	for _, restart := range []bool{false, true} {
		dir := t.TempDir()
		h := newHarness(t, dir)
		tx := h.m.Begin("acme")
		tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(0, 1), sp(0, 10)})
		h.accept(tx.Collect())
		tx.Done(true, nil)
		h.clock.add(step * time.Millisecond)
		tx = h.m.Begin("acme")
		tx.Add(outTotal, []labels.Labels{srcNone}, [][]Sample{sp(step, 2)}) // held: the 500 lags
		if e := tx.Collect(); len(e) != 0 {
			t.Fatalf("held sample sent: %v", e)
		}
		tx.Done(true, nil)
		h.m.retire(func(src, out labels.Labels) bool { return true }, true)
		if restart {
			h.m = h.open(dir) // SIGKILL after the reload
		}
		// The new partition's first request carries the lagging 500.
		tx = h.m.Begin("")
		tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(2*step, 3), append(sp(step, 20), sp(2*step, 30)...)})
		e := tx.Collect()
		h.accept(e)
		tx.Done(true, allTaken(e))
		h.drain()
		got := h.values(outTotal)
		if got[0] != 11 || got[step] != 22 || got[2*step] != 33 {
			t.Fatalf("restart %v: got %v", restart, got)
		}
	}
	// Two tenants' outputs with one label set: retired, fenced.
	h := newHarness(t, "")
	for _, part := range []string{"a", "b"} {
		tx := h.m.Begin(part) // each tenant's own upstream: not recorded
		tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(0, 1), sp(0, 10)})
		tx.Collect()
		tx.Done(true, nil)
	}
	h.m.retire(func(src, out labels.Labels) bool { return true }, true)
	tx := h.m.Begin("")
	tx.Add(outTotal, []labels.Labels{srcNone, src500}, [][]Sample{sp(0, 1), sp(0, 10)})
	if e := tx.Collect(); len(e) != 0 {
		t.Fatalf("a new output sent at or before the retired ones' last timestamp: %v", e)
	}
	tx.Done(true, nil)
}

// _created: the earliest creation time since the exporter's restart, as a
// fixed LiteLLM's one series would have it — a None series that expired
// keeps its creation time in it, and one created again (evicted, reborn)
// does not move it later; a restart (every series created again) does.
func TestMergeCreatedKeepsTheEarliest(t *testing.T) {
	h := newHarness(t, "")
	created := func(ts int64, none, five float64) {
		h.clock.add(step * time.Millisecond)
		var srcs []labels.Labels
		var smp [][]Sample
		if none != 0 {
			srcs, smp = append(srcs, srcNone), append(smp, sp(ts, none))
		}
		if five != 0 {
			srcs, smp = append(srcs, src500), append(smp, sp(ts, five))
		}
		h.req(g(outCreat, append([]any{}, pairs(srcs, smp)...)...))
	}
	created(0, 500, 700)
	created(step, stale, 700)   // the None series expired
	created(2*step, 0, 700)     // absent
	created(3*step, 900, 700)   // created again
	created(4*step, 2000, 2000) // LiteLLM restarted: both created again
	h.drain()
	wantSeries(t, h.series(outCreat), 500, 500, 500, 500, 2000)
}

func pairs(srcs []labels.Labels, smp [][]Sample) []any {
	var out []any
	for i := range srcs {
		out = append(out, srcs[i], smp[i])
	}
	return out
}

// The whole output vanishes (every source stale) and one source comes back
// while the other stays gone. Its _created series tells which: created again
// (LiteLLM restarted, or removed the label set) — the output restarts from
// what came back; the same series (a failed scrape while the other was
// removed) — it goes on, the other's count carried. Without creation times
// a source back at a value not lower is taken as going on.
func TestMergeRebornAfterVanishing(t *testing.T) {
	cNone := labels.NewBuilder(srcNone).Set("__name__", "litellm_proxy_total_requests_metric_created").Labels()
	c500 := labels.NewBuilder(src500).Set("__name__", "litellm_proxy_total_requests_metric_created").Labels()
	const absent = -1
	for _, tc := range []struct{ recreated, crash bool }{{true, false}, {false, false}, {true, true}} {
		recreated := tc.recreated
		dir := t.TempDir()
		h := newHarness(t, dir)
		scrape := func(ts int64, none, five, noneBorn float64) {
			h.clock.add(step * time.Millisecond)
			var srcs, created []any
			bornAt := func(v, born float64) float64 { // a failed scrape: stale too
				if value.IsStaleNaN(v) {
					return v
				}
				return born
			}
			if none != absent {
				srcs = append(srcs, srcNone, sp(ts, none))
				created = append(created, cNone, sp(ts, bornAt(none, noneBorn)))
			}
			if five != absent {
				srcs = append(srcs, src500, sp(ts, five))
				created = append(created, c500, sp(ts, bornAt(five, 100)))
			}
			h.req(g(outCreat, created...))
			h.req(g(outTotal, srcs...))
		}
		scrape(0, 1, 4, 200)
		scrape(step, stale, stale, 200) // a failed scrape
		scrape(2*step, 1, 4, 200)       // back: goes on
		scrape(3*step, stale, stale, 200)
		born := 200.0
		if recreated {
			born = 300
		}
		scrape(4*step, 1, absent, born) // the None back alone; the 500 removed
		scrape(5*step, 2, absent, born)
		if tc.crash {
			// SIGKILL, then a restart from the log: the replay decides as
			// the live state did (the decision is logged; the creation
			// times are not kept).
			h.m.flushLog()
			h.m = h.open(dir)
			scrape(6*step, 3, absent, born)
		}
		h.drain()
		want := []float64{5, math.NaN(), 5, math.NaN(), 1, 2}
		if !recreated {
			want = []float64{5, math.NaN(), 5, math.NaN(), 5, 6}
		}
		if tc.crash {
			want = append(want, 3)
		}
		wantSeries(t, h.series(outTotal), want...)
	}
}

// A source that vanished alone (LiteLLM removed the series while the other
// went on) and comes back was created again from zero, even at a value not
// below its old one: its old count stays in the sum. The output vanishing
// after a failed scrape, with that source still gone, goes on.
func TestMergeVanishedAloneComesBackFromZero(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 2, 1)
	h.scrape(step, 2, stale) // the 500 series removed
	h.scrape(2*step, 2, 1)   // created again: 1 new failure, not the old 1
	h.scrape(3*step, stale, 2)
	h.scrape(4*step, stale, stale) // then a failed scrape
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(5*step, 2))) // back; the None stays removed
	h.drain()
	wantSeries(t, h.series(outTotal), 3, 3, 4, 5, math.NaN(), 5)
}

// A source removed alone, then a failed scrape, then everything back at
// once (the removed one created again): the same life, its old count kept.
func TestMergeRecreatedAfterFailedScrape(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 2, 1)
	h.scrape(step, stale, 1) // the None series removed
	h.scrape(2*step, stale, stale)
	h.scrape(3*step, 1, 1) // a failed scrape over; the None created again
	h.drain()
	wantSeries(t, h.series(outTotal), 3, 3, math.NaN(), 4)
}

// RW 2.0: a series that comes back with a later start timestamp was created
// again, even at a value not below its old one: the output restarts (after
// vanishing) with the new start timestamp.
func TestMergeLaterStartTimestampIsARebirth(t *testing.T) {
	h := newHarness(t, "")
	at := func(ts int64, v float64, st int64) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, []Sample{{T: ts, V: v, ST: st}}))
	}
	at(0, 1, -100)
	at(step, stale, 0)
	at(2*step, 1, 2*step-10) // LiteLLM restarted: created again, one failure again
	at(3*step, 2, 2*step-10)
	h.drain()
	got := h.series(outTotal)
	wantSeries(t, got, 1, math.NaN(), 1, 2)
	if got[2].ST != 2*step-10 || got[3].ST != 2*step-10 {
		t.Fatalf("start timestamps %v, want the new series' after its rebirth", got)
	}
}

// A power loss: the machine booted again since the log was written, and the
// log was not closed — its last unsynced records may be gone, so the horizon
// moves to the restart (births before it unknowable, counted). A SIGKILL in
// the same boot loses nothing: the horizon stays.
func TestMergePowerLossMovesTheHorizon(t *testing.T) {
	defer func(f func() string) { bootID = f }(bootID)
	for _, rebooted := range []bool{false, true} {
		bootID = func() string { return "boot-1" }
		dir := t.TempDir()
		h := newHarness(t, "")
		h.clock.add(time.Hour)
		h.m = h.open(dir)
		start := h.clock.now().UnixMilli()
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, sp(start+step, 1))) // a lone 500: held for its None's birth
		if rebooted {
			bootID = func() string { return "boot-2" }
		}
		h.clock.add(time.Minute)
		h.m = h.open(dir) // no Close: killed, or the power went
		if h.m.powerLoss != rebooted {
			t.Fatalf("rebooted %v: power loss %v", rebooted, h.m.powerLoss)
		}
		if moved := h.m.horizon > start+step; moved != rebooted {
			t.Fatalf("rebooted %v: horizon %d, sample at %d", rebooted, h.m.horizon, start+step)
		}
		h.drain()
		if _, ok := h.values(outTotal)[start+step]; ok == rebooted {
			t.Fatalf("rebooted %v: sample sent %v", rebooted, ok)
		}
	}
}

// At one scrape the only source that counted goes away and another is born:
// the label set was removed and created again (a fixed exporter's one series
// would count from zero), not a source that vanished beside a live one.
func TestMergeReplacedAtOneScrape(t *testing.T) {
	h := newHarness(t, "")
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(0, 1)))
	h.scrape(step, 1, stale) // the 500 removed, the None born
	h.scrape(2*step, 2, 0)
	h.drain()
	wantSeries(t, h.series(outTotal), 1, 1, 2)
}

// While the sender retries a request of the partition (the upstream fails),
// the shard that sent it is blocked while another may flow: the None's
// requests carry nothing to forward and are answered, the 500's shard is
// stuck. No timestamp is finalized by the clock meanwhile: the 500 born at
// the None's first scrape counts there once its shard drains.
func TestMergeWaitsWhileTheSenderRetries(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(6) {
		h.clock.add(step * time.Millisecond)
		h.m.Retrying("") // the 500's shard: answered 503 again (it retries within 5 s)
		h.req(g(outTotal, srcNone, sp(i*step, float64(i+1))))
	}
	h.clock.add(time.Second) // the upstream is back: the 500's backlog
	h.req(g(outTotal, src500, []Sample{{T: 0, V: 10}, {T: step, V: 10}, {T: 2 * step, V: 10}, {T: 3 * step, V: 10}, {T: 4 * step, V: 10}, {T: 5 * step, V: 10}}))
	h.drain()
	wantSeries(t, h.series(outTotal), 11, 12, 13, 14, 15, 16)
}

// LiteLLM restarts between two scrapes: the None series is created again
// at once (at its old count, no gap), the 500 not yet. Its _created series
// says it was created again: the output restarts from it.
func TestMergeRestartBetweenScrapesByCreationTime(t *testing.T) {
	cNone := labels.NewBuilder(srcNone).Set("__name__", "litellm_proxy_total_requests_metric_created").Labels()
	c500 := labels.NewBuilder(src500).Set("__name__", "litellm_proxy_total_requests_metric_created").Labels()
	h := newHarness(t, "")
	h.clock.add(step * time.Millisecond)
	h.req(g(outCreat, cNone, sp(0, 100), c500, sp(0, 90)))
	h.req(g(outTotal, srcNone, sp(0, 1), src500, sp(0, 1)))
	h.clock.add(step * time.Millisecond)
	h.req(g(outCreat, cNone, sp(step, 200), c500, sp(step, stale)))
	h.req(g(outTotal, srcNone, sp(step, 1), src500, sp(step, stale)))
	h.drain()
	wantSeries(t, h.series(outTotal), 2, 1)
}

// RW 2.0: an output that has sent only a stale marker (its one source's
// last sample before LiteLLM restarted, say, right after a reload turned
// the merge on) counted nothing; a source born after that gap brings its own
// start timestamp, from the output's first count on — a stale marker in the
// TSDB is not a sample a later start timestamp would reset. Also after a
// restart from the log in between (the snapshot's state).
func TestMergeBirthAfterOnlyAStaleMarkerTakesItsStartTimestamp(t *testing.T) {
	for _, restart := range []bool{false, true} {
		dir := t.TempDir()
		h := newHarness(t, dir)
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, srcNone, sp(0, stale))) // gone: LiteLLM restarted
		h.drain()
		if restart {
			if err := h.m.Close(); err != nil {
				t.Fatal(err)
			}
			h.m = h.open(dir)
		}
		born := int64(5*step - 700) // the None series born again, between two scrapes
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, srcNone, []Sample{{T: 6 * step, V: 1, ST: born}}))
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, srcNone, []Sample{{T: 7 * step, V: 2, ST: born}}))
		h.drain()
		got := h.series(outTotal)
		wantSeries(t, got, math.NaN(), 1, 2)
		if got[1].ST != born || got[2].ST != born {
			t.Fatalf("restart %v: start timestamps %v, want %d from the birth on", restart, got, born)
		}
	}
}

// LiteLLM restarts between two scrapes (no failed scrape: no gap) and one
// source is back at its old count by the next scrape: its value does not
// drop, but its _created series says it was created again. Sim normal seed
// 1567: the None dropped 2 → 1, the 500 was back at 2, and the _created
// samples of that scrape came in a request after the _total ones. The output
// must reset to 3 (every live source reset: LiteLLM restarted), not carry
// the None's 2 as a reset alone (5): it waits for the 500's creation time.
// Also with the _created samples first, across a SIGKILL right after (the
// replay decides alike), and when the _created sample never comes (birth_wait,
// then a reset alone: 5).
func TestMergeRestartBetweenScrapesAtTheOldCount(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		createdFirst, crash, never bool
		want                       []float64
	}{
		{name: "created after", want: []float64{3, 4, 3, 5}},
		{name: "created first", createdFirst: true, want: []float64{3, 4, 3, 5}},
		{name: "SIGKILL after the restart", crash: true, want: []float64{3, 4, 3, 5}},
		{name: "no creation time", never: true, want: []float64{3, 4, 5, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := newHarness(t, dir)
			scrape := func(ts int64, none, five, noneBorn, fiveBorn float64) {
				h.clock.add(step * time.Millisecond)
				created := g(outCreat, createdOf(srcNone), sp(ts, noneBorn), createdOf(src500), sp(ts, fiveBorn))
				if tc.never && ts > step {
					created = g(outCreat, createdOf(srcNone), sp(ts, noneBorn)) // the 500's stays away
				}
				if tc.createdFirst {
					h.req(created)
				}
				h.req(g(outTotal, srcNone, sp(ts, none), src500, sp(ts, five)))
				if !tc.createdFirst {
					h.clock.add(2 * time.Second) // the _created samples' shard sends later
					h.req(created)
				}
			}
			scrape(0, 1, 2, 100, 90)
			scrape(step, 2, 2, 100, 90)
			scrape(2*step, 1, 2, 200, 210) // LiteLLM restarted between the scrapes
			if tc.crash {
				h.m.flushLog()
				h.m = h.open(dir)
			}
			scrape(3*step, 2, 3, 200, 210)
			h.drain()
			wantSeries(t, h.series(outTotal), tc.want...)
		})
	}
}

// LiteLLM restarts between two scrapes and, at the next scrape, its None is
// back at its old count while its 500 is stale (not incremented since):
// the 500's count is kept only if the exporter went on, which the None's
// _created sample of that scrape tells (created again: the output restarts
// from the None's 1). Sim upstream seed 1000557: after an upstream outage
// the _total samples came on one shard while the _created ones were still
// behind on another — not a single one of the None's seen yet, so nothing
// said that family had creation times. Both sources known and live, the
// output must still wait for that creation time: while the sender retries
// (its shards are behind), when the 500's family said creation times (one
// exporter's series have them alike), and when neither (the _created
// shard's answer was lost: a source going stale waits for a family never
// seen). The output's truth is 1, 2, 1, 2.
func TestMergeRestartBetweenScrapesCreationTimeBehind(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		retrying, siblingFirst bool
	}{
		{name: "sender retrying", retrying: true},
		{name: "sibling said creation times", siblingFirst: true},
		// The _created shard's answer was lost: it sends again after its
		// remote_timeout, and rwfix, which answered 2xx, sees no retry.
		{name: "lost answer, rwfix settled, no family seen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "")
			h.clock.add(4 * step * time.Millisecond)
			if tc.retrying {
				h.m.Retrying("")
			}
			if tc.siblingFirst {
				h.req(g(outCreat, createdOf(src500), sp(step, 90)))
			}
			// The backlog of the _total samples' shard, in one request.
			h.req(g(outTotal,
				srcNone, []Sample{{T: 0, V: 1}, {T: step, V: 1}, {T: 2 * step, V: 1}, {T: 3 * step, V: 1}},
				src500, []Sample{{T: step, V: 1}, {T: 2 * step, V: math.Float64frombits(value.StaleNaN)}, {T: 3 * step, V: 1}}))
			h.clock.add(time.Second) // the _created samples' shard drains its backlog
			h.req(g(outCreat,
				createdOf(srcNone), []Sample{{T: 0, V: 100}, {T: step, V: 100}, {T: 2 * step, V: 200}, {T: 3 * step, V: 200}},
				createdOf(src500), []Sample{{T: 3 * step, V: 210}}))
			h.drain()
			wantSeries(t, h.series(outTotal), 1, 2, 1, 2)
		})
	}
}

// An output that carries a count (its 500 reset alone) and then sees
// LiteLLM restart between two scrapes with neither source dropping (each
// back at or past its old count): only the _created samples say so, and the
// carry goes with the restart. They come after the _total ones (another
// shard of the sender); the output waits for them though no sample drops.
func TestMergeRestartBetweenScrapesDropsTheCarry(t *testing.T) {
	h := newHarness(t, "")
	scrape := func(ts int64, none, five, noneBorn, fiveBorn float64) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, srcNone, sp(ts, none), src500, sp(ts, five)))
		h.clock.add(2 * time.Second)
		h.req(g(outCreat, createdOf(srcNone), sp(ts, noneBorn), createdOf(src500), sp(ts, fiveBorn)))
	}
	scrape(0, 1, 5, 100, 90)
	scrape(step, 2, 1, 100, 150)   // the 500 created again alone: its 5 carried
	scrape(2*step, 3, 1, 200, 210) // LiteLLM restarted between the scrapes
	scrape(3*step, 4, 2, 200, 210)
	h.drain()
	wantSeries(t, h.series(outTotal), 6, 8, 4, 6)
}

// A reload that takes the output from the merge (keep_distinct, the preset
// off) finalizes what it holds; a timestamp there that is unknowable (before
// the horizon of a start without state, a source unknown) is not sent, and
// is counted like one the clock finalized. Sim all seed 2000166: the
// samples an upstream outage and a power loss had left before the horizon
// were finalized by a reload to keep_distinct, uncounted.
func TestMergeRetiredUnknowableCounted(t *testing.T) {
	h, _ := startWithoutStateWithBacklog(t)
	h.m.retire(func(src, out labels.Labels) bool { return false }, false)
	h.drain()
	if got := h.values(outTotal); len(got) != 0 {
		t.Fatalf("sent before the horizon, where the 500's count is unknown: %v", got)
	}
	if n := testutil.ToFloat64(h.m.metrics.unknown); n != 2 {
		t.Fatalf("%v samples counted unknown, want 2", n)
	}
}

// LiteLLM restarts between two scrapes and both sources are back at their
// old counts by the next scrape: no value drops. The None's _created sample
// of that scrape comes before the _total ones (it was created again); the
// 500's comes later, on another shard. The None created again is a reset
// as sure as a drop: the output must wait for the 500's creation time,
// which tells a restart (every source reset: 2) from a reset alone (its 1
// carried: 3). Sim normal seed 5000129.
func TestMergeRestartBetweenScrapesBothAtTheirOldCounts(t *testing.T) {
	h := newHarness(t, "")
	scrape := func(ts int64, none, five, noneBorn, fiveBorn float64) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outCreat, createdOf(srcNone), sp(ts, noneBorn)))
		h.req(g(outTotal, srcNone, sp(ts, none), src500, sp(ts, five)))
		h.clock.add(2 * time.Second) // the 500's _created sample, on another shard
		h.req(g(outCreat, createdOf(src500), sp(ts, fiveBorn)))
	}
	scrape(0, 1, 1, -10, -5)
	scrape(step, 1, 1, 10, 12) // LiteLLM restarted at 9 s: both created again, back at 1
	scrape(2*step, 2, 1, 10, 12)
	h.drain()
	wantSeries(t, h.series(outTotal), 2, 2, 3)
}

// LiteLLM restarts after a scrape, its None is created again before the
// next one, and that next scrape fails (both sources stale). The None comes
// back at its old count (1) with the 500 still away: its _created sample
// says a creation time after the last count the state had of it but before
// its stale marker. That is a creation in the gap (the output restarts from
// the None's 1), not one inside what the state counted (sim all seed
// 30002069: the gap was measured from the stale marker, the 500's old 3
// kept, 4 stored where the truth is 1). Across a SIGKILL (the log replayed)
// and a clean stop (the snapshot read back), the same.
func TestMergeCreatedAgainBeforeAFailedScrape(t *testing.T) {
	for _, stop := range []string{"", "SIGKILL", "clean stop"} {
		t.Run("restart="+stop, func(t *testing.T) {
			dir := t.TempDir()
			h := newHarness(t, dir)
			defer func() { h.m.Close() }()
			scrape := func(ts int64, none, five, noneBorn, fiveBorn float64) {
				h.scrapeCreated([]any{createdOf(srcNone), sp(ts, noneBorn), createdOf(src500), sp(ts, fiveBorn)},
					[]any{srcNone, sp(ts, none), src500, sp(ts, five)})
			}
			scrape(0, 1, 3, -10, -5)
			scrape(step, 1, 3, -10, -5)
			// LiteLLM restarts at 20 s, its None created again at 22.5 s;
			// the scrape at 30 s fails.
			scrape(2*step, stale, stale, stale, stale)
			switch stop {
			case "SIGKILL":
				h.m.flushLog()
				h.m = h.open(dir)
			case "clean stop":
				h.m.Close()
				h.m = h.open(dir)
			}
			h.scrapeCreated([]any{createdOf(srcNone), sp(3*step, 22.5)}, []any{srcNone, sp(3*step, 1)})
			h.scrapeCreated([]any{createdOf(srcNone), sp(4*step, 22.5)}, []any{srcNone, sp(4*step, 2)})
			h.drain()
			wantSeries(t, h.series(outTotal), 4, 4, math.NaN(), 1, 2)
		})
	}
}
