package remotewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// randomRequest builds a valid remote-write request (no duplicate series) from
// a small universe of LiteLLM-like series, so that "None" and "500" series
// collide often, with stale markers, exemplars, native histograms and
// metadata mixed in. ts is the request's base timestamp.
func randomRequest(rng *rand.Rand, ts int64) *prompb.WriteRequest {
	names := []string{
		"litellm_proxy_total_requests_metric_total", "litellm_proxy_total_requests_metric_created",
		"litellm_proxy_failed_requests_metric_total", "litellm_request_latency_seconds", "up",
	}
	codes := []string{"200", "500", "None", "429"}
	users := []string{"alice", "bob"}
	seen := map[string]bool{}
	req := &prompb.WriteRequest{}
	for range 1 + rng.IntN(24) {
		name := names[rng.IntN(len(names))]
		b := labels.NewBuilder(labels.EmptyLabels())
		b.Set("__name__", name).Set("user", users[rng.IntN(2)]).Set("hashed_api_key", strings.Repeat("ab", 32))
		switch {
		case strings.HasPrefix(name, "litellm_proxy_total"):
			b.Set("status_code", codes[rng.IntN(len(codes))])
		case strings.HasPrefix(name, "litellm_proxy_failed"):
			b.Set("exception_status", codes[1+rng.IntN(3)])
		}
		ls := b.Labels()
		if seen[ls.String()] {
			continue
		}
		seen[ls.String()] = true
		s := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
		if name == "litellm_request_latency_seconds" {
			s.Histograms = []prompb.Histogram{prompb.FromIntHistogram(ts, testHistogram())}
		} else {
			for j := range 1 + rng.IntN(3) {
				v := float64(rng.IntN(1000)) + float64(ts)/1000
				if rng.IntN(15) == 0 {
					v = math.Float64frombits(value.StaleNaN)
				}
				s.Samples = append(s.Samples, prompb.Sample{Value: v, Timestamp: ts + int64(j)*100})
			}
		}
		if rng.IntN(6) == 0 {
			s.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: strconv.Itoa(rng.IntN(99))}}, Value: 1, Timestamp: ts}}
		}
		switch rng.IntN(10) {
		case 0: // out of name order, as vmagent sends (sorted on the way)
			rng.Shuffle(len(s.Labels), func(i, j int) { s.Labels[i], s.Labels[j] = s.Labels[j], s.Labels[i] })
		case 1: // a duplicate label name: invalid, forwarded as it came
			s.Labels = append(s.Labels, prompb.Label{Name: "user", Value: "dup"})
		}
		req.Timeseries = append(req.Timeseries, s)
	}
	if rng.IntN(3) == 0 {
		req.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "litellm_proxy_total_requests_metric", Help: "total"}}
	}
	return req
}

// toV2 re-expresses a random RW 1.0 request as RW 2.0, with metadata and
// start timestamps.
func toV2(req *prompb.WriteRequest) *writev2.Request {
	st := writev2.NewSymbolTable()
	out := &writev2.Request{}
	var sb labels.ScratchBuilder
	for _, ts := range req.Timeseries {
		o := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ts.ToLabels(&sb, nil), nil)}
		for _, s := range ts.Samples {
			o.Samples = append(o.Samples, writev2.Sample{Value: s.Value, Timestamp: s.Timestamp, StartTimestamp: s.Timestamp - 5000})
		}
		for _, h := range ts.Histograms {
			o.Histograms = append(o.Histograms, writev2.FromIntHistogram(h.Timestamp-5000, h.Timestamp, h.ToIntHistogram()))
		}
		for _, e := range ts.Exemplars {
			var eb labels.ScratchBuilder
			ex := e.ToExemplar(&eb, nil)
			o.Exemplars = append(o.Exemplars, writev2.Exemplar{LabelsRefs: st.SymbolizeLabels(ex.Labels, nil), Value: ex.Value, Timestamp: ex.Ts})
		}
		o.Metadata = writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("help")}
		out.Timeseries = append(out.Timeseries, o)
	}
	out.Symbols = st.Symbols()
	return out
}

