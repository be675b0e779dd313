package remotewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzScan: any bytes, either protocol. The scanner must not panic; what it
// accepts must repair, encode, and scan again.
func FuzzScan(f *testing.F) {
	v1, v2 := fixtureSeeds(f)
	for _, b := range v1 {
		f.Add(false, b)
	}
	for _, b := range v2 {
		f.Add(true, b)
	}
	f.Fuzz(func(t *testing.T, rw2 bool, raw []byte) {
		proto := protoFor(rw2)
		s, err := scan(proto, raw)
		if err != nil {
			return
		}
		defer s.release()
		checkHasExemplars(t, s)
		checkLabelNotes(t, s)
		checkGet(t, s)
		lim := DefaultLimits()
		if s.validate(&lim) != nil {
			return
		}
		checkMinTime(t, s)
		p := litellmPipeline(t, "collision: {policy: merge}")
		_, mr := applyRepair(s, p, "")
		defer mr.done(true, allSamples(mr.retries()))
		if !s.changed() {
			return
		}
		out := s.encode(nil)
		s2, err := scan(proto, out)
		if err != nil {
			t.Fatalf("the re-encoded request does not scan: %v", err)
		}
		s2.release()
	})
}

// checkHasExemplars: a series' hasEx tells whether its message has a field
// numbered as exemplars, of any wire type (patchable relies on it).
func checkHasExemplars(t *testing.T, s *scanned) {
	t.Helper()
	num := protowire.Number(v1SeriesExemplars)
	if s.proto == ProtoV2 {
		num = v2SeriesExemplars
	}
	for i := range s.series {
		si := &s.series[i]
		want := false
		b := s.raw[:si.body.end]
		for off := int(si.body.off); off < len(b); {
			n, _, _, end := next(b, off)
			if end < 0 {
				t.Fatalf("series %d does not walk", i)
			}
			want = want || n == num
			off = end
		}
		if si.hasEx != want {
			t.Fatalf("series %d: hasEx %v, its message has an exemplars field: %v", i, si.hasEx, want)
		}
	}
}

// checkLabelNotes: what the RW 1.0 scan noted of each series' labels for
// plainSeries (its fast path by nameKey, the general loop by noteLabel) is
// what the labels say: a metric name; some name empty, not after the one
// before, or the metric name without a value; the longest name and value
// (bounds where below 128, the fast path's labels being shorter).
func checkLabelNotes(t *testing.T, s *scanned) {
	t.Helper()
	if s.proto == ProtoV2 {
		return
	}
	for i := range s.series {
		si := &s.series[i]
		var hasName, notPlain bool
		var nameMax, valueMax uint32
		var prev string
		for j := si.l0; j < si.l1; j += 2 {
			name, value := s.str(s.lbls[j]), s.str(s.lbls[j+1])
			nameMax, valueMax = max(nameMax, uint32(len(name))), max(valueMax, uint32(len(value)))
			notPlain = notPlain || name == "" || j > si.l0 && prev != "" && name <= prev
			if name == "__name__" {
				hasName = true
				notPlain = notPlain || value == ""
			}
			prev = name
		}
		if si.hasName != hasName || si.notPlain != notPlain {
			t.Fatalf("series %d: hasName %v notPlain %v, its labels say %v %v", i, si.hasName, si.notPlain, hasName, notPlain)
		}
		for _, m := range [][2]uint32{{si.nameMax, nameMax}, {si.valueMax, valueMax}} {
			if m[0] < m[1] || m[0] > m[1] && m[0] >= 128 {
				t.Fatalf("series %d: noted the longest %d, its labels' is %d", i, m[0], m[1])
			}
		}
	}
}

// TestScanLabelNotes runs checkLabelNotes on random RW 1.0 series whose
// names are the fast path's edge cases: names sharing their first eight
// bytes, one a prefix of the other, with zero bytes, empty, repeated, out
// of order, the metric name with and without a value, names and values of
// 127 and 128 bytes, a series without samples (its last label at its end),
// label fields in another encoding, and a scan whose label slice starts
// small (so that it grows midway).
func TestScanLabelNotes(t *testing.T) {
	names := []string{"", "__name__", "__name__x", "__name_", "_", "a", "a\x00", "a\x00\x00", "ab", "job",
		"kubernetes_namespace", "kubernetes_pod_name", "kubernetes_p", "team", "team_alias", "teamteam", "teamteam_",
		"\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\xff",
		strings.Repeat("n", 127), strings.Repeat("n", 128)}
	values := []string{"", "v", "None", strings.Repeat("v", 127), strings.Repeat("v", 128)}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 3000 {
		var raw []byte
		for range 1 + rng.IntN(4) {
			var ser []byte
			ns := slices.Clone(names)
			rng.Shuffle(len(ns), func(a, b int) { ns[a], ns[b] = ns[b], ns[a] })
			ns = ns[:rng.IntN(8)]
			if rng.IntN(2) == 0 {
				slices.Sort(ns)
			}
			if len(ns) > 0 && rng.IntN(4) == 0 { // a name twice
				at := rng.IntN(len(ns) + 1)
				ns = slices.Insert(ns, at, names[rng.IntN(3)])
			}
			for _, n := range ns {
				var l []byte
				if rng.IntN(8) == 0 { // value first: another encoding
					l = protowire.AppendTag(l, v1LabelValue, protowire.BytesType)
					l = protowire.AppendString(l, values[rng.IntN(len(values))])
					l = protowire.AppendTag(l, v1LabelName, protowire.BytesType)
					l = protowire.AppendString(l, n)
				} else {
					l = protowire.AppendTag(l, v1LabelName, protowire.BytesType)
					l = protowire.AppendString(l, n)
					l = protowire.AppendTag(l, v1LabelValue, protowire.BytesType)
					l = protowire.AppendString(l, values[rng.IntN(len(values))])
				}
				ser = protowire.AppendTag(ser, v1SeriesLabels, protowire.BytesType)
				ser = protowire.AppendBytes(ser, l)
			}
			if rng.IntN(4) > 0 {
				ser = protowire.AppendTag(ser, v1SeriesSamples, protowire.BytesType)
				ser = protowire.AppendBytes(ser, []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01})
			}
			raw = protowire.AppendTag(raw, v1ReqSeries, protowire.BytesType)
			raw = protowire.AppendBytes(raw, ser)
		}
		s := &scanned{lbls: make([]span, 0, rng.IntN(6))}
		s.reset()
		s.proto, s.raw = ProtoV1, raw
		if err := s.scanV1(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checkLabelNotes(t, s)
		checkGet(t, s)
	}
}

