package remotewrite

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
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

// After a restart, the merge state replayed from its log holds a merged
// sample of a partition this process has not seen a request of yet (no
// forward_headers: every request is in the one partition), and the sender
// has stopped. The idle flush sends it on its own — in RW 2.0, the protocol
// its sources came in: in RW 1.0 the output's start timestamp would be
// lost, and the TSDB would store the sample without it (TestSimulation
// crash seed 121, all seed 113: RW 2.0 start timestamps of 0).
func TestIdleFlushAfterRestartKeepsStartTimestamps(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	clock, start := restartable(t, ups)
	v2 := func(ts int64, withFive bool) []byte {
		st := writev2.NewSymbolTable()
		series := []writev2.TimeSeries{{
			LabelsRefs: st.SymbolizeLabels(noneTotal, nil),
			Samples:    []writev2.Sample{{Value: float64(ts / 1000), Timestamp: ts, StartTimestamp: 5000}},
		}}
		if withFive {
			series = append(series, writev2.TimeSeries{
				LabelsRefs: st.SymbolizeLabels(fixedTotal, nil),
				Samples:    []writev2.Sample{{Value: 100, Timestamp: ts, StartTimestamp: 3000}},
			})
		}
		return encodeV2(t, &writev2.Request{Symbols: st.Symbols(), Timeseries: series})
	}

	p, m, h := start()
	if rec := post(t, h, ctV2, v2(15000, true)); rec.Code/100 != 2 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	clock.Add(15 * time.Second)
	if rec := post(t, h, ctV2, v2(30000, false)); rec.Code/100 != 2 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if !p.MergePending() {
		t.Fatal("no merged sample is held: the test shows nothing")
	}
	sent := up.Len()
	if err := m.Close(); err != nil { // SIGTERM: the state stays in the log
		t.Fatal(err)
	}

	p, m, h = start()
	t.Cleanup(func() { _ = m.Close() })
	if !p.MergePending() {
		t.Fatal("the restart did not replay the held sample")
	}
	clock.Add(p.MaxWait() + time.Second)
	h.FlushIdle(context.Background())
	if p.MergePending() {
		t.Error("the merge still has samples pending")
	}
	var got []series.Sample
	for i, r := range up.Requests()[sent:] {
		if r.Proto != ProtoV2 {
			t.Errorf("flush request %d went as %q, want RW 2.0 (its sources came in RW 2.0)", i, r.Proto)
			continue
		}
		got = append(got, mergedSamples(t, r)...)
	}
	// At 30 s: None 30 plus the 500's latest, 100; started at the earliest
	// of the sources' start timestamps.
	if want := []series.Sample{{T: 30000, ST: 3000, V: 130}}; !slices.Equal(got, want) {
		t.Errorf("the idle flush sent %v of the merged output, want %v", got, want)
	}
}

// forwardingUpstream is an upstream at url that forwards the sender's
// headers names (none: forward_headers unset).
func forwardingUpstream(t *testing.T, url string, names ...string) *Upstream {
	t.Helper()
	var uc UpstreamConfig
	doc := "url: " + url
	if len(names) > 0 {
		doc += "\nforward_headers: [" + strings.Join(names, ", ") + "]"
	}
	if err := yaml.UnmarshalStrict([]byte(doc), &uc); err != nil {
		t.Fatal(err)
	}
	uc.Timeout = model.Duration(5 * time.Second)
	u, err := NewUpstream(uc)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// postFrom posts body as the sender with the given headers (name, value
// pairs) and wants it accepted.
func postFrom(t *testing.T, h http.Handler, ct string, body []byte, header ...string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", "snappy")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// mergedSamples returns the samples of the merged output fixedTotal that
// request r carries.
func mergedSamples(t *testing.T, r rwtest.Request) []series.Sample {
	t.Helper()
	var got []series.Sample
	if r.Proto == ProtoV2 {
		req := decodeV2(t, r.Body)
		var sb labels.ScratchBuilder
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				t.Fatal(err)
			}
			if labels.Equal(ls, fixedTotal) {
				for _, smp := range ts.Samples {
					got = append(got, series.Sample{T: smp.Timestamp, ST: smp.StartTimestamp, V: smp.Value})
				}
			}
		}
		return got
	}
	for _, ts := range decodeV1(t, r.Body).Timeseries {
		if labels.Equal(ts.ToLabels(&labels.ScratchBuilder{}, nil), fixedTotal) {
			for _, smp := range ts.Samples {
				got = append(got, series.Sample{T: smp.Timestamp, V: smp.Value})
			}
		}
	}
	return got
}

