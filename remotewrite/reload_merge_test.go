package remotewrite

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// oneSeries is an RW 1.0 request of one series' samples (one shard's).
func oneSeries(t *testing.T, ls labels.Labels, samples ...prompb.Sample) []byte {
	t.Helper()
	return encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(ls, samples...)}})
}

// A reload that turns the preset off while a merged sample is held: the 500
// that goes out raw afterwards must never meet the merge's own sample at one
// timestamp with another value (Prometheus refuses the sender's batch, 400),
// and the held sample is not lost.
func TestReloadPresetOffWhileHeld(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	on, err := relabel.New(relabel.DefaultConfig(), nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	on.Activate(false)
	h := NewHandler(on, ups)
	none, five := userSeries(0)
	for k := int64(1); k <= 3; k++ {
		clock.Add(retryStep * time.Millisecond)
		sendStep(t, h, none, k, float64(k))
		sendStep(t, h, five, k, float64(10*k))
	}
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, none, 4, 4) // held: the 500 at step 4 is on another shard

	cfg := relabel.DefaultConfig()
	cfg.Presets = nil
	off, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	off.Activate(false)
	h.Update(off, ups)
	sendStep(t, h, five, 4, 40) // the sender's request with the 500 of step 4, raw now
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, five, 5, 50)
	sendStep(t, h, none, 5, 5)
	clock.Add(time.Minute)
	sendStep(t, h, okTotal, 6, 6)

	if c := up.HeadConflicts(); len(c) > 0 {
		t.Fatalf("two values at one timestamp: %v", c)
	}
	got := up.HeadSeries()[five.String()]
	want := []rwtest.HeadSample{{T: 1 * retryStep, V: 11}, {T: 2 * retryStep, V: 22}, {T: 3 * retryStep, V: 33},
		{T: 4 * retryStep, V: 34}, // the held sample, finalized at the reload: the 500 at its latest
		{T: 5 * retryStep, V: 50}} // raw from then on
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v", got, want)
	}
	if n := merger.Pending(); n {
		t.Fatal("the retired output is still pending")
	}
}

// The preset off, then on again: meanwhile the 500 went out raw under the
// output's labels. A None sample of that time that arrives after the merge
// is back (its shard lagged) makes the new output finalize a timestamp the
// upstream already has with another value: it must go as a retry, in a
// request of its own, never in the sender's request, whose batch the 400
// would drop (soak: TestSimulation/all seed 156).
func TestReloadPresetBackOnSendsRawTimesAsRetries(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	pipeline := func(presets []string) *relabel.Pipeline {
		t.Helper()
		cfg := relabel.DefaultConfig()
		cfg.Presets = presets
		p, err := relabel.New(cfg, nil, merger)
		if err != nil {
			t.Fatal(err)
		}
		p.Activate(false)
		return p
	}
	h := NewHandler(pipeline(relabel.DefaultConfig().Presets), ups)
	none, five := userSeries(0)
	for k := int64(1); k <= 3; k++ {
		clock.Add(retryStep * time.Millisecond)
		sendStep(t, h, none, k, float64(k))
		sendStep(t, h, five, k, float64(10*k))
	}
	h.Update(pipeline(nil), ups) // the preset off
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, five, 4, 40) // raw
	h.Update(pipeline(relabel.DefaultConfig().Presets), ups)
	sendStep(t, h, none, 4, 4) // its shard lagged: it arrives with the merge back on
	clock.Add(retryStep * time.Millisecond)
	sendStep(t, h, five, 5, 50)
	sendStep(t, h, none, 5, 5)
	clock.Add(time.Minute)
	sendStep(t, h, okTotal, 6, 6)

	got := up.HeadSeries()[five.String()]
	if len(got) == 0 || got[len(got)-1] != (rwtest.HeadSample{T: 5 * retryStep, V: 55}) {
		t.Fatalf("500 series %v, want the merge going on at step 5 (55)", got)
	}
}

