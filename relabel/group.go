package relabel

import (
	"math"
	"slices"
	"sync"

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
	// backlog: how many of retries, the last ones, are the sender's raw
	// samples (see Pipeline.backlogRetries), not the merge state's.
	backlog int
	wait    bool // see series.Waiting
}

// Waiting reports whether the request must not be forwarded now (see
// series.Waiting).
func (mr *mergeRun) Waiting() bool { return mr.wait }

// Backlog reports how many of Retries(), the last ones, are the sender's
// own samples (see series.Backlog).
func (mr *mergeRun) Backlog() int { return mr.backlog }

func (mr *mergeRun) Retries() []Emit { return mr.retries }

func (mr *mergeRun) Sequential() bool { return mr.sequential }

// Done reports the upstreams' answers to the merge state; only the first
// call counts.
func (mr *mergeRun) Done(ok bool, taken []int) {
	if mr.tx != nil {
		if own := len(mr.retries) - mr.backlog; len(taken) > own {
			taken = taken[:own]
		}
		mr.tx.Done(ok, taken)
		mr.tx = nil
	}
}

// mergeGroups hands every output that the merge policy covers to the merge
// transaction and writes what it collects into the batch: an output's
// samples go into the slot of one of its sources (see writeEmits), the other
// sources' slots are dropped; outputs the request carries no source of are appended. A series
// that the batch carries unchanged but whose labels equal a merged output
// joins that output as a source. It returns how many series it merged away
// or rewrote, how many rewrites it had to undo (merge state full), and the
// retries (samples for a request of their own); collided is how many of
// its series are summed with another series (see collides).
func (p *Pipeline) mergeGroups(tx MergeTx, part string, edits []edit, b series.Batch, drop *dropSet) (n, collided, unmerged, appended int, retries []Emit) {
	gr := groupEdits(edits)
	// Unchanged series that land on a merged output are sources too. With
	// known targets, decide has already made them merge edits.
	if len(gr.groups) > 0 && !p.TargetsKnown() {
		gr.joinUnchanged(b, edits)
	}
	gr.sort()
	held, n, collided, unmerged := p.addGroups(tx, part, edits, b, gr, drop)
	gr.release() // what the rest needs of it, held has
	emits := tx.Collect()
	same, appended, retries := writeEmits(emits, b, drop, held)
	if st, ok := tx.(*shardedTx); ok {
		st.releaseEmits() // writeEmits copied what it keeps
	}
	p.dropUnsentExemplars(b, held)
	held.release()
	return n - same, collided, unmerged, appended, retries
}

// grouping is a request's merge sources grouped by output, without a small
// allocation per group: groups in one slice, chained by hash; each source
// records its group.
type grouping struct {
	groups []outGroup
	srcs   []groupSource
	byHash map[uint64]int32
}

// outGroup is one output of a request's merge.
type outGroup struct {
	out      labels.Labels
	hash     uint64
	sameHash int32 // next group with the same hash, or -1
	nsrc     int32
}

// groupSource is one source of an output.
type groupSource struct {
	group int32
	idx   int           // series index
	k     int32         // edit position, or -1 for an unchanged series
	ls    labels.Labels // its labels
}

// groupings keeps the groupings of finished requests for the next ones
// (see release): a grouping is as large as its request's merge edits, and
// made anew for each request its map and lists were a fifth of the bytes a
// merged request allocated.
var groupings = sync.Pool{New: func() any { return new(grouping) }}

// maxPooledGrouping is the most sources a grouping kept for another request
// may have held: one grown by a far larger request than usual is left to the
// GC, not cleared again and again at the size it had.
const maxPooledGrouping = 1 << 14