// orphansFlushedAfterRestart holds a merged sample for each of tenants (the
// value of X-Scope-OrgID of its sender, "": none): tenant i's None counts
// 10i+3 then 10i+4, its 500 10i+5, so its sample at 30 s, 20i+9, waits for
// its 500. A reload changes the upstreams' forward_headers from before to
// after, making the outputs orphans of their old partitions; rwfix restarts
// on its log (after forget, if set, has dropped every origin the state
// knew: as a log written before origins were kept). The senders have
// stopped: no request names the old partitions again, none adopts an
// orphan. It runs the idle flush once every held sample is due and returns
// what it sent of the merged output, by the X-Scope-OrgID it went with.
func orphansFlushedAfterRestart(t *testing.T, before, after, tenants []string, forget bool, opts ...Option) (got map[string][]series.Sample, m *relabel.Merger) {
	t.Helper()
	up := rwtest.NewRecordingUpstream(t)
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(1000, 0))
	scheme := func(names []string) string { return strings.Join(names, "\x00") + "\x01" } // as the reloader names it
	pipeline := func(names []string) *relabel.Pipeline {
		t.Helper()
		p, err := relabel.New(relabel.DefaultConfig(), nil, m)
		if err != nil {
			t.Fatal(err)
		}
		p.Activate(m.Partitions(scheme(names))) // as the reloader does
		return p
	}
	start := func(names []string) *Handler {
		t.Helper()
		m = relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
		m.SetClock(clock.Now)
		if _, err := m.OpenLog(dir); err != nil {
			t.Fatal(err)
		}
		return NewHandler(pipeline(names), []*Upstream{forwardingUpstream(t, up.URL, names...)},
			append([]Option{WithMetrics(NewMetrics(prometheus.NewRegistry()))}, opts...)...)
	}
	from := func(tenant string) []string {
		if tenant == "" {
			return nil
		}
		return []string{"X-Scope-OrgID", tenant}
	}
	h := start(before)
	for i, tenant := range tenants {
		k := float64(10 * i)
		postFrom(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			v1Series(noneTotal, prompb.Sample{Value: k + 3, Timestamp: 15000}), v1Series(fixedTotal, prompb.Sample{Value: k + 5, Timestamp: 15000}),
		}}), from(tenant)...)
	}
	clock.Add(15 * time.Second)
	for i, tenant := range tenants {
		postFrom(t, h, ctV1, oneSeries(t, noneTotal, prompb.Sample{Value: float64(10*i) + 4, Timestamp: 30000}), from(tenant)...)
	}
	if !m.Pending() {
		t.Fatal("no merged sample is held: the test shows nothing")
	}
	h.Update(pipeline(after), []*Upstream{forwardingUpstream(t, up.URL, after...)}) // the reload
	if forget {
		for _, tenant := range tenants {
			m.ForgetOrigin(partition(http.Header{"X-Scope-Orgid": {tenant}}, []*Upstream{forwardingUpstream(t, up.URL, before...)}))
		}
	}
	// SIGTERM: the state stays in the log.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	sent := up.Len()

	h = start(after)
	t.Cleanup(func() { _ = m.Close() })
	if !m.Pending() {
		t.Fatal("the restart did not replay the held samples")
	}
	clock.Add(time.Duration(relabel.DefaultCollisionConfig().MaxWait) + time.Second)
	h.FlushIdle(context.Background())
	got = map[string][]series.Sample{}
	for _, r := range up.Requests()[sent:] {
		if s := mergedSamples(t, r); len(s) > 0 {
			tenant := r.Header.Get("X-Scope-OrgID")
			got[tenant] = append(got[tenant], s...)
		}
	}
	return got, m
}

// After a forward_headers reload and a restart, with every sender stopped,
// the idle flush sends each tenant's held sample on its own, with that
// tenant's headers as its sender sent them (those the upstreams forward now
// go on): never held forever, never in another tenant.
func TestIdleFlushAfterRestartSendsOrphansWithTheirHeaders(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after []string // forward_headers
		tenants       []string
	}{
		{"forward_headers turned on", nil, []string{"X-Scope-OrgID"}, []string{""}},
		{"a forwarded header added", []string{"X-Scope-OrgID"}, []string{"X-Scope-OrgID", "X-Scope-Team"}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, m := orphansFlushedAfterRestart(t, tc.before, tc.after, tc.tenants, false)
			if m.Pending() {
				t.Error("the merge still holds samples: the idle flush did not send them")
			}
			for i, tenant := range tc.tenants {
				if want := []series.Sample{{T: 30000, V: float64(20*i) + 9}}; !slices.Equal(got[tenant], want) {
					t.Errorf("tenant %q: the idle flush sent %v of its merged output, want %v (all: %v)", tenant, got[tenant], want, got)
				}
			}
		})
	}
}

