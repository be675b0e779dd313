package relabel

import (
	"math"
	"slices"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Apply, the request-level entry: which series of a request the rules change
// (decide, with the decision cache), then the merge grouping (group.go), the
// collision guard (guard.go) and the fences (retire.go) over them. It sees a
// request only through series.Batch, which package remotewrite implements
// over its in-place index (and, in its tests, over the generated structs).

// Pipeline is the contract's Repairer, checked by the compiler.
var (
	_ series.Repairer    = (*Pipeline)(nil)
	_ series.Retrying    = (*Pipeline)(nil)
	_ series.IdleFlusher = (*Pipeline)(nil)
)

// edit is what the Repairer decided for one series of a batch.
type edit struct {
	orig, out labels.Labels
	idx       int32 // a series index of the request (int32: the edit stays 56 bytes)
	keep      bool
	merge     bool      // the output goes through the Merger
	hash      uint64    // of out (labels.Labels.Hash), when merged; the collision guard's own otherwise
	d         *decision // the cached decision it came from; nil without the cache
}

// Apply runs the pipeline over one request, in place: rewritten labels,
// dropped series, merged sources (and merged outputs appended), rewrites that
// would collide undone. Package remotewrite calls it through its Repairer
// interface; b is its view of the decoded request (either protocol). The
// returned run, when not nil, must be told once every upstream has answered.
func (p *Pipeline) Apply(b series.Batch, part string) (res series.Result, run series.MergeRun) {
	edits, undone := p.decide(b)
	res.Collisions = undone
	var tx MergeTx
	// What the merge state still has to send goes out whatever the policy
	// (a reload may have switched it off since: see retire.go).
	if (p.merges() && len(edits) > 0) || p.MergePending() {
		tx = p.BeginMerge(part)
	}
	fenced := p.merger != nil && p.merger.Fenced()
	var backlog []Emit
	if p.merger != nil {
		backlog = p.backlogRetries(b, edits)
	}
	if len(edits) == 0 && tx == nil && !fenced && backlog == nil {
		return res, nil
	}
	drop := newDropSet(b.Len(), len(edits))
	appended, handed := 0, 0 // handed: series whose slot the merge changed
	if tx != nil {
		// Whatever happens below, the samples Collect put in flight must be
		// released, or their output would never send again.
		defer func() {
			if r := recover(); r != nil {
				tx.Done(false, nil)
				panic(r)
			}
		}()
		mr := &mergeRun{tx: tx}
		var unmerged int
		handed, res.Merged, unmerged, appended, mr.retries = p.mergeGroups(tx, part, edits, b, drop)
		res.Collisions += unmerged
		run = mr
	}
	res.Collisions += guardCollisions(edits, b, drop)
	if tx != nil && p.merger != nil {
		// The merge may have undone rewrites (a full state: unmerge), and
		// those series now go raw: their samples before the horizon go on
		// their own like any raw series' (soak: TestSimulation/all seed
		// 1932, whose split was decided before the merge undid them).
		backlog = p.backlogRetries(b, edits)
	}
	for _, e := range edits {
		switch {
		case !e.keep:
			drop.add(int(e.idx))
			res.Dropped++
		case labels.Equal(e.out, e.orig):
			// Unchanged (a genuine series the merge tracks), or undone by the
			// guard or a full merge state: forwarded as it came.
			continue
		case e.merge:
			// Handled by mergeGroups.
			res.Repaired++
		default:
			res.Repaired++
			b.SetLabels(int(e.idx), e.out)
		}
		if res.Example[0].IsEmpty() {
			res.Example = [2]labels.Labels{e.orig, e.out}
		}
	}
	fencedOut := 0
	var hit []fence // the fences of label sets the request carries raw
	if fenced {
		var fencedIn bool
		fencedOut, fencedIn = p.applyFences(b, edits, drop, backlog, &hit)
		if mr, ok := run.(*mergeRun); ok && fencedIn {
			mr.sequential = len(mr.retries) > 0
		}
	}
	if backlog != nil {
		var split int
		var fencedIn bool
		split, backlog, fencedIn = p.splitBacklog(b, backlog, drop, fenced, &hit)
		fencedOut += split
		if mr, ok := run.(*mergeRun); ok && fencedIn && len(mr.retries) > 0 {
			mr.sequential = true
		}
		if backlog != nil {
			mr, _ := run.(*mergeRun)
			if mr == nil {
				mr = &mergeRun{}
				run = mr
			}
			mr.retries = append(mr.retries, backlog...)
			mr.backlog = len(backlog)
			// Before the rest of their series, which the request carries.
			mr.sequential = true
		}
	}
	stale := false
	if st, ok := tx.(*shardedTx); ok && st.stale() {
		stale = true // see mergeTx.add
	}
	if stale || (len(hit) > 0 && p.queuedElsewhere(hit, part, run)) {
		mr, _ := run.(*mergeRun)
		if mr == nil {
			mr = &mergeRun{}
			run = mr
		}
		mr.wait = true
	}
	res.Changed = res.Repaired > 0 || drop.n > 0 || handed > 0 || appended > 0 || fencedOut > 0
	for _, i := range drop.members() {
		b.Drop(i)
	}
	return res, run
}

// backlogRetries finds, after a start without state (Merger.backlogBefore),
// the raw samples stamped before the horizon of the label sets the presets
// produce (status_code="500"), which the request forwards as they came (not
// merge sources: under keep_distinct, or undone by a full state). A process
// whose state is lost may have sent a merged sample of that label set at
// that timestamp, with another value — and the fence that kept the raw
// sample out (a retired output's, retire.go) is lost with it: the TSDB would
// refuse the sender's whole batch (duplicate sample, 400). So they go as
// retries, in a request of their own, where a refusal is final and counted
// (guarantee 6, see docs/collisions.md); the handler answers the sender 503
// if they were not settled. It returns them, by series, Group holding the
// series' index; nil when there are none.
func (p *Pipeline) backlogRetries(b series.Batch, edits []edit) []Emit {
	before := p.merger.backlogBefore.Load()
	if before == math.MinInt64 {
		return nil
	}
	if tb, ok := b.(series.TimeBounded); ok && tb.MinTime() >= before {
		return nil // no sample of it is before the horizon: nothing to look for
	}
	// The series the pipeline edited, a bit each, looked at first: a
	// merged request edits most of its series, and the bit saves them
	// producible's label lookups (the conditions below only read, so
	// their order changes nothing but the cost).
	n := b.Len()
	var edited []uint64
	if len(edits) > 0 {
		edited = make([]uint64, (n+63)/64)
		for _, e := range edits {
			if i := int(e.idx); i >= 0 && i < n && (e.merge || !labels.Equal(e.out, e.orig) || !e.keep) {
				edited[i/64] |= 1 << (i % 64)
			}
		}
	}
	var out []Emit
	var sb labels.ScratchBuilder
	for i := range n {
		if edited != nil && edited[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		if b.Skip(i) || b.HasHistograms(i) || !producible(b.Getter(i)) {
			continue
		}
		smp := b.Samples(i)
		if len(smp) == 0 || smp[0].T >= before {
			continue
		}
		n := 0
		for n < len(smp) && smp[n].T < before {
			n++
		}
		out = append(out, Emit{Group: i, Labels: b.Labels(i, &sb), Samples: slices.Clone(smp[:n]), Retry: true})
	}
	return out
}

// producible reports whether a built-in preset produces the series' label
// set: its metric name is one a preset rewrites, and its label has the
// preset's target value. Every built-in preset counts, on or off: the lost
// process whose merged samples a backlog sample may meet ran with its own
// configuration, and a reload that turns the presets off must not stop the
// split of a sender's request whose first attempt was split (soak:
// TestSimulation/all seed 1788, refused as out of order when it went whole).
func producible(s series.Getter) bool {
	name := s.Get(model.MetricNameLabel)
	for _, rw := range presetsByName[name] {
		if s.Get(rw.label) == rw.to {
			return true
		}
	}
	return false
}

// presetsByName is every built-in preset's rewrites, by the metric names
// they rewrite.
var presetsByName = func() map[string][]valueRewrite {
	m := map[string][]valueRewrite{}
	for _, rws := range presets {
		for _, rw := range rws {
			for _, n := range rw.names {
				m[n] = append(m[n], rw)
			}
		}
	}
	return m
}()

// splitBacklog takes the backlog's samples out of their series in b, and
// the samples at or before a retired output's fence out of both (see
// applyFences, which leaves these series to it). It returns how many series
// it changed, the backlog left, and whether one of them is fenced.
func (p *Pipeline) splitBacklog(b series.Batch, backlog []Emit, drop *dropSet, fenced bool, hit *[]fence) (int, []Emit, bool) {
	fencedIn := false
	changed := 0
	kept := backlog[:0]
	h := newPairHasher()
	for _, e := range backlog {
		i := e.Group
		e.Group = -1
		smp := b.Samples(i)
		if fenced {
			if fc, ok := p.merger.fencedAt(hashSeries(b, i, h)); ok && fc.dropRaw {
				fencedIn = true
				*hit = append(*hit, fc)
				n := 0
				for n < len(smp) && smp[n].T <= fc.f {
					n++
				}
				p.merger.metrics.fenced.Add(float64(n))
				smp = smp[n:]
				m := 0
				for m < len(e.Samples) && e.Samples[m].T <= fc.f {
					m++
				}
				e.Samples = e.Samples[m:]
			}
		}
		changed++
		smp = smp[len(e.Samples):]
		if len(e.Samples) > 0 {
			kept = append(kept, e)
		}
		if len(smp) == 0 {
			drop.add(i)
			continue
		}
		b.SetSamples(i, smp, []int{i})
	}
	if len(kept) == 0 {
		kept = nil
	}
	return changed, kept, fencedIn
}

// queuedElsewhere reports whether one of the fences hit has a retired
// queue that the request does not carry as retries (see
// Merger.queuedElsewhere): then the request waits.
func (p *Pipeline) queuedElsewhere(hit []fence, part string, run series.MergeRun) bool {
	var retries []Emit // the merge state's: not the sender's backlog
	if mr, ok := run.(*mergeRun); ok && mr != nil {
		retries = mr.retries[:len(mr.retries)-mr.backlog]
	}
	inRequest := func(ls labels.Labels) bool {
		return slices.ContainsFunc(retries, func(e Emit) bool { return e.Retry && labels.Equal(e.Labels, ls) })
	}
	for _, fc := range hit {
		if p.merger.queuedElsewhere(fc, part, inRequest) {
			return true
		}
	}
	return false
}

// applyFences keeps out of the request the samples of series forwarded with
// their own labels at or before the fence of a retired output with those
// labels (see retire.go). It returns how many series it changed, and whether
// the request carries a fenced label set at all.
func (p *Pipeline) applyFences(b series.Batch, edits []edit, drop *dropSet, backlog []Emit, hit *[]fence) (changed int, fencedIn bool) {
	edited := make(map[int]bool, len(edits)+len(backlog))
	for _, e := range backlog {
		edited[e.Group] = true // splitBacklog fences them
	}
	for _, e := range edits {
		if e.merge || !labels.Equal(e.out, e.orig) || !e.keep {
			edited[int(e.idx)] = true
		}
	}
	h := newPairHasher()
	for i := range b.Len() {
		if edited[i] || drop.has(i) || b.Skip(i) || b.HasHistograms(i) {
			continue
		}
		fc, ok := p.merger.fencedAt(hashSeries(b, i, h))
		if !ok || !fc.dropRaw {
			continue
		}
		f := fc.f
		fencedIn = true
		*hit = append(*hit, fc)
		smp := b.Samples(i)
		kept := make([]Sample, 0, len(smp))
		for _, s := range smp {
			if s.T > f {
				kept = append(kept, s)
			}
		}
		if len(kept) == len(smp) {
			continue
		}
		p.merger.metrics.fenced.Add(float64(len(smp) - len(kept)))
		changed++
		if len(kept) == 0 {
			drop.add(i)
			continue
		}
		b.SetSamples(i, kept, []int{i})
	}
	return changed, fencedIn
}

// merges reports whether the pipeline merges collisions.
func (p *Pipeline) merges() bool { return p.policy == PolicyMerge && p.merger != nil }

// decide runs the Repairer over every series that it may change. Under the
// merge policy, a series whose output the Merger covers becomes a merge edit
// even when its labels did not change (a genuine status_code="500").
//
// Native histograms are not merged. A histogram series whose rewrite the
// merge would cover is forwarded unrepaired, and counted in undone: the
// collision guard could not keep it apart, as it sees one request only, and
// the series it lands on may have come in an earlier one (another shard of
// the sender) — the TSDB would then refuse the whole request (duplicate
// sample, 400) and the sender drop its batch.
func (p *Pipeline) decide(b series.Batch) (edits []edit, undone int) {
	if p.cache == nil {
		var (
			sb   labels.ScratchBuilder
			last nameRewrites
		)
		for i := range b.Len() {
			if b.Skip(i) || !p.mayChange(b.Getter(i), &last) {
				continue
			}
			edits, undone = p.edit(edits, undone, b, i, p.decideSeries(b.Labels(i, &sb)), nil)
		}
		return edits, undone
	}
	// The series to look up first, then the look-ups: the request's edits
	// in one allocation of the right size, not grown from nothing (a
	// request of LiteLLM's has hundreds).
	sc := probeLists.Get().(*[]probe)
	defer func() { probeLists.Put(sc) }()
	*sc = p.keys(b, (*sc)[:0])
	if len(*sc) > 0 {
		edits = make([]edit, 0, len(*sc))
	}
	var sb labels.ScratchBuilder
	for _, pr := range *sc {
		d := p.cache.get(pr.k)
		if d != nil {
			p.countFired(d.fired)
		} else {
			d = p.cache.put(pr.k, p.decideSeries(b.Labels(int(pr.i), &sb)))
		}
		edits, undone = p.edit(edits, undone, b, int(pr.i), d, d)
	}
	return edits, undone
}

// keys appends to probes the series of b that the pipeline may change
// (mayChange), each with its key in the decision cache.
func (p *Pipeline) keys(b series.Batch, probes []probe) []probe {
	var (
		h    *pairHasher // allocated once per request, if needed
		last nameRewrites
	)
	for i := range b.Len() {
		if b.Skip(i) || !p.mayChange(b.Getter(i), &last) {
			continue
		}
		var k cacheKey
		var ok bool
		if k.h1, k.h2, ok = b.SeriesKey(i); !ok {
			if h == nil {
				h = newPairHasher()
			}
			k = seriesKey(b, i, h)
		}
		probes = append(probes, probe{i: int32(i), k: k})
	}
	return probes
}

// edit appends to edits what d, the decision for series i of b, makes of
// it; cached is d when it came from the cache.
func (p *Pipeline) edit(edits []edit, undone int, b series.Batch, i int, d, cached *decision) ([]edit, int) {
	switch {
	case d.merge && b.HasHistograms(i):
		if !labels.Equal(d.out, d.orig) {
			undone++
		}
	case d.merge:
		edits = append(edits, edit{idx: int32(i), orig: d.orig, out: d.out, keep: true, merge: true, hash: d.outHash, d: cached})
	case !d.changed && d.keep:
	default:
		edits = append(edits, edit{idx: int32(i), orig: d.orig, out: d.out, keep: d.keep, d: cached})
	}
	return edits, undone
}

// probeLists pools decide's lists of series to look up.
var probeLists = sync.Pool{New: func() any { return new([]probe) }}

// probe is a series of a request to look up in the decision cache.
type probe struct {
	i int32
	k cacheKey
}

// decideSeries runs the rules over one series' labels.
func (p *Pipeline) decideSeries(orig labels.Labels) *decision {
	out, changed, keep, fired := p.repair(orig)
	d := &decision{orig: orig, out: out, changed: changed, keep: keep, fired: fired}
	if keep && p.merges() && p.Merges(out, changed) {
		d.merge, d.outHash = true, out.Hash()
	}
	return d
}

// dropSet is the set of series a repair removes. idx lists every series
// added, in order, including some taken out again by undo (in says which
// are in): undo is O(1), and members lists them once.
type dropSet struct {
	in  []bool
	idx []int
	n   int
}

// newDropSet is a set over a batch of n series; expect is how many it will
// likely hold (the request's edits: a merged request drops the slots of
// its sources), its list's room from the start.
func newDropSet(n, expect int) *dropSet {
	return &dropSet{in: make([]bool, n), idx: make([]int, 0, min(n, expect))}
}

func (d *dropSet) add(i int) {
	if !d.in[i] {
		d.in[i] = true
		d.idx = append(d.idx, i)
		d.n++
	}
}

// undo takes i out of the set again.
func (d *dropSet) undo(i int) {
	if d.in[i] {
		d.in[i] = false
		d.n--
	}
}

func (d *dropSet) has(i int) bool { return d != nil && i < len(d.in) && d.in[i] }

// members returns the series in the set, each once, in the order added.
func (d *dropSet) members() []int {
	out := d.idx[:0]
	for _, i := range d.idx {
		if d.in[i] {
			d.in[i] = false // listed: a repeat is skipped
			out = append(out, i)
		}
	}
	for _, i := range out {
		d.in[i] = true
	}
	d.idx = out
	return out
}
