package relabel

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

var (
	outTotal = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500", "user", "a")
	srcNone  = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a")
	src500   = outTotal
	srcThird = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a", "x", "y")
	outCreat = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_created", "status_code", "500", "user", "a")
	stale    = math.Float64frombits(value.StaleNaN)
)

const step = 15000 // ms: the scrape interval of these tests

var seedMax = uint64(100)

// fakeClock drives a Merger's time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness drives a Merger as the handler does: one transaction per request,
// and records what the upstream took, checking on every send that an
// output's samples strictly increase (the TSDB would answer 400 otherwise).
type harness struct {
	t     testing.TB
	m     *Merger
	clock *fakeClock
	mu    sync.Mutex
	got   map[string][]Sample // accepted, by output labels
	tries int                 // emits marked Retry
	// preimage is how many sources an output can have (see
	// Merger.preimage): 2 as under the litellm preset (None and 500); 0
	// (unknown, as with user rules) makes every timestamp wait birth_wait.
	preimage int
	cfg      CollisionConfig // of every process open starts
}

func newHarness(t testing.TB, dir string) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: time.UnixMilli(0)}, got: map[string][]Sample{}, preimage: 2, cfg: DefaultCollisionConfig()}
	h.m = h.open(dir)
	return h
}

func (h *harness) open(dir string) *Merger {
	h.t.Helper()
	m := NewMerger(h.cfg, nil)
	m.SetClock(h.clock.now)
	m.setPreimage(func(labels.Labels) int { return h.preimage })
	if h.m != nil {
		// A restart: as in production, what may have been written by the
		// process before goes as retries.
		for _, sh := range m.shards {
			sh.retryUntil = h.clock.now().Add(time.Minute).UnixMilli()
		}
	}
	if dir != "" {
		if _, err := m.OpenLog(dir); err != nil {
			h.t.Fatal(err)
		}
	}
	return m
}

// group is one output's sources and samples in a request.
type group struct {
	out     labels.Labels
	sources []labels.Labels
	samples [][]Sample
}

func g(out labels.Labels, pairs ...any) group {
	gr := group{out: out}
	for i := 0; i < len(pairs); i += 2 {
		gr.sources = append(gr.sources, pairs[i].(labels.Labels))
		gr.samples = append(gr.samples, pairs[i+1].([]Sample))
	}
	return gr
}

func sp(t int64, v float64) []Sample { return []Sample{{T: t, V: v}} }

// begin runs a request up to Collect; the caller calls Done.
func (h *harness) begin(groups ...group) (MergeTx, []Emit) {
	tx := h.m.Begin("")
	for _, gr := range groups {
		if !tx.Add(gr.out, gr.sources, gr.samples) {
			h.t.Fatalf("state full")
		}
	}
	return tx, tx.Collect()
}

// sendPart runs a request of partition part through Done: with up, deliver
// sees its emits and the upstream takes them all; without, the upstream is
// down and takes none.
func (h *harness) sendPart(part string, up bool, deliver func([]Emit), groups ...group) {
	h.t.Helper()
	tx := h.m.Begin(part)
	for _, gr := range groups {
		if !tx.Add(gr.out, gr.sources, gr.samples) {
			h.t.Fatal("state full")
		}
	}
	e := tx.Collect()
	if !up {
		tx.Done(false, make([]int, len(e)))
		return
	}
	deliver(e)
	tx.Done(true, allTaken(e))
}

// accept records emits as taken by the upstream.
func (h *harness) accept(emits []Emit) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range emits {
		k := e.Labels.String()
		prev := h.got[k]
		for i, s := range e.Samples {
			last := int64(math.MinInt64)
			if len(prev) > 0 {
				last = prev[len(prev)-1].T
			}
			if e.Retry && s.T <= last {
				// A retry the upstream already has: it must be the same value.
				for _, p := range prev {
					if p.T == s.T && math.Float64bits(p.V) != math.Float64bits(s.V) {
						h.t.Fatalf("%s: retry at %d with %v, upstream has %v", k, s.T, s.V, p.V)
					}
				}
				continue
			}
			if s.T <= last {
				h.t.Fatalf("%s: sample %d at %d not after %d: out of order (%v)", k, i, s.T, last, e.Samples)
			}
			prev = append(prev, s)
		}
		h.got[k] = prev
		if e.Retry {
			h.tries++
		}
	}
}

