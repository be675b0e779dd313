package remotewrite

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// durableMerge is the LiteLLM preset with its merge state in dir, as
// `rwfix serve --storage.path` keeps it: a second one on the same dir is the
// process after a restart. Its clock jumps 3 minutes at every reading (see
// litellmPipeline): every sample is due when its request collects.
func durableMerge(t *testing.T, dir string) (p *relabel.Pipeline, stop func()) {
	t.Helper()
	var ticks atomic.Int64
	p, m := litellmOnLog(t, dir, func() time.Time { return time.Unix(0, 0).Add(time.Duration(ticks.Add(1)) * 3 * time.Minute) })
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			if err := m.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	return p, stop
}

// litellmOnLog is the LiteLLM preset with its merge state on a log in dir,
// its merge clock now.
func litellmOnLog(t *testing.T, dir string, now func() time.Time) (*relabel.Pipeline, *relabel.Merger) {
	t.Helper()
	cfg := relabel.DefaultConfig()
	m := relabel.NewMerger(cfg.Collision, nil)
	m.SetClock(now)
	if _, err := m.OpenLog(dir); err != nil {
		t.Fatal(err)
	}
	p, err := relabel.New(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	p.Activate(false)
	return p, m
}

// userSeries are user u's None and 500 series and their merged output.
func userSeries(u int) (none, five labels.Labels) {
	user := fmt.Sprintf("u%d", u)
	return labels.NewBuilder(noneTotal).Set("user", user).Labels(), labels.NewBuilder(fixedTotal).Set("user", user).Labels()
}

// Values of the sender's truth: at step k, user u's None series counts k+u
// and its 500 series 10k+u; their merged output k*11 + 2u.
func noneAt(u int, k int64) float64   { return float64(k + int64(u)) }
func fiveAt(u int, k int64) float64   { return float64(10*k + int64(u)) }
func mergedAt(u int, k int64) float64 { return noneAt(u, k) + fiveAt(u, k) }

const retryStep = 15000 // ms between steps

// scrapeBody is one request of the sender: for each of users, its None and
// 500 series at every step (several: a sender catching up), and the 200
// series, so that the batch is never empty.
func scrapeBody(t *testing.T, proto string, users int, steps ...int64) []byte {
	t.Helper()
	type series struct {
		ls      labels.Labels
		samples []prompb.Sample
	}
	var all []series
	at := func(f func(int64) float64) []prompb.Sample {
		var s []prompb.Sample
		for _, k := range steps {
			s = append(s, prompb.Sample{Timestamp: k * retryStep, Value: f(k)})
		}
		return s
	}
	for u := range users {
		none, five := userSeries(u)
		all = append(all, series{none, at(func(k int64) float64 { return noneAt(u, k) })},
			series{five, at(func(k int64) float64 { return fiveAt(u, k) })})
	}
	all = append(all, series{okTotal, at(func(k int64) float64 { return float64(k) })})
	if proto == ctV2 {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{}
		for _, s := range all {
			ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(s.ls, nil)}
			for _, p := range s.samples {
				ts.Samples = append(ts.Samples, writev2.Sample{Timestamp: p.Timestamp, Value: p.Value})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		req.Symbols = st.Symbols()
		return encodeV2(t, req)
	}
	req := &prompb.WriteRequest{}
	for _, s := range all {
		req.Timeseries = append(req.Timeseries, v1Series(s.ls, s.samples...))
	}
	return encodeV1(t, req)
}

// sendScrape posts a scrapeBody and checks rwfix's answer.
func sendScrape(t *testing.T, h http.Handler, proto string, want int, users int, steps ...int64) {
	t.Helper()
	if rec := post(t, h, proto, scrapeBody(t, proto, users, steps...)); rec.Code != want {
		t.Fatalf("steps %v: status %d (%s), want %d", steps, rec.Code, rec.Body, want)
	}
}

// wantEveryMergedSample checks that the upstream stored every user's merged
// output at steps 1..last, each exactly once with the true value, and was
// never sent a sample at a stored timestamp with another value.
func wantEveryMergedSample(t *testing.T, name string, up *rwtest.RecordingUpstream, users int, last int64) {
	t.Helper()
	got := up.HeadSeries()
	for u := range users {
		_, out := userSeries(u)
		var want []rwtest.HeadSample
		for k := int64(1); k <= last; k++ {
			want = append(want, rwtest.HeadSample{T: k * retryStep, V: mergedAt(u, k)})
		}
		if !slices.Equal(got[out.String()], want) {
			t.Errorf("%s: %s stored %v, want %v", name, out, got[out.String()], want)
		}
	}
	if c := up.HeadConflicts(); len(c) > 0 {
		t.Errorf("%s: sent two values for one timestamp: %v", name, c)
	}
}

// Retries after a restart mix samples the upstream has (written, answer
// lost) with samples it never had (finalized while it was down). Prometheus'
// RW 1.0 receiver rolls the whole retry request back for the first kind; the
// second kind must still reach it (RW 2.0 writes them partially; bisection
// must not break that either).
func TestRetriesUpstreamHasAPrefix(t *testing.T) {
	for _, proto := range []string{ctV1, ctV2} {
		t.Run(protoLabel(mustProto(t, proto)), func(t *testing.T) {
			dir := t.TempDir()
			up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
			m := NewMetrics(nil)

			// Process 1. A catch-up request with steps 1-3: written
			// upstream, the answer lost.
			p, stop := durableMerge(t, dir)
			h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 200*time.Millisecond)}, WithMetrics(m))
			up.Set(rwtest.Delay(time.Second))
			sendScrape(t, h, proto, http.StatusGatewayTimeout, 1, 1, 2, 3)
			// The upstream is down for steps 4 and 5.
			up.Set(rwtest.Delay(0), rwtest.Answer(http.StatusServiceUnavailable, "down"))
			sendScrape(t, h, proto, http.StatusServiceUnavailable, 1, 4)
			sendScrape(t, h, proto, http.StatusServiceUnavailable, 1, 5)
			stop()

			// Process 2, the upstream back: steps 1-5 go as retries; the
			// upstream has 1-3.
			up.Set(rwtest.Answer(http.StatusNoContent, ""))
			p, _ = durableMerge(t, dir)
			h = NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}, WithMetrics(m))
			for k := int64(6); k <= 8; k++ {
				users := 1
				if k == 8 {
					users = 0 // a request without sources carries step 7
				}
				sendScrape(t, h, proto, http.StatusNoContent, users, k)
			}
			wantEveryMergedSample(t, "upstream", up, 1, 7)
			// RW 1.0: steps 1 and 2 are older than the upstream's newest
			// (3), each refused alone; step 3 equals its newest: accepted.
			// RW 2.0: the first request wrote 4 and 5 (partially), so 1-4
			// are older than its newest.
			want := 2.0
			if proto == ctV2 {
				want = 4
			}
			if n := testutil.ToFloat64(m.retriesRefused.WithLabelValues(upstreamFor(t, up.URL, time.Second).Name())); n != want {
				t.Errorf("rwfix_merge_retries_refused_total = %v, want %v", n, want)
			}
		})
	}
}

