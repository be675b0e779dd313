package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// postCollision sends the handler one RW 1.0 request in which the LiteLLM
// preset makes, for each user, a None series collide with its 500 series:
// one merged output per user.
func postCollision(t *testing.T, h http.Handler, users ...string) {
	t.Helper()
	var req prompb.WriteRequest
	for _, u := range users {
		for _, code := range []string{"None", "500"} {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: "litellm_proxy_total_requests_metric_total"},
					{Name: "status_code", Value: code},
					{Name: "user", Value: u},
				},
				Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}},
			})
		}
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hr := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	hr.Header.Set("Content-Type", wire.ContentTypeV1)
	hr.Header.Set("Content-Encoding", "snappy")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	if rec.Code/100 != 2 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// A reload refused for its upstream (a ca_file that does not exist) leaves
// the running merge exactly as it was: its collision limits (max_series: 1)
// must not reach the merge state, which would then refuse every output but
// one and forward their series unrepaired.
func TestRefusedReloadLeavesMergeLimits(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "rwfix.yml")
	reg := prometheus.NewRegistry()
	handler := remotewrite.NewHandler(nil, nil, remotewrite.WithMetrics(remotewrite.NewMetrics(reg)))
	rl := newReloader(path, nil, time.Second, "", handler, reg, slog.New(slog.DiscardHandler))
	writeFile(t, path, "upstreams:\n- url: "+up.URL+"\n")
	if err := rl.reload(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "collision: {max_series: 1}\nupstreams:\n- url: "+up.URL+"\n  tls_config: {ca_file: "+filepath.Join(dir, "missing-ca.pem")+"}\n")
	if err := rl.reload(); err == nil {
		t.Fatal("a configuration whose upstream's ca_file does not exist was accepted")
	}
	postCollision(t, handler, "a", "b")
	if full := rwtest.CounterValue(t, reg, "rwfix_merge_state_full_total"); full != 0 {
		t.Fatalf("after the refused reload, %v outputs were refused for a full state: its max_series took effect", full)
	}
	// The same limit in an accepted configuration does take effect: the
	// metric above can see it.
	writeFile(t, path, "collision: {max_series: 1}\nupstreams:\n- url: "+up.URL+"\n")
	if err := rl.reload(); err != nil {
		t.Fatal(err)
	}
	postCollision(t, handler, "c")
	if full := rwtest.CounterValue(t, reg, "rwfix_merge_state_full_total"); full != 1 {
		t.Fatalf("after an accepted reload with max_series 1, rwfix_merge_state_full_total = %v, want 1", full)
	}
}
