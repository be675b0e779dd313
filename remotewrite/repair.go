package remotewrite

import (
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Repairer decides what happens to a series. package relabel implements it.
type Repairer interface {
	// MayChange reports, without allocating, whether a series with this
	// metric name can be changed or dropped at all. When it says false the
	// series is forwarded as it came, and its labels are never built.
	MayChange(metricName string) bool
	// Repair returns the series' output labels, whether they differ from
	// lbls, and whether the series is kept. It must not modify lbls.
	Repair(lbls labels.Labels) (out labels.Labels, changed, keep bool)
}

// edit is what the Repairer decided for one series of a batch.
type edit struct {
	idx       int
	orig, out labels.Labels
	keep      bool
	hash      uint64 // of out, when kept
}

// repairResult sums up what happened to a batch.
type repairResult struct {
	changed    bool // the batch must be re-encoded
	repaired   int  // series whose labels changed and were kept
	dropped    int  // series dropped by a rule
	collisions int  // rewrites undone by the collision guard
}

// seriesView lets the repair logic walk either protocol's series without
// caring how labels are stored.
type seriesView interface {
	len() int
	metricName(i int) string
	labels(i int, b *labels.ScratchBuilder) labels.Labels
	hash(i int) uint64
}

// hashPairs hashes a label set from its name/value pairs, so that a series'
// wire labels and a labels.Labels hash alike without building either.
type pairHasher struct{ d xxhash.Digest }

func (h *pairHasher) reset() { h.d.Reset() }
func (h *pairHasher) add(name, value string) {
	_, _ = h.d.WriteString(name)
	_, _ = h.d.Write([]byte{0xff})
	_, _ = h.d.WriteString(value)
	_, _ = h.d.Write([]byte{0xff})
}
func (h *pairHasher) sum() uint64 { return h.d.Sum64() }

func hashLabels(ls labels.Labels) uint64 {
	var h pairHasher
	h.reset()
	ls.Range(func(l labels.Label) { h.add(l.Name, l.Value) })
	return h.sum()
}

// decide runs the Repairer over every series that it may change and applies
// the collision guard. It does not modify the batch.
func decide(r Repairer, v seriesView) []edit {
	var (
		edits []edit
		sb    labels.ScratchBuilder
	)
	for i := range v.len() {
		if !r.MayChange(v.metricName(i)) {
			continue
		}
		orig := v.labels(i, &sb)
		out, changed, keep := r.Repair(orig)
		if !changed && keep {
			continue
		}
		edits = append(edits, edit{idx: i, orig: orig, out: out, keep: keep})
	}
	return edits
}

// guardCollisions undoes every rewrite whose output label set is also the
// label set of another series in the same batch, so that rwfix never sends
// two different values for one series at one timestamp. The undone series is
// forwarded with its original labels: nothing is lost or corrupted, it is
// just not repaired. It returns how many rewrites it undid.
//
// Undoing a rewrite can in theory make the original labels collide with
// another rewrite's output, so it repeats until nothing collides; every round
// undoes at least one rewrite, so it ends.
func guardCollisions(edits []edit, v seriesView) int {
	undone := 0
	for {
		outs := make(map[uint64][]int, len(edits)) // hash -> positions of live rewrites
		skip := make(map[int]bool, len(edits))     // series that are rewritten or dropped
		for k := range edits {
			e := &edits[k]
			if !e.keep {
				skip[e.idx] = true
			} else if !labels.Equal(e.out, e.orig) {
				skip[e.idx] = true
				e.hash = hashLabels(e.out)
				outs[e.hash] = append(outs[e.hash], k)
			}
		}
		if len(outs) == 0 {
			return undone
		}
		clash := map[int]bool{}
		// Rewrites that land on one another.
		for _, ks := range outs {
			for a := 0; a < len(ks); a++ {
				for b := a + 1; b < len(ks); b++ {
					if labels.Equal(edits[ks[a]].out, edits[ks[b]].out) {
						clash[ks[a]], clash[ks[b]] = true, true
					}
				}
			}
		}
		// Rewrites that land on a series forwarded with its own labels
		// (untouched, or whose rewrite was undone in an earlier round).
		var sb labels.ScratchBuilder
		for i := range v.len() {
			if skip[i] {
				continue
			}
			for _, k := range outs[v.hash(i)] {
				if labels.Equal(edits[k].out, v.labels(i, &sb)) {
					clash[k] = true
				}
			}
		}
		if len(clash) == 0 {
			return undone
		}
		for k := range clash {
			edits[k].out = edits[k].orig
			undone++
		}
	}
}

// repair applies r to the batch in place: rewritten labels, dropped series,
// rewrites that would collide undone.
func (b *batch) repair(r Repairer) repairResult {
	var v seriesView
	if b.v1 != nil {
		v = v1View{b.v1}
	} else {
		v = v2View{b.v2}
	}
	edits := decide(r, v)
	if len(edits) == 0 {
		return repairResult{}
	}
	res := repairResult{collisions: guardCollisions(edits, v)}
	var lookup map[string]uint32 // RW 2.0 symbol -> ref, built on first need
	drop := make(map[int]bool)
	for _, e := range edits {
		switch {
		case !e.keep:
			drop[e.idx] = true
			res.dropped++
			res.changed = true
		case labels.Equal(e.out, e.orig):
			// Undone by the guard: forwarded as it came.
		default:
			res.repaired++
			res.changed = true
			if b.v1 != nil {
				b.v1.Timeseries[e.idx].Labels = prompb.FromLabels(e.out, nil)
			} else {
				if lookup == nil {
					lookup = make(map[string]uint32, len(b.v2.Symbols))
					for i, s := range b.v2.Symbols {
						if _, ok := lookup[s]; !ok {
							lookup[s] = uint32(i)
						}
					}
				}
				b.v2.Timeseries[e.idx].LabelsRefs = symbolize(b.v2, lookup, e.out)
			}
		}
	}
	if len(drop) > 0 {
		if b.v1 != nil {
			b.v1.Timeseries = removeIndices(b.v1.Timeseries, drop)
		} else {
			b.v2.Timeseries = removeIndices(b.v2.Timeseries, drop)
		}
	}
	return res
}

// symbolize returns label references for ls, adding missing strings to the
// request's symbols table. Existing references stay valid: the table only grows.
func symbolize(req *writev2.Request, lookup map[string]uint32, ls labels.Labels) []uint32 {
	refs := make([]uint32, 0, 2*ls.Len())
	ref := func(s string) uint32 {
		if r, ok := lookup[s]; ok {
			return r
		}
		r := uint32(len(req.Symbols))
		req.Symbols = append(req.Symbols, s)
		lookup[s] = r
		return r
	}
	ls.Range(func(l labels.Label) {
		refs = append(refs, ref(l.Name), ref(l.Value))
	})
	return refs
}

func removeIndices[T any](s []T, drop map[int]bool) []T {
	out := s[:0]
	for i := range s {
		if !drop[i] {
			out = append(out, s[i])
		}
	}
	clear(s[len(out):])
	return out
}

type v1View struct{ req *prompb.WriteRequest }

func (v v1View) len() int { return len(v.req.Timeseries) }
func (v v1View) metricName(i int) string {
	for _, l := range v.req.Timeseries[i].Labels {
		if l.Name == model.MetricNameLabel {
			return l.Value
		}
	}
	return ""
}
func (v v1View) labels(i int, b *labels.ScratchBuilder) labels.Labels {
	return v.req.Timeseries[i].ToLabels(b, nil)
}
func (v v1View) hash(i int) uint64 {
	var h pairHasher
	h.reset()
	for _, l := range v.req.Timeseries[i].Labels {
		h.add(l.Name, l.Value)
	}
	return h.sum()
}

type v2View struct{ req *writev2.Request }

func (v v2View) len() int { return len(v.req.Timeseries) }
func (v v2View) metricName(i int) string {
	refs := v.req.Timeseries[i].LabelsRefs
	for j := 0; j+1 < len(refs); j += 2 {
		if v.req.Symbols[refs[j]] == model.MetricNameLabel {
			return v.req.Symbols[refs[j+1]]
		}
	}
	return ""
}
func (v v2View) labels(i int, b *labels.ScratchBuilder) labels.Labels {
	ls, _ := v.req.Timeseries[i].ToLabels(b, v.req.Symbols) // refs checked in decode
	return ls
}
func (v v2View) hash(i int) uint64 {
	var h pairHasher
	h.reset()
	refs := v.req.Timeseries[i].LabelsRefs
	for j := 0; j+1 < len(refs); j += 2 {
		h.add(v.req.Symbols[refs[j]], v.req.Symbols[refs[j+1]])
	}
	return h.sum()
}
