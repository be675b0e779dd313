package remotewrite

import (
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

// TestRetiredQueueInFlightOnAnotherRequest is
// TestRetiredQueueNotSettledAsksTheSenderAgain with the retired queue in
// flight on another request of the partition when the 500's raw sample
// comes: the sender's shards send in parallel. The first request carries the
// retired sum of step 3 as a retry (it has no raw 500: the retries go beside
// it); while the upstream has not answered that retry, a request with the
// 500 raw at step 4 comes on another shard. Stored first, the raw sample
// would make the retired sum out of order for good when the upstream fails
// the retry: refused, lost (sim all seed 9000133, with the two requests
// in parallel).
func TestRetiredQueueInFlightOnAnotherRequest(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five := userSeries(0)
	var failSum atomic.Bool
	inFlight, release := make(chan struct{}), make(chan struct{})
	var block atomic.Bool
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		for _, x := range ss {
			if labels.Equal(x.Labels, five) && slices.ContainsFunc(x.Samples, func(p prompb.Sample) bool { return p.Timestamp == 3*retryStep }) {
				if block.CompareAndSwap(true, false) {
					// The retry request of the retired sum: answered
					// (failed) once the raw sample's request is done.
					close(inFlight)
					<-release
				}
				return failSum.Load()
			}
		}
		return false
	})
	ups := []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	pipeline := func(policy relabel.Policy) *relabel.Pipeline {
		p := policyPipeline(t, merger, policy)
		p.Activate(false)
		return p
	}
	h := NewHandler(pipeline(relabel.PolicyMerge), ups)
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
	h.Update(pipeline(relabel.PolicyKeepDistinct), ups)
	clock.Add(retryStep * time.Millisecond)
	// Shard A: the 200 series; the retired sum rides on it as a retry.
	block.Store(true)
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		first <- post(t, h, ctV1, oneSeries(t, okTotal, prompb.Sample{Timestamp: 4 * retryStep, Value: 4}))
	}()
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the retired sum was not sent as a retry with the first request")
	}
	// Shard B, meanwhile: the 500 raw at step 4.
	raw4 := oneSeries(t, five, prompb.Sample{Timestamp: 4 * retryStep, Value: 40})
	rec := post(t, h, ctV1, raw4)
	close(release)
	<-first
	// The sender sends again whatever was not taken; the upstream is back.
	failSum.Store(false)
	if rec.Code != http.StatusNoContent {
		if rec := post(t, h, ctV1, raw4); rec.Code != http.StatusNoContent {
			t.Fatalf("the 500 raw at step 4, sent again: %d %s", rec.Code, rec.Body)
		}
	}
	sendStep(t, h, okTotal, 5, 5) // anything left goes
	got := up.HeadSeries()[five.String()]
	want := []rwtest.HeadSample{{T: 1 * retryStep, V: 11}, {T: 2 * retryStep, V: 22}, {T: 3 * retryStep, V: 33}, {T: 4 * retryStep, V: 40}}
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v: the retired sum before the raw sample", got, want)
	}
}

// TestRetiredQueueOfAnotherPartitionGoesFirst: one reload turns
// forward_headers on and the policy to keep_distinct while the upstream
// fails the output's last sum (33 at step 3): the output is retired under
// its old partition, which no request names again; only the idle flush
// sends its queue. A request of the new partition with the 500 raw at step
// 4 must wait for it (503): stored first, the raw sample would make the
// retired sum out of order for good (refused, lost).
func TestRetiredQueueOfAnotherPartitionGoesFirst(t *testing.T) {
	retiredQueueGoesFirst(t, false, false)
}

// TestRetiredQueueOfAnotherPartitionGoesFirstAfterRestart is
// TestRetiredQueueOfAnotherPartitionGoesFirst with a SIGKILL between the
// reload and the raw sample: that the retired output's partition is of the
// old scheme (waited for by the new partition's requests, unlike another
// tenant's) comes back from the log (the output was orphaned, logged,
// before it was retired): the raw 500 at step 4 still waits for the
// retired sum (33 at step 3), which the idle flush sends.
func TestRetiredQueueOfAnotherPartitionGoesFirstAfterRestart(t *testing.T) {
	retiredQueueGoesFirst(t, true, false)
}

// TestRetiredQueueOfAnOlderSchemeGoesFirstAfterRestart: the output is
// retired (keep_distinct) under one partition scheme, a later reload changes
// the scheme (forward_headers on), then a SIGKILL: that its partition is of
// an older scheme is in the log (recOldPart), so the new partition's raw 500
// at step 4 still waits for the retired sum (33 at step 3), which the idle
// flush sends (sim all seed 12010488).
func TestRetiredQueueOfAnOlderSchemeGoesFirstAfterRestart(t *testing.T) {
	retiredQueueGoesFirst(t, true, true)
}

