package relabel

import (
	"math"
	"slices"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Merge grouping: the merge edits of a request, grouped by output, handed to
// the merge transaction, and what it collects written back into the batch.

// mergeRun is what a request owes the merge state: its transaction, to be
// told whether the upstreams took its samples, and the retries to send in a
// request of their own.
type mergeRun struct {
	tx         MergeTx
	retries    []Emit
	sequential bool // see series.MergeRun.Sequential
}

func (mr *mergeRun) Retries() []Emit { return mr.retries }

func (mr *mergeRun) Sequential() bool { return mr.sequential }

// Done reports the upstreams' answers to the merge state; only the first
// call counts.
func (mr *mergeRun) Done(ok bool, taken []int) {
	if mr.tx != nil {
		mr.tx.Done(ok, taken)
		mr.tx = nil
	}
}

// mergeGroups hands every output that the merge policy covers to the merge
// transaction and writes what it collects into the batch: an output's
// samples go into the slot of its first source, the other sources' slots are
// dropped; outputs the request carries no source of are appended. A series
// that the batch carries unchanged but whose labels equal a merged output
// joins that output as a source. It returns how many series it merged away
// or rewrote, how many rewrites it had to undo (merge state full), and the
// retries (samples for a request of their own).
func (p *Pipeline) mergeGroups(tx MergeTx, part string, edits []edit, b series.Batch, drop *dropSet) (n, unmerged, appended int, retries []Emit) {
	// Group the merge edits by output, without a small allocation per group:
	// groups in one slice, chained by hash; each source records its group.
	type group struct {
		out      labels.Labels
		hash     uint64
		sameHash int32 // next group with the same hash, or -1
		nsrc     int32
	}
	type source struct {
		group int32
		idx   int           // series index
		k     int32         // edit position, or -1 for an unchanged series
		ls    labels.Labels // its labels
	}
	var (
		groups []group
		srcs   []source
		byHash map[uint64]int32
	)
	find := func(out labels.Labels, h uint64) int32 {
		g, ok := byHash[h]
		for ok && g >= 0 {
			if labels.Equal(groups[g].out, out) {
				return g
			}
			g = groups[g].sameHash
		}
		return -1
	}
	for k := range edits {
		e := &edits[k]
		if !e.merge {
			continue
		}
		if byHash == nil {
			byHash = make(map[uint64]int32, len(edits))
			groups = make([]group, 0, len(edits))
			srcs = make([]source, 0, len(edits))
		}
		h := e.hash
		g := find(e.out, h)
		if g < 0 {
			g = int32(len(groups))
			prev, ok := byHash[h]
			if !ok {
				prev = -1
			}
			groups = append(groups, group{out: e.out, hash: h, sameHash: prev})
			byHash[h] = g
		}
		groups[g].nsrc++
		srcs = append(srcs, source{group: g, idx: int(e.idx), k: int32(k), ls: e.orig})
	}
	// Unchanged series that land on a merged output are sources too. With
	// known targets, decide has already made them merge edits.
	if len(groups) > 0 && !p.TargetsKnown() {
		edited := make(map[int]bool, len(edits))
		for _, e := range edits {
			edited[int(e.idx)] = true
		}
		var sb labels.ScratchBuilder
		for i := range b.Len() {
			if edited[i] || b.Skip(i) {
				continue
			}
			ls := b.Labels(i, &sb)
			if g := find(ls, ls.Hash()); g >= 0 && !b.HasHistograms(i) {
				groups[g].nsrc++
				srcs = append(srcs, source{group: g, idx: i, k: -1, ls: ls})
			}
		}
	}
	// Sources of one group together, in request order.
	slices.SortFunc(srcs, func(a, b source) int {
		if a.group != b.group {
			return int(a.group - b.group)
		}
		return a.idx - b.idx
	})
	var (
		ls      []labels.Labels
		samples [][]Sample
		idx     = make([]int, len(srcs)) // sources' series indices, kept by setSamples
		slots   = make([][]int, 0, len(groups))
		first   [][]Sample // by group: the first source's own samples
	)
	for j := range srcs {
		idx[j] = srcs[j].idx
	}
	for start := 0; start < len(srcs); {
		g := &groups[srcs[start].group]
		end := start + int(g.nsrc)
		ls, samples = ls[:0], samples[:0]
		for _, src := range srcs[start:end] {
			ls = append(ls, src.ls)
			samples = append(samples, b.Samples(src.idx))
		}
		gidx := idx[start:end:end]
		start = end
		held := tx.AddHashed(g.out, g.hash, ls, samples)
		if p.cache != nil {
			// The state holds these labels now, or not: the cache counts
			// them once.
			for j := end - len(gidx); j < end; j++ {
				if k := srcs[j].k; k >= 0 && edits[k].d != nil && !p.cache.counted(edits[k].d, held) {
					p.cache.recount(edits[k].d, held, part)
				}
			}
		}
		if !held {
			// No room in the merge state: forward the sources unrepaired;
			// the collision guard then keeps them apart. The output's own
			// label set goes out raw meanwhile: if it is merged later (room
			// again), it starts after what went out so (the fence), or its
			// first merged samples would meet raw ones at their timestamps.
			if p.merger != nil {
				last := int64(math.MinInt64)
				for _, smp := range samples {
					for _, x := range smp {
						last = max(last, x.T)
					}
				}
				p.merger.fence(hashLabels(g.out), last, p.merger.shards[0].now(), false)
			}
			for _, src := range srcs[end-len(gidx) : end] {
				if src.k < 0 {
					continue
				}
				e := &edits[src.k]
				if !labels.Equal(e.out, e.orig) {
					unmerged++
				}
				e.merge, e.out = false, e.orig
			}
			slots = append(slots, nil)
			first = append(first, nil)
			continue
		}
		// Every source's slot leaves the batch, unless an emit fills the
		// first one below.
		for _, i := range gidx {
			drop.add(i)
		}
		n += len(gidx)
		slots = append(slots, gidx)
		var own []Sample
		if len(gidx) == 1 && labels.Equal(ls[0], g.out) {
			own = samples[0]
		}
		first = append(first, own)
	}
	emitted := make([]bool, len(slots))
	for _, e := range tx.Collect() {
		if e.Group >= 0 && e.Group < len(emitted) && !e.Retry {
			emitted[e.Group] = true
		}
		switch {
		case e.Retry:
			retries = append(retries, e)
		case e.Group < 0 || e.Group >= len(slots) || slots[e.Group] == nil:
			b.AppendSeries(e.Labels, e.Samples)
			appended++
		default:
			gidx := slots[e.Group]
			drop.undo(gidx[0])
			if first[e.Group] != nil && sameSamples(e.Samples, first[e.Group]) {
				// A genuine series alone, forwarded as it came: the batch
				// stays unchanged (and can go out as the sender's bytes).
				n--
				continue
			}
			b.SetLabels(gidx[0], e.Labels)
			b.SetSamples(gidx[0], e.Samples, gidx)
		}
	}
	// An output that sends nothing in this request (its samples are held,
	// or go as retries) drops its sources' exemplars. A series with
	// exemplars and no sample is refused by Prometheus 3 (400, "must contain
	// at least one sample or histogram"), and the sender drops the whole
	// batch; keeping the exemplars for the output's next sample would take
	// state (memory, the log) for what Prometheus itself keeps best effort
	// (a ring buffer; out-of-order exemplars are dropped silently). An
	// output that does send here carries its sources' exemplars
	// (SetSamples).
	for gi, gidx := range slots {
		if gidx != nil && !emitted[gi] {
			if k := b.Exemplars(gidx); k > 0 {
				p.merger.droppedExemplars.Add(float64(k))
			}
		}
	}
	return n, unmerged, appended, retries
}

// sameSamples reports whether a and b are the same samples, bit for bit.
func sameSamples(a, b []Sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || a[i].ST != b[i].ST || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) {
			return false
		}
	}
	return true
}
