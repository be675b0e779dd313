package remotewrite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// The two protocols, named as on the wire (the Content-Type proto parameter).
const (
	ProtoV1 = remoteapi.WriteV1MessageType
	ProtoV2 = remoteapi.WriteV2MessageType
)

// ErrCorrupt wraps every decoding failure; the handler answers it with 400.
var ErrCorrupt = errors.New("corrupt remote-write body")

// batch is one decoded request, in the protocol it arrived in. Exactly one of
// v1 and v2 is set.
type batch struct {
	v1     *prompb.WriteRequest
	v2     *writev2.Request
	skip   []bool // by series: invalid for Prometheus' receiver (checkLabels)
	sorted int    // series whose labels normalize sorted
}

// counts are what the request carried, for metrics and the RW 2.0
// X-Prometheus-Remote-Write-*-Written headers.
type counts struct {
	series, samples, histograms, exemplars int
}

// compress encodes raw as one snappy block with klauspost's
// snappy-compatible encoder (measured faster than golang/snappy, and
// smaller: BenchmarkCodecs), appended to dst[:0]. It encodes raw in chunks
// of compressChunk bytes and joins their elements: in a snappy block a copy
// refers back only within the output so far, and a chunk's copies only
// within the chunk, so the elements of chunks encoded one by one, behind one
// header giving the whole length, are one valid block for any snappy
// decoder. dst then grows to the compressed size, and the scratch space is
// one chunk's worst case, not the whole request's (1.2 times the request):
// about 1 MiB less per request in flight.
func compress(dst, raw []byte) []byte {
	return appendSnappyElements(binary.AppendUvarint(dst[:0], uint64(len(raw))), raw)
}

// appendSnappyElements appends the snappy elements of raw to dst, without a
// length header: compress' chunks, whose copies reach only within their own
// chunk, so they decode the same wherever they land in a block
// (compressSpliced puts them between elements it reuses).
func appendSnappyElements(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return dst
	}
	scratch := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(scratch)
	for off := 0; off < len(raw); off += compressChunk {
		enc := s2.EncodeSnappy((*scratch)[:cap(*scratch)], raw[off:min(off+compressChunk, len(raw))])
		_, n := binary.Uvarint(enc) // the chunk's own length header
		dst = append(dst, enc[n:]...)
	}
	return dst
}

// compressChunk is compress' unit: large enough that matches across chunk
// boundaries hardly matter (BenchmarkCodecs compares the sizes).
const compressChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, s2.MaxEncodedLen(compressChunk)); return &b }}

// bufPool holds request-sized buffers: decompressed requests and re-encoded
// ones; compressedPool the compressed bodies, in and out (about a fifth of
// the size), and the tails of requests blanked in place (encodeForward). Each is returned when the request is answered; bodies sent
// upstream are read through a guardedReader, so no late read can see a
// reused buffer.
var (
	bufPool        = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
	compressedPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
)

func decode(proto remoteapi.WriteMessageType, raw []byte) (*batch, error) {
	switch proto {
	case ProtoV1:
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			return nil, fmt.Errorf("%w: decoding %s: %w", ErrCorrupt, proto, err)
		}
		b := &batch{v1: &req}
		b.normalize()
		return b, nil
	case ProtoV2:
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return nil, fmt.Errorf("%w: decoding %s: %w", ErrCorrupt, proto, err)
		}
		if err := checkSymbolRefs(&req); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		b := &batch{v2: &req}
		b.normalize()
		return b, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

type v1Pairs []prompb.Label

func (p v1Pairs) len() int                    { return len(p) }
func (p v1Pairs) pair(j int) (string, string) { return p[j].Name, p[j].Value }

type v2Pairs struct {
	refs []uint32
	syms []string
}

func (p v2Pairs) len() int { return len(p.refs) / 2 }
func (p v2Pairs) pair(j int) (string, string) {
	return p.syms[p.refs[2*j]], p.syms[p.refs[2*j+1]]
}

// normalize does what the fast path's validate and sortLabels do: it marks
// the series Prometheus' receiver would skip, and sorts the labels of the
// others (RW 2.0: their label references, by name).
func (b *batch) normalize() {
	var names []string
	if b.v1 != nil {
		b.skip = make([]bool, len(b.v1.Timeseries))
		for i := range b.v1.Timeseries {
			ts := &b.v1.Timeseries[i]
			reason, unsorted := checkLabels(v1Pairs(ts.Labels), true, &names)
			b.skip[i] = reason != ""
			if unsorted && reason == "" {
				b.sorted++
				slices.SortStableFunc(ts.Labels, func(x, y prompb.Label) int { return strings.Compare(x.Name, y.Name) })
			}
		}
		return
	}
	syms := b.v2.Symbols
	b.skip = make([]bool, len(b.v2.Timeseries))
	for i := range b.v2.Timeseries {
		refs := b.v2.Timeseries[i].LabelsRefs
		reason, unsorted := checkLabels(v2Pairs{refs, syms}, true, &names)
		b.skip[i] = reason != ""
		if unsorted && reason == "" {
			b.sorted++
			pairs := make([][2]uint32, 0, len(refs)/2)
			for j := 0; j+1 < len(refs); j += 2 {
				pairs = append(pairs, [2]uint32{refs[j], refs[j+1]})
			}
			slices.SortStableFunc(pairs, func(x, y [2]uint32) int { return strings.Compare(syms[x[0]], syms[y[0]]) })
			for j, p := range pairs {
				refs[2*j], refs[2*j+1] = p[0], p[1]
			}
		}
	}
}

