package remotewrite

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// What Prometheus' receiver tolerates is not refused: labels out of order are
// sorted on the way (and repaired); a series the receiver would skip is
// forwarded as it came, never repaired, and counted; the good series of the
// request go through.
func TestReceiverVerdicts(t *testing.T) {
	raw := func(pairs ...string) prompb.TimeSeries { // labels exactly as given
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i+1 < len(pairs); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		return ts
	}
	for _, tc := range []struct {
		name, reason string
		ts           prompb.TimeSeries
	}{
		{"duplicate", InvalidDuplicateName, raw("__name__", "up", "a", "1", "a", "2")},
		{"duplicate out of order", InvalidDuplicateName, raw("a", "1", "__name__", "up", "a", "2")},
		{"empty name", InvalidEmptyLabelName, raw("", "x", "__name__", "up")},
		{"invalid utf8", InvalidUTF8, raw("__name__", "up", "a", "\xff")},
		{"no labels", InvalidNoMetricName, raw()},
		{"no metric name", InvalidNoMetricName, raw("job", "x")},
		{"a None series without a metric name is not repaired", InvalidNoMetricName, raw("status_code", "None")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t)
			m := NewMetrics(prometheus.NewRegistry())
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
			in := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1}), tc.ts}}
			if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
				t.Fatalf("got %d %q, want 204", rec.Code, rec.Body)
			}
			out := decodeV1(t, up.Requests()[0].Body)
			if len(out.Timeseries) != 2 || !labelsEqualProto(out.Timeseries[1].Labels, tc.ts.Labels) {
				t.Errorf("forwarded %v, want the series as it came", out.Timeseries)
			}
			if v := testutil.ToFloat64(m.invalid.WithLabelValues(tc.reason)); v != 1 {
				t.Errorf("rwfix_series_invalid_total{reason=%q} = %v, want 1", tc.reason, v)
			}
		})
	}
	t.Run("unsorted labels are sorted and repaired", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		m := NewMetrics(prometheus.NewRegistry())
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
		// As vmagent sends: job and instance after the scraped labels.
		in := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			raw("__name__", "up", "job", "x", "instance", "a"),
			raw("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "a", "job", "x", "instance", "a"),
		}}
		if rec := post(t, h, ctV1, encodeV1(t, in)); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %q", rec.Code, rec.Body)
		}
		var sb labels.ScratchBuilder
		got := map[string]bool{}
		for _, ts := range decodeV1(t, up.Requests()[0].Body).Timeseries {
			if !slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
				t.Errorf("forwarded unsorted: %v", ts.Labels)
			}
			got[ts.ToLabels(&sb, nil).String()] = true
		}
		for _, want := range []string{`{__name__="up", instance="a", job="x"}`,
			`{__name__="litellm_proxy_total_requests_metric_total", instance="a", job="x", status_code="500", user="a"}`} {
			if !got[want] {
				t.Errorf("missing %s in %v", want, got)
			}
		}
		if v := testutil.ToFloat64(m.sorted); v != 2 {
			t.Errorf("rwfix_series_sorted_total = %v, want 2", v)
		}
	})
	t.Run("RW2 unsorted refs and an invalid UTF-8 symbol", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
		syms := []string{"", "__name__", "up", "job", "x", "instance", "a", "b", "\xfe"}
		req := &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2, 3, 4, 5, 6}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}}, // __name__, job, instance
			{LabelsRefs: []uint32{1, 2, 7, 8}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}},       // b="\xfe"
		}}
		if rec := post(t, h, ctV2, encodeV2(t, req)); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %q", rec.Code, rec.Body)
		}
		out := decodeV2(t, up.Requests()[0].Body)
		var sb labels.ScratchBuilder
		first, _ := out.Timeseries[0].ToLabels(&sb, out.Symbols)
		if first.String() != `{__name__="up", instance="a", job="x"}` {
			t.Errorf("first series %v", first)
		}
		refs := out.Timeseries[0].LabelsRefs
		for j := 2; j+1 < len(refs); j += 2 {
			if out.Symbols[refs[j]] < out.Symbols[refs[j-2]] {
				t.Errorf("refs not sorted by name: %v", refs)
			}
		}
		if got := out.Timeseries[1].LabelsRefs; !slices.Equal(got, []uint32{1, 2, 7, 8}) {
			t.Errorf("the invalid series changed: %v", got)
		}
	})
}