// After a start without state (the data directory lost), the sender's
// backlog may carry a genuine 500 stamped before the new state's horizon at
// a timestamp where the lost process sent the merged output (its merge
// retired by a reload to keep_distinct, whose fence kept that raw sample out:
// lost with the directory). Forwarded in the sender's request, the TSDB
// refuses it as a duplicate with another value (400) and the sender drops
// the whole batch, the untouched samples with it (soak: TestSimulation/all
// seed 1000187). It must go as a retry, in a request of its own, where the
// refusal is final and counted; the samples from the horizon on stay in the
// sender's request.
func TestBacklogBeforeHorizonSentAsRetries(t *testing.T) {
	const T = 100 * retryStep
	up, ups, five := lostMergedSample(t, T)
	p := keepDistinctWithoutState(t, T+3*retryStep)
	reg := prometheus.NewRegistry()
	h := NewHandler(p, ups, WithMetrics(NewMetrics(reg)))
	after := int64(T + 4*retryStep) // stamped after the horizon
	sendBacklogAndCheck(t, h, up, five, T, after)
	if n := rwtest.CounterValue(t, reg, "rwfix_merge_retries_refused_total"); n != 1 {
		t.Errorf("refused retries counted %v, want 1", n)
	}
}

// TestBacklogNotSettledAsksTheSenderAgain: the sender's own samples sent on
// their own (after a start without state, see the test above) that an
// upstream did not settle — it answered 503 to that request alone — make
// rwfix answer the sender 503, so that it sends them again: none is lost,
// whatever became of the rest of its request.
func TestBacklogNotSettledAsksTheSenderAgain(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	_, five := userSeries(0)
	const T = 100 * retryStep
	var refused atomic.Int32
	var overloaded atomic.Bool
	overloaded.Store(true)
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		// The request of the sender's samples on their own: the 500 series at T alone.
		if len(ss) == 1 && labels.Equal(ss[0].Labels, five) && ss[0].Samples[0].Timestamp == T && overloaded.Load() {
			refused.Add(1)
			return true
		}
		return false
	})
	ups := []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	p := keepDistinctWithoutState(t, T+3*retryStep)
	h := NewHandler(p, ups, WithMetrics(NewMetrics(prometheus.NewRegistry())))
	// A batch with two samples of the 200 series, as a sender catching up
	// sends: stored once, a second sending would be out of order (400, and
	// the sender drops the batch).
	batch := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(five, prompb.Sample{Timestamp: T, Value: 9}),
		v1Series(okTotal, prompb.Sample{Timestamp: T, Value: 7}),
		v1Series(okTotal, prompb.Sample{Timestamp: T + retryStep, Value: 8}),
	}})
	rec := post(t, h, ctV1, batch)
	if refused.Load() == 0 {
		t.Fatal("the 500 series' sample before the horizon did not travel on its own")
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("the sender's request answered %d %s, want 503 (send again)", rec.Code, rec.Body)
	}
	if got := up.HeadSeries()[five.String()]; len(got) != 0 {
		t.Errorf("500 series stored %v, want nothing yet", got)
	}
	if got := up.HeadSeries()[okTotal.String()]; len(got) != 0 {
		t.Errorf("200 series stored %v before the sender's samples on their own were settled, want nothing yet", got)
	}
	// The sender sends the batch again, and it is stored whole.
	overloaded.Store(false)
	if rec := post(t, h, ctV1, batch); rec.Code/100 != 2 {
		t.Fatalf("the batch sent again answered %d %s, want 2xx", rec.Code, rec.Body)
	}
	if got := up.HeadSeries()[okTotal.String()]; len(got) != 2 {
		t.Errorf("200 series stored %v, want its two samples", got)
	}
	if got := up.HeadSeries()[five.String()]; len(got) != 1 {
		t.Errorf("500 series stored %v, want its sample", got)
	}
}

// sendStep posts one sample of ls at step k and wants it accepted.
func sendStep(t *testing.T, h *Handler, ls labels.Labels, k int64, v float64) {
	t.Helper()
	if rec := post(t, h, ctV1, oneSeries(t, ls, prompb.Sample{Timestamp: k * retryStep, Value: v})); rec.Code != http.StatusNoContent {
		t.Fatalf("step %d %s: %d %s", k, ls, rec.Code, rec.Body)
	}
}

