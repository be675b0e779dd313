package relabel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/model/labels"
)

// churnWave is the wave-th of waves of n distinct LiteLLM-like series that
// the preset looks at (users come and go): genuine 500s, and a None sibling
// for one user in ten.
func churnWave(wave, n int) []labels.Labels {
	out := make([]labels.Labels, 0, n)
	for i := 0; len(out) < n; i++ {
		user := fmt.Sprintf("w%02d-u%06d", wave, i)
		key := fmt.Sprintf("%064x", (wave*1_000_000+i)*7919)
		for _, code := range []string{"500", "None"} {
			if (code == "None" && i%10 != 0) || len(out) == n {
				continue
			}
			out = append(out, litellmLabels(user, key, code, i))
		}
	}
	return out
}

// retainedHeap is the heap in use after a full collection.
func retainedHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// applyScrape sends series through p.Apply in requests of batch series, one
// sample each at ts, and answers every request as accepted. check, if not
// nil, sees each request's batch first.
func applyScrape(p *Pipeline, series []labels.Labels, batch int, ts int64, check func(*sliceBatch)) {
	for off := 0; off < len(series); off += batch {
		ls := series[off:min(off+batch, len(series))]
		smp := make([][]Sample, len(ls))
		for i := range ls {
			smp[i] = []Sample{{T: ts, V: float64(ts / 1000)}}
		}
		if check != nil {
			check(newSliceBatch(ls, smp))
		}
		if _, run := p.Apply(newSliceBatch(ls, smp), ""); run != nil {
			run.Done(true, allTaken(run.Retries()))
		}
	}
}

// sameEdits fails t unless got and want decide alike: same series, labels,
// verdicts.
func sameEdits(t *testing.T, got, want []edit) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d edits, want %d", len(got), len(want))
	}
	for k := range got {
		g, w := got[k], want[k]
		if g.idx != w.idx || !labels.Equal(g.orig, w.orig) || !labels.Equal(g.out, w.out) || g.keep != w.keep || g.merge != w.merge || g.hash != w.hash {
			t.Fatalf("edit %d: %+v, want %+v", k, g, w)
		}
	}
}

// TestDecisionCacheMemoryUnderChurn: waves of 100,000 distinct series that
// the preset looks at, each wave new (users, keys, models come and go),
// through Pipeline.Apply with the defaults. The merge state fills up
// (max_series) and the decision cache sees every series once: together they
// must stay within their budget (max_series × 1,152 B: 110 MiB) plus a
// slack for what neither estimate sees (the heap's own bookkeeping, this
// test's scratch); before the cache was bounded in bytes they retained up to
// 212 MiB. The cache's verdicts, after it evicted, must be those of a
// pipeline without one.
func TestDecisionCacheMemoryUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("feeds 340,000 series")
	}
	const (
		waves, perWave, batch = 3, 100_000, 2000
		slack                 = 8 << 20
	)
	cfg := DefaultConfig()
	budget := uint64(cfg.Collision.MaxSeries) * budgetBytesPerOutput
	before := retainedHeap()
	p, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.UnixMilli(0)}
	p.SetMergeClock(clock.now)
	for w := range waves {
		clock.add(time.Minute)
		applyScrape(p, churnWave(w, perWave), batch, int64(w)*step, nil)
		retained := retainedHeap() - before
		entries, counted, shared := p.cache.usage()
		t.Logf("wave %d: retained %.1f MiB (budget %.1f MiB); merge state: %d outputs, estimated %.1f MiB; cache: %d entries, %.1f MiB (+%.1f MiB of the state's labels)",
			w, float64(retained)/(1<<20), float64(budget)/(1<<20), p.merger.outputs(), float64(p.merger.heapBytes())/(1<<20),
			entries, float64(counted)/(1<<20), float64(shared)/(1<<20))
		if retained > budget+slack {
			t.Errorf("wave %d: the merge state and the decision cache retain %.1f MiB, more than their budget %.1f MiB + %d MiB",
				w, float64(retained)/(1<<20), float64(budget)/(1<<20), slack>>20)
		}
	}
	if entries, _, _ := p.cache.usage(); entries >= waves*perWave/2 {
		t.Fatalf("%d entries cached: the test did not make the cache evict", entries)
	}
	// The verdicts of a pipeline without a cache, through a second scrape:
	// of the first wave, long evicted, and of the last wave's last fifth,
	// mostly still cached (hits).
	ref, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref.cache = nil
	sameAsUncached := func(b *sliceBatch) {
		got, _ := p.decide(b)
		want, _ := ref.decide(b)
		sameEdits(t, got, want)
	}
	clock.add(time.Minute)
	applyScrape(p, churnWave(0, perWave)[:perWave/5], batch, int64(waves)*step, sameAsUncached)
	applyScrape(p, churnWave(waves-1, perWave)[perWave*4/5:], batch, int64(waves)*step, sameAsUncached)
}