// req is one request answered 2xx.
func (h *harness) req(groups ...group) []Emit {
	h.t.Helper()
	tx, emits := h.begin(groups...)
	h.accept(emits)
	tx.Done(true, allTaken(emits))
	return emits
}

// drain moves the clock past every wait and sends an empty request.
func (h *harness) drain() {
	h.t.Helper()
	h.clock.add(3 * time.Minute)
	h.req()
	h.req()
}

func (h *harness) values(out labels.Labels) map[int64]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := map[int64]float64{}
	for _, s := range h.got[out.String()] {
		r[s.T] = s.V
	}
	return r
}

func (h *harness) series(out labels.Labels) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.got[out.String()]...)
}

func wantSeries(t *testing.T, got []Sample, want ...float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d samples %v, want %v", len(got), got, want)
	}
	for i := range want {
		if math.IsNaN(want[i]) {
			if !value.IsStaleNaN(got[i].V) {
				t.Fatalf("sample %d: got %v, want a stale marker (%v)", i, got[i].V, got)
			}
			continue
		}
		if got[i].V != want[i] {
			t.Fatalf("sample %d: got %v, want %v (all: %v)", i, got[i].V, want[i], got)
		}
	}
}

// scrape sends one scrape of two sources the way a sharded sender does: the
// None sample and the 500 sample in two requests, the clock moving a step.
func (h *harness) scrape(ts int64, none, five float64) {
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(ts, none)))
	h.req(g(outTotal, src500, sp(ts, five)))
}

// A new output is held while it learns its sources, then every sample goes
// out at its own timestamp, each the exact sum: nothing hidden, nothing lost.
func TestMergeNoGapAtStartAndExactAcrossRequests(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(10) {
		h.scrape(i*step, float64(i), 10*float64(i))
	}
	h.drain()
	got := h.series(outTotal)
	if len(got) != 10 {
		t.Fatalf("got %d samples, want one per scrape (10): %v", len(got), got)
	}
	for i, s := range got {
		if s.T != int64(i)*step || s.V != 11*float64(i) {
			t.Fatalf("sample %d = %v, want %d@%d", i, s, 11*i, int64(i)*step)
		}
	}
}

// The first request of a scrape must not emit the sum with the other
// source's previous value: the sample waits for the request that completes it.
func TestMergeWaitsForEverySource(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(5) {
		h.scrape(i*step, 1, 10)
	}
	h.drain()
	h.clock.add(step * time.Millisecond)
	if e := h.req(g(outTotal, srcNone, sp(5*step, 2))); len(e) != 0 {
		t.Fatalf("the first source of a scrape emitted %v", e)
	}
	e := h.req(g(outTotal, src500, sp(5*step, 20)))
	if len(e) != 1 || e[0].Group != 0 || len(e[0].Samples) != 1 || e[0].Samples[0].V != 22 {
		t.Fatalf("completing request emitted %v, want 22 in its own slot", e)
	}
}

