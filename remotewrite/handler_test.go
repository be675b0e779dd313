package remotewrite

import (
	"bytes"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

const (
	ctV1 = wire.ContentTypeV1
	ctV2 = wire.ContentTypeV2
)

func upstreamFor(t testing.TB, url string, timeout time.Duration) *Upstream {
	t.Helper()
	var c UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+url), &c); err != nil {
		t.Fatal(err)
	}
	c.Timeout = model.Duration(timeout)
	u, err := NewUpstream(c)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func litellmPipeline(t testing.TB, rules string) *relabel.Pipeline {
	t.Helper()
	cfg := relabel.DefaultConfig()
	if err := yaml.UnmarshalStrict([]byte(rules), &cfg); err != nil {
		t.Fatal(err)
	}
	p, err := relabel.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A clock that jumps 3 minutes at every reading: a new output has
	// learned its sources (max_wait) by the time its own request collects,
	// so that one request shows what a merge sends. (The merge's timing has
	// its own tests in package relabel.)
	var ticks atomic.Int64
	p.SetMergeClock(func() time.Time { return time.Unix(0, 0).Add(time.Duration(ticks.Add(1)) * 3 * time.Minute) })
	return p
}

func post(t *testing.T, h http.Handler, ct string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", "snappy")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func v1Series(lbls labels.Labels, samples ...prompb.Sample) prompb.TimeSeries {
	return prompb.TimeSeries{Labels: prompb.FromLabels(lbls, nil), Samples: samples}
}

func encodeV1(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// marshalAs is req's uncompressed body in RW 1.0, or in RW 2.0 (toV2).
func marshalAs(t testing.TB, req *prompb.WriteRequest, rw2 bool) []byte {
	t.Helper()
	var raw []byte
	var err error
	if rw2 {
		raw, err = toV2(req).Marshal()
	} else {
		raw, err = req.Marshal()
	}
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func decodeV1(t *testing.T, body []byte) *prompb.WriteRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return &req
}

var (
	noneTotal  = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a")
	fixedTotal = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500", "user", "a")
	okTotal    = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "200", "user", "a")
	otherNone  = labels.FromStrings("__name__", "other_metric", "status_code", "None")
)

func TestHandlerRejectsBadInput(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithLimits(1000, 2000))
	good := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})}})
	big := snappy.Encode(nil, bytes.Repeat([]byte{0}, 5000)) // compresses small, decodes to 5000 bytes
	for _, tc := range []struct {
		name, method, ct, enc string
		body                  []byte
		code                  int
		msg                   string
	}{
		{"GET", http.MethodGet, ctV1, "snappy", good, 405, ""},
		{"unknown content type", http.MethodPost, "text/plain", "snappy", good, 415, "application/x-protobuf"},
		{"unknown proto", http.MethodPost, "application/x-protobuf;proto=foo.Bar", "snappy", good, 415, "foo.Bar"},
		{"gzip", http.MethodPost, ctV1, "gzip", good, 415, "gzip"},
		{"body too large", http.MethodPost, ctV1, "snappy", bytes.Repeat([]byte{1}, 1001), 413, "1000 bytes limit"},
		{"decoded too large", http.MethodPost, ctV1, "snappy", big, 413, "2000 bytes limit"},
		{"not snappy", http.MethodPost, ctV1, "snappy", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}, 400, "snappy"},
		{"corrupt protobuf", http.MethodPost, ctV1, "snappy", snappy.Encode(nil, []byte{0x0a, 0x50, 0x01}), 400, "corrupt"},
		{"RW2 ref outside symbols", http.MethodPost, ctV2, "snappy", encodeV2(t, &writev2.Request{
			Symbols: []string{"", "__name__"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1, 7}}}}), 400, "outside of the symbols table"},
		{"RW2 odd refs", http.MethodPost, ctV2, "snappy", encodeV2(t, &writev2.Request{
			Symbols: []string{"", "__name__"}, Timeseries: []writev2.TimeSeries{{LabelsRefs: []uint32{1}}}}), 400, "odd number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/api/v1/write", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			req.Header.Set("Content-Encoding", tc.enc)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, rec.Body.String(), tc.code, tc.msg)
			}
		})
	}
	if bodies := up.Bodies(); len(bodies) != 0 {
		t.Errorf("rejected requests reached the upstream: %d bodies", len(bodies))
	}
}