// retiredQueueGoesFirst runs the sequence of
// TestRetiredQueueOfAnotherPartitionGoesFirst: with restart, a SIGKILL
// between the reload and the raw sample, and a start on the merge log; with
// retireFirst, the reload to keep_distinct keeps the scheme and a second one
// changes it (else one reload does both).
func retiredQueueGoesFirst(t *testing.T, restart, retireFirst bool) {
	up, none, five, failSum, plain, fwd := sumAtStep3(t)
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(1000, 0))
	open := func() *relabel.Merger {
		m := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
		m.SetClock(clock.Now)
		if !restart {
			return m
		}
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
	if restart {
		pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01")
		// SIGKILL, and a start on the log with the new configuration.
		merger = open()
		h = NewHandler(pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01"), []*Upstream{fwd})
	} else {
		h.Update(pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01"), []*Upstream{fwd})
	}
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

// TestNewOutputWaitsForTheRetiredQueue: a reload to keep_distinct that
// also turns forward_headers on retires the output under its old partition
// while the upstream fails its last sum (33 at step 3); only the idle flush
// sends that queue now. A second reload turns the merge on again. The
// sender's next scrape makes a new output of the label set under the new
// partition, whose sums are complete at once. While the retired output
// still has 33 to send, the new one must not send its sums: stored first,
// they would make 33 out of order for good (refused, lost; sim all seed
// 19003517, where the retired output was still sending an outage's
// backlog). The sender then stops: the idle flush sends 33, and then the
// sums the new output kept back (they were once left unlisted, unsent).
func TestNewOutputWaitsForTheRetiredQueue(t *testing.T) {
	newOutputWaits(t, false)
}

// TestNewOutputWaitsForTheRetiredQueueAfterRestart is
// TestNewOutputWaitsForTheRetiredQueue with a SIGKILL after the new
// output's sum at step 4 and a start on the merge log: that the new output
// waits is not in the log; the start's retirement of the retired output
// (Pipeline.Activate) makes it wait again.
func TestNewOutputWaitsForTheRetiredQueueAfterRestart(t *testing.T) {
	newOutputWaits(t, true)
}

func newOutputWaits(t *testing.T, restart bool) {
	up, none, five, failSum, plain, fwd := sumAtStep3(t)
	ups := []*Upstream{fwd}
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(1000, 0))
	open := func() *relabel.Merger {
		m := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
		m.SetClock(clock.Now)
		if _, err := m.OpenLog(dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() }) // after the test, as a SIGKILL leaves it
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
		sendStep(t, h, none, k, noneAt(0, k))
		sendStep(t, h, five, k, fiveAt(0, k))
	}
	clock.Add(retryStep * time.Millisecond)
	failSum.Store(true)
	sendStep(t, h, none, 3, noneAt(0, 3))
	if rec := post(t, h, ctV1, oneSeries(t, five, prompb.Sample{Timestamp: 3 * retryStep, Value: fiveAt(0, 3)})); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the request with the sum at step 3, failed upstream: %d %s, want 503", rec.Code, rec.Body)
	}
	h.Update(pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01"), ups) // retired under the old partition, 33 queued
	h.Update(pipeline(relabel.PolicyMerge, "X-Scope-OrgID\x01"), ups)
	// The sender's requests: what is not answered 204 is sent again
	// later, as Prometheus does.
	var unsent [][]byte
	send := func(ls labels.Labels, k int64, v float64) {
		body := oneSeries(t, ls, prompb.Sample{Timestamp: k * retryStep, Value: v})
		if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
			unsent = append(unsent, body)
		}
	}
	for k := int64(4); k <= 8; k++ { // the upstream still fails 33
		clock.Add(retryStep * time.Millisecond)
		send(none, k, noneAt(0, k))
		send(five, k, fiveAt(0, k))
		if restart && k == 4 {
			merger = open() // SIGKILL, and a start on the log
			h = NewHandler(pipeline(relabel.PolicyMerge, "X-Scope-OrgID\x01"), ups)
		}
	}
	failSum.Store(false) // the upstream takes 33 again
	for _, body := range unsent {
		if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
			t.Fatalf("a request sent again: %d %s", rec.Code, rec.Body)
		}
	}
	// The sender has stopped: only the idle flush sends what is left, the
	// retired sum and then the new output's sums it kept back.
	for range 600 {
		clock.Add(time.Second)
		h.FlushIdle(context.Background())
		if !merger.Pending() {
			break
		}
	}
	got := up.HeadSeries()[five.String()]
	var want []rwtest.HeadSample
	for k := int64(1); k <= 8; k++ {
		want = append(want, rwtest.HeadSample{T: k * retryStep, V: mergedAt(0, k)})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v: the retired sum at step 3 before the new output's sums, and all of them sent", got, want)
	}
}

// sumAtStep3 is the world of the retired-queue tests: a Prometheus-like
// upstream behind a front that fails every request carrying user 0's 500
// series at step 3 while failSum is set; user 0's None and 500 series; and
// two configurations of that upstream: plain, and forwarding X-Scope-OrgID
// (another partition scheme).
func sumAtStep3(t *testing.T) (up *rwtest.RecordingUpstream, none, five labels.Labels, failSum *atomic.Bool, plain []*Upstream, fwd *Upstream) {
	t.Helper()
	up = rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five = userSeries(0)
	failSum = new(atomic.Bool)
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		for _, x := range ss {
			if labels.Equal(x.Labels, five) && slices.ContainsFunc(x.Samples, func(p prompb.Sample) bool { return p.Timestamp == 3*retryStep }) {
				return failSum.Load()
			}
		}
		return false
	})
	plain = []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	var fc UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+front.URL+"/api/v1/write\nforward_headers: [X-Scope-OrgID]"), &fc); err != nil {
		t.Fatal(err)
	}
	fc.Timeout = model.Duration(5 * time.Second)
	fwd, err := NewUpstream(fc)
	if err != nil {
		t.Fatal(err)
	}
	return up, none, five, failSum, plain, fwd
}