// A later sample never overtakes one in flight: it waits and rides on the
// next request, even one that carries no source of the output.
func TestMergeInFlightOrdering(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(5) {
		h.scrape(i*step, 1, 10)
	}
	h.drain()
	h.clock.add(step * time.Millisecond)
	tx1, e1 := h.begin(g(outTotal, srcNone, sp(5*step, 2), src500, sp(5*step, 20)))
	if len(e1) != 1 {
		t.Fatalf("emits %v", e1)
	}
	h.clock.add(step * time.Millisecond)
	tx2, e2 := h.begin(g(outTotal, srcNone, sp(6*step, 3), src500, sp(6*step, 30)))
	if len(e2) != 0 {
		t.Fatalf("a sample overtook the one in flight: %v", e2)
	}
	tx2.Done(true, allTaken(e2))
	h.accept(e1)
	tx1.Done(true, allTaken(e1))
	e3 := h.req() // an unrelated request
	if len(e3) != 1 || e3[0].Group != -1 || e3[0].Samples[0].V != 33 {
		t.Fatalf("the waiting sample did not ride on the next request: %v", e3)
	}
	if vals := h.values(outTotal); vals[5*step] != 22 || vals[6*step] != 33 {
		t.Fatalf("values %v", vals)
	}
}

// A failed send keeps the samples: they go again, as retries, same values.
func TestMergeFailedSendIsRetried(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(5) {
		h.scrape(i*step, 1, 10)
	}
	h.drain()
	h.clock.add(step * time.Millisecond)
	tx, e := h.begin(g(outTotal, srcNone, sp(5*step, 2), src500, sp(5*step, 20)))
	if len(e) != 1 || e[0].Retry {
		t.Fatalf("emits %v", e)
	}
	tx.Done(false, nil)
	e = h.req()
	if len(e) != 1 || !e[0].Retry || e[0].Samples[0].V != 22 || e[0].Samples[0].T != 5*step {
		t.Fatalf("retry %v", e)
	}
	h.scrape(6*step, 3, 30)
	if vals := h.values(outTotal); vals[5*step] != 22 || vals[6*step] != 33 {
		t.Fatalf("values %v", vals)
	}
}

// Stale markers in different requests still end the output with one.
func TestMergeStaleAcrossRequests(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(4) {
		h.scrape(i*step, 1, 10)
	}
	h.scrape(4*step, stale, stale)
	h.drain()
	wantSeries(t, h.series(outTotal), 11, 11, 11, 11, math.NaN())
}

// LiteLLM restarts: every counter of the target starts again, series not
// incremented since are absent (stale). One reset, then the sum since.
func TestMergeLiteLLMRestart(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 5, 10)
	h.scrape(step, 6, 20)
	h.scrape(2*step, 7, 30)
	h.scrape(3*step, stale, 1) // restart: None absent, 500 from zero
	h.scrape(4*step, 1, 2)     // None counted again
	h.scrape(5*step, 2, 2)
	h.drain()
	wantSeries(t, h.series(outTotal), 15, 26, 37, 1, 3, 4)
}

// A source that vanishes (LiteLLM expiring an idle series) keeps its count
// in the sum; when it comes back from zero, its count is carried.
func TestMergeExpiredSourceKeepsCount(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 5, 10)
	h.scrape(step, stale, 11)
	h.scrape(2*step, stale, 12)
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, src500, sp(3*step, 13))) // the None series is gone
	h.scrape(4*step, 1, 14)                    // and back, from zero
	h.drain()
	wantSeries(t, h.series(outTotal), 15, 16, 17, 18, 20)
}

// A source that resets on its own is carried; a source silent for longer
// than the old idle timeout that comes back is not counted twice.
func TestMergeLoneResetAndLongSilence(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 10, 100)
	h.scrape(step, 12, 101)
	h.scrape(2*step, 2, 102) // None alone dropped: reset on its own
	h.drain()
	// None silent for 20 minutes (no stale marker: a stuck shard), 500 goes on.
	ts := int64(3 * step)
	for range 80 {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, sp(ts, 103)))
		ts += step
	}
	h.scrape(ts, 3, 104) // None back, continuing
	h.drain()
	got := h.values(outTotal)
	if got[2*step] != 12+2+102 {
		t.Fatalf("lone reset: %v, want %v", got[2*step], 12+2+102)
	}
	if got[ts] != 12+3+104 {
		t.Fatalf("after the silence: %v, want %v (no double count)", got[ts], 12+3+104)
	}
	if n := len(got); n != int(ts/step)+1 {
		t.Fatalf("%d samples, want %d", n, ts/step+1)
	}
}