func TestUnchangedBatchForwardedAsOriginalBytes(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1}),
		v1Series(otherNone, prompb.Sample{Value: 2, Timestamp: 1}), // not a LiteLLM metric: untouched
	}})
	if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	bodies := up.Bodies()
	if len(bodies) != 1 || !bytes.Equal(bodies[0], body) {
		t.Fatalf("upstream did not get the original bytes")
	}
}

func TestRepairRW1KeepsSamplesBitExact(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	stale := math.Float64frombits(value.StaleNaN)
	in := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{
				Labels:    prompb.FromLabels(noneTotal, nil),
				Samples:   []prompb.Sample{{Value: 3, Timestamp: 10}, {Value: stale, Timestamp: 20}},
				Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: 10}},
			},
			v1Series(okTotal, prompb.Sample{Value: 7, Timestamp: 10}),
		},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "litellm_proxy_total_requests_metric", Help: "h"}},
	}
	if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	bodies := up.Bodies()
	out := decodeV1(t, bodies[0])
	var sb labels.ScratchBuilder
	if got := out.Timeseries[0].ToLabels(&sb, nil); !labels.Equal(got, fixedTotal) {
		t.Errorf("labels = %v, want %v", got, fixedTotal)
	}
	s := out.Timeseries[0].Samples
	if len(s) != 2 || s[0].Value != 3 || s[0].Timestamp != 10 || math.Float64bits(s[1].Value) != value.StaleNaN || s[1].Timestamp != 20 {
		t.Errorf("samples = %v, want 3@10 and the exact stale NaN @20", s)
	}
	if len(out.Timeseries[0].Exemplars) != 1 || out.Timeseries[0].Exemplars[0].Labels[0].Value != "abc" {
		t.Errorf("exemplar lost: %v", out.Timeseries[0].Exemplars)
	}
	if got := out.Timeseries[1].ToLabels(&sb, nil); !labels.Equal(got, okTotal) || out.Timeseries[1].Samples[0].Value != 7 {
		t.Errorf("untouched series changed: %v %v", got, out.Timeseries[1].Samples)
	}
	if len(out.Metadata) != 1 || out.Metadata[0].Help != "h" {
		t.Errorf("metadata lost: %v", out.Metadata)
	}
}

// forwardV1 sends one RW 1.0 request through h and returns what the upstream
// got, as label string -> samples.
func forwardV1(t *testing.T, h http.Handler, up *rwtest.RecordingUpstream, in *prompb.WriteRequest) map[string][]prompb.Sample {
	t.Helper()
	before := up.Len()
	if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	bodies := up.Bodies()
	seen := map[string][]prompb.Sample{}
	if len(bodies) == before {
		return seen // nothing forwarded
	}
	var sb labels.ScratchBuilder
	for _, ts := range decodeV1(t, bodies[len(bodies)-1]).Timeseries {
		k := ts.ToLabels(&sb, nil).String()
		if _, dup := seen[k]; dup {
			t.Fatalf("two series with labels %s forwarded in one request", k)
		}
		seen[k] = ts.Samples
	}
	return seen
}

func TestCollisionWithinRequestMerged(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	got := forwardV1(t, h, up, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(fixedTotal, prompb.Sample{Value: 5, Timestamp: 10}),
		v1Series(okTotal, prompb.Sample{Value: 9, Timestamp: 10}),
	}})
	if len(got) != 2 || len(got[fixedTotal.String()]) != 1 || got[fixedTotal.String()][0].Value != 8 || got[okTotal.String()][0].Value != 9 {
		t.Errorf("want the 500 series = 3+5 = 8 and the 200 series untouched, got %v", got)
	}
}

func TestCollisionKeepDistinct(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, "collision: {policy: keep_distinct}"), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	got := forwardV1(t, h, up, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(fixedTotal, prompb.Sample{Value: 5, Timestamp: 10}),
	}})
	marked := labels.NewBuilder(fixedTotal).Set("status_code_original", "None").Labels()
	if len(got) != 2 || got[marked.String()][0].Value != 3 || got[fixedTotal.String()][0].Value != 5 {
		t.Errorf("want %s = 3 and %s = 5, got %v", marked, fixedTotal, got)
	}
}