// TestDecisionCacheCountsSharedLabelsOnce: labels that the merge state
// holds are counted once, in the state's estimate; a decision built apart
// from the state's copy (a None series rewritten onto an output that its
// genuine 500 created in the same request) is made to hold the state's
// copy. When the state forgets outputs, the cache counts their labels again;
// when the state is full, it never stops counting them.
func TestDecisionCacheCountsSharedLabelsOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Collision.MaxSeries = 50
	p, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.cache.budget, p.cache.floor = 1<<30, 1<<30 // no eviction here
	clock := &fakeClock{t: time.UnixMilli(0)}
	p.SetMergeClock(clock.now)
	none, five := mergeWorkload(60)
	var series []labels.Labels
	for i := range none {
		if i%2 == 0 { // the output made from the None's rewrite, or from the genuine series
			series = append(series, none[i], five[i])
		} else {
			series = append(series, five[i], none[i])
		}
	}
	entries := func() []*decision {
		var ds []*decision
		for i := range p.cache.shards {
			sh := &p.cache.shards[i]
			sh.mu.Lock()
			for _, d := range sh.m {
				ds = append(ds, d)
			}
			sh.mu.Unlock()
		}
		return ds
	}
	// check counts the cache's bytes from its entries: those merged since
	// the state last forgot outputs, whose output is in the state, count
	// their labels as the state's (then its own memory).
	check := func(stage string, merged func(*decision) bool, wantShared int) {
		t.Helper()
		var bytes, shared int64
		n := 0
		for _, d := range entries() {
			stateOut, stateOrig, found := p.merger.sharedLabels("", d.out, d.outHash, d.orig)
			switch {
			case !found || !merged(d):
				bytes += entryBytes + d.ownBytes()
			case !sameLabelsMemory(d.orig, stateOrig) || d.changed && !sameLabelsMemory(d.out, stateOut):
				t.Fatalf("%s: %v cached apart from the merge state's copy of its labels", stage, d.orig)
			default:
				n++
				bytes += entryBytes
				shared += d.ownBytes()
			}
		}
		gotEntries, gotBytes, gotShared := p.cache.usage()
		if gotEntries != len(series) || n != wantShared || gotBytes != bytes || gotShared != shared {
			t.Fatalf("%s: cache counts %d entries, %d bytes + %d shared; want %d, %d + %d (%d shared entries, want %d)",
				stage, gotEntries, gotBytes, gotShared, len(series), bytes, shared, n, wantShared)
		}
	}
	all := func(*decision) bool { return true }
	// Two scrapes, past the learning: 50 outputs merged (max_series), 10
	// forwarded unmerged, whose labels only the cache holds.
	applyScrape(p, series, len(series), 0, nil)
	clock.add(3 * time.Minute)
	applyScrape(p, series, len(series), step, nil)
	check("state full", all, 100)

	// Three hours later, idle: the state forgets every output (in the
	// request of another series, which the full state does not take), and
	// the cache counts every label again from its next put (sync).
	clock.add(3 * time.Hour)
	other := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "x")
	applyScrape(p, []labels.Labels{other}, 1, 2*step, nil)
	if n := p.merger.outputs(); n != 0 {
		t.Fatalf("%d outputs left: the state forgot none", n)
	}
	series = append(series, other)
	p.cache.sync()
	check("state forgot", func(*decision) bool { return false }, 0)

	// Every series again: merged into new outputs (x's is the 61st: it
	// does not fit), counted as the state's again.
	applyScrape(p, series, len(series), 3*step, nil)
	check("merged again", all, 100)
}

