package remotewrite

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// A tenant sends a scrape (None and 500), then a None sample whose 500
// sample never comes: its sender stopped. The merged sample is held, for
// the tenant's next request to carry; once the tenant has been quiet for
// longer than the merge's wait, rwfix sends it on its own, with the
// tenant's header, and nothing is pending any more.
func TestIdleTenantsHeldSampleSentOnItsOwn(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	var uc UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+up.URL+"\nforward_headers: [X-Scope-OrgID]"), &uc); err != nil {
		t.Fatal(err)
	}
	uc.Timeout = model.Duration(5 * time.Second)
	u, err := NewUpstream(uc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := relabel.New(relabel.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := rwtest.NewClock(time.Unix(1000, 0))
	p.SetMergeClock(clock.Now)
	m := NewMetrics(nil)
	h := NewHandler(p, []*Upstream{u}, WithMetrics(m))
	send := func(series ...prompb.TimeSeries) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(encodeV1(t, &prompb.WriteRequest{Timeseries: series})))
		req.Header.Set("Content-Type", ctV1)
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("X-Scope-OrgID", "tenant-a")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	send(v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 15000}), v1Series(fixedTotal, prompb.Sample{Value: 5, Timestamp: 15000}))
	clock.Add(15 * time.Second)
	send(v1Series(noneTotal, prompb.Sample{Value: 4, Timestamp: 30000}))
	if !p.MergePending() {
		t.Fatal("no merged sample is held: the test shows nothing")
	}

	// Not idle yet: nothing is sent on the tenant's behalf.
	before := up.Len()
	h.FlushIdle(context.Background())
	if n := up.Len() - before; n != 0 {
		t.Fatalf("the upstream got %d requests before the tenant was idle", n)
	}

	clock.Add(p.MaxWait() + time.Second)
	h.FlushIdle(context.Background())
	if p.MergePending() {
		t.Error("the merge still has samples pending")
	}
	// At 30 s: None 4 plus the 500 series' latest, 5.
	if got, want := up.HeadSeries()[fixedTotal.String()], []rwtest.HeadSample{{T: 15000, V: 8}, {T: 30000, V: 9}}; !slices.Equal(got, want) {
		t.Errorf("upstream has %v, want %v", got, want)
	}
	for i, r := range up.Requests() {
		if g := r.Header.Get("X-Scope-OrgID"); g != "tenant-a" {
			t.Errorf("request %d went with X-Scope-OrgID %q, want the tenant's", i, g)
		}
	}
	if n := testutil.ToFloat64(m.idleFlushes); n != 1 {
		t.Errorf("rwfix_merge_idle_flushes_total = %v, want 1", n)
	}
}

// The loop main runs stops when told, a flush or not in progress.
func TestRunIdleFlushStops(t *testing.T) {
	h := NewHandler(litellmPipeline(t, ""), nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.RunIdleFlush(ctx, time.Millisecond)
	}()
	time.Sleep(20 * time.Millisecond) // a few rounds
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("RunIdleFlush did not stop")
	}
}