// keep_distinct: a series that one request carries several times (catch-up)
// is one series: repaired, never undone.
func TestKeepDistinctSeriesRepeatedInRequest(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, "collision: {policy: keep_distinct}"), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	if rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(noneTotal, prompb.Sample{Value: 4, Timestamp: 20}),
	}})); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	marked := labels.NewBuilder(fixedTotal).Set("status_code_original", "None").Labels()
	var sb labels.ScratchBuilder
	reqs := up.Requests()
	for _, ts := range decodeV1(t, reqs[len(reqs)-1].Body).Timeseries {
		if got := ts.ToLabels(&sb, nil); !labels.Equal(got, marked) {
			t.Errorf("forwarded %v, want %v (the repair undone?)", got, marked)
		}
	}
}

func TestCollisionGuardWhenMergeStateFull(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	h := NewHandler(litellmPipeline(t, "collision: {max_series: 1}"), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
	other := labels.NewBuilder(fixedTotal).Set("user", "b").Labels()
	otherNone := labels.NewBuilder(noneTotal).Set("user", "b").Labels()
	got := forwardV1(t, h, up, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}), // takes the one state slot
		v1Series(fixedTotal, prompb.Sample{Value: 5, Timestamp: 10}),
		v1Series(otherNone, prompb.Sample{Value: 1, Timestamp: 10}), // no room: must not collide
		v1Series(other, prompb.Sample{Value: 2, Timestamp: 10}),
	}})
	if got[fixedTotal.String()][0].Value != 8 || got[otherNone.String()][0].Value != 1 || got[other.String()][0].Value != 2 {
		t.Errorf("want user a merged (8) and user b forwarded unrepaired (None=1, 500=2), got %v", got)
	}
	if c := testutil.ToFloat64(m.collisions); c != 1 {
		t.Errorf("rwfix_collisions_unrepaired_total = %v, want 1", c)
	}
}

func encodeV2(t *testing.T, req *writev2.Request) []byte {
	t.Helper()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func decodeV2(t *testing.T, body []byte) *writev2.Request {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return &req
}

// rw2Request has a None series with a native histogram, an exemplar, metadata
// and start timestamps, and a series dropped by the rule in droppingRules.
func rw2Request(t int64) *writev2.Request {
	st := writev2.NewSymbolTable()
	none := st.SymbolizeLabels(noneTotal, nil)
	lat := st.SymbolizeLabels(labels.FromStrings("__name__", "latency_seconds"), nil)
	drop := st.SymbolizeLabels(labels.FromStrings("__name__", "debug_metric"), nil)
	ex := st.SymbolizeLabels(labels.FromStrings("trace_id", "t1"), nil)
	help := st.Symbolize("Total requests")
	h := writev2.FromIntHistogram(5, t, testHistogram())
	return &writev2.Request{
		Symbols: st.Symbols(),
		Timeseries: []writev2.TimeSeries{
			{
				LabelsRefs: none,
				Samples:    []writev2.Sample{{Value: 4, Timestamp: t, StartTimestamp: 5}},
				Exemplars:  []writev2.Exemplar{{LabelsRefs: ex, Value: 1, Timestamp: t}},
				Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: help},
			},
			{LabelsRefs: lat, Histograms: []writev2.Histogram{h}},
			{LabelsRefs: drop, Samples: []writev2.Sample{{Value: 1, Timestamp: t}, {Value: 2, Timestamp: t + 10}}},
		},
	}
}

const droppingRules = `
relabel_configs:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
`

