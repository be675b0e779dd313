package relabel

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

var (
	outTotal = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500", "user", "a")
	srcNone  = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a")
	src500   = outTotal
	srcThird = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a", "x", "y")
	stale    = math.Float64frombits(value.StaleNaN)
)

// fakeClock drives a Merger's time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTestMerger(cfg CollisionConfig) (*Merger, *fakeClock) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	m := NewMerger(cfg, nil)
	m.now = c.now
	m.warmEnds = c.t.Add(time.Duration(cfg.Warmup))
	return m, c
}

func noWarmup() CollisionConfig {
	c := DefaultCollisionConfig()
	c.Warmup = 0
	return c
}

// out records what the merge emitted for one output, and checks the
// invariants every emission must keep.
type outRecorder struct {
	t      *testing.T
	pts    []model.SamplePair
	sent   map[int64]bool // timestamps the sources sent
	resets int
}

func newRecorder(t *testing.T) *outRecorder {
	return &outRecorder{t: t, sent: map[int64]bool{}}
}

// req is one request: for each source, its samples.
func (r *outRecorder) req(m *Merger, srcs []labels.Labels, samples ...[]model.SamplePair) {
	r.t.Helper()
	for _, ss := range samples {
		for _, s := range ss {
			r.sent[int64(s.Timestamp)] = true
		}
	}
	emit, done, ok := m.Merge(outTotal, srcs, samples)
	if !ok {
		r.t.Fatal("merge state full")
	}
	for _, p := range emit {
		if !r.sent[int64(p.Timestamp)] {
			r.t.Fatalf("emitted a sample at %d, a timestamp no source sent", p.Timestamp)
		}
		if n := len(r.pts); n > 0 {
			last := r.pts[n-1]
			if p.Timestamp <= last.Timestamp {
				r.t.Fatalf("timestamps not strictly increasing: %d after %d", p.Timestamp, last.Timestamp)
			}
			if !value.IsStaleNaN(float64(p.Value)) && !value.IsStaleNaN(float64(last.Value)) && p.Value < last.Value {
				r.resets++
			}
		}
		r.pts = append(r.pts, p)
	}
	release(done)
}

func (r *outRecorder) last() float64 {
	r.t.Helper()
	if len(r.pts) == 0 {
		r.t.Fatal("nothing emitted")
	}
	return float64(r.pts[len(r.pts)-1].Value)
}

func sp(t int64, v float64) []model.SamplePair {
	return []model.SamplePair{{Timestamp: model.Time(t), Value: model.SampleValue(v)}}
}

func src(ls ...labels.Labels) []labels.Labels { return ls }

func TestMergeSourcesInDifferentRequestsSameTimestamps(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	r := newRecorder(t)
	// Both series come from one scrape (same timestamp) but travel in
	// different requests, in either order.
	for i := int64(1); i <= 5; i++ {
		if i%2 == 0 {
			r.req(m, src(srcNone), sp(i*1000, float64(2*i)))
			r.req(m, src(src500), sp(i*1000, float64(i)))
		} else {
			r.req(m, src(src500), sp(i*1000, float64(i)))
			r.req(m, src(srcNone), sp(i*1000, float64(2*i)))
		}
	}
	r.req(m, src(src500, srcNone), sp(6000, 6), sp(6000, 12)) // both in one request
	if r.last() != 18 || r.resets != 0 {
		t.Errorf("last = %v resets = %d, want 18 and 0 (points %v)", r.last(), r.resets, r.pts)
	}
}

func TestMergeLateAndRepeatedSamples(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	r := newRecorder(t)
	r.req(m, src(src500, srcNone), sp(2000, 5), sp(2000, 3))
	r.req(m, src(srcNone), sp(1000, 1))                      // older than srcNone's latest: ignored
	r.req(m, src(src500, srcNone), sp(2000, 5), sp(2000, 3)) // a sender retry: ignored
	r.req(m, src(src500), sp(3000, 6))
	if len(r.pts) != 2 || r.last() != 9 {
		t.Errorf("points %v, want 8@2000 then 9@3000", r.pts)
	}
}

func TestMergeSingleSourceResetIsCarried(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	r := newRecorder(t)
	r.req(m, src(src500, srcNone), sp(1000, 10), sp(1000, 20))
	r.req(m, src(srcNone), sp(2000, 1)) // only None resets (e.g. its series was re-created)
	r.req(m, src(src500), sp(3000, 11))
	// What was counted stays counted: 10 -> 11 plus 20 + 1.
	if r.resets != 0 || r.last() != 32 {
		t.Errorf("points %v: want no reset and 32", r.pts)
	}
}

