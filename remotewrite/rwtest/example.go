package rwtest

import (
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// ExampleV1 is a small RW 1.0 request (decompressed) with a bit of every
// kind of content: samples, an exemplar, metadata.
func ExampleV1(t testing.TB) []byte {
	t.Helper()
	req := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{{
			Labels:    []prompb.Label{{Name: "__name__", Value: "up"}},
			Samples:   []prompb.Sample{{Value: 1, Timestamp: 10}, {Value: 2.5, Timestamp: 20}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t"}}, Value: 1, Timestamp: 10}},
		}},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "h"}},
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// ExampleV2 is a small RW 2.0 request (decompressed) with a bit of every
// kind of content: a sample with a start timestamp, an exemplar, metadata, a
// histogram with a start timestamp.
func ExampleV2(t testing.TB) []byte {
	t.Helper()
	st := writev2.NewSymbolTable()
	h := &histogram.Histogram{Count: 2, Sum: 3, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{2}}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "c_total"), nil),
			Samples:    []writev2.Sample{{Value: 4, Timestamp: 10, StartTimestamp: 5}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "t"), nil), Value: 1, Timestamp: 10}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("help")},
		},
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "h"), nil), Histograms: []writev2.Histogram{writev2.FromIntHistogram(7, 10, h)}},
	}}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
