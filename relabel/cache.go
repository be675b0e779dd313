package relabel

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// decisionCache remembers, per series, what the presets decided for it, so
// that a series seen again (every scrape, every request) is neither built
// into labels nor relabeled again: decide finds it by the hash of its wire
// labels and reuses the labels built the first time.
//
// Keys are two 64-bit hashes of the label set with different seeds (128
// bits): two different label sets share a key with a probability of about
// n²/2¹²⁹ — never, in practice — so a hit needs no comparison of labels.
//
// Only pipelines without user relabel_configs cache (TargetsKnown): a user
// rule's merge decision depends on the merge state, and presets' do not.
// Each Pipeline has its own cache, so a reload starts afresh.
//
// Memory. The cache and the merge state share one budget in bytes:
//
//	budget = max_series × 1,152 B    (110 MiB at the default 100,000)
//
// 1,152 B (1.125 KiB) is what one output of the merge state takes with
// LiteLLM's labels, about 920 B, plus the cache entries of its sources,
// about 140 B (docs/performance.md, "Memory of the merge state"): a full state and the
// cache of its series fit. The cache may hold what the state leaves: the
// budget less the state's heap as estimated now (Merger.heapBytes), but at
// least budget/16, so that it keeps working beside a state larger than
// planned (outputs with many sources, long labels, samples held in a
// catch-up); the state itself is bounded by max_series only. Under series
// churn the two together stay within max(budget, state + budget/16).
//
// Each entry counts what it really costs (entryBytes, plus ownBytes): its
// map slot and key, its slot in the CLOCK ring, the decision, and the label
// memory it alone holds (orig, and out where it is not orig's memory).
// Labels that the merge state holds too are counted once, in the state's
// estimate. When a request's merge finds a cached decision's output in the
// state (recount), the entry is made to hold the state's own copies of
// its labels (Merger.sharedLabels; the state keeps the copies a decision
// gives it, so this is rare: a label set built twice) and counts them as
// the state's from then on — until the state next removes an output (sync):
// then every entry's labels count again, until its next merge.
//
// Eviction is CLOCK (second chance), per shard: a hit only sets the entry's
// reference bit, under the shard lock it takes anyway (no list to reorder,
// no allocation); a put beyond the shard's share of the budget sweeps the
// hand, which clears set bits and evicts the first entry found without one.
// A new entry goes just behind the hand, without the bit: it has one turn
// to be hit, so that series seen once (churn) leave first, and the series
// seen every scrape stay; its own put never evicts it.
type decisionCache struct {
	shards [cacheShards]cacheShard
	budget int64   // bytes, for the cache and the merge state together
	floor  int64   // bytes the cache may always hold
	state  *Merger // the merge state sharing the budget; nil: none
	synced atomic.Uint64
}

const cacheShards = 64

// budgetBytesPerOutput is the memory budget of the cache and the merge
// state together, per output of max_series (see decisionCache).
const budgetBytesPerOutput = 1152

// entryBytes is what an entry costs besides its labels: the decision, its
// map slot (key and pointer), its slot in the ring (slices grow by doubling).
var entryBytes = allocSize(int(unsafe.Sizeof(decision{}))) +
	mapEntryBytes(unsafe.Sizeof(cacheKey{})+unsafe.Sizeof((*decision)(nil))) + 16

type cacheShard struct {
	mu   sync.Mutex
	m    map[cacheKey]*decision
	ring []*decision // every entry, once; the hand sweeps it
	hand int
	// bytes is what the entries cost; labels shared with the state at
	// epoch are not in it but in shared.
	bytes, shared int64
	epoch         uint64   // the state's removals when shared was counted
	_             [64]byte // shards' locks on cache lines of their own
}

type cacheKey struct{ h1, h2 uint64 }