func TestMergeRealResetShowsOnce(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	r := newRecorder(t)
	r.req(m, src(src500, srcNone), sp(1000, 10), sp(1000, 20))
	// LiteLLM restarts: both reset, in different requests.
	r.req(m, src(src500), sp(2000, 1))
	r.req(m, src(srcNone), sp(2000, 2))
	r.req(m, src(src500, srcNone), sp(3000, 2), sp(3000, 3))
	if r.resets != 1 || r.last() != 5 {
		t.Errorf("points %v: want one reset and 5 = what the restarted counter shows", r.pts)
	}
}

func TestMergeStaleness(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	r := newRecorder(t)
	r.req(m, src(src500, srcNone), sp(1000, 10), sp(1000, 20))
	r.req(m, src(srcNone), sp(2000, stale)) // None goes stale: its 20 stays in the sum
	r.req(m, src(src500), sp(3000, 11))
	if r.resets != 0 || r.last() != 31 {
		t.Fatalf("points %v: want no drop, 31", r.pts)
	}
	r.req(m, src(src500), sp(4000, stale)) // all stale: a stale marker
	if got := r.pts[len(r.pts)-1]; !value.IsStaleNaN(float64(got.Value)) || got.Timestamp != 4000 {
		t.Fatalf("want a stale marker at 4000, got %v", r.pts)
	}
	if m.known(outTotal) {
		t.Error("state kept for an output whose every source is stale")
	}
}

func TestMergeCreatedIsEarliest(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	created := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_created", "status_code", "500")
	createdNone := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_created", "status_code", "None")
	emit, done, _ := m.Merge(created, src(created, createdNone), [][]model.SamplePair{sp(1000, 1.7e9+50), sp(1000, 1.7e9+10)})
	release(done)
	if len(emit) != 1 || emit[0].Value != 1.7e9+10 {
		t.Errorf("got %v, want the earliest creation time", emit)
	}
}

func TestMergeInFlightOrdering(t *testing.T) {
	m, _ := newTestMerger(noWarmup())
	e1, done1, _ := m.Merge(outTotal, src(src500), [][]model.SamplePair{sp(1000, 1)})
	// A second request while the first is still on its way upstream must not
	// emit: its sample could overtake the first.
	e2, done2, _ := m.Merge(outTotal, src(srcNone), [][]model.SamplePair{sp(2000, 5)})
	release(done2)
	if len(e1) != 1 || len(e2) != 0 {
		t.Fatalf("e1 %v e2 %v: want only the first request to emit", e1, e2)
	}
	release(done1)
	e3, done3, _ := m.Merge(outTotal, src(src500), [][]model.SamplePair{sp(3000, 2)})
	release(done3)
	if len(e3) != 1 || e3[0].Value != 7 {
		t.Errorf("after the first answer: got %v, want 2+5 = 7", e3)
	}
}

func TestMergeWarmupAndRestart(t *testing.T) {
	cfg := DefaultCollisionConfig()
	cfg.Warmup = model.Duration(30 * time.Second)
	m, clock := newTestMerger(cfg)
	r := newRecorder(t)
	r.req(m, src(src500), sp(1000, 10))
	clock.add(10 * time.Second)
	r.req(m, src(srcNone), sp(1000, 20))
	if len(r.pts) != 0 {
		t.Fatalf("emitted during the warm-up: %v", r.pts)
	}
	clock.add(25 * time.Second)
	r.req(m, src(src500), sp(2000, 11))
	if r.last() != 31 {
		t.Fatalf("first value after warm-up = %v, want 31 (both sources)", r.last())
	}
	// A source resets alone: carry 20... then rwfix restarts with a state file.
	r.req(m, src(srcNone), sp(3000, 1))
	path := filepath.Join(t.TempDir(), "state.json")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	m2, _ := newTestMerger(cfg) // a fresh process: in warm-up
	if n, err := m2.Load(path); err != nil || n != 1 {
		t.Fatalf("Load: %d %v", n, err)
	}
	r.req(m2, src(src500), sp(4000, 12))
	if r.resets != 0 || r.last() != 33 {
		t.Errorf("after restore: points %v, want 12 + 20 carried + 1 = 33 and no reset", r.pts)
	}
	// Without the file, a restarted merger holds the output in warm-up.
	m3, _ := newTestMerger(cfg)
	if e, done, _ := m3.Merge(outTotal, src(src500), [][]model.SamplePair{sp(5000, 13)}); len(e) != 0 {
		t.Errorf("no state file: emitted %v during warm-up", e)
	} else {
		release(done)
	}
}