// Several samples of one series in one request (catch-up) go out in order.
func TestMergeCatchUp(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 1, 10)
	h.scrape(step, 1, 10)
	h.clock.add(time.Minute)
	h.req(g(outTotal,
		srcNone, []Sample{{T: 2 * step, V: 2}, {T: 3 * step, V: 3}, {T: 4 * step, V: 4}},
		src500, []Sample{{T: 2 * step, V: 20}, {T: 3 * step, V: 30}, {T: 4 * step, V: 40}}))
	h.drain()
	wantSeries(t, h.series(outTotal), 11, 11, 22, 33, 44)
}

// _created: the earliest; RW 2.0 start timestamps: the earliest since the
// last real reset, never after the output's previous sample.
func TestMergeCreatedAndStartTimestamps(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(4) {
		h.clock.add(step * time.Millisecond)
		h.req(g(outCreat, srcNone, sp(i*step, 900), src500, sp(i*step, 800)))
		ts := i * step
		h.req(g(outTotal, srcNone, []Sample{{T: ts, V: float64(i), ST: 7000}}))
		st := int64(5000)
		if i >= 2 {
			st = 9000 // the 500 series' start timestamp moves later: after its previous sample
		}
		h.req(g(outTotal, src500, []Sample{{T: ts, V: float64(i), ST: st}}))
	}
	h.drain()
	wantSeries(t, h.series(outCreat), 800, 800, 800, 800)
	for _, s := range h.series(outTotal) {
		if s.ST != 5000 {
			t.Fatalf("start timestamp %d at %d, want the earliest, 5000", s.ST, s.T)
		}
	}
}

// A source that stops reporting without a stale marker is waited for at most
// the wait bound, then taken at its latest value.
func TestMergeOverdueSource(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 1, 10)
	h.scrape(step, 2, 20)
	h.drain()
	for i := int64(2); i < 6; i++ {
		h.clock.add(step * time.Millisecond)
		h.req(g(outTotal, src500, sp(i*step, float64(i)*10)))
	}
	h.drain()
	wantSeries(t, h.series(outTotal), 11, 22, 22, 32, 42, 52)
}

// keep a count of distinct sources: two requests carrying one series twice
// (catch-up by a sender writing one TimeSeries per sample) are one source.
func TestMergeSeriesRepeatedInRequest(t *testing.T) {
	h := newHarness(t, "")
	h.scrape(0, 1, 10)
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(step, 2), srcNone, sp(2*step, 3), src500, sp(step, 20), src500, sp(2*step, 30)))
	h.drain()
	wantSeries(t, h.series(outTotal), 11, 22, 33)
}

// The state survives a crash through the log: a restart continues exactly,
// and a sample in flight at the crash is sent again with the same value.
func TestMergeCrashAndRestartFromLog(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 10, 100)
	h.scrape(step, 12, 101)
	h.scrape(2*step, 2, 102) // a lone reset: its carry must survive
	h.drain()
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(3*step, 3)))
	_, inflight := h.begin(g(outTotal, src500, sp(3*step, 103)))
	h.accept(inflight) // the upstream wrote it; the answer never came: SIGKILL
	// No Close: the process died. A new one opens the same directory.
	h.m = h.open(dir)
	e := h.req()
	if len(e) != 1 || !e[0].Retry || e[0].Samples[0].V != 12+3+103 {
		t.Fatalf("after the restart: %v, want the in-flight sample again as a retry", e)
	}
	// The sender retries the unanswered request: nothing changes.
	h.req(g(outTotal, src500, sp(3*step, 103)))
	h.scrape(4*step, 4, 104)
	h.drain()
	want := map[int64]float64{0: 110, step: 113, 2 * step: 116, 3 * step: 118, 4 * step: 120}
	got := h.values(outTotal)
	for ts, v := range want {
		if got[ts] != v {
			t.Fatalf("at %d: %v, want %v (all %v)", ts, got[ts], v, got)
		}
	}
	if h.tries == 0 {
		t.Fatal("no retry was sent")
	}
}