// checkSymbolRefs makes every later symbol lookup safe: label references come
// in name/value pairs and all point inside the symbols table.
func checkSymbolRefs(req *writev2.Request) error {
	n := uint32(len(req.Symbols))
	check := func(what string, i int, refs []uint32) error {
		if len(refs)%2 != 0 {
			return fmt.Errorf("timeseries[%d]: %s has an odd number of label references", i, what)
		}
		for _, r := range refs {
			if r >= n {
				return fmt.Errorf("timeseries[%d]: %s reference %d outside of the symbols table (size %d)", i, what, r, n)
			}
		}
		return nil
	}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		if err := check("labels", i, ts.LabelsRefs); err != nil {
			return err
		}
		for j := range ts.Exemplars {
			if err := check("exemplar labels", i, ts.Exemplars[j].LabelsRefs); err != nil {
				return err
			}
		}
		if ts.Metadata.HelpRef >= n || ts.Metadata.UnitRef >= n {
			return fmt.Errorf("timeseries[%d]: metadata reference outside of the symbols table (size %d)", i, n)
		}
	}
	return nil
}

// toV1 converts an RW 2.0 batch to RW 1.0, for an upstream that only speaks
// 1.0. RW 1.0 cannot carry start timestamps; they are left out. Metadata
// becomes RW 1.0's per-metric-family metadata, once per metric name.
func (b *batch) toV1() (*prompb.WriteRequest, error) {
	if b.v1 != nil {
		return b.v1, nil
	}
	syms := b.v2.Symbols
	out := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(b.v2.Timeseries))}
	var sb labels.ScratchBuilder
	seenMeta := map[string]bool{}
	for i := range b.v2.Timeseries {
		ts := &b.v2.Timeseries[i]
		lbls, err := ts.ToLabels(&sb, syms)
		if err != nil {
			return nil, err
		}
		o := prompb.TimeSeries{Labels: prompb.FromLabels(lbls, nil)}
		if len(ts.Samples) > 0 {
			o.Samples = make([]prompb.Sample, len(ts.Samples))
			for j, s := range ts.Samples {
				o.Samples[j] = prompb.Sample{Value: s.Value, Timestamp: s.Timestamp}
			}
		}
		for _, h := range ts.Histograms {
			if h.IsFloatHistogram() {
				o.Histograms = append(o.Histograms, prompb.FromFloatHistogram(h.Timestamp, h.ToFloatHistogram()))
			} else {
				o.Histograms = append(o.Histograms, prompb.FromIntHistogram(h.Timestamp, h.ToIntHistogram()))
			}
		}
		for _, e := range ts.Exemplars {
			ex, err := e.ToExemplar(&sb, syms)
			if err != nil {
				return nil, err
			}
			o.Exemplars = append(o.Exemplars, prompb.Exemplar{
				Labels: prompb.FromLabels(ex.Labels, nil), Value: ex.Value, Timestamp: ex.Ts,
			})
		}
		out.Timeseries = append(out.Timeseries, o)

		name := lbls.Get(model.MetricNameLabel)
		if name == "" || seenMeta[name] || ts.Metadata.Type == writev2.Metadata_METRIC_TYPE_UNSPECIFIED {
			continue
		}
		seenMeta[name] = true
		md, err := ts.ToMetadata(syms)
		if err != nil {
			return nil, err
		}
		out.Metadata = append(out.Metadata, prompb.MetricMetadata{
			Type: prompb.FromMetadataType(md.Type), MetricFamilyName: name, Help: md.Help, Unit: md.Unit,
		})
	}
	return out, nil
}

// encodeEmits encodes merged outputs as a request of their own.
func encodeEmits(proto remoteapi.WriteMessageType, emits []series.Emit) ([]byte, error) {
	if proto == ProtoV2 {
		// RW 2.0 wants the empty string first in the symbols table.
		req := &writev2.Request{Symbols: []string{""}}
		lookup := map[string]uint32{"": 0}
		for _, e := range emits {
			req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
				LabelsRefs: symbolize(req, lookup, e.Labels), Samples: v2Samples(e.Samples)})
		}
		return req.Marshal()
	}
	req := &prompb.WriteRequest{}
	for _, e := range emits {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(e.Labels, nil), Samples: v1Samples(e.Samples)})
	}
	return req.Marshal()
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

func v1Samples(s []series.Sample) []prompb.Sample {
	out := make([]prompb.Sample, len(s))
	for j, p := range s {
		out[j] = prompb.Sample{Timestamp: p.T, Value: p.V}
	}
	return out
}

func v2Samples(s []series.Sample) []writev2.Sample {
	out := make([]writev2.Sample, len(s))
	for j, p := range s {
		out[j] = writev2.Sample{Timestamp: p.T, Value: p.V, StartTimestamp: p.ST}
	}
	return out
}
