package remotewrite

// Benchmarks per stage and for the whole handler, on the LiteLLM-like
// workloads of package rwtest. Run:
//
//	go test -run '^$' -bench . -benchmem ./remotewrite
//
// Each reports ns/sample and CPU-s/Msample (single-threaded, so wall time is
// CPU time) besides Go's own ns/op, B/op and allocs/op (per request).

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
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

// TestEncodeBlanksChangedSeries: with a blank share, the series a repair
// drops or changes keep their bytes at their offsets under an unknown field
// (one byte changed: the tag), the changed ones come again, re-encoded, after
// the others, and the request decodes to the repaired series; past the
// share, they are cut out as before.
func TestEncodeBlanksChangedSeries(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		t.Run(protoLabel(string(protoFor(rw2))), func(t *testing.T) {
			raw := firstRequest(t, rwtest.Workload{Series: 200, Rounds: 1}, rw2)
			edit := func(blank float64) (*scanned, []byte) {
				s, err := scan(protoFor(rw2), raw)
				if err != nil {
					t.Fatal(err)
				}
				var sb labels.ScratchBuilder
				for i := range s.Len() {
					switch i % 20 {
					case 3:
						s.Drop(i)
					case 11:
						s.SetLabels(i, labels.NewBuilder(s.Labels(i, &sb)).Set("repaired", "yes").Labels())
					}
				}
				s.blank = blank
				return s, s.encode(nil)
			}
			cut, wantRaw := edit(0)
			defer cut.release()
			s, out := edit(DefaultBlankShare)
			defer s.release()
			if got, want := rwtest.MustRender(t, string(protoFor(rw2)), out), rwtest.MustRender(t, string(protoFor(rw2)), wantRaw); got != want {
				t.Fatalf("blanked request decodes to\n%s\nwant (cut out)\n%s", got, want)
			}
			if len(out) <= len(raw) {
				t.Fatalf("blanked request is %d bytes, the sender's %d: the changed series do not come again", len(out), len(raw))
			}
			blanked := 0
			for f, fs := range s.fields {
				i := int(s.isSer[f])
				if i < 0 {
					continue
				}
				want := s.raw[fs.off]
				if i%20 == 3 || i%20 == 11 {
					want = blankTag
					blanked++
				}
				if out[fs.off] != want || !bytes.Equal(out[fs.off+1:fs.end], raw[fs.off+1:fs.end]) {
					t.Fatalf("series %d: not at its offset as it came (tag %#x, want %#x)", i, out[fs.off], want)
				}
			}
			if blanked != 20 {
				t.Fatalf("%d series blanked, want 20", blanked)
			}
			// Past the share: cut out.
			s2, out2 := edit(0.01)
			defer s2.release()
			if !bytes.Equal(out2, wantRaw) {
				t.Fatal("past the blank share the changed series are not cut out")
			}
		})
	}
}

// firstRequest is the first request of workload w, decompressed, in RW 2.0
// when rw2.
func firstRequest(t *testing.T, w rwtest.Workload, rw2 bool) []byte {
	t.Helper()
	bodies, _ := w.RW1()
	if rw2 {
		bodies, _ = w.RW2()
	}
	raw, err := snappy.Decode(nil, bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSeriesKeyNamesOneLabelSet: the decision cache trusts SeriesKey's keys
// (see relabel's TestDecisionCacheKeysNameOneLabelSet). Label sets whose
// strings run together alike (a value holding what would separate them, one
// string split in two) have keys of their own; a label set has one key in
// every RW 2.0 request, whatever the references of its symbols, and in RW
// 1.0 as its bytes on the wire.
func TestSeriesKeyNamesOneLabelSet(t *testing.T) {
	n := "litellm_proxy_total_requests_metric_total"
	long := strings.Repeat("k", 600)
	sets := []labels.Labels{
		labels.FromStrings("__name__", n, "status_code", "None", "user", "a\xffzz\xffb"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", "a", "zz", "b"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", "ab"),
		labels.FromStrings("__name__", n, "status_code", "None", "usera", "b"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", "\x02ab"),
		labels.FromStrings("__name__", n, "status_code", "None", "user\x02", "ab"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long+"x"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long[:300], "v", long[:300]),
	}
	for _, rw2 := range []bool{false, true} {
		seen := map[[2]uint64]int{}
		for order := range 3 { // the series in other orders: other symbol tables
			req := &prompb.WriteRequest{}
			idx := make([]int, len(sets))
			for k := range idx {
				idx[k] = (k*(order+1) + order) % len(sets)
			}
			for _, k := range idx {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  prompb.FromLabels(sets[k], nil),
					Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}},
				})
			}
			s, err := scan(protoFor(rw2), marshalAs(t, req, rw2))
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range idx {
				h1, h2, ok := s.SeriesKey(i)
				if !ok {
					t.Fatalf("RW 2.0 %v: no key for %v", rw2, sets[k])
				}
				if j, dup := seen[[2]uint64{h1, h2}]; dup && j != k {
					t.Fatalf("RW 2.0 %v: %v and %v share a key", rw2, sets[j], sets[k])
				}
				seen[[2]uint64{h1, h2}] = k
			}
			s.release()
		}
		if len(seen) != len(sets) {
			t.Fatalf("RW 2.0 %v: %d keys for %d label sets, in three requests", rw2, len(seen), len(sets))
		}
	}
}