// TestFastPathMatchesReference runs random request sequences through the fast
// path (in-place index, splicing) and the reference path (generated structs,
// full re-encode), each with its own pipeline and merge state, and requires
// the same output, request after request.
func TestFastPathMatchesReference(t *testing.T) {
	configs := map[string]string{
		"merge":         "collision: {policy: merge}",
		"keep_distinct": "collision: {policy: keep_distinct}",
		"user rules": `collision: {policy: merge}
relabel_configs:
  - source_labels: [__name__]
    regex: up
    action: drop
  - regex: hashed_api_key
    action: labeldrop
  - source_labels: [user]
    regex: bob
    target_label: team
    replacement: b`,
		"no presets": "presets: []",
	}
	for name, cfg := range configs {
		for _, proto := range []string{string(ProtoV1), string(ProtoV2)} {
			t.Run(name+"/"+proto, func(t *testing.T) {
				changed := 0
				for seed := uint64(1); seed <= 20; seed++ {
					rng := rand.New(rand.NewPCG(seed, 99))
					fast, ref := litellmPipeline(t, cfg), litellmPipeline(t, cfg)
					// Both merge states follow the samples' time, so that
					// merged outputs leave their learning within the run.
					var now int64
					clock := func() time.Time { return time.UnixMilli(now) }
					fast.SetMergeClock(clock)
					ref.SetMergeClock(clock)
					for step := int64(1); step <= 12; step++ {
						now = step * 10000
						v1 := randomRequest(rng, step*10000)
						raw := marshalAs(t, v1, proto != string(ProtoV1))
						got, gotChanged := runFast(t, fast, proto, raw)
						want, wantChanged := runReference(t, ref, proto, raw)
						if gotChanged {
							changed++
						}
						if gotChanged != wantChanged {
							t.Fatalf("seed %d step %d: changed = %v, reference %v", seed, step, gotChanged, wantChanged)
						}
						if g, w := rwtest.MustRender(t, proto, got), rwtest.MustRender(t, proto, want); g != w {
							t.Fatalf("seed %d step %d: fast path differs from reference:\nfast:\n%s\nreference:\n%s\ninput:\n%s",
								seed, step, g, w, rwtest.MustRender(t, proto, raw))
						}
					}
				}
				if name != "no presets" && changed == 0 {
					t.Error("no request was changed: the comparison proved nothing")
				}
			})
		}
	}
}

func remoteapiType(p string) remoteapi.WriteMessageType { return remoteapi.WriteMessageType(p) }

func runFast(t *testing.T, r series.Repairer, proto string, raw []byte) ([]byte, bool) {
	t.Helper()
	// Scanned from a copy: encodeForward blanks series in the scanned
	// bytes, as the handler's own decoded buffer.
	s, err := scan(remoteapiType(proto), slices.Clone(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	lim := DefaultLimits()
	if err := s.validate(&lim); err != nil {
		t.Fatal(err)
	}
	s.sortLabels()
	_, mr := applyRepair(s, r, "")
	defer mr.done(true, allSamples(mr.retries()))
	if !s.changed() {
		return raw, false
	}
	s.blank = DefaultBlankShare // as the handler encodes
	blank, whole := s.blanking()
	head, tail := s.encodeForward(nil, blank, whole)
	return slices.Concat(head, tail), true
}

func runReference(t *testing.T, r series.Repairer, proto string, raw []byte) ([]byte, bool) {
	t.Helper()
	b, err := decode(remoteapiType(proto), raw)
	if err != nil {
		t.Fatal(err)
	}
	res, mr := b.repair(r, "")
	defer mr.done(true, allSamples(mr.retries()))
	if !res.Changed && b.sorted == 0 {
		return raw, false
	}
	out, err := b.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out, true
}
