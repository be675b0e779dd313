package remotewrite

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// headVerdicts replays RW 1.0 request bodies, in order, against the verdicts
// of a Prometheus head: per series, a sample (float or histogram) older than
// the newest is out of order, one at the newest's timestamp with another
// value a duplicate, and either refuses the whole request (400, nothing of
// it written). It returns each request's error, nil when it was taken.
func headVerdicts(t *testing.T, bodies [][]byte) []error {
	t.Helper()
	type newest struct {
		t   int64
		key string // the value, bit for bit
	}
	head := map[string]newest{}
	var sb labels.ScratchBuilder
	verdicts := make([]error, len(bodies))
	for i, body := range bodies {
		next := map[string]newest{}
		for k, v := range head {
			next[k] = v
		}
		var err error
		add := func(series string, ts int64, key string) {
			n, ok := next[series]
			switch {
			case err != nil:
			case ok && ts < n.t:
				err = fmt.Errorf("out of order sample for %s at %d", series, ts)
			case ok && ts == n.t && key != n.key:
				err = fmt.Errorf("duplicate sample for %s at %d", series, ts)
			default:
				next[series] = newest{ts, key}
			}
		}
		for _, ts := range decodeV1(t, body).Timeseries {
			series := ts.ToLabels(&sb, nil).String()
			for _, s := range ts.Samples {
				add(series, s.Timestamp, strconv.FormatUint(math.Float64bits(s.Value), 10))
			}
			for _, h := range ts.Histograms {
				add(series, h.Timestamp, h.ToIntHistogram().String())
			}
		}
		verdicts[i] = err
		if err == nil {
			head = next
		}
	}
	return verdicts
}

// A user rule rewrites a native histogram series onto one that came in an
// earlier request (another shard of the sender). The merge covers such a
// rewrite but does not merge histograms, and the collision guard sees only
// the current request: the rewritten histogram must go out unrepaired,
// counted as a collision, or the TSDB refuses the second request
// (duplicate sample) and the sender drops that batch.
func TestHistogramRewriteOntoEarlierSeriesForwardedUnrepaired(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	const rule = `
relabel_configs:
  - source_labels: [__name__, code]
    regex: latency_seconds;None
    target_label: code
    replacement: "500"
`
	h := NewHandler(litellmPipeline(t, rule), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
	genuine := labels.FromStrings("__name__", "latency_seconds", "code", "500")
	none := labels.FromStrings("__name__", "latency_seconds", "code", "None")
	other := testHistogram()
	other.Count, other.Sum = 9, 20
	histSeries := func(ls labels.Labels, hist *histogram.Histogram) prompb.TimeSeries {
		return prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Histograms: []prompb.Histogram{prompb.FromIntHistogram(10, hist)}}
	}
	for i, req := range []*prompb.WriteRequest{
		{Timeseries: []prompb.TimeSeries{histSeries(genuine, testHistogram())}},
		{Timeseries: []prompb.TimeSeries{histSeries(none, other), v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 10})}},
	} {
		if rec := post(t, h, ctV1, encodeV1(t, req)); rec.Code != http.StatusNoContent {
			t.Fatalf("request %d: status %d: %s", i, rec.Code, rec.Body)
		}
	}
	bodies := up.Bodies()
	for i, err := range headVerdicts(t, bodies) {
		if err != nil {
			t.Errorf("the TSDB refuses request %d (400, the sender's batch lost): %v", i, err)
		}
	}
	var sb labels.ScratchBuilder
	if ts := decodeV1(t, bodies[len(bodies)-1]).Timeseries; len(ts) != 2 || !labels.Equal(ts[0].ToLabels(&sb, nil), none) {
		t.Errorf("second request forwarded as %v, want the None histogram unrepaired", ts)
	}
	if c := testutil.ToFloat64(m.collisions); c != 1 {
		t.Errorf("rwfix_collisions_unrepaired_total = %v, want 1", c)
	}
}

// testHistogram is a small integer histogram with buckets on both sides.
func testHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Count: 5, ZeroCount: 1, Sum: 12.5, Schema: 1, ZeroThreshold: 0.001,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{2, 0},
		NegativeSpans:   []histogram.Span{{Offset: 1, Length: 1}},
		NegativeBuckets: []int64{0},
	}
}