// A failed write of the log: the file no longer describes the state, so it
// is removed, and a crash then starts without state — gaps, never a value
// that differs from what the upstream has.
func TestMergeLogWriteFailure(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 10, 100)
	h.scrape(step, 11, 101)
	h.drain()
	h.m.log.mu.Lock()
	good := h.m.log.f
	bad, err := os.Open(filepath.Join(dir, logName)) // read-only: writes fail
	if err != nil {
		t.Fatal(err)
	}
	h.m.log.f = bad
	h.m.log.mu.Unlock()
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(2*step, 20))) // its record is lost
	h.m.log.mu.Lock()
	h.m.log.f = good
	h.m.log.mu.Unlock()
	_, inflight := h.begin(g(outTotal, src500, sp(2*step, 200)))
	h.accept(inflight) // written upstream (220), never answered: SIGKILL
	if _, err := os.Stat(filepath.Join(dir, logName)); err == nil {
		t.Fatal("the log that lacks a record is still there")
	}
	h.m = h.open(dir)
	h.scrape(3*step, 21, 201)
	h.scrape(4*step, 22, 202)
	h.drain()
	got := h.values(outTotal)
	if got[2*step] != 220 || got[4*step] != 224 {
		t.Fatalf("after the restart without state: %v", got)
	}
}

// A NaN (not a stale marker) in the state is logged and restored bit for bit.
func TestMergeLogKeepsNaN(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, math.NaN(), 1)
	h.scrape(step, 1, 2)
	h.drain()
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	h.m = h.open(dir)
	h.scrape(2*step, 2, 3)
	h.drain()
	if got := h.values(outTotal); got[2*step] != 5 {
		t.Fatalf("after restore: %v", got)
	}
}

// A damaged log is set aside: the state starts empty, never wrong.
func TestMergeCorruptLog(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 1, 10)
	h.drain()
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, logName)
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 10 {
		t.Fatal(err, len(b))
	}
	b[5] ^= 0xff
	b = append(b, b...) // damage followed by more records: not a torn tail
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMerger(DefaultCollisionConfig(), nil)
	if n, err := m.OpenLog(dir); err == nil || n != 0 {
		t.Fatalf("corrupt log: n=%d err=%v", n, err)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatal("damaged log not set aside:", err)
	}
}

// A torn last record (a crash mid-write) is ignored.
func TestMergeTornTail(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 1, 10)
	h.scrape(step, 2, 20)
	h.drain()
	h.m.flushLog()
	h.m.log.mu.Lock()
	f := h.m.log.f
	h.m.log.mu.Unlock()
	if _, err := f.Write([]byte{50, 1, 2}); err != nil { // a record cut short
		t.Fatal(err)
	}
	m := NewMerger(DefaultCollisionConfig(), nil)
	if n, err := m.OpenLog(dir); err != nil || n != 1 {
		t.Fatalf("torn tail: n=%d err=%v", n, err)
	}
}