// groupEdits groups the merge edits by output. The caller releases the
// grouping once done with it.
func groupEdits(edits []edit) *grouping {
	gr := groupings.Get().(*grouping)
	for k := range edits {
		e := &edits[k]
		if !e.merge {
			continue
		}
		if gr.byHash == nil {
			gr.byHash = make(map[uint64]int32, len(edits))
		}
		if gr.groups == nil {
			gr.groups = make([]outGroup, 0, len(edits))
			gr.srcs = make([]groupSource, 0, len(edits))
		}
		g := gr.find(e.out, e.hash)
		if g < 0 {
			g = int32(len(gr.groups))
			prev, ok := gr.byHash[e.hash]
			if !ok {
				prev = -1
			}
			gr.groups = append(gr.groups, outGroup{out: e.out, hash: e.hash, sameHash: prev})
			gr.byHash[e.hash] = g
		}
		gr.groups[g].nsrc++
		gr.srcs = append(gr.srcs, groupSource{group: g, idx: int(e.idx), k: int32(k), ls: e.orig})
	}
	return gr
}

// release empties the grouping, so that it keeps no request's labels alive,
// and gives it back for another request.
func (gr *grouping) release() {
	if cap(gr.srcs) > maxPooledGrouping || cap(gr.groups) > maxPooledGrouping {
		return
	}
	clear(gr.byHash)
	clear(gr.groups)
	clear(gr.srcs)
	gr.groups, gr.srcs = gr.groups[:0], gr.srcs[:0]
	groupings.Put(gr)
}

// find returns the group of output out (hash h), or -1.
func (gr *grouping) find(out labels.Labels, h uint64) int32 {
	g, ok := gr.byHash[h]
	for ok && g >= 0 {
		if labels.Equal(gr.groups[g].out, out) {
			return g
		}
		g = gr.groups[g].sameHash
	}
	return -1
}

// joinUnchanged makes every series that the batch carries unchanged, and
// whose labels are those of a merged output, a source of that output.
func (gr *grouping) joinUnchanged(b series.Batch, edits []edit) {
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
		if g := gr.find(ls, ls.Hash()); g >= 0 && !b.HasHistograms(i) {
			gr.groups[g].nsrc++
			gr.srcs = append(gr.srcs, groupSource{group: g, idx: i, k: -1, ls: ls})
		}
	}
}

// sort puts the sources of one group together, in request order.
func (gr *grouping) sort() {
	if gr.sorted() {
		return // as SortFunc leaves a slice already in order
	}
	slices.SortFunc(gr.srcs, func(a, b groupSource) int {
		if a.group != b.group {
			return int(a.group - b.group)
		}
		return a.idx - b.idx
	})
}

// sorted reports whether the sources are in sort's order already: each
// group's are together when every output has one source in the request (a
// sender's shard carries either the None series or the 500 one), so the
// check, which reads them in place, saves the sort's passes and copies.
func (gr *grouping) sorted() bool {
	for i := 1; i < len(gr.srcs); i++ {
		a, b := &gr.srcs[i-1], &gr.srcs[i]
		if a.group > b.group || (a.group == b.group && a.idx > b.idx) {
			return false
		}
	}
	return true
}

// heldGroups is what the merge transaction took, by group (in the order of
// its Add calls), and whether the request carries samples of each (see
// writeEmits). Its lists are kept for the next request (see release): made
// anew, they were about 57 KB a request of 1,000 outputs.
type heldGroups struct {
	groups  []heldGroup
	emitted []bool
	// ls and samples: one group's sources, handed to the transaction
	ls      []labels.Labels
	samples [][]Sample
}

// heldGroup is one group of heldGroups: the series slots of its sources
// (nil: not held, the sources go out unmerged), and, where a source of the
// request has the output's own labels (the genuine series), which of the
// slots it is (-1: none) and its samples. One record, not a list each:
// writeEmits reads the three together.
type heldGroup struct {
	slots   []int
	genuine int
	own     []Sample
}

// helds keeps the heldGroups of finished requests for the next ones.
var helds = sync.Pool{New: func() any { return new(heldGroups) }}

