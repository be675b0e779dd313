package remotewrite

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// postTenant posts body as tenant org (X-Scope-OrgID) and returns the answer.
func postTenant(t *testing.T, h http.Handler, body []byte, org string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctV1)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Scope-OrgID", org)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestRetiredQueuesOfTwoTenantsDoNotWaitForEachOther: two tenants
// (forward_headers: X-Scope-OrgID) send the same label sets; a reload to
// keep_distinct retires both tenants' outputs, each with a sum held at the
// reload in its queue. A tenant's raw 500 waits for its own retired queue
// (it rides on the request as a retry), never for the other tenant's: that
// queue goes to another tenant, which the raw sample cannot put out of
// order. Waiting for it, each tenant's request is answered 503 before its
// own retries go, so neither queue ever drains while both senders retry
// (the idle flush never finds them idle): both tenants refused until the
// fences end, 10 minutes later.
func TestRetiredQueuesOfTwoTenantsDoNotWaitForEachOther(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five := userSeries(0)
	var fc UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+up.URL+"/api/v1/write\nforward_headers: [X-Scope-OrgID]"), &fc); err != nil {
		t.Fatal(err)
	}
	fc.Timeout = model.Duration(5 * time.Second)
	fwd, err := NewUpstream(fc)
	if err != nil {
		t.Fatal(err)
	}
	ups := []*Upstream{fwd}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	const scheme = "X-Scope-OrgID\x01"
	pipeline := func(policy relabel.Policy) *relabel.Pipeline {
		p := policyPipeline(t, merger, policy)
		p.Activate(merger.Partitions(scheme)) // as the reloader does
		return p
	}
	h := NewHandler(pipeline(relabel.PolicyMerge), ups)
	tenants := []string{"a", "b"}
	step := func(ls []byte, org string) {
		t.Helper()
		if rec := postTenant(t, h, ls, org); rec.Code != http.StatusNoContent {
			t.Fatalf("tenant %s: %d %s", org, rec.Code, rec.Body)
		}
	}
	for k := int64(1); k <= 2; k++ {
		clock.Add(retryStep * time.Millisecond)
		for _, org := range tenants {
			step(oneSeries(t, none, prompb.Sample{Timestamp: k * retryStep, Value: float64(k)}), org)
			step(oneSeries(t, five, prompb.Sample{Timestamp: k * retryStep, Value: float64(10 * k)}), org)
		}
	}
	clock.Add(retryStep * time.Millisecond)
	for _, org := range tenants {
		// Held: the 500 at step 3 is on another shard of the sender.
		step(oneSeries(t, none, prompb.Sample{Timestamp: 3 * retryStep, Value: 3}), org)
	}
	h.Update(pipeline(relabel.PolicyKeepDistinct), ups)
	raw := oneSeries(t, five, prompb.Sample{Timestamp: 4 * retryStep, Value: 40})
	done := map[string]bool{}
	// Both senders retry their request every second (the idle flush runs
	// as RunIdleFlush does); bounded well within the fences' 10 minutes.
	for range 30 {
		clock.Add(retryStep * time.Millisecond)
		for _, org := range tenants {
			if !done[org] {
				done[org] = postTenant(t, h, raw, org).Code == http.StatusNoContent
			}
		}
		h.FlushIdle(context.Background())
		if done["a"] && done["b"] {
			break
		}
	}
	if !done["a"] || !done["b"] {
		t.Fatalf("tenants through: %v; each waits for the other's retired queue", done)
	}
	if merger.Pending() {
		t.Fatal("a retired queue is still pending")
	}
}
