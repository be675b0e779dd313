package remotewrite

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestLimitsRejectWholeRequest(t *testing.T) {
	good := v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})
	raw := func(pairs ...string) prompb.TimeSeries { // labels exactly as given: unsorted, duplicates
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i+1 < len(pairs); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		return ts
	}
	for _, tc := range []struct {
		name, reason, msg string
		ts                prompb.TimeSeries
	}{
		{"long value", ReasonLabelValueTooLong, "label a: value of 50 bytes is longer than the limit of 45", raw("__name__", "up", "a", strings.Repeat("x", 50))},
		{"long name", ReasonLabelNameTooLong, "longer than the limit of 16", raw("__name__", "up", strings.Repeat("n", 17), "x")},
		{"too many labels", ReasonTooManyLabels, "has 5 labels, more than the limit of 4", raw("__name__", "up", "a", "1", "b", "1", "c", "1", "d", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
			lim := DefaultLimits()
			lim.MaxLabelValueLength, lim.MaxLabelNameLength, lim.MaxLabelsPerSeries = 45, 16, 4
			h.UpdateLimits(lim)
			rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, tc.ts}}))
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("got %d %q, want 400 containing %q", rec.Code, rec.Body, tc.msg)
			}
			if up.Len() != 0 {
				t.Error("a rejected request reached the upstream")
			}
			if v := testutil.ToFloat64(m.rejected.WithLabelValues(tc.reason)); v != 1 {
				t.Errorf("rwfix_requests_rejected_total{reason=%q} = %v, want 1", tc.reason, v)
			}
		})
	}
	t.Run("too many series", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
		lim := DefaultLimits()
		lim.MaxSeriesPerRequest = 1
		h.UpdateLimits(lim)
		rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, v1Series(otherNone, prompb.Sample{Value: 1, Timestamp: 1})}}))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "more than the limit of 1") {
			t.Errorf("got %d %q", rec.Code, rec.Body)
		}
	})
}

// What Prometheus' receiver tolerates is not refused: labels out of order are
// sorted on the way (and repaired); a series the receiver would skip is
// forwarded as it came, never repaired, and counted; the good series of the
// request go through.
func TestReceiverVerdicts(t *testing.T) {
	raw := func(pairs ...string) prompb.TimeSeries { // labels exactly as given
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i+1 < len(pairs); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		return ts
	}
	for _, tc := range []struct {
		name, reason string
		ts           prompb.TimeSeries
	}{
		{"duplicate", InvalidDuplicateName, raw("__name__", "up", "a", "1", "a", "2")},
		{"duplicate out of order", InvalidDuplicateName, raw("a", "1", "__name__", "up", "a", "2")},
		{"empty name", InvalidEmptyLabelName, raw("", "x", "__name__", "up")},
		{"invalid utf8", InvalidUTF8, raw("__name__", "up", "a", "\xff")},
		{"no labels", InvalidNoMetricName, raw()},
		{"no metric name", InvalidNoMetricName, raw("job", "x")},
		{"a None series without a metric name is not repaired", InvalidNoMetricName, raw("status_code", "None")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t)
			m := NewMetrics(prometheus.NewRegistry())
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
			in := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1}), tc.ts}}
			if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
				t.Fatalf("got %d %q, want 204", rec.Code, rec.Body)
			}
			out := decodeV1(t, up.Requests()[0].Body)
			if len(out.Timeseries) != 2 || !labelsEqualProto(out.Timeseries[1].Labels, tc.ts.Labels) {
				t.Errorf("forwarded %v, want the series as it came", out.Timeseries)
			}
			if v := testutil.ToFloat64(m.invalid.WithLabelValues(tc.reason)); v != 1 {
				t.Errorf("rwfix_series_invalid_total{reason=%q} = %v, want 1", tc.reason, v)
			}
		})
	}
	t.Run("unsorted labels are sorted and repaired", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		m := NewMetrics(prometheus.NewRegistry())
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
		// As vmagent sends: job and instance after the scraped labels.
		in := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			raw("__name__", "up", "job", "x", "instance", "a"),
			raw("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a", "job", "x", "instance", "a"),
		}}
		if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %q", rec.Code, rec.Body)
		}
		var sb labels.ScratchBuilder
		got := map[string]bool{}
		for _, ts := range decodeV1(t, up.Requests()[0].Body).Timeseries {
			if !slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
				t.Errorf("forwarded unsorted: %v", ts.Labels)
			}
			got[ts.ToLabels(&sb, nil).String()] = true
		}
		for _, want := range []string{`{__name__="up", instance="a", job="x"}`,
			`{__name__="litellm_proxy_total_requests_metric_total", instance="a", job="x", status_code="500", user="a"}`} {
			if !got[want] {
				t.Errorf("missing %s in %v", want, got)
			}
		}
		if v := testutil.ToFloat64(m.sorted); v != 2 {
			t.Errorf("rwfix_series_sorted_total = %v, want 2", v)
		}
	})
	t.Run("RW2 unsorted refs and an invalid UTF-8 symbol", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
		syms := []string{"", "__name__", "up", "job", "x", "instance", "a", "b", "\xfe"}
		req := &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2, 3, 4, 5, 6}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}}, // __name__, job, instance
			{LabelsRefs: []uint32{1, 2, 7, 8}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}},       // b="\xfe"
		}}
		if rec := post(t, h, ctV2, encodeV2(t, req)); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %q", rec.Code, rec.Body)
		}
		out := decodeV2(t, up.Requests()[0].Body)
		var sb labels.ScratchBuilder
		first, _ := out.Timeseries[0].ToLabels(&sb, out.Symbols)
		if first.String() != `{__name__="up", instance="a", job="x"}` {
			t.Errorf("first series %v", first)
		}
		refs := out.Timeseries[0].LabelsRefs
		for j := 2; j+1 < len(refs); j += 2 {
			if out.Symbols[refs[j]] < out.Symbols[refs[j-2]] {
				t.Errorf("refs not sorted by name: %v", refs)
			}
		}
		if got := out.Timeseries[1].LabelsRefs; !slices.Equal(got, []uint32{1, 2, 7, 8}) {
			t.Errorf("the invalid series changed: %v", got)
		}
	})
}

func labelsEqualProto(a, b []prompb.Label) bool {
	return slices.EqualFunc(a, b, func(x, y prompb.Label) bool { return x.Name == y.Name && x.Value == y.Value })
}

func TestOverloadAnswers503(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.Delay(300*time.Millisecond))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}, WithMetrics(m), WithInflightLimits(2, 0))
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})}})
	codes := make(chan *httptest.ResponseRecorder, 6)
	for range 6 {
		go func() { codes <- post(t, h, ctV1, body) }()
	}
	got := map[int]int{}
	for range 6 {
		rec := <-codes
		got[rec.Code]++
		if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if got[http.StatusNoContent] < 2 || got[http.StatusServiceUnavailable] < 1 || got[http.StatusNoContent]+got[http.StatusServiceUnavailable] != 6 {
		t.Errorf("answers %v: want at least 2 accepted and the rest 503", got)
	}
	if v := testutil.ToFloat64(m.rejected.WithLabelValues(ReasonOverloaded)); v != float64(got[http.StatusServiceUnavailable]) {
		t.Errorf("rejected{overloaded} = %v, want %d", v, got[http.StatusServiceUnavailable])
	}
}