func TestLimitsRejectWholeRequest(t *testing.T) {
	good := v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})
	raw := func(pairs ...string) prompb.TimeSeries { // labels exactly as given: unsorted, duplicates
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i+1 < len(pairs); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		return ts
	}
	for _, tc := range []struct {
		name, reason, msg string
		ts                prompb.TimeSeries
	}{
		{"long value", ReasonLabelValueTooLong, "label a: value of 50 bytes is longer than the limit of 45", raw("__name__", "up", "a", strings.Repeat("x", 50))},
		{"long name", ReasonLabelNameTooLong, "longer than the limit of 16", raw("__name__", "up", strings.Repeat("n", 17), "x")},
		{"too many labels", ReasonTooManyLabels, "has 5 labels, more than the limit of 4", raw("__name__", "up", "a", "1", "b", "1", "c", "1", "d", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)}, WithMetrics(m))
			lim := DefaultLimits()
			lim.MaxLabelValueLength, lim.MaxLabelNameLength, lim.MaxLabelsPerSeries = 45, 16, 4
			h.UpdateLimits(lim)
			rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, tc.ts}}))
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.msg) {
				t.Errorf("got %d %q, want 400 containing %q", rec.Code, rec.Body, tc.msg)
			}
			if up.Len() != 0 {
				t.Error("a rejected request reached the upstream")
			}
			if v := testutil.ToFloat64(m.rejected.WithLabelValues(tc.reason)); v != 1 {
				t.Errorf("rwfix_requests_rejected_total{reason=%q} = %v, want 1", tc.reason, v)
			}
		})
	}
	t.Run("too many series", func(t *testing.T) {
		up := rwtest.NewRecordingUpstream(t)
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, time.Second)})
		lim := DefaultLimits()
		lim.MaxSeriesPerRequest = 1
		h.UpdateLimits(lim)
		rec := post(t, h, ctV1, encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, v1Series(otherNone, prompb.Sample{Value: 1, Timestamp: 1})}}))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "more than the limit of 1") {
			t.Errorf("got %d %q", rec.Code, rec.Body)
		}
	})
}

func labelsEqualProto(a, b []prompb.Label) bool {
	return slices.EqualFunc(a, b, func(x, y prompb.Label) bool { return x.Name == y.Name && x.Value == y.Value })
}