func TestMergeIdleExpiryAndBounds(t *testing.T) {
	cfg := noWarmup()
	cfg.IdleTimeout = model.Duration(time.Minute)
	cfg.MaxSeries = 1
	m, clock := newTestMerger(cfg)
	r := newRecorder(t)
	r.req(m, src(src500, srcNone), sp(1000, 10), sp(1000, 20))
	if _, _, ok := m.Merge(labels.FromStrings("__name__", "other"), src(srcThird), [][]model.SamplePair{sp(1000, 1)}); ok {
		t.Error("max_series 1: a second output was accepted")
	}
	// srcNone stops; src500 continues. After the idle timeout, srcNone is
	// folded into the carry: the sum does not drop.
	for i := int64(2); i <= 10; i++ {
		clock.add(10 * time.Second)
		r.req(m, src(src500), sp(i*1000, float64(10+i)))
	}
	m.mu.Lock()
	nsrc := len(m.outs[outTotal.Hash()][0].sources)
	m.mu.Unlock()
	if nsrc != 1 || r.resets != 0 || r.last() != 40 {
		t.Errorf("sources %d, points %v: want 1 source left, no drop, 20 + 20 = 40", nsrc, r.pts)
	}
	clock.add(2 * time.Minute)
	m.Merge(labels.FromStrings("__name__", "x"), src(srcThird), [][]model.SamplePair{nil}) // triggers gc
	if m.known(outTotal) {
		t.Error("idle output not forgotten")
	}
}

// TestMergeRandomized drives three counter sources through random request
// splits, orders, retries, lags, and single-source resets, from concurrent
// goroutines, and checks the invariants: strictly increasing timestamps that
// a source sent, no fake reset, and a final value equal to everything the
// sources counted.
func TestMergeRandomized(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		m, _ := newTestMerger(noWarmup())
		sources := []labels.Labels{src500, srcNone, srcThird}
		val := make([]float64, 3)
		counted := make([]float64, 3) // increments, across resets
		type msg struct {
			src int
			s   model.SamplePair
		}
		var queue []msg
		for step := int64(1); step <= 40; step++ {
			resetting := rng.IntN(len(sources)) // never all at once: that is a real reset
			for i := range sources {
				inc := float64(rng.IntN(5))
				if i == resetting && rng.IntN(4) == 0 && val[i] > 0 {
					// This source alone resets; its new value must be below
					// the old one, or no reader could tell it reset.
					old := val[i]
					val[i] = 0
					if inc >= old {
						inc = 0
					}
				}
				val[i] += inc
				counted[i] += inc
				queue = append(queue, msg{i, model.SamplePair{Timestamp: model.Time(step * 1000), Value: model.SampleValue(val[i])}})
			}
		}
		// Shards deliver in order per source but interleave freely; some
		// requests are retried.
		perSrc := make([][]msg, 3)
		for _, q := range queue {
			perSrc[q.src] = append(perSrc[q.src], q)
		}
		var (
			mu sync.Mutex
			r  = newRecorder(t)
			wg sync.WaitGroup
		)
		// Every source is known before the shuffle starts, as after the
		// warm-up in production.
		r.req(m, sources, sp(500, 0), sp(500, 0), sp(500, 0))
		for i := range sources {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			wg.Go(func() {
				msgs := perSrc[i]
				for len(msgs) > 0 {
					n := 1 + rng.IntN(3)
					if n > len(msgs) {
						n = len(msgs)
					}
					batch := make([]model.SamplePair, n)
					for j := range n {
						batch[j] = msgs[j].s
					}
					repeats := 1 + rng.IntN(2)
					for range repeats {
						mu.Lock()
						r.req(m, src(sources[i]), batch)
						mu.Unlock()
					}
					msgs = msgs[n:]
				}
			})
		}
		wg.Wait()
		// A final scrape where every source reports in one request.
		mu.Lock()
		r.req(m, sources, sp(100000, val[0]), sp(100000, val[1]), sp(100000, val[2]))
		mu.Unlock()
		want := counted[0] + counted[1] + counted[2]
		if r.resets != 0 || r.last() != want {
			t.Fatalf("seed %d: resets %d, last %v, want 0 and %v\n%v", seed, r.resets, r.last(), want, r.pts)
		}
	}
}

func release(done func()) {
	if done != nil {
		done()
	}
}
