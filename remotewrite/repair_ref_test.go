package remotewrite

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// The reference path: a series.Batch over the generated structs of either
// protocol, and the request re-encoded from them. rwfix itself repairs a
// request in place (scanned, splice.go); the tests run both paths over the
// same requests and compare what they send (differential_test.go,
// fuzz_test.go), so that the fast path is held to the simple one.

// repair applies r to the batch in place: rewritten labels, dropped series,
// merged sources, rewrites that would collide undone. The merge run's done
// must be called once every upstream has answered.
func (b *batch) repair(r series.Repairer, part string) (res series.Result, mr *mergeRun) {
	ops := b.ops()
	res, mr = applyRepair(ops, r, part)
	ops.finish()
	return res, mr
}

// marshal encodes the batch in its own protocol, uncompressed.
func (b *batch) marshal() ([]byte, error) {
	if b.v1 != nil {
		return b.v1.Marshal()
	}
	return b.v2.Marshal()
}

// refOps is the reference path's Batch: the generated structs of either
// protocol. Drops are applied, and appended series added, by finish.
type refOps interface {
	series.Batch
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

func (o *v1Ops) Getter(i int) series.Getter {
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

func (o *v1Ops) Samples(i int) []series.Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]series.Sample, len(in))
	for j, s := range in {
		out[j] = series.Sample{T: s.Timestamp, V: s.Value}
	}
	return out
}

func (o *v1Ops) SetLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].Labels = prompb.FromLabels(ls, nil)
}

func (o *v1Ops) SetSamples(i int, s []series.Sample, srcs []int) {
	ts := &o.req.Timeseries[i]
	ts.Samples = v1Samples(s)
	var ex []prompb.Exemplar
	for _, k := range srcs {
		ex = append(ex, o.req.Timeseries[k].Exemplars...)
	}
	ts.Exemplars = ex
}

func (o *v1Ops) AppendSeries(ls labels.Labels, s []series.Sample) {
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

func (o *v2Ops) Getter(i int) series.Getter {
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

func (o *v2Ops) Samples(i int) []series.Sample {
	in := o.req.Timeseries[i].Samples
	out := make([]series.Sample, len(in))
	for j, s := range in {
		out[j] = series.Sample{T: s.Timestamp, V: s.Value, ST: s.StartTimestamp}
	}
	return out
}

func (o *v2Ops) SetLabels(i int, ls labels.Labels) {
	o.req.Timeseries[i].LabelsRefs = o.symbolize(ls)
}

// SetSamples keeps the slot's metadata; start timestamps are the merge's.
func (o *v2Ops) SetSamples(i int, s []series.Sample, srcs []int) {
	var ex []writev2.Exemplar
	for _, k := range srcs {
		ex = append(ex, o.req.Timeseries[k].Exemplars...)
	}
	ts := &o.req.Timeseries[i]
	ts.Samples = v2Samples(s)
	ts.Exemplars = ex
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

func (o *v2Ops) AppendSeries(ls labels.Labels, s []series.Sample) {
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