// TestDecisionCacheClockKeepsHotEntries: beyond its share of the budget a
// shard evicts, and entries hit since the hand last passed stay: a stream
// of series seen once does not push out the series seen every scrape.
// A new entry is never the one its own put evicts.
func TestDecisionCacheClockKeepsHotEntries(t *testing.T) {
	c := newDecisionCache(64*8, nil) // 8 × 1,152 B a shard
	limit := c.shardLimit()
	key := func(i int) cacheKey { return cacheKey{h1: uint64(i) * cacheShards, h2: uint64(i)} } // shard 0
	dec := func(i int) *decision {
		return &decision{orig: labels.FromStrings("__name__", "m", "i", fmt.Sprintf("%040d", i)), keep: true}
	}
	const hot = 10
	for i := range hot {
		c.put(key(i), dec(i))
	}
	for round := range 100 {
		for i := range hot {
			if c.get(key(i)) == nil {
				t.Fatalf("round %d: hot entry %d evicted", round, i)
			}
		}
		for j := range 5 {
			k := key(1000 + 5*round + j)
			c.put(k, dec(1000+5*round+j))
			sh := &c.shards[0]
			if sh.m[k] == nil { // not get: a hit would keep it
				t.Fatalf("round %d: a new entry evicted by its own put", round)
			}
			if sh.bytes > limit {
				t.Fatalf("round %d: shard holds %d bytes, limit %d", round, sh.bytes, limit)
			}
		}
	}
	if entries, _, _ := c.usage(); entries >= hot+500 || entries <= hot {
		t.Fatalf("%d entries cached of %d put: nothing evicted, or everything", entries, hot+500)
	}
}

