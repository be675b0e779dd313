package main

// The differential test against Prometheus' own receiver: odd but possible
// requests, each sent to a Prometheus 3.x receiver directly and, through
// rwfix, to a second one. rwfix must answer with the same status class and
// the second receiver must store the same series and values as the first —
// or the difference is one docs/senders.md documents.

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// oddCase is one request of the corpus.
type oddCase struct {
	name  string
	proto remoteapi.WriteMessageType
	raw   []byte
	// knownDiff: the stored series differ, for the reason docs/senders.md gives.
	knownDiff string
}

// v1Raw builds an RW 1.0 series with labels exactly as given.
func v1Raw(samples []prompb.Sample, pairs ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{Samples: samples}
	for i := 0; i+1 < len(pairs); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	return ts
}

func oddCorpus(t *testing.T, now int64) []oddCase {
	one := func(v float64) []prompb.Sample { return []prompb.Sample{{Value: v, Timestamp: now}} }
	v1 := func(name string, series ...prompb.TimeSeries) oddCase {
		raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return oddCase{name: name, proto: rwtest.ProtoV1, raw: raw}
	}
	v2 := func(name string, req *writev2.Request) oddCase {
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return oddCase{name: name, proto: rwtest.ProtoV2, raw: raw}
	}
	stale := math.Float64frombits(value.StaleNaN)
	metaOnly, err := (&prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{
		Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "odd_meta", Help: "metadata only"}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	syms := []string{"", "__name__", "odd_rw2_unsorted", "job", "x", "instance", "a", "odd_rw2_nosamples", "odd_rw2_good"}
	cases := []oddCase{
		v1("unsorted labels (as vmagent sends)", v1Raw(one(1), "job", "x", "__name__", "odd_unsorted", "instance", "a")),
		v1("one series twice in a request", v1Raw(one(1), "__name__", "odd_twice"),
			v1Raw([]prompb.Sample{{Value: 2, Timestamp: now + 1000}}, "__name__", "odd_twice")),
		v1("the same sample twice", v1Raw(one(3), "__name__", "odd_same"), v1Raw(one(3), "__name__", "odd_same")),
		v1("a label with an empty value", v1Raw(one(1), "__name__", "odd_empty_value", "a", "", "b", "x")),
		v1("no metric name, beside a good series", v1Raw(one(1), "job", "odd_noname"), v1Raw(one(1), "__name__", "odd_beside_noname")),
		v1("a label name twice, beside a good series", v1Raw(one(1), "__name__", "odd_dup", "a", "1", "a", "2"), v1Raw(one(1), "__name__", "odd_beside_dup")),
		v1("an empty label name, beside a good series", v1Raw(one(1), "", "x", "__name__", "odd_emptyname"), v1Raw(one(1), "__name__", "odd_beside_emptyname")),
		v1("invalid UTF-8, beside a good series", v1Raw(one(1), "__name__", "odd_utf8", "a", "\xff"), v1Raw(one(1), "__name__", "odd_beside_utf8")),
		v1("no labels at all, beside a good series", v1Raw(one(1)), v1Raw(one(1), "__name__", "odd_beside_nolabels")),
		v1("NaN, +Inf, -Inf", v1Raw([]prompb.Sample{{Value: math.NaN(), Timestamp: now}, {Value: math.Inf(1), Timestamp: now + 1000}, {Value: math.Inf(-1), Timestamp: now + 2000}}, "__name__", "odd_special")),
		v1("a stale marker", v1Raw([]prompb.Sample{{Value: 1, Timestamp: now}, {Value: stale, Timestamp: now + 1000}}, "__name__", "odd_stale")),
		v1("samples out of order inside a series", v1Raw([]prompb.Sample{{Value: 2, Timestamp: now + 1000}, {Value: 1, Timestamp: now}}, "__name__", "odd_ooo"), v1Raw(one(1), "__name__", "odd_beside_ooo")),
		{name: "metadata only", proto: rwtest.ProtoV1, raw: metaOnly},
		{name: "empty RW 1.0 request", proto: rwtest.ProtoV1, raw: nil},
		v2("empty RW 2.0 request", &writev2.Request{Symbols: []string{""}}),
		v2("RW 2.0 label references out of name order", &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{3, 4, 1, 2, 5, 6}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}}}}),
		v2("RW 2.0 series without samples, beside a good one", &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 7}},
			{LabelsRefs: []uint32{1, 8}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}}}}),
	}
	outOfRange := v2("RW 2.0 label reference outside the symbols table, beside a good series", &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 99}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}},
		{LabelsRefs: []uint32{1, 8, 3, 4}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}}}})
	outOfRange.knownDiff = "rwfix refuses the whole request as corrupt (400); the receiver stores the other series and answers 400"
	return append(cases, outOfRange)
}