// The same from a log written before rwfix kept the partitions' origins:
// which tenant a partition's samples are of is then known only when its
// sender sent no forwarded header — flushed without one, as before the
// restart. Another tenant's samples could land in the wrong tenant: they
// stay held for its next request (or an adoption), and rwfix warns.
func TestIdleFlushAfterRestartWithoutOrigins(t *testing.T) {
	var logs bytes.Buffer
	got, m := orphansFlushedAfterRestart(t, []string{"X-Scope-OrgID"}, []string{"X-Scope-OrgID", "X-Scope-Team"}, []string{"", "a"}, true,
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if want := []series.Sample{{T: 30000, V: 9}}; !slices.Equal(got[""], want) {
		t.Errorf("the sender without a tenant header: the idle flush sent %v, want %v", got[""], want)
	}
	if len(got["a"]) > 0 || len(got) != 1 {
		t.Errorf("tenant a's held sample went out (%v) though its headers were not known", got)
	}
	if !m.Pending() {
		t.Error("tenant a's held sample is no longer held")
	}
	if !strings.Contains(logs.String(), "forwarded headers are not known") {
		t.Errorf("no warning logged; logs:\n%s", logs.String())
	}
}

// The protocol a partition's sender speaks is kept in the merge log: after
// a restart, the idle flush sends a held merged sample in it — RW 2.0 from
// an RW 2.0 sender, though no start timestamp tells so (a flush once took
// every sample without one for RW 1.0's) — and RW 1.0 from an RW 1.0 one.
func TestIdleFlushAfterRestartKeepsProtocol(t *testing.T) {
	for _, ct := range []string{ctV1, ctV2} {
		t.Run(ct, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t)
			ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
			clock, start := restartable(t, ups)
			body := func(ts int64, withFive bool) []byte {
				s := []prompb.TimeSeries{v1Series(noneTotal, prompb.Sample{Value: float64(ts / 1000), Timestamp: ts})}
				if withFive {
					s = append(s, v1Series(fixedTotal, prompb.Sample{Value: 100, Timestamp: ts}))
				}
				if ct == ctV1 {
					return encodeV1(t, &prompb.WriteRequest{Timeseries: s})
				}
				st := writev2.NewSymbolTable()
				req := &writev2.Request{}
				for _, ts := range s {
					req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
						LabelsRefs: st.SymbolizeLabels(ts.ToLabels(&labels.ScratchBuilder{}, nil), nil),
						Samples:    []writev2.Sample{{Value: ts.Samples[0].Value, Timestamp: ts.Samples[0].Timestamp}},
					})
				}
				req.Symbols = st.Symbols()
				return encodeV2(t, req)
			}
			p, m, h := start()
			postFrom(t, h, ct, body(15000, true))
			clock.Add(15 * time.Second)
			postFrom(t, h, ct, body(30000, false))
			if !p.MergePending() {
				t.Fatal("no merged sample is held: the test shows nothing")
			}
			sent := up.Len()
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}

			p, m, h = start()
			t.Cleanup(func() { _ = m.Close() })
			clock.Add(p.MaxWait() + time.Second)
			h.FlushIdle(context.Background())
			if p.MergePending() {
				t.Error("the merge still has samples pending")
			}
			want := ProtoV1
			if ct == ctV2 {
				want = ProtoV2
			}
			var got []series.Sample
			for i, r := range up.Requests()[sent:] {
				if r.Proto != want {
					t.Errorf("flush request %d went as %q, want %q (its sender's)", i, r.Proto, want)
				}
				got = append(got, mergedSamples(t, r)...)
			}
			if want := []series.Sample{{T: 30000, V: 130}}; !slices.Equal(got, want) {
				t.Errorf("the idle flush sent %v of the merged output, want %v", got, want)
			}
		})
	}
}

// restartable returns a clock at 1,000 s and start, which starts the
// LiteLLM preset on a merge log in a directory of its own (replaying it
// from the second call on: a restart) and a handler forwarding to ups.
func restartable(t *testing.T, ups []*Upstream) (*rwtest.Clock, func() (*relabel.Pipeline, *relabel.Merger, *Handler)) {
	dir := t.TempDir()
	clock := rwtest.NewClock(time.Unix(1000, 0))
	return clock, func() (*relabel.Pipeline, *relabel.Merger, *Handler) {
		t.Helper()
		p, m := litellmOnLog(t, dir, clock.Now)
		return p, m, NewHandler(p, ups, WithMetrics(NewMetrics(prometheus.NewRegistry())))
	}
}
