package remotewrite

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
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

// TestRetiredQueueOfAnotherPartitionGoesFirstAfterRestart is
// TestRetiredQueueOfAnotherPartitionGoesFirst with a SIGKILL between the
// reload and the raw sample: that the retired output's partition is of the
// old scheme (waited for by the new partition's requests, unlike another
// tenant's) comes back from the log (the output was orphaned, logged,
// before it was retired): the raw 500 at step 4 still waits for the
// retired sum (33 at step 3), which the idle flush sends.
func TestRetiredQueueOfAnotherPartitionGoesFirstAfterRestart(t *testing.T) {
	retiredQueueGoesFirstAfterRestart(t, false)
}

// TestRetiredQueueOfAnOlderSchemeGoesFirstAfterRestart: the output is
// retired (keep_distinct) under one partition scheme, a later reload changes
// the scheme (forward_headers on), then a SIGKILL: that its partition is of
// an older scheme is in the log (recOldPart), so the new partition's raw 500
// at step 4 still waits for the retired sum (33 at step 3), which the idle
// flush sends (sim all seed 12010488).
func TestRetiredQueueOfAnOlderSchemeGoesFirstAfterRestart(t *testing.T) {
	retiredQueueGoesFirstAfterRestart(t, true)
}

// retiredQueueGoesFirstAfterRestart: with retireFirst, the reload to
// keep_distinct keeps the scheme and a second one changes it; else one
// reload does both.
func retiredQueueGoesFirstAfterRestart(t *testing.T, retireFirst bool) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five := userSeries(0)
	var failSum atomic.Bool
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		for _, x := range ss {
			if labels.Equal(x.Labels, five) && slices.ContainsFunc(x.Samples, func(p prompb.Sample) bool { return p.Timestamp == 3*retryStep }) {
				return failSum.Load()
			}
		}
		return false
	})
	plain := []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	var fc UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+front.URL+"/api/v1/write\nforward_headers: [X-Scope-OrgID]"), &fc); err != nil {
		t.Fatal(err)
	}
	fc.Timeout = model.Duration(5 * time.Second)
	fwd, err := NewUpstream(fc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(1000, 0))
	open := func() *relabel.Merger {
		m := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
		m.SetClock(clock.Now)
		if _, err := m.OpenLog(dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() }) // the first one: after the test, as a SIGKILL leaves it
		return m
	}
	merger := open()
	pipeline := func(policy relabel.Policy, scheme string) *relabel.Pipeline {
		p := policyPipeline(t, merger, policy)
		p.Activate(merger.Partitions(scheme)) // as the reloader does
		return p
	}
	h := NewHandler(pipeline(relabel.PolicyMerge, "\x01"), plain)
	for k := int64(1); k <= 2; k++ {
		clock.Add(retryStep * time.Millisecond)
		sendStep(t, h, none, k, float64(k))
		sendStep(t, h, five, k, float64(10*k))
	}
	clock.Add(retryStep * time.Millisecond)
	failSum.Store(true)
	sendStep(t, h, none, 3, 3)
	if rec := post(t, h, ctV1, oneSeries(t, five, prompb.Sample{Timestamp: 3 * retryStep, Value: 30})); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the request with the sum at step 3, failed upstream: %d %s, want 503", rec.Code, rec.Body)
	}
	failSum.Store(false)
	if retireFirst {
		pipeline(relabel.PolicyKeepDistinct, "\x01") // retired under the scheme it was merged under
	}
	pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01")
	// SIGKILL, and a start on the log with the new configuration.
	merger = open()
	h = NewHandler(pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01"), []*Upstream{fwd})
	clock.Add(retryStep * time.Millisecond)
	raw4 := oneSeries(t, five, prompb.Sample{Timestamp: 4 * retryStep, Value: 40})
	first := post(t, h, ctV1, raw4)
	for range 120 {
		clock.Add(time.Second)
		h.FlushIdle(context.Background())
		if !merger.Pending() {
			break
		}
	}
	if first.Code != http.StatusNoContent {
		if rec := post(t, h, ctV1, raw4); rec.Code != http.StatusNoContent {
			t.Fatalf("the 500 raw at step 4, sent again: %d %s", rec.Code, rec.Body)
		}
	}
	got := up.HeadSeries()[five.String()]
	want := []rwtest.HeadSample{{T: 1 * retryStep, V: 11}, {T: 2 * retryStep, V: 22}, {T: 3 * retryStep, V: 33}, {T: 4 * retryStep, V: 40}}
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v: the retired sum before the raw sample (the first attempt answered %d)", got, want, first.Code)
	}
}
