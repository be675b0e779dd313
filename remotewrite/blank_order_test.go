package remotewrite

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// histTwinRequest: a None series with an exemplar, its genuine 500 twin, and,
// after them, a series with the 500's labels that carries a histogram
// (relabel's joinUnchanged does not make it a source of the merge).
func histTwinRequest(t *testing.T) []byte {
	t.Helper()
	raw, err := histTwinReq().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func histTwinReq() *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for k, code := range []string{"None", "500", "500"} {
		ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", "u")
		ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
		switch k {
		case 0:
			ts.Samples = []prompb.Sample{{Value: 3, Timestamp: 15000}}
			ts.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t1"}}, Value: 1, Timestamp: 15000}}
		case 1:
			ts.Samples = []prompb.Sample{{Value: 4, Timestamp: 15000}}
		case 2:
			ts.Histograms = []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}, Timestamp: 30000}}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	// Other series, so that the changes are a small share of the request
	// (blanking).
	for k := range 40 {
		ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "200", "user", fmt.Sprint("other", k))
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: []prompb.Sample{{Value: float64(k + 1), Timestamp: 15000}}})
	}
	return req
}

// TestMergedSumNotMovedPastItsHistogramTwin: a sum of several sources in
// its genuine slot that cannot be written in place (another source has an
// exemplar) is blankable since 679f1bc; moved after the others, it would
// follow an unchanged series of its own label set (one with a histogram,
// not a merge source): the receiver would get that series' samples out of
// order. Encoded, it must decode as the request cut and re-encoded does.
func TestMergedSumNotMovedPastItsHistogramTwin(t *testing.T) {
	raw := histTwinRequest(t)
	t.Run("genuine slot", func(t *testing.T) {
		encodedBothWays(t, raw, false, func(s *scanned) {
			// As relabel's writeEmits writes it: the sum in the genuine
			// series' slot, its sources in request order, the None dropped.
			s.SetSamples(1, []series.Sample{{T: 15000, V: 7}}, []int{0, 1})
			s.Drop(0)
		})
	})
	t.Run("first source's slot", func(t *testing.T) {
		// The output's timestamps not the genuine series': in the first
		// source's slot, given the output's labels (blankable before
		// 679f1bc already).
		encodedBothWays(t, raw, false, func(s *scanned) {
			var sb labels.ScratchBuilder
			s.SetLabels(0, s.Labels(1, &sb))
			s.SetSamples(0, []series.Sample{{T: 0, V: 3}, {T: 15000, V: 7}}, []int{0, 1})
			s.Drop(1)
		})
	})
}

// TestPipelineHistogramTwin: the same through the pipeline, against
// the generated-struct reference.
func TestPipelineHistogramTwin(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		proto := string(protoFor(rw2))
		t.Run(protoLabel(proto), func(t *testing.T) {
			raw := histTwinRequest(t)
			if rw2 {
				var err error
				if raw, err = toV2(histTwinReq()).Marshal(); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := runFast(t, litellmPipeline(t, ""), proto, raw)
			want, _ := runReference(t, litellmPipeline(t, ""), proto, raw)
			if g, w := rwtest.MustRender(t, proto, got), rwtest.MustRender(t, proto, want); g != w {
				t.Fatalf("fast path decodes to\n%s\nreference\n%s", g, w)
			}
		})
	}
}

// TestSortedLabelsNotMovedPastTheirTwin: a series whose labels came
// unsorted is given them sorted (sortLabels); blanked and moved after the
// others, it would follow a later series of the same label set (sorted on
// the wire, left as it came, or changed but kept in its place), and its
// earlier sample would reach the receiver after that series' later one:
// out of order, the request refused. (Before 679f1bc too.)
func TestSortedLabelsNotMovedPastTheirTwin(t *testing.T) {
	req := &prompb.WriteRequest{}
	m := []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "b", Value: "1"}, {Name: "a", Value: "2"}}
	req.Timeseries = append(req.Timeseries,
		prompb.TimeSeries{Labels: m, Samples: []prompb.Sample{{Value: 1, Timestamp: 15000}}},
		prompb.TimeSeries{Labels: []prompb.Label{m[0], m[2], m[1]}, Samples: []prompb.Sample{{Value: 2, Timestamp: 30000}, {Value: 3, Timestamp: 45000}}})
	for k := range 40 {
		ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "200", "user", fmt.Sprint("other", k))
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: []prompb.Sample{{Value: float64(k + 1), Timestamp: 15000}}})
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		twin func(s *scanned)
	}{
		{"twin as it came", func(*scanned) {}},
		{"twin's values written in place", func(s *scanned) {
			s.SetSamples(1, []series.Sample{{T: 30000, V: 20}, {T: 45000, V: 30}}, []int{1})
		}},
		{"twin trimmed, re-encoded in its place", func(s *scanned) {
			s.SetSamples(1, []series.Sample{{T: 30000, V: 2}}, []int{1})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			encodedBothWays(t, raw, false, func(s *scanned) {
				lim := DefaultLimits()
				if err := s.validate(&lim); err != nil {
					t.Fatal(err)
				}
				if n := s.sortLabels(); n != 1 {
					t.Fatalf("%d series sorted, want 1", n)
				}
				c.twin(s)
			})
		})
	}
}