// decision is what the pipeline decided for one series.
type decision struct {
	orig, out labels.Labels // out shares orig's memory when unchanged
	outHash   uint64
	fired     uint64 // the preset rewrites that changed it (bit i: p.rewrites[i])
	changed   bool
	keep      bool
	merge     bool

	// The cache's bookkeeping, under its shard's lock (sharedAt: atomic,
	// read without it on the hit path), packed beside the flags: 80 bytes
	// in all, a size class of its own.
	ref      bool  // hit since the hand last passed
	slot     int32 // in the shard's ring; -1: not cached (evicted, replaced)
	key      cacheKey
	sharedAt atomic.Uint64 // 1 + the shard's epoch when the state was seen holding its labels
}

// ownBytes is the label memory d holds: orig's, and out's unless it is
// orig's memory.
func (d *decision) ownBytes() int64 {
	b := labelsBytes(d.orig)
	if d.changed && !sameLabelsMemory(d.out, d.orig) { // unchanged: out is orig
		b += labelsBytes(d.out)
	}
	return b
}

// newDecisionCache makes a cache for a merge state of maxSeries outputs,
// sharing its budget with state (nil: none).
func newDecisionCache(maxSeries int, state *Merger) *decisionCache {
	budget := int64(max(1, maxSeries)) * budgetBytesPerOutput
	c := &decisionCache{budget: budget, floor: budget / 16, state: state}
	for i := range c.shards {
		c.shards[i].m = map[cacheKey]*decision{}
	}
	return c
}

func (c *decisionCache) shard(k cacheKey) *cacheShard { return &c.shards[k.h1%cacheShards] }

func (c *decisionCache) get(k cacheKey) *decision {
	sh := c.shard(k)
	sh.mu.Lock()
	d := sh.m[k]
	if d != nil && !d.ref {
		d.ref = true
	}
	sh.mu.Unlock()
	return d
}

// put caches d under k and returns the decision cached there: d, or one
// that a concurrent request put first. Then it evicts down to the shard's
// share of the budget, d perhaps too (it is still the caller's to use).
func (c *decisionCache) put(k cacheKey, d *decision) *decision {
	c.sync()
	limit := c.shardLimit() // outside the shard lock: it may walk the state
	d.key, d.slot, d.ref = k, -1, false
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[k]; old != nil {
		return old
	}
	sh.m[k] = d
	sh.insert(d)
	sh.bytes += entryBytes + d.ownBytes()
	sh.evict(limit, d)
	return d
}

// shardLimit is each shard's share of what the budget leaves the cache now.
func (c *decisionCache) shardLimit() int64 {
	free := c.budget
	if c.state != nil {
		free -= c.state.heapBytes()
	}
	return max(free, c.floor) / cacheShards
}

// insert puts d just behind the hand, which moves the entry it pointed at to
// the end of the ring.
func (sh *cacheShard) insert(d *decision) {
	if sh.hand >= len(sh.ring) {
		sh.hand = 0
	}
	if len(sh.ring) == 0 {
		d.slot = 0
		sh.ring = append(sh.ring, d)
		return
	}
	moved := sh.ring[sh.hand]
	moved.slot = int32(len(sh.ring))
	sh.ring = append(sh.ring, moved)
	d.slot = int32(sh.hand)
	sh.ring[sh.hand] = d
	sh.hand++
}

// evict sweeps the hand until the shard costs at most limit: an entry hit
// since the last turn loses its bit and stays, one without is evicted; keep
// (the entry just put) stays. Two turns at most: the first clears every bit.
func (sh *cacheShard) evict(limit int64, keep *decision) {
	for steps := 2 * len(sh.ring); sh.bytes > limit && len(sh.ring) > 1 && steps > 0; steps-- {
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
		d := sh.ring[sh.hand]
		if d.ref || d == keep {
			d.ref = false
			sh.hand++
			continue
		}
		sh.remove(d) // the last entry takes its place, under the hand
	}
}