// checkGet: a series' Getter finds each of its label names, the metric
// name and a name it lacks as a walk of its labels in wire order does (the
// first of a name given twice); cursor.Get takes the metric name from the
// scan's note, and compares lengths first.
func checkGet(t *testing.T, s *scanned) {
	t.Helper()
	for i := range s.series {
		g := s.Getter(i)
		var names []string
		s.rawPairs(i, func(name, _ string) { names = append(names, name) })
		for _, name := range append(names, "__name__", "status_code", "") {
			want := ""
			found := false
			s.rawPairs(i, func(n, v string) {
				if !found && n == name {
					want, found = v, true
				}
			})
			if got := g.Get(name); got != want {
				t.Fatalf("series %d: Get(%q) = %q, want %q", i, name, got, want)
			}
		}
	}
}

// checkMinTime: MinTime is the smallest sample timestamp, or MinInt64 (it
// could not tell), or MaxInt64 with no sample.
func checkMinTime(t *testing.T, s *scanned) {
	t.Helper()
	got := s.MinTime()
	if got == math.MinInt64 {
		return
	}
	least := int64(math.MaxInt64)
	for i := range s.Len() {
		for _, p := range s.Samples(i) {
			least = min(least, p.T)
		}
	}
	if got != least {
		t.Fatalf("MinTime %d, the samples' least timestamp %d", got, least)
	}
}

// TestMinTime: the smallest timestamp is read in the common encodings (a +0
// value left out too), unknown for others, MaxInt64 without samples.
func TestMinTime(t *testing.T) {
	ls := prompb.FromLabels(labels.FromStrings("__name__", "m"), nil)
	for _, tc := range []struct {
		name    string
		samples [][]prompb.Sample
		v2ST    bool // RW 2.0 with a start timestamp on the samples
		want    int64
	}{
		{"values and timestamps", [][]prompb.Sample{{{Value: 1, Timestamp: 5000}}, {{Value: 2, Timestamp: 3000}, {Value: 3, Timestamp: 9000}}}, false, 3000},
		{"a +0 value left out", [][]prompb.Sample{{{Value: 1, Timestamp: 5000}}, {{Value: 0, Timestamp: 4000}}}, false, 4000},
		{"a timestamp 0 left out", [][]prompb.Sample{{{Value: 1, Timestamp: 5000}}, {{Value: 2, Timestamp: 0}}}, false, math.MinInt64},
		{"no samples", [][]prompb.Sample{nil}, false, math.MaxInt64},
		{"RW 2.0 start timestamps", [][]prompb.Sample{{{Value: 1, Timestamp: 5000}}, {{Value: 0, Timestamp: 7000}}}, true, 5000},
	} {
		for _, rw2 := range []bool{false, true} {
			if tc.v2ST && !rw2 {
				continue
			}
			req := &prompb.WriteRequest{}
			for _, smp := range tc.samples {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls, Samples: smp})
			}
			var raw []byte
			var err error
			if rw2 {
				v2 := toV2(req) // start timestamps 5 s before the samples
				if !tc.v2ST {
					for i := range v2.Timeseries {
						for j := range v2.Timeseries[i].Samples {
							v2.Timeseries[i].Samples[j].StartTimestamp = 0
						}
					}
				}
				raw, err = v2.Marshal()
			} else {
				raw, err = req.Marshal()
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := scan(protoFor(rw2), raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.MinTime(); got != tc.want {
				t.Errorf("%s (RW 2.0 %v): MinTime %d, want %d", tc.name, rw2, got, tc.want)
			}
			checkMinTime(t, s)
			s.release()
		}
	}
}

// TestScanHasExemplars: the scan marks the series whose message has an
// exemplars field, in both protocols (patchable keeps a merged sum in place
// only when its other sources have none).
func TestScanHasExemplars(t *testing.T) {
	with := prompb.TimeSeries{
		Labels:    prompb.FromLabels(labels.FromStrings("__name__", "a_total"), nil),
		Samples:   []prompb.Sample{{Value: 1, Timestamp: 1000}},
		Exemplars: []prompb.Exemplar{{Labels: prompb.FromLabels(labels.FromStrings("trace_id", "x"), nil), Value: 1, Timestamp: 1000}},
	}
	without := prompb.TimeSeries{
		Labels:  prompb.FromLabels(labels.FromStrings("__name__", "b_total"), nil),
		Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}},
	}
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{without, with, without}}
	for _, rw2 := range []bool{false, true} {
		s, err := scan(protoFor(rw2), marshalAs(t, req, rw2))
		if err != nil {
			t.Fatal(err)
		}
		if got := []bool{s.series[0].hasEx, s.series[1].hasEx, s.series[2].hasEx}; got[0] || !got[1] || got[2] {
			t.Errorf("RW 2.0 %v: hasEx %v, want [false true false]", rw2, got)
		}
		checkHasExemplars(t, s)
		s.release()
	}
}