func TestRW2RepairPassThroughAndWrittenHeaders(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	h := NewHandler(litellmPipeline(t, droppingRules), []*Upstream{upstreamFor(t, up.URL, time.Second)})
	rec := post(t, h, ctV2, encodeV2(t, rw2Request(10)))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	// Every sample is accounted for: 3 floats forwarded or dropped on purpose, 1 histogram, 1 exemplar.
	for hdr, want := range map[string]string{"Samples": "3", "Histograms": "1", "Exemplars": "1"} {
		if got := rec.Header().Get("X-Prometheus-Remote-Write-" + hdr + "-Written"); got != want {
			t.Errorf("%s-Written = %q, want %q", hdr, got, want)
		}
	}
	bodies, cts := up.Bodies(), up.ContentTypes()
	if len(bodies) != 1 || cts[0] != ctV2 {
		t.Fatalf("upstream got %d bodies %v, want one RW 2.0", len(bodies), cts)
	}
	out := decodeV2(t, bodies[0])
	if len(out.Timeseries) != 2 {
		t.Fatalf("got %d series, want 2 (debug_metric dropped)", len(out.Timeseries))
	}
	var sb labels.ScratchBuilder
	ls, err := out.Timeseries[0].ToLabels(&sb, out.Symbols)
	if err != nil || !labels.Equal(ls, fixedTotal) {
		t.Errorf("labels = %v (%v), want %v", ls, err, fixedTotal)
	}
	ts := out.Timeseries[0]
	if len(ts.Samples) != 1 || ts.Samples[0].StartTimestamp != 5 || ts.Samples[0].Value != 4 {
		t.Errorf("sample or start timestamp changed: %v", ts.Samples)
	}
	md, _ := ts.ToMetadata(out.Symbols)
	if md.Help != "Total requests" || md.Type != model.MetricTypeCounter {
		t.Errorf("metadata changed: %+v", md)
	}
	exl, _ := ts.Exemplars[0].ToExemplar(&sb, out.Symbols)
	if exl.Labels.Get("trace_id") != "t1" {
		t.Errorf("exemplar changed: %v", exl)
	}
	hs := out.Timeseries[1].Histograms
	if len(hs) != 1 || !hs[0].ToIntHistogram().Equals(testHistogram()) || hs[0].StartTimestamp != 5 {
		t.Errorf("histogram changed: %v", hs)
	}
}

func TestRW2FallbackToRW1(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer rwtest.UpstreamOption
	}{
		{"415", rwtest.RejectRW2()},
		{"2xx without Written headers", rwtest.OmitWritten()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t, tc.answer)
			h := NewHandler(litellmPipeline(t, droppingRules), []*Upstream{upstreamFor(t, up.URL, time.Second)})
			for i := range 2 {
				if rec := post(t, h, ctV2, encodeV2(t, rw2Request(int64(10+i*10)))); rec.Code != http.StatusNoContent {
					t.Fatalf("request %d: status %d: %s", i, rec.Code, rec.Body)
				}
			}
			bodies, cts := up.Bodies(), up.ContentTypes()
			// First request: tried in 2.0, then 1.0. Second: 1.0 straight away.
			want := []string{ctV2, ctV1, ctV1}
			if strings.Join(cts, " ") != strings.Join(want, " ") {
				t.Fatalf("content types sent %v, want %v", cts, want)
			}
			out := decodeV1(t, bodies[2])
			var sb labels.ScratchBuilder
			if len(out.Timeseries) != 2 || !labels.Equal(out.Timeseries[0].ToLabels(&sb, nil), fixedTotal) {
				t.Fatalf("RW 1.0 conversion wrong: %v", out.Timeseries)
			}
			if out.Timeseries[0].Samples[0].Value != 4 || len(out.Timeseries[1].Histograms) != 1 || len(out.Timeseries[0].Exemplars) != 1 {
				t.Errorf("samples, histograms or exemplars lost in conversion: %+v", out.Timeseries)
			}
			if len(out.Metadata) != 1 || out.Metadata[0].Help != "Total requests" {
				t.Errorf("metadata lost in conversion: %v", out.Metadata)
			}
		})
	}
}

func TestDryRunForwardsOriginalAndCounts(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 0)}, WithMetrics(m), WithDryRun(true))
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 10}),
	}})
	if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	bodies := up.Bodies()
	if len(bodies) != 1 || !bytes.Equal(bodies[0], body) {
		t.Fatal("dry run did not forward the original bytes")
	}
	if v := testutil.ToFloat64(m.dryRun.WithLabelValues("repaired")) + testutil.ToFloat64(m.dryRun.WithLabelValues("merged")); v == 0 {
		t.Error("dry run counted nothing that the rules would have changed")
	}
}