// A reload to keep_distinct retires an output whose last sum waits to be
// sent again (the upstream failed it): its queue goes as retries, before
// the sender's request that carries the 500 raw. When the upstream fails
// the retries again, that request must not go either: the raw sample,
// stored first, would make the retired sum out of order for good (refused,
// lost). rwfix answers the sender 503, and when it sends again the sum
// goes first, then the raw sample (sim all seed 9000133).
func TestRetiredQueueNotSettledAsksTheSenderAgain(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	none, five := userSeries(0)
	var failSum atomic.Bool
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		// The upstream fails every request with the sum at step 3.
		for _, x := range ss {
			if labels.Equal(x.Labels, five) && slices.ContainsFunc(x.Samples, func(p prompb.Sample) bool { return p.Timestamp == 3*retryStep }) {
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
	h := NewHandler(pipeline(relabel.DefaultConfig().Collision.Policy), ups)
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
	h.Update(pipeline("keep_distinct"), ups)
	clock.Add(retryStep * time.Millisecond)
	raw4 := oneSeries(t, five, prompb.Sample{Timestamp: 4 * retryStep, Value: 40})
	if rec := post(t, h, ctV1, raw4); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the 500 raw at step 4 while the retired sum is not settled: %d %s, want 503 (send again)", rec.Code, rec.Body)
	}
	failSum.Store(false)
	if rec := post(t, h, ctV1, raw4); rec.Code != http.StatusNoContent {
		t.Fatalf("the 500 raw at step 4, sent again: %d %s", rec.Code, rec.Body)
	}
	got := up.HeadSeries()[five.String()]
	want := []rwtest.HeadSample{{T: 1 * retryStep, V: 11}, {T: 2 * retryStep, V: 22}, {T: 3 * retryStep, V: 33}, {T: 4 * retryStep, V: 40}}
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v: the retired sum before the raw sample", got, want)
	}
}

// policyPipeline is the default configuration with the collision policy
// given, on merger; the caller activates it.
func policyPipeline(t *testing.T, merger *relabel.Merger, policy relabel.Policy) *relabel.Pipeline {
	t.Helper()
	cfg := relabel.DefaultConfig()
	cfg.Collision.Policy = policy
	p, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// refusingFront is a proxy to the upstream at upURL that answers 503
// "overloaded", instead, to the RW 1.0 requests refuse says so of (their
// series decoded).
func refusingFront(t *testing.T, upURL string, refuse func(ss []wire.Series) bool) *httptest.Server {
	t.Helper()
	target, err := url.Parse(upURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.Out.URL.Scheme, r.Out.URL.Host, r.Out.URL.Path = target.Scheme, target.Host, target.Path
		r.Out.Host = target.Host
	}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Error(err)
			return
		}
		ss, err := wire.Decode(remoteapi.WriteV1MessageType, raw)
		if err != nil {
			t.Error(err)
			return
		}
		if refuse(ss) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front
}

// keepDistinctWithoutState is the default configuration under keep_distinct,
// started without state at now (ms): the merge state's horizon is now.
func keepDistinctWithoutState(t *testing.T, now int64) *relabel.Pipeline {
	t.Helper()
	p, _ := keepDistinctOnLog(t, now, "")
	return p
}

// keepDistinctOnLog is the default configuration under keep_distinct, at
// now (ms), with the merge state kept in dir: a start without state when
// dir holds no log (or is "": no log at all), else a restart that replays
// it.
func keepDistinctOnLog(t *testing.T, now int64, dir string) (*relabel.Pipeline, *relabel.Merger) {
	t.Helper()
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	merger.SetProcessClock(rwtest.NewClock(time.UnixMilli(now)).Now)
	if dir != "" {
		if _, err := merger.OpenLog(dir); err != nil {
			t.Fatal(err)
		}
	}
	cfg := relabel.DefaultConfig()
	cfg.Collision.Policy = relabel.PolicyKeepDistinct
	p, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	p.Activate(false)
	return p, merger
}

