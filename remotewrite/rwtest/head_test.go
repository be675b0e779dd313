package rwtest

import (
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// headV1 is an RW 1.0 body with one sample per series.
func headV1(t *testing.T, samples map[string]HeadSample) []byte {
	t.Helper()
	req := &prompb.WriteRequest{}
	for _, name := range slices.Sorted(maps.Keys(samples)) {
		s := samples[name]
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: name}},
			Samples: []prompb.Sample{{Timestamp: s.T, Value: s.V}}})
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func headV2(t *testing.T, samples map[string]HeadSample) []byte {
	t.Helper()
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, name := range slices.Sorted(maps.Keys(samples)) {
		s := samples[name]
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", name), nil),
			Samples:    []writev2.Sample{{Timestamp: s.T, Value: s.V}}})
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// The head's verdicts are Prometheus': newer stored, equal accepted and not
// stored twice, older or another value at the newest timestamp refused;
// RW 1.0 rolls the whole request back, RW 2.0 keeps the rest.
func TestPrometheusHeadVerdicts(t *testing.T) {
	u := NewRecordingUpstream(t, PrometheusHead())
	a, b := labels.FromStrings("__name__", "a").String(), labels.FromStrings("__name__", "b").String()
	u.HeadAppend(labels.FromStrings("__name__", "a"), HeadSample{T: 10, V: 1}, HeadSample{T: 20, V: 2})
	for _, tc := range []struct {
		name    string
		body    []byte
		ct      string
		code    int
		a, b    []HeadSample
		conflct int
	}{
		{"equal to the newest: accepted, once", headV1(t, map[string]HeadSample{"a": {20, 2}, "b": {5, 1}}), wire.ContentTypeV1, 204,
			[]HeadSample{{10, 1}, {20, 2}}, []HeadSample{{5, 1}}, 0},
		{"RW 1.0 out of order: all rolled back", headV1(t, map[string]HeadSample{"a": {10, 1}, "b": {6, 2}}), wire.ContentTypeV1, 400,
			[]HeadSample{{10, 1}, {20, 2}}, []HeadSample{{5, 1}}, 0},
		{"RW 1.0 duplicate: all rolled back", headV1(t, map[string]HeadSample{"a": {20, 9}, "b": {6, 2}}), wire.ContentTypeV1, 400,
			[]HeadSample{{10, 1}, {20, 2}}, []HeadSample{{5, 1}}, 1},
		{"RW 2.0 out of order: the rest written", headV2(t, map[string]HeadSample{"a": {10, 1}, "b": {6, 2}}), wire.ContentTypeV2, 400,
			[]HeadSample{{10, 1}, {20, 2}}, []HeadSample{{5, 1}, {6, 2}}, 1},
		{"newer: stored", headV1(t, map[string]HeadSample{"a": {30, 3}, "b": {7, 3}}), wire.ContentTypeV1, 204,
			[]HeadSample{{10, 1}, {20, 2}, {30, 3}}, []HeadSample{{5, 1}, {6, 2}, {7, 3}}, 1},
	} {
		resp := send(t, u.URL, tc.ct, tc.body)
		resp.Body.Close()
		got := u.HeadSeries()
		if resp.StatusCode != tc.code || !slices.Equal(got[a], tc.a) || !slices.Equal(got[b], tc.b) || len(u.HeadConflicts()) != tc.conflct {
			t.Errorf("%s: %d, a=%v b=%v conflicts %v; want %d, a=%v b=%v, %d conflicts",
				tc.name, resp.StatusCode, got[a], got[b], u.HeadConflicts(), tc.code, tc.a, tc.b, tc.conflct)
		}
	}
	// Configured to fail, it stores nothing.
	u.Set(Answer(http.StatusServiceUnavailable, "down"))
	resp := send(t, u.URL, wire.ContentTypeV1, headV1(t, map[string]HeadSample{"a": {40, 4}}))
	resp.Body.Close()
	if got := u.HeadSeries()[a]; resp.StatusCode != http.StatusServiceUnavailable || len(got) != 3 {
		t.Errorf("a failing head: %d, a=%v; want 503 and nothing stored", resp.StatusCode, got)
	}
}