// Randomized: three sources of one output delivered by concurrent shards in
// random batches, requests retried or failed, lone resets, and a crash with
// a restart from the log. Every sample the upstream took is the exact sum of
// its sources' true counts at that timestamp, and every timestamp is there.
func TestMergeRandomized(t *testing.T) {
	for seed := uint64(1); seed <= seedMax; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		dir := t.TempDir()
		h := newHarness(t, dir)
		h.preimage = 3
		sources := []labels.Labels{src500, srcNone, srcThird}
		const steps = 40
		exported := make([][]float64, len(sources)) // what each source sends per step
		truth := make([]float64, steps)             // a fixed exporter's counter
		for i := range sources {
			v, counted := 0.0, 0.0
			for s := range steps {
				inc := float64(rng.IntN(5))
				if i > 0 && rng.IntN(12) == 0 && v > 0 && s > 0 {
					// This source alone resets (only the None ones); its new
					// value must be below the old one, or no reader could
					// tell it reset.
					if inc >= v {
						inc = 0
					}
					v = 0
				}
				v += inc
				counted += inc
				exported[i] = append(exported[i], v)
				truth[s] += counted
			}
		}
		crashAt := 5 + rng.IntN(25)
		next := make([]int, len(sources))
		var (
			pend  []MergeTx
			pendE [][]Emit // by pend: what it carried
		)
		for round := 0; ; round++ {
			progress := false
			for i := range sources {
				if next[i] >= steps {
					continue
				}
				progress = true
				n := min(1+rng.IntN(3), steps-next[i])
				var smp []Sample
				for s := next[i]; s < next[i]+n; s++ {
					smp = append(smp, Sample{T: int64(s) * step, V: exported[i][s]})
				}
				tx, e := h.begin(g(outTotal, sources[i], smp))
				switch rng.IntN(6) {
				case 0: // failed upstream: the sender retries the request
					tx.Done(false, nil)
					continue
				case 1: // answered later
					h.accept(e)
					pend, pendE = append(pend, tx), append(pendE, e)
				default:
					h.accept(e)
					tx.Done(true, allTaken(e))
				}
				next[i] += n
			}
			if rng.IntN(3) == 0 {
				for k, tx := range pend {
					tx.Done(true, allTaken(pendE[k]))
				}
				pend, pendE = nil, nil
			}
			h.clock.add(time.Duration(rng.IntN(20)) * time.Second)
			if round == crashAt {
				pend, pendE = nil, nil // in flight at the crash: never answered
				h.m = h.open(dir)
			}
			if !progress {
				break
			}
		}
		for k, tx := range pend {
			tx.Done(true, allTaken(pendE[k]))
		}
		h.drain()
		h.drain()
		got := h.values(outTotal)
		for s := range steps {
			v, ok := got[int64(s)*step]
			if !ok {
				t.Fatalf("seed %d: no sample at step %d (got %d of %d)", seed, s, len(got), steps)
			}
			if v != truth[s] {
				t.Fatalf("seed %d: step %d = %v, want %v", seed, s, v, truth[s])
			}
		}
	}
}

// A sender that starts long after rwfix: exact and complete from its first
// scrape (no warm-up counted from the process start).
func TestMergeSenderStartsLate(t *testing.T) {
	h := newHarness(t, "")
	h.clock.add(3 * time.Hour)
	base := h.clock.now().UnixMilli()
	for i := range int64(6) {
		h.scrape(base+i*step, float64(i), 10*float64(i))
	}
	h.drain()
	got := h.series(outTotal)
	if len(got) != 6 || got[0].T != base || got[5].V != 55 {
		t.Fatalf("got %v, want 6 samples from the first scrape on", got)
	}
}

// An output forgotten after idle_timeout and seen again: it never sends at
// or before what it sent before (a late shard's old samples), and it goes on
// from the sum of its sources.
func TestMergeForgottenOutputComesBack(t *testing.T) {
	h := newHarness(t, "")
	for i := range int64(4) {
		h.scrape(i*step, 1+float64(i), 10+float64(i))
	}
	h.drain()
	h.clock.add(3 * time.Hour) // every source silent: the output is forgotten
	h.req()
	if n := h.m.outputs(); n != 0 {
		t.Fatalf("%d outputs still in the state", n)
	}
	// A late shard sends old samples; then the sources go on.
	h.req(g(outTotal, srcNone, sp(2*step, 3), src500, sp(2*step, 12)))
	ts := h.clock.now().UnixMilli()
	for i := range int64(4) {
		h.scrape(ts+i*step, 5+float64(i), 14+float64(i))
	}
	h.drain()
	got := h.series(outTotal) // accept() fails the test on any out-of-order sample
	if last := got[len(got)-1]; last.V != 8+17 {
		t.Fatalf("after coming back: %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].V < got[i-1].V {
			t.Fatalf("a fake reset: %v", got)
		}
	}
}

