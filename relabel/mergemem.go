package relabel

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
)

// What the decision cache needs to know of the merge state to share one
// memory budget with it (see decisionCache): how much heap the state holds
// now, when it stops holding labels it held (removals), and its copies of a
// label set, so that a cached decision uses the state's memory rather than
// a second copy.

// outputCount is the number of outputs in the merge state (Merger.total),
// counting removals as well: every removal (an idle output forgotten, the
// state reset) may leave the decision cache alone holding labels it had
// shared with the state, so the cache counts them again (see
// decisionCache.sync). It has atomic.Int64's methods, so that the code that
// counts outputs reads the same.
type outputCount struct {
	n       atomic.Int64
	removed atomic.Uint64
}

func (c *outputCount) Load() int64 { return c.n.Load() }

func (c *outputCount) Add(d int64) int64 {
	if d < 0 {
		c.removed.Add(uint64(-d))
	}
	return c.n.Add(d)
}

// Store sets the count: the state was emptied or rebuilt.
func (c *outputCount) Store(v int64) {
	c.removed.Add(1)
	c.n.Store(v)
}

func (c *outputCount) CompareAndSwap(old, v int64) bool { return c.n.CompareAndSwap(old, v) }

// removals counts the times outputs left the state.
func (w *Merger) removals() uint64 { return w.total.removed.Load() }

// stateMemory is the merge state's heap, as measured by walking its shards,
// one at a time, in turn.
type stateMemory struct {
	walking sync.Mutex // one walk at a time; others use the last ones
	next    int        // the shard to walk next (under walking)
	// The last walk of each shard (under walking), and their sums.
	shardBytes, shardOutputs [mergeShards]int64
	bytes, outputs           atomic.Int64
	at                       atomic.Int64 // when the last shard was walked (Unix ns, wall clock: a cost control only)
}

// stateRewalkEvery is how often a shard's walk is due: every shard has
// been walked within 16 × it (held samples grow without new outputs, e.g.
// in a catch-up).
const stateRewalkEvery = time.Second

// defaultOutputBytes is the heap assumed per output before any walk: an
// output of LiteLLM's labels with a source or two (docs/performance.md, "Memory of the
// merge state").
const defaultOutputBytes = 1000

// heapBytes estimates the heap the merge state holds: the shards' last
// walks, plus the outputs added since (or less those removed) at the walks'
// bytes per output. When the output count has moved by more than an eighth
// since the walks, or a walk is due, it walks the next shard (under that
// shard's lock alone: a sixteenth of the state, about 2 ms at 100,000
// outputs): amortized, a few outputs visited per output added.
func (w *Merger) heapBytes() int64 {
	n := w.total.Load()
	mem := &w.mem
	last := mem.outputs.Load()
	d := n - last
	if (d > last/8+256 || -d > last/8+256 || time.Now().UnixNano()-mem.at.Load() > int64(stateRewalkEvery)) && mem.walking.TryLock() {
		i := mem.next
		mem.next = (i + 1) % mergeShards
		b, o := w.shards[i].heapBytes()
		mem.bytes.Add(b - mem.shardBytes[i])
		mem.outputs.Add(o - mem.shardOutputs[i])
		mem.shardBytes[i], mem.shardOutputs[i] = b, o
		mem.at.Store(time.Now().UnixNano())
		mem.walking.Unlock()
		last = mem.outputs.Load()
	}
	b := mem.bytes.Load()
	per := int64(defaultOutputBytes)
	if last > 0 {
		per = b / last
	}
	return max(0, b+(n-last)*per) + w.created.heapBytes()
}