// TestValidateFastPathsMatchFullCheck: validate's shortcuts (plainSeries,
// the ASCII pre-checks) must give the verdicts of the
// full check (checkSeries on every series) for any input: random RW 1.0 and
// 2.0 requests with odd names and values (non-ASCII, invalid UTF-8, empty,
// duplicate, out of order, long), odd encodings (value before name, unknown
// fields, a name missing, labels split by samples), and small or default
// limits.
func TestValidateFastPathsMatchFullCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"__name__", "a", "b", "job", "é", "\xff", "", "aa", "zzzzzzz", "A", "__name__x", "_", "ab\xc3", strings.Repeat("n", 130), "a", "job",
		// Names alike in their first 8 bytes or fewer, with and without a
		// NUL (the scan compares names by their first 8 bytes first).
		"user_api_key_alias", "user_api_key_team", "user_api_key", "user_api", "user_ap", "user_api\x00", "user\x00", "user", "a\x00", "a\x00b", "\x00"}
	values := []string{"", "x", "\xc3", "ü", "long-value", "v", "\xed\xa0\x80", "ok", strings.Repeat("v", 200)}
	str := func(b []byte, num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	label := func(n string) []byte {
		v := values[r.IntN(len(values))]
		switch r.IntN(8) {
		case 0:
			return str(str(nil, 2, v), 1, n) // value first
		case 1:
			return str(str(str(nil, 1, n), 2, v), 7, "\xff\xfe") // an unknown field
		case 2:
			return str(nil, 2, v) // no name
		}
		return str(str(nil, 1, n), 2, v)
	}
	sample := func(b []byte) []byte {
		s := protowire.AppendVarint(protowire.AppendTag(protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), 0), 2, protowire.VarintType), 5)
		return protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), s)
	}
	v1 := func() []byte {
		var req []byte
		for range 1 + r.IntN(3) {
			var ts []byte
			ns := make([]string, r.IntN(7))
			for k := range ns {
				ns[k] = names[r.IntN(len(names))]
			}
			if r.IntN(2) == 0 {
				slices.Sort(ns) // in order, duplicates kept: the fast paths' case
				if r.IntN(2) == 0 {
					ns = append([]string{"__name__"}, ns...)
				}
			}
			for k, n := range ns {
				ts = protowire.AppendBytes(protowire.AppendTag(ts, 1, protowire.BytesType), label(n))
				if k == 0 && r.IntN(8) == 0 {
					ts = sample(ts) // labels split by a sample
				}
			}
			req = protowire.AppendBytes(protowire.AppendTag(req, 1, protowire.BytesType), sample(ts))
		}
		return req
	}
	v2 := func() []byte {
		syms := []string{""}
		for range 1 + r.IntN(12) {
			if r.IntN(2) == 0 {
				syms = append(syms, names[r.IntN(len(names))])
			} else {
				syms = append(syms, values[r.IntN(len(values))])
			}
		}
		if r.IntN(2) == 0 {
			syms = append(syms, "__name__")
		}
		// A quarter of the tables split by the first series: the symbols
		// after it are not in one run of bytes with the others (see
		// scanned.symRun).
		split := len(syms)
		if r.IntN(4) == 0 {
			split = r.IntN(len(syms) + 1)
		}
		var req []byte
		for _, s := range syms[:split] {
			req = str(req, 4, s)
		}
		for k := range 1 + r.IntN(3) {
			var refs []byte
			plain := r.IntN(2) == 0
			ns := make([]int, r.IntN(6))
			for k := range ns {
				ns[k] = r.IntN(len(syms))
				for try := 0; plain && try < 3 && (syms[ns[k]] == "" || !isASCII([]byte(syms[ns[k]]))); try++ {
					ns[k] = r.IntN(len(syms)) // mostly plain names
				}
			}
			if plain {
				// Names in order, with the metric name most of the
				// time and duplicates (or symbols of equal bytes)
				// some of the time: the fast path's case.
				if syms[len(syms)-1] == "__name__" && r.IntN(4) != 0 {
					ns = append(ns, len(syms)-1)
				}
				slices.SortFunc(ns, func(a, b int) int { return strings.Compare(syms[a], syms[b]) })
				if r.IntN(4) != 0 {
					ns = slices.CompactFunc(ns, func(a, b int) bool { return syms[a] == syms[b] })
				}
			}
			for _, n := range ns {
				v := r.IntN(len(syms))
				for try := 0; plain && try < 3 && (syms[v] == "" || !isASCII([]byte(syms[v]))); try++ {
					v = r.IntN(len(syms)) // mostly plain values, so that plain series are common
				}
				refs = protowire.AppendVarint(protowire.AppendVarint(refs, uint64(n)), uint64(v))
			}
			ts := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), refs)
			req = protowire.AppendBytes(protowire.AppendTag(req, 5, protowire.BytesType), sample(ts))
			if k == 0 {
				for _, s := range syms[split:] {
					req = str(req, 4, s)
				}
			}
		}
		return req
	}
	checked, plainN, plainV2 := 0, 0, 0 // plainN: series the fast check passed (plainV2: of RW 2.0)
	defer func(n int) { maxRankedNames = n }(maxRankedNames)
	for it := range 40000 {
		proto, raw := ProtoV1, v1()
		if it%2 == 1 {
			proto, raw = ProtoV2, v2()
		}
		// Every other RW 2.0 request with too many names to rank (the
		// names' bytes compared instead).
		maxRankedNames = 4096
		if it%4 == 3 {
			maxRankedNames = 0
		}
		utf := r.IntN(3) != 0
		l := DefaultLimits()
		l.ValidateUTF8 = &utf
		if r.IntN(2) == 0 {
			l.MaxLabelsPerSeries, l.MaxLabelNameLength, l.MaxLabelValueLength = 1+r.IntN(5), 1+r.IntN(140), 1+r.IntN(210)
		}
		fast, err := scan(proto, slices.Clone(raw))
		if err != nil {
			continue // malformed: refused before validate
		}
		full, _ := scan(proto, slices.Clone(raw))
		errFast := fast.validate(&l)
		var errFull error
		for i := range full.series {
			if errFull = full.checkSeries(i, &l, utf); errFull != nil {
				break
			}
		}
		checked++
		for i := range fast.series {
			if fast.plainSeries(&fast.series[i], &l) {
				plainN++
				if proto == ProtoV2 {
					plainV2++
				}
			}
		}
		if (errFast == nil) != (errFull == nil) || (errFast != nil && errFast.Error() != errFull.Error()) {
			t.Fatalf("%s utf=%v limits %+v, request %x: validate says %v, the full check %v", proto, utf, l, raw, errFast, errFull)
		}
		if errFast != nil {
			continue
		}
		for i := range fast.series {
			if fast.series[i].invalid != full.series[i].invalid || fast.series[i].unsorted != full.series[i].unsorted {
				t.Fatalf("%s utf=%v, request %x, series %d: validate says invalid=%v unsorted=%v, the full check %v %v", proto, utf, raw, i,
					fast.series[i].invalid, fast.series[i].unsorted, full.series[i].invalid, full.series[i].unsorted)
			}
		}
		if !slices.Equal(fast.invalid, full.invalid) {
			t.Fatalf("%s request %x: reasons %v, the full check %v", proto, raw, fast.invalid, full.invalid)
		}
		fast.release()
		full.release()
	}
	if checked < 10000 || plainN < 500 || plainV2 < 500 {
		t.Fatalf("only %d of 40000 random requests were well-formed, %d series plain (%d RW 2.0): the fast paths went untested", checked, plainN, plainV2)
	}
}
