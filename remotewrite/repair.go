package remotewrite

import (
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Sample is one float sample of a merge source or output: timestamp, value,
// RW 2.0 start timestamp (0: none). An alias of an unnamed struct: package
// relabel names the same type without either package importing the other.
type Sample = struct {
	T, ST int64
	V     float64
}

// Emit is what a request carries for one merged output (see relabel.Emit):
// Group is the index of the Add call that named it (its first source's slot
// carries it) or -1 (appended to the request); Retry samples may already be
// written upstream and go in a request of their own, whose 4xx is final.
type Emit = struct {
	Group   int
	Labels  labels.Labels
	Samples []Sample
	Retry   bool
}

// MergeTx is one request's use of the merge state: Add each output's sources
// and samples, Collect what to send (the merge's state changes are durable
// when it returns), then Done once every upstream answered: ok for the
// request with the sender's series, retryOK for the retries' request.
type MergeTx = interface {
	Add(out labels.Labels, sources []labels.Labels, samples [][]Sample) bool
	Collect() []Emit
	Done(ok, retryOK bool)
}

// Merger is implemented by a Repairer whose collision policy merges series
// (package relabel's Pipeline under the merge policy).
type Merger interface {
	// Merges reports whether a series with output labels out (changed: the
	// Repairer rewrote it) must go through the merge.
	Merges(out labels.Labels, changed bool) bool
	// BeginMerge starts a request's merge transaction; part is its partition
	// (tenant). Nil: no merge.
	BeginMerge(part string) MergeTx
	// MergePending reports whether merged samples wait for a request to ride
	// on: then a request without any source begins a merge too.
	MergePending() bool
	// TargetsKnown reports whether Merges recognizes every output a rewrite
	// can reach from the output's own labels (true for presets). Otherwise a
	// series the request carries unchanged may equal an output first made in
	// the same request, and every series must be checked against the outputs.
	TargetsKnown() bool
}

// LabelGetter reads one label value of a series. The fast path's getter reads
// the request buffer in place: the returned string is valid only during the
// call. (An alias of an unnamed interface, so that package relabel implements
// Repairer without importing this package.)
type LabelGetter = interface{ Get(name string) string }

// Repairer decides what happens to a series. package relabel implements it.
type Repairer interface {
	// MayChange reports, without allocating, whether the series can be
	// changed, dropped or merged at all. When it says false the series is
	// forwarded as it came, and its labels are never built.
	MayChange(series LabelGetter) bool
	// Repair returns the series' output labels, whether they differ from
	// lbls, and whether the series is kept. It must not modify lbls.
	Repair(lbls labels.Labels) (out labels.Labels, changed, keep bool)
}

// edit is what the Repairer decided for one series of a batch.
type edit struct {
	idx       int
	orig, out labels.Labels
	keep      bool
	merge     bool   // the output goes through the Merger
	hash      uint64 // of out, when kept
}

// repairResult sums up what happened to a batch.
type repairResult struct {
	changed    bool // the batch must be re-encoded
	repaired   int  // series whose labels changed and were kept
	dropped    int  // series dropped by a rule
	collisions int  // rewrites undone by the collision guard
	merged     int  // series handed to the Merger
}

// seriesView lets the repair logic walk either protocol's series without
// caring how labels are stored.
type seriesView interface {
	len() int
	getter(i int) LabelGetter
	labels(i int, b *labels.ScratchBuilder) labels.Labels
	hash(i int) uint64
}

// pairHasher hashes a label set from its name/value pairs, so that a
// series' wire labels and a labels.Labels hash alike without building
// either. It buffers, to feed xxhash in few large writes.
type pairHasher struct {
	d   xxhash.Digest
	buf [512]byte
	n   int
}

func (h *pairHasher) reset() { h.d.Reset(); h.n = 0 }
func (h *pairHasher) add(name, value string) {
	if h.n+len(name)+len(value)+2 > len(h.buf) {
		_, _ = h.d.Write(h.buf[:h.n])
		h.n = 0
		if len(name)+len(value)+2 > len(h.buf) {
			_, _ = h.d.WriteString(name)
			_, _ = h.d.Write([]byte{0xff})
			_, _ = h.d.WriteString(value)
			_, _ = h.d.Write([]byte{0xff})
			return
		}
	}
	h.n += copy(h.buf[h.n:], name)
	h.buf[h.n] = 0xff
	h.n++
	h.n += copy(h.buf[h.n:], value)
	h.buf[h.n] = 0xff
	h.n++
}

func (h *pairHasher) sum() uint64 {
	_, _ = h.d.Write(h.buf[:h.n])
	h.n = 0
	return h.d.Sum64()
}

func hashLabels(ls labels.Labels) uint64 {
	var h pairHasher
	h.reset()
	ls.Range(func(l labels.Label) { h.add(l.Name, l.Value) })
	return h.sum()
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
func guardCollisions(edits []edit, v seriesView, dropped *dropSet) int {
	undone := 0
	for {
		// Only rewrites outside the merge can collide; most batches have none.
		if !slices.ContainsFunc(edits, func(e edit) bool { return !e.merge && e.keep && !labels.Equal(e.out, e.orig) }) {
			return undone
		}
		outs := make(map[uint64][]int, len(edits)) // hash -> positions of live rewrites
		skip := make(map[int]bool, len(edits))     // series that are rewritten or dropped
		for _, i := range dropped.idx {
			skip[i] = true
		}
		for k := range edits {
			e := &edits[k]
			switch {
			case e.merge:
				// A merged output is one series; its slot carries it. Other
				// rewrites must not land on it either.
				if !dropped.has(e.idx) {
					h := hashLabels(e.out)
					outs[h] = append(outs[h], k)
				}
				skip[e.idx] = true
			case !e.keep:
				skip[e.idx] = true
			case !labels.Equal(e.out, e.orig):
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
					// One series that the request carries several times (a
					// sender catching up writes one TimeSeries per sample) is
					// one series: its rewrites do not collide.
					if labels.Equal(edits[ks[a]].out, edits[ks[b]].out) && !labels.Equal(edits[ks[a]].orig, edits[ks[b]].orig) {
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
		progress := false
		for k := range clash {
			if edits[k].merge {
				continue // a merged output stays; the rewrite landing on it is undone
			}
			edits[k].out = edits[k].orig
			undone++
			progress = true
		}
		if !progress {
			return undone
		}
	}
}

// repair applies r to the batch in place: rewritten labels, dropped series,
// merged sources, rewrites that would collide undone. The merge run's done
// must be called once every upstream has answered.
func (b *batch) repair(r Repairer, part string) (res repairResult, mr *mergeRun) {
	return applyRepair(b.ops(), r, part)
}

// mergeRun is what a request owes the merge state: its transaction, to be
// told whether the upstreams took its samples, and the retries to send in a
// request of their own.
type mergeRun struct {
	tx      MergeTx
	retries []Emit
}

// done reports the upstreams' answers to the merge state (nil-safe).
func (mr *mergeRun) done(ok, retryOK bool) {
	if mr != nil && mr.tx != nil {
		mr.tx.Done(ok, retryOK)
		mr.tx = nil
	}
}

// applyRepair is repair for either representation of a request: the
// generated structs (batch) or the in-place index (scanned).
func applyRepair(ops batchOps, r Repairer, part string) (res repairResult, mr *mergeRun) {
	v := ops.view()
	mg, _ := r.(Merger)
	edits := decide(r, mg, v, ops)
	var tx MergeTx
	if mg != nil && (len(edits) > 0 || mg.MergePending()) {
		tx = mg.BeginMerge(part)
	}
	if len(edits) == 0 && tx == nil {
		return res, nil
	}
	drop := newDropSet(v.len())
	if tx != nil {
		mr = &mergeRun{tx: tx}
		var unmerged int
		res.merged, unmerged, mr.retries = mergeGroups(tx, mg, edits, v, ops, drop)
		res.collisions += unmerged
	}
	res.collisions += guardCollisions(edits, v, drop)
	for _, e := range edits {
		switch {
		case e.merge:
			// Handled by mergeGroups.
		case !e.keep:
			drop.add(e.idx)
			res.dropped++
		case labels.Equal(e.out, e.orig):
			// Undone by the guard: forwarded as it came.
		default:
			res.repaired++
			ops.setLabels(e.idx, e.out)
		}
	}
	res.changed = res.repaired > 0 || len(drop.idx) > 0 || res.merged > 0 || ops.appended() > 0
	ops.remove(drop)
	return res, mr
}

// mergeGroups hands every output that the merge policy covers to the merge
// transaction and writes what it collects into the batch: an output's
// samples go into the slot of its first source, the other sources' slots are
// dropped; outputs the request carries no source of are appended. A series
// that the batch carries unchanged but whose labels equal a merged output
// joins that output as a source. It returns how many series it merged away
// or rewrote, how many rewrites it had to undo (merge state full), and the
// retries (samples for a request of their own).
func mergeGroups(tx MergeTx, mg Merger, edits []edit, v seriesView, ops batchOps, drop *dropSet) (n, unmerged int, retries []Emit) {
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
		h := e.out.Hash()
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
		srcs = append(srcs, source{group: g, idx: e.idx, k: int32(k), ls: e.orig})
	}
	// Unchanged series that land on a merged output are sources too. With
	// known targets, decide has already made them merge edits.
	if len(groups) > 0 && !mg.TargetsKnown() {
		edited := make(map[int]bool, len(edits))
		for _, e := range edits {
			edited[e.idx] = true
		}
		var sb labels.ScratchBuilder
		for i := range v.len() {
			if edited[i] {
				continue
			}
			ls := v.labels(i, &sb)
			if g := find(ls, ls.Hash()); g >= 0 && !ops.hasHistograms(i) {
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
		ls       []labels.Labels
		samples  [][]Sample
		idx      = make([]int, len(srcs)) // sources' series indices, kept by setSamples
		slots    = make([][]int, 0, len(groups))
		groupOut = make([]labels.Labels, 0, len(groups))
		first    [][]Sample // by group: the first source's own samples
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
			samples = append(samples, ops.samples(src.idx))
		}
		gidx := idx[start:end:end]
		start = end
		if !tx.Add(g.out, ls, samples) {
			// No room in the merge state: forward the sources unrepaired;
			// the collision guard then keeps them apart.
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
			groupOut = append(groupOut, g.out)
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
		groupOut = append(groupOut, g.out)
		var own []Sample
		if len(gidx) == 1 && labels.Equal(ls[0], g.out) {
			own = samples[0]
		}
		first = append(first, own)
	}
	emitted := make([]bool, len(slots))
	for _, e := range tx.Collect() {
		if e.Group >= 0 && e.Group < len(emitted) {
			emitted[e.Group] = true
		}
		switch {
		case e.Retry:
			retries = append(retries, e)
		case e.Group < 0 || e.Group >= len(slots) || slots[e.Group] == nil:
			ops.appendSeries(e.Labels, e.Samples)
		default:
			gidx := slots[e.Group]
			drop.undo(gidx[0])
			if first[e.Group] != nil && sameSamples(e.Samples, first[e.Group]) {
				// A genuine series alone, forwarded as it came: the batch
				// stays unchanged (and can go out as the sender's bytes).
				n--
				continue
			}
			ops.setLabels(gidx[0], e.Labels)
			ops.setSamples(gidx[0], e.Samples, gidx)
		}
	}
	// An output that sends nothing now (its samples are held, or go as
	// retries) keeps its slot for its sources' exemplars, if they have any.
	for gi, gidx := range slots {
		if gidx != nil && !emitted[gi] && ops.hasExemplars(gidx) {
			drop.undo(gidx[0])
			ops.setLabels(gidx[0], groupOut[gi])
			ops.setSamples(gidx[0], nil, gidx)
		}
	}
	return n, unmerged, retries
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

// decide runs the Repairer over every series that it may change. Under the
// merge policy, a series whose output the Merger covers becomes a merge edit
// even when its labels did not change (a genuine status_code="500").
// Native histograms are not merged: such a series is left to the collision
// guard.
func decide(r Repairer, mg Merger, v seriesView, ops batchOps) []edit {
	var (
		edits []edit
		sb    labels.ScratchBuilder
	)
	for i := range v.len() {
		if !r.MayChange(v.getter(i)) {
			continue
		}
		orig := v.labels(i, &sb)
		out, changed, keep := r.Repair(orig)
		if keep && mg != nil && !ops.hasHistograms(i) && mg.Merges(out, changed) {
			edits = append(edits, edit{idx: i, orig: orig, out: out, keep: true, merge: true})
			continue
		}
		if !changed && keep {
			continue
		}
		edits = append(edits, edit{idx: i, orig: orig, out: out, keep: keep})
	}
	return edits
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

// dropSet is the set of series a repair removes.
type dropSet struct {
	in  []bool
	idx []int
}

func newDropSet(n int) *dropSet { return &dropSet{in: make([]bool, n)} }

func (d *dropSet) add(i int) {
	if !d.in[i] {
		d.in[i] = true
		d.idx = append(d.idx, i)
	}
}

// undo takes i out of the set again.
func (d *dropSet) undo(i int) {
	if d.in[i] {
		d.in[i] = false
		d.idx = slices.DeleteFunc(d.idx, func(j int) bool { return j == i })
	}
}

func (d *dropSet) has(i int) bool { return d != nil && i < len(d.in) && d.in[i] }

func removeIndices[T any](s []T, drop *dropSet) []T {
	if len(drop.idx) == 0 {
		return s
	}
	out := s[:0]
	for i := range s {
		if !drop.has(i) {
			out = append(out, s[i])
		}
	}
	clear(s[len(out):])
	return out
}

// batchOps is what repair needs to read and change a batch, for either
// protocol.
type batchOps interface {
	view() seriesView
	hasHistograms(i int) bool
	samples(i int) []Sample
	setLabels(i int, ls labels.Labels)
	// setSamples puts a merged output's samples into slot i; its exemplars
	// become those of every source in srcs.
	setSamples(i int, s []Sample, srcs []int)
	// appendSeries adds a merged output that the request carries no source
	// of, after every other series.
	appendSeries(ls labels.Labels, s []Sample)
	appended() int
	// hasExemplars reports whether any of the series carries exemplars.
	hasExemplars(idx []int) bool
	remove(drop *dropSet)
}

func (b *batch) ops() batchOps {
	if b.v1 != nil {
		return &v1Ops{req: b.v1}
	}
	return &v2Ops{req: b.v2}
}

type v1Ops struct {
	req   *prompb.WriteRequest
	extra []prompb.TimeSeries
}

func (o v1Ops) view() seriesView { return v1View{o.req} }
func (o v1Ops) hasHistograms(i int) bool {
	return len(o.req.Timeseries[i].Histograms) > 0
}

func (o v1Ops) samples(i int) []Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]Sample, len(in))
	for j, s := range in {
		out[j] = Sample{T: s.Timestamp, V: s.Value}
	}
	return out
}

func (o v1Ops) setLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].Labels = prompb.FromLabels(ls, nil)
}

func (o v1Ops) setSamples(i int, s []Sample, srcs []int) {
	ts := &o.req.Timeseries[i]
	ts.Samples = v1Samples(s)
	var ex []prompb.Exemplar
	for _, k := range srcs {
		ex = append(ex, o.req.Timeseries[k].Exemplars...)
	}
	ts.Exemplars = ex
}

func v1Samples(s []Sample) []prompb.Sample {
	out := make([]prompb.Sample, len(s))
	for j, p := range s {
		out[j] = prompb.Sample{Timestamp: p.T, Value: p.V}
	}
	return out
}

func (o *v1Ops) appendSeries(ls labels.Labels, s []Sample) {
	o.extra = append(o.extra, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: v1Samples(s)})
}

func (o *v1Ops) appended() int { return len(o.extra) }

func (o *v1Ops) hasExemplars(idx []int) bool {
	for _, i := range idx {
		if len(o.req.Timeseries[i].Exemplars) > 0 {
			return true
		}
	}
	return false
}

// remove drops the series, then appends the merged outputs the request
// carried no source of.
func (o *v1Ops) remove(drop *dropSet) {
	o.req.Timeseries = append(removeIndices(o.req.Timeseries, drop), o.extra...)
}

type v2Ops struct {
	req    *writev2.Request
	lookup map[string]uint32 // symbol -> ref, built on first need
	extra  []writev2.TimeSeries
}

func (o *v2Ops) view() seriesView { return v2View{o.req} }
func (o *v2Ops) hasHistograms(i int) bool {
	return len(o.req.Timeseries[i].Histograms) > 0
}

func (o *v2Ops) samples(i int) []Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]Sample, len(in))
	for j, s := range in {
		out[j] = Sample{T: s.Timestamp, V: s.Value, ST: s.StartTimestamp}
	}
	return out
}

