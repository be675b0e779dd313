package remotewrite

import (
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
// written upstream and go in a request of their own (see retries.go).
type Emit = struct {
	Group   int
	Labels  labels.Labels
	Samples []Sample
	Retry   bool
}

// LabelGetter reads one label value of a series. The fast path's getter reads
// the request buffer in place: the returned string is valid only during the
// call.
type LabelGetter = interface{ Get(name string) string }

// Batch is one decoded request as the Repairer sees it (see relabel.Batch,
// the same type): the in-place index (scanned) and the generated structs
// (v1Ops, v2Ops) implement it. Labels are read in place; changes are
// recorded and applied when the request is re-encoded.
type Batch = interface {
	Len() int
	Getter(i int) interface{ Get(name string) string }
	Labels(i int, b *labels.ScratchBuilder) labels.Labels
	Pairs(i int, f func(name, value string))
	HasHistograms(i int) bool
	Exemplars(idx []int) int
	Samples(i int) []Sample
	SetLabels(i int, ls labels.Labels)
	SetSamples(i int, s []Sample, srcs []int)
	AppendSeries(ls labels.Labels, s []Sample)
	Drop(i int)
	Skip(i int) bool
	SeriesKey(i int) (h1, h2 uint64, ok bool)
}

// RepairResult sums up what a Repairer did to a request (see
// relabel.Result): series repaired (labels changed, kept; merged or not),
// dropped, summed with another series (merged), rewrites undone, and one
// changed series' labels before and after.
type RepairResult = struct {
	Changed    bool
	Repaired   int
	Dropped    int
	Collisions int
	Merged     int
	Example    [2]labels.Labels
}

// MergeRun is what a request owes the merge state (see relabel.MergeRun):
// the retries to send in a request of their own, and Done once every
// upstream has answered — ok for the request with the sender's series,
// taken[i] for how many of Retries()[i].Samples, from the first, every
// upstream settled (accepted, or refused alone with a 4xx).
type MergeRun = interface {
	Done(ok bool, taken []int)
	Retries() []Emit
	Sequential() bool
}

// Repairer decides what happens to the series of a request; package
// relabel's Pipeline implements it. This package knows nothing about which
// labels are repaired or how collisions merge: it offers the request through
// Batch and forwards what the Repairer made of it.
type Repairer interface {
	// Apply repairs the request in place. part is its merge partition (the
	// tenant). A non-nil run must be told once every upstream answered.
	Apply(b Batch, part string) (RepairResult, MergeRun)
}

// Retrying is what a Repairer may also implement to learn that a request of
// partition part was answered so that the sender retries it (5xx, 429): its
// shard is blocked meanwhile, and its series arrive late — the merge must
// not take their absence for an absence (see relabel.Merger.Retrying).
type Retrying interface {
	Retrying(part string)
}

// retrying tells r, if it wants to know, that part's sender is retrying.
func retrying(r Repairer, part string) {
	if rr, ok := r.(Retrying); ok {
		rr.Retrying(part)
	}
}

// mergeRun is the handler's side of a MergeRun (nil-safe).
type mergeRun struct{ run MergeRun }

func (mr *mergeRun) done(ok bool, taken []int) {
	if mr != nil && mr.run != nil {
		mr.run.Done(ok, taken)
	}
}

// sequential: the retries must be settled before the request goes.
func (mr *mergeRun) sequential() bool { return mr != nil && mr.run != nil && mr.run.Sequential() }

func (mr *mergeRun) retries() []Emit {
	if mr == nil || mr.run == nil {
		return nil
	}
	return mr.run.Retries()
}

// repair applies r to the batch in place: rewritten labels, dropped series,
// merged sources, rewrites that would collide undone. The merge run's done
// must be called once every upstream has answered.
func (b *batch) repair(r Repairer, part string) (res RepairResult, mr *mergeRun) {
	ops := b.ops()
	res, mr = applyRepair(ops, r, part)
	ops.finish()
	return res, mr
}

// applyRepair runs r over a request, in either representation.
func applyRepair(b Batch, r Repairer, part string) (RepairResult, *mergeRun) {
	res, run := r.Apply(b, part)
	if run == nil {
		return res, nil
	}
	return res, &mergeRun{run: run}
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

// refOps is the reference path's Batch: the generated structs of either
// protocol. Drops are applied, and appended series added, by finish.
type refOps interface {
	Batch
	finish()
}

func (b *batch) ops() refOps {
	if b.v1 != nil {
		return &v1Ops{req: b.v1, skip: b.skip}
	}
	return &v2Ops{req: b.v2, skip: b.skip}
}

// drops is the set of series a repair removes.
type drops map[int]bool

func removeIndices[T any](s []T, drop drops) []T {
	if len(drop) == 0 {
		return s
	}
	out := s[:0]
	for i := range s {
		if !drop[i] {
			out = append(out, s[i])
		}
	}
	clear(s[len(out):])
	return out
}

type v1Ops struct {
	skip  []bool // invalid for Prometheus' receiver: forwarded as it came
	req   *prompb.WriteRequest
	extra []prompb.TimeSeries
	drop  drops
}

func (o *v1Ops) Len() int { return len(o.req.Timeseries) }

func (o *v1Ops) Skip(i int) bool { return o.skip[i] }

// SeriesKey: the reference path leaves the key to the pipeline.
func (o *v1Ops) SeriesKey(int) (h1, h2 uint64, ok bool) { return 0, 0, false }

func (o *v1Ops) Getter(i int) interface{ Get(name string) string } {
	var sb labels.ScratchBuilder
	return o.Labels(i, &sb)
}

func (o *v1Ops) Labels(i int, b *labels.ScratchBuilder) labels.Labels {
	return o.req.Timeseries[i].ToLabels(b, nil)
}

func (o *v1Ops) Pairs(i int, f func(name, value string)) {
	for _, l := range o.req.Timeseries[i].Labels {
		f(l.Name, l.Value)
	}
}

func (o *v1Ops) HasHistograms(i int) bool { return len(o.req.Timeseries[i].Histograms) > 0 }

func (o *v1Ops) Exemplars(idx []int) int {
	n := 0
	for _, i := range idx {
		n += len(o.req.Timeseries[i].Exemplars)
	}
	return n
}

func (o *v1Ops) Samples(i int) []Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]Sample, len(in))
	for j, s := range in {
		out[j] = Sample{T: s.Timestamp, V: s.Value}
	}
	return out
}