// release empties h, so that it keeps no request's slots, labels or
// samples alive, and gives it back for another request (one grown by a far
// larger request than usual is left to the GC, as a grouping is).
func (h *heldGroups) release() {
	if cap(h.groups) > maxPooledGrouping {
		return
	}
	clear(h.groups)
	clear(h.ls)
	clear(h.samples)
	h.groups, h.emitted, h.ls, h.samples = h.groups[:0], h.emitted[:0], h.ls[:0], h.samples[:0]
	helds.Put(h)
}

// addGroups hands each group to the merge transaction. The slots of a held
// group's sources leave the batch (an emit may fill the first one again);
// a group the state has no room for goes out unmerged. It returns how many
// series it merged, how many collide (summed with another), and how many
// rewrites it undid.
func (p *Pipeline) addGroups(tx MergeTx, part string, edits []edit, b series.Batch, gr *grouping, drop *dropSet) (h *heldGroups, n, collided, unmerged int) {
	idx := make([]int, len(gr.srcs)) // sources' series indices, kept by SetSamples
	for j := range gr.srcs {
		idx[j] = gr.srcs[j].idx
	}
	h = helds.Get().(*heldGroups)
	// One entry per group: room for all of them at once, where growing the
	// list by doubling allocated it about twice over.
	h.groups = slices.Grow(h.groups, len(gr.groups))
	if st, ok := tx.(*shardedTx); ok {
		st.expect(len(gr.groups))
	}
	counter, _ := tx.(sourceCounter) // asked once, not at every group
	for start := 0; start < len(gr.srcs); {
		g := &gr.groups[gr.srcs[start].group]
		end := start + int(g.nsrc)
		srcs, gidx := gr.srcs[start:end], idx[start:end:end]
		start = end
		ls, samples := h.ls[:0], h.samples[:0]
		for _, src := range srcs {
			ls = append(ls, src.ls)
			samples = append(samples, b.Samples(src.idx))
		}
		h.ls, h.samples = ls, samples
		held := tx.AddHashed(g.out, g.hash, ls, samples)
		if collides(counter, len(h.groups), ls) {
			collided += len(gidx)
		}
		p.recountSources(edits, srcs, held, part)
		if !held {
			unmerged += p.unmerge(edits, g.out, srcs, samples)
			h.groups = append(h.groups, heldGroup{genuine: -1})
			continue
		}
		for _, i := range gidx {
			drop.add(i)
		}
		n += len(gidx)
		genuine, own := -1, []Sample(nil)
		for k := range ls {
			if labels.Equal(ls[k], g.out) {
				genuine, own = k, samples[k]
				break
			}
		}
		h.groups = append(h.groups, heldGroup{slots: gidx, genuine: genuine, own: own})
	}
	return h, n, collided, unmerged
}

// recountSources tells the decision cache whether the merge state holds the
// sources' labels now: the cache counts them once.
func (p *Pipeline) recountSources(edits []edit, srcs []groupSource, held bool, part string) {
	if p.cache == nil {
		return
	}
	for _, src := range srcs {
		if k := src.k; k >= 0 && edits[k].d != nil && !p.cache.counted(edits[k].d, held) {
			p.cache.recount(edits[k].d, held, part)
		}
	}
}

// unmerge forwards the sources of an output the merge state has no room for
// unrepaired; the collision guard then keeps them apart. The output's own
// label set goes out raw meanwhile: if it is merged later (room again), it
// starts after what went out so (the fence), or its first merged samples
// would meet raw ones at their timestamps. It returns how many rewrites it
// undid.
func (p *Pipeline) unmerge(edits []edit, out labels.Labels, srcs []groupSource, samples [][]Sample) (undone int) {
	if p.merger != nil {
		last := int64(math.MinInt64)
		for _, smp := range samples {
			for _, x := range smp {
				last = max(last, x.T)
			}
		}
		p.merger.fence(hashLabels(out), last, p.merger.shards[0].now(), false)
	}
	for _, src := range srcs {
		if src.k < 0 {
			continue
		}
		e := &edits[src.k]
		if !labels.Equal(e.out, e.orig) {
			undone++
		}
		e.merge, e.out = false, e.orig
	}
	return undone
}

