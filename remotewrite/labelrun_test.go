package remotewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// The walks that step over a series' run of RW 1.0 label fields at once
// (Samples, sampleValues, leadingLabels: see seriesIdx.labelRun) find what
// a walk of every field finds, whatever the order of the fields: labels
// first, after the samples, split by a sample or an exemplar, absent.
func TestLabelRunSkippedAsEveryFieldWalked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		type field struct {
			lbl  int // label k, or -1
			smp  series.Sample
			isEx bool
		}
		names := []string{"__name__", "a", "b", "c", "d"}
		var fields []field
		var want []series.Sample
		nl := 1 + rng.IntN(len(names))
		for k := range nl {
			fields = append(fields, field{lbl: k})
		}
		for range rng.IntN(4) {
			p := series.Sample{T: rng.Int64N(1 << 40), V: rng.Float64()}
			fields = append(fields, field{lbl: -1, smp: p})
		}
		if rng.IntN(3) == 0 {
			fields = append(fields, field{lbl: -1, isEx: true})
		}
		if rng.IntN(2) == 0 { // a random order, the labels kept in name order
			perm := rng.Perm(len(fields))
			shuffled := make([]field, len(fields))
			for i, j := range perm {
				shuffled[i] = fields[j]
			}
			lk := 0
			for i := range shuffled {
				if shuffled[i].lbl >= 0 {
					shuffled[i].lbl = lk
					lk++
				}
			}
			fields = shuffled
		}
		var body []byte
		for _, f := range fields {
			switch {
			case f.lbl >= 0:
				var l []byte
				l = protowire.AppendTag(l, v1LabelName, protowire.BytesType)
				l = protowire.AppendString(l, names[f.lbl])
				l = protowire.AppendTag(l, v1LabelValue, protowire.BytesType)
				l = protowire.AppendString(l, "v")
				body = protowire.AppendTag(body, v1SeriesLabels, protowire.BytesType)
				body = protowire.AppendBytes(body, l)
			case f.isEx:
				body = protowire.AppendTag(body, v1SeriesExemplars, protowire.BytesType)
				body = protowire.AppendBytes(body, nil)
			default:
				var sm []byte
				sm = protowire.AppendTag(sm, sampleValue, protowire.Fixed64Type)
				sm = protowire.AppendFixed64(sm, math.Float64bits(f.smp.V))
				sm = protowire.AppendTag(sm, sampleTimestamp, protowire.VarintType)
				sm = protowire.AppendVarint(sm, uint64(f.smp.T))
				body = protowire.AppendTag(body, v1SeriesSamples, protowire.BytesType)
				body = protowire.AppendBytes(body, sm)
				want = append(want, f.smp)
			}
		}
		raw := protowire.AppendTag(nil, v1ReqSeries, protowire.BytesType)
		raw = protowire.AppendBytes(raw, body)
		s, err := scan(ProtoV1, raw)
		if err != nil {
			t.Fatal(err)
		}
		si := &s.series[0]
		if got := s.Samples(0); !slices.Equal(got, want) {
			t.Fatalf("trial %d: Samples = %v, want %v", trial, got, want)
		}
		ok := s.sampleValues(si, want, v1SeriesSamples, false)
		if n := len(s.vals); !ok || n < len(want) {
			t.Fatalf("trial %d: sampleValues found %d of %d samples (ok %v)", trial, n, len(want), ok)
		}
		s.vals = s.vals[:0]
		// leadingLabels by every field: the label fields before any other,
		// none after.
		lead, off, end := 0, int(si.body.off), int(si.body.end)
		for off < end {
			num, _, _, e := next(raw[:end], off)
			if num != v1SeriesLabels {
				break
			}
			off = e
		}
		lead = off - int(si.body.off)
		for o := off; o < end; {
			num, _, _, e := next(raw[:end], o)
			if num == v1SeriesLabels {
				lead = 0
			}
			o = e
		}
		if got := s.leadingLabels(0); got != lead {
			t.Fatalf("trial %d: leadingLabels = %d, want %d (fields %v)", trial, got, lead, fields)
		}
		s.release()
	}
}