func (o *v1Ops) SetLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].Labels = prompb.FromLabels(ls, nil)
}

func (o *v1Ops) SetSamples(i int, s []Sample, srcs []int) {
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

func (o *v1Ops) AppendSeries(ls labels.Labels, s []Sample) {
	o.extra = append(o.extra, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: v1Samples(s)})
}

func (o *v1Ops) Drop(i int) {
	if o.drop == nil {
		o.drop = drops{}
	}
	o.drop[i] = true
}

// finish drops the series, then appends the merged outputs the request
// carried no source of.
func (o *v1Ops) finish() {
	o.req.Timeseries = append(removeIndices(o.req.Timeseries, o.drop), o.extra...)
}

type v2Ops struct {
	skip   []bool
	req    *writev2.Request
	lookup map[string]uint32 // symbol -> ref, built on first need
	extra  []writev2.TimeSeries
	drop   drops
}

func (o *v2Ops) Len() int { return len(o.req.Timeseries) }

func (o *v2Ops) Skip(i int) bool { return o.skip[i] }

// SeriesKey: the reference path leaves the key to the pipeline.
func (o *v2Ops) SeriesKey(int) (h1, h2 uint64, ok bool) { return 0, 0, false }

func (o *v2Ops) Getter(i int) interface{ Get(name string) string } {
	var sb labels.ScratchBuilder
	return o.Labels(i, &sb)
}

func (o *v2Ops) Labels(i int, b *labels.ScratchBuilder) labels.Labels {
	ls, _ := o.req.Timeseries[i].ToLabels(b, o.req.Symbols) // refs checked in decode
	return ls
}

func (o *v2Ops) Pairs(i int, f func(name, value string)) {
	refs := o.req.Timeseries[i].LabelsRefs
	for j := 0; j+1 < len(refs); j += 2 {
		f(o.req.Symbols[refs[j]], o.req.Symbols[refs[j+1]])
	}
}

func (o *v2Ops) HasHistograms(i int) bool { return len(o.req.Timeseries[i].Histograms) > 0 }

func (o *v2Ops) Exemplars(idx []int) int {
	n := 0
	for _, i := range idx {
		n += len(o.req.Timeseries[i].Exemplars)
	}
	return n
}

func (o *v2Ops) Samples(i int) []Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]Sample, len(in))
	for j, s := range in {
		out[j] = Sample{T: s.Timestamp, V: s.Value, ST: s.StartTimestamp}
	}
	return out
}

func (o *v2Ops) SetLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].LabelsRefs = o.symbolize(ls)
}

// SetSamples keeps the slot's metadata; start timestamps are the merge's.
func (o *v2Ops) SetSamples(i int, s []Sample, srcs []int) {
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

func (o *v2Ops) AppendSeries(ls labels.Labels, s []Sample) {
	o.extra = append(o.extra, writev2.TimeSeries{LabelsRefs: o.symbolize(ls), Samples: v2Samples(s)})
}

func (o *v2Ops) Drop(i int) {
	if o.drop == nil {
		o.drop = drops{}
	}
	o.drop[i] = true
}

func (o *v2Ops) finish() {
	o.req.Timeseries = append(removeIndices(o.req.Timeseries, o.drop), o.extra...)
}
