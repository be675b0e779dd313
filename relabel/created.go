package relabel

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// A counter from prometheus_client (LiteLLM's) comes with a <name>_created
// series whose value is the counter's creation time. It tells what values
// alone cannot: whether a source that comes back after a gap (a failed
// scrape, the series removed) is the same series going on or was created
// again — from zero, whatever its value. createdTimes keeps, by source
// family (labels without the _total / _created suffix), its last creation
// times; the _total output's shard reads them when a source comes back.
// The _created sample of a scrape arrives with its _total one (same WAL
// append): a source back from a gap is not live, so its timestamp waits the
// birth wait, by which time both are in.
type createdTimes struct {
	mu sync.Mutex
	// m holds, by family, the source's last creation times, oldest first,
	// each with the span of sample timestamps that said it: a creation time
	// changes only when the series is created again, so a few spans reach
	// back across any gap and backlog (at most createdKept). A slice that
	// grows as needed, not an array of createdKept: nearly every source
	// says one creation time for good (24 bytes, against 200 for the array;
	// about 100 with its map slot, against 250: a third of a LiteLLM
	// output's state was these arrays).
	m map[uint64][]createdSpan
	// bytes is the heap m holds, its slots and its slices' arrays (written
	// under mu), for the state's estimate of its heap, read without mu.
	bytes atomic.Int64
}

// createdSlotBytes is what one family takes in m besides its array.
var createdSlotBytes = mapEntryBytes(unsafe.Sizeof(uint64(0)) + unsafe.Sizeof([]createdSpan(nil)))

type createdSpan struct {
	from, to int64 // the first and last sample timestamps that said v
	v        float64
}

const createdKept = 8

// familyKey is the hash of ls without its name's _total / _created suffix;
// ok false for other names.
func familyKey(ls labels.Labels) (uint64, bool) {
	name := ls.Get(model.MetricNameLabel)
	base, ok := strings.CutSuffix(name, "_total")
	if !ok {
		if base, ok = strings.CutSuffix(name, "_created"); !ok {
			return 0, false
		}
	}
	d := xxhash.New()
	_, _ = d.WriteString(base)
	ls.Range(func(l labels.Label) {
		if l.Name != model.MetricNameLabel {
			_, _ = d.Write([]byte{0xff})
			_, _ = d.WriteString(l.Name)
			_, _ = d.Write([]byte{0xff})
			_, _ = d.WriteString(l.Value)
		}
	})
	return d.Sum64(), true
}

// saw records a _created sample of the source of family k (familyKey of
// its labels: the source's family, computed once, not per sample).
func (c *createdTimes) saw(k uint64, t int64, v float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64][]createdSpan{}
	}
	h := c.m[k]
	if n := len(h); n > 0 {
		last := &h[n-1]
		if last.to >= t {
			return // samples of one source come in order
		}
		if last.v == v {
			last.to = t
			return
		}
	}
	if len(h) == createdKept {
		h = h[:copy(h, h[1:])]
	}
	c.set(k, append(h, createdSpan{from: t, to: t, v: v}))
}

// set makes h the creation times of family k, counting its array (under
// c.mu).
func (c *createdTimes) set(k uint64, h []createdSpan) {
	old, ok := c.m[k]
	d := createdArrayBytes(h) - createdArrayBytes(old)
	if !ok {
		d += createdSlotBytes
	}
	c.bytes.Add(d)
	c.m[k] = h
}

func createdArrayBytes(h []createdSpan) int64 {
	return allocSize(cap(h) * int(unsafe.Sizeof(createdSpan{})))
}

// heapBytes is the heap the creation times hold: their map's slots and
// their arrays.
func (c *createdTimes) heapBytes() int64 { return c.bytes.Load() }

// changed reports whether the source of family k (familyKey of its
// labels), back at t after a gap that began at gone, was created again: its
// creation time at t (from its _created sample of that scrape) differs from
// the last one before the gap, said during the life it counts now (since
// life: a creation time said before is another life's). When none was said
// before the gap in this life (its _created samples were in the seconds a
// power loss cut from the log: sim powerloss seed 3000646), a creation time
// after gone says it too: the series counted before gone, so one created
// since is another (the clocks of exporter and sender agree, as rwfix
// assumes of sender and rwfix: see clockSkew). False where the creation
// time at t is unknown.
//
// earlier reports a creation time at t that differs from the last one
// before the gap but lies at or before gone: the series was created again
// while the state counted it, and what its _created series said then never
// reached the state (a power loss cut it; or it came after that time was
// finalized). That is not a creation at t: the count the state has now is
// the new life's, and carried it would be counted twice (sim all seed
// 20001895); the count of the life before is unknown (counted by the
// caller).
func (c *createdTimes) changed(k uint64, life, gone, t int64) (again, earlier bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[k]
	now, before, okNow, okBefore := 0.0, 0.0, false, false
	for i := len(h) - 1; i >= 0; i-- {
		sp := h[i]
		if sp.from <= t && t <= sp.to {
			// Said at t, or before and after it: t's own (an older span
			// may be another life's).
			now, okNow = sp.v, true
		}
		if sp.from < gone && sp.to >= life && !okBefore {
			before, okBefore = sp.v, true // the latest said before the gap
		}
	}
	if okNow && !okBefore {
		return now*1000 > float64(gone), false
	}
	if !okNow || now == before {
		return false, false
	}
	if now*1000 > float64(gone) {
		return true, false
	}
	return false, true
}

// before reports whether the source of family k said at t a creation time
// at or before by (a sample timestamp): it existed then. False where the
// creation time at t is unknown.
func (c *createdTimes) before(k uint64, t, by int64) bool {
	ms, ok := c.at(k, t)
	return ok && ms <= float64(by)
}

// at is the creation time (ms) the source of family k said at t; ok false
// where it is unknown.
func (c *createdTimes) at(k uint64, t int64) (ms float64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[k]
	for i := len(h) - 1; i >= 0; i-- {
		if sp := h[i]; sp.from <= t && t <= sp.to {
			return sp.v * 1000, true
		}
	}
	return 0, false
}

// awaited reports whether the source of family k has not said its
// creation time at t yet (its _created sample of that scrape is still on
// its way): it said creation times before, only older ones — or, with
// unseen, it said none at all.
func (c *createdTimes) awaited(k uint64, t int64, unseen bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[k]
	if len(h) == 0 {
		return unseen
	}
	return h[len(h)-1].to < t
}

// known reports whether the source of family k said a creation time.
func (c *createdTimes) known(k uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m[k]) > 0
}

// spans returns the creation times known of the source with labels ls,
// oldest first (for a snapshot of the log: see sourceState).
func (c *createdTimes) spans(ls labels.Labels) []createdSpan {
	k, ok := familyKey(ls)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.m[k])
}

// restore puts back the creation times of the source with labels ls that a
// snapshot kept (replaying the log): the samples that said them are no
// longer in it.
func (c *createdTimes) restore(ls labels.Labels, spans []createdSpan) {
	k, ok := familyKey(ls)
	if !ok || len(spans) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64][]createdSpan{}
	}
	c.set(k, slices.Clone(spans[max(0, len(spans)-createdKept):]))
}

// forget drops what is known of the source with labels ls (it left the
// state).
func (c *createdTimes) forget(ls labels.Labels) {
	if k, ok := familyKey(ls); ok {
		c.mu.Lock()
		if h, ok := c.m[k]; ok {
			c.bytes.Add(-createdArrayBytes(h) - createdSlotBytes)
			delete(c.m, k)
		}
		c.mu.Unlock()
	}
}