// TestUpstreamFailureLoggedOnce: an upstream failure that the sender
// retries is one WARN naming the upstream and its answer — not also an
// ERROR from the embedded write handler. A refusal (4xx, the sender drops
// the batch) is one ERROR.
func TestUpstreamFailureLoggedOnce(t *testing.T) {
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})}})
	for _, tc := range []struct {
		code  int
		msg   string
		level string
	}{
		{503, "tsdb overloaded", "WARN"},
		{500, "disk full", "WARN"},
		{400, "out of order sample", "ERROR"},
	} {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, nil))
		up := rwtest.NewRecordingUpstream(t, rwtest.Answer(tc.code, tc.msg))
		u := upstreamFor(t, up.URL, time.Second)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{u}, WithLogger(logger))
		if rec := post(t, h, ctV1, body); rec.Code != tc.code {
			t.Fatalf("answer %d, want %d", rec.Code, tc.code)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 1 {
			t.Errorf("upstream answering %d: %d log lines, want 1:\n%s", tc.code, len(lines), logs.String())
			continue
		}
		for _, want := range []string{"level=" + tc.level, "upstream=" + u.Name(), "code=" + strconv.Itoa(tc.code), tc.msg} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("upstream answering %d: the log line lacks %q:\n%s", tc.code, want, lines[0])
			}
		}
	}
}

// TestDryRunCountsWhatWouldChange: a dry run counts each series once for
// what the rules would do to it — repaired: its labels would change (merged
// or not), merged: it would be summed with another series (the genuine 500
// included), dropped — consistent with rwfix_series_repaired_total; a
// genuine 500 series that nothing lands on counts for nothing; the log line
// says the same and shows an example.
func TestDryRunCountsWhatWouldChange(t *testing.T) {
	series := func(user, code string) labels.Labels {
		return labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", user)
	}
	reg := prometheus.NewRegistry()
	cfg := relabel.DefaultConfig()
	cfg.RelabelConfigs = litellmPipelineRules(t, `relabel_configs: [{source_labels: [user], regex: drop-me, action: drop}]`)
	p, err := relabel.New(cfg, relabel.NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	var logs bytes.Buffer
	h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 0)}, WithMetrics(m), WithDryRun(true),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(series("alone", "None"), prompb.Sample{Value: 3, Timestamp: 10}),  // repaired, nothing to merge with
		v1Series(series("genuine", "500"), prompb.Sample{Value: 5, Timestamp: 10}), // untouched
		v1Series(series("both", "None"), prompb.Sample{Value: 1, Timestamp: 10}),   // repaired and merged
		v1Series(series("both", "500"), prompb.Sample{Value: 2, Timestamp: 10}),    // merged
		v1Series(series("drop-me", "200"), prompb.Sample{Value: 2, Timestamp: 10}), // dropped
		v1Series(series("ok", "200"), prompb.Sample{Value: 7, Timestamp: 10}),      // untouched
	}})
	if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	got := map[string]float64{}
	for _, a := range []string{"repaired", "merged", "dropped"} {
		got[a] = testutil.ToFloat64(m.dryRun.WithLabelValues(a))
	}
	if want := map[string]float64{"repaired": 2, "merged": 2, "dropped": 1}; !maps.Equal(got, want) {
		t.Errorf("rwfix_dry_run_series_total %v, want %v", got, want)
	}
	if v := rwtest.CounterValue(t, reg, "rwfix_series_repaired_total"); v != got["repaired"] {
		t.Errorf("rwfix_series_repaired_total %v, rwfix_dry_run_series_total{action=\"repaired\"} %v: they must agree", v, got["repaired"])
	}
	log := logs.String()
	for _, want := range []string{"repaired=2", "merged=2", "dropped=1", `status_code=\"None\"`, `-> `} {
		if !strings.Contains(log, want) {
			t.Errorf("the dry-run log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, `example=""`) {
		t.Errorf("the dry-run log has no example:\n%s", log)
	}
}

func litellmPipelineRules(t *testing.T, doc string) []*promrelabel.Config {
	t.Helper()
	var c struct {
		Rules []*promrelabel.Config `yaml:"relabel_configs"`
	}
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	return c.Rules
}