// writeEmits writes what the merge transaction collected into the batch: an
// output of a held group into a slot of its sources, an output of no group
// appended, retries returned. The slot is the genuine series' (the source
// with the output's labels) when the output's samples have its timestamps
// (a fast finalization: the sources' samples at t all in, the sum sent at
// once), so that only the sample values differ from what the sender sent,
// and the encoder can write them in place (remotewrite: patchable); else
// the first source's (for an output with one source, the genuine series'
// again: a sample the birth wait held sent in the next scrape's slot, whose
// value and timestamp the encoder writes in place too). same counts the
// slots left as they came (a genuine
// series alone, its samples unchanged); h.emitted tells, by group, whether
// the request carries samples of it.
func writeEmits(emits []Emit, b series.Batch, drop *dropSet, h *heldGroups) (same, appended int, retries []Emit) {
	h.emitted = slices.Grow(h.emitted[:0], len(h.groups))[:len(h.groups)]
	clear(h.emitted)
	emitted := h.emitted
	for _, e := range emits {
		if e.Group >= 0 && e.Group < len(emitted) && !e.Retry {
			emitted[e.Group] = true
		}
		switch {
		case e.Retry:
			retries = append(retries, e)
		case e.Group < 0 || e.Group >= len(h.groups) || h.groups[e.Group].slots == nil:
			b.AppendSeries(e.Labels, e.Samples)
			appended++
		default:
			hg := &h.groups[e.Group]
			gidx, slot, own := hg.slots, 0, false
			if g := hg.genuine; g >= 0 && sameTimes(e.Samples, hg.own) {
				slot, own = g, true
				if len(gidx) == 1 && sameSamples(e.Samples, hg.own) {
					// A genuine series alone, forwarded as it came: the
					// batch stays unchanged (and can go out as the sender's
					// bytes).
					drop.undo(gidx[slot])
					same++
					continue
				}
			}
			drop.undo(gidx[slot])
			if !own {
				// The genuine series' slot has the output's labels
				// already (its own, equal to the output's: addGroups):
				// the encoder keeps them as they came, without comparing
				// them again (remotewrite: patchable).
				b.SetLabels(gidx[slot], e.Labels)
			}
			b.SetSamples(gidx[slot], e.Samples, gidx)
		}
	}
	return same, appended, retries
}

// dropUnsentExemplars counts the exemplars of the outputs that send nothing
// in this request (their samples are held, or go as retries): their sources'
// exemplars are dropped. A series with exemplars and no sample is refused by
// Prometheus 3 (400, "must contain at least one sample or histogram"), and
// the sender drops the whole batch; keeping the exemplars for the output's
// next sample would take state (memory, the log) for what Prometheus itself
// keeps best effort (a ring buffer; out-of-order exemplars are dropped
// silently). An output that does send here carries its sources' exemplars
// (SetSamples).
func (p *Pipeline) dropUnsentExemplars(b series.Batch, h *heldGroups) {
	for gi := range h.groups {
		if gidx := h.groups[gi].slots; gidx != nil && !h.emitted[gi] {
			if k := b.Exemplars(gidx); k > 0 {
				p.merger.droppedExemplars.Add(float64(k))
			}
		}
	}
}

// sourceCounter is a MergeTx that tells how many sources the output of an
// Add call has in the merge state (shardedTx.Sources).
type sourceCounter interface{ Sources(k int) int }

// collides reports whether the sources of Add call k are summed with
// another series: their output has several sources in the merge state
// (counter: the transaction, if it can tell), or in this request.
func collides(counter sourceCounter, k int, sources []labels.Labels) bool {
	if counter != nil {
		return counter.Sources(k) > 1
	}
	for _, ls := range sources[1:] {
		if !labels.Equal(ls, sources[0]) {
			return true
		}
	}
	return false
}

// sameTimes reports whether a and b have the same timestamps and start
// timestamps, in order: they differ at most in their values.
func sameTimes(a, b []Sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || a[i].ST != b[i].ST {
			return false
		}
	}
	return true
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
