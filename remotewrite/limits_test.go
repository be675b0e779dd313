package remotewrite

import (
	"net/http"
	"net/http/httptest"
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
		{"unsorted", ReasonUnsortedLabels, `timeseries[1] {__name__="up", b="1", a="2"} labels are not sorted`, raw("__name__", "up", "b", "1", "a", "2")},
		{"duplicate", ReasonDuplicateLabelName, `label name "a" appears twice`, raw("__name__", "up", "a", "1", "a", "2")},
		{"empty name", ReasonEmptyLabelName, "has an empty label name", raw("", "x", "__name__", "up")},
		{"invalid utf8", ReasonInvalidUTF8, "not valid UTF-8", raw("__name__", "up", "a", "\xff")},
		{"long value", ReasonLabelValueTooLong, "label a: value of 50 bytes is longer than the limit of 45", raw("__name__", "up", "a", strings.Repeat("x", 50))},
		{"long name", ReasonLabelNameTooLong, "longer than the limit of 16", raw("__name__", "up", strings.Repeat("n", 17), "x")},
		{"too many labels", ReasonTooManyLabels, "has 5 labels, more than the limit of 4", raw("__name__", "up", "a", "1", "b", "1", "c", "1", "d", "1")},
		{"no labels", ReasonEmptyLabelName, "has no labels", raw()},
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
	t.Run("RW2 invalid UTF-8 symbol", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
		st := writev2.NewSymbolTable()
		refs := st.SymbolizeLabels(labels.FromStrings("__name__", "up", "a", "\xfe"), nil)
		req := &writev2.Request{Symbols: st.Symbols(), Timeseries: []writev2.TimeSeries{{LabelsRefs: refs, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}}}}
		rec := post(t, h, ctV2, encodeV2(t, req))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "UTF-8") {
			t.Errorf("got %d %q", rec.Code, rec.Body)
		}
	})
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
