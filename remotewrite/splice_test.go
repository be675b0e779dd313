package remotewrite

// Benchmarks per stage and for the whole handler, on the LiteLLM-like
// workloads of package rwtest. Run:
//
//	go test -run '^$' -bench . -benchmem ./remotewrite
//
// Each reports ns/sample and CPU-s/Msample (single-threaded, so wall time is
// CPU time) besides Go's own ns/op, B/op and allocs/op (per request).

import (
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// TestNoPerSeriesAllocationForUntouchedSeries guards the fast path: a request
// of 2,000 series that no rule can touch costs a fixed handful of allocations
// (request bookkeeping), none per series.
func TestNoPerSeriesAllocationForUntouchedSeries(t *testing.T) {
	tpls := rwtest.Workload{Series: 2000, Untouched: true}.Templates(false)
	raw := tpls[0].Raw
	p := litellmPipeline(t, benchRules)
	lim := DefaultLimits()
	run := func() {
		s, err := scan(ProtoV1, raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.validate(&lim); err != nil {
			t.Fatal(err)
		}
		s.sortLabels()
		_, mr := applyRepair(s, p, "")
		mr.done(true, allSamples(mr.retries()))
		if s.changed() {
			t.Fatal("an untouched request was changed")
		}
		s.release()
	}
	run() // warm the pools
	// A handful per request; under -race sync.Pool drops items on purpose,
	// so the bound leaves room for that, and is still far below one per
	// series.
	if allocs := testing.AllocsPerRun(20, run); allocs > 50 {
		t.Errorf("%v allocations for 2000 untouched series, want a few per request (<= 50), none per series", allocs)
	}
}

// BenchmarkLabelOrder measures what labels out of order cost (vmagent sends
// job and instance after the scraped labels): the same untouched requests,
// sorted and with the first two labels moved last, through validate,
// sortLabels, the repair and the encoding of what changed.
func BenchmarkLabelOrder(b *testing.B) {
	bodies, samples := rwtest.Workload{Series: 2000, Untouched: true}.RW1()
	var sorted, unsorted [][]byte
	for _, body := range bodies {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			b.Fatal(err)
		}
		sorted = append(sorted, raw)
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		for i := range req.Timeseries {
			ls := req.Timeseries[i].Labels
			moved := slices.Concat(ls[2:], ls[:2])
			req.Timeseries[i].Labels = moved
		}
		out, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		unsorted = append(unsorted, out)
	}
	perReq := samples / len(bodies)
	for _, tc := range []struct {
		name string
		raws [][]byte
	}{{"sorted", sorted}, {"unsorted", unsorted}} {
		b.Run(tc.name, func(b *testing.B) {
			p := litellmPipeline(b, benchRules)
			lim := DefaultLimits()
			var dst []byte
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s, err := scan(ProtoV1, tc.raws[i%len(tc.raws)])
				if err != nil {
					b.Fatal(err)
				}
				if err := s.validate(&lim); err != nil {
					b.Fatal(err)
				}
				s.sortLabels()
				_, mr := applyRepair(s, p, "")
				mr.done(true, allSamples(mr.retries()))
				if s.changed() {
					dst = s.encode(dst[:0])
				}
				s.release()
			}
			report(b, perReq)
		})
	}
}
