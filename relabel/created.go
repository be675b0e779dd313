package relabel

import (
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// A counter from prometheus_client (LiteLLM's) comes with a <name>_created
// series whose value is the counter's creation time. It tells what values
// alone cannot: whether a source that comes back after a gap (a failed
// scrape, the series removed) is the same series going on or was created
// again — from zero, whatever its value. createdTimes keeps, by source
// family (labels without the _total / _created suffix), the latest creation
// time seen; the _total output's shard reads it when a source comes back.
// The _created sample of a scrape arrives with its _total one (same WAL
// append): a source back from a gap is not live, so its timestamp waits the
// birth wait, by which time both are in.
type createdTimes struct {
	mu sync.Mutex
	m  map[uint64]*createdHistory
}

// createdHistory is a source's last creation times, oldest first: a _total
// sample is finalized up to the wait bound after its _created sibling of the
// same scrape arrived, and later ones may have arrived meanwhile.
type createdHistory struct {
	n  int
	at [createdKept]createdAt
}

const createdKept = 8

type createdAt struct {
	t int64   // the sample's timestamp
	v float64 // the creation time it said
}

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

// saw records a _created sample of the source with labels ls.
func (c *createdTimes) saw(ls labels.Labels, t int64, v float64) {
	k, ok := familyKey(ls)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64]*createdHistory{}
	}
	h := c.m[k]
	if h == nil {
		h = &createdHistory{}
		c.m[k] = h
	}
	if h.n > 0 && h.at[h.n-1].t >= t {
		return // samples of one source come in order
	}
	if h.n == createdKept {
		copy(h.at[:], h.at[1:])
		h.n--
	}
	h.at[h.n] = createdAt{t: t, v: v}
	h.n++
}

// at returns the latest creation time seen for the source with labels ls at
// or before t (ok false: none known).
func (c *createdTimes) at(ls labels.Labels, t int64) (float64, bool) {
	k, ok := familyKey(ls)
	if !ok {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[k]
	if h == nil {
		return 0, false
	}
	for i := h.n - 1; i >= 0; i-- {
		if h.at[i].t <= t {
			return h.at[i].v, true
		}
	}
	return 0, false
}

// forget drops what is known of the source with labels ls (it left the
// state).
func (c *createdTimes) forget(ls labels.Labels) {
	if k, ok := familyKey(ls); ok {
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
	}
}