func (sh *cacheShard) remove(d *decision) {
	last := sh.ring[len(sh.ring)-1]
	sh.ring[d.slot] = last
	last.slot = d.slot
	sh.ring[len(sh.ring)-1] = nil
	sh.ring = sh.ring[:len(sh.ring)-1]
	delete(sh.m, d.key)
	sh.uncount(d)
	sh.bytes -= entryBytes
	d.slot = -1
}

// uncount takes d's labels out of the shard's count.
func (sh *cacheShard) uncount(d *decision) {
	if sh.sharing(d) {
		sh.shared -= d.ownBytes()
	} else {
		sh.bytes -= d.ownBytes()
	}
}

// sharing reports whether d's labels are counted as the state's.
func (sh *cacheShard) sharing(d *decision) bool { return d.sharedAt.Load() == sh.epoch+1 }

// sync counts again the labels of every entry counted as shared, if the
// state has removed outputs since: it may have held them, and no longer.
func (c *decisionCache) sync() {
	if c.state == nil {
		return
	}
	r := c.state.removals()
	if c.synced.Load() >= r {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.syncTo(r)
		sh.mu.Unlock()
	}
	for {
		s := c.synced.Load()
		if s >= r || c.synced.CompareAndSwap(s, r) {
			return
		}
	}
}

func (sh *cacheShard) syncTo(removals uint64) {
	if removals > sh.epoch {
		sh.bytes += sh.shared
		sh.shared = 0
		sh.epoch = removals
	}
}

// counted reports whether d's labels are counted as they should be, held
// or not by the merge state (held: a request's merge found or made d's
// output with d's source, so the state holds their memory). It is the hit
// path's check: two atomic loads, no lock, inlined.
func (c *decisionCache) counted(d *decision, held bool) bool {
	return c.state == nil || (d.sharedAt.Load() == c.state.removals()+1) == held
}

// recount changes how d's labels are counted (see counted), after a merge in
// partition part: a new entry, the state full or no longer, a removal since.
func (c *decisionCache) recount(d *decision, held bool, part string) {
	var stateOut, stateOrig labels.Labels
	if held {
		// Before the shard lock: the state's lock is never taken under it.
		stateOut, stateOrig, held = c.state.sharedLabels(part, d.out, d.outHash, d.orig)
	}
	sh := c.shard(d.key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.syncTo(c.state.removals())
	if d.slot < 0 {
		return // evicted or replaced: counted no more
	}
	shared := sh.sharing(d)
	switch {
	case !held && shared:
		sh.shared -= d.ownBytes()
		sh.bytes += d.ownBytes()
		d.sharedAt.Store(0)
	case held && !shared:
		sh.bytes -= d.ownBytes()
		if !sameLabelsMemory(stateOrig, d.orig) || d.changed && !sameLabelsMemory(stateOut, d.out) {
			d = sh.replace(d, stateOut, stateOrig)
		}
		sh.shared += d.ownBytes()
		d.sharedAt.Store(sh.epoch + 1)
	}
}

// replace puts in d's place a copy of it that holds the state's copies of
// its labels (equal label sets), so that one memory holds them; d's own are
// garbage once the requests using d are done. Its labels are not counted:
// the caller counts them.
func (sh *cacheShard) replace(d *decision, stateOut, stateOrig labels.Labels) *decision {
	nd := &decision{orig: stateOrig, out: stateOut, outHash: d.outHash, changed: d.changed, keep: d.keep,
		merge: d.merge, fired: d.fired, ref: d.ref, slot: d.slot, key: d.key}
	if !d.changed {
		nd.out = stateOrig // out is orig
	}
	sh.ring[d.slot] = nd
	sh.m[d.key] = nd
	d.slot = -1
	return nd
}

// seriesKey hashes series i's labels, in name order, with two seeds. h is
// scratch space, reused from series to series (it escapes through Pairs).
func seriesKey(b series.Batch, i int, h *pairHasher) cacheKey {
	h.reset()
	h.keyed = true
	h.d2.ResetWithSeed(seed2)
	b.Pairs(i, h.addFn)
	return cacheKey{h.sum(), h.d2.Sum64()}
}