// Many outputs retried in one round, one of which an upstream refuses: the
// others still reach it; another upstream that refuses none takes all.
func TestRetriesOneOutputOfManyRefused(t *testing.T) {
	const users = 10
	dir := t.TempDir()
	has := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())   // has user 3's steps 1-2
	clean := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead()) // has none of them
	ups := func() []*Upstream {
		a, b := upstreamFor(t, has.URL, 5*time.Second), upstreamFor(t, clean.URL, 5*time.Second)
		a.name, b.name = "has", "clean"
		return []*Upstream{a, b}
	}
	m := NewMetrics(nil)

	// Process 1, both upstreams down: steps 1 and 2 stay queued.
	down := rwtest.Answer(http.StatusServiceUnavailable, "down")
	has.Set(down)
	clean.Set(down)
	p, stop := durableMerge(t, dir)
	h := NewHandler(p, ups(), WithMetrics(m))
	sendScrape(t, h, ctV1, http.StatusServiceUnavailable, users, 1)
	sendScrape(t, h, ctV1, http.StatusServiceUnavailable, users, 2)
	stop()
	// One upstream has user 3's steps 1 and 2 (a write whose answer was
	// lost, before process 1 saw it fail).
	_, out3 := userSeries(3)
	has.HeadAppend(out3, rwtest.HeadSample{T: 1 * retryStep, V: mergedAt(3, 1)}, rwtest.HeadSample{T: 2 * retryStep, V: mergedAt(3, 2)})

	// Process 2, both back: every output's steps 1-2 go in one round of
	// retries.
	up := rwtest.Answer(http.StatusNoContent, "")
	has.Set(up)
	clean.Set(up)
	before := has.Len()
	p, _ = durableMerge(t, dir)
	h = NewHandler(p, ups(), WithMetrics(m))
	sendScrape(t, h, ctV1, http.StatusNoContent, users, 3)
	if n := has.Len() - before; n > 1+maxRetryRequests {
		t.Errorf("the retries' round sent %d requests to one upstream, want at most %d", n-1, maxRetryRequests)
	}
	sendScrape(t, h, ctV1, http.StatusNoContent, users, 4)
	sendScrape(t, h, ctV1, http.StatusNoContent, 0, 5)
	wantEveryMergedSample(t, "has", has, users, 4)
	wantEveryMergedSample(t, "clean", clean, users, 4)
	if n := testutil.ToFloat64(m.retriesRefused.WithLabelValues("has")); n != 1 {
		t.Errorf("refused by has: %v, want 1 (user 3's step 1, older than its newest)", n)
	}
	if n := testutil.ToFloat64(m.retriesRefused.WithLabelValues("clean")); n != 0 {
		t.Errorf("refused by clean: %v, want 0", n)
	}
}