// TestBacklogSplitSurvivesRestartOnLog: after a start without state, the
// sender's samples before the horizon go on their own (see the tests
// above). When part of them is stored and another part is not settled,
// rwfix answers 503 and the sender sends the batch again — with samples the
// upstream has now. If rwfix restarts on its log meanwhile (a SIGKILL), the
// split must go on: forwarded whole, the batch is refused as out of order
// (400) and the sender drops it, untouched samples included (the fault
// simulation, all/31).
func TestBacklogSplitSurvivesRestartOnLog(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	_, fiveA := userSeries(0)
	_, fiveB := userSeries(1)
	const T = 100 * retryStep
	// What the lost process sent of user 1's 500: its backlog sample is
	// refused, and the bisection sends each series alone.
	up.HeadAppend(fiveB, rwtest.HeadSample{T: T + 2*retryStep, V: 30})
	var overloaded atomic.Bool
	overloaded.Store(true)
	front := refusingFront(t, up.URL, func(ss []wire.Series) bool {
		// User 1's 500 alone: not settled (a lost answer, an outage).
		return len(ss) == 1 && labels.Equal(ss[0].Labels, fiveB) && overloaded.Load()
	})
	ups := []*Upstream{upstreamFor(t, front.URL+"/api/v1/write", 5*time.Second)}
	dir := t.TempDir()
	p, merger := keepDistinctOnLog(t, T+3*retryStep, dir)
	h := NewHandler(p, ups, WithMetrics(NewMetrics(prometheus.NewRegistry())))
	batch := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(fiveA, prompb.Sample{Timestamp: T, Value: 9}, prompb.Sample{Timestamp: T + retryStep, Value: 10}),
		v1Series(fiveB, prompb.Sample{Timestamp: T, Value: 19}),
		v1Series(okTotal, prompb.Sample{Timestamp: T, Value: 7}, prompb.Sample{Timestamp: T + retryStep, Value: 8}),
	}})
	if rec := post(t, h, ctV1, batch); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("the sender's request answered %d %s, want 503 (user 1's sample not settled)", rec.Code, rec.Body)
	}
	if got := up.HeadSeries()[fiveA.String()]; len(got) != 2 {
		t.Fatalf("user 0's 500 stored %v, want its two samples (taken on their own)", got)
	}
	// rwfix restarts on its log; the upstream is back; the sender sends the
	// batch again.
	if err := merger.Close(); err != nil {
		t.Fatal(err)
	}
	overloaded.Store(false)
	p, merger = keepDistinctOnLog(t, T+10*retryStep, dir)
	t.Cleanup(func() { _ = merger.Close() })
	h = NewHandler(p, ups, WithMetrics(NewMetrics(prometheus.NewRegistry())))
	if rec := post(t, h, ctV1, batch); rec.Code/100 != 2 {
		t.Fatalf("the batch sent again after the restart answered %d %s, want 2xx (the sender drops it)", rec.Code, rec.Body)
	}
	head := up.HeadSeries()
	if got, want := head[okTotal.String()], []rwtest.HeadSample{{T: T, V: 7}, {T: T + retryStep, V: 8}}; !slices.Equal(got, want) {
		t.Errorf("the sender's untouched series %v, want %v", got, want)
	}
	if got, want := head[fiveA.String()], []rwtest.HeadSample{{T: T, V: 9}, {T: T + retryStep, V: 10}}; !slices.Equal(got, want) {
		t.Errorf("user 0's 500 %v, want %v", got, want)
	}
}

