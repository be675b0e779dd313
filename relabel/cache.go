package relabel

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"
)

// decisionCache remembers, per series, what the presets decided for it, so
// that a series seen again (every scrape, every request) is neither built
// into labels nor relabeled again: decide finds it by the hash of its wire
// labels and reuses the labels built the first time. The merge state keeps
// those same labels (strings are shared, not copied), so a cached series
// costs its labels once.
//
// Keys are two 64-bit hashes of the label set with different seeds (128
// bits): two different label sets share a key with a probability of about
// n²/2¹²⁹ — never, in practice — so a hit needs no comparison of labels.
//
// Only pipelines without user relabel_configs cache (TargetsKnown): a user
// rule's merge decision depends on the merge state, and presets' do not.
// Each Pipeline has its own cache, so a reload starts afresh. The cache is
// bounded: a full shard is cleared (the next sight of each series rebuilds
// its entry).
type decisionCache struct {
	shards [cacheShards]cacheShard
	max    int // entries per shard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.Mutex
	m  map[cacheKey]*decision
}

type cacheKey struct{ h1, h2 uint64 }

// decision is what the pipeline decided for one series.
type decision struct {
	orig, out labels.Labels // out shares orig's string when unchanged
	outHash   uint64
	changed   bool
	keep      bool
	merge     bool
	fired     uint64 // the preset rewrites that changed it (bit i: p.rewrites[i])
}

func newDecisionCache(maxEntries int) *decisionCache {
	c := &decisionCache{max: max(1, maxEntries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[cacheKey]*decision{}
	}
	return c
}

func (c *decisionCache) get(k cacheKey) *decision {
	sh := &c.shards[k.h1%cacheShards]
	sh.mu.Lock()
	d := sh.m[k]
	sh.mu.Unlock()
	return d
}

func (c *decisionCache) put(k cacheKey, d *decision) {
	sh := &c.shards[k.h1%cacheShards]
	sh.mu.Lock()
	if len(sh.m) >= c.max {
		clear(sh.m)
	}
	sh.m[k] = d
	sh.mu.Unlock()
}

// seriesKey hashes series i's labels, in name order, with two seeds. h is
// scratch space, reused from series to series (it escapes through Pairs).
func seriesKey(b Batch, i int, h *pairHasher) cacheKey {
	h.reset()
	h.keyed = true
	h.d2.ResetWithSeed(seed2)
	b.Pairs(i, h.addFn)
	return cacheKey{h.sum(), h.d2.Sum64()}
}