// Bisection stops within its budget; what it did not reach goes again with
// the next request, until everything is settled.
func TestRetriesBudgetCarriesOver(t *testing.T) {
	const users = 40
	dir := t.TempDir()
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead(), rwtest.Answer(http.StatusServiceUnavailable, "down"))
	p, stop := durableMerge(t, dir)
	h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 5*time.Second)})
	for k := int64(1); k <= 4; k++ {
		sendScrape(t, h, ctV1, http.StatusServiceUnavailable, users, k)
	}
	stop()
	// The upstream has steps 1-4 of every other user: each of those needs
	// requests of its own, more than one round's budget.
	for u := 0; u < users; u += 2 {
		_, out := userSeries(u)
		for k := int64(1); k <= 4; k++ {
			up.HeadAppend(out, rwtest.HeadSample{T: k * retryStep, V: mergedAt(u, k)})
		}
	}
	up.Set(rwtest.Answer(http.StatusNoContent, ""))
	p, _ = durableMerge(t, dir)
	h = NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 5*time.Second)})
	before := up.Len()
	sendScrape(t, h, ctV1, http.StatusNoContent, users, 5)
	if n := up.Len() - before; n > 1+maxRetryRequests {
		t.Errorf("one round sent %d retry requests, want at most %d", n-1, maxRetryRequests)
	}
	if complete(up, users, 4) {
		t.Fatal("one round settled every retry: the budget did not bind, nothing carried over")
	}
	k := int64(6)
	for ; k < 40 && !complete(up, users, k-1); k++ {
		sendScrape(t, h, ctV1, http.StatusNoContent, users, k)
	}
	sendScrape(t, h, ctV1, http.StatusNoContent, 0, k) // carries what is left
	wantEveryMergedSample(t, "upstream", up, users, k-1)
	t.Logf("settled in %d rounds", k-5)
}

// complete reports whether the upstream has every user's merged output at
// steps 1..last.
func complete(up *rwtest.RecordingUpstream, users int, last int64) bool {
	got := up.HeadSeries()
	for u := range users {
		_, out := userSeries(u)
		if int64(len(got[out.String()])) < last {
			return false
		}
	}
	return true
}

func mustProto(t *testing.T, ct string) string {
	t.Helper()
	p, err := rwtest.ParseProto(ct)
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}
