package remotewrite

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// rawSample builds one sample message's bytes field by field.
type rawSample []byte

func (b rawSample) val(v float64) rawSample {
	b = protowire.AppendTag(b, sampleValue, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

func (b rawSample) ts(t int64) rawSample {
	b = protowire.AppendTag(b, sampleTimestamp, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(t))
}

// tsLong is a timestamp as a varint n bytes long (not minimal).
func (b rawSample) tsLong(t int64, n int) rawSample {
	b = protowire.AppendTag(b, sampleTimestamp, protowire.VarintType)
	v := protowire.AppendVarint(nil, uint64(t))
	for len(v) < n {
		v[len(v)-1] |= 0x80
		v = append(v, 0)
	}
	return append(b, v...)
}

func (b rawSample) st(t int64) rawSample {
	b = protowire.AppendTag(b, sampleStartTimestamp, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(t))
}

func (b rawSample) unknown(num protowire.Number, v uint64) rawSample {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// oddBody is an RW 1.0 request of filler series with, in their middle,
// series target (index 20) whose samples are the given messages.
func oddBody(t *testing.T, samples []rawSample) []byte {
	t.Helper()
	var raw []byte
	for k := range 41 {
		ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "200", "user", fmt.Sprint("u", k))
		if k != 20 {
			ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: []prompb.Sample{{Value: float64(k + 1), Timestamp: 1_700_000_015_000}}}
			b, err := ts.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			raw = protowire.AppendTag(raw, v1ReqSeries, protowire.BytesType)
			raw = protowire.AppendBytes(raw, b)
			continue
		}
		b, err := (&prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for _, smp := range samples {
			b = protowire.AppendTag(b, v1SeriesSamples, protowire.BytesType)
			b = protowire.AppendBytes(b, smp)
		}
		raw = protowire.AppendTag(raw, v1ReqSeries, protowire.BytesType)
		raw = protowire.AppendBytes(raw, b)
	}
	return raw
}

// TestOddSampleEncodings: a merged output of one source in its own
// slot (a held sample sent in the next scrape's slot), whose sample
// messages the sender wrote in unusual ways, decodes as the request cut and
// re-encoded; what is written in place is recorded as holes, in order, and
// the spliced snappy block decodes to the output.
func TestOddSampleEncodings(t *testing.T) {
	const T = 1_700_000_015_000
	back := func(smp []series.Sample) {
		for k := range smp {
			smp[k].V += 100
			smp[k].T -= 15_000
		}
	}
	valuesOnly := func(smp []series.Sample) {
		for k := range smp {
			smp[k].V += 100
		}
	}
	cases := []struct {
		name    string
		samples []rawSample
		mod     func([]series.Sample)
	}{
		{"timestamp before value", []rawSample{rawSample{}.ts(T).val(3)}, back},
		{"two timestamps, the first shorter", []rawSample{rawSample{}.ts(5).val(3).ts(T)}, back},
		{"two timestamps, the last shorter", []rawSample{rawSample{}.ts(T).val(3).ts(5)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 7 }},
		{"two timestamps as long", []rawSample{rawSample{}.ts(T - 1).val(3).ts(T)}, back},
		{"two timestamps as long, value between", []rawSample{rawSample{}.ts(T).val(3).ts(T + 1)}, back},
		{"non-minimal timestamp", []rawSample{rawSample{}.val(3).tsLong(T, 7)}, back},
		{"non-minimal small timestamp", []rawSample{rawSample{}.val(3).tsLong(1, 2)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 200 }},
		{"non-minimal small timestamp to a minimal one", []rawSample{rawSample{}.val(3).tsLong(1, 2)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 2 }},
		{"negative timestamps", []rawSample{rawSample{}.val(3).ts(-1000)}, back},
		{"negative to positive", []rawSample{rawSample{}.val(3).ts(-1000)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, T }},
		{"explicit zero timestamp", []rawSample{rawSample{}.val(3).ts(0)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 100 }},
		{"timestamp to zero", []rawSample{rawSample{}.val(3).ts(100)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 0 }},
		{"no timestamp", []rawSample{rawSample{}.val(3)}, func(smp []series.Sample) { smp[0].V, smp[0].T = 9, 100 }},
		{"no timestamp, values only", []rawSample{rawSample{}.val(3)}, valuesOnly},
		{"explicit +0 value", []rawSample{rawSample{}.val(0).ts(T)}, back},
		{"to +0 and -0", []rawSample{rawSample{}.val(3).ts(T), rawSample{}.val(4).ts(T + 1)}, func(smp []series.Sample) {
			smp[0].V, smp[1].V = 0, math.Copysign(0, -1)
			smp[0].T -= 15_000
		}},
		{"NaN", []rawSample{rawSample{}.val(3).ts(T)}, func(smp []series.Sample) { smp[0].V, smp[0].T = math.NaN(), T-15_000 }},
		{"unknown fields", []rawSample{rawSample{}.unknown(9, 1).val(3).unknown(10, 1<<40).ts(T).unknown(11, 2)}, back},
		{"v1 start timestamp field (unknown to 1.0)", []rawSample{rawSample{}.val(3).ts(T).st(T - 60_000)}, back},
		{"two values", []rawSample{rawSample{}.val(3).ts(T).val(4)}, back},
		{"several samples, some moved", []rawSample{rawSample{}.val(1).ts(T), rawSample{}.ts(T + 15_000).val(2), rawSample{}.val(3).ts(T + 30_000)}, func(smp []series.Sample) {
			for k := range smp {
				smp[k].V *= 10
				if k != 1 {
					smp[k].T -= 5_000
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := oddBody(t, c.samples)
			s, out := encodedBothWays(t, raw, false, func(s *scanned) {
				smp := slices.Clone(s.Samples(20))
				c.mod(smp)
				s.SetSamples(20, smp, []int{20})
			})
			patched := s.edits[20].patch
			t.Logf("patched %v, %d holes, %d bytes for %d", patched, len(s.holes), len(out), len(raw))
			if !slices.IsSorted(s.holes) {
				t.Fatalf("holes out of order: %v", s.holes)
			}
			if s.inPlace && len(out) >= len(raw) {
				for k := range raw {
					if raw[k] != out[k] && !slices.Contains(s.holes, k) {
						t.Fatalf("byte %d changed, not a hole", k)
					}
				}
			}
			for _, e := range senderEncoders {
				in := e.enc(raw)
				got, reused := s.compressSpliced(nil, in, out)
				checkSpliced(t, got, reused, out)
			}
			d, err := snappy.Decode(nil, snappy.Encode(nil, out))
			if err != nil || !bytes.Equal(d, out) {
				t.Fatal(err)
			}
		})
	}
}

// oddBodyV2 is oddBody in RW 2.0: target series 20 has the given sample
// messages.
func oddBodyV2(t *testing.T, samples []rawSample) []byte {
	t.Helper()
	req := &writev2.Request{}
	st := writev2.NewSymbolTable()
	for k := range 41 {
		ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "200", "user", fmt.Sprint("u", k))
		ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil)}
		if k != 20 {
			ts.Samples = []writev2.Sample{{Value: float64(k + 1), Timestamp: 1_700_000_015_000}}
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Series 20's message, its samples appended.
	var out []byte
	k := 0
	for off := 0; off < len(raw); {
		num, typ, n := protowire.ConsumeTag(raw[off:])
		m := protowire.ConsumeFieldValue(num, typ, raw[off+n:])
		if num == v2ReqSeries && typ == protowire.BytesType {
			body, _ := protowire.ConsumeBytes(raw[off+n:])
			if k == 20 {
				body = slices.Clone(body)
				for _, smp := range samples {
					body = protowire.AppendTag(body, v2SeriesSamples, protowire.BytesType)
					body = protowire.AppendBytes(body, smp)
				}
			}
			out = protowire.AppendTag(out, v2ReqSeries, protowire.BytesType)
			out = protowire.AppendBytes(out, body)
			k++
		} else {
			out = append(out, raw[off:off+n+m]...)
		}
		off += n + m
	}
	return out
}

// TestOddSampleEncodingsV2: RW 2.0 samples with start timestamps in
// unusual places, each a held sample written in the next scrape's slot.
func TestOddSampleEncodingsV2(t *testing.T) {
	const T, S = 1_700_000_015_000, 1_699_999_000_000
	back := func(smp []series.Sample) {
		for k := range smp {
			smp[k].V += 100
			smp[k].T -= 15_000
		}
	}
	cases := []struct {
		name    string
		samples []rawSample
		mod     func([]series.Sample)
	}{
		{"start timestamp", []rawSample{rawSample{}.val(3).ts(T).st(S)}, back},
		{"start timestamp first", []rawSample{rawSample{}.st(S).ts(T).val(3)}, back},
		{"two start timestamps", []rawSample{rawSample{}.st(S - 1).val(3).ts(T).st(S)}, back},
		{"another start timestamp", []rawSample{rawSample{}.val(3).ts(T).st(S)}, func(smp []series.Sample) { back(smp); smp[0].ST = S + 15_000 }},
		{"a start timestamp where none was", []rawSample{rawSample{}.val(3).ts(T)}, func(smp []series.Sample) { back(smp); smp[0].ST = S }},
		{"start timestamp between", []rawSample{rawSample{}.ts(T).st(S).val(3), rawSample{}.val(4).st(S).ts(T + 15_000)}, back},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := oddBodyV2(t, c.samples)
			s, out := encodedBothWays(t, raw, true, func(s *scanned) {
				smp := slices.Clone(s.Samples(20))
				c.mod(smp)
				s.SetSamples(20, smp, []int{20})
			})
			t.Logf("patched %v, %d holes, %d bytes for %d", s.edits[20].patch, len(s.holes), len(out), len(raw))
			if !slices.IsSorted(s.holes) {
				t.Fatalf("holes out of order: %v", s.holes)
			}
			for _, e := range senderEncoders {
				got, reused := s.compressSpliced(nil, e.enc(raw), out)
				checkSpliced(t, got, reused, out)
			}
		})
	}
}

// TestRandomEditsDecodeAsCut: randomEdits (relabels, merged outputs of
// one or two sources, held samples' timestamps, drops, appended series)
// encoded blanked decode as the request cut and re-encoded does.
func TestRandomEditsDecodeAsCut(t *testing.T) {
	for seed := range uint64(40) {
		rw2 := seed%2 == 1
		n := []int{1, 40, 300, 900}[seed%4]
		raw := randomBody(t, rand.New(rand.NewPCG(seed, 7)), n, rw2)
		for mode := range uint8(5) {
			encodedBothWays(t, raw, rw2, func(s *scanned) {
				randomEdits(rand.New(rand.NewPCG(seed, uint64(mode))), s, mode)
			})
		}
	}
}