// A reload that turns forward_headers on changes every request's merge
// partition while an output of the old one holds a stale marker (its only
// source, the 500, vanished with LiteLLM: a stale source may come back, so
// the marker waits birth_wait). No request names the old partition again
// and the 500 stays away, so nothing adopts the orphan: the idle flush, as
// main's RunIdleFlush calls it every second, sends the marker on the old
// partition once it has been quiet for the wait bound — before the 500 comes
// back raw under keep_distinct, whose sample would make a later marker out
// of order (TestSimulation/reload seed 326, whose rwfix ran no idle flush).
func TestForwardHeadersReloadOrphanSentByIdleFlush(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	plain := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	var fc UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+up.URL+"\nforward_headers: [X-Scope-OrgID]"), &fc); err != nil {
		t.Fatal(err)
	}
	fc.Timeout = model.Duration(5 * time.Second)
	fwd, err := NewUpstream(fc)
	if err != nil {
		t.Fatal(err)
	}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	pipeline := func(policy relabel.Policy, scheme string) *relabel.Pipeline {
		p := policyPipeline(t, merger, policy)
		p.Activate(merger.Partitions(scheme)) // as the reloader does
		return p
	}
	h := NewHandler(pipeline(relabel.PolicyMerge, "\x01"), plain)
	// RunIdleFlush: every second of the merge's clock.
	wait := func(d time.Duration) {
		for range d / time.Second {
			clock.Add(time.Second)
			h.FlushIdle(context.Background())
		}
	}
	_, five := userSeries(0)
	sendStep(t, h, okTotal, 1, 1)
	sendStep(t, h, five, 1, 1) // born: its None may appear, held birth_wait
	wait(retryStep * time.Millisecond)
	sendStep(t, h, okTotal, 2, 2)
	sendStep(t, h, five, 2, 1)
	wait(retryStep * time.Millisecond)
	stale := math.Float64frombits(value.StaleNaN)
	sendStep(t, h, okTotal, 3, stale) // LiteLLM down: the scrape fails
	sendStep(t, h, five, 3, stale)
	wait(3 * time.Second)
	h.Update(pipeline(relabel.PolicyMerge, "X-Scope-OrgID\x01"), []*Upstream{fwd}) // forward_headers on
	for k := int64(4); k <= 7; k++ {                                               // LiteLLM back; the 500 has not failed again
		wait(retryStep * time.Millisecond)
		sendStep(t, h, okTotal, k, float64(k))
	}
	h.Update(pipeline(relabel.PolicyKeepDistinct, "X-Scope-OrgID\x01"), []*Upstream{fwd})
	wait(retryStep * time.Millisecond)
	sendStep(t, h, five, 8, 1) // born again, forwarded raw

	got := up.HeadSeries()[five.String()]
	if len(got) != 4 || got[0] != (rwtest.HeadSample{T: retryStep, V: 1}) || got[1] != (rwtest.HeadSample{T: 2 * retryStep, V: 1}) ||
		got[2].T != 3*retryStep || !value.IsStaleNaN(got[2].V) || got[3] != (rwtest.HeadSample{T: 8 * retryStep, V: 1}) {
		t.Fatalf("500 series stored %v, want 1 at steps 1 and 2, the stale marker at step 3, 1 at step 8", got)
	}
	if c := up.HeadConflicts(); len(c) > 0 {
		t.Fatalf("two values at one timestamp: %v", c)
	}
	if merger.Pending() {
		t.Fatal("the merge still holds samples")
	}
}

// TestBacklogUndoneByFullStateSentAsRetries: after a start without state,
// a genuine 500 whose merge a full state undoes (max_series reached) goes
// raw, like a series no preset rewrites: its samples before the horizon
// must go as retries of their own too, or one the lost process's merged
// output already has at that timestamp makes the TSDB refuse the sender's
// whole batch (soak: TestSimulation/all seed 1932, where the split was
// decided before the merge undid the rewrite).
func TestBacklogUndoneByFullStateSentAsRetries(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	_, five := userSeries(0)
	_, other := userSeries(1)
	const T = 100 * retryStep
	up.HeadAppend(five, rwtest.HeadSample{T: T, V: 19}) // the lost process's merged sample
	reg := prometheus.NewRegistry()
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), reg)
	merger.SetProcessClock(rwtest.NewClock(time.UnixMilli(T + 3*retryStep)).Now)
	cfg := relabel.DefaultConfig()
	cfg.Collision.MaxSeries = 1
	p, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	p.Activate(false)
	h := NewHandler(p, ups, WithMetrics(NewMetrics(reg)))
	after := int64(T + 4*retryStep) // stamped after the horizon
	// Another user's 500 takes the state's one place.
	if rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(other, prompb.Sample{Timestamp: after, Value: 3}),
	}})); rec.Code != http.StatusNoContent {
		t.Fatalf("answered %d %s", rec.Code, rec.Body)
	}
	sendBacklogAndCheck(t, h, up, five, T, after)
	if n := rwtest.CounterValue(t, reg, "rwfix_merge_state_full_total"); n == 0 {
		t.Fatal("the state was not full: the test proves nothing")
	}
	if n := rwtest.CounterValue(t, reg, "rwfix_merge_retries_refused_total"); n != 1 {
		t.Errorf("refused retries counted %v, want 1", n)
	}
}