func postRaw(t *testing.T, url string, proto remoteapi.WriteMessageType, raw []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	req.Header.Set("Content-Type", wire.ContentType(proto))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// storedOdd returns every odd_* series a receiver stored, with its samples.
func storedOdd(t *testing.T, base string) map[string]string {
	t.Helper()
	r, err := query(t, base, `{__name__=~"odd_.*"}[1h]`, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range r {
		out[fmt.Sprint(s.Metric)] = fmt.Sprint(s.Values)
	}
	return out
}

func TestReceiverDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	direct, behind := twoReceivers(t)
	rwfix, _ := startRwfix(t, "--upstream.url="+behind+"/api/v1/write")
	now := time.Now().Add(-time.Minute).UnixMilli()
	var rows []string
	for _, c := range oddCorpus(t, now) {
		dc, dmsg := postRaw(t, direct+"/api/v1/write", c.proto, c.raw)
		rc, rmsg := postRaw(t, rwfix+"/api/v1/write", c.proto, c.raw)
		if dc/100 != rc/100 {
			t.Errorf("%s: receiver answered %d (%s), rwfix %d (%s)", c.name, dc, dmsg, rc, rmsg)
		}
		rows = append(rows, fmt.Sprintf("| %s | %d | %d |", c.name, dc, rc))
	}
	d, b := storedOdd(t, direct), storedOdd(t, behind)
	diffs := map[string]bool{}
	for k, v := range d {
		if b[k] != v {
			diffs[k] = true
		}
	}
	for k, v := range b {
		if d[k] != v {
			diffs[k] = true
		}
	}
	// The documented difference: the good series beside an out-of-range
	// reference (odd_rw2_good with job="x") is stored directly only.
	for k := range diffs {
		if strings.Contains(k, "odd_rw2_good") && strings.Contains(k, "job:x") {
			delete(diffs, k)
			continue
		}
		t.Errorf("stored differently: %s: receiver %s, behind rwfix %s", k, d[k], b[k])
	}
	if len(d) < 10 {
		t.Errorf("the receiver stored only %d odd series: the corpus proved little (%v)", len(d), slices.Sorted(mapsKeys(d)))
	}
	t.Logf("corpus: %d requests, %d series stored by the receiver, the same behind rwfix\n| request | receiver | rwfix |\n| --- | --- | --- |\n%s",
		len(rows), len(d), strings.Join(rows, "\n"))
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestReceiverStoresBlankedRequests: 2,000-series requests with one series
// in twenty repaired (None or a genuine 500: the merge holds them), RW 1.0
// and RW 2.0, through rwfix with its defaults to a real Prometheus 3.x
// receiver, and straight to another. rwfix blanks the repaired series in
// place (an unknown protobuf field, see remotewrite/splice.go's blankTag):
// the receiver must take the request and store every other series exactly
// as the one fed directly does.
func TestReceiverStoresBlankedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	direct, behind := twoReceivers(t)
	vm := startVictoriaMetrics(t) // RW 1.0 only: the RW 2.0 request reaches it converted
	rwfix, _ := startRwfix(t, "--upstream.url="+behind+"/api/v1/write", "--upstream.url="+vm+"/api/v1/write")
	series := rwtest.Workload{Series: 2000, Mixed: true, NoneRatio: 0.02, Scattered: true}.SeriesLabels()
	repaired := func(ls labels.Labels) bool {
		for _, n := range []string{"status_code", "exception_status"} {
			if v := ls.Get(n); v == "None" || v == "500" {
				return true
			}
		}
		return false
	}
	n := 0
	for _, ls := range series {
		if repaired(ls) {
			n++
		}
	}
	if n == 0 || n > len(series)/8 {
		t.Fatalf("%d of %d series would be repaired: not the shape this test needs", n, len(series))
	}
	now := time.Now().Add(-time.Minute).UnixMilli()
	for k, proto := range []remoteapi.WriteMessageType{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType} {
		ts := now + int64(k)*15_000
		var raw []byte
		var err error
		if proto == remoteapi.WriteV1MessageType {
			req := &prompb.WriteRequest{}
			for i, ls := range series {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}}})
			}
			raw, err = req.Marshal()
		} else {
			st := writev2.NewSymbolTable()
			req := &writev2.Request{}
			for i, ls := range series {
				req.Timeseries = append(req.Timeseries, writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil), Samples: []writev2.Sample{{Value: float64(i), Timestamp: ts}}})
			}
			req.Symbols = st.Symbols()
			raw, err = req.Marshal()
		}
		if err != nil {
			t.Fatal(err)
		}
		if c, msg := postRaw(t, direct+"/api/v1/write", proto, raw); c/100 != 2 {
			t.Fatalf("%s: the receiver answered %d: %s", proto, c, msg)
		}
		if c, msg := postRaw(t, rwfix+"/api/v1/write", proto, raw); c/100 != 2 {
			t.Fatalf("%s: rwfix answered %d: %s", proto, c, msg)
		}
	}
	if b := metricValue(t, rwfix, "rwfix_forwarded_blanked_bytes_total"); b == 0 {
		t.Fatal("rwfix blanked nothing: the test proved nothing")
	}
	stored := func(base string) map[string]string {
		r, err := query(t, base, `{__name__=~"litellm_.*"}[1h]`, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, s := range r {
			ls := labels.FromMap(s.Metric)
			if !repaired(ls) {
				out[ls.String()] = fmt.Sprint(s.Values)
			}
		}
		return out
	}
	// The blanked series are not stored: no None reached either receiver
	// behind rwfix.
	for _, base := range []string{behind, vm} {
		r, err := query(t, base, `{__name__=~"litellm_.*", status_code="None"} or {__name__=~"litellm_.*", exception_status="None"}`, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != 0 {
			t.Errorf("%s behind rwfix stored %d None series (a blanked series was read): %v", base, len(r), r[0].Metric)
		}
	}
	d := stored(direct)
	if len(d) != len(series)-n {
		t.Fatalf("the receiver fed directly stored %d untouched series, want %d", len(d), len(series)-n)
	}
	var fromVM map[string]string
	waitFor(t, "VictoriaMetrics to make the samples searchable", 30*time.Second, func() (bool, error) {
		fromVM = stored(vm)
		return len(fromVM) >= len(d), nil
	})
	for name, b := range map[string]map[string]string{"Prometheus 3.x": stored(behind), "VictoriaMetrics": fromVM} {
		diffs := 0
		for k, v := range d {
			if b[k] != v {
				if diffs++; diffs <= 3 {
					t.Errorf("%s behind rwfix stored %s as %s, the receiver fed directly as %s", name, k, b[k], v)
				}
			}
		}
		if len(b) != len(d) || diffs > 0 {
			t.Errorf("%s behind rwfix: %d untouched series, %d stored differently; directly %d", name, len(b), diffs, len(d))
		}
	}
}

// twoReceivers starts two Prometheus 3.x remote-write receivers: one fed
// directly, one behind rwfix.
func twoReceivers(t *testing.T) (direct, behind string) {
	t.Helper()
	bin := prometheus3(t)
	direct, _ = startPrometheus(t, "receiver-direct", bin, receiverConfig, "--web.enable-remote-write-receiver")
	behind, _ = startPrometheus(t, "receiver-behind", bin, receiverConfig, "--web.enable-remote-write-receiver")
	return direct, behind
}
