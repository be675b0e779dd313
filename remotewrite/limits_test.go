package remotewrite

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

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