func (o *v2Ops) setLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].LabelsRefs = o.symbolize(ls)
}

// setSamples keeps the slot's metadata; start timestamps are the merge's.
func (o *v2Ops) setSamples(i int, s []Sample, srcs []int) {
	var ex []writev2.Exemplar
	for _, k := range srcs {
		ex = append(ex, o.req.Timeseries[k].Exemplars...)
	}
	ts := &o.req.Timeseries[i]
	ts.Samples = v2Samples(s)
	ts.Exemplars = ex
}

func v2Samples(s []Sample) []writev2.Sample {
	out := make([]writev2.Sample, len(s))
	for j, p := range s {
		out[j] = writev2.Sample{Timestamp: p.T, Value: p.V, StartTimestamp: p.ST}
	}
	return out
}

func (o *v2Ops) symbolize(ls labels.Labels) []uint32 {
	if o.lookup == nil {
		o.lookup = make(map[string]uint32, len(o.req.Symbols))
		for j, s := range o.req.Symbols {
			if _, ok := o.lookup[s]; !ok {
				o.lookup[s] = uint32(j)
			}
		}
	}
	return symbolize(o.req, o.lookup, ls)
}

func (o *v2Ops) appendSeries(ls labels.Labels, s []Sample) {
	o.extra = append(o.extra, writev2.TimeSeries{LabelsRefs: o.symbolize(ls), Samples: v2Samples(s)})
}

func (o *v2Ops) appended() int { return len(o.extra) }

func (o *v2Ops) hasExemplars(idx []int) bool {
	for _, i := range idx {
		if len(o.req.Timeseries[i].Exemplars) > 0 {
			return true
		}
	}
	return false
}

func (o *v2Ops) remove(drop *dropSet) {
	o.req.Timeseries = append(removeIndices(o.req.Timeseries, drop), o.extra...)
}

type v1View struct{ req *prompb.WriteRequest }

func (v v1View) len() int { return len(v.req.Timeseries) }
func (v v1View) getter(i int) LabelGetter {
	var sb labels.ScratchBuilder
	return v.labels(i, &sb)
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
func (v v2View) getter(i int) LabelGetter {
	var sb labels.ScratchBuilder
	return v.labels(i, &sb)
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