// heapBytes walks the shard's outputs and sources, under its lock, and adds
// up their heap: the records, their queues, the maps and lists that find
// them, and their labels (a source whose labels are its output's memory,
// the genuine series, counted once). It also returns the outputs it found.
func (m *shard) heapBytes() (bytes, outputs int64) {
	const sampleBytes = int(unsafe.Sizeof(Sample{}))
	var (
		outBytes = allocSize(int(unsafe.Sizeof(output{})))
		srcBytes = allocSize(int(unsafe.Sizeof(source{})))
		outsSlot = mapEntryBytes(unsafe.Sizeof(outKey{}) + unsafe.Sizeof((*output)(nil)))
		moreSlot = mapEntryBytes(unsafe.Sizeof(outKey{}) + unsafe.Sizeof([]*output(nil)))
		fgotSlot = mapEntryBytes(unsafe.Sizeof(outKey{}) + unsafe.Sizeof(int64(0)))
		waitSlot = mapEntryBytes(unsafe.Sizeof((*output)(nil)))
	)
	m.mu.Lock()
	defer m.mu.Unlock()
	b := int64(len(m.outs))*outsSlot + int64(len(m.more))*moreSlot + int64(len(m.forgotten))*fgotSlot
	for _, l := range m.more {
		b += allocSize(cap(l) * 8)
	}
	for k := range m.outs {
		b += allocSize(len(k.part))
		for o := range m.under(k) {
			b += outBytes + labelsBytes(o.labels) + allocSize(cap(o.sources)*8) +
				allocSize(cap(o.q)*sampleBytes) + allocSize(cap(o.parkedNow())*int(unsafe.Sizeof(parked{}))) +
				parkedHeader(o)
			for _, s := range o.sources {
				b += srcBytes + s.queue.heapBytes()
				if !sameLabelsMemory(s.labels, o.labels) {
					b += labelsBytes(s.labels)
				}
			}
		}
	}
	for _, p := range m.parts {
		b += allocSize(cap(p.ready)*8) + allocSize(cap(p.spare)*8) + int64(len(p.waiting))*waitSlot
	}
	return b + m.sideBytes(), int64(m.n)
}

// sideBytes is the heap of the shard's side records: the sources of the
// forgotten outputs' tombs, the dead spans of revived outputs (after a
// LiteLLM restart with a failed scrape, every output alone with its 500
// keeps one until its next restart: about 70 bytes), the power-loss gaps,
// and the orphans' lists.
func (m *shard) sideBytes() int64 {
	var (
		deadSlot  = mapEntryBytes(unsafe.Sizeof((*output)(nil)) + unsafe.Sizeof([]deadSpan(nil)))
		gapSlot   = mapEntryBytes(unsafe.Sizeof((*output)(nil)) + unsafe.Sizeof((*lossGap)(nil)))
		orphSlot  = mapEntryBytes(unsafe.Sizeof(uint64(0)) + unsafe.Sizeof([]*output(nil)))
		gapRecord = allocSize(int(unsafe.Sizeof(lossGap{})))
	)
	var b int64
	for _, t := range m.forgotten {
		b += allocSize(cap(t.srcs) * 8)
	}
	b += int64(len(m.deadFrom)) * deadSlot
	for _, d := range m.deadFrom {
		b += allocSize(cap(d) * int(unsafe.Sizeof(deadSpan{})))
	}
	b += int64(len(m.lossGaps)) * (gapSlot + gapRecord)
	for _, g := range m.lossGaps {
		b += allocSize(cap(g.counted)*8) + allocSize(cap(g.past)*int(unsafe.Sizeof(gapSpan{}))) +
			allocSize(cap(g.kept)*int(unsafe.Sizeof(keptLast{})))
	}
	b += int64(len(m.orphans)) * orphSlot
	for _, l := range m.orphans {
		b += allocSize(cap(l) * 8)
	}
	return b
}

// sharedLabels returns the state's copies of out (an output of partition
// part, with label hash h) and of orig (one of its sources), if it holds
// that output: a cached decision that keeps those copies instead of its own
// holds no label memory of its own while the state keeps them. found: the
// state holds both.
func (w *Merger) sharedLabels(part string, out labels.Labels, h uint64, orig labels.Labels) (stateOut, stateOrig labels.Labels, found bool) {
	m := w.shardOf(h)
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.find(part, out, h)
	if o == nil {
		return out, orig, false
	}
	for _, s := range o.sources {
		if labels.Equal(s.labels, orig) {
			return o.labels, s.labels, true
		}
	}
	if labels.Equal(orig, o.labels) {
		return o.labels, o.labels, true
	}
	return o.labels, orig, false
}

// parkedHeader is the heap of o's pointer to its unsettled resets (the
// slice header it points to), when it has one.
func parkedHeader(o *output) int64 {
	if o.parked == nil {
		return 0
	}
	return allocSize(int(unsafe.Sizeof([]parked(nil))))
}