// TestBacklogSplitOutlivesPresetsOff: after a start without state, a reload
// that turns the presets off must not stop the split of the sender's
// samples before the horizon: the request whose first attempt was split
// (and partly stored) comes back, and whole it would be refused as out of
// order (soak: TestSimulation/all seed 1788). Here the lost process's merged
// sample meets the sender's raw one at T, as in
// TestBacklogBeforeHorizonSentAsRetries, with the presets off.
func TestBacklogSplitOutlivesPresetsOff(t *testing.T) {
	const T = 100 * retryStep
	up, ups, five := lostMergedSample(t, T)
	_, merger := keepDistinctOnLog(t, T+3*retryStep, "")
	cfg := relabel.DefaultConfig()
	cfg.Presets = nil // reloaded with the presets off
	p, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	p.Activate(false)
	reg := prometheus.NewRegistry()
	h := NewHandler(p, ups, WithMetrics(NewMetrics(reg)))
	after := int64(T + 4*retryStep)
	sendBacklogAndCheck(t, h, up, five, T, after)
}

// sendBacklogAndCheck sends a request with a genuine 500 (five) stamped at,
// before the horizon, where the upstream's head has the lost process's
// merged 19, and at after, with an untouched series at T; the request must
// be taken, the 500 at T refused alone (the head keeps 19) and the rest
// stored.
func sendBacklogAndCheck(t *testing.T, h *Handler, up *rwtest.RecordingUpstream, five labels.Labels, at, after int64) {
	t.Helper()
	rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(five, prompb.Sample{Timestamp: at, Value: 9}, prompb.Sample{Timestamp: after, Value: 12}),
		v1Series(okTotal, prompb.Sample{Timestamp: at, Value: 7}),
	}}))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("the sender's request answered %d %s, want 204", rec.Code, rec.Body)
	}
	head := up.HeadSeries()
	if got, want := head[five.String()], []rwtest.HeadSample{{T: at, V: 19}, {T: after, V: 12}}; !slices.Equal(got, want) {
		t.Errorf("500 series %v, want %v", got, want)
	}
	if got, want := head[okTotal.String()], []rwtest.HeadSample{{T: at, V: 7}}; !slices.Equal(got, want) {
		t.Errorf("the sender's untouched series %v, want %v (its batch refused)", got, want)
	}
}

// lostMergedSample is an upstream with a Prometheus head holding 19 at T
// for user 0's 500 series (five), as the merged sample of a process whose
// state is lost.
func lostMergedSample(t *testing.T, at int64) (*rwtest.RecordingUpstream, []*Upstream, labels.Labels) {
	t.Helper()
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	_, five := userSeries(0)
	up.HeadAppend(five, rwtest.HeadSample{T: at, V: 19})
	return up, []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}, five
}

// TestBacklogSplitKeepsSeriesOrder: the backlog split trims a series' own
// samples (those before the horizon go on their own), and a later series
// of the same label set in the request stays as it came: the trimmed one
// must stay before it, or the receiver refuses the request as out of order
// (an adversarial review of blanking, which sent changed series after the
// others: 400 "out of order sample", the sender's batch dropped).
func TestBacklogSplitKeepsSeriesOrder(t *testing.T) {
	const T = 100 * retryStep
	up, ups, five := lostMergedSample(t, T)
	h := NewHandler(keepDistinctWithoutState(t, T+3*retryStep), ups)
	after := int64(T + 4*retryStep)
	ts := []prompb.TimeSeries{
		v1Series(five, prompb.Sample{Timestamp: T, Value: 9}, prompb.Sample{Timestamp: after, Value: 12}),
		v1Series(five, prompb.Sample{Timestamp: after + retryStep, Value: 13}),
	}
	for i := range 30 { // a few KiB: one change is blanked
		ts = append(ts, v1Series(labels.FromStrings("__name__", "padding", "i", strconv.Itoa(i)), prompb.Sample{Timestamp: after, Value: 1}))
	}
	if rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: ts})); rec.Code != http.StatusNoContent {
		t.Fatalf("the sender's request answered %d %s, want 204", rec.Code, rec.Body)
	}
	if got, want := up.HeadSeries()[five.String()], []rwtest.HeadSample{{T: T, V: 19}, {T: after, V: 12}, {T: after + retryStep, V: 13}}; !slices.Equal(got, want) {
		t.Errorf("500 series %v, want %v", got, want)
	}
}