// Randomized and concurrent: three sources, each sent by its own goroutine
// (a shard) in random batches, the answers of some requests delayed so that
// requests overlap in flight, some failed. Every sample the upstream took is
// the exact sum of the sources' counts at its timestamp, and none is missing.
func TestMergeRandomizedConcurrent(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		h := newHarness(t, t.TempDir())
		h.preimage = 3
		sources := []labels.Labels{src500, srcNone, srcThird}
		const steps = 30
		exported := make([][]float64, len(sources))
		truth := make([]float64, steps)
		for i := range sources {
			v := 0.0
			for s := range steps {
				v += float64(rng.IntN(4))
				exported[i] = append(exported[i], v)
				truth[s] += v
			}
		}
		// Every source's first sample first: the goroutines below run at
		// any relative speed, a shard lagging for minutes of the clock, and
		// a source first seen that late would be a birth counted late (see
		// TestMergeBirth* for births).
		for i := range sources {
			h.req(g(outTotal, sources[i], sp(0, exported[i][0])))
		}
		var wg sync.WaitGroup
		for i := range sources {
			r := rand.New(rand.NewPCG(seed, uint64(100+i)))
			wg.Go(func() {
				for next := 1; next < steps; {
					n := min(1+r.IntN(3), steps-next)
					var smp []Sample
					for s := next; s < next+n; s++ {
						smp = append(smp, Sample{T: int64(s) * step, V: exported[i][s]})
					}
					tx, e := h.begin(g(outTotal, sources[i], smp))
					if r.IntN(5) == 0 {
						tx.Done(false, nil) // failed: the sender sends it again
						continue
					}
					h.accept(e)
					if r.IntN(3) == 0 {
						time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond) // in flight a while
					}
					tx.Done(true, allTaken(e))
					next += n
					h.clock.add(time.Duration(r.IntN(3)) * time.Second)
				}
			})
		}
		wg.Wait()
		h.drain()
		got := h.values(outTotal)
		for s := range steps {
			if v, ok := got[int64(s)*step]; !ok || v != truth[s] {
				t.Fatalf("seed %d: step %d = %v (present %v), want %v", seed, s, v, ok, truth[s])
			}
		}
	}
}

// The genuine series joining an output that its rewritten twin made keeps
// one memory for its labels and the output's: a LiteLLM output whose None
// came first would otherwise hold its label set twice.
func TestMergeGenuineSourceSharesTheOutputsLabels(t *testing.T) {
	if !stringLabels {
		t.Skip("label memory is told apart only with stringlabels, the default build")
	}
	h := newHarness(t, "")
	built := labels.NewBuilder(srcNone).Set("status_code", "500").Labels() // the rewrite's labels
	if !labels.Equal(built, outTotal) || sameLabelsMemory(built, outTotal) {
		t.Fatal("the test needs equal label sets in two memories")
	}
	tx, emits := h.begin(g(built, srcNone, sp(0, 1)))
	tx.Done(true, nil)
	h.accept(emits)
	tx, emits = h.begin(g(built, srcNone, sp(step, 1), outTotal, sp(step, 2)))
	tx.Done(true, nil)
	h.accept(emits)
	m := h.m.shardOf(built.Hash())
	o := m.find("", built, built.Hash())
	if o == nil || len(o.sources) != 2 {
		t.Fatalf("output %v", o)
	}
	for _, s := range o.sources {
		if labels.Equal(s.labels, o.labels) && !sameLabelsMemory(s.labels, o.labels) {
			t.Errorf("source %s holds its own copy of the output's labels", s.labels)
		}
	}
}