// TestMergeStateHeapEstimate: the merge state's estimate of its heap, from
// which the cache's share of the budget follows, is not below what the
// state retains (nor far above): in the steady state, and after a LiteLLM
// restart with a failed scrape, when every output alone with its 500 keeps
// a dead span (a side record of the shard) until its next restart.
func TestMergeStateHeapEstimate(t *testing.T) {
	for _, c := range []struct {
		name   string
		series func(int) []labels.Labels
		values []float64 // one scrape each
	}{
		{"steady", litellmSeries, []float64{0, 1}},
		{"steady/shape=shared", litellmSharedSeries, []float64{0, 1}},
		{"after a revival", litellmSeries, []float64{5, 6, stale, 0, 1, 2}},
		{"after a revival/shape=shared", litellmSharedSeries, []float64{5, 6, stale, 0, 1, 2}},
		{"steady/shape=created", litellmCreatedSeries, []float64{0, 1}},
		{"after a revival/shape=created", litellmCreatedSeries, []float64{5, 6, stale, 0, 1, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const outputs = 20_000
			before := retainedHeap()
			p, err := New(DefaultConfig(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.cache = nil
			clock := &fakeClock{t: time.UnixMilli(0)}
			p.SetMergeClock(clock.now)
			series := c.series(outputs)
			for round, v := range c.values {
				clock.add(time.Minute)
				applyScrape(p, series, 2000, int64(round)*step, func(b *sliceBatch) {
					for i := range b.samples {
						b.samples[i][0].V = v
						if !math.IsNaN(v) && strings.HasSuffix(b.ls[i].Get(model.MetricNameLabel), "_created") {
							// A creation time; after the restart (a
							// count of 0), a new one.
							b.samples[i][0].V = createdAt + float64(min(round, 3)/3)*45
						}
					}
				})
			}
			runtime.KeepAlive(series) // the series are the sender's, not retained by rwfix: let go
			retained := int64(retainedHeap() - before)
			var est int64
			for range mergeShards { // walk every shard now
				p.merger.mem.at.Store(0)
				est = p.merger.heapBytes()
			}
			dead := 0
			for i := range p.merger.shards {
				dead += len(p.merger.shards[i].deadFrom)
			}
			if n := p.merger.outputs(); n != outputs {
				t.Fatalf("%d outputs, want %d", n, outputs)
			}
			if revived := len(c.values) > 2; revived != (dead > outputs/2) {
				t.Fatalf("%d outputs with dead spans", dead)
			}
			t.Logf("%d outputs: retained %d B/output, estimated %d (%d with dead spans)", outputs, retained/outputs, est/outputs, dead)
			if est < retained*95/100 || est > retained*125/100 {
				t.Fatalf("estimated %d bytes, retained %d", est, retained)
			}
			runtime.KeepAlive(p)
		})
	}
}

// TestDecisionCacheConcurrent: requests in parallel over a cache far smaller
// than their series (every request evicts; entries are replaced by the
// state's copies while others use them; the state forgets outputs, so the
// cache recounts) decide as a pipeline without a cache does. Run with -race.
func TestDecisionCacheConcurrent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Collision.MaxSeries = 300
	p, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.cache.budget, p.cache.floor = 64*2048, 64*2048 // a few entries a shard
	ref, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref.cache = nil
	clock := &fakeClock{t: time.UnixMilli(0)}
	p.SetMergeClock(clock.now)
	none, five := mergeWorkload(500)
	pool := append(slices.Clone(none), five...)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for r := range 60 {
				if g == 0 && r%20 == 19 {
					clock.add(3 * time.Hour) // idle: the state forgets
				}
				ls := make([]labels.Labels, 200)
				smp := make([][]Sample, len(ls))
				for i := range ls {
					ls[i] = pool[rng.IntN(len(pool))]
					smp[i] = []Sample{{T: int64(r) * step, V: float64(r)}}
				}
				b := newSliceBatch(ls, smp)
				got, _ := p.decide(b)
				want, _ := ref.decide(b)
				for k := range min(len(got), len(want)) {
					if labels.Equal(got[k].orig, want[k].orig) && labels.Equal(got[k].out, want[k].out) && got[k].merge == want[k].merge && got[k].hash == want[k].hash {
						continue
					}
					errs <- fmt.Sprintf("goroutine %d, request %d: edit %d %+v, want %+v", g, r, k, got[k], want[k])
					return
				}
				if len(got) != len(want) {
					errs <- fmt.Sprintf("goroutine %d, request %d: %d edits, want %d", g, r, len(got), len(want))
					return
				}
				if _, run := p.Apply(newSliceBatch(ls, smp), ""); run != nil {
					run.Done(true, allTaken(run.Retries()))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if p.merger.removals() == 0 {
		t.Fatal("the state forgot no output: the cache never recounted")
	}
	entries, bytes, shared := p.cache.usage()
	if limit := p.cache.budget; bytes > limit+64*(entryBytes+1024) || entries == 0 || shared < 0 {
		t.Fatalf("cache counts %d entries, %d bytes (+%d shared), budget %d", entries, bytes, shared, limit)
	}
}

// usage is what the cache counts now: entries, and bytes with and without
// the labels it shares with the state (for the tests and benchmarks; the binary never asks).
func (c *decisionCache) usage() (entries int, bytes, shared int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		entries += len(sh.m)
		bytes += sh.bytes
		shared += sh.shared
		sh.mu.Unlock()
	}
	return entries, bytes, shared
}

// BenchmarkDecideCached is the decision cache's hit path: one op decides a
// request of 2,000 series that the cache has seen (a None and a genuine 500
// for each of 1,000 users), none built into labels. Its allocations are the
// request's list of edits, none per series.
func BenchmarkDecideCached(b *testing.B) {
	p, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	none, five := mergeWorkload(1000)
	batch := newSliceBatch(append(none, five...), make([][]Sample, 2*len(none)))
	p.decide(batch)
	b.ReportAllocs()
	for b.Loop() {
		p.decide(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/series")
}

// BenchmarkDecideCachedCold is BenchmarkDecideCached over a cache of
// 100,000 decisions (50,000 users), one 2,000-series request after another
// in turn, as a LiteLLM proxy's scrape comes: each request's decisions were
// last touched 49 requests before, so the probes meet the memory latency a
// large cache has in production, which the warm benchmark does not.
func BenchmarkDecideCachedCold(b *testing.B) {
	p, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	const users, per = 50_000, 1000
	none, five := mergeWorkload(users)
	var batches []*sliceBatch
	for off := 0; off < users; off += per {
		ls := append(slices.Clone(none[off:off+per]), five[off:off+per]...)
		batches = append(batches, newSliceBatch(ls, make([][]Sample, len(ls))))
	}
	for _, batch := range batches {
		p.decide(batch)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		p.decide(batches[n%len(batches)])
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*per), "ns/series")
}
